"""The rules contract on small models: positions in declaration order, shadowed rules, stable
seeds and the key hook, seeds refused or accepted, all-or-nothing writes, non-float state,
strict groups/labels/trainable, the report, the module-type registry and one logical record
sequence for one architecture (MLP, CNN with BatchNorm, transformer block, LSTM) in every
framework, with per-gate semantic fans for the LSTM."""

import gc
import warnings
import weakref

import numpy as np
import pytest

torch = __import__("torch")
keras = __import__("keras")
jax = __import__("jax")
import jax.numpy as jnp
from flax import linen, nnx

import polyinit as pi
from polyinit import rules as R
from polyinit.frameworks import register_module_type, walker_for
from polyinit.params import ModuleType, ParamType


def seq():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- positions -------------------------------------------------------------------------------


def test_nth_out_of_range_matches_nothing_and_strict_says_so():
    model = seq()
    before = state(model)
    with pytest.raises(R.RuleError, match=r"rule 0 \[\(nth\(2\) & role\('weight',\)\).*matched no parameter"):
        R.apply(model, R.Rules([(R.nth(2) & R.role("weight"), pi.zeros())]))
    assert same(before, state(model))  # never wraps around to layer 0
    assert R.select(model, R.nth(5)) == [] and R.select(model, R.nth(-3)) == []
    assert [p.path for p in R.select(model, R.nth(-1))] == ["2.weight", "2.bias"]


def test_first_within_a_kind_and_inside_and():
    model = torch.nn.Sequential(
        torch.nn.Embedding(10, 4), torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2)
    )
    assert [p.path for p in R.select(model, R.first())] == ["0.weight"]
    assert [p.path for p in R.select(model, R.kind("dense") & R.first())] == ["1.weight", "1.bias"]
    assert [p.path for p in R.select(model, R.first(kind="dense"))] == ["1.weight", "1.bias"]
    assert [p.path for p in R.select(model, R.first() & R.kind("dense"))] == ["1.weight", "1.bias"]
    assert [p.path for p in R.select(model, R.last(kind="dense") & R.role("weight"))] == ["3.weight"]
    assert [p.kind_position for p in R.select(model, R.kind("dense"))] == [0, 0, 1, 1]


def test_linen_batch_stats_belong_to_their_layer():
    class Net(linen.Module):
        @linen.compact
        def __call__(self, x):
            x = linen.Dense(4)(x)
            x = linen.BatchNorm(use_running_average=False)(x)
            return linen.Dense(3)(x)

    variables = Net().init(jax.random.key(0), jnp.ones((2, 4)))
    params = R.select(variables, R.every())
    assert len({p.layer for p in params}) == 3
    last = [p.path for p in R.select(variables, R.last())]
    assert last == ["params/Dense_1/kernel", "params/Dense_1/bias"]
    bn = [p for p in params if "BatchNorm_0" in p.path]
    assert {p.role for p in bn} == {"scale", "offset", "running_mean", "running_var"} and len(
        {p.layer for p in bn}
    ) == 1


def test_shadowed_rule_names_the_rule_that_took_its_parameters():
    rules = R.Rules(
        [(R.role("weight"), pi.zeros()), (R.role("bias"), pi.zeros()), (R.kind("dense") & R.role("weight"), pi.ones())]
    )
    with pytest.raises(R.RuleError, match=r"rule 2 .* is shadowed by rule 0"):
        R.apply(seq(), rules)
    report = R.apply(seq(), R.Rules(rules.rules, strict=False))
    assert any("shadowed by rule 0" in u for u in report.unused)


# --- seeds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [1.5, "0", None, True])
def test_bad_seeds_are_refused(bad):
    with pytest.raises(R.RuleError, match="seed"):
        R.Rules([(R.every(), pi.zeros())], seed=bad)


def test_numpy_and_jax_integer_seeds_are_the_int():
    spec = [(R.every(), pi.Normal(std=1.0))]
    a, b, c = seq(), seq(), seq()
    (
        R.apply(a, R.Rules(spec, seed=3)),
        R.apply(b, R.Rules(spec, seed=np.int64(3))),
        R.apply(c, R.Rules(spec, seed=jnp.int32(3))),
    )
    assert same(state(a), state(b)) and same(state(a), state(c))


