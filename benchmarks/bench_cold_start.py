"""The first portable draw in a fresh process, beyond the draw itself (issue 24, target <= 0.5 s).

Each fresh process imports polyinit, draws an (N, N) float32 normal portably twice and prints the
two times; the cold-start cost is first - second (loading the fused kernel, or compiling it when
the cache has none). Prints the median over ``--processes`` processes with the user's cache (kept
in a temporary ``POLYINIT_CACHE``, filled by one compiling process first, whose cost is printed
too), and one process of a leaf under ``fused.MIN_SIZE`` elements, which loads no kernel.

    python benchmarks/bench_cold_start.py [--size 2048] [--processes 5] [--backend numpy]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, sys, time
start = time.perf_counter()
import polyinit as pi
from polyinit.backends.{backend} import draw_portable
from polyinit.portable import _native
plan = pi.resolve(pi.Normal(std=0.02), ({n}, {n}))
imported = time.perf_counter()
draw_portable(plan, 0, "w")
first = time.perf_counter()
draw_portable(plan, 0, "w")
second = time.perf_counter()
print(json.dumps({{"import": imported - start, "first": first - imported, "second": second - first,
                  "loaded": _native.LOADED, "numba": "numba" in sys.modules}}))
"""


def child(backend: str, n: int, cache: str) -> dict:
    env = {**os.environ, "POLYINIT_CACHE": cache}
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(backend=backend, n=n)], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--processes", type=int, default=5)
    parser.add_argument("--backend", default="numpy", help="numpy or torch")
    args = parser.parse_args()
    print(
        f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}; "
        f"({args.size}, {args.size}) float32 normal, backend {args.backend}"
    )
    with tempfile.TemporaryDirectory() as cache:
        cold = child(args.backend, args.size, cache)
        print(
            f"empty cache: kernel {cold['loaded']}, first draw {cold['first']:.3f} s, second {cold['second']:.3f} s, "
            f"cold start {cold['first'] - cold['second']:.2f} s"
        )
        runs = [child(args.backend, args.size, cache) for _ in range(args.processes)]
        extra = statistics.median(r["first"] - r["second"] for r in runs)
        print(
            f"warm cache, median of {len(runs)} processes: kernel {runs[0]['loaded']}, numba imported: "
            f"{any(r['numba'] for r in runs)}, import polyinit {statistics.median(r['import'] for r in runs):.3f} s, "
            f"draw {statistics.median(r['second'] for r in runs):.3f} s, "
            f"beyond the draw {extra:.3f} s (target <= 0.5 s: {'met' if extra <= 0.5 else 'MISSED'})"
        )
        small = child(args.backend, 64, cache)
        print(f"a (64, 64) leaf: kernel {small['loaded']}, first draw {small['first'] * 1e3:.1f} ms")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
