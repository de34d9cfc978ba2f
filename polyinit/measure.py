"""Push a standard-normal batch through a stack of a framework's real layers, built with the
framework's own defaults, and record Var of each layer's output (for ``polyinit compare``).

The stacks are the ones ``polyinit.propagation`` describes: layer 1 n_in -> n_out, later layers
n_out -> n_out, the activation between layers; conv layers use 'valid' padding on an input large
enough that the last layer still has 4 outputs per axis, and a transposed conv's output is cropped
to the positions that see a full kernel, so borders never enter; recurrent layers run one time step
from the zero state; batchnorm uses batch statistics (training mode); an embedding is followed by
the framework's dense layers.

Randomness is explicit and the caller's global generators are left as they were: torch and MXNet
layers are built inside a saved-and-restored global state, Keras layers take their seeds from
Python's ``random`` (saved and restored), Flax from ``nnx.Rngs(seed)``, Haiku from a key.
MXNet has no way to read its global generator's state back, so an MXNet measurement reseeds it.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np

REPEATS = 4
TOKENS = 16


@dataclass
class Measured:
    linear: list[float]  # Var after each layer, linear stack, mean over REPEATS networks
    activated: list[float]  # the same with the activation between layers
    weight: list[float]  # first layer's first weight (<= 20000 values) and bias, for the picture
    bias: list[float]


@dataclass(frozen=True)
class Setup:
    kind: str
    n_in: int
    n_out: int
    depth: int
    kernel: int
    heads: int
    activation: str

    @property
    def rank(self) -> int:
        return {"conv1d": 1, "conv2d": 2, "conv3d": 3, "conv_transpose": 2}.get(self.kind, 0)


def inputs(setup: Setup, seed: int) -> np.ndarray:
    """float32 standard normals shaped for the stack (channels last), or int indices for embedding."""
    rng = np.random.default_rng(seed)
    if setup.kind == "embedding":
        return rng.integers(0, setup.n_in, size=1024)
    if setup.kind == "mha":
        return rng.standard_normal((64, TOKENS, setup.n_in)).astype(np.float32)
    if setup.kind in ("lstm", "gru"):
        return rng.standard_normal((1024, 1, setup.n_in)).astype(np.float32)
    if setup.rank:
        side = 4 + setup.depth * (setup.kernel - 1)
        batch = max(1, min(16, (1 << 21) // (side ** setup.rank * setup.n_in)))
        return rng.standard_normal((batch,) + (side,) * setup.rank + (setup.n_in,)).astype(np.float32)
    return rng.standard_normal((1024, setup.n_in)).astype(np.float32)


def _widths(setup: Setup, index: int) -> tuple[int, int]:
    if setup.kind in ("batchnorm", "layernorm", "mha"):
        return setup.n_in, setup.n_in
    return (setup.n_in if index == 0 else setup.n_out), setup.n_out


def _crop(k: int, rank: int) -> tuple:
    """Channels-last slices keeping the positions a stride-1 transposed conv fed a full kernel."""
    return (slice(None),) + (slice(k - 1, -(k - 1) if k > 1 else None),) * rank + (slice(None),)


def _first_arrays(arrays: list[np.ndarray]) -> tuple[list[float], list[float]]:
    weight = next((a for a in arrays if a.ndim >= 2), np.zeros(0))
    bias = next((a for a in arrays if a.ndim == 1), np.zeros(0))
    return [float(v) for v in weight.ravel()[:20000]], [float(v) for v in bias.ravel()[:20000]]


def _stack(layers: list[Callable], x: Any, phi: Callable, to_numpy: Callable) -> list[float]:
    out, y = [], x
    for index, call in enumerate(layers):
        y = call(y if index == 0 else phi(y))
        out.append(float(np.var(to_numpy(y).astype(np.float64))))
    return out


@contextlib.contextmanager
def python_random(seed: int) -> Iterator[None]:
    """Python's global ``random`` seeded for the block and restored after it."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


# --- torch ---------------------------------------------------------------------------------------