def test_key_hook_and_duplicate_keys():
    a, b = seq(), seq()
    R.apply(a, R.Rules([(R.every(), pi.Normal(std=1.0))]))
    R.apply(b, R.Rules([(R.every(), pi.Normal(std=1.0))], key=lambda p: "x" + p.path))
    assert not torch.equal(a[0].weight, b[0].weight)
    c = seq()
    R.apply(c, R.Rules([(R.every(), pi.Normal(std=1.0))], key=lambda p: p.path))
    assert same(state(a), state(c))  # torch keys are the paths
    with pytest.raises(R.RuleError, match="shared by"):
        R.apply(seq(), R.Rules([(R.every(), pi.zeros())], key=lambda p: "same"))


# --- bad inputs ------------------------------------------------------------------------------


def test_apply_on_a_list_or_a_state_dict_is_a_clear_error():
    model = seq()
    rules = R.Rules([(R.every(), pi.zeros())])
    with pytest.raises(R.ModelError, match="list or tuple"):
        R.apply(list(model.parameters()), rules)
    with pytest.raises(R.ModelError, match="state_dict"):
        R.apply(model.state_dict(), rules)


def test_a_raising_predicate_names_rule_and_parameter():
    rules = R.Rules(
        [(R.role("weight"), pi.zeros()), (R.predicate(lambda p: p.shape[1] > 2), pi.ones()), (R.every(), R.KEEP)]
    )
    model = seq()
    before = state(model)
    with pytest.raises(R.RuleError, match=r"rule 1 \[predicate\] raised IndexError.*'0.bias'"):
        R.apply(model, rules)
    assert same(before, state(model))


def test_selector_rshift_spec_is_a_rule():
    rules = R.Rules([R.role("bias") >> pi.zeros(), (R.kind("dense") & R.first()) >> pi.ones(), R.every() >> R.KEEP])
    model = seq()
    R.apply(model, rules)
    assert torch.all(model[0].weight == 1) and torch.all(model[2].bias == 0)
    with pytest.raises(R.RuleError, match="expected a selector"):
        R.kind("dense") & R.first() >> pi.ones()  # >> binds tighter than &


# --- the report ------------------------------------------------------------------------------


def test_report_records_the_drawn_plan_and_does_not_keep_the_model_alive():
    model = torch.nn.Sequential(torch.nn.Linear(784, 256))
    report = R.apply(model, R.Rules([(R.role("weight"), pi.glorot_uniform()), (R.role("bias"), pi.zeros())]))
    row = report.rows[0]
    assert (
        row.drawn == "uniform(-0.07596, 0.07596)" and row.fans == "native" and (row.fan_in, row.fan_out) == (784, 256)
    )
    assert row.std == pytest.approx(0.07596 / 3**0.5, rel=1e-3) and "uniform(-0.07596, 0.07596)" in str(report)
    with torch.no_grad():
        model[0].weight.fill_(5.0)
    assert row.std == pytest.approx(0.07596 / 3**0.5, rel=1e-3)  # what was drawn, not the current values
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None and report.rows[0].drawn


# --- all or nothing --------------------------------------------------------------------------


def test_meta_and_inference_tensors_are_refused_before_any_write():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4, device="meta"))
    before = model[0].weight.detach().clone()
    with pytest.raises(R.ModelError, match=r"'1.weight' is on the meta device"):
        R.apply(model, R.Rules([(R.every(), pi.ones())]))
    assert torch.equal(before, model[0].weight)
    with torch.inference_mode():
        frozen = torch.nn.Linear(4, 4)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), frozen)
    before = state(model)
    with pytest.raises(R.ModelError, match="inference tensor"):
        R.apply(model, R.Rules([(R.every(), pi.ones())]))
    assert same(before, state(model))


def test_a_failing_write_is_rolled_back(monkeypatch):
    import polyinit.backends.torch as backend

    calls = []
    real = backend.draw_into

    def flaky(tensor, plan, generator=None):
        calls.append(1)
        if len(calls) == 2:  # the second expression draw fails, after the first was written
            raise RuntimeError("out of memory")
        return real(tensor, plan, generator)

    monkeypatch.setattr(backend, "draw_into", flaky)
    model = seq()
    before = state(model)
    squared = pi.Normal(std=1.0) * pi.Normal(std=1.0, stream=1)  # an expression: a temporary, may fail
    with pytest.raises(R.ModelError, match="out of memory.*2 parameters touched were restored"):
        R.apply(model, R.Rules([(R.role("weight"), squared), (R.role("bias"), pi.zeros())]))
    assert same(before, state(model)) and len(calls) == 2  # the in-place zeros were never started


