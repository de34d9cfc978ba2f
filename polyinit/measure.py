"""Push a standard-normal batch through a stack of a framework's real layers, built with the
framework's own defaults, and record Var of each layer's output (for ``polyinit compare``).

Each function imports its framework; ``measure`` returns a reason string instead when the
framework is not installed (haiku and MXNet usually are not, in the main environment).
"""

from __future__ import annotations

import importlib
from typing import Union

import numpy as np

Measured = tuple[list[float], list[float], list[float]]
BATCH = 2048
REPEATS = 4


def _inputs(layer: str, n_in: int, depth: int, kernel: int, seed: int) -> np.ndarray:
    """NHWC (conv) or (batch, n_in) standard normals; conv stacks use 'valid' padding on an image
    large enough that the last layer still has 4x4 outputs, so borders never enter."""
    rng = np.random.default_rng(seed)
    if layer == "dense":
        return rng.standard_normal((BATCH, n_in)).astype(np.float32)
    side = 4 + depth * (kernel - 1)
    return rng.standard_normal((8, side, side, n_in)).astype(np.float32)


def _run(layers, x, to_numpy, relu) -> tuple[list[float], list[float]]:
    """Var of each layer's output for the linear stack and for the ReLU stack (the framework's own
    ReLU between layers)."""
    linear, rectified = [], []
    y = z = x
    for index, call in enumerate(layers):
        y = call(y)
        z = call(z if index == 0 else relu(z))
        linear.append(float(np.var(to_numpy(y))))
        rectified.append(float(np.var(to_numpy(z))))
    return linear, rectified


def _torch(layer, n_in, n_out, depth, kernel, seed, x):
    import torch

    torch.manual_seed(seed)
    make = (lambda i: torch.nn.Linear(i, n_out)) if layer == "dense" else (lambda i: torch.nn.Conv2d(i, n_out, kernel))
    modules = [make(n_in if index == 0 else n_out) for index in range(depth)]
    tensor = torch.from_numpy(x if layer == "dense" else x.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        stats = _run(modules, tensor, lambda t: t.numpy(), torch.relu)
    return stats, modules[0].weight.detach().numpy().ravel()


def _keras(layer, n_in, n_out, depth, kernel, seed, x):
    import keras

    keras.utils.set_random_seed(seed)
    make = (lambda: keras.layers.Dense(n_out)) if layer == "dense" else (lambda: keras.layers.Conv2D(n_out, kernel))
    layers = [make() for _ in range(depth)]
    stats = _run(layers, x, keras.ops.convert_to_numpy, keras.ops.relu)
    return stats, keras.ops.convert_to_numpy(layers[0].kernel).ravel()


def _flax(layer, n_in, n_out, depth, kernel, seed, x):
    from flax import nnx

    rngs = nnx.Rngs(seed)
    if layer == "dense":
        layers = [nnx.Linear(n_in if i == 0 else n_out, n_out, rngs=rngs) for i in range(depth)]
    else:
        layers = [nnx.Conv(n_in if i == 0 else n_out, n_out, (kernel, kernel), padding="VALID", rngs=rngs)
                  for i in range(depth)]
    stats = _run(layers, x, np.asarray, nnx.relu)
    return stats, np.asarray(layers[0].kernel[...]).ravel()


def _mxnet(layer, n_in, n_out, depth, kernel, seed, x):
    import mxnet as mx

    mx.random.seed(seed)
    if layer == "dense":
        blocks = [mx.gluon.nn.Dense(n_out, in_units=n_in if i == 0 else n_out) for i in range(depth)]
        data = mx.nd.array(x)
    else:
        blocks = [mx.gluon.nn.Conv2D(n_out, kernel, in_channels=n_in if i == 0 else n_out) for i in range(depth)]
        data = mx.nd.array(x.transpose(0, 3, 1, 2))
    for block in blocks:
        block.initialize()  # Gluon's own default
    stats = _run(blocks, data, lambda a: a.asnumpy(), mx.nd.relu)
    return stats, blocks[0].weight.data().asnumpy().ravel()


_MEASURERS = {"torch": _torch, "keras": _keras, "flax": _flax, "mxnet": _mxnet}


def measure(framework: str, layer: str, n_in: int, n_out: int, depth: int, kernel: int,
            seed: int = 0) -> Union[Measured, str]:
    """(linear Var per layer, ReLU Var per layer, first-layer weights), or why not measured."""
    if framework not in _MEASURERS:
        return f"closed form only ({framework} is described from its source)"
    try:
        importlib.import_module(framework)  # the module names are the framework names
    except (ImportError, AttributeError):
        return f"closed form only ({framework} not installed)"
    # One finite ReLU network's Var wanders from the closed form (about 30% at depth 10, width
    # 256), so the measured curve is the mean over REPEATS networks built from successive seeds.
    runs = []
    for repeat in range(REPEATS):
        x = _inputs(layer, n_in, depth, kernel, seed + repeat)
        runs.append(_MEASURERS[framework](layer, n_in, n_out, depth, kernel, seed + repeat, x))
    linear = np.mean([stats[0] for stats, _ in runs], axis=0).tolist()
    relu = np.mean([stats[1] for stats, _ in runs], axis=0).tolist()
    return linear, relu, [float(w) for w in runs[0][1][:20000]]
