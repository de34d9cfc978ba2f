"""Sites, blocks and depth from what torch models compute (issue 20), on transformer code written
by others (transformers GPT-2, BERT, T5, Llama, Qwen2, Phi-3, GPT-NeoX parallel and sequential, GPT-J;
litgpt's LLaMA and Pythia configs; olmo-core) and a toy transformer with hand-written attention, each
built from a tiny config (never downloaded).

The expected site of every parameter is written here from each architecture (its modeling code:
which Linear is the query, which output is added back to the residual stream), never read from
polyinit. The name-blind copy of each model has every submodule renamed to a meaningless name
(same classes, same structure, same forward), and must give the same sites, blocks, depth and
per-parameter scheme stds: the proof that structure, not names, decides.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import re

import pytest

torch = pytest.importorskip("torch")

from polyinit import modern
from polyinit.context import ContextError, Site, model_context
from polyinit.plan import resolve
from polyinit.rules import Context
from polyinit.structure import Part
from tests.modern_models import promised_stds, value_dependent

D, HEADS, LAYERS, VOCAB = 64, 4, 2, 128


def _transformers():
    return pytest.importorskip("transformers")


def gpt2(width: int = D):
    t = _transformers()
    return t.GPT2LMHeadModel(
        t.GPT2Config(
            n_layer=LAYERS, n_embd=width, n_head=HEADS, vocab_size=VOCAB, n_positions=32, bos_token_id=0, eos_token_id=0
        )
    )


def bert():
    t = _transformers()
    return t.BertModel(
        t.BertConfig(
            hidden_size=D,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=2 * D,
            vocab_size=VOCAB,
            max_position_embeddings=32,
        )
    )


def t5():
    t = _transformers()
    return t.T5ForConditionalGeneration(
        t.T5Config(
            d_model=D,
            d_kv=16,
            d_ff=96,
            num_layers=LAYERS,
            num_decoder_layers=LAYERS,
            num_heads=HEADS,
            vocab_size=VOCAB,
            decoder_start_token_id=0,
        )
    )


def llama(width: int = D):
    t = _transformers()
    return t.LlamaForCausalLM(
        t.LlamaConfig(
            num_hidden_layers=LAYERS,
            hidden_size=width,
            num_attention_heads=HEADS,
            num_key_value_heads=2,
            intermediate_size=96,
            vocab_size=VOCAB,
            max_position_embeddings=32,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
        )
    )


def qwen2():
    t = _transformers()
    return t.Qwen2ForCausalLM(
        t.Qwen2Config(
            num_hidden_layers=LAYERS,
            hidden_size=D,
            num_attention_heads=HEADS,
            num_key_value_heads=2,
            intermediate_size=96,
            vocab_size=VOCAB,
            max_position_embeddings=32,
            bos_token_id=0,
            eos_token_id=0,
        )
    )


def phi3():
    t = _transformers()
    return t.Phi3ForCausalLM(
        t.Phi3Config(
            num_hidden_layers=LAYERS,
            hidden_size=D,
            num_attention_heads=HEADS,
            num_key_value_heads=2,
            intermediate_size=96,
            vocab_size=VOCAB,
            max_position_embeddings=32,
            pad_token_id=0,
            bos_token_id=0,
            eos_token_id=0,
        )
    )


def neox(parallel: bool = True):
    """GPT-NeoX; parallel (its default): x + attn(ln1 x) + mlp(ln2 x), added as (mlp + attn) + x."""
    t = _transformers()
    return t.GPTNeoXForCausalLM(
        t.GPTNeoXConfig(
            use_parallel_residual=parallel,
            num_hidden_layers=LAYERS,
            hidden_size=D,
            num_attention_heads=HEADS,
            intermediate_size=2 * D,
            vocab_size=VOCAB,
            max_position_embeddings=32,
            bos_token_id=0,
            eos_token_id=0,
        )
    )


def neox_sequential():
    """GPT-NeoX with use_parallel_residual=False: x + attn(ln1 x), then + mlp(ln2 .)."""
    return neox(parallel=False)


def gptj():
    """GPT-J: attention and MLP in parallel, reading one shared norm: x + attn(ln x) + mlp(ln x)."""
    t = _transformers()
    return t.GPTJForCausalLM(
        t.GPTJConfig(
            n_layer=LAYERS, n_embd=D, n_head=HEADS, rotary_dim=8, vocab_size=VOCAB, n_positions=32, bos_token_id=0
        )
    )


def pythia():
    """litgpt's Pythia (GPT-NeoX) config: parallel residual x + attn(norm_1 x) + mlp(norm_2 x), which
    litgpt adds as (x + attn) + mlp, the MLP branch reading the block's input, not x + attn."""
    lit = pytest.importorskip("litgpt")
    config = lit.config.Config(
        n_layer=LAYERS,
        n_embd=D,
        n_head=HEADS,
        vocab_size=VOCAB,
        padded_vocab_size=VOCAB,
        block_size=32,
        mlp_class_name="GptNeoxMLP",
        bias=True,
        parallel_residual=True,
        rotary_percentage=0.25,
    )
    return lit.model.GPT(config)


