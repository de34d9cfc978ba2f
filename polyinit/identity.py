"""Semantic identities: one name per logical parameter, from what it is in the model.

A logical parameter (``polyinit.params.logical_params``: a whole tensor, a group of tensors such
as nnx's per-gate LSTM kernels, or one block of a packed tensor such as the q of torch's
``in_proj_weight``) gets an identity from the model context (``polyinit.context``): its stack,
its block, its unit in the block, the part of that unit, and its role::

    [stack.][block.]unit[.part].role        e.g.  3.attn.q.weight   decoder.0.mlp.gate.weight
                                                  embedding.0.weight  norm.1.scale  layer.2.bias

Units: ``attn`` (parts ``q``, ``k``, ``v``, ``o``; a second attention in one block is ``attn1``),
``mlp`` (parts ``in``, or ``gate`` and ``up`` for a gated MLP, and ``out``), and, numbered in
declaration order within their block (or among the parameters outside any block), ``norm.N``,
``embedding.N`` (token, position and segment tables, numbered together), ``readout.N``,
``relative_bias.N`` and ``layer.N`` (anything else). The stack (``encoder``/``decoder``) is named
only in a model that has both. Roles: a norm's
``scale``/``offset`` (torch's ``weight``/``bias``), an embedding table's ``weight``.

Two implementations of one architecture get the same identities whatever their declaration order
or their names, as far as the context tells their sites apart: a block's q, k, v and output, its
MLP's input and output and a gated MLP's gate and up (the trace's gate reaches the product through
the activation, the up projection directly) are told apart by what they compute, never by position;
norms and other layers within a block are numbered in declaration order.

>>> from polyinit.params import Param, logical_params
>>> from polyinit.layout import Layout
>>> from polyinit.context import context_from_params
>>> ps = [Param("h.0.mlp.c_proj.weight", "dense", "weight", (8, 32), Layout("in out"), 0),
...       Param("h.0.ln_1.weight", "norm", "scale", (8,), Layout("out"), 1),
...       Param("h.0.attn.q_proj.weight", "dense", "weight", (8, 8), Layout("out in"), 2)]
>>> [p.identity for p in with_identities(logical_params(ps), context_from_params(ps))]
['0.mlp.out.weight', '0.norm.0.scale', '0.attn.q.weight']
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

_ATTENTION = {"q": "q", "k": "k", "v": "v", "qkv": "q", "attn_out": "o"}
_NUMBERED = ("norm", "embedding", "readout", "relative_bias")
_GATE = re.compile(r"(^|[^a-z])(gate|w1|wi_0)([^a-z]|$)")


def with_identities(logical: list, context: Any) -> list:
    """``logical`` (LogicalParam records in declaration order) with ``identity`` filled in from
    ``context`` (a ``ModelContext`` of the same model); see the module docstring."""
    sites = _real_blocks([context.sites[lp.parts[0].path] for lp in logical])
    both_stacks = len({s.stack for s in sites if s.block is not None}) > 1
    gated = _gated_mlp_layers(logical, sites, context)
    counters: dict[tuple, list] = {}
    seen: set[str] = set()
    out = []
    for lp, site in zip(logical, sites):
        scope = (site.stack if both_stacks else "", site.block)
        unit = _unit(lp, site.site, scope, counters, gated)
        prefix = [s for s in (scope[0], "" if site.block is None else str(site.block)) if s]
        identity = ".".join(prefix + [unit, _role(lp, site.site)])
        base, n = identity, 1
        while identity in seen:  # two tensors the context cannot tell apart: numbered, never merged
            identity, n = f"{base}.{n}", n + 1
        seen.add(identity)
        out.append(dataclasses.replace(lp, identity=identity))
    return out


def identities_of(model: Any, **options: Any) -> dict[str, str]:
    """``{logical path: identity}`` of ``model`` (any framework polyinit walks).

    >>> # identities_of(GPT2Model(config))["h.0.attn.c_attn.weight#q"] -> '0.attn.q.weight'
    """
    from polyinit.frameworks import walker_for

    records = walker_for(model).walk(model, **options)
    return {lp.path: lp.identity for lp in identified(records, model)}


def identified(records: list, model: Any = None) -> list:
    """The logical parameters of ``records`` (a walk of ``model``; ``model`` None for a
    state_dict) with their identities, packed tensors unpacked as the registry or the trace
    says."""
    from polyinit.params import logical_params

    context = context_of(model, records)
    return with_identities(logical_params(with_trace_parts(records, context)), context)


def with_trace_parts(records: list, context: Any) -> list:
    """``records`` with the packed parts the trace found (``ModelContext.parts``: q/k/v of a fused
    projection, gate/up of a fused MLP input) where no registry entry declared them: a tensor whose
    parts are equal consecutive blocks of one axis gets that axis split into (parts, size/parts),
    the blocks a ``batch`` axis, as a registry ``ParamType(split=..., packs=...)`` would give it."""
    from polyinit.params import split_view

    parts_of = getattr(context, "parts", None)
    if parts_of is None:
        return records
    out = []
    for record in records:
        parts = () if record.packs else parts_of(record.path)
        axis = _equal_blocks(parts, record.shape)
        if axis is not None:
            logical, semantic = split_view(record.shape, record.layout.pattern, (axis, len(parts)), None)
            if logical is not None:
                record = dataclasses.replace(
                    record, logical=logical, semantic=semantic, packs=tuple(part.name for part in parts)
                )
        out.append(record)
    return out


def _equal_blocks(parts: tuple, shape: tuple) -> int | None:
    """The axis ``parts`` split into equal consecutive blocks, in order, or None."""
    if len(parts) < 2 or any(len(part.axes) != 1 or len(part.ranges) != 1 for part in parts):
        return None
    axis = parts[0].axes[0]
    if any(part.axes != (axis,) for part in parts) or axis >= len(shape) or shape[axis] % len(parts):
        return None
    size = shape[axis] // len(parts)
    expected = [(i * size, (i + 1) * size) for i in range(len(parts))]
    return axis if [tuple(part.ranges[0]) for part in parts] == expected else None


def context_of(model: Any, records: list) -> Any:
    """The sites identities are read from: ``model_context(model)``'s (a traced forward pass,
    ``polyinit.structure``), except where the trace calls a parameter ``other`` and its names give
    it a site (a lone attention outside any block, which the structure passes leave as other);
    the names' alone for a state_dict (``model`` None) or a model the trace does not place."""
    import warnings

    from polyinit.context import context_from_params, model_context

    named = context_from_params(records)
    if model is None:
        return named
    try:
        with warnings.catch_warnings():  # the walk itself warns about unregistered layer types
            warnings.simplefilter("ignore")
            traced = model_context(model)
    except Exception:
        return named
    if any(record.path not in traced.sites for record in records):
        return named
    sites = {
        record.path: traced.sites[record.path]
        if traced.sites[record.path].site != "other"
        else named.sites[record.path]
        for record in records
    }
    return _Sites(sites, traced.parts)


