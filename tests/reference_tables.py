"""Checking a model's parameters against a table of expected laws, written in the tests from each
reference codebase's source (never from polyinit), for tests/test_modern_references.py.

A table maps every parameter path to a ``Law``: its distribution, its std before any cut, the cut,
and so its final std, excess kurtosis and support. ``check_model`` checks **every** parameter:
the sample std against the law's (z <= 5: two-sided false-alarm probability 5.7e-7 per check,
the sample std of n values with excess kurtosis k has relative sd sqrt((k + 2) / (4 n))), zeros and
ones exactly, and every value inside the support (a cut is a hard bound, checked exactly).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z = 5.0


def _phi(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


def truncated_standard(c: float) -> tuple[float, float]:
    """(std, excess kurtosis) of N(0, 1) cut to [-c, c], from the moment recursion
    m_k = (k - 1) m_(k-2) - 2 c^(k-1) phi(c) / Z, Z = erf(c / sqrt 2)."""
    mass = math.erf(c / math.sqrt(2))
    m2 = 1 - 2 * c * _phi(c) / mass
    m4 = 3 * m2 - 2 * c**3 * _phi(c) / mass
    return math.sqrt(m2), m4 / m2**2 - 3


@dataclass(frozen=True)
class Law:
    """``kind``: "normal" (std before the cut; ``cut`` in std units or ``bound`` absolute),
    "uniform" (U(-bound, bound)), "zero" or "one"."""

    kind: str
    std: float = 0.0
    cut: float | None = None
    bound: float | None = None

    def final(self) -> tuple[float, float, float]:
        """(final std, excess kurtosis, largest |value| allowed)."""
        if self.kind == "uniform":
            return self.bound / math.sqrt(3), -1.2, self.bound
        c = self.cut if self.cut is not None else (self.bound / self.std if self.bound is not None else None)
        if c is None:
            return self.std, 0.0, math.inf
        factor, kurtosis = truncated_standard(c)
        return self.std * factor, kurtosis, c * self.std


def normal(std: float, cut: float | None = None, bound: float | None = None) -> Law:
    return Law("normal", std, cut, bound)


def uniform(bound: float) -> Law:
    return Law("uniform", bound=bound)


ZERO, ONE = Law("zero"), Law("one")


def check_param(path: str, values, law: Law) -> None:
    values = np.asarray(values, dtype=np.float64).ravel()
    if law.kind in ("zero", "one"):
        assert np.all(values == (0.0 if law.kind == "zero" else 1.0)), f"{path}: expected all {law.kind}s"
        return
    std, kurtosis, largest = law.final()
    # float32 rounding of a value at the bound may land a few ulps outside it.
    assert np.max(np.abs(values)) <= largest * (1 + 1e-6), (
        f"{path}: max |w| {np.max(np.abs(values)):.6g} > {largest:.6g}"
    )
    sample = float(np.sqrt(np.mean(values**2)))  # every law here has mean 0
    tolerance = Z * math.sqrt((kurtosis + 2) / (4 * values.size))
    assert abs(sample / std - 1) <= tolerance, f"{path}: std {sample:.6g}, expected {std:.6g} (+-{tolerance:.2%})"


def check_model(values: dict, table: dict) -> None:
    """Every parameter of the model has a law in the table, and follows it."""
    assert set(values) == set(table), (sorted(set(values) - set(table)), sorted(set(table) - set(values)))
    for path, law in table.items():
        check_param(path, values[path], law)


def torch_values(model) -> dict:
    """path -> float64 array, for every parameter (tied ones once, under their first name)."""
    return {name: p.detach().double().numpy() for name, p in model.named_parameters()}
