"""The defaults registry against the real layers of each installed framework (MXNet: tests/real_mxnet)."""

import numpy as np
import pytest

torch = __import__("torch")
keras = __import__("keras")
jax = __import__("jax")
import jax.numpy as jnp
from flax import linen

import polyinit as pi
from polyinit.conformance import check, failures, samples_needed
from polyinit.defaults import layer_defaults

DIMS = {
    "dense": dict(n_in=96, n_out=64),
    "conv": dict(n_in=16, n_out=32, kernel=(3, 3), groups=2),
    "conv_transpose": dict(n_in=16, n_out=32, kernel=(3, 3)),
    "embedding": dict(num=500, dim=32),
    "lstm": dict(n_in=24, hidden=32),
    "gru": dict(n_in=24, hidden=32),
    "batchnorm": dict(c=48),
    "layernorm": dict(c=48),
    "mha": dict(d_model=64, heads=4),
}


def torch_layer(layer):
    d = DIMS[layer]
    nn = torch.nn
    module = {
        "dense": lambda: nn.Linear(96, 64),
        "conv": lambda: nn.Conv2d(16, 32, 3, groups=2),
        "conv_transpose": lambda: nn.ConvTranspose2d(16, 32, 3),
        "embedding": lambda: nn.Embedding(500, 32),
        "lstm": lambda: nn.LSTM(24, 32),
        "gru": lambda: nn.GRU(24, 32),
        "batchnorm": lambda: nn.BatchNorm1d(48),
        "layernorm": lambda: nn.LayerNorm(48),
        "mha": lambda: nn.MultiheadAttention(64, 4),
    }[layer]()
    assert d  # dims and module agree by construction above
    state = {k: v.detach().double().numpy() for k, v in module.state_dict().items() if v.is_floating_point()}
    return state


def keras_layer(layer, seed):
    keras.utils.set_random_seed(seed)
    L = keras.layers
    make, shape = {
        "dense": (lambda: L.Dense(64), (None, 96)),
        "conv": (lambda: L.Conv2D(32, 3, groups=2), (None, 8, 8, 16)),
        "conv_transpose": (lambda: L.Conv2DTranspose(32, 3), (None, 8, 8, 16)),
        "embedding": (lambda: L.Embedding(500, 32), (None, 4)),
        "lstm": (lambda: L.LSTM(32), (None, 5, 24)),
        "gru": (lambda: L.GRU(32), (None, 5, 24)),
        "batchnorm": (lambda: L.BatchNormalization(), (None, 48)),
        "layernorm": (lambda: L.LayerNormalization(), (None, 48)),
        "mha": (None, None),
    }[layer]
    if layer == "mha":
        module = L.MultiHeadAttention(num_heads=4, key_dim=16)
        module.build((None, 5, 64), (None, 5, 64))
    else:
        module = make()
        module.build(shape)
    return {w.path: np.asarray(keras.ops.convert_to_numpy(w), dtype=np.float64) for w in module.weights}


def flax_layer(layer, seed):
    key = jax.random.key(seed)
    make, x = {
        "dense": (lambda: linen.Dense(64), jnp.ones((1, 96))),
        "conv": (lambda: linen.Conv(32, (3, 3), feature_group_count=2), jnp.ones((1, 8, 8, 16))),
        "conv_transpose": (lambda: linen.ConvTranspose(32, (3, 3)), jnp.ones((1, 8, 8, 16))),
        "embedding": (lambda: linen.Embed(500, 32), jnp.zeros((1,), jnp.int32)),
        "batchnorm": (lambda: linen.BatchNorm(use_running_average=True), jnp.ones((1, 48))),
        "layernorm": (lambda: linen.LayerNorm(), jnp.ones((1, 48))),
        "mha": (lambda: linen.MultiHeadDotProductAttention(num_heads=4, qkv_features=64), jnp.ones((1, 5, 64))),
    }.get(layer, (None, None))
    if layer in ("lstm", "gru"):
        cell = linen.LSTMCell(32) if layer == "lstm" else linen.GRUCell(32)
        carry = cell.initialize_carry(key, (1, 24))
        variables = cell.init(key, carry, jnp.ones((1, 24)))
    else:
        variables = make().init(key, x)
    flat = {}
    for collection, tree in variables.items():
        for path, value in jax.tree_util.tree_flatten_with_path(tree)[0]:
            flat["/".join(str(p.key) for p in path)] = np.asarray(value, dtype=np.float64)
    return flat


