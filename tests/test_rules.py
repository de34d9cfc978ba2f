"""Rules applied to whole models in every framework: statistics, report, strictness, atomicity."""

import os
import subprocess
import sys

import numpy as np
import pytest

torch = __import__("torch")
keras = __import__("keras")
jax = __import__("jax")
import jax.numpy as jnp
from flax import linen, nnx

import polyinit as pi
from polyinit import rules as R
from polyinit.conformance import check, failures

HERE = os.path.dirname(__file__)


def torch_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))


def keras_mlp():
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(256), keras.layers.Dense(10)])


class NnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.Dense_0 = nnx.Linear(784, 256, rngs=rngs)
        self.Dense_1 = nnx.Linear(256, 10, rngs=rngs)


class LinenMLP(linen.Module):
    @linen.compact
    def __call__(self, x):
        return linen.Dense(10)(linen.relu(linen.Dense(256)(x)))  # auto-named Dense_0, Dense_1


def linen_mlp():
    return LinenMLP().init(jax.random.key(0), jnp.ones((1, 784)))


def mx_dict():
    return {
        "dense0_weight": np.zeros((256, 784), np.float32),
        "dense0_bias": np.zeros(256, np.float32),
        "dense1_weight": np.zeros((10, 256), np.float32),
        "dense1_bias": np.zeros(10, np.float32),
    }


MODELS = {
    "torch": torch_mlp,
    "keras": keras_mlp,
    "nnx": lambda: NnxMLP(nnx.Rngs(0)),
    "linen": linen_mlp,
    "mxnet": mx_dict,
}
RULES = R.Rules(
    [
        (R.kind("dense") & R.first() & R.role("weight"), pi.he_normal(truncated=True)),
        (R.role("weight"), pi.glorot_uniform()),
        (R.role("bias"), pi.constant(0.1)),
    ],
    seed=3,
)


def apply(framework, model, rules):
    result = R.apply(model, rules)
    return result if framework == "linen" else (model, result)


def values(framework, model, path):
    from polyinit.walkers import walker_for

    walker = walker_for(model)
    param = next(p for p in walker.walk(model) if p.path == path)
    return walker.read(model, param), param


@pytest.mark.parametrize("framework", MODELS)
def test_one_rule_set_every_framework_matches_the_specs(framework):
    model, report = apply(framework, MODELS[framework](), RULES)
    assert len(report.rows) == 4 and all(row.rule for row in report.rows)
    for row in report.rows:
        array, param = values(framework, model, row.path)
        index = int(row.rule.split()[1])
        plan = pi.resolve(RULES.rules[index][1], param.shape, param.layout)
        assert not failures(check(array, plan, alpha=1e-7)), row.path


@pytest.mark.parametrize("framework", MODELS)
def test_typo_names_the_rule_and_leaves_the_model_bit_identical(framework):
    model = MODELS[framework]()
    from polyinit.walkers import walker_for

    walker = walker_for(model)
    before = {p.path: np.array(walker.read(model, p)) for p in walker.walk(model)}
    typo = R.Rules([(R.role("bias"), pi.zeros()), (R.name("*wieght*"), pi.ones())])
    with pytest.raises(R.RuleError, match=r"rule 1 \[name\('\*wieght\*'\)"):
        R.apply(model, typo)
    bad_shape = R.Rules([(R.role("weight"), pi.zeros()), (R.role("bias"), pi.he_uniform())])
    with pytest.raises(R.RuleError, match="rule 1 .* cannot initialise"):
        R.apply(model, bad_shape)
    after = {p.path: np.array(walker.read(model, p)) for p in walker.walk(model)}
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_require_all_names_the_parameter():
    with pytest.raises(R.RuleError, match="'0.bias'"):
        R.apply(torch_mlp(), R.Rules([(R.role("weight"), pi.zeros())], require_all=True))


def test_seeds_follow_paths_not_traversal_order():
    a, b = torch_mlp(), torch_mlp()
    R.apply(a, R.Rules([(R.every(), pi.Normal(std=1.0))], seed=5))
    R.apply(b, R.Rules([(R.role("bias"), pi.Normal(std=1.0)), (R.role("weight"), pi.Normal(std=1.0))], seed=5))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    c = torch_mlp()
    R.apply(c, R.Rules([(R.every(), pi.Normal(std=1.0))], seed=6))
    assert not torch.equal(a[0].weight, c[0].weight)


def test_real_torch_transformer_every_parameter_accounted_for():
    model = torch.nn.Transformer(
        d_model=64, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=128, batch_first=True
    )
    rules = R.Rules(
        [
            (R.kind("attention") & R.role("weight"), pi.glorot_uniform()),
            (R.kind("dense") & R.role("weight"), pi.he_uniform(a=5**0.5)),
            (R.role("bias"), pi.zeros()),
            (R.kind("norm"), R.KEEP),
        ],
        require_all=True,
    )
    report = R.apply(model, rules)
    assert {row.path for row in report.rows} == {name for name, _ in model.named_parameters()}
    assert "\n" in str(report) and len(report.as_dicts()) == len(report.rows)


def test_real_keras_mobilenet_v2():
    model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35)
    rules = R.Rules(
        [
            (R.kind("conv") & R.role("weight"), pi.he_normal(truncated=True)),
            (R.kind("dense") & R.role("weight"), pi.glorot_uniform()),
            (R.role("bias"), pi.zeros()),
            (R.kind("norm"), R.KEEP),
        ],
        require_all=True,
    )
    report = R.apply(model, rules)
    assert {row.path for row in report.rows} == {v.path for v in model.weights}
    conv = next(r for r in report.rows if r.path.endswith("Conv1/kernel"))
    assert conv.std == pytest.approx((2 / (3 * 3 * 3)) ** 0.5, rel=0.15)


