"""One-off surgery: set element [0, 0] of the first kernel to 42, then add 1 to the whole kernel.

The read-modify-write goes through the framework itself; polyinit's part is finding the
parameter portably (the first dense layer's weight, whatever the framework calls it).
"""

import numpy as np
from _frameworks import models

from polyinit.rules import first, kind, role, select
from polyinit.walkers import walker_for


def edit(model, fn):
    """Apply ``fn`` to the first dense weight as a numpy array, in the parameter's own layout."""
    (param,) = select(model, kind("dense") & first() & role("weight"))
    walker = walker_for(model)
    walker.walk(model)
    values = np.array(walker.read(model, param), dtype=np.float32)
    fn(values)
    walker.write(model, [(param, _native(model, values))])
    return param, walker.read(model, param)


def _native(model, values):
    """Values in the framework's own array type (the walker writes these in place)."""
    kind_ = type(model).__module__.split(".")[0]
    if kind_ == "torch":
        import torch

        return torch.from_numpy(values)
    return values


if __name__ == "__main__":
    for framework, model in models():
        param, before = edit(model, lambda v: v.__setitem__((0, 0), 42.0))
        _, after = edit(model, lambda v: v.__iadd__(1.0))
        print(
            f"{framework}: {param.path} [0, 0] = {before[0, 0]:.1f} then {after[0, 0]:.1f}; "
            f"mean rose by {after.mean() - before.mean():.3f}"
        )
