"""No public call changes global random state: numpy's legacy global RNG, Python's ``random``,
torch's default generator, TensorFlow's global seed/op-seed stream and global generator, Keras's
global seed generator, and JAX's config are snapshotted around every public call of every backend
and of the specs and ``resolve``, and must be unchanged.

The one deliberate exception is torch's ``generator=None``, which draws from torch's global
generator exactly as ``torch.nn.init`` does (so ``torch.manual_seed`` makes it reproducible); a
test below pins that this is the only state it touches.
"""

import pickle
import random
import sys

import numpy as np
import pytest

import polyinit as pi
from polyinit import native

SPECS = [
    pi.glorot_uniform(),
    pi.he_normal(truncated=True),
    pi.Orthogonal(gain=2.0),
    pi.Sparse(sparsity=0.5),
    pi.Identity(),
    pi.lstm_bias(),
    pi.where(abs(pi.Normal()) < 1.0, pi.Normal(), 0.0),
    pi.Uniform(low=-1.0, high=1.0) + pi.Uniform(low=-1.0, high=1.0, stream=1),
]


def snapshot() -> dict:
    """Every global random state this process has, read without creating any."""
    state = {"numpy": pickle.dumps(np.random.get_state()), "python": random.getstate()}
    if "torch" in sys.modules:
        import torch

        state["torch"] = torch.random.get_rng_state().numpy().tobytes()
    if "tensorflow" in sys.modules:
        from tensorflow.python.eager import context
        from tensorflow.python.ops import stateful_random_ops

        ctx = context.context()
        rng = getattr(ctx, "_rng", None)
        generator = stateful_random_ops.global_generator
        state["tensorflow"] = (
            ctx._seed,
            rng.getstate() if rng is not None else None,
            None if generator is None else generator.state.numpy().tobytes(),
        )
    if "keras" in sys.modules:
        from keras.src.backend.common import global_state

        generator = global_state.get_global_attribute("global_seed_generator")
        state["keras"] = None if generator is None else np.asarray(generator.state.value).tobytes()
    if "jax" in sys.modules:
        import jax

        state["jax"] = pickle.dumps(
            {k: v for k, v in jax.config.values.items() if isinstance(v, (bool, int, float, str, type(None)))}
        )
    return state


def _spec_calls():
    for spec in SPECS:
        plan = pi.resolve(spec, (8, 6), pi.OUT_IN)
        _ = (plan.stats, plan.describe(), pi.from_json(pi.to_json(spec)), plan.flat(16))
    pi.schemes.glorot_normal(truncated=True)
    native.mxnet_xavier("gaussian", "in", 2.0)
    native.keras_variance_scaling(2.0, "fan_in", "normal")
    pi.calculate_gain("leaky_relu", 0.2)
    with pytest.raises(pi.PolyinitError):
        pi.resolve(pi.Normal() / 0, (3,))


def _numpy_calls(backend):
    for spec in SPECS:
        backend.sample(spec, (8, 6), rng=np.random.default_rng(0), layout=pi.OUT_IN)
        backend.sample_plan(pi.resolve(spec, (8, 6), pi.OUT_IN), 1)


def _torch_calls(backend):
    import torch

    for spec in SPECS:
        generator = torch.Generator().manual_seed(0)
        backend.initializer(spec)(torch.empty(8, 6), generator)
        backend.init_(torch.empty(8, 6, dtype=torch.float16), spec, "out in", generator)
        backend.draw_into(torch.empty(8, 6), backend.plan_for(torch.empty(8, 6), spec), generator)
        backend.sample_plan(pi.resolve(spec, (8, 6), pi.OUT_IN), 1)


def _keras_calls(backend):
    import keras

    for spec in SPECS:
        backend.Initializer(spec, seed=0)((6, 8))
        # seed=None draws from Keras's global seed generator, as keras.random does unseeded (it
        # follows keras.utils.set_random_seed): tests/test_keras_seeding.py checks what it changes.
        seeded = backend.Initializer(spec, seed=5)
        seeded((6, 8), "float16")
        clone = backend.Initializer.from_config(seeded.get_config())
        clone((6, 8))
        own = keras.random.SeedGenerator(3)  # the user's generator advances, no global one
        backend.Initializer(spec, seed=own)((6, 8))
        backend.sample_plan(pi.resolve(spec, (6, 8), pi.IN_OUT), 1)


def _jax_calls(backend):
    import jax

    for spec in SPECS:
        backend.initializer(spec)(jax.random.key(0), (6, 8))
        backend.initializer(spec, "in out")(jax.random.PRNGKey(1), (6, 8), "bfloat16")
        jax.jit(backend.initializer(spec), static_argnums=(1,))(jax.random.key(2), (6, 8))
        backend.sample_plan(pi.resolve(spec, (6, 8), pi.IN_OUT), 1)


def _mxnet_calls(backend):
    for spec in SPECS:
        weight = np.empty((8, 6), np.float32)
        backend.Polyinit(spec, seed=0)("dense0_weight", weight)
        unseeded = backend.Polyinit(spec)
        unseeded("dense0_weight", weight)
        unseeded("dense0_bias", np.empty(8, np.float32))
        unseeded.dumps()
        backend.sample_plan(pi.resolve(spec, (8, 6), pi.OUT_IN), 1)


CALLS = {"numpy": _numpy_calls, "torch": _torch_calls, "keras": _keras_calls, "jax": _jax_calls, "mxnet": _mxnet_calls}


def _seed_everything():
    # Global states that exist and are seeded, so a change cannot hide behind "not created yet".
    np.random.seed(1234)
    random.seed(1234)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(1234)


def test_specs_and_resolve_leave_global_rng_alone():
    _seed_everything()
    before = snapshot()
    _spec_calls()
    assert snapshot() == before


def test_backend_calls_leave_global_rng_alone(backend):
    _seed_everything()
    before = snapshot()
    CALLS[backend.NAME](backend)
    after = snapshot()
    changed = [name for name in before if before[name] != after.get(name)]
    assert not changed, f"{backend.NAME} changed global random state: {changed}"


def test_torch_without_generator_uses_torchs_global_generator_like_torch_nn_init():
    torch = pytest.importorskip("torch")
    from polyinit.backends import torch as torch_backend

    _seed_everything()
    before = snapshot()
    ours = torch_backend.init_(torch.empty(5), pi.Normal())
    after = snapshot()
    assert [k for k in before if before[k] != after[k]] == ["torch"]
    torch.manual_seed(1234)
    assert torch.equal(ours, torch.nn.init.normal_(torch.empty(5)))  # same stream, same values