def find(arrays, name):
    hits = [k for k in arrays if k == name or k.endswith("/" + name) or k.endswith("." + name)]
    assert len(hits) == 1, f"{name!r} matches {hits} among {sorted(arrays)}"
    return arrays[hits[0]]


def haiku_layer(layer, seed):
    import haiku as hk

    def forward():
        if layer == "dense":
            hk.Linear(64)(jnp.ones((1, 96)))
        elif layer == "conv":
            hk.Conv2D(32, 3, feature_group_count=2)(jnp.ones((1, 8, 8, 16)))
        elif layer == "conv_transpose":
            hk.Conv2DTranspose(32, 3)(jnp.ones((1, 8, 8, 16)))
        elif layer == "embedding":
            hk.Embed(vocab_size=500, embed_dim=32)(jnp.zeros((1,), jnp.int32))
        elif layer in ("lstm", "gru"):
            core = hk.LSTM(32) if layer == "lstm" else hk.GRU(32)
            core(jnp.ones((1, 24)), core.initial_state(1))
        elif layer == "batchnorm":
            hk.BatchNorm(create_scale=True, create_offset=True, decay_rate=0.9)(jnp.ones((1, 48)), is_training=True)
        else:
            hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(jnp.ones((1, 48)))

    params, _ = hk.transform_with_state(forward).init(jax.random.key(seed))
    return {
        f"{module}/{name}": np.asarray(value, dtype=np.float64)
        for module, values in params.items()
        for name, value in values.items()
    }


BUILD = {
    "torch": lambda layer, seed: (torch.manual_seed(seed), torch_layer(layer))[1],
    "keras": keras_layer,
    "flax": flax_layer,
    "haiku": haiku_layer,
}
CASES = [(fw, layer) for fw in BUILD for layer in DIMS if not (fw == "haiku" and layer == "mha")]


@pytest.mark.parametrize("framework,layer", CASES, ids=[f"{f}-{l}" for f, l in CASES])
def test_registry_matches_real_layers(framework, layer):
    params = layer_defaults(framework, layer, **DIMS[layer])
    first = BUILD[framework](layer, 0)
    assert len(first) == len(params), f"real layer has {sorted(first)}, registry has {sorted(params)}"
    count = max(samples_needed(p.plan(), minimum=1 << 15) for p in params.values())
    builds = [first] + [BUILD[framework](layer, seed) for seed in range(1, min(count, 40))]
    for name, param in params.items():
        draws = [find(b, name) for b in builds]
        assert draws[0].shape == param.shape, f"{name}: real {draws[0].shape} != registry {param.shape}"
        bad = failures(check(draws, param.plan()))
        assert not bad, f"{framework} {layer} {name}: " + "; ".join(map(str, bad))


def test_haiku_dense_std():
    # TruncatedNormal(stddev=1/sqrt(fan_in)) cut at +-2 std without correction: std 0.8796/sqrt(fan_in).
    assert layer_defaults("haiku", "dense", n_in=784, n_out=256)["w"].plan().stats.std == pytest.approx(
        0.8796256610342398 / 28, rel=1e-9
    )


def test_unknown_layer_and_missing_dims():
    with pytest.raises(pi.SpecError, match="unknown layer 'rnn'"):
        layer_defaults("torch", "rnn")
    with pytest.raises(pi.SpecError, match="n_in"):
        layer_defaults("torch", "dense", n_out=3)
    with pytest.raises(pi.SpecError, match="mxnet has no mha"):
        layer_defaults("mxnet", "mha", d_model=8, heads=2)


from flax import nnx

from polyinit import rules as R
from polyinit.defaults import rules_for

NNX = {
    "dense": (lambda rngs: nnx.Linear(96, 64, rngs=rngs), {"kernel": "kernel", "bias": "bias"}),
    "conv": (
        lambda rngs: nnx.Conv(16, 32, (3, 3), feature_group_count=2, rngs=rngs),
        {"kernel": "kernel", "bias": "bias"},
    ),
    "embedding": (lambda rngs: nnx.Embed(500, 32, rngs=rngs), {"embedding": "embedding"}),
    "layernorm": (lambda rngs: nnx.LayerNorm(48, rngs=rngs), {"scale": "scale", "bias": "bias"}),
    "batchnorm": (
        lambda rngs: nnx.BatchNorm(48, rngs=rngs),
        {"scale": "scale", "bias": "bias", "mean": "mean", "var": "var"},
    ),
}


