"""Encoder-decoder transformers: T-Fixup and T5 (DeepNet has its own module)."""

from __future__ import annotations

import math
from typing import Any

from polyinit import schemes
from polyinit.modern import _args
from polyinit.modern._base import _WEIGHTS, _attention, _context, _RuleSet, _xavier
from polyinit.rules import Rules
from polyinit.spec import Normal


def t_fixup(model: Any, *, seed: int = 0, **context: Any) -> Rules:
    """T-Fixup (Huang et al. 2020; layer6ai-labs/T-Fixup): fairseq's base init (Linear
    xavier_uniform, q/k/v xavier_uniform with gain 1/sqrt(2), embeddings N(0, 1/d)), then in the
    encoder (N layers) fc1, fc2 and the attention outputs x 0.67 N^(-1/4), v x 0.67 N^(-1/4) sqrt(2);
    in the decoder (M layers) the same with (9M)^(-1/4); encoder (and shared) embeddings
    x (9N)^(-1/4), decoder embeddings x (9M)^(-1/4). A multiplier c on xavier is a gain c, so v's
    gain is c sqrt(2) / sqrt(2) = c. LayerNorm is removed from the model (the model's to do).
    """
    seed = _args.seed("t_fixup", seed)
    ctx = _context("t_fixup", model, context)
    ctx.require("t_fixup", "attn_out", "mlp_out")
    d = ctx.need_width("t_fixup")
    out = _RuleSet(ctx, "t_fixup")
    for stack in [s for s in ("encoder", "decoder", "") if ctx.depth_of(s)]:
        layers = ctx.depth_of(stack)
        c = (9 * layers) ** -0.25 if stack == "decoder" else 0.67 * layers**-0.25
        half = _xavier(1 / math.sqrt(2))
        _attention(out, stack, half, half, _xavier(c), _xavier(c), stack or "stack")
        out.add(
            out.at("embedding", stack=stack),
            Normal(std=(9 * layers) ** -0.25 / math.sqrt(d)),
            f"{stack or 'stack'} embedding",
        )
    encoder = ctx.depth_of("encoder") or ctx.need_depth("t_fixup")
    out.add(out.at("embedding"), Normal(std=(9 * encoder) ** -0.25 / math.sqrt(d)), "shared embedding")
    out.rest(_xavier(1.0))
    return out.rules(seed)


def t5(model: Any, *, factor: float = 1.0, seed: int = 0, **context: Any) -> Rules:
    """T5 / mesh-TF (transformers ``T5PreTrainedModel._init_weights``), f = ``factor``:
    shared embedding and an untied lm_head N(0, f^2); q N(0, f^2 / (d d_kv)); k, v N(0, f^2 / d);
    o N(0, f^2 / (h d_kv)); wi N(0, f^2 / d); wo N(0, f^2 / d_ff); relative attention bias
    N(0, f^2 / d); LayerNorm weight f. The q scale folds in the 1/sqrt(d_kv) that T5 leaves out of
    its attention. ``d_kv`` is read from the model's config or given.
    """
    factor, seed = _args.std("t5", "factor", factor), _args.seed("t5", seed)
    ctx = _context("t5", model, context, ("factor",))
    ctx.require("t5", "q", "mlp_out")
    d = ctx.need_width("t5")
    d_kv = ctx.need_config("t5", "d_kv")
    out = _RuleSet(ctx, "t5")
    out.add(out.at("embedding", "readout"), Normal(std=factor), "embedding, readout")
    out.add(out.at("q"), Normal(std=factor / math.sqrt(d * d_kv)), "q")
    out.add(out.at("k", "v"), Normal(std=factor / math.sqrt(d)), "k, v")
    for p in ctx.of("attn_out", "mlp_out"):
        if ctx.role(p) in _WEIGHTS:
            out.add([p.path], Normal(std=factor / math.sqrt(ctx.fan_in(p))), ctx.sites[p.path].site)
    out.add(out.at("mlp_in", "relative_bias"), Normal(std=factor / math.sqrt(d)), "wi, relative bias")
    out.add(out.norms("scale", "weight"), schemes.constant(factor), "norm scale")
    out.rest(None)
    return out.rules(seed)
