"""Bit-identity of portable draws at scale: 10^8 values per distribution (default), drawn by
numpy (also the MXNet backend's path), torch (also Keras on torch), JAX under jit (also Keras on
JAX) and TensorFlow (Keras on TensorFlow), compared bit for bit; prints the number of differing
values per framework (expected: 0) and the time each took. numpy and torch draw through the
fused kernels where numba is installed; numpy_ops and torch_ops through the frameworks' own ops.

    python benchmarks/bench_portable_identity.py [--values 100000000]
        [--frameworks numpy,torch,numpy_ops,torch_ops,jax,tensorflow]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import polyinit as pi
from polyinit.portable import evaluate, stream_key

DISTRIBUTIONS = {
    "uniform": pi.Uniform(low=-0.3, high=0.7),
    "normal": pi.Normal(mean=0.1, std=2.0),
    "truncated_std": pi.TruncatedNormal(std=1.0, low=-2.0, high=2.0, bounds="std"),
    "truncated_torch": pi.TruncatedNormal(std=0.02, low=-2.0, high=2.0, bounds="absolute"),
    "he_normal_truncated": pi.he_normal(truncated=True),
}
SPAN = 1 << 22  # TensorFlow evaluates whole arrays: it is fed spans of the flat index


def _shape(values: int) -> tuple[int, int]:
    rows = int(values**0.5)
    return rows, values // rows


def numpy_draw(plan, key):
    from polyinit.backends.numpy import draw_portable

    return draw_portable(plan, 7, key)


def torch_draw(plan, key):
    from polyinit.backends.torch import draw_portable

    return draw_portable(plan, 7, key).numpy()


def numpy_ops_draw(plan, key):
    """numpy's own ops throughout (the reference path), where numpy_draw uses the fused kernels."""
    from polyinit.portable.xp_numpy import Ops

    return evaluate.draw(Ops(use_fused=False), plan, 7, key)


def torch_ops_draw(plan, key):
    from polyinit.portable.xp_torch import Ops

    return evaluate.draw(Ops(use_fused=False), plan, 7, key).numpy()


def jax_draw(plan, key):
    import jax

    from polyinit.backends.jax import draw_portable

    return np.asarray(jax.jit(lambda: draw_portable(plan, 7, key))())


def tensorflow_draw(plan, key):
    from polyinit.portable.xp_tensorflow import Ops

    ops, stream, out = Ops(), stream_key(7, key), np.empty(plan.size, np.float32)
    for start in range(0, plan.size, SPAN):
        stop = min(start + SPAN, plan.size)
        out[start:stop] = evaluate.evaluate_span(ops, plan, stream, start, stop).numpy()
    return out.reshape(plan.shape)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--values", type=float, default=1e8)
    parser.add_argument("--frameworks", default="numpy,torch,numpy_ops,torch_ops,jax,tensorflow")
    parser.add_argument("--distributions", default=",".join(DISTRIBUTIONS))
    args = parser.parse_args()
    shape = _shape(int(args.values))
    frameworks = args.frameworks.split(",")
    from polyinit.portable import fused

    print(
        f"portable draws of {shape[0] * shape[1]:,} values {shape}; differing values vs numpy "
        f"({'fused kernels' if fused.available() else 'numpy ops'})"
    )
    total = 0
    for name in args.distributions.split(","):
        plan = pi.resolve(DISTRIBUTIONS[name], shape, pi.OUT_IN)
        start = time.perf_counter()
        reference = numpy_draw(plan, f"bench.{name}").view(np.uint32)
        line = [f"{name:20} numpy {time.perf_counter() - start:6.1f}s"]
        for framework in frameworks:
            if framework == "numpy":
                continue
            start = time.perf_counter()
            values = np.ascontiguousarray(globals()[f"{framework}_draw"](plan, f"bench.{name}"), np.float32)
            differing = int(np.count_nonzero(values.view(np.uint32) != reference))
            total += differing
            line.append(f"{framework} {differing} ({time.perf_counter() - start:.1f}s)")
            del values
        print("  ".join(line), flush=True)
    print(f"total differing values: {total}")


if __name__ == "__main__":
    main()
