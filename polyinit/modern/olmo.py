"""OLMo's and Llama's initialisations: OLMo-1's ``init_fn`` (allenai/OLMo), olmo-core's
``InitMethod`` and torchtitan's llama3 depth init.

Two generations share the name ``olmo`` and differ where both have an init function:

| init_fn | OLMo-1 (ai2-olmo ``olmo/initialization.py``) | olmo-core 3.0.0 (``olmo_core/nn/transformer/init.py``) |
|---|---|---|
| ``normal`` | N(0, sigma^2), cut only if ``init_cutoff_factor`` is given | every weight cut at +-3 sigma |
| ``mitchell``, ``full_megatron`` | yes (cut at +-3 std by default) | absent |
| ``llama``, ``llama_depth``, ``fan_in``, ``normalized`` | absent | yes |
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from polyinit.context import ModelContext
from polyinit.errors import NotExpressibleError
from polyinit.modern import _args
from polyinit.modern._base import _WEIGHTS, _context, _normal, _RuleSet, gated_up
from polyinit.rules import Rules
from polyinit.spec import Blocks, Constant, Normal, Normalized, Spec, TruncatedNormal

GENERATIONS = {
    "olmo1": ("normal", "mitchell", "full_megatron"),
    "olmo_core": ("normal", "llama", "llama_depth", "fan_in", "normalized"),
}
INIT_FNS = ("normal", "mitchell", "full_megatron", "llama", "llama_depth", "fan_in", "normalized")
_OWN = ("init_fn", "generation", "init_std", "init_cutoff_factor", "emb_init_std", "scale_emb_init", "embed_scale")


def olmo(
    model: Any,
    *,
    init_fn: str = "mitchell",
    generation: str | None = None,
    init_std: float = 0.02,
    init_cutoff_factor: float | None = None,
    emb_init_std: float | None = None,
    scale_emb_init: bool = False,
    embed_scale: float | None = None,
    seed: int = 0,
    **context: Any,
) -> Rules:
    """OLMo's ``init_fn`` choices; sigma = ``init_std``, d the width, L the depth, i the 0-based
    block, c the cutoff in std units (every cut is torch ``trunc_normal_(std, -c std, c std)``).

    ``generation="olmo1"`` (allenai/OLMo ``olmo/initialization.py``, ``olmo/model.py``):
    ``mitchell``: q/k/v and MLP inputs 1/sqrt(d); attention output of block i 1/sqrt(2 d (i+1));
    MLP output of block i 1/sqrt(2 d_ff (i+1)) with d_ff its fan-in; embeddings ``emb_init_std``
    or 1/sqrt(d); readout 1/sqrt(d). ``full_megatron``: inputs sigma; outputs sigma / sqrt(2 L);
    embedding ``emb_init_std``, else sigma (times sqrt(d) with ``scale_emb_init``); readout
    1/sqrt(d). Both cut at c = ``init_cutoff_factor`` (default 3). ``normal``: everything sigma,
    cut only when ``init_cutoff_factor`` is given.

    ``generation="olmo_core"`` (olmo-core 3.0.0 ``InitMethod``, ``Transformer.init_weights``;
    every linear cut at c = 3 by ``init_linear``): ``normal``: every weight and the embedding
    (``emb_init_std`` or sigma) sigma. ``llama``: q/k/v and the MLP gate w1 sigma; attention
    output w_out, MLP w3 **and** w2 sigma / sqrt(2 L); embeddings N(0, 1) uncut; LM head
    1/sqrt(d). ``llama_depth``: the same with sigma / sqrt(2 (i+1)) per block. ``fan_in``: every
    linear including the LM head 1/sqrt(fan_in); embeddings N(0, 1/``embed_scale``^2) uncut.
    A learned position embedding (olmo-core's models have none: RoPE) is drawn as the token
    embedding. ``normalized`` (nGPT, ``NormalizedTransformer.init_weights``: the draws, then
    ``normalize_matrices``): every matrix is drawn and then L2-normalised along its model
    (embedding) axis (``polyinit.spec.Normalized``): q/k/v, the MLP inputs w1 and w3 and the LM
    head at d^-1/2 cut at c, each output unit's weight vector (axis ``in``) of norm 1; the
    attention output and w2 at d^-1/2 / sqrt(2 L) cut at c, each input's column (axis ``out``)
    of norm 1; the token embedding N(0, 1/d) uncut, each token's vector of norm 1. Only the
    directions survive the projection, so the stds matter only through the cut. nGPT's scaling
    vectors, by olmo-core's names (the structure cannot see them): ``sq``, ``sk`` (attention),
    ``sz`` (LM head), ``attn_alpha``, ``mlp_alpha`` (block) at 1/sqrt(d); ``sw1``, ``sw3``
    (MLP) at 1.

    ``generation`` defaults to the one that has ``init_fn``; ``normal`` exists in both, so it must
    be named (olmo-core's cuts at 3 sigma where OLMo-1's does not: a z of -6.5 on a 27M model).
    Biases 0, norms 1 and 0.

    >>> # report = apply(model, olmo(model, init_fn="llama_depth"))
    """
    init_fn = _args.one_of("olmo", "init_fn", init_fn, INIT_FNS)
    generation = _generation(init_fn, generation)
    sigma = _args.std("olmo", "init_std", init_std)
    cut = _args.optional_std("olmo", "init_cutoff_factor", init_cutoff_factor)
    emb = _args.optional_std("olmo", "emb_init_std", emb_init_std)
    embed_scale = _args.optional_std("olmo", "embed_scale", embed_scale)
    scale_emb_init, seed = _args.flag("olmo", "scale_emb_init", scale_emb_init), _args.seed("olmo", seed)
    ctx = _context("olmo", model, context, _OWN)
    if generation == "olmo1":
        return _olmo1(ctx, init_fn, sigma, cut, emb, scale_emb_init, seed)
    if init_fn == "normalized":
        return _ngpt(ctx, 3.0 if cut is None else cut, seed)
    return _olmo_core(ctx, init_fn, sigma, 3.0 if cut is None else cut, emb, embed_scale, seed)


def _generation(init_fn: str, generation: str | None) -> str:
    if generation is None:
        having = [g for g, fns in GENERATIONS.items() if init_fn in fns]
        if len(having) > 1:
            _args.refuse(
                "olmo",
                f"init_fn={init_fn!r} exists in OLMo-1 (uncut by default) and olmo-core (cut at "
                "3 sigma); pass generation='olmo1' or generation='olmo_core'",
            )
        return having[0]
    generation = _args.one_of("olmo", "generation", generation, GENERATIONS)
    if init_fn not in GENERATIONS[generation]:
        _args.refuse(
            "olmo",
            f"init_fn={init_fn!r} is not in generation {generation!r}; "
            f"it has {', '.join(map(repr, GENERATIONS[generation]))}",
        )
    return generation


def _olmo1(
    ctx: ModelContext, init_fn: str, sigma: float, cut: float | None, emb: float | None, scale_emb_init: bool, seed: int
) -> Rules:
    cutoff = cut if cut is not None or init_fn == "normal" else 3.0
    out = _RuleSet(ctx, f"olmo_{init_fn}")
    if init_fn == "normal":
        out.add(out.at("embedding"), _normal(emb or sigma, cutoff), "embedding")
        out.rest(_normal(sigma, cutoff))
        return out.rules(seed)
    ctx.require(f"olmo_{init_fn}", "attn_out", "mlp_out")
    d = ctx.need_width(f"olmo_{init_fn}")
    if init_fn == "mitchell":
        for p in ctx.of("attn_out", "mlp_out"):
            site = ctx.sites[p.path]
            if ctx.role(p) not in _WEIGHTS or site.block is None:
                continue
            fan = d if site.site == "attn_out" else ctx.fan_in(p)
            out.add(
                [p.path], _normal(1 / math.sqrt(2 * fan * (site.block + 1)), cutoff), f"{site.site} block {site.block}"
            )
        out.add(out.at("embedding"), _normal(emb or 1 / math.sqrt(d), cutoff), "embedding")
        out.rest(_normal(1 / math.sqrt(d), cutoff))
        return out.rules(seed)
    depth = ctx.need_depth("olmo_full_megatron")
    out.add(out.at("attn_out", "mlp_out"), _normal(sigma / math.sqrt(2 * depth), cutoff), "outputs")
    embedding = emb if emb is not None else sigma * (math.sqrt(d) if scale_emb_init else 1.0)
    out.add(out.at("embedding"), _normal(embedding, cutoff), "embedding")
    out.add(out.at("readout"), _normal(1 / math.sqrt(d), cutoff), "readout")
    out.rest(_normal(sigma, cutoff))
    return out.rules(seed)


def _olmo_core(
    ctx: ModelContext, init_fn: str, sigma: float, cut: float, emb: float | None, embed_scale: float | None, seed: int
) -> Rules:
    scheme = f"olmo_core_{init_fn}"
    out = _RuleSet(ctx, scheme)
    # olmo-core models have no learned position embedding (RoPE); one is drawn as the token embedding.
    if init_fn == "normal":
        out.add(out.at("embedding", "position"), _normal(emb or sigma, cut), "embeddings")
        out.rest(_normal(sigma, cut))
        return out.rules(seed)
    d = ctx.need_width(scheme)
    if init_fn == "fan_in":
        # olmo-core draws every linear 1/sqrt(fan_in) whatever it is, so a matrix the trace could not
        # place (site "other") gets the same law rather than being left at the framework's default.
        for p in ctx.params:
            site = ctx.sites[p.path]
            placed = site.site not in ("embedding", "position", "norm", "other")
            if ctx.role(p) in _WEIGHTS and (placed or (site.site == "other" and len(p.shape) >= 2)):
                out.add([p.path], _normal(1 / math.sqrt(ctx.fan_in(p)), cut), f"{site.site} 1/sqrt(fan_in)")
        out.add(out.at("embedding", "position"), Normal(std=1.0 / (embed_scale or 1.0)), "embeddings")
        out.rest(None)
        return out.rules(seed)
    _llama_outputs(
        out, ctx, scheme, _normal(sigma, cut), lambda std: _normal(std, cut), sigma, per_block=init_fn == "llama_depth"
    )
    out.add(out.at("embedding", "position"), Normal(std=1.0), "embeddings N(0, 1)")
    out.add(out.at("readout"), _normal(d**-0.5, cut), "LM head d^-1/2")
    out.rest(_normal(sigma, cut))
    return out.rules(seed)


# nGPT's learned scaling vectors: olmo-core's names and stored init values (``*_init_scaling``),
# as functions of the width d.
NGPT_SCALES = {
    "sq": lambda d: d**-0.5,
    "sk": lambda d: d**-0.5,
    "sz": lambda d: d**-0.5,
    "attn_alpha": lambda d: d**-0.5,
    "mlp_alpha": lambda d: d**-0.5,
    "sw1": lambda d: 1.0,
    "sw3": lambda d: 1.0,
}


def _ngpt(ctx: ModelContext, cut: float, seed: int) -> Rules:
    """olmo-core's ``InitMethod.normalized`` then ``normalize_matrices`` (see ``olmo``)."""
    scheme = "olmo_core_normalized"
    ctx.require(scheme, "attn_out", "mlp_out")
    d, depth = ctx.need_width(scheme), ctx.need_depth(scheme)
    out = _RuleSet(ctx, scheme)
    base, scaled = d**-0.5, d**-0.5 / math.sqrt(2 * depth)
    out.add(
        out.at("attn_out", "mlp_out"), Normalized(operand=_normal(scaled, cut), axis="out"), "outputs, unit columns"
    )
    readers = ("q", "k", "v", "qkv", "mlp_in", "readout")
    out.add(out.at(*readers), Normalized(operand=_normal(base, cut), axis="in"), "inputs and LM head, unit rows")
    scales: dict[str, list[str]] = {}
    for p in ctx.params:
        if ctx.sites[p.path].site in ("embedding", "position") and ctx.role(p) in _WEIGHTS:
            # The model axis is the embedding's output under its semantic layout, whichever way
            # the framework stores the table (its native fans read torch's dim axis as 'in').
            roles = p.semantic_layout.roles(len(p.shape))
            spec = Normalized(operand=Normal(std=base), axis=roles.index("out"))
            out.add([p.path], spec, "embedding, unit token vectors")
        name = p.path.replace("/", ".").split(".")[-1]
        if name in NGPT_SCALES and len(p.shape) == 1:
            scales.setdefault(name, []).append(p.path)
    for name, paths in scales.items():
        out.add(paths, Constant(value=NGPT_SCALES[name](d)), f"nGPT scale {name}")
    out.rest(None)
    return out.rules(seed)


def _llama_outputs(
    out: _RuleSet,
    ctx: ModelContext,
    scheme: str,
    base: Spec,
    scaled: Callable[[float], Spec],
    sigma: float,
    per_block: bool,
) -> None:
    """The attention output, MLP output (w2) and gated MLP up projection (w3) of every block at
    ``scaled``(sigma / sqrt(2 L)), or sigma / sqrt(2 (i+1)) ``per_block``; a fused gate/up input
    (the trace's parts) as two blocks, the gate at ``base``, the up half scaled."""
    ctx.require(scheme, "attn_out", "mlp_out")
    depth = None if per_block else ctx.need_depth(scheme)
    up = set(gated_up(ctx, scheme))
    for p in ctx.params:
        site = ctx.sites[p.path]
        if ctx.role(p) not in _WEIGHTS or (per_block and site.block is None):
            continue
        blocks = site.block + 1 if per_block and site.block is not None else depth
        spec = scaled(sigma / math.sqrt(2 * (blocks or 1)))
        if site.site in ("attn_out", "mlp_out") or p.path in up:
            out.add([p.path], spec, f"{site.site if p.path not in up else 'mlp up (w3)'} block {site.block}")
        elif site.site == "mlp_in" and _fused_gate_up(ctx, p):
            out.add([p.path], _fused_gate_up(ctx, p, base, spec), f"fused gate/up block {site.block}")


def _fused_gate_up(ctx: ModelContext, p: Any, gate: Spec | None = None, up: Spec | None = None) -> Any:
    """Blocks(gate, up) along the axis the trace found them on, for a packed gate/up weight (Phi-3's
    gate_up_proj); None when ``p`` is not one. Parts that are not two equal halves are refused."""
    parts = ctx.parts(p.path) if hasattr(ctx, "parts") else ()
    if sorted(part.name for part in parts) != ["gate", "up"]:
        return None
    ordered = sorted(parts, key=lambda part: part.ranges[0][0] if part.ranges else 0)
    axis = ordered[0].axes[0] if len(ordered[0].axes) == 1 else None
    size = p.shape[axis] if axis is not None else 0
    if (
        axis is None
        or any(part.axes != (axis,) for part in ordered)
        or [part.ranges for part in ordered] != [((0, size // 2),), ((size // 2, size),)]
    ):
        raise NotExpressibleError(
            f"{p.path}: a packed gate/up weight whose parts {ordered} are not two equal "
            "halves of one axis; its up half cannot be scaled as one block"
        )
    if gate is None or up is None:
        return True
    return Blocks(axis=axis, parts=tuple(gate if part.name == "gate" else up for part in ordered))


LLAMA_REFERENCES = ("torchtitan", "olmo_core")


def llama_depth(
    model: Any, *, reference: str = "torchtitan", std: float = 0.02, seed: int = 0, **context: Any
) -> Rules:
    """Llama-style depth init: q/k/v and the MLP gate (w1) at sigma = ``std``; the attention
    output (wo) and the MLP's w2 **and** w3 of block i (0-based) at sigma / sqrt(2 (i+1));
    token embeddings N(0, 1); the LM head d^-1/2 cut at +-3 std; biases 0, norms 1.

    ``reference="torchtitan"``: torchtitan 0.3.0 ``models/llama3/__init__.py`` (``_LINEAR_INIT``,
    ``_depth_init(layer_id)`` = ``depth_scaled_std(0.02, layer_id)`` for ``wo`` and ``w2w3``,
    ``_EMBEDDING_INIT``, ``_output_linear_init(dim)``): torch ``trunc_normal_`` with its default
    absolute bounds +-2 (no effect at these stds, 100 sigma away), LM head cut at +-3 sigma.
    ``reference="olmo_core"``: olmo-core 3.0.0 ``InitMethod.llama_depth``, every linear cut at
    +-3 sigma (the same as ``olmo(model, init_fn="llama_depth")``).

    w3 is told from the gate w1 by the trace's parts where they are packed in one weight (Phi-3's
    ``gate_up_proj``: two blocks, the up half scaled) and by name hints where they are separate
    (``w1``/``w3``, ``gate_proj``/``up_proj``, litgpt's ``fc_1``/``fc_2``).

    >>> # report = apply(model, llama_depth(model))
    """
    reference = _args.one_of("llama_depth", "reference", reference, LLAMA_REFERENCES)
    if reference == "olmo_core":
        return olmo(model, init_fn="llama_depth", generation="olmo_core", init_std=std, seed=seed, **context)
    sigma, seed = _args.std("llama_depth", "std", std), _args.seed("llama_depth", seed)
    ctx = _context("llama_depth", model, context, ("reference", "std"))
    d = ctx.need_width("llama_depth")
    out = _RuleSet(ctx, "llama_depth_torchtitan")
    torch_trunc = lambda std: TruncatedNormal(std=std, low=-2.0, high=2.0, bounds="absolute")
    _llama_outputs(out, ctx, "llama_depth", torch_trunc(sigma), torch_trunc, sigma, per_block=True)
    out.add(out.at("embedding", "position"), Normal(std=1.0), "embeddings N(0, 1) (a learned position one too)")
    out.add(out.at("readout"), _normal(d**-0.5, 3.0), "LM head d^-1/2, cut at 3 sigma")
    out.rest(torch_trunc(sigma))
    return out.rules(seed)
