"""Every weight = 1 (and why not to): with constant weights every unit of a layer computes the
same function of the input and receives the same gradient, so the units never become different:
symmetry is never broken and the layer acts as one unit, however wide."""

from _frameworks import models

import polyinit as pi
from polyinit.rules import Rules, apply, role

RULES = Rules([(role("weight"), pi.ones()), (role("bias"), pi.zeros())], seed=0)

if __name__ == "__main__":
    for framework, model in models():
        print(f"--- {framework}")
        print(apply(model, RULES))
