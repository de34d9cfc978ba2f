"""Depth- and width-aware schemes of modern transformers and residual nets, as portable rule sets.

Each function takes a ``ModelContext`` (``polyinit.context.model_context(model)``, or a model,
from which the context is derived) and returns a ``Rules`` set made of plain specs: no backend
code, so the same call works on a torch, Keras, nnx or linen model of the same architecture.

    from polyinit import modern
    from polyinit.rules import apply
    report = apply(model, modern.gpt2(model, seed=0))

Notation: d the width (d_model), L the number of residual blocks, sigma the base std; N(0, s^2)
has std s. Parameters a scheme does not speak about (pooler, classifier heads, ...) are left as
the framework made them and reported as unmatched. Several schemes also change the forward pass
(muP's 1/d attention and readout multipliers, DeepNet's alpha, u-muP's op scales, T-Fixup's
removed LayerNorm): those are not initialisation, so they are named in the docstrings and the
scheme's ``notes`` but not applied.

| scheme | formula (std) | reference |
|---|---|---|
| ``gpt2`` | all weights sigma = 0.02; residual outputs 0.02 / sqrt(2 L) | nanoGPT ``model.py``; transformers ``GPT2PreTrainedModel._init_weights`` |
| ``megatron`` | sigma; output layers sigma / sqrt(m L), m = 2 | Megatron-LM ``init_method_normal`` / ``scaled_init_method_normal`` |
| ``olmo`` | ``mitchell``: inputs 1/sqrt(d), attn_out_i 1/sqrt(2 d (i+1)), ff_out_i 1/sqrt(2 d_ff (i+1)), cut at 3 std; ``full_megatron``: sigma, outputs sigma / sqrt(2 L), readout 1/sqrt(d) | OLMo ``olmo/initialization.py`` |
| ``mup`` | hidden (width x width) sigma / sqrt(width_mult); input, vector, readout weights sigma (readout optionally 0) | microsoft/mup ``mup/init.py`` |
| ``u_mup`` | every weight N(0, 1) (scales live in the ops) | graphcore-research/unit-scaling |
| ``fixup`` | branch convs He(fan_out) * L^(-1/(2m-2)); last conv of each branch 0; final fc 0 | hongyi-zhang/Fixup |
| ``t_fixup`` | xavier (q/k/v gain 1/sqrt 2), then enc 0.67 N^(-1/4), dec (9M)^(-1/4), v x sqrt 2 | layer6ai-labs/T-Fixup |
| ``deepnet`` | xavier (q/k/v gain 1/sqrt 2), then ffn, v, out x beta | microsoft/torchscale |
| ``t5`` | emb f; q f/sqrt(d d_kv); k, v f/sqrt(d); o f/sqrt(h d_kv); wi f/sqrt(d); wo f/sqrt(d_ff) | transformers ``T5PreTrainedModel._init_weights`` |
| ``small_init`` / ``wang`` | sqrt(2 / (5 d)); outputs 2 / (L sqrt(d)) | gpt-neox ``init_functions.py`` |
| ``small_init_emb`` | embedding U(+-1e-4) | BlinkDL/SmallInitEmb |
| ``modded_nanogpt`` | hidden U(+-sqrt(3) 0.5/sqrt(d)); MLP out 0; readout 0.005 | KellerJordan/modded-nanogpt |
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from polyinit import schemes
from polyinit.context import SITES, ContextError, ModelContext, model_context
from polyinit.rules import KEEP, Rules, predicate
from polyinit.spec import Normal, Spec, TruncatedNormal, Uniform, VarianceScaling

__all__ = ["deepnet", "fixup", "gpt2", "megatron", "modded_nanogpt", "mup", "olmo", "small_init",
           "small_init_emb", "t5", "t_fixup", "u_mup", "wang"]

_WEIGHTS = ("weight", "embedding", "recurrent")


def _context(model_or_context: Any, **options: Any) -> ModelContext:
    if isinstance(model_or_context, ModelContext):
        if options:
            raise ContextError(f"pass {', '.join(options)} to model_context(...), not with a ready context")
        return model_or_context
    return model_context(model_or_context, **options)


def _normal(std: float, cutoff: Optional[float] = None) -> Spec:
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
        self.context, self.scheme, self.pairs = context, scheme, []
        self.taken: set[str] = set()
        self.whole = self.keeps_other = False
        kept = tuple(p.path for p in context.params if p.path in getattr(context, "kept", ()))
        if kept:
            self.add(kept, KEEP, "kept (keep=)")

    def role(self, param: Any) -> str:
        return self.context.role(param) if hasattr(self.context, "role") else param.role

    def at(self, *sites: str, block: Optional[int] = None, stack: Optional[str] = None,
           roles: Sequence[str] = _WEIGHTS) -> list[str]:
        return [p.path for p in self.context.params
                if self.context.sites[p.path].site in sites and self.role(p) in roles
                and (block is None or self.context.sites[p.path].block == block)
                and (stack is None or self.context.sites[p.path].stack == stack)]

    def add(self, paths: Sequence[str], spec: Any, what: str) -> None:
        """One rule for ``paths`` not taken by an earlier rule (none: no rule)."""
        fresh = tuple(p for p in paths if p not in self.taken)
        if not fresh:
            return
        self.taken.update(fresh)
        wanted = frozenset(fresh)
        self.pairs.append((predicate(lambda p, wanted=wanted: p.path in wanted, f"{self.scheme}:{what}"), spec))

    def rest(self, weight: Optional[Spec], *, norms: bool = True) -> None:
        """Weights not yet taken get ``weight`` (None: those at site ``other`` are kept), biases 0,
        norm scales 1 and offsets 0."""
        params, sites = self.context.params, self.context.sites
        self.whole, self.keeps_other = True, weight is None
        if weight is not None:
            self.add([p.path for p in params if self.role(p) in _WEIGHTS and sites[p.path].site != "norm"],
                     weight, "other weights")
        self.add([p.path for p in params if self.role(p) == "bias" and sites[p.path].site != "norm"],
                 schemes.zeros(), "biases")
        if norms:
            self.add(self.norms("scale", "weight"), schemes.ones(), "norm scales")
            self.add(self.norms("offset", "bias"), schemes.zeros(), "norm offsets")

    def norms(self, *roles: str) -> list[str]:
        return [p.path for p in self.context.params if self.context.sites[p.path].site == "norm" and self.role(p) in roles]

    def rules(self, seed: int) -> Rules:
        if self.whole:
            self.cover()
        return Rules(self.pairs, seed=seed)

    def cover(self) -> None:
        """Every trainable parameter has a rule, or a ContextError names the ones without."""
        sites = self.context.sites
        left = [p for p in self.context.params if p.trainable and p.path not in self.taken
                and p.role not in ("running_mean", "running_var")]
        if self.keeps_other:
            self.add([p.path for p in left if sites[p.path].site == "other" and self.role(p) in _WEIGHTS],
                     KEEP, "kept as the reference leaves them")
            left = [p for p in left if p.path not in self.taken]
        if not left:
            return
        source = getattr(self.context, "source", lambda path: "name")
        listed = "; ".join(f"{p.path} ({p.kind} {self.role(p)}, shape {p.shape}, site {sites[p.path].site} "
                           f"from {source(p.path)})" for p in left[:12])
        more = f" and {len(left) - 12} more" if len(left) > 12 else ""
        raise ContextError(
            f"{self.scheme}: cannot place {len(left)} parameter(s) of this model: {listed}{more}. Place them with "
            "model_context(model, sites={'<site>': name('<path glob>')}) (sites: " + ", ".join(SITES) + "), "
            "or keep them at the framework's default with keep=name('<path glob>') (KEEP)")


def gpt2(model: Any, *, std: float = 0.02, seed: int = 0, **context: Any) -> Rules:
    """GPT-2 / nanoGPT: every weight and embedding N(0, std^2), the residual output projections
    (attention and MLP ``c_proj``) N(0, (std / sqrt(2 L))^2), biases 0, LayerNorm 1 and 0.

    Radford et al. 2019; karpathy/nanoGPT ``model.py``; transformers
    ``GPT2PreTrainedModel._init_weights``. ``lm_head`` is tied to ``wte`` there.

    >>> # report = apply(GPT2LMHeadModel(GPT2Config()), gpt2(model))
    """
    ctx = _context(model, **context)
    ctx.require("gpt2", "attn_out", "mlp_out")
    depth = ctx.need_depth("gpt2")
    out = _RuleSet(ctx, "gpt2")
    out.add(out.at("attn_out", "mlp_out"), Normal(std=std / math.sqrt(2 * depth)), "residual outputs")
    out.rest(Normal(std=std))
    return out.rules(seed)


def megatron(model: Any, *, init_method_std: float = 0.02, multiplier: float = 2.0, seed: int = 0,
             **context: Any) -> Rules:
    """Megatron-LM: ``init_method_normal(sigma)`` for every weight and the embeddings,
    ``scaled_init_method_normal(sigma, L, multiplier)`` = N(0, (sigma / sqrt(multiplier L))^2)
    for the output layers (attention output and MLP fc2); multiplier 2.0 (1.0 for hybrid models).

    NVIDIA/Megatron-LM ``megatron/core/utils.py``.
    """
    ctx = _context(model, **context)
    ctx.require("megatron", "attn_out", "mlp_out")
    depth = ctx.need_depth("megatron")
    out = _RuleSet(ctx, "megatron")
    out.add(out.at("attn_out", "mlp_out"), Normal(std=init_method_std / math.sqrt(multiplier * depth)), "output layers")
    out.rest(Normal(std=init_method_std))
    return out.rules(seed)


def olmo(model: Any, *, init_fn: str = "mitchell", init_std: float = 0.02,
         init_cutoff_factor: Optional[float] = None, emb_init_std: Optional[float] = None,
         scale_emb_init: bool = False, seed: int = 0, **context: Any) -> Rules:
    """OLMo's ``init_fn`` choices (allenai/OLMo ``olmo/initialization.py``, ``olmo/model.py``).

    ``mitchell``: q/k/v and MLP inputs 1/sqrt(d); attention output of block i (0-based)
    1/sqrt(2 d (i+1)); MLP output of block i 1/sqrt(2 d_ff (i+1)) with d_ff its fan-in;
    embeddings ``emb_init_std`` or 1/sqrt(d); readout 1/sqrt(d). ``full_megatron``: inputs
    ``init_std``; outputs init_std / sqrt(2 L); embedding ``emb_init_std``, else init_std
    (times sqrt(d) with ``scale_emb_init``); readout 1/sqrt(d). Both truncate at
    +-``init_cutoff_factor`` std (default 3). ``normal``: everything init_std, truncated only when
    a cutoff is given. Biases 0, norms 1 and 0.
    """
    if init_fn not in ("mitchell", "full_megatron", "normal"):
        raise ContextError(f"olmo: unknown init_fn {init_fn!r}; expected 'mitchell', 'full_megatron' or 'normal'")
    ctx = _context(model, **context)
    cutoff = init_cutoff_factor if init_cutoff_factor is not None or init_fn == "normal" else 3.0
    out = _RuleSet(ctx, f"olmo_{init_fn}")
    if init_fn == "normal":
        out.add(out.at("embedding"), _normal(emb_init_std or init_std, cutoff), "embedding")
        out.rest(_normal(init_std, cutoff))
        return out.rules(seed)
    ctx.require(f"olmo_{init_fn}", "attn_out", "mlp_out")
    d = ctx.need_width(f"olmo_{init_fn}")
    if init_fn == "mitchell":
        for p in ctx.of("attn_out", "mlp_out"):
            site = ctx.sites[p.path]
            if p.role not in _WEIGHTS or site.block is None:
                continue
            fan = d if site.site == "attn_out" else ctx.fan_in(p)
            out.add([p.path], _normal(1 / math.sqrt(2 * fan * (site.block + 1)), cutoff), f"{site.site} block {site.block}")
        out.add(out.at("embedding"), _normal(emb_init_std or 1 / math.sqrt(d), cutoff), "embedding")
        out.rest(_normal(1 / math.sqrt(d), cutoff))
        return out.rules(seed)
    depth = ctx.need_depth("olmo_full_megatron")
    out.add(out.at("attn_out", "mlp_out"), _normal(init_std / math.sqrt(2 * depth), cutoff), "outputs")
    embedding = emb_init_std if emb_init_std is not None else init_std * (math.sqrt(d) if scale_emb_init else 1.0)
    out.add(out.at("embedding"), _normal(embedding, cutoff), "embedding")
    out.add(out.at("readout"), _normal(1 / math.sqrt(d), cutoff), "readout")
    out.rest(_normal(init_std, cutoff))
    return out.rules(seed)


def mup(model: Any, base: Any, *, std: float = 0.02, readout_zero: bool = False, query_zero: bool = False,
        seed: int = 0, **context: Any) -> Rules:
    """muP (Tensor Programs V; microsoft/mup ``mup/init.py``): each axis whose size differs from
    the ``base`` model's is a width axis. A weight with two width axes (hidden) gets
    N(0, std^2 / width_mult), width_mult = fan_in / base fan_in; a weight with one (input
    weights, embeddings, the readout) or none keeps N(0, std^2); biases 0, norms 1 and 0.
    ``readout_zero`` and ``query_zero`` zero the readout and the query (Tensor Programs V, App.
    D.2). Not initialisation, so not applied: the readout's output multiplier 1/width_mult
    (``MuReadout``), attention logits scaled by 1/d instead of 1/sqrt(d), and per-layer learning
    rates (``mup.MuAdam``).

    ``base`` is the same architecture at the base width (a model or a context); parameters are
    paired by declaration order.
    """
    ctx = _context(model, **context)
    base_ctx = base if isinstance(base, ModelContext) else model_context(base)
    if len(base_ctx.params) != len(ctx.params):
        raise ContextError(f"mup: the base model has {len(base_ctx.params)} parameters, the model "
                           f"{len(ctx.params)}; they must be the same architecture")
    out = _RuleSet(ctx, "mup")
    if readout_zero:
        out.add(out.at("readout", roles=("weight", "bias")), schemes.zeros(), "readout (zero)")
    if query_zero:
        out.add(out.at("q"), schemes.zeros(), "query (zero)")
    hidden: dict[float, list[str]] = {}
    for p, b in zip(ctx.params, base_ctx.params):
        if p.role not in _WEIGHTS or ctx.sites[p.path].site == "norm" or len(p.shape) != len(b.shape):
            continue
        if sum(n != m for n, m in zip(p.shape, b.shape)) >= 2:
            hidden.setdefault(ctx.fan_in(p) / base_ctx.fan_in(b), []).append(p.path)
    for mult, paths in hidden.items():
        out.add(paths, Normal(std=std / math.sqrt(mult)), f"hidden, width_mult {mult:g}")
    out.rest(Normal(std=std))
    return out.rules(seed)


def u_mup(model: Any, *, seed: int = 0, **context: Any) -> Rules:
    """u-muP (unit scaling, graphcore-research/unit-scaling): every weight and embedding
    N(0, 1), biases 0, norms 1 and 0. The scales live in the ops (linear output x fan_in^(-1/2),
    readout x fan_in^(-1), residual tau rule), which the model must implement; this is only the
    initialisation half of u-muP.
    """
    out = _RuleSet(_context(model, **context), "u_mup")
    out.rest(Normal(std=1.0))
    return out.rules(seed)


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


def t_fixup(model: Any, *, seed: int = 0, **context: Any) -> Rules:
    """T-Fixup (Huang et al. 2020; layer6ai-labs/T-Fixup): fairseq's base init (Linear
    xavier_uniform, q/k/v xavier_uniform with gain 1/sqrt(2), embeddings N(0, 1/d)), then in the
    encoder (N layers) fc1, fc2 and the attention outputs x 0.67 N^(-1/4), v x 0.67 N^(-1/4) sqrt(2);
    in the decoder (M layers) the same with (9M)^(-1/4); encoder (and shared) embeddings
    x (9N)^(-1/4), decoder embeddings x (9M)^(-1/4). A multiplier c on xavier is a gain c, so v's
    gain is c sqrt(2) / sqrt(2) = c. LayerNorm is removed from the model (the model's to do).
    """
    ctx = _context(model, **context)
    ctx.require("t_fixup", "attn_out", "mlp_out")
    d = ctx.need_width("t_fixup")
    out = _RuleSet(ctx, "t_fixup")
    for stack in [s for s in ("encoder", "decoder", "") if ctx.depth_of(s)]:
        layers = ctx.depth_of(stack)
        c = (9 * layers) ** -0.25 if stack == "decoder" else 0.67 * layers ** -0.25
        half = _xavier(1 / math.sqrt(2))
        _attention(out, stack, half, half, _xavier(c), _xavier(c), stack or "stack")
        out.add(out.at("embedding", stack=stack), Normal(std=(9 * layers) ** -0.25 / math.sqrt(d)),
                f"{stack or 'stack'} embedding")
    encoder = ctx.depth_of("encoder") or ctx.depth
    out.add(out.at("embedding"), Normal(std=(9 * encoder) ** -0.25 / math.sqrt(d)), "shared embedding")
    out.rest(_xavier(1.0))
    return out.rules(seed)


DEEPNET_ARCHITECTURES = ("encoder", "decoder", "encoder_decoder")


def deepnet_coefficients(architecture: str, encoder_layers: int = 0, decoder_layers: int = 0) -> dict:
    """DeepNorm's (alpha, beta) per stack (Wang et al. 2022, Table/Figure 2):
    encoder-only alpha (2N)^(1/4), beta (8N)^(-1/4); decoder-only (2M)^(1/4), (8M)^(-1/4);
    encoder-decoder: encoder 0.81 (N^4 M)^(1/16), 0.87 (N^4 M)^(-1/16); decoder (3M)^(1/4),
    (12M)^(-1/4). The paper's encoder beta is pinned; torchscale's code uses
    1.15 (N^4 M)^(-1/16) (1.32x the variance)."""
    n, m = encoder_layers, decoder_layers
    if architecture == "encoder":
        return {"encoder": ((2 * n) ** 0.25, (8 * n) ** -0.25)}
    if architecture == "decoder":
        return {"decoder": ((2 * m) ** 0.25, (8 * m) ** -0.25)}
    if architecture == "encoder_decoder":
        return {"encoder": (0.81 * (n**4 * m) ** (1 / 16), 0.87 * (n**4 * m) ** (-1 / 16)),
                "decoder": ((3 * m) ** 0.25, (12 * m) ** -0.25)}
    raise ContextError(f"deepnet: unknown architecture {architecture!r}; expected one of {DEEPNET_ARCHITECTURES}")


def deepnet(model: Any, *, architecture: Optional[str] = None, seed: int = 0, **context: Any) -> Rules:
    """DeepNet / DeepNorm (Wang et al. 2022, Figure 2's pseudo-code): the MLP (fc1, fc2), v and
    attention-output weights xavier_normal with gain beta, q and k xavier_normal with gain 1 (see
    ``deepnet_coefficients``); other weights xavier_normal, biases 0. microsoft/torchscale starts
    from xavier_uniform (q/k/v gain 1/sqrt(2)) and divides by 1/beta: the same variance for the
    beta-scaled weights up to its 1/sqrt(2) on v. The residual x <- LN(alpha x + G(x)) is the
    model's to do. ``architecture`` defaults to what the model's stacks say.
    """
    ctx = _context(model, **context)
    ctx.require("deepnet", "attn_out", "mlp_out")
    n, m = ctx.depth_of("encoder"), ctx.depth_of("decoder")
    if architecture is None:
        architecture = "encoder_decoder" if n and m else "encoder" if n else "decoder"
    if architecture != "encoder_decoder" and not (n or m):
        n = m = ctx.need_depth("deepnet")
    coefficients = deepnet_coefficients(architecture, n, m)
    out = _RuleSet(ctx, "deepnet")
    for stack, (_, beta) in coefficients.items():
        where = stack if ctx.depth_of(stack) else ""
        one, scaled = _xavier(1.0, normal=True), _xavier(beta, normal=True)
        _attention(out, where, one, one, scaled, scaled, f"{stack} (beta {beta:.4g})")
    out.rest(_xavier(1.0, normal=True))
    return out.rules(seed)


def t5(model: Any, *, factor: float = 1.0, seed: int = 0, **context: Any) -> Rules:
    """T5 / mesh-TF (transformers ``T5PreTrainedModel._init_weights``), f = ``factor``:
    shared embedding and an untied lm_head N(0, f^2); q N(0, f^2 / (d d_kv)); k, v N(0, f^2 / d);
    o N(0, f^2 / (h d_kv)); wi N(0, f^2 / d); wo N(0, f^2 / d_ff); relative attention bias
    N(0, f^2 / d); LayerNorm weight f. The q scale folds in the 1/sqrt(d_kv) that T5 leaves out of
    its attention. ``d_kv`` is read from the model's config or given.
    """
    ctx = _context(model, **context)
    ctx.require("t5", "q", "mlp_out")
    d = ctx.need_width("t5")
    d_kv = ctx.need_config("t5", "d_kv")
    out = _RuleSet(ctx, "t5")
    out.add(out.at("embedding", "readout"), Normal(std=factor), "embedding, readout")
    out.add(out.at("q"), Normal(std=factor / math.sqrt(d * d_kv)), "q")
    out.add(out.at("k", "v"), Normal(std=factor / math.sqrt(d)), "k, v")
    for p in ctx.of("attn_out", "mlp_out"):
        if p.role in _WEIGHTS:
            out.add([p.path], Normal(std=factor / math.sqrt(ctx.fan_in(p))), ctx.sites[p.path].site)
    out.add(out.at("mlp_in", "relative_bias"), Normal(std=factor / math.sqrt(d)), "wi, relative bias")
    out.add(out.norms("scale", "weight"), schemes.constant(factor), "norm scale")
    out.rest(None)
    return out.rules(seed)


def small_init(model: Any, *, seed: int = 0, **context: Any) -> Rules:
    """SmallInit (Nguyen & Salazar 2019, "Transformers without Tears"; gpt-neox
    ``small_init_init_method``): every weight N(0, 2 / (5 d)), biases 0, norms 1 and 0."""
    ctx = _context(model, **context)
    out = _RuleSet(ctx, "small_init")
    out.rest(Normal(std=math.sqrt(2 / (5 * ctx.need_width("small_init")))))
    return out.rules(seed)


def wang(model: Any, *, seed: int = 0, **context: Any) -> Rules:
    """gpt-neox's pairing: residual output layers ``wang_init`` N(0, (2 / (L sqrt(d)))^2), every
    other weight SmallInit N(0, 2 / (5 d)) (``megatron/model/init_functions.py``)."""
    ctx = _context(model, **context)
    ctx.require("wang", "attn_out", "mlp_out")
    d, depth = ctx.need_width("wang"), ctx.need_depth("wang")
    out = _RuleSet(ctx, "wang")
    out.add(out.at("attn_out", "mlp_out"), Normal(std=2 / (depth * math.sqrt(d))), "output layers")
    out.rest(Normal(std=math.sqrt(2 / (5 * d))))
    return out.rules(seed)


def small_init_emb(model: Any, *, scale: float = 1e-4, seed: int = 0, **context: Any) -> Rules:
    """SmallInitEmb (BlinkDL): the token embedding U(-1e-4, 1e-4); the model should put a
    LayerNorm right after it (RWKV's ``ln0``). Everything else is kept."""
    ctx = _context(model, **context)
    ctx.require("small_init_emb", "embedding")
    out = _RuleSet(ctx, "small_init_emb")
    out.add(out.at("embedding"), Uniform(low=-scale, high=scale), "embedding")
    return out.rules(seed)


def modded_nanogpt(model: Any, *, seed: int = 0, **context: Any) -> Rules:
    """The modded-nanogpt speedrun (KellerJordan/modded-nanogpt ``train_gpt.py``): hidden
    matrices (q, k, v, attention output, MLP input) U(+-sqrt(3) sigma), sigma = 0.5 / sqrt(d);
    MLP output projections 0; the readout N(0, 0.005^2); the embedding N(0, 0.005^2) (the speedrun
    copies the readout's transpose into it: the same distribution, not the same draw).
    """
    ctx = _context(model, **context)
    ctx.require("modded_nanogpt", "mlp_out")
    d = ctx.need_width("modded_nanogpt")
    bound = math.sqrt(3) * 0.5 / math.sqrt(d)
    out = _RuleSet(ctx, "modded_nanogpt")
    out.add(out.at("mlp_out"), schemes.zeros(), "MLP out (zero)")
    out.add(out.at("q", "k", "v", "qkv", "attn_out", "mlp_in"), Uniform(low=-bound, high=bound), "hidden")
    out.add(out.at("readout", "embedding"), Normal(std=0.005), "readout, embedding")
    out.rest(None)
    return out.rules(seed)


def fixup(model: Any, *, seed: int = 0, **context: Any) -> Rules:
    """Fixup (Zhang et al. 2019; hongyi-zhang/Fixup): in each of the L residual branches of m
    convolutions, every conv but the last He-normal with **fan_out**, times L^(-1/(2m-2)); the
    last conv of each branch 0; shortcut (downsample) convs He fan_out unscaled; the final dense
    layer's weight and bias 0. Fixup's scalar biases and multiplier are the model's.

    A branch is the numbered block a conv sits in (torchvision ``layer1.0.conv2``, Keras
    ``conv2_block1_2_conv``); shortcut convs are named ``downsample``/``shortcut``/``_0_conv``.
    """
    ctx = _context(model, **context)
    branches = _conv_branches(ctx)
    if not branches:
        raise ContextError("fixup: found no residual branches of convolutions in this model")
    depth = len(branches)
    he_out = schemes.he_normal(mode="fan_out")
    out = _RuleSet(ctx, "fixup")
    for convs, shortcut in branches.values():
        m = len(convs)
        if m < 2:
            raise ContextError(f"fixup: a branch has {m} convolution ({convs}); Fixup needs m >= 2")
        scale = depth ** (-1.0 / (2 * m - 2))
        out.add(convs[-1:], schemes.zeros(), "last conv of a branch (zero)")
        # He fan_out times a multiplier s is variance 2 s^2 / fan_out.
        out.add(convs[:-1], VarianceScaling(scale=2 * scale**2, mode="fan_out", distribution="normal"),
                f"branch convs x L^(-1/(2m-2)), m={m}")
        out.add(shortcut, he_out, "shortcut convs")
    dense = [p for p in ctx.params if p.kind == "dense"]
    if dense:
        final = max(p.layer for p in dense)
        out.add([p.path for p in dense if p.layer == final], schemes.zeros(), "final dense (zero)")
    out.rest(None)
    return out.rules(seed)


def _conv_branches(ctx: ModelContext) -> dict:
    """block key -> ([branch conv weight paths in order], [shortcut conv weight paths])."""
    import re

    branches: dict = {}
    for p in ctx.params:
        if p.kind != "conv" or p.role != "weight":
            continue
        keras = re.search(r"(conv\d+_block\d+)_(\d+)_conv", p.path)
        if keras:
            key, shortcut = keras.group(1), keras.group(2) == "0"
        else:
            tokens = [t for t in re.split(r"[./]", p.path) if t]
            numbered = [i for i, t in enumerate(tokens[:-1]) if t.isdigit()]
            if not numbered:
                continue
            key = "/".join(tokens[: numbered[-1] + 1])
            shortcut = any(t in ("downsample", "shortcut", "proj") for t in tokens[numbered[-1] + 1:])
        convs, shortcuts = branches.setdefault(key, ([], []))
        (shortcuts if shortcut else convs).append(p.path)
    return {k: v for k, v in branches.items() if v[0]}
