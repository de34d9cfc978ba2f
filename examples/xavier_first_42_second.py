"""Xavier-uniform on the first linear layer's weight, constant 42 on the second's, zero biases."""

from _frameworks import models

import polyinit as pi
from polyinit.rules import Rules, apply, first, kind, last, role

RULES = Rules(
    [
        (kind("dense") & first() & role("weight"), pi.glorot_uniform()),
        (kind("dense") & last() & role("weight"), pi.constant(42.0)),
        (role("bias"), pi.zeros()),
    ],
    seed=0,
)

if __name__ == "__main__":
    for framework, model in models():
        print(f"--- {framework}")
        print(apply(model, RULES))
