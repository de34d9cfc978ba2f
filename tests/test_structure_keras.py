"""The Keras tracer (issue 20): the graph of a Keras model on its backend, checked op by op
(which op reads which kernel along which axes, where q and k meet before the softmax), then the
sites, blocks and depth the structure passes read off keras-hub's GPT-2, BERT, Llama and Gemma
built from tiny configs, with expected values written from each architecture, and the same for a
copy whose every layer has a meaningless name; then GPT-2 from transformers and from keras-hub
promising the same std per parameter under every modern scheme. The suite runs Keras on
TensorFlow; one test runs keras-hub's GPT-2 on the JAX backend in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from tests.structure_checks import assert_attention, kernel_axes, readers, sites

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from polyinit import modern
from polyinit.context import ContextError, model_context
from polyinit.frameworks.keras import KerasWalker
from polyinit.rules import Context
from polyinit.structure import find_structure, repeats, trace_tf
from tests import keras_hub_models
from tests.keras_hub_models import L, meaningless_layer_names
from tests.modern_models import promised_stds

if keras.backend.backend() != "tensorflow":
    pytest.skip("these tests trace Keras on the TensorFlow backend (the suite's default)", allow_module_level=True)


def walk(model) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [p.path for p in KerasWalker().walk(model)]


def traced(model, example=None):
    return trace_tf.trace(model, trace_tf.example_input(model) if example is None else example)


# --- op level ----------------------------------------------------------------------------------


def test_dense_kernel_is_contracted_along_its_input_axis():
    x = keras.Input((16,))
    model = keras.Model(x, keras.layers.Dense(8, name="fc")(x))
    g = traced(model)
    assert set(g.params()) == set(walk(model)) == {"fc/kernel", "fc/bias"}
    assert kernel_axes(g, "fc/kernel") == ((0,), (), (1,))  # kernel (in, out): in is contracted
    ((add, _),) = readers(g, "fc/bias", "add")
    assert add.shape == (1, 8)


@pytest.mark.parametrize(
    "equation, input_shape, output_shape, kernel_shape, axes",
    [
        ("ab,bc->ac", (16,), (8,), (16, 8), ((0,), (), (1,))),
        ("abc,cde->abde", (8, 16), (None, 2, 4), (16, 2, 4), ((0,), (), (1, 2))),  # per-head q/k/v
        ("abcd,cde->abe", (8, 2, 4), (None, 16), (2, 4, 16), ((0, 1), (), (2,))),  # per-head output
        ("btd,ndh->btnh", (8, 16), (None, 2, 4), (2, 16, 4), ((1,), (), (0, 2))),  # Gemma: heads first
        ("abc,cd->abd", (8, 16), (None, 8), (16, 8), ((0,), (), (1,))),
    ],
    ids=["matrix", "heads_out", "heads_in", "heads_first", "sequence"],
)
def test_einsum_dense_reads_the_kernel_along_the_equation(equation, input_shape, output_shape, kernel_shape, axes):
    """TensorFlow lowers einsum to reshape + matmul; the contract still names the kernel's own
    axes: the letters the equation sums over are contracted, the others free (heads, head_dim)."""
    x = keras.Input(input_shape)
    layer = keras.layers.EinsumDense(equation, output_shape, name="proj")
    model = keras.Model(x, layer(x))
    g = traced(model)
    assert g[g.params()["proj/kernel"]].shape == kernel_shape
    assert kernel_axes(g, "proj/kernel") == axes
    assert g[g.outputs[0]].shape == (1,) + tuple(8 if d is None else d for d in model.output.shape[1:])


def test_multi_head_attention_q_and_k_meet_before_the_softmax():
    x = keras.Input((8, 16))
    mha = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")
    model = keras.Model(x, mha(x, x))
    g = traced(model)
    q, k, v, o = (f"mha/{n}/kernel" for n in ("query", "key", "value", "attention_output"))
    for path in (q, k, v):
        assert kernel_axes(g, path) == ((0,), (), (1, 2))  # (d, heads, head_dim): d contracted
    assert kernel_axes(g, o) == ((0, 1), (), (2,))
    assert_attention(g, q, k, v)


def test_tied_handle_is_one_parameter_node():
    """A layer used twice reads one variable: one param node, two readers."""
    x = keras.Input((4,))
    shared = keras.layers.Dense(4, name="shared")
    model = keras.Model(x, shared(shared(x)))
    g = traced(model)
    assert list(g.params()) == ["shared/kernel", "shared/bias"]
    assert len(readers(g, "shared/kernel", "contract")) == 2


def test_example_input_from_declared_inputs():
    ids = keras.Input((None,), dtype="int32", name="ids")
    model = keras.Model(ids, keras.layers.Embedding(10, 4, name="emb")(ids))
    example = trace_tf.example_input(model)
    assert example.shape == (1, 8) and example.dtype == np.int32
    g = traced(model)
    ((gather, side),) = readers(g, "emb/embeddings", "gather")
    assert side == 0 and gather.attrs["axis"] == 0 and g[gather.inputs[1]].op in ("input", "convert", "other")


def test_wrong_input_type_is_refused_before_any_tracing():
    x = keras.Input((4,))
    model = keras.Model(x, keras.layers.Dense(2)(x))
    before = [v.numpy().copy() for v in model.weights]
    with pytest.raises(TypeError, match="expected an array"):
        trace_tf.trace(model, "not an array")
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights))


def unshared(model, monkeypatch):
    """The graph traced with every layer built into TensorFlow's graph (no repeat sharing)."""
    with monkeypatch.context() as patch:
        patch.setattr(repeats, "signature", lambda layer: None)
        return traced(model)