def test_keras_failing_write_is_rolled_back(monkeypatch):
    from polyinit.frameworks import keras as kwalk

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    before = [v.numpy().copy() for v in model.weights]
    real = kwalk.KerasWalker.draw
    count = []

    def draw(self, param, plan, seed):
        count.append(1)
        return real(self, param, plan, seed) if len(count) < 3 else np.zeros((7, 7), np.float32)  # wrong shape

    monkeypatch.setattr(kwalk.KerasWalker, "draw", draw)
    with pytest.raises(R.ModelError, match="restored"):
        R.apply(model, R.Rules([(R.every(), pi.ones())]))
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.weights))


# --- non-float state, strict groups ----------------------------------------------------------


def test_integer_state_is_skipped_by_every_walker():
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.dense = nnx.Linear(3, 2, rngs=rngs)
            self.count = nnx.BatchStat(jnp.array(0))

    assert [p.path for p in R.select(Net(nnx.Rngs(0)), R.every())] == ["dense/kernel", "dense/bias"]
    tree = {"params": {"Dense_0": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}, "state": {"step": jnp.array(3)}}
    new, report = R.apply(tree, R.Rules([(R.every(), pi.zeros())]))
    assert len(report.rows) == 2 and new["state"]["step"] == 3
    arrays = {"dense0_weight": np.ones((2, 3), np.float32), "dense0_steps": np.zeros(2, np.int64)}
    assert [r.path for r in R.apply(arrays, R.Rules([(R.every(), pi.zeros())])).rows] == ["dense0_weight"]


def test_groups_labels_and_trainable_are_strict():
    with pytest.raises(R.RuleError, match=r"group 1 .*matched no parameter"):
        R.torch_param_groups(seq(), [(R.role("bias"), {}), (R.kind("conv"), {"lr": 1.0})])
    tree = {"params": {"Dense_0": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}}
    with pytest.raises(R.RuleError, match=r"label 0 .*matched no parameter"):
        R.optax_labels(tree, [(R.kind("norm"), "x")])
    labels = R.optax_labels(tree, [(R.role("bias"), "no_decay")], default="decay")
    assert labels == {"params": {"Dense_0": {"kernel": "decay", "bias": "no_decay"}}}
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with pytest.raises(R.RuleError, match="matched no parameter"):
        R.set_trainable(model, R.kind("conv"), False)


# --- module types ----------------------------------------------------------------------------


class Scaled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3, 5))  # stored (in, out)


