"""Speed and memory of portable draws against each framework's own generator, in one run.

Prints, for an (N, N) float32 tensor (default N = 8192): the best time of ``--repeats`` alternating runs (timeit's
rule: interference from other processes only ever adds time, so the minimum is what the code can do;
the median scaling is printed beside it) of the framework's
fastest native draw of the same distribution, of the portable draw on every core (``fused.threads()``)
and on one (``POLYINIT_NUM_THREADS=1``), the portable draw's GB/s, the speed-up over native
(native s / portable s, alternating) and the scaling (one thread s / every core s, alternating
with no native call between, since a framework's OpenMP pool keeps spinning after its own fill). First, the fused kernel
alone: CPU ns per element on one thread, scaling with and without non-temporal stores, and the
machine's ceiling (the one-thread fill in one process per core at once). Targets (issue 24): scaling
>= 1.8 on 2 cores; uniform and normal >= 2x the native draw in numpy and torch. Then the peak memory of portable draws as a multiple of the output's
bytes (target <= 1.25): the peak resident set of a fresh process minus its resident set just
before the draw. Set POLYINIT_PORTABLE_FUSED=0 to measure the reference ops instead of the fused
kernels.

    python benchmarks/bench_portable.py [--size 8192] [--repeats 7] [--backends numpy,torch,jax]
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
    return {
        name: (native[name], lambda p=pi.resolve(spec, (n, n)): draw_portable(p, 0, "w", out=out))
        for name, spec in DISTRIBUTIONS.items()
    }


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
    return {
        name: (native[name], lambda p=pi.resolve(spec, (n, n)): draw_portable(p, 0, "w", out=out))
        for name, spec in DISTRIBUTIONS.items()
    }


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


def one_thread(fn):
    """``fn`` run with POLYINIT_NUM_THREADS=1 (the fused fill reads it on every call)."""

    def run():
        before = os.environ.get("POLYINIT_NUM_THREADS")
        os.environ["POLYINIT_NUM_THREADS"] = "1"
        try:
            return fn()
        finally:
            os.environ.pop("POLYINIT_NUM_THREADS") if before is None else os.environ.update(POLYINIT_NUM_THREADS=before)

    return run


def speed(backends: list[str], n: int, repeats: int) -> dict:
    """Best seconds (native, portable on every core, portable on one, portable on every core
    alternating with one) per (backend, distribution)."""
    nbytes, results = 4 * n * n, {}
    print(f"speed: ({n}, {n}) float32, best of {repeats} alternating runs (median scaling beside)")
    print(
        f"{'backend':7} {'distribution':13} {'native s':>9} {'portable s':>10} {'1-thread s':>10} {'GB/s':>6} "
        f"{'speed-up':>8} {'scaling':>7} {'median':>6}"
    )
    for backend in backends:
        for name, (native, ours) in globals()[f"{backend}_pairs"](n).items():
            single = one_thread(ours) if backend != "jax" else ours
            native(), ours(), single()  # warm up (and compile)
            # The speed-up alternates native and portable; the scaling alternates portable on every
            # core and on one, with no native call between: a framework's own fill leaves its thread
            # pool spinning for a while (OpenMP), which takes a core from the next portable draw.
            a, b, b2, c = [], [], [], []
            for _ in range(repeats):
                a.append(timed(native))
                b.append(timed(ours))
            for _ in range(repeats):
                b2.append(timed(ours))
                c.append(timed(single))
            native_s, ours_s, alone_s, single_s = min(a), min(b), min(b2), min(c)
            results[backend, name] = native_s, ours_s, single_s, alone_s
            print(
                f"{backend:7} {name:13} {native_s:9.3f} {ours_s:10.3f} {single_s:10.3f} {nbytes / ours_s / 1e9:6.2f} "
                f"{native_s / ours_s:8.2f} {single_s / alone_s:7.2f} "
                f"{statistics.median(c) / statistics.median(b2):6.2f}",
                flush=True,
            )
    return results


def _fills(leaf, out, count: int, threads: int) -> float:
    from polyinit.portable import fused, stream_key

    start = time.perf_counter()
    for _ in range(count):
        fused.fill(leaf, stream_key(0, "w"), 0, 0, out, max_threads=threads)
    return time.perf_counter() - start


def _in_processes(processes: int, leaf, out, count: int) -> float:
    """Wall seconds for ``processes`` forked copies of this process each making ``count``
    one-thread fills at once (the kernel is loaded before the fork)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_fills, args=(leaf, out, count, 1)) for _ in range(processes)]
    start = time.perf_counter()
    for child in children:
        child.start()
    for child in children:
        child.join()
    return time.perf_counter() - start


