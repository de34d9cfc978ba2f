"""GPT-style decoders: GPT-2, Megatron, gpt-neox's SmallInit/Wang (and litgpt's variant), u-muP,
SmallInitEmb and the modded-nanogpt speedrun."""

from __future__ import annotations

import math
from typing import Any

from polyinit import schemes
from polyinit.modern import _args
from polyinit.modern._base import _context, _RuleSet
from polyinit.rules import Rules
from polyinit.spec import Normal, Uniform


def gpt2(model: Any, *, std: float = 0.02, seed: int = 0, **context: Any) -> Rules:
    """GPT-2 / nanoGPT: every weight and embedding N(0, std^2), the residual output projections
    (attention and MLP ``c_proj``) N(0, (std / sqrt(2 L))^2), biases 0, LayerNorm 1 and 0.

    Radford et al. 2019; karpathy/nanoGPT ``model.py``; transformers
    ``GPT2PreTrainedModel._init_weights``. ``lm_head`` is tied to ``wte`` there.

    >>> # report = apply(GPT2LMHeadModel(GPT2Config()), gpt2(model))
    """
    std, seed = _args.std("gpt2", "std", std), _args.seed("gpt2", seed)
    ctx = _context("gpt2", model, context, ("std",))
    ctx.require("gpt2", "attn_out", "mlp_out")
    depth = ctx.need_depth("gpt2")
    out = _RuleSet(ctx, "gpt2")
    out.add(out.at("attn_out", "mlp_out"), Normal(std=std / math.sqrt(2 * depth)), "residual outputs")
    out.rest(Normal(std=std))
    return out.rules(seed)


def megatron(
    model: Any,
    *,
    init_method_std: float = 0.02,
    multiplier: float = 2.0,
    embedding_init_method_std: float | None = None,
    seed: int = 0,
    **context: Any,
) -> Rules:
    """Megatron-LM / megatron-core (``megatron/core/utils.py``): ``init_method_normal(sigma)`` =
    N(0, sigma^2) for every weight (q/k/v, MLP fc1, the untied ``output_layer``),
    ``scaled_init_method_normal(sigma, L, multiplier)`` = N(0, (sigma / sqrt(multiplier L))^2) for
    the ``output_layer_init_method`` layers (attention ``linear_proj`` and MLP ``linear_fc2``);
    embeddings (word and position) ``embedding_init_method_std`` (default sigma); biases 0,
    norms 1 and 0. ``multiplier`` is 2.0, 1.0 for megatron-core's hybrid (Mamba) models.

    Checked against megatron-core 0.16.1's ``TransformerConfig`` defaults and its ``GPTModel``
    built on CPU (``use_cpu_initialization=True``).

    >>> # report = apply(model, megatron(model, init_method_std=0.006))
    """
    sigma = _args.std("megatron", "init_method_std", init_method_std)
    multiplier = _args.std("megatron", "multiplier", multiplier)
    emb = _args.optional_std("megatron", "embedding_init_method_std", embedding_init_method_std)
    seed = _args.seed("megatron", seed)
    ctx = _context("megatron", model, context, ("init_method_std", "multiplier", "embedding_init_method_std"))
    ctx.require("megatron", "attn_out", "mlp_out")
    depth = ctx.need_depth("megatron")
    out = _RuleSet(ctx, "megatron")
    out.add(out.at("attn_out", "mlp_out"), Normal(std=sigma / math.sqrt(multiplier * depth)), "output layers")
    out.add(out.at("embedding", "position"), Normal(std=emb if emb is not None else sigma), "embeddings")
    out.rest(Normal(std=sigma))
    return out.rules(seed)


def small_init(model: Any, *, seed: int = 0, **context: Any) -> Rules:
    """SmallInit (Nguyen & Salazar 2019, "Transformers without Tears"; gpt-neox
    ``small_init_init_method``): every weight N(0, 2 / (5 d)), biases 0, norms 1 and 0."""
    seed = _args.seed("small_init", seed)
    ctx = _context("small_init", model, context)
    out = _RuleSet(ctx, "small_init")
    out.rest(Normal(std=math.sqrt(2 / (5 * ctx.need_width("small_init")))))
    return out.rules(seed)


