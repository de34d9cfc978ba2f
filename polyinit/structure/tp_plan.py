"""Tensor-parallel plans as evidence of a parameter's site (read where the trace is silent).

transformers ships, for its own distributed engine, a plan per model: module pattern -> how
the module's weight is split across devices (``model.tp_plan``, or the config's
``base_model_tp_plan`` under the model's ``base_model_prefix``). The split follows the
computation: a ``colwise`` linear (output features split) reads the block's input and feeds a
nonlinearity or attention (an *input* projection: q, k, v, MLP in), a ``rowwise`` one (input
features split, a reduction after it) writes back to the residual stream (an *output*
projection: attention out, MLP out), ``embedding_rowwise`` is a token table and a
``*gather_output`` linear produces the model's output (the readout).

>>> plan = {"model.layers.*.self_attn.o_proj": "rowwise", "lm_head": "colwise_gather_output"}
>>> direction("model.layers.3.self_attn.o_proj.weight", plan), direction("lm_head.weight", plan)
('out', 'readout')
>>> direction("model.layers.3.self_attn.o_proj", plan) is None  # a module path, not a parameter
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def plan_of(model: Any) -> dict[str, str]:
    """The model's tensor-parallel plan with full module paths, or {} where it has none."""
    plan = getattr(model, "tp_plan", None)
    if not isinstance(plan, Mapping):
        plan = getattr(model, "_tp_plan", None)
    if isinstance(plan, Mapping) and plan:
        return {str(k): str(v) for k, v in plan.items()}
    config = getattr(model, "config", None)
    base = getattr(config, "base_model_tp_plan", None)
    if not isinstance(base, Mapping) or not base:
        return {}
    prefix = getattr(model, "base_model_prefix", "") or ""
    nested = bool(prefix) and hasattr(model, prefix)  # a task model holds its base model there
    return {(f"{prefix}.{k}" if nested else str(k)): str(v) for k, v in base.items()}


def direction(path: str, plan: Mapping[str, str]) -> str | None:
    """What the plan says of the parameter at ``path`` (its module is ``path`` without the last
    dotted part): ``"in"`` (colwise), ``"out"`` (rowwise), ``"embedding"`` or ``"readout"``
    (gathers the output), or None where no pattern matches the module (``*`` stands for one
    dotted part, a block number)."""
    module = path.rsplit(".", 1)[0] if "." in path else ""
    for pattern, style in plan.items():
        if re.fullmatch(r"\.".join("[^.]+" if part == "*" else re.escape(part) for part in pattern.split(".")), module):
            return _meaning(style)
    return None


def _meaning(style: str) -> str | None:
    style = style.lower()
    if "gather_output" in style:
        return "readout"
    if style.startswith("embedding"):
        return "embedding"
    if "colwise" in style:
        return "in"
    if "rowwise" in style:
        return "out"
    return None
