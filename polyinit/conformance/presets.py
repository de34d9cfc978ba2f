"""Layout presets checked against each framework's own layers.

For every (framework, kind) with a preset, the framework's own layer is built and its weight's
shape taken, then:

* native preset: the framework's own variance-scaling initializer (its fan convention) is drawn on
  that shape in both fan modes, and the draws are checked against polyinit's plan of
  ``VarianceScaling(mode=...)`` under ``preset(framework, kind)`` (the usual statistical checks);
* semantic preset: ``compute_fans`` under ``preset(framework, kind, native=False)`` must equal the
  data-flow fans read from the layer's configuration: fan_in = in/groups * receptive field, and
  fan_out = out * receptive field for ungrouped layers (for grouped and depthwise layers the
  presets do not agree on fan_out yet, so only fan_in is compared there).

Frameworks are imported only when asked for. ``preset_checks("torch")`` returns the checks.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, NamedTuple

import numpy as np

from polyinit.conformance.checks import Check, check, samples_needed
from polyinit.layout import compute_fans, preset
from polyinit.plan import resolve
from polyinit.spec import VarianceScaling

# In and out differ by 4x (so a swapped role changes a fan by 4x or more), and every weight has
# at least ~1,000 elements, so few draws reach SAMPLES.
IN, OUT, GROUPS_IN, MULTIPLIER, VOCAB, DIM, K = 64, 256, 64, 2, 500, 64, 3
# Draws per check: the variance check's relative tolerance is then z sqrt(2 / n) ~ 8% at
# alpha = 1e-6, far below the factor of 2 or more by which any changed role moves a fan here.
SAMPLES = 1 << 13


class Layer(NamedTuple):
    """A real layer's weight shape and its data-flow fans (fan_out None: not compared)."""

    shape: tuple[int, ...]
    fan_in: int
    fan_out: "int | None"


def _torch() -> tuple[dict[str, Layer], Callable]:
    import torch
    from torch import nn

    k2 = K * K
    layers = {
        "dense": Layer(tuple(nn.Linear(IN, OUT).weight.shape), IN, OUT),
        "conv": Layer(tuple(nn.Conv2d(IN, OUT, K).weight.shape), IN * k2, OUT * k2),
        "conv_transpose": Layer(tuple(nn.ConvTranspose2d(IN, OUT, K).weight.shape), IN * k2, OUT * k2),
        "depthwise_conv": Layer(tuple(nn.Conv2d(GROUPS_IN, GROUPS_IN * MULTIPLIER, K, groups=GROUPS_IN).weight.shape),
                                k2, None),
        "embedding": Layer(tuple(nn.Embedding(VOCAB, DIM).weight.shape), VOCAB, DIM),
    }

    def own(shape, mode, seed):
        tensor = torch.empty(shape)
        nn.init.kaiming_normal_(tensor, mode=mode, nonlinearity="linear", generator=torch.Generator().manual_seed(seed))
        return tensor.double().numpy()

    return layers, own


def _keras() -> tuple[dict[str, Layer], Callable]:
    import keras

    def kernel(layer, input_shape, name="kernel"):
        layer.build(input_shape)
        return tuple(getattr(layer, name).shape)

    k2 = K * K
    image = (None, 8, 8, IN)
    layers = {
        "dense": Layer(kernel(keras.layers.Dense(OUT), (None, IN)), IN, OUT),
        "conv": Layer(kernel(keras.layers.Conv2D(OUT, K), image), IN * k2, OUT * k2),
        "conv_transpose": Layer(kernel(keras.layers.Conv2DTranspose(OUT, K), image), IN * k2, OUT * k2),
        "depthwise_conv": Layer(kernel(keras.layers.DepthwiseConv2D(K, depth_multiplier=MULTIPLIER),
                                       (None, 8, 8, GROUPS_IN)), k2, None),
        "embedding": Layer(kernel(keras.layers.Embedding(VOCAB, DIM), (None, 3), "embeddings"), VOCAB, DIM),
    }

    def own(shape, mode, seed):
        init = keras.initializers.VarianceScaling(1.0, mode, "untruncated_normal", seed=seed)
        return np.asarray(keras.ops.convert_to_numpy(init(shape)), dtype=np.float64)

    return layers, own


def _flax() -> tuple[dict[str, Layer], Callable]:
    import jax
    from flax import nnx

    rngs = nnx.Rngs(0)

    def weight(layer, name="kernel"):
        return tuple(getattr(layer, name).shape)

    k2 = K * K
    layers = {
        "dense": Layer(weight(nnx.Linear(IN, OUT, rngs=rngs)), IN, OUT),
        "conv": Layer(weight(nnx.Conv(IN, OUT, (K, K), rngs=rngs)), IN * k2, OUT * k2),
        "conv_transpose": Layer(weight(nnx.ConvTranspose(IN, OUT, (K, K), rngs=rngs)), IN * k2, OUT * k2),
        "depthwise_conv": Layer(weight(nnx.Conv(GROUPS_IN, GROUPS_IN * MULTIPLIER, (K, K),
                                                feature_group_count=GROUPS_IN, rngs=rngs)), k2, None),
        "embedding": Layer(weight(nnx.Embed(VOCAB, DIM, rngs=rngs), "embedding"), VOCAB, DIM),
    }

    def own(shape, mode, seed):
        init = jax.nn.initializers.variance_scaling(1.0, mode, "normal")  # JAX's "normal" is untruncated
        return np.asarray(init(jax.random.key(seed), shape), dtype=np.float64)

    return layers, own


FRAMEWORKS: dict[str, Callable[[], tuple[dict[str, Layer], Callable]]] = {
    "torch": _torch, "keras": _keras, "flax": _flax}


def preset_checks(framework: str, kinds: "tuple[str, ...] | None" = None) -> list[Check]:
    """Every native and semantic preset of ``framework`` (or only ``kinds``) against its own
    layers (see the module docstring); each check's name says framework, kind and what was compared."""
    layers, own = FRAMEWORKS[framework]()
    results = []
    for kind, layer in layers.items():
        if kinds is not None and kind not in kinds:
            continue
        results += _native(framework, kind, layer.shape, own)
        results += _semantic(framework, kind, layer)
    return results


def _native(framework: str, kind: str, shape: tuple[int, ...], own: Callable) -> list[Check]:
    results = []
    for mode in ("fan_in", "fan_out"):
        plan = resolve(VarianceScaling(scale=1.0, mode=mode, distribution="normal"), shape,
                       preset(framework, kind), "float32")
        draws = [own(shape, mode, seed) for seed in range(samples_needed(plan, SAMPLES))]
        label = f"{framework} {kind} native preset, {mode}"
        results += [replace(c, name=f"{label}: {c.name}") for c in check(draws, plan)
                    if c.name in ("variance", "support")]
    return results


def _semantic(framework: str, kind: str, layer: Layer) -> list[Check]:
    fans = compute_fans(layer.shape, preset(framework, kind, native=False))
    label = f"{framework} {kind} semantic preset"
    results = [Check(f"{label}: fan_in", layer.fan_in, fans.fan_in, 0.0, fans.fan_in == layer.fan_in,
                     f"weight {layer.shape}")]
    if layer.fan_out is not None:
        results.append(Check(f"{label}: fan_out", layer.fan_out, fans.fan_out, 0.0, fans.fan_out == layer.fan_out,
                             f"weight {layer.shape}"))
    return results


__all__ = ["FRAMEWORKS", "Layer", "preset_checks"]
