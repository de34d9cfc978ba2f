"""Small configurations of real third-party architectures that more than one modern-scheme test
builds (tests/test_modern.py, tests/test_modern_references.py)."""

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