def litgpt():
    lit = pytest.importorskip("litgpt")
    config = lit.config.Config(
        n_layer=LAYERS,
        n_embd=D,
        n_head=HEADS,
        n_query_groups=2,
        vocab_size=VOCAB,
        padded_vocab_size=VOCAB,
        block_size=32,
        intermediate_size=96,
        mlp_class_name="LLaMAMLP",
        norm_class_name="RMSNorm",
        bias=False,
        parallel_residual=False,
        rotary_percentage=1.0,
    )
    return lit.model.GPT(config)


def olmo_core(init_device: str = "cpu"):
    import warnings

    with warnings.catch_warnings():  # olmo-core's optional cloud imports warn about grpcio-status
        warnings.simplefilter("ignore", ImportWarning)
        pytest.importorskip("olmo_core")
        from olmo_core.nn.transformer import TransformerConfig

    return TransformerConfig.llama_like(d_model=D, vocab_size=VOCAB, n_layers=LAYERS, n_heads=HEADS).build(
        init_device=init_device
    )


def toy():
    """The torch GPT of tests/test_modern_frameworks.py, with a forward pass: separate q/k/v
    Linear layers and attention written out (matmul -> softmax -> matmul)."""
    nn = torch.nn

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.c_proj = (nn.Linear(D, D) for _ in range(4))

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = (f(x).view(b, t, HEADS, D // HEADS).transpose(1, 2) for f in (self.q, self.k, self.v))
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(D // HEADS)
            return self.c_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, D))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc, self.c_proj = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

        def forward(self, x):
            return self.c_proj(torch.nn.functional.gelu(self.c_fc(x)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2, self.mlp = nn.LayerNorm(D), Attention(), nn.LayerNorm(D), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        vocab_size = VOCAB

        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(VOCAB, D), nn.Embedding(16, D)
            self.h = nn.ModuleList(Block() for _ in range(3))
            self.ln_f = nn.LayerNorm(D)

        def forward(self, ids):
            x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
            for block in self.h:
                x = block(x)
            return self.ln_f(x) @ self.wte.weight.t()

    return GPT()


# (builder, [(path regex, site)], block regex, stack of a path) per model, from each modeling file.
_STACK = lambda path: "encoder" if path.startswith("encoder.") else "decoder" if path.startswith("decoder.") else ""
MODELS = {
    "gpt2": (
        gpt2,
        [
            (r"wte", "embedding"),
            (r"wpe", "position"),
            (r"ln_", "norm"),
            (r"c_attn", "qkv"),
            (r"attn\.c_proj", "attn_out"),
            (r"c_fc", "mlp_in"),
            (r"mlp\.c_proj", "mlp_out"),
        ],
        r"\.h\.(\d+)\.",
    ),
    "bert": (
        bert,
        [
            # a token-type (segment) table is indexed by an input of its own, as the token table
            # is (megatron's BERT draws it as the word embeddings): an embedding, not a position
            (r"(word|token_type)_embeddings", "embedding"),
            (r"position_embeddings", "position"),
            (r"LayerNorm", "norm"),
            (r"self\.query", "q"),
            (r"self\.key", "k"),
            (r"self\.value", "v"),
            (r"attention\.output\.dense", "attn_out"),
            (r"intermediate\.dense", "mlp_in"),
            (r"\d\.output\.dense", "mlp_out"),
            (r"pooler", "other"),
        ],
        r"\.layer\.(\d+)\.",
    ),
    "t5": (
        t5,
        [
            (r"shared", "embedding"),
            (r"relative_attention_bias", "relative_bias"),
            (r"layer_norm", "norm"),
            (r"\.q\.", "q"),
            (r"\.k\.", "k"),
            (r"\.v\.", "v"),
            (r"\.o\.", "attn_out"),
            (r"\.wi", "mlp_in"),
            (r"\.wo", "mlp_out"),
        ],
        r"\.block\.(\d+)\.",
    ),
    "llama": (
        llama,
        [
            (r"embed_tokens", "embedding"),
            (r"norm", "norm"),
            (r"q_proj", "q"),
            (r"k_proj", "k"),
            (r"v_proj", "v"),
            (r"o_proj", "attn_out"),
            (r"(gate|up)_proj", "mlp_in"),
            (r"down_proj", "mlp_out"),
            (r"lm_head", "readout"),
        ],
        r"\.layers\.(\d+)\.",
    ),
    "neox": (
        neox,
        [
            (r"embed_in", "embedding"),
            (r"layernorm|layer_norm", "norm"),
            (r"query_key_value", "qkv"),
            (r"attention\.dense", "attn_out"),
            (r"dense_h_to_4h", "mlp_in"),
            (r"dense_4h_to_h", "mlp_out"),
            (r"lm_head|embed_out", "readout"),
        ],
        r"\.layers\.(\d+)\.",
    ),
    "litgpt": (
        litgpt,
        [
            (r"wte", "embedding"),
            (r"norm_|ln_f", "norm"),
            (r"attn\.qkv", "qkv"),
            (r"attn\.proj", "attn_out"),
            (r"fc_[12]", "mlp_in"),
            (r"mlp\.proj", "mlp_out"),
            (r"lm_head", "readout"),
        ],
        r"\.h\.(\d+)\.",
    ),
    "olmo_core": (
        olmo_core,
        [
            (r"^embeddings", "embedding"),
            (r"norm", "norm"),
            (r"w_q", "q"),
            (r"w_k", "k"),
            (r"w_v", "v"),
            (r"attention\.w_out", "attn_out"),
            (r"w[13]\.", "mlp_in"),
            (r"w2\.", "mlp_out"),
            (r"lm_head\.w_out", "readout"),
        ],
        r"blocks\.(\d+)\.",
    ),
    "toy": (
        toy,
        [
            (r"wte", "embedding"),
            (r"wpe", "position"),
            (r"ln_", "norm"),
            (r"attn\.q\.", "q"),
            (r"attn\.k\.", "k"),
            (r"attn\.v\.", "v"),
            (r"attn\.c_proj", "attn_out"),
            (r"c_fc", "mlp_in"),
            (r"mlp\.c_proj", "mlp_out"),
        ],
        r"(?:^|\.)h\.(\d+)\.",
    ),
}
MODELS["qwen2"] = (qwen2,) + MODELS["llama"][1:]
MODELS["neox_sequential"] = (neox_sequential,) + MODELS["neox"][1:]
MODELS["pythia"] = (
    pythia,
    [
        (r"wte", "embedding"),
        (r"norm_|ln_f", "norm"),
        (r"attn\.qkv", "qkv"),
        (r"attn\.proj", "attn_out"),
        (r"mlp\.fc", "mlp_in"),
        (r"mlp\.proj", "mlp_out"),
        (r"lm_head", "readout"),
    ],
    r"\.h\.(\d+)\.",
)
MODELS["gptj"] = (
    gptj,
    [
        (r"wte", "embedding"),
        (r"ln_", "norm"),
        (r"q_proj", "q"),
        (r"k_proj", "k"),
        (r"v_proj", "v"),
        (r"out_proj", "attn_out"),
        (r"fc_in", "mlp_in"),
        (r"fc_out", "mlp_out"),
        (r"lm_head", "readout"),
    ],
    r"\.h\.(\d+)\.",
)
MODELS["phi3"] = (
    phi3,
    [
        (r"embed_tokens", "embedding"),
        (r"norm", "norm"),
        (r"qkv_proj", "qkv"),
        (r"o_proj", "attn_out"),
        (r"gate_up_proj", "mlp_in"),
        (r"down_proj", "mlp_out"),
        (r"lm_head", "readout"),
    ],
    r"\.layers\.(\d+)\.",
)


def expected_site(model: str, path: str) -> Site:
    _, table, block_re = MODELS[model]
    site = next(s for pattern, s in table if re.search(pattern, path))
    found = re.search(block_re, path)
    block = int(found.group(1)) if found and site not in ("embedding", "position", "readout", "other") else None
    if site == "norm" and model != "bert" and re.search(r"ln_f|final|^model\.norm|lm_head\.norm|^norm", path):
        block = None
    return Site(site, block, _STACK(path) if model == "t5" and site != "embedding" else "")


class _Renamed(dict):
    """A module's children under meaningless names; the forward pass's own lookups by the old
    key (``ModuleList[i]`` asks for ``"i"``, a ``ModuleDict`` for its key) still find them."""

    def __init__(self, items, old_keys):
        super().__init__(items)
        self.old = dict(zip(old_keys, self.keys()))

    def __getitem__(self, key):
        return super().__getitem__(self.old.get(key, key))

    def __contains__(self, key):
        return super().__contains__(self.old.get(key, key))

    def get(self, key, default=None):
        return super().get(self.old.get(key, key), default)


def name_blind(model):
    """A copy with every submodule renamed m0, m1, ... (ModuleList's numbers too): same classes,
    same structure, same forward pass; only the names differ. A ModuleDict keeps its keys, which
    a forward pass may read as data (olmo-core's blocks turn theirs into the layer index)."""
    blind = copy.deepcopy(model)
    counter = itertools.count()
    for module in list(blind.modules()):
        if isinstance(module, torch.nn.ModuleDict):
            continue
        old = list(module._modules)
        renamed = _Renamed({f"m{next(counter)}": child for child in module._modules.values()}, old)
        for key, child in zip(old, module._modules.values()):
            if not key.isdigit():
                object.__setattr__(module, key, child)  # the forward pass still finds self.<key>
        object.__setattr__(module, "_modules", renamed)
    return blind


@pytest.fixture(scope="module", params=sorted(MODELS))
def pair(request):
    torch.manual_seed(0)
    model = MODELS[request.param][0]()
    blind = name_blind(model)
    assert not set(dict(model.named_parameters())) & set(dict(blind.named_parameters()))  # no path in common
    return request.param, model, model_context(model), blind, model_context(blind)


def test_sites_blocks_depth_from_structure_match_the_architecture(pair):
    name, _, ctx, _, _ = pair
    wrong = {
        p.path: (ctx.sites[p.path], expected_site(name, p.path))
        for p in ctx.params
        if p.trainable and ctx.sites[p.path] != expected_site(name, p.path)
    }
    assert not wrong, wrong
    assert all(ctx.source(p.path) == "structure" for p in ctx.params if p.trainable), ctx.summary()
    layers = 3 if name == "toy" else LAYERS
    assert dict(ctx.depths) == ({"encoder": layers, "decoder": layers} if name == "t5" else {"": layers})
    assert ctx.width == D


def test_name_blind_copy_gives_the_same_sites_blocks_and_depth(pair):
    _, _, ctx, _, blind = pair
    assert [ctx.sites[p.path] for p in ctx.params] == [blind.sites[p.path] for p in blind.params]
    assert dict(ctx.depths) == dict(blind.depths) and ctx.width == blind.width
    assert all(blind.source(p.path) == "structure" for p in blind.params if p.trainable), blind.summary()


# A gated MLP computes out(act(gate x) * up x); from each modeling file, which input is the gate.
GATED = {
    "llama": (r"gate_proj", r"up_proj"),
    "qwen2": (r"gate_proj", r"up_proj"),
    "litgpt": (r"fc_1", r"fc_2"),
    "olmo_core": (r"w1\.", r"w3\."),
    "phi3": (r"gate_up_proj", None),  # one tensor, the gate half first (Phi3MLP chunks it so)
}


@pytest.mark.parametrize("name", sorted(GATED))
def test_gated_mlp_gate_and_up_are_read_off_the_product(name):
    """The input whose output reaches the elementwise product through the activation is the gate,
    the one multiplied directly the up projection: one part each for separate projections, two
    halves of one for Phi-3's gate_up_proj; the name-blind copy is marked the same."""
    torch.manual_seed(0)
    model = MODELS[name][0]()
    ctx, blind = model_context(model), model_context(name_blind(model))
    gate, up = GATED[name]
    inputs = [p for p in ctx.params if ctx.sites[p.path].site == "mlp_in" and p.role == "weight"]
    assert len(inputs) == (1 if up is None else 2) * LAYERS
    for p in inputs:
        rows = p.shape[0]  # every one of these stores (out, in)
        if up is None:
            expected = (Part("gate", (0,), ((0, rows // 2),)), Part("up", (0,), ((rows // 2, rows),)))
        else:
            which = "gate" if re.search(gate, p.path) else "up" if re.search(up, p.path) else "?"
            expected = (Part(which, (0,), ((0, rows),)),)
        assert ctx.parts(p.path) == expected, p.path
    assert [ctx.parts(p.path) for p in ctx.params] == [blind.parts(p.path) for p in blind.params]


SCHEMES = {
    "gpt2": lambda c: modern.gpt2(c),
    "megatron": lambda c: modern.megatron(c),
    "olmo_mitchell": lambda c: modern.olmo(c, init_fn="mitchell"),
    "olmo_full_megatron": lambda c: modern.olmo(c, init_fn="full_megatron"),
    "olmo_normal": lambda c: modern.olmo(c, init_fn="normal", generation="olmo1"),
    "u_mup": lambda c: modern.u_mup(c),
    "small_init": lambda c: modern.small_init(c),
    "wang": lambda c: modern.wang(c),
    "modded_nanogpt": lambda c: modern.modded_nanogpt(c),
    "t5": lambda c: modern.t5(c),
}


def promised(ctx, rules) -> list:
    """Per parameter, in declaration order: the promised std (native fans) of the rule that takes
    it, "KEEP", or None where no rule does."""
    return promised_stds(ctx, rules, fans="native")


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_every_scheme_places_every_parameter_or_names_the_missing(pair, scheme):
    """With no sites=/depth=: each scheme gives every trainable parameter a rule, or raises a
    ContextError naming a parameter it could not place; the name-blind copy gets the same stds."""
    name, _, ctx, _, blind = pair
    if scheme == "t5" and name != "t5":
        pytest.skip("the t5 scheme needs d_kv, which only T5's config holds")
    try:
        rules = SCHEMES[scheme](ctx)
    except ContextError as error:
        assert "cannot place" in str(error) or "found no parameter" in str(error), error
        with pytest.raises(ContextError):
            SCHEMES[scheme](blind)
        return
    stds = promised(ctx, rules)
    missing = [p.path for p, s in zip(ctx.params, stds) if s is None and p.trainable]
    assert not missing, f"{scheme} on {name} left {missing} at the framework's default"
    assert promised(blind, SCHEMES[scheme](blind)) == stds


def test_modded_nanogpt_names_what_it_cannot_place():
    """A learned position table has no rule in the speedrun (it uses rotary): named, not left."""
    ctx = model_context(gpt2())
    with pytest.raises(ContextError, match=r"transformer\.wpe\.weight.*site position from structure"):
        modern.modded_nanogpt(ctx)


def test_packed_parts_follow_the_data_flow():
    """GPT-2's c_attn (Conv1D, in x out) is q|k|v along its output axis 1; GPT-NeoX's
    query_key_value interleaves [q_h, k_h, v_h] per head along axis 0 (its forward views the
    output as (heads, 3 head_dim)); litgpt's qkv with 2 query groups is q (4 heads) | k | v;
    Phi-3's fused gate_up_proj is gate | up (chunked, the activation on the first half)."""
    ctx = model_context(gpt2())
    assert [(p.name, p.axes, p.ranges) for p in ctx.parts("transformer.h.0.attn.c_attn.weight")] == [
        ("q", (1,), ((0, D),)),
        ("k", (1,), ((D, 2 * D),)),
        ("v", (1,), ((2 * D, 3 * D),)),
    ]
    ctx = model_context(neox())
    hd = D // HEADS
    parts = {p.name: p.ranges for p in ctx.parts("gpt_neox.layers.1.attention.query_key_value.weight")}
    for i, part in enumerate("qkv"):
        assert parts[part] == tuple((3 * hd * h + i * hd, 3 * hd * h + (i + 1) * hd) for h in range(HEADS))
    ctx = model_context(phi3())
    kv = 2 * hd
    assert {p.name: p.ranges for p in ctx.parts("model.layers.1.self_attn.qkv_proj.weight")} == {
        "q": ((0, D),),
        "k": ((D, D + kv),),
        "v": ((D + kv, D + 2 * kv),),
    }
    assert [(p.name, p.axes, p.ranges) for p in ctx.parts("model.layers.0.mlp.gate_up_proj.weight")] == [
        ("gate", (0,), ((0, 96),)),
        ("up", (0,), ((96, 192),)),
    ]
    pytest.importorskip("litgpt")
    ctx = model_context(litgpt())
    assert {p.name: p.ranges for p in ctx.parts("transformer.h.0.attn.qkv.weight")} == {
        "q": ((0, D),),
        "k": ((D, D + kv),),
        "v": ((D + kv, D + 2 * kv),),
    }


def test_tied_readout_is_the_embedding():
    ctx = model_context(gpt2())
    assert dict(ctx.structure.tied) == {"transformer.wte.weight": "transformer.wte.weight"}
    assert ctx.site("transformer.wte.weight").site == "embedding"


def test_readout_named_like_an_output_layer_is_the_readout():
    """olmo-core's readout is lm_head.w_out, named like its attention outputs: the structure
    reads it as the readout, so full_megatron gives it 1/sqrt(d), not sigma/sqrt(2L)."""
    pytest.importorskip("olmo_core")
    ctx = model_context(olmo_core())
    rules = modern.olmo(ctx, init_fn="full_megatron")
    stds = dict(zip([p.path for p in ctx.params], promised(ctx, rules)))
    # std of N(0, 1) cut at +-3: sqrt(1 - 2 * 3 phi(3) / (2 Phi(3) - 1))
    cut = math.sqrt(1 - 6 * math.exp(-4.5) / math.sqrt(2 * math.pi) / math.erf(3 / math.sqrt(2)))
    assert stds["lm_head.w_out.weight"] == pytest.approx(cut / math.sqrt(D), rel=1e-9)
    assert stds["blocks.1.attention.w_out.weight"] == pytest.approx(cut * 0.02 / math.sqrt(2 * LAYERS), rel=1e-9)


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same(model, before: dict, training: bool) -> bool:
    after = model.state_dict()
    return (
        set(after) == set(before)
        and all(torch.equal(after[k], v) for k, v in before.items())
        and all(m.training == training for m in model.modules())
    )


def test_forward_failing_on_the_derived_input_is_a_context_error_naming_model_and_input():
    class Tagger(torch.nn.Module):
        vocab_size = 10  # so polyinit derives token ids, which this forward cannot take

        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x)  # Long ids into a float Linear: the forward pass fails

    model = Tagger().train()
    before = _state(model)
    with pytest.raises(
        ContextError,
        match=r"forward pass of the .*Tagger on the example input derived from the model "
        r"\(Tensor of shape \(1, 8\)\) failed.*example_input=",
    ):
        model_context(model)
    assert _same(model, before, True)


def test_example_input_of_the_wrong_type_is_a_context_error_and_the_model_is_untouched():
    model = gpt2().train()
    before = _state(model)
    with pytest.raises(
        ContextError,
        match=r"GPT2LMHeadModel on example_input \(str 'hello'\) failed: TypeError: "
        r"expected a torch.Tensor",
    ):
        model_context(model, example_input="hello")
    assert _same(model, before, True)


def test_no_residual_stream_given_to_a_transformer_scheme_says_so():
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    before = _state(mlp)
    ctx = model_context(mlp, example_input=torch.zeros(2, 4))
    assert all(ctx.source(p.path) == "structure" for p in ctx.params)
    for scheme in (modern.gpt2, modern.megatron, modern.wang):
        with pytest.raises(
            ContextError, match=r"Sequential traced on Tensor of shape \(2, 4\).*no residual stream.*sites="
        ):
            scheme(ctx)
    assert _same(mlp, before, True)


def test_model_context_validates_its_own_arguments():
    model = gpt2()
    with pytest.raises(ContextError, match=r"depth must be an integer, received depth=True"):
        model_context(model, depth=True)
    with pytest.raises(ContextError, match=r"width must be an integer, received width=64.0"):
        model_context(model, width=64.0)
    with pytest.raises(ContextError, match=r"depth names stack 'decoder', which this model does not have"):
        model_context(model, depth={"decoder": 2})
    with pytest.raises(ContextError, match=r"unknown keyword d_vk=.*did you mean 'd_kv'"):
        model_context(model, d_vk=16)
    with pytest.raises(ContextError, match=r"sites must be a mapping"):
        model_context(model, sites=["q"])


def test_summary_says_where_each_site_came_from():
    from polyinit.rules import name

    ctx = model_context(gpt2(), sites={"other": name("transformer.wpe.weight")})
    text = ctx.summary()
    assert text.splitlines()[0] == f"sites: {len(ctx.params) - 1} from structure, 0 from names, 1 from user (sites=)"
    assert "transformer.h.1.attn.c_attn.weight: qkv block 1 [structure] q[(0, 64)] k[(64, 128)] v[(128, 192)]" in text
    assert ctx.source("transformer.wpe.weight") == "user"
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, batch_first=True)
    silent = model_context(torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False))
    assert silent.source("layers.0.linear1.weight") == "name" and "no example input" in silent.summary()
    assert silent.site("layers.1.linear1.weight") == Site("mlp_in", 1, "")


def test_torch_multihead_attention_is_read_from_structure():
    """nn.Transformer (post-norm, packed in_proj, cross-attention): encoder and decoder stacks from
    the data flow, in_proj's q/k/v rows, the final norms outside the blocks."""
    pair = torch.nn.Transformer(
        64, 4, num_encoder_layers=3, num_decoder_layers=2, dim_feedforward=128, batch_first=True
    )
    ctx = model_context(pair)
    assert dict(ctx.depths) == {"encoder": 3, "decoder": 2}
    assert ctx.site("decoder.layers.1.multihead_attn.in_proj_weight") == Site("qkv", 1, "decoder")
    assert ctx.site("encoder.layers.2.norm2.weight") == Site("norm", 2, "encoder")
    assert ctx.site("encoder.norm.weight") == Site("norm", None, "encoder")
    assert [(p.name, p.ranges) for p in ctx.parts("encoder.layers.0.self_attn.in_proj_weight")] == [
        ("q", ((0, 64),)),
        ("k", ((64, 128),)),
        ("v", ((128, 192),)),
    ]
    assert all(ctx.source(p.path) == "structure" for p in ctx.params)


@pytest.mark.parametrize("build", [gpt2, llama], ids=["gpt2", "llama"])
def test_mup_places_every_parameter_on_structure(build):
    """muP's width axes come from a base model at half the width; every parameter gets a rule,
    and the name-blind copy gets the same stds."""
    full, base = build(), build(D // 2)
    ctx, base_ctx = model_context(full), model_context(base)
    stds = promised(ctx, modern.mup(ctx, base_ctx))
    assert None not in stds
    blind = model_context(name_blind(full))
    assert promised(blind, modern.mup(blind, model_context(name_blind(base)))) == stds


Z = 5.33  # two-sided alpha = 1e-7 per parameter


def _check_std(path: str, values, expected: float, mean: float) -> None:
    """A constant is exact; a sample of n normal values with std sigma (mean 0):
    s / sigma - 1 ~ N(0, 2 / (4 n))."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64).ravel()
    if expected == 0.0:
        assert np.all(values == mean), f"{path}: expected the constant {mean}"
        return
    s = float(np.sqrt(np.mean(values**2)))
    tolerance = Z * math.sqrt(2 / (4 * values.size))
    assert abs(s / expected - 1) <= tolerance, f"{path}: std {s:.6g}, expected {expected:.6g} (+-{tolerance:.2%})"


REFERENCES = {  # model -> the scheme its own init code implements
    "gpt2": lambda c: modern.gpt2(c),  # GPT2PreTrainedModel._init_weights: 0.02, c_proj 0.02/sqrt(2L)
    "t5": lambda c: modern.t5(c),  # T5PreTrainedModel._init_weights (factor 1)
    # every Linear and Embedding N(0, 0.02), biases 0, norms 1 and 0: olmo's "normal" without a cutoff
    "llama": lambda c: modern.olmo(c, init_fn="normal", generation="olmo1"),
    "qwen2": lambda c: modern.olmo(c, init_fn="normal", generation="olmo1"),
    "neox": lambda c: modern.olmo(c, init_fn="normal", generation="olmo1"),
    "bert": lambda c: modern.olmo(c, init_fn="normal", generation="olmo1"),
    "phi3": lambda c: modern.olmo(c, init_fn="normal", generation="olmo1"),
    "litgpt": lambda c: modern.olmo(c, init_fn="normal", generation="olmo1"),  # GPT._init_weights
}


@pytest.mark.parametrize("model_name", sorted(REFERENCES))
def test_scheme_on_the_name_blind_copy_promises_what_the_codebase_draws(model_name):
    """The codebase's own init code draws the original model; the scheme that code implements,
    applied to the name-blind copy's context, promises every parameter's std: they agree."""
    torch.manual_seed(1)
    model = MODELS[model_name][0]()
    if model_name == "litgpt":
        model.apply(model._init_weights)
    blind = model_context(name_blind(model))
    rules, rule_context = REFERENCES[model_name](blind), Context(blind.params)
    values = [t.detach().numpy() for t in dict(model.named_parameters()).values()]
    assert len(values) == len(blind.params)
    for p, value in zip(blind.params, values):
        spec = next(s for sel, s in rules.rules if sel.matches(p, rule_context))
        stats = resolve(spec, p.shape, p.layout).stats
        _check_std(p.path, value, stats.std, stats.mean)


def test_doctests_of_the_structure_modules():
    import doctest
    import importlib

    for module in (
        "polyinit.structure",
        "polyinit.structure.graph",
        "polyinit.structure.passes",
        "polyinit.structure.trace_torch",
        "polyinit.context",
    ):
        result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module


@pytest.mark.parametrize("name", sorted(MODELS))
def test_meta_device_model_and_its_name_blind_copy_are_traced_like_the_real_one(name):
    """A model on the meta device has no values, but its forward pass runs on meta or fake
    stand-ins: the same sites, blocks and parts as the materialised model, on the original and
    on the name-blind copy, none from names."""
    build = MODELS[name][0]
    torch.manual_seed(0)
    real = model_context(build())
    with torch.device("meta"):
        meta = olmo_core(init_device="meta") if name == "olmo_core" else build()  # olmo-core puts them itself
    assert all(p.device.type == "meta" for p in meta.parameters())
    for model in (meta, name_blind(meta)):
        ctx = model_context(model)
        assert {ctx.source(p.path) for p in ctx.params} == {"structure"}
        assert [ctx.sites[p.path] for p in ctx.params] == [real.sites[p.path] for p in real.params]
        assert [ctx.parts(p.path) for p in ctx.params] == [real.parts(p.path) for p in real.params]
        assert ctx.depth == real.depth


def test_meta_device_model_whose_forward_needs_values_uses_names_and_says_why():
    """A meta-device model whose forward pass tests a value in Python (which neither meta nor
    fake tensors answer): sites from names, and the summary says why, rather than an error."""
    real = gpt2()
    with torch.device("meta"):
        model = value_dependent(type(real))(real.config)
    ctx = model_context(model)
    assert {ctx.source(p.path) for p in ctx.params} == {"name"} and "meta device" in ctx.summary()
    assert ctx.site("transformer.h.1.mlp.c_proj.weight") == Site("mlp_out", 1, "")


@pytest.mark.parametrize("build", [gpt2, llama], ids=["gpt2", "llama"])
def test_written_out_attention_reads_like_the_fused_one(build):
    """transformers' eager attention (matmul, mask, softmax, matmul) and its default fused
    scaled_dot_product_attention give the same sites, blocks and parts."""
    fused = build()
    assert fused.config._attn_implementation == "sdpa"
    fused_ctx = model_context(fused)
    config = copy.deepcopy(fused.config)
    config._attn_implementation = "eager"
    eager = type(fused)(config)
    eager_ctx = model_context(eager)
    assert eager.config._attn_implementation == "eager"
    assert eager_ctx.sites == fused_ctx.sites and dict(eager_ctx.depths) == dict(fused_ctx.depths)
    assert [eager_ctx.parts(p.path) for p in eager_ctx.params] == [fused_ctx.parts(p.path) for p in fused_ctx.params]


def test_the_trace_leaves_the_model_and_its_caches_as_they_were():
    """The trace runs on a stand-in (a copy of the module tree on meta or fake tensors): what the
    forward pass caches (olmo-core's RoPE keeps sin/cos in a buffer cache) stays in the copy, the
    model's memory is not read, and its own forward pass gives what it gave before."""
    from torch._subclasses.fake_tensor import FakeTensor

    model = olmo_core()
    ids = torch.arange(8).unsqueeze(0) % VOCAB
    with torch.no_grad():
        before = model(ids)
    rope = next(m for name, m in model.named_modules() if name.endswith("attention.rope"))
    cached = {id(t) for t in _cached_tensors(rope._cache)}
    assert cached  # the forward pass above filled it
    model_context(model)
    after_cache = _cached_tensors(rope._cache)
    assert not any(isinstance(t, FakeTensor) or t.device.type == "meta" for t in after_cache)
    assert {id(t) for t in after_cache} == cached
    with torch.no_grad():
        assert torch.equal(model(ids), before)


def _cached_tensors(cache) -> list:
    found, stack = [], [vars(cache)]
    while stack:
        value = stack.pop()
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
    return found


def test_a_meta_device_model_after_tensorflow_is_not_traced_on_fake_tensors():
    """Fake tensors import triton, whose LLVM aborts a process that loaded TensorFlow's first: in
    such a process a meta-device model whose forward pass needs values gets its sites from
    names, the summary says why, and the process lives on."""
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("triton") is None or importlib.util.find_spec("tensorflow") is None:
        pytest.skip("needs both triton and tensorflow installed")
    code = """
import sys, tensorflow, torch
from polyinit.context import model_context

class ValueDependent(torch.nn.Module):
    input_size = (16,)

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 64)
        self.proj = torch.nn.Linear(64, 16)

    def forward(self, x):
        if bool((x >= 0).all()):  # a value tested in Python: not on meta tensors
            x = x + self.proj(torch.relu(self.fc(x)))
        return x

with torch.device("meta"):
    model = ValueDependent()
ctx = model_context(model)
print(sorted({ctx.source(p.path) for p in ctx.params}), "triton" in sys.modules)
print("import torch's triton before TensorFlow" in ctx.summary())
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["['name']", "False", "True"]