@pytest.mark.parametrize("layer", NNX)
def test_registry_matches_real_nnx_layers(layer):
    make, names = NNX[layer]
    params = layer_defaults("flax", layer, **DIMS[layer])
    for name, param in params.items():
        count = min(40, samples_needed(param.plan(), minimum=1 << 15))
        draws = [np.asarray(getattr(make(nnx.Rngs(seed)), names[name])[...], dtype=np.float64) for seed in range(count)]
        assert draws[0].shape == param.shape
        assert not failures(check(draws, param.plan())), (layer, name)


def test_torch_defaults_on_a_flax_model():
    model = nnx.Linear(784, 256, rngs=nnx.Rngs(0))
    R.apply(model, rules_for("torch", seed=1))
    bound = 1 / 28  # 1/sqrt(784) for the kernel and, from the kernel's fan_in, for the bias
    kernel = np.asarray(model.kernel[...], dtype=np.float64)
    bias = np.asarray(model.bias[...], dtype=np.float64)
    assert not failures(check(kernel, pi.resolve(pi.Uniform(low=-bound, high=bound), kernel.shape)))
    assert np.abs(bias).max() <= bound and bias.std() > bound / 3


def test_keras_defaults_on_a_torch_model():
    model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.BatchNorm1d(256), torch.nn.Conv2d(3, 8, 3))
    report = R.apply(model, rules_for("keras", seed=1))
    weight = model[0].weight.detach().double().numpy()
    assert not failures(check(weight, pi.resolve(pi.glorot_uniform(), (256, 784), pi.OUT_IN)))
    assert torch.all(model[0].bias == 0) and torch.all(model[2].bias == 0)
    assert {r.role for r in report.rows} >= {"weight", "bias", "scale", "offset", "running_mean", "running_var"}


def test_cross_application_unknown_framework():
    with pytest.raises(pi.SpecError, match="haiku"):
        rules_for("haiku")


NNX_CELLS = {
    "nnx.LSTMCell": ("lstm", nnx.LSTMCell),
    "nnx.OptimizedLSTMCell": ("lstm", nnx.OptimizedLSTMCell),
    "nnx.GRUCell": ("gru", nnx.GRUCell),
}


def _nnx_params(module) -> dict:
    """name -> array for an nnx module's parameters, paths joined with '/' (``.value`` dropped)."""
    state = nnx.state(module, nnx.Param)
    flat = {}
    for path, value in jax.tree_util.tree_flatten_with_path(state)[0]:
        keys = [str(getattr(p, "key", getattr(p, "name", p))) for p in path]
        flat["/".join(k for k in keys if k not in (".value", "value"))] = np.asarray(value, dtype=np.float64)
    return flat


@pytest.mark.parametrize("cell", NNX_CELLS)
def test_registry_matches_real_nnx_cells(cell):
    """The nnx recurrent cells as they are: LSTMCell per gate (forget-gate input kernel ``if_``),
    OptimizedLSTMCell and GRUCell fused (one input and one recurrent kernel over all gates)."""
    layer, make = NNX_CELLS[cell]
    params = layer_defaults("flax", layer, n_in=24, hidden=32, cell=cell)
    first = _nnx_params(make(24, 32, rngs=nnx.Rngs(0)))
    assert sorted(first) == sorted(params), f"real cell has {sorted(first)}, registry has {sorted(params)}"
    count = min(40, max(samples_needed(p.plan(), minimum=1 << 15) for p in params.values()))
    builds = [first] + [_nnx_params(make(24, 32, rngs=nnx.Rngs(seed))) for seed in range(1, count)]
    for name, param in params.items():
        draws = [b[name] for b in builds]
        assert draws[0].shape == param.shape
        bad = failures(check(draws, param.plan()))
        assert not bad, f"{cell} {name}: " + "; ".join(map(str, bad))


def test_fused_recurrent_kernel_std():
    # OptimizedLSTMCell 256 -> 256: dense_h/kernel (256, 1024) orthogonal as a whole: std 1/sqrt(1024).
    params = layer_defaults("flax", "lstm", n_in=256, hidden=256, cell="nnx.OptimizedLSTMCell")
    assert params["dense_i/kernel"].shape == (256, 1024)
    assert params["dense_h/kernel"].plan().stats.std == pytest.approx(0.03125, rel=1e-9)
    with pytest.raises(pi.SpecError, match="no cell 'nnx.OptimizedLSTMCell'"):
        layer_defaults("flax", "gru", n_in=4, hidden=4, cell="nnx.OptimizedLSTMCell")
