"""Argument checks shared by the spec classes: each names the argument and the value it got."""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

from polyinit.errors import SpecError


def real(owner: str, name: str, value: Any, *, finite: bool = True) -> float:
    """Return ``value`` as a float, rejecting bools, non-numbers and (when ``finite``) NaN/inf.

    A bool is rejected on purpose: ``Normal(std=True)`` is almost always a bug, and torch's
    ``calculate_gain`` rejects it for the same reason.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SpecError(f"{owner}: {name} must be a real number, received {name}={value!r}")
    result = float(value)
    if math.isnan(result) or (finite and math.isinf(result)):
        raise SpecError(f"{owner}: {name} must be finite, received {name}={value!r}")
    return result


def positive(owner: str, name: str, value: Any) -> float:
    result = real(owner, name, value)
    if result <= 0:
        raise SpecError(f"{owner}: {name} must be > 0, received {name}={value!r}")
    return result


def nonnegative(owner: str, name: str, value: Any) -> float:
    result = real(owner, name, value)
    if result < 0:
        raise SpecError(f"{owner}: {name} must be >= 0, received {name}={value!r}")
    return result


def integer(owner: str, name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SpecError(f"{owner}: {name} must be an integer, received {name}={value!r}")
    if value < minimum:
        raise SpecError(f"{owner}: {name} must be >= {minimum}, received {name}={value!r}")
    return int(value)


def choice(owner: str, name: str, value: Any, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(
            f"{owner}: unknown {name} {value!r}; expected one of {', '.join(map(repr, allowed))}"
        )
    return value


def axis(owner: str, value: Any) -> "str | int":
    """An axis is a role ('out', 'in') or a physical integer index."""
    if isinstance(value, str):
        return choice(owner, "axis", value, ("out", "in"))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SpecError(f"{owner}: axis must be 'out', 'in' or an integer, received axis={value!r}")
    return int(value)
