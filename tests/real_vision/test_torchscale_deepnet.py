"""DeepNet as microsoft/torchscale 0.3.0 runs it (issue 23): torchscale's own encoder-decoder
with ``deepnorm=True`` built from its config, initialised by its own constructors, against
polyinit's ``deepnet(reference="torchscale")`` per parameter, with no ``sites=`` or ``depth=``:
sites, stacks and depth come from one traced forward pass of torchscale's model.

Every parameter's values, drawn by torchscale, must follow the law polyinit promises for it
(``reference_tables.check_param``): the sample std within z <= 5 of the promised std (two-sided
false-alarm probability 5.7e-7 per parameter; seeds fixed, so the outcome is deterministic),
every value inside the promised support, zeros and ones exact.
"""

from __future__ import annotations

import math

import pytest
from vision_helpers import import_or_skip, promised_law

torch = import_or_skip("torch")
import_or_skip("torchscale.architecture.encoder_decoder")

from reference_tables import check_param, normal, torch_values, uniform
from torchscale.architecture.config import EncoderDecoderConfig
from torchscale.architecture.encoder_decoder import EncoderDecoder
from torchscale.component.embedding import PositionalEmbedding, TextEmbedding
from torchscale.component.multihead_attention import MultiheadAttention

from polyinit import modern
from polyinit.context import Site, model_context
from polyinit.plan import resolve
from polyinit.rules import Context, apply

D, FFN, HEADS, N, M, VOCAB, POSITIONS = 128, 256, 4, 3, 2, 256, 66
IDS = (torch.arange(8) % VOCAB).unsqueeze(0)


def torchscale_model(reset: bool, monkeypatch) -> torch.nn.Module:
    """torchscale's EncoderDecoder with DeepNorm, its token embeddings ``TextEmbedding`` and its
    positions ``PositionalEmbedding`` (fairseq's setup). ``reset``: as if ``MultiheadAttention``
    ran its own ``reset_parameters`` when built (torchscale calls it only for multiway's copy, so
    as released q, k, v and out keep Linear's default); the deepnorm division follows either way."""
    if reset:
        built = MultiheadAttention.__init__

        def init_then_reset(self, *args, **kwargs):
            built(self, *args, **kwargs)
            self.reset_parameters()

        monkeypatch.setattr(MultiheadAttention, "__init__", init_then_reset)
    config = EncoderDecoderConfig(
        vocab_size=VOCAB,
        encoder_embed_dim=D,
        encoder_attention_heads=HEADS,
        encoder_ffn_embed_dim=FFN,
        encoder_layers=N,
        decoder_embed_dim=D,
        decoder_attention_heads=HEADS,
        decoder_ffn_embed_dim=FFN,
        decoder_layers=M,
        deepnorm=True,
    )
    assert config.deepnorm and not config.subln and not config.encoder_normalize_before
    torch.manual_seed(0)
    return EncoderDecoder(
        config,
        encoder_embed_tokens=TextEmbedding(VOCAB, D),
        encoder_embed_positions=PositionalEmbedding(POSITIONS, D),
        decoder_embed_tokens=TextEmbedding(VOCAB, D),
        decoder_embed_positions=PositionalEmbedding(POSITIONS, D),
    )


def promises(model, rules) -> dict:
    ctx = model_context(model, example_input=(IDS, IDS))
    rule_context = Context(ctx.params)
    out = {}
    for p in ctx.params:
        spec = next(s for sel, s in rules.rules if sel.matches(p, rule_context))
        out[p.path] = promised_law(resolve(spec, p.shape, p.layout).stats)
    return out


@pytest.mark.parametrize("reset", [False, True], ids=["as_released", "attention_reset"])
def test_torchscale_own_init_follows_polyinit_deepnet_torchscale(reset, monkeypatch):
    model = torchscale_model(reset, monkeypatch)
    drawn = torch_values(model)  # torchscale's own initialisation, before polyinit touches anything
    rules = modern.deepnet(
        model, reference="torchscale", torchscale_unreset_attention=not reset, example_input=(IDS, IDS)
    )
    laws = promises(model, rules)
    assert set(laws) == set(drawn) and len(drawn) > 100
    for path, law in laws.items():
        check_param(path, drawn[path], law)
    # polyinit's scheme on a fresh copy, derived again from that copy: its values follow the same laws.
    fresh = torchscale_model(reset, monkeypatch)
    apply(
        fresh,
        modern.deepnet(
            fresh, reference="torchscale", torchscale_unreset_attention=not reset, example_input=(IDS, IDS), seed=7
        ),
    )
    ours = torch_values(fresh)
    for path, law in laws.items():
        check_param(path, ours[path], law)
    # The laws that differ from the paper's are there: beta 1.15 (N^4 M)^(-1/16) on the encoder.
    beta = 1.15 * (N**4 * M) ** (-1 / 16)
    fc1 = laws["encoder.layers.0.ffn.fc1.weight"]
    assert fc1 == uniform(beta / math.sqrt(D))
    assert laws["decoder.output_projection.weight"] == normal(D**-0.5)


def test_torchscale_sites_and_depth_come_from_its_structure(monkeypatch):
    """The sites deepnet reads, from the trace of torchscale's model (DeepNorm's residual
    x <- LN(alpha x + G(x)) is a residual add), equal the architecture: fairseq's names say what
    each parameter is in torchscale's source (``self_attn``/``encoder_attn`` q_proj, k_proj, v_proj,
    out_proj; ``ffn.fc1``/``fc2``; the decoder's ``output_projection``)."""
    model = torchscale_model(False, monkeypatch)
    ctx = model_context(model, example_input=(IDS, IDS))
    assert dict(ctx.depths) == {"encoder": N, "decoder": M}
    by_module = {
        "q_proj": "q",
        "k_proj": "k",
        "v_proj": "v",
        "out_proj": "attn_out",
        "fc1": "mlp_in",
        "fc2": "mlp_out",
        "self_attn_layer_norm": "norm",
        "encoder_attn_layer_norm": "norm",
        "final_layer_norm": "norm",
        "embed_tokens": "embedding",
        "embed_positions": "position",
        "output_projection": "readout",
    }
    for p in ctx.params:
        tokens = p.path.split(".")
        stack, module = tokens[0], tokens[-2]
        block = int(tokens[2]) if tokens[1] == "layers" else None
        site = by_module[module]
        assert ctx.sites[p.path] == Site(site, block, stack), (p.path, ctx.sites[p.path])
        assert ctx.source(p.path) == "structure", p.path