def test_repeated_layers_are_built_once_and_replayed_exactly(monkeypatch):
    """Identical layers (class, config, variable shapes, input shapes) are built into the TF graph
    once and replayed with their own variables: the graph equals the one built layer by layer,
    node for node; a layer with another configuration (tanh) is traced for itself."""
    x = keras.Input((8,))
    h = x
    for i, activation in enumerate(("relu", "relu", "tanh", "relu")):
        h = keras.layers.Dense(8, activation=activation, name=f"d{i}")(h)
    model = keras.Model(x, h)
    made = []
    original = repeats.Repeats.installed

    def counting(self):
        made.append(self)
        return original(self)

    monkeypatch.setattr(repeats.Repeats, "installed", counting)
    g = traced(model)
    stubs = made[0].stubs().values()
    assert sorted(stub.paths["d0/kernel"] for stub in stubs) == ["d1/kernel", "d3/kernel"]
    assert list(g) == list(unshared(model, monkeypatch)) and g.outputs
    ((tanh, _),) = [(n, i) for n, i in readers(g, "d2/bias", "add")]
    assert [u.attrs.get("fn") for u in g.users(tanh.id)] == ["tanh"]


@pytest.mark.parametrize("name", ["gpt2", "gemma", "llama_causal_lm"])
def test_keras_hub_blocks_replayed_equal_the_full_trace(name, monkeypatch):
    """The same on keras-hub backbones, and on a task model whose backbone is a nested model."""
    model = build_any(name)
    g = traced(model)
    full = unshared(model, monkeypatch)
    assert list(g) == list(full) and g.outputs == full.outputs


# --- keras-hub backbones: sites, blocks, depth from the architecture ------------------------------


def gpt2_expected(path: str):
    """GPT-2 (Radford et al. 2019): token + position embeddings, L pre-norm blocks
    (ln_1 -> attention -> add, ln_2 -> MLP -> add), final norm."""
    fixed = {
        "token_embedding/embeddings": ("embedding", None, "weight"),
        "position_embedding/embeddings": ("position", None, "weight"),
        "layer_norm/gamma": ("norm", None, "scale"),
        "layer_norm/beta": ("norm", None, "offset"),
    }
    return fixed.get(path) or _block_site(
        path,
        {
            "self_attention/query": "q",
            "self_attention/key": "k",
            "self_attention/value": "v",
            "self_attention/attention_output": "attn_out",
            "feedforward_intermediate_dense": "mlp_in",
            "feedforward_output_dense": "mlp_out",
            "self_attention_layer_norm": "norm",
            "feedforward_layer_norm": "norm",
        },
    )


