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

from collections.abc import Callable
from dataclasses import replace
from typing import NamedTuple

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
    fan_out: int | None


def _twins(framework: str) -> tuple[dict[str, Layer], Callable]:
    """The framework's own layers and variance-scaling initializer, from its record's
    ``preset_twins`` (``polyinit/frameworks/<name>.py``)."""
    from polyinit.errors import PolyinitError
    from polyinit.frameworks import get_framework

    twins = get_framework(framework).preset_twins
    if twins is None:
        raise PolyinitError(f"preset_checks: {framework!r} has no preset twins in its record")
    return twins()


def preset_checks(framework: str, kinds: tuple[str, ...] | None = None) -> list[Check]:
    """Every native and semantic preset of ``framework`` (or only ``kinds``) against its own
    layers (see the module docstring); each check's name says framework, kind and what was compared."""
    layers, own = _twins(framework)
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
        plan = resolve(
            VarianceScaling(scale=1.0, mode=mode, distribution="normal"), shape, preset(framework, kind), "float32"
        )
        draws = [own(shape, mode, seed) for seed in range(samples_needed(plan, SAMPLES))]
        label = f"{framework} {kind} native preset, {mode}"
        results += [
            replace(c, name=f"{label}: {c.name}") for c in check(draws, plan) if c.name in ("variance", "support")
        ]
    return results


def _semantic(framework: str, kind: str, layer: Layer) -> list[Check]:
    fans = compute_fans(layer.shape, preset(framework, kind, native=False))
    label = f"{framework} {kind} semantic preset"
    results = [
        Check(f"{label}: fan_in", layer.fan_in, fans.fan_in, 0.0, fans.fan_in == layer.fan_in, f"weight {layer.shape}")
    ]
    if layer.fan_out is not None:
        results.append(
            Check(
                f"{label}: fan_out",
                layer.fan_out,
                fans.fan_out,
                0.0,
                fans.fan_out == layer.fan_out,
                f"weight {layer.shape}",
            )
        )
    return results


__all__ = ["Layer", "preset_checks"]
