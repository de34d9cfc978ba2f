"""Helpers of tests/real_vision: importing timm/torchscale or skipping with why, and polyinit's
promise for a parameter as a ``reference_tables.Law`` (checked against the reference's draws)."""

from __future__ import annotations

import math
import warnings

import pytest
from reference_tables import ONE, ZERO, Law, normal, uniform


def import_or_skip(name: str):
    """``name`` imported, or the calling test module skipped with why: absent, or (timm,
    torchscale) present but its torchvision does not load beside this torch."""
    import importlib

    try:
        with warnings.catch_warnings():
            # torchscale 0.3.0 imports drop_path from timm.models.layers, deprecated in timm 1.x.
            warnings.filterwarnings("ignore", "Importing from timm.models.layers", FutureWarning)
            return importlib.import_module(name)
    except (ImportError, RuntimeError) as error:
        pytest.skip(
            f"{name} cannot be imported here ({type(error).__name__}: {error}); tests/real_vision runs in "
            ".venv-vision, built by tools/test.sh",
            allow_module_level=True,
        )


def promised_law(stats) -> Law:
    """polyinit's promise for one parameter (``resolve(spec, shape, layout).stats``) as a Law:
    constants 0 and 1, U(-b, b), N(0, s) and N(0, s) cut at +-c s."""
    if stats.low == stats.high:
        assert stats.low in (0.0, 1.0), stats
        return ZERO if stats.low == 0.0 else ONE
    if stats.distribution is None and stats.blocks is not None:  # equal parts (q, k, v): one law
        parts = stats.blocks[1]
        assert all(part == parts[0] for part in parts), stats
        return promised_law(parts[0])
    kind, *args = stats.distribution
    if kind == "uniform":
        low, high = args
        assert math.isclose(low, -high), stats
        return uniform(high)
    assert args[0] == 0.0, stats
    if kind == "truncated_normal":
        _, std, a, b = args
        assert math.isclose(a, -b), stats
        return normal(std, cut=b)
    assert kind == "normal", stats
    return normal(args[1])