def bert_expected(path: str):
    """BERT (Devlin et al. 2019): token, position and segment embeddings, an embedding norm,
    L post-norm blocks (attention -> add -> norm, MLP -> add -> norm), a pooler on [CLS]."""
    fixed = {
        "token_embedding/embeddings": ("embedding", None, "weight"),
        "position_embedding/embeddings": ("position", None, "weight"),
        "segment_embedding/embeddings": ("embedding", None, "weight"),  # gathered by a model input
        "embeddings_layer_norm/gamma": ("norm", None, "scale"),
        "embeddings_layer_norm/beta": ("norm", None, "offset"),
        "pooled_dense/kernel": ("other", None, "weight"),
        "pooled_dense/bias": ("other", None, "bias"),
    }
    return fixed.get(path) or _block_site(
        path,
        {
            "self_attention_layer/query": "q",
            "self_attention_layer/key": "k",
            "self_attention_layer/value": "v",
            "self_attention_layer/attention_output": "attn_out",
            "feedforward_intermediate_dense": "mlp_in",
            "feedforward_output_dense": "mlp_out",
            "self_attention_layer_norm": "norm",
            "feedforward_layer_norm": "norm",
        },
    )


def llama_expected(path: str):
    """Llama (Touvron et al. 2023): token embedding, L pre-RMSNorm blocks (GQA attention without
    biases; SwiGLU MLP: gate and up read the norm, down is added back), final RMSNorm. The
    backbone computes no readout: ``reverse_embeddings`` is not in its forward pass."""
    fixed = {
        "token_embedding/embeddings": ("embedding", None, "weight"),
        "token_embedding/reverse_embeddings": None,
        "sequence_output_layernorm/scale": ("norm", None, "scale"),
    }
    return (
        fixed[path]
        if path in fixed
        else _block_site(
            path,
            {
                "self_attention/query": "q",
                "self_attention/key": "k",
                "self_attention/value": "v",
                "self_attention/attention_output": "attn_out",
                "feedforward_intermediate_dense": "mlp_in",
                "feedforward_gate_dense": "mlp_in",
                "feedforward_output_dense": "mlp_out",
                "self_attention_layernorm": "norm",
                "feedforward_layernorm": "norm",
            },
        )
    )


def gemma_expected(path: str):
    """Gemma (2024): token embedding (its readout is tied and outside the backbone), L pre-RMSNorm
    blocks (MQA attention, GeGLU MLP), final RMSNorm."""
    fixed = {
        "token_embedding/embeddings": ("embedding", None, "weight"),
        "final_normalization/scale": ("norm", None, "scale"),
    }
    return fixed.get(path) or _block_site(
        path,
        {
            "attention/query": "q",
            "attention/key": "k",
            "attention/value": "v",
            "attention/attention_output": "attn_out",
            "ffw_gating": "mlp_in",
            "ffw_gating_2": "mlp_in",
            "ffw_linear": "mlp_out",
            "pre_attention_norm": "norm",
            "pre_ffw_norm": "norm",
        },
        prefix="decoder_block_",
    )


def _block_site(path: str, layers: dict, prefix: str = "transformer_layer_"):
    head, _, rest = path.partition("/")
    block = int(head[len(prefix) :])
    layer, _, leaf = rest.rpartition("/")
    role = {"kernel": "weight", "bias": "bias", "gamma": "scale", "beta": "offset", "scale": "scale"}[leaf]
    return layers[layer], block, role


def build(name: str):
    pytest.importorskip("keras_hub")
    return keras_hub_models.build(name)


EXPECTED = {"gpt2": gpt2_expected, "bert": bert_expected, "llama": llama_expected, "gemma": gemma_expected}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_keras_hub_sites_blocks_and_depth(name):
    model = build(name)
    paths = walk(model)
    structure = find_structure(traced(model))
    expected = [EXPECTED[name](p) for p in paths]
    found = [None if s is None else (s[0], s[1], s[3]) for s in sites(structure, paths)]
    assert found == expected, [(p, f, e) for p, f, e in zip(paths, found, expected) if f != e]
    assert dict(structure.depths) == {"": L}
    with meaningless_layer_names():
        blind = build(name)
    blind_paths = walk(blind)
    assert not any("attention" in p or "dense" in p or "norm" in p for p in blind_paths)
    blind_structure = find_structure(traced(blind))
    assert sites(blind_structure, blind_paths) == sites(structure, paths)
    assert dict(blind_structure.depths) == {"": L}


