"""Rules on real third-party models built from configs (no downloads): transformers GPT-2 and
BERT, Keras ResNet50 and EfficientNetB0, an nnx transformer block. For each: every parameter is
accounted for exactly once, the statistics are the ones asked for, a typo is an error that leaves
the model bit-identical, and the same weights come out when the model is built twice."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
keras = __import__("keras")
jax = __import__("jax")
from flax import nnx

import polyinit as pi
from polyinit import rules as R
from polyinit.conformance import check, failures
from polyinit.frameworks import walker_for

# The README's rule example, as written there.
README_RULES = R.Rules(
    [
        (R.kind("dense") & R.first() & R.role("weight"), pi.glorot_uniform()),  # the first dense layer
        (R.role("weight", "embedding"), pi.he_normal()),
        (R.role("bias"), pi.zeros()),
        (R.kind("norm"), R.KEEP),  # keep the framework's own
    ],
    seed=0,
    require_all=True,
)


def transformers():
    """transformers, with its optional torchvision integration switched off: a torchvision built
    for another torch fails at import (``operator torchvision::nms does not exist``) and GPT-2 and
    BERT do not need it."""
    pytest.importorskip("transformers")
    import transformers.utils as utils
    import transformers.utils.import_utils as import_utils

    for module in (utils, import_utils):
        module.is_torchvision_available = lambda: False
        module.is_torchvision_v2_available = lambda: False
    import transformers

    return transformers


def gpt2(seed=0):
    t = transformers()
    torch.manual_seed(seed)
    config = t.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=32, bos_token_id=0, eos_token_id=0
    )
    return t.GPT2LMHeadModel(config)


def bert(seed=0):
    t = transformers()
    torch.manual_seed(seed)
    return t.BertModel(
        t.BertConfig(
            num_hidden_layers=2,
            hidden_size=64,
            num_attention_heads=4,
            intermediate_size=128,
            vocab_size=100,
            max_position_embeddings=32,
        )
    )


def snapshot(model):
    walker = walker_for(model)
    return {p.path: np.array(walker.read(model, p)) for p in walker.walk(model)}


def identical(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def conforms(model, report, rules, fans="native"):
    """Every drawn parameter's values pass the conformance checks against its rule's plan."""
    walker = walker_for(model)
    params = {p.path: p for p in walker.walk(model)}
    for row in report.rows:
        if row.plan is None or row.plan.size < 64:
            continue
        param = params[row.path]
        shape, layout = param.target(fans)
        plan = pi.resolve(rules.rules[row.rule_index][1], shape, layout)
        values = np.asarray(walker.read(model, param)).reshape(shape)
        assert not failures(check(values, plan, alpha=1e-7)), (row.path, row.drawn)


def test_gpt2_conv1d_is_dense_in_out_and_the_tied_head_is_an_alias():
    model = gpt2()
    report = R.apply(model, README_RULES)
    owners = {name for name, _ in model.named_parameters()}  # torch lists a tied tensor once
    assert [r.path for r in report.rows] == [name for name, _ in model.named_parameters()] and len(owners) == len(
        report.rows
    )
    wte = next(r for r in report.rows if r.path == "transformer.wte.weight")
    assert wte.aliases == ("lm_head.weight",) and model.lm_head.weight is model.transformer.wte.weight
    dense = [r for r in report.rows if r.kind == "dense" and r.role == "weight"]
    assert len(dense) == 8  # c_attn, c_proj, c_fc, c_proj in each of 2 blocks
    c_fc = next(r for r in report.rows if r.path == "transformer.h.0.mlp.c_fc.weight")
    # Conv1D stores (in, out) = (64, 256): he_normal's fan_in is 64, std sqrt(2/64).
    assert c_fc.fan_in == 64 and c_fc.std == pytest.approx((2 / 64) ** 0.5)
    assert report.rows[[r.path for r in report.rows].index("transformer.h.0.attn.c_attn.weight")].rule_index == 0
    conforms(model, report, README_RULES)


def test_gpt2_a_rule_naming_the_alias_draws_the_shared_tensor():
    model = gpt2()
    report = R.apply(model, R.Rules([(R.name("lm_head.weight"), pi.Normal(std=0.02)), (R.every(), R.KEEP)]))
    row = next(r for r in report.rows if r.rule_index == 0)
    assert row.path == "transformer.wte.weight" and "lm_head.weight" in row.aliases
    assert model.lm_head.weight is model.transformer.wte.weight
    assert "lm_head.weight" in str(report)


def test_gpt2_semantic_fans_split_packed_qkv():
    model = gpt2()
    rules = R.Rules([(R.name("*c_attn.weight"), pi.glorot_uniform()), (R.every(), R.KEEP)])
    native = {r.path: r for r in R.apply(model, rules).rows}
    semantic_report = R.apply(model, rules, fans="semantic")
    semantic = {r.path: r for r in semantic_report.rows}
    path = "transformer.h.0.attn.c_attn.weight"
    # Native: (64, 192) read (in, out): bound sqrt(6 / 256). Semantic: three (64, 64) blocks: sqrt(6 / 128).
    assert native[path].drawn == f"uniform({-((6 / 256) ** 0.5):.4g}, {(6 / 256) ** 0.5:.4g})"
    assert semantic[path].drawn == f"uniform({-((6 / 128) ** 0.5):.4g}, {(6 / 128) ** 0.5:.4g})"
    assert (
        semantic[path].fans == "semantic" and semantic_report.fans == "semantic" and "semantic" in str(semantic_report)
    )
    conforms(model, semantic_report, rules, fans="semantic")


def test_gpt2_typo_leaves_it_bit_identical_and_rebuilds_give_the_same_weights():
    model = gpt2()
    before = snapshot(model)
    with pytest.raises(R.RuleError, match=r"rule 1 \[name\('\*c_atn\*'\)"):
        R.apply(model, R.Rules([(R.role("bias"), pi.zeros()), (R.name("*c_atn*"), pi.ones())]))
    assert identical(before, snapshot(model))
    a, b = gpt2(seed=1), gpt2(seed=2)
    R.apply(a, README_RULES), R.apply(b, README_RULES)
    assert identical(snapshot(a), snapshot(b))


def test_bert_readme_rules_as_written():
    model = bert()
    before = snapshot(model)
    report = R.apply(model, README_RULES)
    assert [r.path for r in report.rows] == [n for n, _ in model.named_parameters()]
    first_dense = [r for r in report.rows if r.rule_index == 0]
    assert [r.path for r in first_dense] == ["encoder.layer.0.attention.self.query.weight"]
    norms = [r.path for r in report.rows if r.kind == "norm"]
    assert norms and all(np.array_equal(before[p], snapshot(model)[p]) for p in norms)  # KEEP kept them
    conforms(model, report, README_RULES)
    with pytest.raises(R.RuleError, match="wieght"):
        R.apply(model, R.Rules([(R.name("*wieght"), pi.zeros())]))


def resnet50():
    return keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classes=10)


def test_keras_resnet50_readme_rules_and_rebuilt_twice():
    model = resnet50()
    report = R.apply(model, README_RULES)
    assert sorted(r.path for r in report.rows) == sorted(v.path for v in model.weights)
    assert [r.path for r in report.rows if r.rule_index == 0] == ["predictions/kernel"]
    conforms(model, report, README_RULES)
    before = snapshot(model)
    with pytest.raises(R.RuleError, match="matched no parameter"):
        R.apply(model, R.Rules([(R.role("bias"), pi.ones()), (R.name("*/kernal"), pi.ones())]))
    assert identical(before, snapshot(model))
    again = resnet50()
    R.apply(again, README_RULES)
    assert identical(before, snapshot(again))


def test_keras_auto_numbered_names_do_not_change_the_seeds():
    def build():
        return keras.Sequential([keras.Input((6,)), keras.layers.Dense(5), keras.layers.Dense(3)])

    a, b = build(), build()
    assert [v.path for v in a.weights] != [v.path for v in b.weights]  # dense then dense_2, ...
    rules = R.Rules([(R.every(), pi.Normal(std=1.0))], seed=4)
    R.apply(a, rules), R.apply(b, rules)
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.weights, b.weights))


def test_keras_efficientnet_semantic_depthwise_fans_match_torch():
    model = keras.applications.EfficientNetB0(weights=None, input_shape=(32, 32, 3), classes=10)
    rules = R.Rules([(R.kind("conv") & R.role("weight"), pi.he_normal()), (R.every(), R.KEEP)])
    native = {r.path: r for r in R.apply(model, rules).rows}
    report = R.apply(model, rules, fans="semantic")
    semantic = {r.path: r for r in report.rows}
    assert len(report.rows) == len([v for v in model.weights if "float" in str(v.dtype)])  # the int count is skipped
    dw = "block2a_dwconv/kernel"  # (3, 3, 96, 1)
    assert native[dw].fan_in == 864 and semantic[dw].fan_in == 9
    conv = torch.nn.Conv2d(96, 96, 3, groups=96)
    torch_native = R.apply(conv, rules).rows[0]
    torch_semantic = R.apply(conv, rules, fans="semantic").rows[0]
    assert torch_native.fan_in == 9 and torch_semantic.std == pytest.approx(semantic[dw].std)
    assert semantic[dw].std == pytest.approx((2 / 9) ** 0.5)
    conforms(model, report, rules, fans="semantic")


class Block(nnx.Module):
    """A small transformer block, declared in data-flow order (not alphabetical)."""

    def __init__(self, rngs, vocab=50, d=16):
        self.tokens = nnx.Embed(vocab, d, rngs=rngs)
        self.norm1 = nnx.LayerNorm(d, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(num_heads=4, in_features=d, decode=False, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d, rngs=rngs)
        self.up = nnx.Linear(d, 4 * d, rngs=rngs)
        self.down = nnx.Linear(4 * d, d, rngs=rngs)


def test_nnx_transformer_block_declaration_order_and_attention_layouts():
    block = Block(nnx.Rngs(0))
    params = R.select(block, R.every())
    layers = list(dict.fromkeys(p.layer_path for p in params))
    assert layers[:3] == ["tokens", "norm1", "attention/query"] and layers[-2:] == ["up", "down"]
    assert [p.path for p in R.select(block, R.first())] == ["tokens/embedding"]
    assert [p.path for p in R.select(block, R.first(kind="dense") & R.role("weight"))] == ["up/kernel"]
    assert [p.path for p in R.select(block, R.kind("dense") & R.last() & R.role("weight"))] == ["down/kernel"]
    rules = R.Rules(
        [
            (R.kind("attention") & R.role("weight"), pi.glorot_uniform()),
            (R.role("weight", "embedding"), pi.lecun_normal()),
            (R.role("bias"), pi.zeros()),
            (R.kind("norm"), R.KEEP),
        ],
        seed=1,
        require_all=True,
    )
    report = R.apply(block, rules)
    assert len(report.rows) == len(jax.tree_util.tree_leaves(nnx.state(block, nnx.Param)))
    query = next(r for r in report.rows if r.path == "attention/query/kernel")
    assert query.shape == (16, 4, 4) and query.fan_in == 16 and query.fan_out == 16
    conforms(block, report, rules)
    again = Block(nnx.Rngs(7))
    R.apply(again, rules)
    assert identical(snapshot(block), snapshot(again))
