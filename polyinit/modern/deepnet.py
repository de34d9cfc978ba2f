"""DeepNet / DeepNorm (Wang et al. 2022, arXiv:2203.00555), as the paper writes it and as
microsoft/torchscale 0.3.0 runs it."""

from __future__ import annotations

import math
from typing import Any

from polyinit import schemes
from polyinit.context import ContextError, ModelContext
from polyinit.modern import _args
from polyinit.modern._base import (
    _attention,
    _context,
    _RuleSet,
    _xavier,
    sibling_weight,
)
from polyinit.rules import Rules
from polyinit.spec import Normal, Spec, Uniform, VarianceScaling

DEEPNET_ARCHITECTURES = ("encoder", "decoder", "encoder_decoder")
DEEPNET_REFERENCES = ("paper", "torchscale")


def deepnet_coefficients(
    architecture: str, encoder_layers: int = 0, decoder_layers: int = 0, reference: str = "paper"
) -> dict:
    """DeepNorm's (alpha, beta) per stack (Wang et al. 2022, Figure 2):
    encoder-only alpha (2N)^(1/4), beta (8N)^(-1/4); decoder-only (2M)^(1/4), (8M)^(-1/4);
    encoder-decoder: encoder 0.81 (N^4 M)^(1/16), 0.87 (N^4 M)^(-1/16); decoder (3M)^(1/4),
    (12M)^(-1/4). ``reference="torchscale"``: torchscale's ``Encoder.__init__`` divides by
    (N^4 M)^(1/16) / 1.15, so its encoder-decoder encoder beta is 1.15 (N^4 M)^(-1/16)
    (1.32x the paper's variance); the other betas agree.

    >>> round(deepnet_coefficients("decoder", decoder_layers=4)["decoder"][1], 4)
    0.4204
    """
    architecture = _args.one_of("deepnet", "architecture", architecture, DEEPNET_ARCHITECTURES)
    reference = _args.one_of("deepnet", "reference", reference, DEEPNET_REFERENCES)
    n, m = encoder_layers, decoder_layers
    for name, layers, used in (
        ("encoder_layers", n, architecture != "decoder"),
        ("decoder_layers", m, architecture != "encoder"),
    ):
        if used and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 1):
            raise ContextError(f"deepnet: the {architecture} architecture needs {name} >= 1, received {layers!r}")
    if architecture == "encoder":
        return {"encoder": ((2 * n) ** 0.25, (8 * n) ** -0.25)}
    if architecture == "decoder":
        return {"decoder": ((2 * m) ** 0.25, (8 * m) ** -0.25)}
    pinned = 1.15 if reference == "torchscale" else 0.87
    return {
        "encoder": (0.81 * (n**4 * m) ** (1 / 16), pinned * (n**4 * m) ** (-1 / 16)),
        "decoder": ((3 * m) ** 0.25, (12 * m) ** -0.25),
    }


def deepnet(
    model: Any,
    *,
    architecture: str | None = None,
    reference: str = "paper",
    torchscale_unreset_attention: bool = False,
    seed: int = 0,
    **context: Any,
) -> Rules:
    """DeepNet's initialisation; beta from ``deepnet_coefficients``, L per stack from the model.

    ``reference="paper"`` (Figure 2's pseudo-code): the MLP (fc1, fc2), v and attention-output
    weights xavier_normal with gain beta, q and k xavier_normal with gain 1, other weights
    xavier_normal, biases 0, norms 1 and 0.

    ``reference="torchscale"`` (torchscale 0.3.0, ``MultiheadAttention.reset_parameters``, then
    ``Encoder``/``Decoder.__init__``'s ``p.data.div_(init_scale)`` on every parameter whose name
    holds fc1, fc2, out_proj or v_proj, weights and biases): q, k xavier_uniform gain 1/sqrt(2),
    v xavier_uniform gain beta/sqrt(2), attention output xavier_uniform gain beta and bias 0;
    fc1, fc2 torch ``Linear``'s default times beta, U(+-beta / sqrt(fan_in)); the q, k biases
    U(+-1/sqrt(fan_in)) and the v, fc1, fc2 biases U(+-beta/sqrt(fan_in)) (Linear's default bias,
    divided where the name matches); token embeddings ``TextEmbedding`` N(0, 1/d); the untied
    output projection N(0, 1/d); position embeddings N(0, 1) (``nn.Embedding``'s); other weights
    Linear's default U(+-1/sqrt(fan_in)). The encoder-decoder encoder's beta is torchscale's.

    ``torchscale_unreset_attention=True`` reproduces a torchscale bug: without ``multiway``,
    nothing calls ``MultiheadAttention.reset_parameters``, so q, k, v and the output projection
    keep torch ``Linear``'s default U(+-1/sqrt(fan_in)) (biases too) before the division.

    The residual x <- LN(alpha x + G(x)) is the model's to do. ``architecture`` defaults to what
    the model's stacks say.

    >>> # report = apply(bart, deepnet(bart, reference="torchscale"))
    """
    reference = _args.one_of("deepnet", "reference", reference, DEEPNET_REFERENCES)
    unreset = _args.flag("deepnet", "torchscale_unreset_attention", torchscale_unreset_attention)
    seed = _args.seed("deepnet", seed)
    if architecture is not None:
        architecture = _args.one_of("deepnet", "architecture", architecture, DEEPNET_ARCHITECTURES)
    if unreset and reference != "torchscale":
        _args.refuse(
            "deepnet", "torchscale_unreset_attention=True reproduces torchscale; it needs reference='torchscale'"
        )
    ctx = _context("deepnet", model, context, ("architecture", "reference", "torchscale_unreset_attention"))
    ctx.require("deepnet", "attn_out", "mlp_out")
    coefficients = deepnet_coefficients(*_architecture(ctx, architecture), reference=reference)
    out = _RuleSet(ctx, f"deepnet_{reference}")
    for stack, (_, beta) in coefficients.items():
        where = stack if ctx.depth_of(stack) else ""
        if reference == "paper":
            one, scaled = _xavier(1.0, normal=True), _xavier(beta, normal=True)
            _attention(out, where, one, one, scaled, scaled, f"{stack} (beta {beta:.4g})")
        else:
            _torchscale_stack(out, where, beta, unreset, f"{stack} (beta {beta:.4g})")
    if reference == "paper":
        out.rest(_xavier(1.0, normal=True))
        return out.rules(seed)
    d = ctx.need_width("deepnet")
    out.add(out.at("embedding", "readout"), Normal(std=d**-0.5), "token embeddings, output projection")
    out.add(out.at("position"), Normal(std=1.0), "position embeddings (nn.Embedding default)")
    out.rest(_linear_default(1.0))
    return out.rules(seed)