def _torch(setup: Setup, seed: int, x: np.ndarray):
    import torch
    from torch import nn
    from torch.nn import functional as F

    acts = {"linear": lambda t: t, "relu": torch.relu, "tanh": torch.tanh, "gelu": F.gelu, "silu": F.silu,
            "sigmoid": torch.sigmoid}
    k, rank = setup.kernel, setup.rank

    def make(index: int) -> tuple[nn.Module, Callable]:
        i, o = _widths(setup, index)
        kind = "dense" if setup.kind == "embedding" and index else setup.kind
        if kind == "dense":
            m = nn.Linear(i, o)
            return m, m
        if kind.startswith("conv"):
            if kind == "conv_transpose":
                m = nn.ConvTranspose2d(i, o, k)
                return m, lambda t: m(t)[(slice(None), slice(None)) + _crop(k, rank)[1:-1]]
            m = getattr(nn, f"Conv{rank}d")(i, o, k)
            return m, m
        if kind == "embedding":
            m = nn.Embedding(i, o)
            return m, m
        if kind in ("lstm", "gru"):
            m = (nn.LSTM if kind == "lstm" else nn.GRU)(i, o, batch_first=True)
            return m, lambda t: m(t)[0]
        if kind == "batchnorm":
            m = nn.BatchNorm1d(i)  # a fresh module is in training mode: batch statistics
            return m, m
        if kind == "layernorm":
            m = nn.LayerNorm(i)
            return m, m
        m = nn.MultiheadAttention(i, setup.heads, batch_first=True)
        return m, lambda t: m(t, t, t, need_weights=False)[0]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        built = [make(index) for index in range(setup.depth)]
    data = torch.from_numpy(np.moveaxis(x, -1, 1).copy() if rank else x)
    calls = [call for _, call in built]
    with torch.no_grad():
        linear = _stack(calls, data, acts["linear"], lambda t: t.numpy())
        activated = _stack(calls, data, acts[setup.activation], lambda t: t.numpy())
    return linear, activated, [p.detach().numpy() for p in built[0][0].parameters()]


# --- keras ---------------------------------------------------------------------------------------

