"""Speed and memory of portable draws against each framework's own generator, in one run.

Prints, for an (N, N) float32 tensor (default N = 8192): the median time of the portable draw and
of the framework's fastest native draw of the same distribution, the portable draw's GB/s and the
ratio portable / native (targets: uniform >= 1 GB/s in numpy and torch; normal within 2x of the
framework's own ``normal_``); then the peak memory of portable draws as a multiple of the output's
bytes (target <= 1.25): the peak resident set of a fresh process minus its resident set just
before the draw. Set POLYINIT_PORTABLE_FUSED=0 to measure the reference ops instead of the fused
kernels.

    python benchmarks/bench_portable.py [--size 8192] [--repeats 3] [--backends numpy,torch,jax]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import polyinit as pi

DISTRIBUTIONS = {
    "uniform": pi.Uniform(low=-1.0, high=1.0),
    "normal": pi.Normal(std=1.0),
    "trunc_normal": pi.TruncatedNormal(std=1.0, low=-2.0, high=2.0, bounds="std"),
}


def numpy_pairs(n: int):
    from polyinit.backends.numpy import draw_portable

    rng = np.random.default_rng(0)
    out = np.empty((n, n), np.float32)
    native = {
        "uniform": lambda: rng.random(out=out, dtype=np.float32),
        "normal": lambda: rng.standard_normal(out=out, dtype=np.float32),
        "trunc_normal": lambda: rng.standard_normal(out=out, dtype=np.float32),  # numpy has none: its normal
    }
    return {name: (native[name], lambda p=pi.resolve(spec, (n, n)): draw_portable(p, 0, "w", out=out))
            for name, spec in DISTRIBUTIONS.items()}


def torch_pairs(n: int):
    import torch

    from polyinit.backends.torch import draw_portable

    out = torch.empty(n, n)
    g = torch.Generator().manual_seed(0)
    native = {
        "uniform": lambda: out.uniform_(-1.0, 1.0, generator=g),
        "normal": lambda: out.normal_(generator=g),
        "trunc_normal": lambda: torch.nn.init.trunc_normal_(out, a=-2.0, b=2.0, generator=g),
    }
    return {name: (native[name], lambda p=pi.resolve(spec, (n, n)): draw_portable(p, 0, "w", out=out))
            for name, spec in DISTRIBUTIONS.items()}


def jax_pairs(n: int):
    import jax

    from polyinit.backends.jax import draw_portable

    key = jax.random.key(0)
    native = {
        "uniform": jax.jit(lambda k: jax.random.uniform(k, (n, n), minval=-1.0, maxval=1.0)),
        "normal": jax.jit(lambda k: jax.random.normal(k, (n, n))),
        "trunc_normal": jax.jit(lambda k: jax.random.truncated_normal(k, -2.0, 2.0, (n, n))),
    }
    pairs = {}
    for name, spec in DISTRIBUTIONS.items():
        plan = pi.resolve(spec, (n, n))
        ours = jax.jit(lambda p=plan: draw_portable(p, 0, "w"))
        pairs[name] = (lambda f=native[name]: f(key).block_until_ready(), lambda f=ours: f().block_until_ready())
    return pairs


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def speed(backends: list[str], n: int, repeats: int) -> dict:
    """Median seconds (native, portable) per (backend, distribution)."""
    nbytes, results = 4 * n * n, {}
    print(f"speed: ({n}, {n}) float32, median of {repeats} alternating runs")
    print(f"{'backend':7} {'distribution':13} {'native s':>9} {'portable s':>10} {'GB/s':>6} {'ratio':>6}")
    for backend in backends:
        for name, (native, ours) in globals()[f"{backend}_pairs"](n).items():
            native(), ours()  # warm up (and compile)
            a, b = [], []
            for _ in range(repeats):
                a.append(timed(native))
                b.append(timed(ours))
            native_s, ours_s = statistics.median(a), statistics.median(b)
            results[backend, name] = native_s, ours_s
            print(f"{backend:7} {name:13} {native_s:9.3f} {ours_s:10.3f} {nbytes / ours_s / 1e9:6.2f} "
                  f"{ours_s / native_s:6.2f}", flush=True)
    return results


def verdicts(results: dict, n: int) -> None:
    """The issue's targets: uniform >= 1 GB/s (numpy, torch), normal within 2x of native."""
    for backend in ("numpy", "torch"):
        if (backend, "uniform") in results:
            rate = 4 * n * n / results[backend, "uniform"][1] / 1e9
            print(f"target {backend} uniform >= 1 GB/s: {rate:.2f} GB/s, {'met' if rate >= 1 else 'MISSED'}")
        if (backend, "normal") in results:
            ratio = results[backend, "normal"][1] / results[backend, "normal"][0]
            print(f"target {backend} normal within 2x of native: {ratio:.2f}x, {'met' if ratio <= 2 else 'MISSED'}")


MEMORY_CHILD = """
import json, sys, polyinit as pi
from polyinit.backends.{backend} import draw_portable
spec = eval({spec!r}, vars(pi))
draw_portable(pi.resolve(spec, (4, 4)), 0, "w")  # imports, compiles
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
before = rss()
out = draw_portable(pi.resolve(spec, ({n}, {n})), 0, "w")
# VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's peak (it survives fork and exec);
# not tracemalloc either, which misses what numba's and torch's allocators take.
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) * 1024
print(json.dumps((peak - before) / (4 * {n} * {n})))
"""
SPECS = {"uniform": "Uniform(low=-1.0, high=1.0)", "normal": "Normal(std=1.0)",
         "trunc_normal": "TruncatedNormal(std=1.0, low=-2.0, high=2.0, bounds='std')"}


def peak_memory(backend: str, n: int) -> dict:
    """Peak resident set of a fresh process's draw, minus its resident set before, / output bytes."""
    ratios = {}
    for name, spec in SPECS.items():
        code = MEMORY_CHILD.format(backend=backend, spec=spec, n=n)
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        ratios[name] = json.loads(out.stdout.strip().splitlines()[-1])
    return ratios


def memory(backends: list[str], n: int) -> None:
    print(f"peak memory of a portable draw / output bytes ({n}, {n}) float32 (target <= 1.25)")
    for backend in ("numpy", "torch"):
        if backend in backends:
            print(f"{backend:7} " + "  ".join(f"{k} {v:.3f}" for k, v in peak_memory(backend, n).items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="numpy,torch", help="also: jax")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    backends = args.backends.split(",")
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    from polyinit.portable import fused

    path = "fused kernels (numba)" if fused.available() else f"reference ops ({fused._unavailable or 'POLYINIT_PORTABLE_FUSED=0'})"
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}; portable path in numpy and torch: {path}")
    if not args.skip_memory:
        memory(backends, args.size)
    verdicts(speed(backends, args.size, args.repeats), args.size)


if __name__ == "__main__":
    main()