def test_unregistered_module_types_are_reported_then_registered():
    model = torch.nn.Sequential(torch.nn.Linear(5, 3), Scaled())
    with pytest.warns(UserWarning, match="Scaled"):
        report = R.apply(model, R.Rules([(R.every(), pi.zeros())]))
    assert list(report.unknown_types.values()) == [["1.w"]] and "unregistered module type" in str(report)
    register_module_type(f"{__name__}.Scaled", ModuleType("dense", {"w": ParamType("weight", "in out")}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        params = R.select(model, R.kind("dense") & R.last())
    assert [(p.path, p.kind, p.role, p.layout.pattern) for p in params] == [("1.w", "dense", "weight", "in out")]


# --- one architecture, one record sequence ---------------------------------------------------


def _records(model, grouped=True):
    """(layer, kind, role, logical shape in (batch, out, in, spatial) order) per logical parameter
    (``logical_params``: per-gate kernels stacked, b_ih + b_hh one bias), in declaration order;
    ``grouped=False``: per tensor, as the walker gives them."""
    from polyinit.params import logical_params

    params = walker_for(model).walk(model)
    views = (
        logical_params(params)
        if grouped
        else [(p.layer, p.kind, p.role, p.logical_shape, p.semantic_layout) for p in params]
    )
    out = []
    for p in views:
        layer, kind, role, shape, layout = (p.layer, p.kind, p.role, p.shape, p.layout) if grouped else p
        roles = layout.roles(len(shape))
        dims = tuple(n for order in ("batch", "out", "in", "spatial") for n, r in zip(shape, roles) if r == order)
        out.append((layer, kind, role, dims))
    return out


# One LSTM layer (input 6, hidden 8) and a dense head (8 -> 3), read off the architecture: the
# 4 gates (i, f, g, o) of the input weight (4, H, in), of the recurrent weight (4, H, H), of the
# effective bias (4, H), then the head.
LSTM_RECORDS = [
    (0, "recurrent", "weight", (4, 8, 6)),
    (0, "recurrent", "recurrent", (4, 8, 8)),
    (0, "recurrent", "bias", (4, 8)),
    (1, "dense", "weight", (3, 8)),
    (1, "dense", "bias", (3,)),
]


def _torch_models():
    nn = torch.nn
    mlp = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(8, 8) for _ in range(4))
            self.norm = nn.LayerNorm(8)
            self.up, self.down = nn.Linear(8, 16), nn.Linear(16, 8)

    class LSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.head = nn.LSTM(6, 8, batch_first=True), nn.Linear(8, 3)

    return [mlp, cnn, Block(), LSTM()]


def _keras_models():
    L = keras.layers
    mlp = keras.Sequential([keras.Input((6,)), L.Dense(8), L.Dense(3)])
    cnn = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3), L.BatchNormalization(), L.Flatten(), L.Dense(5)])
    layers = [L.Dense(8) for _ in range(4)] + [L.LayerNormalization(), L.Dense(16), L.Dense(8)]
    block = keras.Sequential([keras.Input((8,))] + layers)  # the same layers in the same order
    lstm = keras.Sequential([keras.Input((5, 6)), L.LSTM(8), L.Dense(3)])
    return [mlp, cnn, block, lstm]


def _nnx_models(cell=nnx.LSTMCell):
    r = nnx.Rngs(0)

    class MLP(nnx.Module):
        def __init__(self):
            self.a, self.b = nnx.Linear(6, 8, rngs=r), nnx.Linear(8, 3, rngs=r)

    class CNN(nnx.Module):
        def __init__(self):
            self.conv = nnx.Conv(3, 4, (3, 3), padding="VALID", rngs=r)
            self.norm = nnx.BatchNorm(4, rngs=r)
            self.head = nnx.Linear(4 * 6 * 6, 5, rngs=r)

    class Block(nnx.Module):
        def __init__(self):
            self.q, self.k, self.v, self.o = (nnx.Linear(8, 8, rngs=r) for _ in range(4))
            self.norm = nnx.LayerNorm(8, rngs=r)
            self.up, self.down = nnx.Linear(8, 16, rngs=r), nnx.Linear(16, 8, rngs=r)

    class LSTM(nnx.Module):
        def __init__(self):
            self.rnn, self.head = nnx.RNN(cell(6, 8, rngs=r)), nnx.Linear(8, 3, rngs=r)

    return [MLP(), CNN(), Block(), LSTM()]


