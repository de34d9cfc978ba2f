"""Argument checks shared by every modern scheme (issue 22, point 2): each argument goes through
``polyinit._validate``, so ``depth=2.5``, ``depth=True``, ``width=0`` or ``dept=1`` is a clear
``PolyinitError`` naming the scheme, the argument and the value, before anything is derived or drawn.

>>> keywords("gpt2", {"depth": 4}, ("std", "seed"))
{'depth': 4}
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from polyinit import _validate as check
from polyinit.context import ContextError
from polyinit.errors import SpecError

# What a scheme passes on to ``model_context``: its own options and the config numbers it reads.
CONTEXT_OPTIONS = ("depth", "width", "sites", "example_input", "keep")
CONFIG_NUMBERS = ("d_kv", "n_heads", "d_ff")


def keywords(scheme: str, given: Mapping[str, Any], own: Iterable[str]) -> dict[str, Any]:
    """The context keywords of a scheme call, each checked; an unknown one is an error naming the
    closest valid keyword (``gpt2(m, dept=1)``: did you mean 'depth'?)."""
    valid = tuple(own) + CONTEXT_OPTIONS + CONFIG_NUMBERS
    for key in given:
        if key not in CONTEXT_OPTIONS + CONFIG_NUMBERS:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ContextError(f"{scheme}: unknown keyword argument {key!r}{hint} (valid: {', '.join(valid)})")
    checked = dict(given)
    if given.get("depth") is not None:
        checked["depth"] = depth(scheme, given["depth"])
    if given.get("width") is not None:
        checked["width"] = check.integer(scheme, "width", given["width"], minimum=1, error=ContextError)
    for key in CONFIG_NUMBERS:
        if given.get(key) is not None:
            checked[key] = check.integer(scheme, key, given[key], minimum=1, error=ContextError)
    if given.get("sites") is not None and not isinstance(given["sites"], Mapping):
        raise ContextError(f"{scheme}: sites must map a site name to a selector, received sites={given['sites']!r}")
    return checked


def depth(scheme: str, value: Any) -> int | dict[str, int]:
    """A number of residual blocks (an int >= 1, never a bool or a float) or a mapping
    stack -> int (its stack names are checked against the model once it is read)."""
    if isinstance(value, Mapping):
        return {
            _stack_name(scheme, key): check.integer(scheme, f"depth[{key!r}]", n, minimum=1, error=ContextError)
            for key, n in value.items()
        }
    return check.integer(scheme, "depth", value, minimum=1, error=ContextError)


def _stack_name(scheme: str, key: Any) -> str:
    if not isinstance(key, str):
        raise ContextError(f"{scheme}: depth's keys must be stack names, received {key!r}")
    return key


def stacks_exist(scheme: str, requested: Any, found: Iterable[str]) -> None:
    """A depth mapping may only name stacks the model has (``{"encodr": 3}`` is a typo)."""
    if not isinstance(requested, Mapping):
        return
    present = sorted(set(found))
    for key in requested:
        if key not in present:
            close = difflib.get_close_matches(key, present, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ContextError(
                f"{scheme}: depth names the stack {key!r}, which this model does not have{hint} "
                f"(stacks: {', '.join(map(repr, present))})"
            )


def std(scheme: str, name: str, value: Any) -> float:
    """A standard deviation (or any scale): a finite real > 0."""
    return check.positive(scheme, name, value)


def optional_std(scheme: str, name: str, value: Any) -> float | None:
    """None, or a finite real > 0."""
    return None if value is None else check.positive(scheme, name, value)


def flag(scheme: str, name: str, value: Any) -> bool:
    return check.boolean(scheme, name, value)


def one_of(scheme: str, name: str, value: Any, allowed: Iterable[str]) -> str:
    """``value`` among ``allowed``; the error lists every valid value."""
    return check.choice(scheme, name, value, allowed)


def seed(scheme: str, value: Any) -> int:
    return check.seed(scheme, value)


def refuse(scheme: str, message: str) -> None:
    raise SpecError(f"{scheme}: {message}")
