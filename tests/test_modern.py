"""Modern schemes (polyinit.modern) against their reference code and their published formulas.

Every expected law here is computed in the test from the paper's or the reference code's formula
(or read off the reference implementation's own initialisation), never from polyinit, and checked
with tests/reference_tables.py (as tests/test_modern_references.py): a sample std s of n values
with excess kurtosis k satisfies s / sigma - 1 ~ N(0, (k + 2) / (4 n)); each check uses z = 5
(two-sided alpha = 5.7e-7 per parameter), with fixed seeds; a cut or a uniform's bound is checked
exactly, zeros and ones exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from modern_models import small_bart_config
from reference_tables import ONE, ZERO, Law, check_model, check_param, normal, torch_values, uniform

from polyinit import modern
from polyinit.context import ContextError, model_context


def uniform_with_std(std: float) -> Law:
    """U(-b, b) with std b / sqrt(3) = ``std``."""
    return uniform(std * math.sqrt(3))


@pytest.fixture(scope="module")
def gpt2_config():
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2Config(n_layer=4, n_embd=128, n_head=4, vocab_size=512, n_positions=64)


def _gpt2(config, seed: int):
    import torch
    from transformers import GPT2LMHeadModel

    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def _gpt2_expected(config, law_of) -> dict:
    """path -> expected law for every GPT-2 parameter (layer norms 1 and 0, biases 0), the
    embeddings' and weights' from ``law_of(kind, block)``."""
    expected = {
        "transformer.wte.weight": law_of("wte", None),
        "transformer.wpe.weight": law_of("wpe", None),
        "transformer.ln_f.weight": ONE,
        "transformer.ln_f.bias": ZERO,
    }
    for i in range(config.n_layer):
        h = f"transformer.h.{i}"
        expected.update(
            {f"{h}.ln_1.weight": ONE, f"{h}.ln_1.bias": ZERO, f"{h}.ln_2.weight": ONE, f"{h}.ln_2.bias": ZERO}
        )
        for module, kind in (
            ("attn.c_attn", "qkv"),
            ("attn.c_proj", "attn_out"),
            ("mlp.c_fc", "mlp_in"),
            ("mlp.c_proj", "mlp_out"),
        ):
            expected[f"{h}.{module}.weight"] = law_of(kind, i)
            expected[f"{h}.{module}.bias"] = ZERO
    return expected


def test_gpt2_matches_transformers_init(gpt2_config):
    """transformers' own GPT2PreTrainedModel._init_weights and polyinit's gpt2 both give the
    formula: 0.02 everywhere, 0.02 / sqrt(2 L) on attn.c_proj and mlp.c_proj."""
    from polyinit.rules import apply

    L = gpt2_config.n_layer
    expected = _gpt2_expected(
        gpt2_config, lambda kind, i: normal(0.02 / math.sqrt(2 * L) if kind in ("attn_out", "mlp_out") else 0.02)
    )
    check_model(torch_values(_gpt2(gpt2_config, 0)), expected)  # the reference implementation
    model = _gpt2(gpt2_config, 1)
    apply(model, modern.gpt2(model, seed=3))
    check_model(torch_values(model), expected)
    assert model.lm_head.weight is model.transformer.wte.weight  # still tied


@pytest.mark.parametrize(
    "scheme",
    [
        "megatron",
        "olmo_mitchell",
        "olmo_full_megatron",
        "wang",
        "small_init",
        "modded_nanogpt",
        "u_mup",
        "small_init_emb",
    ],
)
def test_gpt2_schemes_follow_their_formulas(gpt2_config, scheme):
    from polyinit.rules import apply

    L, d = gpt2_config.n_layer, gpt2_config.n_embd
    d_ff = 4 * d
    if scheme == "megatron":
        rules_for = lambda m: modern.megatron(m)
        law_of = lambda kind, i: normal(0.02 / math.sqrt(2 * L) if kind in ("attn_out", "mlp_out") else 0.02)
    elif scheme == "olmo_mitchell":  # normals cut at 3 std
        rules_for = lambda m: modern.olmo(m, init_fn="mitchell")
        law_of = lambda kind, i: normal(
            1 / math.sqrt(2 * d * (i + 1))
            if kind == "attn_out"
            else 1 / math.sqrt(2 * d_ff * (i + 1))
            if kind == "mlp_out"
            else 1 / math.sqrt(d),
            cut=3.0,
        )
    elif scheme == "olmo_full_megatron":
        rules_for = lambda m: modern.olmo(m, init_fn="full_megatron")
        law_of = lambda kind, i: normal(0.02 / math.sqrt(2 * L) if kind in ("attn_out", "mlp_out") else 0.02, cut=3.0)
    elif scheme == "wang":
        rules_for = lambda m: modern.wang(m)
        law_of = lambda kind, i: normal(
            2 / (L * math.sqrt(d)) if kind in ("attn_out", "mlp_out") else math.sqrt(2 / (5 * d))
        )
    elif scheme == "small_init":
        rules_for = lambda m: modern.small_init(m)
        law_of = lambda kind, i: normal(math.sqrt(2 / (5 * d)))
    elif scheme == "u_mup":
        rules_for = lambda m: modern.u_mup(m)
        law_of = lambda kind, i: normal(1.0)
    elif scheme == "modded_nanogpt":  # the speedrun has no learned positions: wpe is kept, by saying so
        from polyinit.rules import name

        with pytest.raises(ContextError, match=r"transformer\.wpe\.weight .*keep="):
            modern.modded_nanogpt(_gpt2(gpt2_config, 2))
        rules_for = lambda m: modern.modded_nanogpt(m, keep=name("transformer.wpe.weight"))
        # uniform hidden matrices, the MLP's output zero, the token embedding N(0, 0.005)
        law_of = lambda kind, i: (
            ZERO if kind == "mlp_out" else normal(0.005) if kind == "wte" else uniform_with_std(0.5 / math.sqrt(d))
        )
    else:  # small_init_emb: only the token embedding, U(+-1e-4)
        model = _gpt2(gpt2_config, 2)
        apply(model, modern.small_init_emb(model))
        check_param("wte", torch_values(model)["transformer.wte.weight"], uniform(1e-4))
        return
    model = _gpt2(gpt2_config, 2)
    apply(model, rules_for(model))
    expected = _gpt2_expected(gpt2_config, law_of)
    if scheme == "modded_nanogpt":  # only the weights are the scheme's; wpe is kept as the framework made it
        values = torch_values(model)
        for path, law in expected.items():
            if path.endswith("weight") and "ln_" not in path and path != "transformer.wpe.weight":
                check_param(path, values[path], law)
        return
    check_model(torch_values(model), expected)


def test_t5_matches_transformers_init():
    """transformers' T5PreTrainedModel._init_weights and polyinit's t5 against the formulas."""
    transformers = pytest.importorskip("transformers")
    import torch

    from polyinit.rules import apply

    config = transformers.T5Config(
        vocab_size=256, d_model=64, d_kv=16, d_ff=256, num_layers=2, num_heads=4, relative_attention_num_buckets=8
    )
    d, d_kv, h, d_ff = 64, 16, 4, 256

    def expected_law(path: str) -> Law:
        leaf = path.split(".")[-2]
        if "layer_norm" in path:
            return ONE
        return normal(
            {
                "shared": 1.0,
                "q": 1 / math.sqrt(d * d_kv),
                "k": 1 / math.sqrt(d),
                "v": 1 / math.sqrt(d),
                "o": 1 / math.sqrt(h * d_kv),
                "wi": 1 / math.sqrt(d),
                "wo": 1 / math.sqrt(d_ff),
                "relative_attention_bias": 1 / math.sqrt(d),
            }[leaf]
        )

    torch.manual_seed(0)
    reference = torch_values(transformers.T5ForConditionalGeneration(config))
    torch.manual_seed(1)
    model = transformers.T5ForConditionalGeneration(config)
    apply(model, modern.t5(model, seed=5))
    ours = torch_values(model)
    assert set(reference) == set(ours)
    for values in (reference, ours):
        check_model(values, {path: expected_law(path) for path in values})


def test_mup_matches_the_mup_package():
    """The mup package's own init (set_base_shapes, then mup.init.normal_) and polyinit's mup
    give the same std per parameter: hidden weights std / sqrt(width_mult), others std."""
    torch = pytest.importorskip("torch")
    mup_package = pytest.importorskip("mup")
    from torch import nn

    from polyinit.rules import apply

    class Net(nn.Module):
        def __init__(self, width: int, vocab: int = 300):
            super().__init__()
            self.embed = nn.Embedding(vocab, width)
            self.hidden1 = nn.Linear(width, 4 * width)
            self.hidden2 = nn.Linear(4 * width, width)
            self.readout = mup_package.MuReadout(width, vocab)

    std, base_width, width = 0.02, 32, 256
    torch.manual_seed(0)
    reference = Net(width)
    mup_package.set_base_shapes(reference, Net(base_width))
    for name, p in reference.named_parameters():
        if "bias" in name:
            nn.init.zeros_(p)
        else:
            mup_package.init.normal_(p, std=std)
    model = Net(width)
    apply(model, modern.mup(model, Net(base_width), std=std, seed=1))
    expected = {
        "embed.weight": std,
        "hidden1.weight": std / math.sqrt(width / base_width),
        "hidden2.weight": std / math.sqrt(4 * width / (4 * base_width)),
        "readout.weight": std,
    }
    for values in (torch_values(reference), torch_values(model)):
        for path, sigma in expected.items():
            check_param(path, values[path], normal(sigma))
        assert all(np.all(values[p] == 0) for p in values if p.endswith("bias"))
    zero = Net(width)
    apply(zero, modern.mup(zero, Net(base_width), readout_zero=True))
    assert np.all(torch_values(zero)["readout.weight"] == 0)


@pytest.fixture(scope="module")
def bart():
    return small_bart_config(pytest.importorskip("transformers"))


def _xavier(fan_in: int, fan_out: int, gain: float) -> float:
    return gain * math.sqrt(2 / (fan_in + fan_out))


def _bart_expected(config, gains) -> dict:
    """path -> expected xavier std for the attention and MLP weights of a BART model."""
    d, f = config.d_model, config.encoder_ffn_dim
    out = {}
    for stack, layers in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        attentions = ("self_attn", "encoder_attn") if stack == "decoder" else ("self_attn",)
        for i in range(layers):
            base = f"{stack}.layers.{i}"
            for attention in attentions:
                for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                    out[f"{base}.{attention}.{proj}.weight"] = _xavier(d, d, gains(stack, proj))
            out[f"{base}.fc1.weight"] = _xavier(d, f, gains(stack, "fc1"))
            out[f"{base}.fc2.weight"] = _xavier(f, d, gains(stack, "fc2"))
    return out


def test_deepnet_follows_the_paper(bart):
    """DeepNet (arXiv:2203.00555, Figure 2): ffn, v_proj, out_proj xavier_normal(gain=beta),
    q_proj, k_proj xavier_normal(gain=1); encoder-decoder beta: encoder 0.87 (N^4 M)^(-1/16),
    decoder (12 M)^(-1/4)."""
    import transformers

    from polyinit.rules import apply

    N, M = bart.encoder_layers, bart.decoder_layers
    beta = {"encoder": 0.87 * (N**4 * M) ** (-1 / 16), "decoder": (12 * M) ** -0.25}
    model = transformers.BartModel(bart)
    apply(model, modern.deepnet(model))
    values = torch_values(model)
    for path, std in _bart_expected(bart, lambda s, p: 1.0 if p in ("q_proj", "k_proj") else beta[s]).items():
        check_param(path, values[path], normal(std))


def test_t_fixup_follows_the_paper(bart):
    """T-Fixup: encoder fc1, fc2, out_proj gain 0.67 N^(-1/4), v_proj 0.67 N^(-1/4) sqrt(2) on
    a gain-1/sqrt(2) xavier; decoder with (9 M)^(-1/4); q, k xavier gain 1/sqrt(2)."""
    import transformers

    from polyinit.rules import apply

    N, M = bart.encoder_layers, bart.decoder_layers
    scale = {"encoder": 0.67 * N**-0.25, "decoder": (9 * M) ** -0.25}
    model = transformers.BartModel(bart)
    apply(model, modern.t_fixup(model))
    values = torch_values(model)
    gains = lambda s, p: 1 / math.sqrt(2) if p in ("q_proj", "k_proj") else scale[s]
    for path, std in _bart_expected(bart, gains).items():
        check_param(path, values[path], uniform_with_std(std))


def test_fixup_on_keras_resnet50():
    """Fixup on keras.applications.ResNet50 (bottleneck branches, m = 3, L = 16): branch convs
    He fan_out x L^(-1/4), the last conv of each branch 0, shortcut convs He fan_out, the final
    dense layer 0."""
    keras = pytest.importorskip("keras")
    from polyinit.rules import apply

    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10)
    apply(model, modern.fixup(model, seed=0))
    blocks = 16
    for v in model.weights:
        path = v.path
        if not path.endswith("conv/kernel") or not path.startswith("conv") or "block" not in path:
            continue
        kh, kw, _, c_out = v.shape
        he_fan_out = math.sqrt(2 / (c_out * kh * kw))
        branch_conv = path.split("/")[0].split("_")[2]  # conv2_block1_{0,1,2,3}_conv
        values = keras.ops.convert_to_numpy(v)
        expected = {
            "0": normal(he_fan_out),
            "1": normal(he_fan_out * blocks**-0.25),
            "2": normal(he_fan_out * blocks**-0.25),
            "3": ZERO,
        }
        check_param(path, values, expected[branch_conv])
    dense = model.get_layer("predictions")
    assert all(np.all(keras.ops.convert_to_numpy(w) == 0) for w in dense.weights)


def test_context_derives_depth_width_and_sites(gpt2_config):
    model = _gpt2(gpt2_config, 0)
    ctx = model_context(model)
    assert (ctx.depth, ctx.width) == (gpt2_config.n_layer, gpt2_config.n_embd)
    assert ctx.site("transformer.h.3.mlp.c_proj.weight").site == "mlp_out"
    assert ctx.site("transformer.h.3.mlp.c_proj.weight").block == 3
    assert ctx.site("transformer.h.0.attn.c_attn.weight").site == "qkv"


def test_missing_context_is_an_error_naming_it():
    torch = pytest.importorskip("torch")
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    with pytest.raises(ContextError, match="attn_out, mlp_out"):
        modern.gpt2(mlp)
    with pytest.raises(ContextError, match="width"):
        modern.small_init(torch.nn.Sequential(torch.nn.Linear(4, 8)))
    with pytest.raises(ContextError, match="unknown site"):
        from polyinit.rules import every

        model_context(mlp, sites={"residual": every()})


def test_context_of_bert_and_torch_transformers():
    """Sites and stacks from the records of real architectures: BERT's attention.output.dense is
    the attention output and its layer output.dense the MLP's; torch's packed in_proj is q/k/v."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from collections import Counter

    bert = transformers.BertModel(
        transformers.BertConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=100
        )
    )
    ctx = model_context(bert)
    assert (ctx.depth, ctx.width) == (2, 64)
    assert ctx.site("encoder.layer.1.attention.output.dense.weight") == ctx.site(
        "encoder.layer.1.attention.output.dense.bias"
    )
    assert ctx.site("encoder.layer.1.attention.output.dense.weight").site == "attn_out"
    assert ctx.site("encoder.layer.1.output.dense.weight").site == "mlp_out"
    assert ctx.site("pooler.dense.weight").site == "other"
    pair = torch.nn.Transformer(
        64, 4, num_encoder_layers=3, num_decoder_layers=2, dim_feedforward=128, batch_first=True
    )
    ctx = model_context(pair)
    assert ctx.depths == {"encoder": 3, "decoder": 2}
    sites = Counter((s.site, s.stack) for s in ctx.sites.values())
    assert sites[("qkv", "decoder")] == 8 and sites[("attn_out", "encoder")] == 6
