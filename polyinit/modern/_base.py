"""What every modern scheme shares: the validated model context, the rule collector ``_RuleSet``
and small spec helpers. Schemes live one family per module next to this one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from polyinit import schemes
from polyinit.context import SITES, ContextError, ModelContext, model_context
from polyinit.modern import _args
from polyinit.rules import KEEP, Rules, Selector, predicate
from polyinit.spec import Normal, Spec, TruncatedNormal

_WEIGHTS = ("weight", "embedding", "recurrent")


def _context(scheme: str, model_or_context: Any, options: dict, own: Iterable[str] = ()) -> ModelContext:
    """The model context for ``scheme``, every keyword checked first (``own``: the scheme's own
    argument names, offered as close matches for a misspelt keyword)."""
    options = _args.keywords(scheme, options, tuple(own) + ("seed",))
    if isinstance(model_or_context, ModelContext):
        if options:
            raise ContextError(f"{scheme}: pass {', '.join(options)} to model_context(...), not with a ready context")
        return model_or_context
    ctx = model_context(model_or_context, **options)
    _args.stacks_exist(scheme, options.get("depth"), [site.stack for site in ctx.sites.values()])
    return ctx


def _normal(std: float, cutoff: float | None = None) -> Spec:
    """N(0, std^2), or truncated at +-cutoff std (torch ``trunc_normal_(std, -c std, c std)``:
    ``std`` is the std before the cut)."""
    if cutoff is None:
        return Normal(std=std)
    return TruncatedNormal(std=std, low=-cutoff, high=cutoff, bounds="std")


class _RuleSet:
    """Collects (selector, spec) pairs over a context; selectors match record paths, so a rule
    means the same parameters whichever framework the model is written in.

    Coverage (nothing left at the framework's default unless the user said ``KEEP``): a scheme
    that calls ``rest`` speaks for the whole model, so ``rules`` raises a ``ContextError`` naming
    every trainable parameter no rule took, and how to place it. ``rest(None)`` keeps the
    weights at site ``other`` (the reference code leaves them too), as explicit ``KEEP`` rules.
    Parameters marked ``model_context(..., keep=selector)`` are kept before any rule."""

    def __init__(self, context: ModelContext, scheme: str):
        self.context, self.scheme = context, scheme
        self.pairs: list[tuple[Selector, Any]] = []
        self.taken: set[str] = set()
        self.whole = self.keeps_other = False
        kept = tuple(p.path for p in context.params if p.path in getattr(context, "kept", ()))
        if kept:
            self.add(kept, KEEP, "kept (keep=)")

    def role(self, param: Any) -> str:
        return self.context.role(param) if hasattr(self.context, "role") else param.role

    def at(
        self, *sites: str, block: int | None = None, stack: str | None = None, roles: Sequence[str] = _WEIGHTS
    ) -> list[str]:
        return [
            p.path
            for p in self.context.params
            if self.context.sites[p.path].site in sites
            and self.role(p) in roles
            and (block is None or self.context.sites[p.path].block == block)
            and (stack is None or self.context.sites[p.path].stack == stack)
        ]

    def add(self, paths: Sequence[str], spec: Any, what: str) -> None:
        """One rule for ``paths`` not taken by an earlier rule (none: no rule)."""
        fresh = tuple(p for p in paths if p not in self.taken)
        if not fresh:
            return
        self.taken.update(fresh)
        wanted = frozenset(fresh)
        self.pairs.append((predicate(lambda p: p.path in wanted, f"{self.scheme}:{what}"), spec))

    def rest(self, weight: Spec | None, *, norms: bool = True) -> None:
        """Weights not yet taken get ``weight`` (None: those at site ``other`` are kept), biases 0,
        norm scales 1 and offsets 0."""
        params, sites = self.context.params, self.context.sites
        self.whole, self.keeps_other = True, weight is None
        if weight is not None:
            self.add(
                [p.path for p in params if self.role(p) in _WEIGHTS and sites[p.path].site != "norm"],
                weight,
                "other weights",
            )
        self.add(
            [p.path for p in params if self.role(p) == "bias" and sites[p.path].site != "norm"],
            schemes.zeros(),
            "biases",
        )
        if norms:
            self.add(self.norms("scale", "weight"), schemes.ones(), "norm scales")
            self.add(self.norms("offset", "bias"), schemes.zeros(), "norm offsets")

    def norms(self, *roles: str) -> list[str]:
        return [
            p.path for p in self.context.params if self.context.sites[p.path].site == "norm" and self.role(p) in roles
        ]

    def rules(self, seed: int) -> Rules:
        if self.whole:
            self.cover()
        return Rules(self.pairs, seed=seed)

    def cover(self) -> None:
        """Every trainable parameter has a rule, or a ContextError names the ones without."""
        sites = self.context.sites
        left = [
            p
            for p in self.context.params
            if p.trainable and p.path not in self.taken and p.role not in ("running_mean", "running_var")
        ]
        if self.keeps_other:
            self.add(
                [p.path for p in left if sites[p.path].site == "other" and self.role(p) in _WEIGHTS],
                KEEP,
                "kept as the reference leaves them",
            )
            left = [p for p in left if p.path not in self.taken]
        if not left:
            return
        source = getattr(self.context, "source", lambda path: "name")
        listed = "; ".join(
            f"{p.path} ({p.kind} {self.role(p)}, shape {p.shape}, site {sites[p.path].site} from {source(p.path)})"
            for p in left[:12]
        )
        more = f" and {len(left) - 12} more" if len(left) > 12 else ""
        raise ContextError(
            f"{self.scheme}: cannot place {len(left)} parameter(s) of this model: {listed}{more}. Place them with "
            "model_context(model, sites={'<site>': name('<path glob>')}) (sites: " + ", ".join(SITES) + "), "
            "or keep them at the framework's default with keep=name('<path glob>') (KEEP)"
        )


def _xavier(gain: float, *, normal: bool = False) -> Spec:
    return schemes.glorot_normal(gain=gain) if normal else schemes.glorot_uniform(gain=gain)


def _attention(out: _RuleSet, stack: str, q: Spec, k: Spec, v: Spec, rest: Spec, what: str) -> None:
    """q, k, v (fused qkv as three blocks along the output axis), then output and MLP weights."""
    from polyinit.spec import Blocks

    out.add(out.at("qkv", stack=stack), Blocks(axis="out", parts=(q, k, v)), f"{what} qkv")
    out.add(out.at("q", stack=stack), q, f"{what} q")
    out.add(out.at("k", stack=stack), k, f"{what} k")
    out.add(out.at("v", stack=stack), v, f"{what} v")
    out.add(out.at("attn_out", "mlp_in", "mlp_out", stack=stack), rest, f"{what} attention out, MLP")


# A gated MLP computes w2(act(w1 x) * w3 x): the gate w1 goes through the activation, the up
# projection w3 does not. Llama-style depth inits scale w3 with the outputs, so the two must be
# told apart: by a "mlp_gate" site where the context has one, then by the trace (a separate
# projection whose output reaches the product through the activation carries one part, "gate";
# the other one part, "up"), else by these name hints.
_GATE_NAMES = ("w1", "gate_proj", "fc_1", "wi_0", "gate", "w_gate")
_UP_NAMES = ("w3", "up_proj", "fc_2", "wi_1", "w_up")


def gated_up(ctx: ModelContext, scheme: str) -> list[str]:
    """Paths of the up projections (w3) of gated MLPs: in each block with two MLP input weights,
    the one that is not the gate. A block whose two inputs cannot be told apart is an error."""
    by_block: dict[tuple, list] = {}
    for p in ctx.params:
        site = ctx.sites[p.path]
        if site.site in ("mlp_in", "mlp_gate") and ctx.role(p) in _WEIGHTS and site.block is not None:
            by_block.setdefault((site.stack, site.block), []).append(p)
    ups = []
    for members in by_block.values():
        if len(members) < 2:
            continue
        marked = [p for p in members if ctx.sites[p.path].site == "mlp_gate"]
        traced = {p.path: _whole_part(ctx, p.path) for p in members}
        named = [p for p in members if _module(p.path) in _UP_NAMES]
        if marked:
            ups += [p.path for p in members if p not in marked]
        elif "gate" in traced.values() and all(v in ("gate", "up") for v in traced.values()):
            ups += [path for path, part in traced.items() if part == "up"]
        elif len(named) == 1 and any(_module(p.path) in _GATE_NAMES for p in members):
            ups.append(named[0].path)
        else:
            raise ContextError(
                f"{scheme}: a gated MLP has inputs {[p.path for p in members]} and which is "
                "the gate (w1, through the activation) and which the up projection (w3) "
                "could not be told; mark the up projections with sites={'mlp_out': ...} "
                "to scale them with the outputs, or the gates with sites={'mlp_gate': ...}"
            )
    return ups


def _whole_part(ctx: ModelContext, path: str) -> str | None:
    """``"gate"`` or ``"up"`` where the trace marked a whole (unpacked) MLP input as one, else None."""
    parts = ctx.parts(path)
    return parts[0].name if len(parts) == 1 and parts[0].name in ("gate", "up") else None


def _module(path: str) -> str:
    import re

    tokens = [t for t in re.split(r"[./]", path) if t]
    return tokens[-2].lower() if len(tokens) >= 2 else ""


def sibling_weight(ctx: ModelContext, bias_path: str) -> Any:
    """The weight record of the layer a bias belongs to (same path up to the last name), or None."""
    import re

    stem = re.split(r"[./][^./]+$", bias_path)[0]
    for p in ctx.params:
        if ctx.role(p) in _WEIGHTS and re.split(r"[./][^./]+$", p.path)[0] == stem:
            return p
    return None