class _Sites:
    """The two things identities read from a context: ``sites[path]`` and ``parts(path)``."""

    def __init__(self, sites: dict, parts: Any):
        self.sites, self.parts = sites, parts


def _real_blocks(sites: list) -> list:
    """The sites with their blocks renumbered 0.. per stack, counting only containers that hold
    an attention or MLP parameter (a ``Sequential``'s numbered layers are not blocks)."""
    from polyinit.context import BLOCK_SITES, Site

    real = sorted({(s.stack, s.block) for s in sites if s.block is not None and s.site in BLOCK_SITES})
    rank: dict[tuple, int] = {}
    for stack, block in real:
        rank[(stack, block)] = sum(1 for key in rank if key[0] == stack)
    return [Site(s.site, rank.get((s.stack, s.block)), s.stack) for s in sites]


def _unit(lp: Any, site: str, scope: tuple, counters: dict, gated: dict) -> str:
    """The unit (and part) of ``lp`` in its scope, counting units by layer in declaration order."""
    layer = lp.parts[0].layer
    if site in _ATTENTION:
        starts = counters.setdefault((scope, "attn"), [])
        if site in ("q", "qkv") and layer not in starts:
            starts.append(layer)
        index = max(len(starts) - 1, 0)
        part = lp.packed[2] if lp.packed else _ATTENTION[site]
        return f"{'attn' if index == 0 else f'attn{index}'}.{part}"
    if site == "mlp_in":
        if lp.packed:
            return f"mlp.{lp.packed[2]}"
        return f"mlp.{gated.get(layer, 'in')}"
    if site == "mlp_out":
        return "mlp.out"
    # Token, position and segment tables are numbered together: whether an added table is a
    # "position" one is read differently by different tracers (BERT's token types).
    name = "embedding" if site == "position" else site if site in _NUMBERED else "layer"
    layers = counters.setdefault((scope, name), [])
    if layer not in layers:
        layers.append(layer)
    return f"{name}.{layers.index(layer)}"


def _gated_mlp_layers(logical: list, sites: list, context: Any) -> dict[int, str]:
    """{layer: "gate" | "up" | "inN"} for blocks with two MLP input layers (a gated MLP). The trace
    marks which is which (``ModelContext.parts``: the gate reaches the elementwise product through
    the activation, the up projection directly); where it does not (a state_dict, a model it
    cannot run), the one whose name says gate (``gate_proj``, ``feedforward_gate_dense``, ``w1``,
    ``wi_0``) is the gate and the other the up projection; where nothing says so they are numbered
    in declaration order."""
    parts_of = getattr(context, "parts", None)
    by_block: dict[tuple, list] = {}
    for lp, site in zip(logical, sites):
        if site.site == "mlp_in" and not lp.packed:
            layers = by_block.setdefault((site.stack, site.block), [])
            if all(layer != lp.parts[0].layer for layer, _, _ in layers):
                marked: tuple = parts_of(lp.parts[0].path) if parts_of is not None else ()
                traced = marked[0].name if len(marked) == 1 else ""
                layers.append((lp.parts[0].layer, lp.parts[0].layer_path or lp.path, traced))
    named: dict[int, str] = {}
    for layers in by_block.values():
        if len(layers) < 2:
            continue
        traced = sorted(mark for _, _, mark in layers)
        gates = [layer for layer, path, _ in layers if _GATE.search(path.lower())]
        if traced == ["gate", "up"]:
            named.update({layer: mark for layer, _, mark in layers})
        elif len(layers) == 2 and len(gates) == 1:
            named.update({layer: "gate" if layer in gates else "up" for layer, _, _ in layers})
        else:
            named.update({layer: f"in{i}" for i, (layer, _, _) in enumerate(layers)})
    return named


def _role(lp: Any, site: str) -> str:
    if site == "norm" or lp.kind == "norm":
        return {"weight": "scale", "bias": "offset"}.get(lp.role, lp.role)
    return "weight" if lp.role == "embedding" else lp.role


def describe(lp: Any | None) -> str:
    """``identity (path, logical shape)`` of a LogicalParam, for error messages."""
    if lp is None:
        return "nothing"
    return f"{lp.identity or '?'} ({lp.path}, logical shape {tuple(lp.shape)})"