def _architecture(ctx: ModelContext, architecture: str | None) -> tuple[str, int, int]:
    """(architecture, N, M) from the model's stacks; an architecture the model cannot have is a
    ContextError (encoder-decoder on a decoder-only model)."""
    n, m = ctx.depth_of("encoder"), ctx.depth_of("decoder")
    if architecture is None:
        architecture = "encoder_decoder" if n and m else "encoder" if n else "decoder"
    if architecture == "encoder_decoder":
        if not (n and m):
            raise ContextError(
                f"deepnet: architecture='encoder_decoder' needs an encoder and a decoder stack; "
                f"this model has {_stacks(ctx)}; pass depth={{'encoder': N, 'decoder': M}} "
                "to mark them, or another architecture"
            )
        return architecture, n, m
    if not (n or m):
        n = m = ctx.need_depth("deepnet")
    return architecture, n or m, m or n


def _stacks(ctx: ModelContext) -> str:
    stacks = (f"{stack or 'one unnamed stack'} ({depth} blocks)" for stack, depth in ctx.depths.items())
    return ", ".join(stacks) or "no stack"


def _linear_default(gain: float) -> Spec:
    """torch ``Linear``'s default weight, kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), times gain."""
    return VarianceScaling(scale=gain**2 / 3, mode="fan_in", distribution="uniform")


def _torchscale_stack(out: _RuleSet, stack: str, beta: float, unreset: bool, what: str) -> None:
    half = 1 / math.sqrt(2)
    if unreset:
        q = k = _linear_default(1.0)
        v = attn_out = _linear_default(beta)
    else:
        q, k, v, attn_out = _xavier(half), _xavier(half), _xavier(beta * half), _xavier(beta)
    from polyinit.spec import Blocks

    out.add(out.at("qkv", stack=stack), Blocks(axis="out", parts=(q, k, v)), f"{what} qkv")
    for name, spec in (("q", q), ("k", k), ("v", v), ("attn_out", attn_out)):
        out.add(out.at(name, stack=stack), spec, f"{what} {name}")
    out.add(out.at("mlp_in", "mlp_out", stack=stack), _linear_default(beta), f"{what} fc1, fc2")
    ctx = out.context
    for p in ctx.params:
        site = ctx.sites[p.path]
        if (
            ctx.role(p) != "bias"
            or site.stack != stack
            or site.site not in ("q", "k", "v", "attn_out", "mlp_in", "mlp_out")
        ):
            continue
        if site.site == "attn_out" and not unreset:
            out.add([p.path], schemes.zeros(), f"{what} attention output bias")
            continue
        weight = sibling_weight(ctx, p.path)
        if weight is None:
            continue
        gain = 1.0 if site.site in ("q", "k") else beta
        bound = gain / math.sqrt(ctx.fan_in(weight))
        out.add([p.path], Uniform(low=-bound, high=bound), f"{what} {site.site} bias (Linear default)")
