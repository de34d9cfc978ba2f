"""Pairing the logical parameters of two models: by the user's mapping, then by semantic identity,
then by name; never by position. Whatever stays unpaired, or pairs with another shape, is a
``TransferError`` naming the first point where the two models diverge, with the identity, path
and logical shape on each side.

>>> from polyinit.layout import Layout
>>> from polyinit.params import LogicalParam
>>> a = LogicalParam("h.0.attn.c_attn.weight#q", "dense", "weight", 0, (16, 16), Layout("in out"),
...                  identity="0.attn.q.weight")
>>> b = LogicalParam("layer_0/attn/query/kernel", "attention", "weight", 0, (16, 4, 4), Layout("in out out"),
...                  identity="0.attn.q.weight")
>>> [(s.path, t.path) for s, t in pair([a], [b], None, ValueError)]
[('h.0.attn.c_attn.weight#q', 'layer_0/attn/query/kernel')]
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from polyinit.identity import describe
from polyinit.transfer_values import flat_shape

_SAME_ROLE = {"scale": "weight", "offset": "bias", "embedding": "weight", "recurrent": "weight"}


def pair(source: list, target: list, mapping: Mapping[str, str] | None, error: type) -> list[tuple[Any, Any]]:
    """(source, target) LogicalParam pairs in the target's declaration order; raises ``error``
    (a TransferError) at the first divergence."""
    pairs: dict[int, int] = {}  # target index -> source index
    taken: set[int] = set()
    for s_key, t_key in _checked_mapping(mapping, error).items():
        s_index, t_index = _find(source, s_key, "source", error), _find(target, t_key, "target", error)
        if t_index in pairs or s_index in taken:
            raise error(f"transfer: mapping pairs {s_key!r} -> {t_key!r}, but one of them is already mapped")
        pairs[t_index] = s_index
        taken.add(s_index)
    for key in ("identity", "path"):  # identity first; names where both sides have the same ones
        free = {getattr(p, key): i for i, p in enumerate(source) if i not in taken and getattr(p, key)}
        for t_index, t in enumerate(target):
            found = free.get(getattr(t, key))
            if t_index not in pairs and found is not None and found not in taken:
                pairs[t_index] = found
                taken.add(found)
    _refuse_leftovers(source, target, pairs, taken, error)
    out = []
    for t_index, t in enumerate(target):
        s = source[pairs[t_index]]
        if flat_shape(s) != flat_shape(t) or not _compatible(s, t):
            raise error(
                f"transfer: the models diverge at {describe(t)}: the source's {describe(s)} is a "
                f"{s.kind} {s.role} of logical shape {flat_shape(s)}, the target's a {t.kind} {t.role} of "
                f"{flat_shape(t)}; nothing was written"
            )
        out.append((s, t))
    return out


def _refuse_leftovers(source: list, target: list, pairs: dict, taken: set, error: type) -> None:
    s_left = [p for i, p in enumerate(source) if i not in taken]
    t_left = [p for i, p in enumerate(target) if i not in pairs]
    if not s_left and not t_left:
        return
    first_s, first_t = (s_left or [None])[0], (t_left or [None])[0]
    raise error(
        f"transfer: the models diverge: the first source parameter with no counterpart is "
        f"{describe(first_s)}, the first target one {describe(first_t)} ({len(s_left)} unpaired in the "
        f"source, {len(t_left)} in the target; source has {len(source)} logical parameters, target "
        f"{len(target)}); pair them with mapping={{source identity or path: target identity or path}}; "
        "nothing was written"
    )


def _checked_mapping(mapping: Any, error: type) -> dict[str, str]:
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        raise error(
            f"transfer: mapping must be a mapping of str to str (source identity or path -> target "
            f"identity or path), received {mapping!r}"
        )
    return dict(mapping)


def _find(params: list, key: str, side: str, error: type) -> int:
    """The index of the one logical parameter whose identity or path is ``key``."""
    hits = [i for i, p in enumerate(params) if key in (p.identity, p.path)]
    if len(hits) == 1:
        return hits[0]
    names = [p.identity for p in params] + [p.path for p in params]
    close = difflib.get_close_matches(key, names, n=3)
    raise error(
        f"transfer: mapping names {key!r}, which is {'ambiguous in' if hits else 'not'} a logical "
        f"parameter of the {side}" + (f" (close: {', '.join(close)})" if close else "")
    )


def _compatible(source: Any, target: Any) -> bool:
    roles = {_SAME_ROLE.get(source.role, source.role), _SAME_ROLE.get(target.role, target.role)}
    if len(roles) > 1:
        return False
    known = {source.kind, target.kind} - {"other"}
    return len(known) <= 1 or known <= {"dense", "attention"}