def test_llama_kernels_read_per_head():
    """keras-hub's Llama attention is EinsumDense: the q kernel (d, heads, head_dim) is contracted
    along d only, the output kernel (heads, head_dim, d) along heads and head_dim (issue 20's
    fans 64/64, not 256/1024)."""
    g = traced(build("llama"))
    assert kernel_axes(g, "transformer_layer_0/self_attention/query/kernel") == ((0,), (), (1, 2))
    assert kernel_axes(g, "transformer_layer_0/self_attention/key/kernel") == ((0,), (), (1, 2))
    assert kernel_axes(g, "transformer_layer_0/self_attention/attention_output/kernel") == ((0, 1), (), (2,))
    assert_attention(g, *(f"transformer_layer_0/self_attention/{n}/kernel" for n in ("query", "key", "value")))


_JAX_SCRIPT = """
import json, warnings
import keras_hub
from polyinit.frameworks.keras import KerasWalker
from polyinit.structure import find_structure, trace
model = keras_hub.models.GPT2Backbone(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
                                      intermediate_dim=32, max_sequence_length=8)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    paths = [p.path for p in KerasWalker().walk(model)]
s = find_structure(trace(model))
print(json.dumps({"depths": dict(s.depths),
                  "sites": {p: None if s.get(p) is None else [s.get(p).site, s.get(p).block, s.get(p).role]
                            for p in paths}}))
"""