def test_real_nnx_model_with_attention_and_convolution():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(3, 16, (3, 3), rngs=rngs)
            self.attention = nnx.MultiHeadAttention(num_heads=4, in_features=16, decode=False, rngs=rngs)
            self.norm = nnx.LayerNorm(16, rngs=rngs)
            self.head = nnx.Linear(16, 10, rngs=rngs)

    net = Net(nnx.Rngs(0))
    rules = R.Rules(
        [
            (R.kind("attention") & R.role("weight"), pi.glorot_uniform()),
            (R.role("weight"), pi.lecun_normal(truncated=True)),
            (R.role("bias"), pi.zeros()),
            (R.kind("norm"), R.KEEP),
        ],
        require_all=True,
    )
    report = R.apply(net, rules)
    state = nnx.state(net, nnx.Param)
    leaves = jax.tree_util.tree_leaves(state)
    assert len(report.rows) == len(leaves)
    query = next(r for r in report.rows if r.path == "attention/query/kernel")
    assert query.kind == "attention" and query.shape == (16, 4, 4)


def test_param_groups_labels_and_trainable():
    model = torch_mlp()
    groups = R.torch_param_groups(model, [(R.role("bias"), {"weight_decay": 0.0})], default={"weight_decay": 1e-4})
    assert [len(g["params"]) for g in groups] == [2, 2] and groups[0]["weight_decay"] == 0.0
    torch.optim.SGD(groups, lr=0.1)
    labels = R.optax_labels(linen_mlp(), [(R.role("bias"), "no_decay")], default="decay")
    assert labels["params"]["Dense_0"]["bias"] == "no_decay" and labels["params"]["Dense_0"]["kernel"] == "decay"
    kmodel = keras_mlp()
    frozen = R.set_trainable(kmodel, R.first(), False)
    assert len(frozen) == 2 and len(kmodel.trainable_weights) == 2


@pytest.mark.parametrize(
    "script", ["normal_weights_zero_bias", "constant_one", "xavier_first_42_second", "threshold_custom", "surgery"]
)
def test_examples_run_in_every_framework(script):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run(
        [sys.executable, f"{script}.py"],
        cwd=os.path.join(HERE, "..", "examples"),
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    for framework in ("torch", "keras", "flax", "mxnet"):
        assert framework in out.stdout, out.stdout


def test_keras_subclassed_and_built_on_demand():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = keras.layers.Dense(32)
            self.out = keras.layers.Dense(4)

        def call(self, x):
            return self.out(self.hidden(x))

    net = Net()
    with pytest.raises(pi.PolyinitError, match="input_shape"):
        R.apply(net, R.Rules([(R.role("weight"), pi.zeros())]))
    report = R.apply(net, R.Rules([(R.role("weight"), pi.ones()), (R.role("bias"), pi.zeros())]), input_shape=(None, 8))
    assert len(report.rows) == 4 and np.all(keras.ops.convert_to_numpy(net.hidden.kernel) == 1)


def test_selectors_combine():
    model = torch_mlp()
    params = R.select(model, R.regex(r"^2\.") | (R.predicate(lambda p: p.shape == (256,)) & ~R.role("weight")))
    assert [p.path for p in params] == ["0.bias", "2.weight", "2.bias"]
    assert [p.path for p in R.select(model, R.nth(1) & R.name("*.weight"))] == ["2.weight"]
    with pytest.raises(R.RuleError, match="unknown kind"):
        R.kind("lstm")
    with pytest.raises(R.RuleError, match="invalid pattern"):
        R.regex("(")
    with pytest.raises(R.RuleError, match="rule 0: expected"):
        R.Rules([(R.every(), "zeros")])


def test_mxnet_names_give_roles_by_suffix():
    from polyinit.walkers import MxnetWalker

    arrays = {
        name: np.zeros(shape, np.float32)
        for name, shape in [
            ("lstm0_l0_i2h_weight", (128, 16)),
            ("lstm0_l0_h2h_weight", (128, 32)),
            ("lstm0_l0_i2h_bias", (128,)),
            ("batchnorm0_gamma", (8,)),
            ("batchnorm0_running_mean", (8,)),
        ]
    }
    roles = {p.path: (p.kind, p.role) for p in MxnetWalker().walk(arrays)}
    assert roles == {
        "lstm0_l0_i2h_weight": ("recurrent", "weight"),
        "lstm0_l0_h2h_weight": ("recurrent", "recurrent"),
        "lstm0_l0_i2h_bias": ("recurrent", "bias"),
        "batchnorm0_gamma": ("norm", "scale"),
        "batchnorm0_running_mean": ("norm", "running_mean"),
    }


def test_attention_kind_comes_from_the_owning_layer_not_names():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.out = nnx.Linear(8, 4, rngs=rngs)  # named like an attention projection, but is not one
            self.attention = nnx.MultiHeadAttention(num_heads=2, in_features=8, decode=False, rngs=rngs)

    kinds = {p.path: p.kind for p in R.select(Net(nnx.Rngs(0)), R.every())}
    assert kinds["out/kernel"] == "dense" and kinds["attention/out/kernel"] == "attention"
    layer_model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4, name="dense")], name="my_attention_net")
    assert {p.kind for p in R.select(layer_model, R.every())} == {"dense"}