def _linen_models(cell=linen.LSTMCell):
    class MLP(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(3)(linen.Dense(8)(x))

    class CNN(linen.Module):
        @linen.compact
        def __call__(self, x):
            x = linen.BatchNorm(use_running_average=False)(linen.Conv(4, (3, 3), padding="VALID")(x))
            return linen.Dense(5)(x.reshape((x.shape[0], -1)))

    class Block(linen.Module):
        @linen.compact
        def __call__(self, x):
            for _ in range(4):
                x = linen.Dense(8)(x)
            return linen.Dense(8)(linen.Dense(16)(linen.LayerNorm()(x)))

    class LSTM(linen.Module):
        @linen.compact
        def __call__(self, x):
            return linen.Dense(3)(linen.RNN(cell(8))(x)[:, -1])

    key = jax.random.key(0)
    return [
        MLP().init(key, jnp.ones((1, 6))),
        CNN().init(key, jnp.ones((1, 8, 8, 3))),
        Block().init(key, jnp.ones((1, 8))),
        LSTM().init(key, jnp.ones((1, 5, 6))),
    ]


def test_one_architecture_gives_one_record_sequence_in_every_framework():
    torch_records = [_records(m) for m in _torch_models()]
    assert torch_records[-1] == LSTM_RECORDS
    for name, models in [
        ("keras", _keras_models()),
        ("nnx", _nnx_models()),
        ("linen", _linen_models()),
        ("nnx OptimizedLSTMCell", _nnx_models(nnx.OptimizedLSTMCell)),
        ("linen OptimizedLSTMCell", _linen_models(linen.OptimizedLSTMCell)),
    ]:
        assert [_records(m) for m in models] == torch_records, name


def test_the_lstm_comparison_can_fail():
    """Per tensor, nnx's LSTMCell is 12 records (a kernel per gate and source, a bias per gate)
    and torch's LSTM 4 (two summed biases): only the logical records agree."""
    (torch_lstm,), (nnx_lstm,) = _torch_models()[-1:], _nnx_models()[-1:]
    per_tensor = _records(nnx_lstm, grouped=False)
    assert per_tensor != _records(torch_lstm) and per_tensor != _records(torch_lstm, grouped=False)
    assert len(per_tensor) == 12 + 2 and len(_records(torch_lstm, grouped=False)) == 4 + 2
    assert {layer for layer, *_ in per_tensor} == {0, 1}  # one layer for the whole cell, not one per gate


def test_cells_keep_their_declaration_order():
    """linen.RNN's scan hands the cell's variables back sorted by name (hf before ii); the walker
    lists them as linen.LSTMCell creates them, gate by gate, and nnx's in attribute order."""
    tree = _linen_models()[-1]
    assert list(tree["params"]["LSTMCell_0"])[:2] == ["hf", "hg"]  # what the walker has to undo
    linen_paths = [p.path for p in walker_for(tree).walk(tree)]
    assert linen_paths == [
        f"params/LSTMCell_0/{name}"
        for gate in "ifgo"
        for name in (f"i{gate}/kernel", f"h{gate}/kernel", f"h{gate}/bias")
    ] + ["params/Dense_0/kernel", "params/Dense_0/bias"]
    nnx_paths = [p.path for p in walker_for(_nnx_models()[-1]).walk(_nnx_models()[-1])]
    assert nnx_paths[:4] == [f"rnn/cell/{g}/kernel" for g in ("ii", "if_", "ig", "io")]
    assert nnx_paths[4:6] == ["rnn/cell/hi/kernel", "rnn/cell/hi/bias"]


def test_nnx_declaration_order_survives_a_forward_pass_under_nnx_jit():
    """nnx.jit writes the module back with its __dict__ sorted by name (flax 0.12.8): records,
    positions and portable keys must not change because the model ran."""
    r = nnx.Rngs(0)

    class Net(nnx.Module):
        def __init__(self):
            self.zeta = nnx.Linear(4, 8, rngs=r)  # declared first, sorts last
            self.alpha = nnx.Linear(8, 2, rngs=r)

        def __call__(self, x):
            return self.alpha(self.zeta(x))

    model = Net()
    before = [(p.path, p.layer) for p in walker_for(model).walk(model)]
    nnx.jit(lambda m, x: m(x))(model, jnp.ones((1, 4)))
    assert [k for k in vars(model) if not k.startswith("_")] == ["alpha", "zeta"]  # what the walker undoes
    assert before == [("zeta/kernel", 0), ("zeta/bias", 0), ("alpha/kernel", 1), ("alpha/bias", 1)]
    assert [(p.path, p.layer) for p in walker_for(model).walk(model)] == before
    first = R.apply(model, R.Rules([(R.first() & R.role("weight"), pi.zeros()), (R.every(), R.KEEP)]))
    assert [row.path for row in first.rows if row.rule_index == 0] == ["zeta/kernel"]


def test_logical_params_refuse_parts_that_disagree():
    from polyinit.layout import Layout
    from polyinit.params import Param, Part, logical_params

    def part(index, shape=(6, 8), role="weight"):
        return Param(
            f"cell/{index}/kernel", "recurrent", role, shape, Layout("in out"), 0, part=Part("cell/w", "stack", index)
        )

    with pytest.raises(R.RuleError, match="disagree"):
        logical_params([part(0), part(1, (6, 9))])
    with pytest.raises(R.RuleError, match="disagree"):
        logical_params([part(0), part(1, role="recurrent")])
    with pytest.raises(R.RuleError, match=r"part indexes \[0, 2\]"):
        logical_params([part(0), part(2)])
    with pytest.raises(R.RuleError, match="combine"):
        Part("cell/w", "concat")


@pytest.mark.parametrize("module", ["polyinit.rules", "polyinit.selectors", "polyinit.params", "polyinit.frameworks"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# The presets as polyinit.layout held them before they moved into the framework records.
PRESETS = {
    ("torch", "dense"): ("out in", "out in"),
    ("torch", "conv"): ("out in *", "out in *"),
    ("torch", "conv_transpose"): ("out in *", "in out *"),
    ("torch", "embedding"): ("out in", "in out"),
    ("torch", "depthwise_conv"): ("out in *", "out in *"),
    ("keras", "dense"): ("in out", "in out"),
    ("keras", "conv"): ("* in out", "* in out"),
    ("keras", "conv_transpose"): ("* in out", "* out in"),
    ("keras", "depthwise_conv"): ("* in out", "* batch out"),
    ("keras", "embedding"): ("in out", "in out"),
    ("flax", "dense"): ("in out", "in out"),
    ("flax", "conv"): ("* in out", "* in out"),
    ("flax", "conv_transpose"): ("* in out", "* in out"),
    ("flax", "embedding"): ("in out", "in out"),
    ("flax", "depthwise_conv"): ("* in out", "* in out"),
    ("mxnet", "dense"): ("out in", "out in"),
    ("mxnet", "conv"): ("out in *", "out in *"),
    ("mxnet", "conv_transpose"): ("out in *", "in out *"),
    ("mxnet", "embedding"): ("in out", "in out"),
    ("mxnet", "depthwise_conv"): ("out in *", "out in *"),
}
PRESETS.update({("jax", k): v for (f, k), v in list(PRESETS.items()) if f == "flax"})
PRESETS.update({("haiku", k): v for (f, k), v in list(PRESETS.items()) if f == "keras"})


def test_layout_presets_unchanged_by_the_move_into_framework_records():
    got = {key: (pi.preset(*key).pattern, pi.preset(*key, native=False).pattern) for key in PRESETS}
    assert got == PRESETS
    with pytest.raises(pi.SpecError, match="no layout for framework='torch', kind='lstm'"):
        pi.preset("torch", "lstm")


def _semantic_fans(model, path_part, **options):
    rules = R.Rules([(R.role("weight"), pi.glorot_uniform()), (R.every(), R.KEEP)])
    rows = [r for r in R.apply(model, rules, fans="semantic", **options).rows if r.rule_index == 0]
    return {(r.fan_in, r.fan_out, r.drawn) for r in rows if path_part in r.path}


def test_semantic_fans_agree_across_frameworks():
    L, r = keras.layers, nnx.Rngs(0)

    def keras_layer(layer, shape):
        return keras.Sequential([keras.Input(shape), layer])

    cases = {
        # grouped conv, 8 -> 8 channels in 2 groups: each output sees 4 channels x 9
        "grouped": [
            (torch.nn.Conv2d(8, 8, 3, groups=2), "weight"),
            (keras_layer(L.Conv2D(8, 3, groups=2), (6, 6, 8)), "kernel"),
            (nnx.Conv(8, 8, (3, 3), feature_group_count=2, rngs=r), "kernel"),
        ],
        # depthwise 3x3 on 6 channels: fan_in 9
        "depthwise": [
            (torch.nn.Conv2d(6, 6, 3, groups=6), "weight"),
            (keras_layer(L.DepthwiseConv2D(3), (6, 6, 6)), "kernel"),
            (nnx.Conv(6, 6, (3, 3), feature_group_count=6, rngs=r), "kernel"),
        ],
        # transposed 4 -> 6 channels: fan_in 4 x 9, fan_out 6 x 9
        "transposed": [
            (torch.nn.ConvTranspose2d(4, 6, 3), "weight"),
            (keras_layer(L.Conv2DTranspose(6, 3), (6, 6, 4)), "kernel"),
            (nnx.ConvTranspose(4, 6, (3, 3), rngs=r), "kernel"),
        ],
        # packed q/k/v of width 64 against per-projection kernels: each (64 -> 64)
        "attention": [
            (torch.nn.MultiheadAttention(64, 4), "in_proj_weight"),
            (nnx.MultiHeadAttention(num_heads=4, in_features=64, decode=False, rngs=r), "query/kernel"),
        ],
    }
    expected = {"grouped": (36, 36), "depthwise": (9, 9), "transposed": (36, 54), "attention": (64, 64)}
    for case, models in cases.items():
        found = [_semantic_fans(model, part) for model, part in models]
        assert all(len(f) == 1 for f in found) and len(set.union(*found)) == 1, (case, found)
        assert next(iter(found[0]))[:2] == expected[case], case
    mha = keras.layers.MultiHeadAttention(num_heads=4, key_dim=16)
    mha(keras.ops.zeros((1, 2, 64)), keras.ops.zeros((1, 2, 64)))
    assert _semantic_fans(mha, "query/kernel") == _semantic_fans(torch.nn.MultiheadAttention(64, 4), "in_proj_weight")


def test_semantic_lstm_fans_are_per_gate_in_every_framework():
    """glorot_uniform on an LSTM (input 6, hidden 8) under fans='semantic': each gate is a 6 -> 8
    map (recurrent: 8 -> 8), whether the framework packs the 4 gates (torch (32, 6), Keras and
    nnx's OptimizedLSTMCell (6, 32)) or keeps one kernel per gate (nnx's and linen's LSTMCell)."""
    rules = R.Rules([(R.kind("recurrent") & R.role("weight", "recurrent"), pi.glorot_uniform()), (R.every(), R.KEEP)])
    r = nnx.Rngs(0)

    def fans(model, convention):
        report = R.apply(model, rules, fans=convention)
        report = report[1] if isinstance(report, tuple) else report  # linen: (new tree, report)
        return {(row.role, row.fan_in, row.fan_out, row.drawn) for row in report.rows if row.rule_index == 0}

    def uniform(fan_in, fan_out):
        bound = (6 / (fan_in + fan_out)) ** 0.5
        return f"uniform({-bound:.4g}, {bound:.4g})"

    per_gate = {("weight", 6, 8, uniform(6, 8)), ("recurrent", 8, 8, uniform(8, 8))}
    models = {
        "torch": torch.nn.LSTM(6, 8),
        "keras": keras.Sequential([keras.Input((5, 6)), keras.layers.LSTM(8)]),
        "nnx": nnx.RNN(nnx.LSTMCell(6, 8, rngs=r)),
        "nnx fused": nnx.RNN(nnx.OptimizedLSTMCell(6, 8, rngs=r)),
        "linen": _linen_models()[-1],
    }
    for name, model in models.items():
        assert fans(model, "semantic") == per_gate, name
    # Native fans stay each framework's own: the packed gates count into fan_out.
    assert fans(models["torch"], "native") == {("weight", 6, 32, uniform(6, 32)), ("recurrent", 8, 32, uniform(8, 32))}
    assert fans(models["keras"], "native") == fans(models["torch"], "native")
    assert fans(models["nnx"], "native") == per_gate


def test_lstm_gate_blocks_mean_the_same_gates_under_either_fans():
    """lstm_bias / lstm_kernel under fans='semantic' see the (4, H) gate view; their blocks are
    still the four gates (the forget block at entries H..2H of the stored tensor)."""
    rules = R.Rules(
        [
            (R.role("bias"), pi.lstm_bias(1.0)),
            (R.role("weight"), pi.lstm_kernel(i=pi.zeros(), f=pi.ones(), g=pi.zeros(), o=pi.zeros())),
            (R.every(), R.KEEP),
        ]
    )
    forget = np.repeat([0.0, 1.0, 0.0, 0.0], 8)
    for convention in ("native", "semantic"):
        model = torch.nn.LSTM(6, 8)
        R.apply(model, rules, fans=convention)
        assert np.array_equal(model.bias_ih_l0.detach().numpy(), forget), convention
        assert np.array_equal(model.weight_ih_l0.detach().numpy(), np.repeat(forget[:, None], 6, axis=1)), convention
        layer = keras.Sequential([keras.Input((5, 6)), keras.layers.LSTM(8)])
        R.apply(layer, rules, fans=convention)
        assert np.array_equal(layer.weights[2].numpy(), forget), convention
        assert np.array_equal(layer.weights[0].numpy(), np.repeat(forget[None, :], 6, axis=0)), convention


def test_the_same_weights_in_another_process():
    import os
    import subprocess
    import sys

    script = (
        "import torch, polyinit as pi\nfrom polyinit import rules as R\n"
        "torch.manual_seed(123)\n"
        "m = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))\n"
        "R.apply(m, R.Rules([(R.every(), pi.Normal(std=1.0))], seed=9))\n"
        "print(repr([round(float(x), 6) for p in m.parameters() for x in p.detach().flatten()]))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    model = seq()
    R.apply(model, R.Rules([(R.every(), pi.Normal(std=1.0))], seed=9))
    here = [round(float(x), 6) for p in model.parameters() for x in p.detach().flatten()]
    assert out.stdout.strip() == repr(here)


def test_nnx_failing_write_is_rolled_back(monkeypatch):
    from polyinit.frameworks import flax as fwalk

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.a, self.b = nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)

    net = Net(nnx.Rngs(0))
    before = [np.asarray(v) for v in jax.tree_util.tree_leaves(nnx.state(net, nnx.Param))]
    real = fwalk.NnxWalker.draw
    count = []

    def draw(self, param, plan, seed):
        count.append(1)
        return real(self, param, plan, seed) if len(count) < 3 else "not an array"

    monkeypatch.setattr(fwalk.NnxWalker, "draw", draw)
    with pytest.raises(R.ModelError, match="restored"):
        R.apply(net, R.Rules([(R.every(), pi.ones())]))
    after = [np.asarray(v) for v in jax.tree_util.tree_leaves(nnx.state(net, nnx.Param))]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


class ToyModel:
    """A framework nobody wrote a walker for: layers as (class name, {leaf: numpy array})."""

    def __init__(self):
        self.layers = [
            ("Dense", {"kernel": np.zeros((3, 5), np.float32), "bias": np.zeros(5, np.float32)}),
            ("Dense", {"kernel": np.zeros((5, 2), np.float32), "bias": np.zeros(2, np.float32)}),
        ]


class ToyWalker:
    returns_new = False

    def walk(self, model):
        from polyinit.frameworks._walk import Builder

        builder = Builder("in out", sep=".")
        for i, (kind, leaves) in enumerate(model.layers):
            rows = [(leaf, a, id(a), a.shape, a.dtype.name, True, "cpu") for leaf, a in leaves.items()]
            builder.layer(str(i), None, rows, key_prefix=str(i), kind=kind.lower())
        self.arrays = builder.handles
        return builder.finish()

    def draw(self, param, plan, seed):
        from polyinit.backends.numpy import draw

        return draw(plan, np.random.default_rng(seed))

    def write(self, model, drawn):
        for param, values in drawn:
            if values is not None:
                self.arrays[param.path][...] = values
        return model

    def read(self, model, param):
        return self.arrays[param.path]


def test_a_new_framework_is_one_record(monkeypatch):
    import polyinit.frameworks as F
    from polyinit.frameworks import Framework, frameworks, register_framework

    # The registry is global: give it back afterwards (test_framework_records checks every record
    # names a real backend, and 'toy' has none).
    frameworks()
    monkeypatch.setattr(F, "_FRAMEWORKS", dict(F._FRAMEWORKS))
    register_framework(
        Framework(
            name="toy",
            display="Toy",
            detect=lambda m: isinstance(m, ToyModel),
            walker=ToyWalker,
            presets={"dense": ("in out", "in out")},
        )
    )
    assert "toy" in [f.name for f in frameworks()] and pi.preset("toy", "dense").pattern == "in out"
    model = ToyModel()
    report = R.apply(
        model,
        R.Rules(
            [
                (R.kind("dense") & R.last() & R.role("weight"), pi.ones()),
                (R.role("weight"), pi.glorot_uniform()),
                (R.role("bias"), pi.zeros()),
            ]
        ),
    )
    assert [r.path for r in report.rows] == ["0.kernel", "0.bias", "1.kernel", "1.bias"]
    assert np.all(model.layers[1][1]["kernel"] == 1) and report.rows[0].fan_in == 3