def test_keras_hub_gpt2_on_the_jax_backend():
    """The same backbone on Keras' JAX backend is traced from its jaxpr (``stateless_call``) and
    gives the same sites: a subprocess, since a process has one Keras backend."""
    pytest.importorskip("jax")
    pytest.importorskip("keras_hub")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run(
        [sys.executable, "-c", _JAX_SCRIPT], check=False, capture_output=True, text=True, env=env, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["depths"] == {"": L}
    for path, found in result["sites"].items():
        assert found == list(gpt2_expected(path)), path


_TORCH_SCRIPT = """
import contextlib, json
from polyinit.context import model_context
from tests.keras_hub_models import NAMES, build, meaningless_layer_names
out = {}
for name in NAMES:
    for blind in (False, True):
        with meaningless_layer_names() if blind else contextlib.nullcontext():
            model = build(name)
        ctx = model_context(model)
        out[name + ("/blind" if blind else "")] = {
            "depths": dict(ctx.depths),
            "sites": [[p.path, ctx.site(p.path).site, ctx.site(p.path).block,
                       getattr(ctx.structure.get(p.path), "role", None), ctx.source(p.path)] for p in ctx.params],
        }
print(json.dumps(out))
"""


def test_keras_hub_on_the_torch_backend_is_traced():
    """Issue 20 (c): on Keras' torch backend the layers are torch modules and the variables hold
    torch parameters; ``model_context`` runs the torch tracer on the Keras model and names its
    nodes by the Keras variables: every site, block and depth of keras-hub's GPT-2, BERT, Llama and
    Gemma comes from the structure and equals the architecture's (as on TensorFlow and JAX), and
    the name-blind copies give the same. A subprocess: a process has one Keras backend."""
    pytest.importorskip("torch")
    pytest.importorskip("keras_hub")
    env = dict(
        os.environ, KERAS_BACKEND="torch", PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    run = subprocess.run(
        [sys.executable, "-c", _TORCH_SCRIPT], check=False, capture_output=True, text=True, env=env, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    for name in keras_hub_models.NAMES:
        original, blind = result[name], result[name + "/blind"]
        assert original["depths"] == blind["depths"] == {"": L}, name
        for path, site, block, role, source in original["sites"]:
            expected = EXPECTED[name](path)
            if expected is None:  # not in the forward pass (Llama's untied readout): names decide
                assert source == "name", (name, path)
            else:
                assert (site, block, role, source) == (*expected, "structure"), (name, path)
        assert [s[1:] for s in blind["sites"]] == [s[1:] for s in original["sites"]], name


# --- one architecture, two codebases: the same promise per parameter -------------------------------

CROSS = {
    "gpt2": lambda c, base: modern.gpt2(c),
    "megatron": lambda c, base: modern.megatron(c),
    "olmo_mitchell": lambda c, base: modern.olmo(c, init_fn="mitchell"),
    "olmo_normal": lambda c, base: modern.olmo(c, init_fn="normal", generation="olmo1"),
    "olmo_full_megatron": lambda c, base: modern.olmo(c, init_fn="full_megatron"),
    "small_init": lambda c, base: modern.small_init(c),
    "wang": lambda c, base: modern.wang(c),
    "mup": lambda c, base: modern.mup(c, base),
    "u_mup": lambda c, base: modern.u_mup(c),
}


def gpt2_pair_at(width: int) -> tuple:
    """GPT-2 with a tied LM head, written by Hugging Face (torch) and by keras-hub (Keras on
    TensorFlow), from one tiny config: their model contexts, with no sites= or depth= given."""
    transformers = pytest.importorskip("transformers")
    hub = pytest.importorskip("keras_hub")
    vocab, positions, heads = 50, 8, 2
    torch_model = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(
            vocab_size=vocab,
            n_positions=positions,
            n_embd=width,
            n_layer=L,
            n_head=heads,
            bos_token_id=0,
            eos_token_id=0,
        )
    )
    backbone = hub.models.GPT2Backbone(
        vocabulary_size=vocab,
        num_layers=L,
        num_heads=heads,
        hidden_dim=width,
        intermediate_dim=4 * width,
        max_sequence_length=positions,
    )
    keras_model = hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    return model_context(torch_model), model_context(keras_model)


@pytest.fixture(scope="module")
def gpt2_pair():
    """(torch context, Keras context) at width 16, and each one's muP base at width 8."""
    return gpt2_pair_at(16), gpt2_pair_at(8)


def promised_by_site(ctx, rules) -> dict:
    """(site, block, role) -> the set of stds the rules promise there under fans="semantic" (q, k,
    v and a packed qkv are one site: torch packs them in c_attn, Keras keeps three kernels)."""
    table: dict = {}
    for p, std in zip(ctx.params, promised_stds(ctx, rules, digits=10)):
        site = ctx.sites[p.path]
        key = ("qkv" if site.site in ("q", "k", "v", "qkv") else site.site, site.block, ctx.role(p))
        table.setdefault(key, set()).add(std)
    return table


@pytest.mark.parametrize("scheme", sorted(CROSS))
def test_gpt2_same_std_in_transformers_and_keras_hub(gpt2_pair, scheme):
    """Issue 20: the same scheme on the same architecture in torch (transformers) and Keras
    (keras-hub) promises the same std for every parameter (fans="semantic")."""
    (torch_ctx, keras_ctx), (torch_base, keras_base) = gpt2_pair
    assert torch_ctx.depth == keras_ctx.depth == L
    assert dict(keras_ctx.structure.tied) == {"token_embedding/embeddings": "token_embedding/embeddings"}
    torch_table = promised_by_site(torch_ctx, CROSS[scheme](torch_ctx, torch_base))
    keras_table = promised_by_site(keras_ctx, CROSS[scheme](keras_ctx, keras_base))
    assert keras_table == torch_table
    assert not any(None in stds for stds in keras_table.values())  # every parameter has a rule
    assert ("attn_out", L - 1, "weight") in keras_table


def test_gpt2_in_both_codebases_names_what_modded_nanogpt_cannot_place(gpt2_pair):
    """The speedrun has no rule for a learned position table: both say so, naming it."""
    (torch_ctx, keras_ctx), _ = gpt2_pair
    with pytest.raises(ContextError, match=r"transformer\.wpe\.weight.*site position from structure"):
        modern.modded_nanogpt(torch_ctx)
    with pytest.raises(ContextError, match=r"position_embedding/embeddings.*site position from structure"):
        modern.modded_nanogpt(keras_ctx)


# --- every modern scheme places every parameter, or names what it cannot --------------------------

SCHEMES = {
    "gpt2": modern.gpt2,
    "megatron": modern.megatron,
    "small_init": modern.small_init,
    "wang": modern.wang,
    "u_mup": modern.u_mup,
    "modded_nanogpt": modern.modded_nanogpt,
    **{
        f"olmo_{fn}": (lambda c, fn=fn: modern.olmo(c, init_fn=fn, generation="olmo1"))
        for fn in ("normal", "mitchell", "full_megatron")
    },
}
# What a scheme may refuse, from the architecture: the speedrun has no rule for a learned position
# table; a Llama backbone never computes its (untied) readout, so no trace can place that table.
CANNOT = {
    ("gpt2", "modded_nanogpt"): ["position_embedding/embeddings"],
    ("bert", "modded_nanogpt"): ["position_embedding/embeddings"],
    **{("llama", scheme): ["token_embedding/reverse_embeddings"] for scheme in SCHEMES},
}


def build_any(name: str):
    if name == "llama_causal_lm":  # the backbone and its readout (reverse_embeddings)
        return pytest.importorskip("keras_hub").models.LlamaCausalLM(backbone=build("llama"), preprocessor=None)
    return build(name)


@pytest.mark.parametrize("name", ["gpt2", "bert", "llama", "llama_causal_lm", "gemma"])
def test_every_scheme_places_every_parameter_or_names_it(name):
    """Issue 20: with no sites= or depth=, each scheme gives every trainable parameter of a
    keras-hub model a rule, or raises a ContextError naming exactly what it cannot place."""
    ctx = model_context(build_any(name))
    for scheme, make in SCHEMES.items():
        cannot = CANNOT.get((name, scheme), [])
        if cannot:
            with pytest.raises(ContextError, match="cannot place") as raised:
                make(ctx)
            named = [p.path for p in ctx.params if p.path in str(raised.value)]
            assert named == cannot, (scheme, str(raised.value))
            continue
        rules, rule_context = make(ctx), Context(ctx.params)
        missing = [
            p.path
            for p in ctx.params
            if p.trainable and not any(selector.matches(p, rule_context) for selector, _ in rules.rules)
        ]
        assert not missing, (scheme, missing)
    if name == "llama_causal_lm":
        assert ctx.site("token_embedding/reverse_embeddings").site == "readout"
        assert ctx.source("token_embedding/reverse_embeddings") == "structure"


# --- Llama in both codebases: the same std per parameter (issue 20) ------------------------------

LLAMA_CROSS = {
    **{k: v for k, v in CROSS.items() if k != "mup"},
    "llama_depth": lambda c, base: modern.llama_depth(c),
    "olmo_llama": lambda c, base: modern.olmo(c, init_fn="llama"),
    "olmo_fan_in": lambda c, base: modern.olmo(c, init_fn="fan_in"),
}


def llama_pair_at(width: int) -> tuple:
    """Llama with an untied LM head, grouped-query attention and a gated MLP, written by Hugging
    Face (torch) and by keras-hub (Keras on TensorFlow), from one tiny config: their contexts."""
    transformers = pytest.importorskip("transformers")
    hub = pytest.importorskip("keras_hub")
    vocab, heads, kv_heads = 50, 4, 2
    torch_model = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=vocab,
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=L,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            tie_word_embeddings=False,
        )
    )
    backbone = hub.models.LlamaBackbone(
        vocabulary_size=vocab,
        num_layers=L,
        num_query_heads=heads,
        num_key_value_heads=kv_heads,
        hidden_dim=width,
        intermediate_dim=2 * width,
        tie_word_embeddings=False,
    )
    keras_model = hub.models.LlamaCausalLM(backbone=backbone, preprocessor=None)
    return model_context(torch_model), model_context(keras_model)


@pytest.fixture(scope="module")
def llama_pair():
    return llama_pair_at(16)


@pytest.mark.parametrize("scheme", sorted(LLAMA_CROSS))
def test_llama_same_std_in_transformers_and_keras_hub(llama_pair, scheme):
    """Issue 20 on a second architecture: untied readout, GQA's narrower k/v, a gated MLP whose up
    projection the depth schemes scale with the outputs (told from the gate by the trace)."""
    torch_ctx, keras_ctx = llama_pair
    assert torch_ctx.depth == keras_ctx.depth == L
    torch_table = promised_by_site(torch_ctx, LLAMA_CROSS[scheme](torch_ctx, None))
    keras_table = promised_by_site(keras_ctx, LLAMA_CROSS[scheme](keras_ctx, None))
    assert keras_table == torch_table
    assert not any(None in stds for stds in keras_table.values())
    assert ("readout", None, "weight") in keras_table and ("mlp_out", L - 1, "weight") in keras_table
