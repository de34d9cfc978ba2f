"""muP (Tensor Programs V, Yang et al. 2021; microsoft/mup 1.0.0 ``mup/init.py``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from polyinit import schemes
from polyinit.context import SITES, ContextError, ModelContext, model_context
from polyinit.errors import SpecError
from polyinit.modern import _args
from polyinit.modern._base import _WEIGHTS, _context, _RuleSet
from polyinit.params import Param
from polyinit.plan import resolve
from polyinit.rules import Rules
from polyinit.spec import Normal, Spec

# muP's classes of weights by their width axes: two (hidden), one on the output side (input
# weights, embeddings), one on the input side (output weights, the readout).
MUP_CLASSES = ("input", "hidden", "output")
_INIT_KEYS = MUP_CLASSES + tuple(s for s in SITES if s not in ("other", "norm"))


def mup(
    model: Any,
    base: Any,
    *,
    std: float = 0.02,
    init: Mapping[str, Spec] | None = None,
    readout_zero: bool = False,
    query_zero: bool = False,
    seed: int = 0,
    **context: Any,
) -> Rules:
    """muP: each axis whose size differs from the ``base`` model's is a width axis. A weight's
    base initializer is resolved **on its base-model shape**, giving sigma_base; hidden weights (two
    width axes) get sigma_base / sqrt(width_mult), width_mult = fan_in / base fan_in; input and
    output weights, embeddings and the readout keep sigma_base (same distribution family, rescaled).
    That is what every ``mup.init`` function does (``normal_``, ``uniform_``, ``trunc_normal_``,
    ``xavier_*`` through ``_inf_fan_adjust_xavier``, ``kaiming_*`` through
    ``_inf_fan_adjust_kaiming``), and ``MuReadout``'s rescale of torch's default.

    ``init`` gives base initializers per site (``"q"``, ``"mlp_in"``, ``"readout"``, ...) or per
    muP class (``"input"``, ``"hidden"``, ``"output"``); a site wins over a class, and weights
    named by neither get N(0, ``std``^2). E.g. mup's MLP example:
    ``init={"input": lecun_normal(), "hidden": lecun_normal(), "readout": zeros()}`` (its
    ``kaiming_normal_(a=1)``). Biases 0, norms 1 and 0. ``readout_zero`` and ``query_zero``
    zero the readout and the query (Tensor Programs V, App. D.2).

    Not initialisation, so not applied: the readout's output multiplier 1/width_mult
    (``MuReadout``), attention logits scaled by 1/d instead of 1/sqrt(d), and per-layer learning
    rates (``mup.MuAdam``). ``base`` is the same architecture at the base width (a model or a
    context; a model's context is built with the ``example_input``, ``sites`` and ``depth`` given
    for ``model``); parameters are paired by declaration order, and a base of another architecture
    is refused.

    >>> # report = apply(model, mup(model, base_model, init={"hidden": he_normal()}))
    """
    std, seed = _args.std("mup", "std", std), _args.seed("mup", seed)
    readout_zero = _args.flag("mup", "readout_zero", readout_zero)
    query_zero = _args.flag("mup", "query_zero", query_zero)
    init = _init_table(init)
    ctx = _context("mup", model, context, ("base", "std", "init", "readout_zero", "query_zero"))
    base_ctx = base if isinstance(base, ModelContext) else _base_context(base, context)
    _same_architecture(ctx, base_ctx)
    out = _RuleSet(ctx, "mup")
    if readout_zero:
        out.add(out.at("readout", roles=("weight", "bias")), schemes.zeros(), "readout (zero)")
    if query_zero:
        out.add(out.at("q"), schemes.zeros(), "query (zero)")
    default = Normal(std=std)
    for p, b in zip(ctx.params, base_ctx.params):
        site = ctx.sites[p.path].site
        if ctx.role(p) not in _WEIGHTS or site == "norm":
            continue
        kind = _width_class(p.shape, b.shape, ctx, p)
        spec = init.get(site, init.get(kind, default))
        mult = ctx.fan_in(p) / base_ctx.fan_in(b) if kind == "hidden" else 1.0
        out.add([p.path], _rescaled(spec, p, b, mult), f"{kind} {site}, width_mult {mult:g}")
    out.rest(default)
    return out.rules(seed)


def _init_table(init: Any) -> dict:
    if init is None:
        return {}
    if not isinstance(init, Mapping):
        raise SpecError(f"mup: init must map a site or muP class to a spec, received init={init!r}")
    for key, spec in init.items():
        _args.one_of("mup", "init key", key, _INIT_KEYS)
        if not isinstance(spec, Spec):
            raise SpecError(
                f"mup: init[{key!r}] must be a polyinit spec (e.g. polyinit.he_normal()), received {spec!r}"
            )
    return dict(init)


# What the model's context is given about its architecture holds for the base too (the same
# architecture at another width): the input its forward pass takes, the sites, the depth.
_SHARED_WITH_BASE = ("example_input", "sites", "depth")


def _base_context(base: Any, context: Mapping[str, Any]) -> ModelContext:
    if base is None:
        raise ContextError("mup: base must be the model at its base width (a model or a ModelContext), received None")
    return model_context(base, **{k: v for k, v in context.items() if k in _SHARED_WITH_BASE})


def _same_architecture(ctx: ModelContext, base_ctx: ModelContext) -> None:
    """The base must be the model at another width: the same parameters in the same order, each
    of the same kind, role, rank and site."""
    if len(base_ctx.params) != len(ctx.params):
        raise ContextError(
            f"mup: the base model has {len(base_ctx.params)} parameters, the model "
            f"{len(ctx.params)}; they must be the same architecture"
        )
    for p, b in zip(ctx.params, base_ctx.params):
        mine = (p.kind, ctx.role(p), len(p.shape), ctx.sites[p.path].site)
        theirs = (b.kind, base_ctx.role(b), len(b.shape), base_ctx.sites[b.path].site)
        if mine != theirs:
            raise ContextError(
                f"mup: the base model is another architecture: {p.path} is (kind, role, rank, site) "
                f"{mine}, its base counterpart {b.path} is {theirs}"
            )


def _width_class(shape: Sequence[int], base_shape: Sequence[int], ctx: ModelContext, p: Param) -> str:
    """'hidden', 'input', 'output', or 'fixed' where no axis is a width axis (as in the base)."""
    wide = [i for i, (n, m) in enumerate(zip(shape, base_shape)) if n != m]
    if len(wide) >= 2:
        return "hidden"
    if not wide:
        return "fixed"
    fan_in_changes = ctx.fan_in(p) != _fan_in(base_shape, p)
    return "output" if fan_in_changes else "input"


def _fan_in(shape: Sequence[int], p: Param) -> int:
    from polyinit.layout import compute_fans

    return compute_fans(tuple(shape), p.layout).fan_in


def _rescaled(spec: Spec, p: Param, b: Param, mult: float) -> Spec:
    """``spec`` scaled so that its std on ``p``'s shape is its std on the base shape / sqrt(mult)."""
    on_base, on_model = resolve(spec, b.shape, b.layout).stats, resolve(spec, p.shape, p.layout).stats
    if on_base is None or on_model is None or on_base.std is None or on_model.std is None:
        raise SpecError(f"mup: the base initializer {spec!r} for {p.path} has no closed-form std to rescale")
    if on_model.std == 0.0:
        return spec
    if mult != 1.0 and on_base.mean:
        raise SpecError(
            f"mup: {p.path} is a hidden weight; its base initializer must have mean 0 "
            f"(mup.init asserts the same), received {spec!r}"
        )
    factor = on_base.std / math.sqrt(mult) / on_model.std
    return spec if math.isclose(factor, 1.0, rel_tol=1e-12) else spec * factor
