"""The custom rule "w ~ U(-10, 10); w <- w * 1[|w| >= 5]" as one spec, in every framework."""

from _frameworks import models

import polyinit as pi
from polyinit.rules import Rules, apply, role

w = pi.Uniform(low=-10.0, high=10.0)
RULES = Rules([(role("weight"), w * (abs(w) >= 5)), (role("bias"), pi.zeros())], seed=0)

if __name__ == "__main__":
    for framework, model in models():
        print(f"--- {framework}")
        print(apply(model, RULES))
