"""Compatibility names: the walkers now live in ``polyinit.frameworks.<name>`` (one module per
framework); ``walker_for`` finds the right one from the model's type without importing anything."""

from __future__ import annotations

from typing import Any

from polyinit.frameworks import framework_for, walker_for

__all__ = ["KerasWalker", "LinenWalker", "MxnetWalker", "NnxWalker", "TorchWalker", "framework_for", "walker_for"]


def __getattr__(name: str) -> Any:
    # Lazily, so that importing this module imports no walker module.
    from polyinit.frameworks import flax, keras, mxnet, torch

    table = {
        "TorchWalker": torch.TorchWalker,
        "KerasWalker": keras.KerasWalker,
        "NnxWalker": flax.NnxWalker,
        "LinenWalker": flax.LinenWalker,
        "MxnetWalker": mxnet.ArrayDictWalker,
        "GluonWalker": mxnet.GluonWalker,
    }
    if name in table:
        return table[name]
    raise AttributeError(name)