def kernel(n: int, repeats: int) -> None:
    """The fused kernel alone (numpy output, no framework): CPU ns per element on one thread
    (CPU time: it holds under load, where wall time does not), wall-time scaling from one thread
    to every core with and without non-temporal stores, and the machine's own ceiling: the
    throughput of the one-thread fill in as many processes as cores over one process (what
    the cores and the memory give, whatever the code)."""
    from polyinit.portable import fused

    if not fused.available():
        return
    out, cores = np.empty((n, n), np.float32), fused.threads()
    print(f"fused kernel, ({n}, {n}) float32, {cores} threads; stream: non-temporal stores (default at this size)")
    print(
        f"{'distribution':13} {'cpu ns/el':>9} {'1-thread s':>10} {'all s':>7} {'scaling':>7} {'no-stream':>9} {'ceiling':>7}"
    )
    stream_bytes = fused.STREAM_BYTES
    for name, spec in DISTRIBUTIONS.items():
        leaf = pi.resolve(spec, (n, n)).root
        _fills(leaf, out, 1, cores)
        cpu = time.process_time()
        single = min(_fills(leaf, out, 1, 1) for _ in range(repeats))
        cpu_ns = (time.process_time() - cpu) / repeats / out.size * 1e9
        every = min(_fills(leaf, out, 1, cores) for _ in range(repeats))
        fused.STREAM_BYTES = 1 << 62
        try:
            no_stream = min(_fills(leaf, out, 1, cores) for _ in range(repeats))
        finally:
            fused.STREAM_BYTES = stream_bytes
        alone = min(_in_processes(1, leaf, out, 2) for _ in range(repeats))
        together = min(_in_processes(cores, leaf, out, 2) for _ in range(repeats))
        print(
            f"{name:13} {cpu_ns:9.3f} {single:10.3f} {every:7.3f} {single / every:7.2f} {single / no_stream:9.2f} "
            f"{cores * alone / together:7.2f}",
            flush=True,
        )


def verdicts(results: dict) -> None:
    """The issue's targets: scaling >= 1.8 (2 cores); uniform and normal >= 2x native (numpy, torch)."""
    for backend in ("numpy", "torch"):
        for name in ("uniform", "normal"):
            if (backend, name) in results:
                native_s, ours_s, single_s, alone_s = results[backend, name]
                print(
                    f"target {backend} {name}: speed-up >= 2x native: {native_s / ours_s:.2f}x "
                    f"{'met' if native_s / ours_s >= 2 else 'MISSED'}; scaling >= 1.8: {single_s / alone_s:.2f}x "
                    f"{'met' if single_s / alone_s >= 1.8 else 'MISSED'}"
                )


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
SPECS = {
    "uniform": "Uniform(low=-1.0, high=1.0)",
    "normal": "Normal(std=1.0)",
    "trunc_normal": "TruncatedNormal(std=1.0, low=-2.0, high=2.0, bounds='std')",
}


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
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--backends", default="numpy,torch", help="also: jax")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    backends = args.backends.split(",")
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    from polyinit.portable import fused

    path = (
        f"fused kernels on {fused.threads()} threads"
        if fused.available()
        else f"reference ops ({fused._unavailable or 'POLYINIT_PORTABLE_FUSED=0'})"
    )
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}; portable path in numpy and torch: {path}")
    if not args.skip_memory:
        memory(backends, args.size)
    kernel(args.size, args.repeats)
    verdicts(speed(backends, args.size, args.repeats))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
