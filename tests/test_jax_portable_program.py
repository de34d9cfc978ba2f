"""One compiled JAX program serves every shape of a distribution (issue 24.3): a portable draw of
a single random leaf computes fixed-size chunks of flat counters in a program shared by every
shape, spec and seed, then cuts and reshapes on the host; the bits are those of every other
backend (numpy's draw is the reference here; tests/test_portable_golden.py pins them)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp

import polyinit as pi
from polyinit.backends.jax import draw_portable, transpose
from polyinit.backends.numpy import draw_portable as numpy_portable
from polyinit.portable import xp_jax

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def counting_compiles():
    """Counts XLA compilations (JAX's own monitoring event) inside the block."""
    count = [0]

    def listener(event, duration, **kwargs):
        if event == COMPILE_EVENT:
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


SPECS = [
    pi.Uniform(low=-0.3, high=0.7),
    pi.Normal(mean=0.1, std=2.0),
    pi.TruncatedNormal(std=0.02, low=-0.04, high=0.04, bounds="absolute"),
    pi.TruncatedNormal(std=1.0, low=0.5, high=4.0, bounds="std"),
]  # mirrored
# Around the chunk size: one element, a partial chunk, exactly one, one more, an odd count over two.
SIZES = [(1,), (3, 5), (xp_jax.SHARED_CHUNK,), (xp_jax.SHARED_CHUNK + 1,), (3, 7, 3121)]


def same_bits(a, b) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind + ("_mirrored" if getattr(s, "low", 0) == 0.5 else ""))
def test_shared_program_gives_every_backends_bits(spec):
    for shape in SIZES:
        plan = pi.resolve(spec, shape)
        assert same_bits(draw_portable(plan, 9, "layer.w"), numpy_portable(plan, 9, "layer.w")), shape


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_shared_program_casts_as_the_other_backends(dtype):
    import ml_dtypes  # noqa: F401  (numpy's bfloat16)

    plan = pi.resolve(pi.Normal(std=1.0), (17, 33), None, dtype)
    reference = numpy_portable(plan, 4, 2)
    assert same_bits(np.asarray(draw_portable(plan, 4, 2)), reference)


def other_numbers(i: int) -> list:
    return [
        pi.Uniform(low=-1.0 - i, high=0.5 + i),
        pi.Normal(mean=0.5 * i, std=1.0 + i),
        pi.TruncatedNormal(std=0.1 + i, low=-2.0 - i, high=1.5, bounds="std"),
        pi.TruncatedNormal(std=1.0, low=-1.0, high=3.0 + i, bounds="std"),
    ]


def test_new_shapes_numbers_and_seeds_compile_nothing():
    for spec in SPECS:  # the first draw of each distribution may compile its program
        draw_portable(pi.resolve(spec, (2, 2)), 0, "warm")
    with counting_compiles() as compiles:
        for i, shape in enumerate([(5, 7), (129, 3), (2, 3, 4), (1000,)]):
            for spec in other_numbers(i):
                draw_portable(pi.resolve(spec, shape), i, f"p{i}").block_until_ready()
    assert compiles[0] == 0


def test_larger_leaves_and_composites_take_their_own_program_with_the_same_bits(monkeypatch):
    monkeypatch.setattr(xp_jax, "SHARED_LIMIT", 100)
    plan = pi.resolve(pi.Normal(std=0.5), (30, 40))
    assert same_bits(draw_portable(plan, 1, "w"), numpy_portable(plan, 1, "w"))
    composite = pi.resolve(pi.Normal(std=1.0) * 0.5 + pi.Uniform(low=-1.0, high=1.0), (7, 9))
    assert same_bits(draw_portable(composite, 1, "w"), numpy_portable(composite, 1, "w"))


def test_inside_a_users_jit_each_element_comes_from_its_index():
    plan = pi.resolve(pi.TruncatedNormal(std=1.0, low=-1.0, high=3.0, bounds="std"), (6, 10))
    jitted = jax.jit(lambda: draw_portable(plan, 3, "w"))()
    assert same_bits(jitted, numpy_portable(plan, 3, "w"))


def test_host_transpose_equals_jnp_transpose_and_compiles_nothing():
    array = draw_portable(pi.resolve(pi.Normal(std=1.0), (3, 4, 5)), 0, "t")
    expected = np.transpose(np.asarray(array), (2, 0, 1))
    with counting_compiles() as compiles:
        moved = transpose(array, (2, 0, 1))
    assert compiles[0] == 0
    assert isinstance(moved, jax.Array) and moved.devices() == array.devices()
    assert same_bits(moved, expected)
    traced = jax.jit(lambda x: transpose(x, (1, 0)))(jnp.arange(6.0).reshape(2, 3))
    assert same_bits(traced, np.arange(6.0, dtype=np.float32).reshape(2, 3).T)