def _keras(setup: Setup, seed: int, x: np.ndarray):
    import keras
    from keras import layers as L
    from keras import ops

    acts = {"linear": lambda t: t, "relu": ops.relu, "tanh": ops.tanh,
            "gelu": lambda t: ops.gelu(t, approximate=False), "silu": ops.silu, "sigmoid": ops.sigmoid}
    k, rank = setup.kernel, setup.rank

    def make(index: int) -> tuple[Any, Callable]:
        i, o = _widths(setup, index)
        kind = "dense" if setup.kind == "embedding" and index else setup.kind
        if kind == "dense":
            m = L.Dense(o)
        elif kind == "conv_transpose":
            m = L.Conv2DTranspose(o, k)
            return m, lambda t: m(t)[_crop(k, rank)]
        elif kind.startswith("conv"):
            m = getattr(L, f"Conv{rank}D")(o, k)
        elif kind == "embedding":
            m = L.Embedding(i, o)
        elif kind in ("lstm", "gru"):
            m = (L.LSTM if kind == "lstm" else L.GRU)(o, return_sequences=True)
        elif kind == "batchnorm":
            m = L.BatchNormalization()
            return m, lambda t: m(t, training=True)
        elif kind == "layernorm":
            m = L.LayerNormalization()
        else:
            m = L.MultiHeadAttention(num_heads=setup.heads, key_dim=i // setup.heads)
            return m, lambda t: m(t, t)
        return m, m

    # Keras's unseeded initializers take their seeds from Python's random when the layer builds.
    with python_random(seed):
        built = [make(index) for index in range(setup.depth)]
        calls = [call for _, call in built]
        linear = _stack(calls, x, acts["linear"], keras.ops.convert_to_numpy)
    activated = _stack(calls, x, acts[setup.activation], keras.ops.convert_to_numpy)
    return linear, activated, [keras.ops.convert_to_numpy(w) for w in built[0][0].weights]


# --- flax nnx ------------------------------------------------------------------------------------

def _flax(setup: Setup, seed: int, x: np.ndarray):
    import jax
    import jax.numpy as jnp
    from flax import nnx

    acts = {"linear": lambda t: t, "relu": jax.nn.relu, "tanh": jnp.tanh,
            "gelu": lambda t: jax.nn.gelu(t, approximate=False), "silu": jax.nn.silu, "sigmoid": jax.nn.sigmoid}
    k, rank = setup.kernel, setup.rank
    rngs = nnx.Rngs(seed)

    def make(index: int) -> tuple[Any, str]:
        i, o = _widths(setup, index)
        kind = "dense" if setup.kind == "embedding" and index else setup.kind
        if kind == "dense":
            return nnx.Linear(i, o, rngs=rngs), "plain"
        if kind == "conv_transpose":
            return nnx.ConvTranspose(i, o, (k, k), padding="VALID", rngs=rngs), "crop"
        if kind.startswith("conv"):
            return nnx.Conv(i, o, (k,) * rank, padding="VALID", rngs=rngs), "plain"
        if kind == "embedding":
            return nnx.Embed(i, o, rngs=rngs), "plain"
        if kind in ("lstm", "gru"):
            return (nnx.LSTMCell if kind == "lstm" else nnx.GRUCell)(i, o, rngs=rngs), "cell"
        if kind == "batchnorm":
            return nnx.BatchNorm(i, use_running_average=False, rngs=rngs), "plain"
        if kind == "layernorm":
            return nnx.LayerNorm(i, rngs=rngs), "plain"
        return nnx.MultiHeadAttention(num_heads=setup.heads, in_features=i, decode=False, rngs=rngs), "plain"

    apply = _flax_apply()
    built = [make(index) for index in range(setup.depth)]
    calls = []
    for module, how in built:
        graphdef, state = nnx.split(module)
        calls.append(lambda t, g=graphdef, s=state, how=how: apply(g, how, k, s, t))
    data = jnp.asarray(x)
    linear = _stack(calls, data, acts["linear"], np.asarray)
    activated = _stack(calls, data, acts[setup.activation], np.asarray)
    leaves = jax.tree_util.tree_leaves(nnx.state(built[0][0], nnx.Param))
    return linear, activated, [np.asarray(leaf) for leaf in leaves]


_FLAX_APPLY: list = []


def _flax_apply():
    """One jitted call per layer structure (graphdef) and shape: eager nnx cells compile every
    small op on first use, which made one LSTM measurement take 20 s."""
    if not _FLAX_APPLY:
        import jax
        from flax import nnx

        def apply(graphdef, how, k, state, t):
            module = nnx.merge(graphdef, state)
            if how == "cell":  # one step from the zero carry (the default carry_init)
                carry = module.initialize_carry((t.shape[0], t.shape[-1]), nnx.Rngs(0))
                return module(carry, t[:, 0])[1][:, None]
            y = module(t)
            return y[_crop(k, 2)] if how == "crop" else y

        _FLAX_APPLY.append(jax.jit(apply, static_argnums=(0, 1, 2)))
    return _FLAX_APPLY[0]


# --- dm-haiku ------------------------------------------------------------------------------------

def _haiku(setup: Setup, seed: int, x: np.ndarray):
    import haiku as hk
    import jax
    import jax.numpy as jnp

    acts = {"linear": lambda t: t, "relu": jax.nn.relu, "tanh": jnp.tanh,
            "gelu": lambda t: jax.nn.gelu(t, approximate=False), "silu": jax.nn.silu, "sigmoid": jax.nn.sigmoid}
    k, rank = setup.kernel, setup.rank

    def layer(index: int) -> Callable:
        i, o = _widths(setup, index)
        kind = "dense" if setup.kind == "embedding" and index else setup.kind
        if kind == "dense":
            return hk.Linear(o)
        if kind == "conv_transpose":
            m = hk.Conv2DTranspose(o, k, padding="VALID")
            return lambda t: m(t)[_crop(k, rank)]
        if kind.startswith("conv"):
            return getattr(hk, f"Conv{rank}D")(o, k, padding="VALID")
        if kind == "embedding":
            return hk.Embed(vocab_size=i, embed_dim=o)
        if kind in ("lstm", "gru"):
            core = hk.LSTM(o) if kind == "lstm" else hk.GRU(o)
            return lambda t: core(t[:, 0], core.initial_state(t.shape[0]))[0][:, None]
        if kind == "batchnorm":
            m = hk.BatchNorm(create_scale=True, create_offset=True, decay_rate=0.9)
            return lambda t: m(t, is_training=True)
        return hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)

    def forward(name: str):
        def run(t):
            outs, y = [], t
            for index in range(setup.depth):
                y = layer(index)(y if index == 0 else acts[name](y))
                outs.append(y)
            return outs
        return hk.transform_with_state(run)

    data = jnp.asarray(x)
    params, state = forward("linear").init(jax.random.key(seed), data)
    results = []
    for name in ("linear", setup.activation):
        outs, _ = forward(name).apply(params, state, None, data)
        results.append([float(np.var(np.asarray(y, dtype=np.float64))) for y in outs])
    first = params[sorted(params, key=lambda m: (len(m), m))[0]]
    return results[0], results[1], [np.asarray(v) for v in first.values()]


