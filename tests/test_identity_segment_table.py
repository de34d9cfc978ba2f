"""BERT's token-type (segment) table is an embedding in torch and in Keras (issue 20 (f)).

It is a table of its own vocabulary (two segments) indexed by an input of its own and added to the
stream, as the token table is; megatron's BERT draws it with the word embeddings' init_method and
transformers' ``_init_weights`` with the same N(0, 0.02) as every embedding. keras-hub's
``BertBackbone`` reads it with its ``segment_ids`` input. transformers' ``BertModel`` traced on the
derived input (token ids only) reads it at the default all-zero ids: two rows read at eight
positions, which no position table can be. So both codebases call it an ``embedding``, and every
scheme promises the same std for every parameter of the two (``fans="semantic"``), paired by
identity (SmallInitEmb draws embeddings U(+-1e-4) and no position table, so it tells a table placed
as a position table apart)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hub = pytest.importorskip("keras_hub")

from polyinit import modern
from polyinit.context import model_context
from polyinit.identity import identities_of
from tests.modern_models import promised_stds

WIDTH, HEADS, LAYERS, VOCAB, POSITIONS = 16, 2, 2, 50, 8

SCHEMES = {
    "gpt2": lambda c: modern.gpt2(c),
    "megatron": lambda c: modern.megatron(c),
    "olmo_mitchell": lambda c: modern.olmo(c, init_fn="mitchell"),
    "olmo_normal": lambda c: modern.olmo(c, init_fn="normal", generation="olmo1"),
    "small_init": lambda c: modern.small_init(c),
    "small_init_emb": lambda c: modern.small_init_emb(c),
    "wang": lambda c: modern.wang(c),
    "u_mup": lambda c: modern.u_mup(c),
    "deepnet": lambda c: modern.deepnet(c, architecture="encoder"),
}


@pytest.fixture(scope="module")
def bert_pair():
    """transformers' BertModel and keras-hub's BertBackbone from one tiny config."""
    torch_model = transformers.BertModel(
        transformers.BertConfig(
            vocab_size=VOCAB,
            hidden_size=WIDTH,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=2 * WIDTH,
            max_position_embeddings=POSITIONS,
            type_vocab_size=2,
        )
    )
    keras_model = hub.models.BertBackbone(
        vocabulary_size=VOCAB,
        num_layers=LAYERS,
        num_heads=HEADS,
        hidden_dim=WIDTH,
        intermediate_dim=2 * WIDTH,
        max_sequence_length=POSITIONS,
        num_segments=2,
    )
    return [(model, model_context(model), identities_of(model)) for model in (torch_model, keras_model)]


def test_the_token_type_table_is_an_embedding_in_both(bert_pair):
    (_, torch_ctx, _), (_, keras_ctx, _) = bert_pair
    assert torch_ctx.sites["embeddings.token_type_embeddings.weight"].site == "embedding"
    assert keras_ctx.sites["segment_embedding/embeddings"].site == "embedding"
    assert torch_ctx.sites["embeddings.position_embeddings.weight"].site == "position"
    assert keras_ctx.sites["position_embedding/embeddings"].site == "position"
    assert torch_ctx.source("embeddings.token_type_embeddings.weight") == "structure"


def promised(ctx, identities: dict, rules) -> dict:
    """identity -> the std the rules promise there under fans="semantic" ("KEEP", or None where
    no rule takes it)."""
    return {identities[p.path]: std for p, std in zip(ctx.params, promised_stds(ctx, rules, digits=10))}


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_bert_same_std_per_parameter_in_transformers_and_keras_hub(bert_pair, scheme):
    (_, torch_ctx, torch_ids), (_, keras_ctx, keras_ids) = bert_pair
    torch_table = promised(torch_ctx, torch_ids, SCHEMES[scheme](torch_ctx))
    keras_table = promised(keras_ctx, keras_ids, SCHEMES[scheme](keras_ctx))
    assert torch_table == keras_table
    assert len(torch_table) == len(torch_ctx.params)  # one identity per parameter
