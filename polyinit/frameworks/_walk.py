"""The part of every walker that does not depend on the framework: turning each layer's own
tensors into portable records in declaration order (positions, kind positions, aliases of tied
tensors, roles, layouts, logical views), and remembering each record's native handle."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Optional, TypeAlias, Union

from polyinit.frameworks import module_type_of
from polyinit.layout import Layout
from polyinit.params import ModelError, ModuleType, Param, ParamType, Part, split_view

# A layer's own view of one leaf: (logical shape, semantic layout[, native pattern]) (see Builder.layer).
View: TypeAlias = Union[
    tuple[Optional[tuple[int, ...]], Optional[Layout]], tuple[Optional[tuple[int, ...]], Optional[Layout], str]
]

ROLE_BY_NAME = {
    "weight": "weight",
    "kernel": "weight",
    "bias": "bias",
    "gamma": "scale",
    "scale": "scale",
    "beta": "offset",
    "offset": "offset",
    "embedding": "embedding",
    "embeddings": "embedding",
    "running_mean": "running_mean",
    "moving_mean": "running_mean",
    "mean": "running_mean",
    "running_var": "running_var",
    "moving_variance": "running_var",
    "var": "running_var",
    "recurrent_kernel": "recurrent",
    "depthwise_kernel": "weight",
    "pointwise_kernel": "weight",
}


def role_by_name(kind: str, leaf: str) -> str:
    role = ROLE_BY_NAME.get(leaf, "other")
    if kind == "norm":
        return {"weight": "scale", "bias": "offset"}.get(role, role)
    if kind == "embedding" and role == "weight":
        return "embedding"
    return role


def fused_rnn_type(source: str, bias: bool, gates: int, bias_group: Optional[str]) -> ParamType:
    """One tensor of a fused recurrent layer that packs its gates along the first axis, as torch
    (``weight_ih_l0`` (gates*H, in), ``bias_hh_l0`` (gates*H,)) and Gluon (``l0_i2h_weight``) do.

    ``source``: ``"input"`` (ih, i2h), ``"hidden"`` (hh, h2h) or ``"projection"`` (torch's hr,
    Gluon's h2r: not packed). ``gates``: the blocks the packed axis splits into in the logical view
    (4 for an LSTM, in the order i, f, g, o in torch, Keras, Flax and Gluon alike); 1 keeps it
    whole. ``bias_group``: the logical bias that the input and hidden biases sum into (both are
    added to every gate's pre-activation), or None where they do not (a GRU's b_hn is scaled by
    the reset gate).

    >>> fused_rnn_type("input", False, 4, "bias_l0").split
    (0, 4)
    >>> fused_rnn_type("hidden", True, 4, "bias_l0").part
    Part(group='bias_l0', combine='sum', index=1)
    """
    split = (0, gates) if gates > 1 and source != "projection" else None
    if not bias:
        return ParamType("recurrent" if source == "hidden" else "weight", "out in", split=split)
    part = None if bias_group is None else Part(bias_group, "sum", 0 if source == "input" else 1)
    return ParamType("bias", "out", split=split, part=part)


def fused_rnn_types(
    leaves: list[str], parse: Callable[[str], Optional[tuple[str, bool, str]]], gates: int, sums: bool
) -> dict:
    """``fused_rnn_type`` for each leaf of a fused recurrent layer that ``parse`` recognises:
    ``parse(leaf)`` gives (source, is a bias, the name of the logical bias it sums into) or None.
    ``sums``: whether the input and hidden biases sum (not in a GRU)."""
    types = {}
    for leaf in leaves:
        parsed = parse(leaf)
        if parsed is not None:
            source, bias, group = parsed
            types[leaf] = fused_rnn_type(source, bias, gates, group if sums else None)
    return types


def is_float(dtype: str) -> bool:
    return any(name in dtype for name in ("float16", "bfloat16", "float32", "float64"))


def dtype_name(dtype: Any) -> str:
    text = str(dtype).replace("torch.", "").replace("<class 'numpy.", "").rstrip("'>")
    return text


class Builder:
    """Collects records layer by layer. ``handles[path]`` is the walker's own object for the
    parameter (tensor, variable, array); ``unknown[type]`` the unregistered module types that hold
    parameters (reported in their own section and warned about, never silently "other")."""

    def __init__(self, default_layout: str, sep: str = "."):
        self.default_layout, self.sep = default_layout, sep
        self.params: list[Param] = []
        self.handles: dict[str, Any] = {}
        self.unknown: dict[str, list[str]] = {}
        self._owner: dict[int, int] = {}
        self._aliases: dict[int, list[str]] = {}
        self._kind_counts: dict[str, int] = {}
        self._layers = 0
        self._units: dict[str, tuple[int, int]] = {}
        self.overrides: dict[str, ParamType] = {}

    def add_overrides(self, prefix: str, entry: Optional[ModuleType]) -> None:
        """An ancestor's dotted entries (``c_attn.weight``) for its descendants' parameters."""
        if entry is None:
            return
        for leaf, ptype in entry.params.items():
            if self.sep in leaf or "." in leaf:
                leaf = leaf.replace(".", self.sep)
                self.overrides[f"{prefix}{self.sep}{leaf}" if prefix else leaf] = ptype

    def layer(
        self,
        layer_path: str,
        module: Any,
        own: list[tuple],
        *,
        key_prefix: str,
        kind: Optional[str] = None,
        fallback: Optional[str] = None,
        views: Optional[Mapping[str, View]] = None,
        types: Optional[dict] = None,
        unit: Optional[str] = None,
    ) -> None:
        """Add one layer. ``own``: (leaf, handle, identity, shape, dtype, trainable, device[, type leaf]) tuples;
        ``kind`` forces the kind (a layer inside an attention block); ``fallback`` is the walker's
        own guess for unregistered types; ``views[leaf] = (logical_shape, semantic Layout[, native pattern])``;
        ``types[type leaf]``: a ParamType the walker worked out itself (torch's ``weight_ih_l1``,
        whose names carry layer numbers), before the registry's. ``unit``: layers given the same
        unit are one layer (one position): a recurrent cell whose gates are child modules (nnx's
        ``LSTMCell.ii``, ``.hi``, ...). A ParamType's ``part`` group is prefixed with the unit, or
        the layer's ``key_prefix``, so that it names one logical parameter in the model."""
        entry, type_path = module_type_of(module) if module is not None else (None, "")
        fresh = []
        for row in own:
            leaf, handle, identity, shape, dtype, trainable, device = row[:7]
            type_leaf = row[7] if len(row) > 7 else leaf  # the name the module type knows it by
            path = f"{layer_path}{self.sep}{leaf}" if layer_path else leaf
            if not is_float(dtype):
                continue  # integer counters, step numbers, masks: not initialised, not reported
            if identity in self._owner:
                self._aliases[self._owner[identity]].append(path)
                continue
            fresh.append((type_leaf, path, handle, identity, tuple(int(d) for d in shape), dtype, trainable, device))
        if not fresh:
            return
        resolved_kind = kind or (entry.kind if entry else None) or fallback
        if resolved_kind is None:
            resolved_kind = "other"
            self.unknown.setdefault(type_path, []).extend(p for _, p, *_ in fresh)
        position, kind_position = self._position(unit, resolved_kind)
        for leaf, path, handle, identity, shape, dtype, trainable, device in fresh:
            ptype = (
                (types or {}).get(leaf)
                or self.overrides.get(path)
                or (entry.params.get(leaf) or entry.params.get("*") if entry else None)
            )
            role = ptype.role if ptype else role_by_name(resolved_kind, leaf)
            pattern = ptype.layout if ptype else self.default_layout
            logical, semantic = split_view(
                shape, pattern, ptype.split if ptype else None, ptype.semantic if ptype else None
            )
            if views and leaf in views and logical is None:
                view = views[leaf]
                logical, semantic = view[0], view[1]
                if len(view) > 2:  # the layer's own convention differs from its type's (attention kernels)
                    pattern = view[2]
            self._owner[identity] = len(self.params)
            self._aliases[len(self.params)] = []
            self.handles[path] = handle
            part = None
            if ptype is not None and ptype.part is not None:
                base = key_prefix if unit is None else unit
                group = f"{base}{self.sep}{ptype.part.group}" if base else ptype.part.group
                part = dataclasses.replace(ptype.part, group=group)
            self.params.append(
                Param(
                    path,
                    resolved_kind,
                    role,
                    shape,
                    Layout(pattern),
                    position,
                    dtype,
                    layer_path,
                    type_path,
                    kind_position,
                    f"{key_prefix}{self.sep}{leaf}",
                    (),
                    bool(trainable),
                    str(device),
                    logical,
                    semantic,
                    part,
                    ptype.packs if ptype is not None and logical is not None else (),
                )
            )

    def _position(self, unit: Optional[str], kind: str) -> tuple[int, int]:
        """(position, kind position) of a new layer; a unit seen before keeps its first ones."""
        if unit is not None and unit in self._units:
            return self._units[unit]
        position = self._layers
        self._layers += 1
        kind_position = self._kind_counts.get(kind, 0)
        self._kind_counts[kind] = kind_position + 1
        if unit is not None:
            self._units[unit] = (position, kind_position)
        return position, kind_position

    def finish(self) -> list[Param]:
        for index, aliases in self._aliases.items():
            if aliases:
                self.params[index] = dataclasses.replace(self.params[index], aliases=tuple(aliases))
        if self.unknown:
            counts = {t: len(p) for t, p in self.unknown.items()}
            warnings.warn(unregistered_types_message(counts), UnregisteredTypesWarning, stacklevel=3)
        return self.params


class UnregisteredTypesWarning(UserWarning):
    """Module types with parameters that no registry entry describes (their parameters are kind
    'other'); ``polyinit.context`` passes it on only for those the trace did not type either."""


def unregistered_types_message(counts: Mapping[str, int], nor: str = "") -> str:
    """The warning's text for ``counts`` (module type -> parameters); ``nor``: what else did not
    type them ("the traced structure")."""
    listed = "; ".join(f"{t} ({n} parameters)" for t, n in counts.items())
    return (
        f"polyinit: module types with parameters that no registry entry describes{f' nor {nor} types' if nor else ''}: "
        f"{listed}; their parameters are kind 'other' (register them with polyinit.frameworks.register_module_type)"
    )


def assign_item(target: Any, values: Any) -> None:
    """``target[...] = values``: how an nnx Variable or an array in a dict is written."""
    target[...] = values


def write_or_restore(
    framework: str, pending: list, backup: Callable[[Any], Any], assign: Callable[[Any, Any], None]
) -> None:
    """Assign each ``(target, values)`` after keeping ``backup(target)``; if an assignment fails,
    put every target written so far back as it was and raise a ModelError: all or nothing."""
    written = []
    try:
        for target, values in pending:
            written.append((target, backup(target)))
            assign(target, values)
    except Exception as error:
        for target, saved in written:
            assign(target, saved)
        raise ModelError(
            f"{framework}: writing failed ({type(error).__name__}: {error}); "
            f"the {len(written)} parameters written were restored"
        ) from error
