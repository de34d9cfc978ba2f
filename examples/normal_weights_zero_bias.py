"""Weights ~ N(0, 0.01^2), biases 0: one rule set, applied in every framework installed."""

from _frameworks import models

import polyinit as pi
from polyinit.rules import Rules, apply, role

RULES = Rules([(role("weight"), pi.Normal(std=0.01)), (role("bias"), pi.zeros())], seed=0)

if __name__ == "__main__":
    for framework, model in models():
        print(f"--- {framework}")
        print(apply(model, RULES))
