"""Each backend's public entry point with **no layout argument**, on the framework's own layers
(issue 26.3): torch ``initializer(spec)`` on ``nn.Linear``/``nn.Conv2d`` weights, Keras
``PolyinitInitializer(spec)`` as a ``Dense``/``Conv2D`` kernel initializer, JAX
``initializer(spec)`` as an nnx ``Linear``/``Conv`` kernel_init, MXNet ``Polyinit(spec)`` through
Gluon's ``initialize`` (with the real MXNet; elsewhere on an array of Gluon's (out, in, k...) weight
shape). Every framework stores the same logical layer differently; the default layout must read
its own convention, so a Dense 512 -> 256 has fan_in 512 and fan_out 256, and a 3x3 Conv 64 -> 128
fan_in 576 and fan_out 1152, in every framework. The draws are judged against those hand-computed
fans (a Normal or Uniform with the numbers written out below), never against polyinit's layouts.

The other conformance cases all pass a layout explicitly, so a backend whose default read
(out, in) as (in, out) would pass them; these would not (``test_swapped_fans_are_caught`` shows
the checks reject the swapped fans on the same draws).

MXNet's real Gluon runs in the MXNet venv (``tools/test.sh`` runs this file there too).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conformance_cases import BACKENDS

import polyinit as pi
from polyinit.conformance import check, failures
from polyinit.conformance.checks import required_samples
from polyinit.conformance.runner import SUITE_ALPHA

# Logical layers and their fans, whatever the framework: (fan_in, fan_out).
LAYERS = {"dense": (512, 256), "conv2d": (64 * 9, 128 * 9)}
SPECS = {  # spec, and the plan it promises for (fan_in, fan_out), written out by hand
    "fan_in_normal": (
        pi.VarianceScaling(scale=2.0, mode="fan_in", distribution="normal"),
        lambda fan_in, fan_out: pi.Normal(std=math.sqrt(2.0 / fan_in)),
    ),
    "fan_out_uniform": (
        pi.VarianceScaling(scale=1.0, mode="fan_out", distribution="uniform"),
        lambda fan_in, fan_out: pi.Uniform(low=-math.sqrt(3.0 / fan_out), high=math.sqrt(3.0 / fan_out)),
    ),
}
FRAMEWORKS = [name for name in ("torch", "keras", "jax", "mxnet") if name in BACKENDS]


def torch_draw(spec, layer: str, seed: int) -> np.ndarray:
    import torch

    from polyinit.backends.torch import initializer

    module = torch.nn.Linear(512, 256) if layer == "dense" else torch.nn.Conv2d(64, 128, 3)
    initializer(spec)(module.weight, generator=torch.Generator().manual_seed(seed))
    return module.weight.detach().double().numpy()


def keras_draw(spec, layer: str, seed: int) -> np.ndarray:
    import keras

    from polyinit.backends.keras import PolyinitInitializer

    init = PolyinitInitializer(spec, seed=seed)
    if layer == "dense":
        module = keras.layers.Dense(256, kernel_initializer=init)
        module.build((None, 512))
    else:
        module = keras.layers.Conv2D(128, 3, kernel_initializer=init)
        module.build((None, 8, 8, 64))
    return np.asarray(keras.ops.convert_to_numpy(module.kernel), dtype=np.float64)


def jax_draw(spec, layer: str, seed: int) -> np.ndarray:
    from flax import nnx

    from polyinit.backends.jax import initializer

    rngs = nnx.Rngs(seed)
    if layer == "dense":
        module = nnx.Linear(512, 256, kernel_init=initializer(spec), rngs=rngs)
    else:
        module = nnx.Conv(64, 128, (3, 3), kernel_init=initializer(spec), rngs=rngs)
    return np.asarray(module.kernel[...], dtype=np.float64)


def mxnet_draw(spec, layer: str, seed: int) -> np.ndarray:
    from polyinit.backends.mxnet import Polyinit

    try:
        from mxnet import gluon
    except ImportError:  # polyinit's MXNet backend without MXNet: an array of Gluon's weight shape
        weight = np.empty((256, 512) if layer == "dense" else (128, 64, 3, 3), np.float32)
        Polyinit(spec, seed=seed)(f"{layer}0_weight", weight)
        return weight.astype(np.float64)
    block = gluon.nn.Dense(256, in_units=512) if layer == "dense" else gluon.nn.Conv2D(128, 3, in_channels=64)
    block.initialize(init=Polyinit(spec, seed=seed))
    return block.weight.data().asnumpy().astype(np.float64)


DRAW = {"torch": torch_draw, "keras": keras_draw, "jax": jax_draw, "mxnet": mxnet_draw}


def draws(framework: str, spec, layer: str, plan_size: int) -> list[np.ndarray]:
    """Independent draws (seeds 0, 1, ...) until there are as many values as the checks need."""
    out: list[np.ndarray] = []
    while sum(d.size for d in out) < plan_size:
        out.append(DRAW[framework](spec, layer, len(out)))
    return out


def promised(spec_name: str, fans: tuple[int, int], shape: tuple[int, ...]) -> pi.Plan:
    return pi.resolve(SPECS[spec_name][1](*fans), shape)


@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize("layer", sorted(LAYERS))
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_default_layout_reads_the_frameworks_convention(framework, layer, spec_name):
    first = DRAW[framework](SPECS[spec_name][0], layer, 0)
    plan = promised(spec_name, LAYERS[layer], first.shape)
    samples = draws(framework, SPECS[spec_name][0], layer, required_samples(plan, SUITE_ALPHA))
    bad = failures(check(samples, plan, SUITE_ALPHA))
    assert not bad, [str(b) for b in bad]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_swapped_fans_are_caught(framework):
    """The same checks on the same draws reject the fans of the other convention (in and out
    swapped): a default layout that misread the framework's layout would fail the test above."""
    spec = SPECS["fan_in_normal"][0]
    fan_in, fan_out = LAYERS["dense"]
    first = DRAW[framework](spec, "dense", 0)
    swapped = promised("fan_in_normal", (fan_out, fan_in), first.shape)
    samples = draws(framework, spec, "dense", required_samples(swapped, SUITE_ALPHA))
    assert any(b.name == "variance" for b in failures(check(samples, swapped, SUITE_ALPHA)))