WANG_VARIANTS = ("neox", "litgpt")


def wang(model: Any, *, variant: str = "neox", litgpt_neox_mlp: bool = False, seed: int = 0, **context: Any) -> Rules:
    """SmallInit N(0, 2 / (5 d)) for every weight and embedding, the residual output layers
    (attention output, MLP output) scaled with depth; biases 0, norms 1 and 0.

    ``variant="neox"``: gpt-neox's ``wang_init_method`` (``megatron/model/init_functions.py``),
    outputs N(0, (2 / (L sqrt(d)))^2) (Wang 2021, Mesh-Transformer-JAX).
    ``variant="litgpt"``: litgpt 0.5.13's ``pretrain.initialize_weights`` ("GPT-NeoX weight
    initialization", via TinyLlama), outputs N(0, (1 / (L sqrt(d)))^2): half gpt-neox's std
    (0.0156 at d=256, L=4, against 0.0313).

    ``litgpt_neox_mlp=True`` (with ``variant="litgpt"``) reproduces a litgpt bug: it rescales
    the ``proj`` of ``LLaMAMLP`` and ``CausalSelfAttention`` only, so on configs whose MLP is a
    ``GptNeoxMLP`` (Pythia, ...) the MLP output stays at SmallInit. Pass it only on such models.

    >>> # report = apply(model, wang(model, variant="litgpt"))
    """
    variant = _args.one_of("wang", "variant", variant, WANG_VARIANTS)
    bug, seed = _args.flag("wang", "litgpt_neox_mlp", litgpt_neox_mlp), _args.seed("wang", seed)
    if bug and variant != "litgpt":
        _args.refuse("wang", "litgpt_neox_mlp=True reproduces litgpt's behaviour; it needs variant='litgpt'")
    ctx = _context("wang", model, context, ("variant", "litgpt_neox_mlp"))
    ctx.require("wang", "attn_out", "mlp_out")
    d, depth = ctx.need_width("wang"), ctx.need_depth("wang")
    out = _RuleSet(ctx, f"wang_{variant}")
    scaled = ("attn_out",) if bug else ("attn_out", "mlp_out")
    numerator = 2.0 if variant == "neox" else 1.0
    out.add(out.at(*scaled), Normal(std=numerator / (depth * math.sqrt(d))), "output layers")
    out.rest(Normal(std=math.sqrt(2 / (5 * d))))
    return out.rules(seed)


def u_mup(model: Any, *, seed: int = 0, **context: Any) -> Rules:
    """u-muP (unit scaling, graphcore-research/unit-scaling): every weight and embedding
    N(0, 1), biases 0, norms 1 and 0. The scales live in the ops (linear output x fan_in^(-1/2),
    readout x fan_in^(-1), residual tau rule), which the model must implement; this is only the
    initialisation half of u-muP.
    """
    seed = _args.seed("u_mup", seed)
    out = _RuleSet(_context("u_mup", model, context), "u_mup")
    out.rest(Normal(std=1.0))
    return out.rules(seed)


def small_init_emb(model: Any, *, scale: float = 1e-4, seed: int = 0, **context: Any) -> Rules:
    """SmallInitEmb (BlinkDL): the token embedding U(-1e-4, 1e-4); the model should put a
    LayerNorm right after it (RWKV's ``ln0``). Everything else is kept."""
    scale, seed = _args.std("small_init_emb", "scale", scale), _args.seed("small_init_emb", seed)
    ctx = _context("small_init_emb", model, context, ("scale",))
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
    seed = _args.seed("modded_nanogpt", seed)
    ctx = _context("modded_nanogpt", model, context)
    ctx.require("modded_nanogpt", "mlp_out")
    d = ctx.need_width("modded_nanogpt")
    bound = math.sqrt(3) * 0.5 / math.sqrt(d)
    out = _RuleSet(ctx, "modded_nanogpt")
    out.add(out.at("mlp_out"), schemes.zeros(), "MLP out (zero)")
    out.add(out.at("q", "k", "v", "qkv", "attn_out", "mlp_in"), Uniform(low=-bound, high=bound), "hidden")
    out.add(out.at("readout", "embedding"), Normal(std=0.005), "readout, embedding")
    out.rest(None)
    return out.rules(seed)
