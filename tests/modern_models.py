"""Small configurations of real third-party architectures that more than one modern-scheme test
builds (tests/test_modern.py, tests/test_modern_references.py), and the per-parameter stds a
scheme's rules promise over a model context (the structure and identity tests compare them)."""

from __future__ import annotations

from typing import Any


def small_bart_config(transformers: Any) -> Any:
    """A 3-encoder, 2-decoder-layer BART (d_model 64, 4 heads, ffn 128): deep enough for the
    DeepNet and T-Fixup depth coefficients to differ per stack, small enough to build in ms."""
    return transformers.BartConfig(
        vocab_size=256,
        d_model=64,
        encoder_layers=3,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=64,
    )


def promised_stds(ctx: Any, rules: Any, fans: str = "semantic", digits: int = 12) -> list:
    """Per parameter of ``ctx``, in declaration order: the std the first rule that takes it
    promises under ``fans`` (rounded to ``digits``), ``"KEEP"``, or None where no rule does."""
    from polyinit.plan import resolve
    from polyinit.rules import KEEP, Context

    rule_context, out = Context(ctx.params), []
    for p in ctx.params:
        spec = next((s for selector, s in rules.rules if selector.matches(p, rule_context)), None)
        out.append(
            None
            if spec is None
            else "KEEP"
            if spec is KEEP
            else round(resolve(spec, *p.target(fans)).stats.std, digits)
        )
    return out