# --- MXNet Gluon ---------------------------------------------------------------------------------

def _mxnet(setup: Setup, seed: int, x: np.ndarray):
    import mxnet as mx
    from mxnet.gluon import nn, rnn

    acts = {"linear": lambda t: t, "relu": mx.nd.relu, "tanh": mx.nd.tanh,
            "gelu": lambda t: mx.nd.LeakyReLU(t, act_type="gelu"), "silu": lambda t: t * mx.nd.sigmoid(t),
            "sigmoid": mx.nd.sigmoid}
    k, rank = setup.kernel, setup.rank

    def make(index: int) -> tuple[Any, Callable]:
        i, o = _widths(setup, index)
        kind = "dense" if setup.kind == "embedding" and index else setup.kind
        if kind == "dense":
            m = nn.Dense(o, in_units=i)
        elif kind == "conv_transpose":
            m = nn.Conv2DTranspose(o, k, in_channels=i)
            m.initialize()
            return m, lambda t: m(t)[(slice(None), slice(None)) + _crop(k, rank)[1:-1]]
        elif kind.startswith("conv"):
            m = getattr(nn, f"Conv{rank}D")(o, k, in_channels=i)
        elif kind == "embedding":
            m = nn.Embedding(i, o)
        elif kind in ("lstm", "gru"):
            m = (rnn.LSTM if kind == "lstm" else rnn.GRU)(o, input_size=i, layout="NTC")
        elif kind == "batchnorm":
            m = nn.BatchNorm(in_channels=i)
            m.initialize()

            def train(t, m=m):
                with mx.autograd.train_mode():
                    return m(t)
            return m, train
        else:
            m = nn.LayerNorm(in_channels=i)
        m.initialize()  # Gluon's own default
        return m, m

    mx.random.seed(seed)  # MXNet cannot give its global state back; documented in the module
    built = [make(index) for index in range(setup.depth)]
    calls = [call for _, call in built]
    data = mx.nd.array(np.moveaxis(x, -1, 1) if rank else x)
    linear = _stack(calls, data, acts["linear"], lambda a: a.asnumpy())
    activated = _stack(calls, data, acts[setup.activation], lambda a: a.asnumpy())
    return linear, activated, [p.data().asnumpy() for p in built[0][0].collect_params().values()]


MEASURERS: dict[str, Callable] = {"torch": _torch, "keras": _keras, "flax": _flax, "haiku": _haiku, "mxnet": _mxnet}
MODULES = {"torch": "torch", "keras": "keras", "flax": "flax.nnx", "haiku": "haiku", "mxnet": "mxnet"}


def measure(framework: str, setup: Setup, seed: int = 0) -> Optional[Measured]:
    """Var per layer (linear and activated stacks, mean over REPEATS networks from seeds seed,
    seed + 1, ...) and the first network's first weight and bias; None without a measurer."""
    if framework not in MEASURERS:
        return None
    runs = [MEASURERS[framework](setup, seed + r, inputs(setup, seed + r)) for r in range(REPEATS)]
    weight, bias = _first_arrays(runs[0][2])
    return Measured(np.mean([r[0] for r in runs], axis=0).tolist(), np.mean([r[1] for r in runs], axis=0).tolist(),
                    weight, bias)
