"""Fill a (8192, 8192) float32 tensor with each scheme through polyinit and through the
framework's own twin, alternating, in the same process; print the median time of each and the
ratio polyinit / native per scheme per backend (target: <= 1.05).

    python benchmarks/bench_fill.py [--size 8192] [--repeats 5] [--backends torch,jax,keras,numpy,mxnet]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import polyinit as pi
from polyinit import native


def torch_pairs(n):
    import torch

    from polyinit.backends.torch import initializer

    t = torch.empty(n, n)
    g = torch.Generator().manual_seed(0)
    pairs = {
        "glorot_uniform": (lambda: torch.nn.init.xavier_uniform_(t, generator=g), initializer(pi.glorot_uniform())),
        "he_normal": (lambda: torch.nn.init.kaiming_normal_(t, generator=g), initializer(pi.he_normal())),
        "trunc_normal(0.02)": (
            lambda: torch.nn.init.trunc_normal_(t, std=0.02, generator=g),
            initializer(native.torch_trunc_normal(0.0, 0.02)),
        ),
        "torch_linear_default": (
            lambda: torch.nn.init.kaiming_uniform_(t, a=5**0.5, generator=g),
            initializer(pi.he_uniform(a=5**0.5)),
        ),
    }
    return {name: (native_fn, lambda fn=fn: fn(t, generator=g)) for name, (native_fn, fn) in pairs.items()}


def jax_pairs(n):
    import jax

    from polyinit.backends.jax import initializer

    key = jax.random.key(0)
    shape = (n, n)
    inits = jax.nn.initializers
    pairs = {
        "glorot_uniform": (inits.glorot_uniform(), initializer(pi.glorot_uniform())),
        "he_normal(truncated)": (inits.he_normal(), initializer(pi.he_normal(truncated=True))),
        "normal(0.02)": (inits.normal(0.02), initializer(native.jax_normal(0.02))),
        "uniform(0.01)": (inits.uniform(0.01), initializer(native.jax_uniform(0.01))),
    }
    out = {}
    for name, (theirs, ours) in pairs.items():
        a = jax.jit(lambda k, f=theirs: f(k, shape))
        b = jax.jit(lambda k, f=ours: f(k, shape))
        a(key).block_until_ready(), b(key).block_until_ready()  # compile outside the timing
        out[name] = (lambda f=a: f(key).block_until_ready(), lambda f=b: f(key).block_until_ready())
    return out


def keras_pairs(n):
    import keras

    from polyinit.backends.keras import Initializer

    shape = (n, n)
    pairs = {
        "glorot_uniform": (keras.initializers.GlorotUniform(seed=0), Initializer(pi.glorot_uniform(), seed=0)),
        "he_normal(truncated)": (keras.initializers.HeNormal(seed=0), Initializer(native.keras_he_normal(), seed=0)),
        "random_normal": (keras.initializers.RandomNormal(seed=0), Initializer(native.keras_random_normal(), seed=0)),
    }
    return {
        name: (lambda f=a: keras.ops.convert_to_numpy(f(shape)), lambda f=b: keras.ops.convert_to_numpy(f(shape)))
        for name, (a, b) in pairs.items()
    }


def numpy_pairs(n):
    import numpy as np

    from polyinit.backends.numpy import draw

    rng = np.random.default_rng(0)
    bound = (6 / (2 * n)) ** 0.5
    plan = pi.resolve(pi.glorot_uniform(), (n, n), pi.OUT_IN)
    normal = pi.resolve(pi.he_normal(), (n, n), pi.OUT_IN)
    return {
        "glorot_uniform": (lambda: rng.uniform(-bound, bound, (n, n)).astype(np.float32), lambda: draw(plan, rng)),
        "he_normal": (lambda: rng.normal(0.0, (2 / n) ** 0.5, (n, n)).astype(np.float32), lambda: draw(normal, rng)),
    }


def mxnet_pairs(n):
    import mxnet as mx

    from polyinit.backends.mxnet import Polyinit

    arr = mx.nd.zeros((n, n))
    pairs = {
        "uniform(0.07)": (mx.init.Uniform(0.07), Polyinit(native.mxnet_uniform(0.07), seed=0)),
        "xavier": (mx.init.Xavier(), Polyinit(native.mxnet_xavier(), seed=0)),
    }
    return {
        name: (
            lambda f=a: (f("w_weight", arr), arr.wait_to_read()),
            lambda f=b: (f("w_weight", arr), arr.wait_to_read()),
        )
        for name, (a, b) in pairs.items()
    }


BACKENDS = {"torch": torch_pairs, "jax": jax_pairs, "keras": keras_pairs, "numpy": numpy_pairs, "mxnet": mxnet_pairs}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default="torch,jax,keras", help="also: numpy (reference), mxnet (in .venv-mxnet)")
    args = parser.parse_args()
    print(f"fill ({args.size}, {args.size}) float32, median of {args.repeats} alternating runs")
    print(f"{'backend':8} {'scheme':24} {'native s':>9} {'polyinit s':>10} {'ratio':>6}")
    for backend in args.backends.split(","):
        for name, (theirs, ours) in BACKENDS[backend](args.size).items():
            theirs(), ours()  # warm up
            a, b = [], []
            for _ in range(args.repeats):
                a.append(timed(theirs))
                b.append(timed(ours))
            native_s, ours_s = statistics.median(a), statistics.median(b)
            print(f"{backend:8} {name:24} {native_s:9.3f} {ours_s:10.3f} {ours_s / native_s:6.2f}", flush=True)


if __name__ == "__main__":
    main()
