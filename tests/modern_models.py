"""Small configurations of real third-party architectures that more than one modern-scheme test
builds (tests/test_modern.py, tests/test_modern_references.py), the per-parameter stds a
scheme's rules promise over a model context (the structure and identity tests compare them), and
a transformers model whose forward pass needs values (the meta-device tests)."""

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


def value_dependent(model_class: Any) -> Any:
    """A subclass of the transformers model ``model_class`` whose forward pass first tests a value
    in Python, which neither meta nor fake tensors can answer: on the meta device it cannot be traced."""

    class ValueDependent(model_class):
        def forward(self, input_ids=None, **kwargs):
            if bool((input_ids >= 0).all()):
                return super().forward(input_ids=input_ids, **kwargs)
            raise ValueError("negative token ids")

    return ValueDependent
