"""Eager (un-jitted) JAX initialisation of many differently shaped parameters, as ``model.init``
does outside ``jax.jit``: on CPU this time is mostly XLA compiling one program per new shape.
Each side runs in a fresh process (JAX's compile cache is per process), native first, and the
script prints the time of each and the ratio polyinit / native.

    python benchmarks/bench_jax_init.py [--layers 24] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CHILD = r"""
import sys, time
import jax
side, layers = sys.argv[1], int(sys.argv[2])
# An MLP and a CNN whose widths all differ: kernels and biases of `layers` distinct shapes each.
widths = [48 + 40 * i for i in range(layers + 1)]
shapes = [(a, b) for a, b in zip(widths, widths[1:])] + [(3, 3, c, c + 8) for c in widths[:layers]]
biases = [(b,) for b in widths[1:]]
if side == "native":
    inits = jax.nn.initializers
    kernel_inits = [inits.lecun_normal(), inits.glorot_uniform(), inits.normal(0.02)]
    bias_init = inits.uniform(0.05)
else:
    import polyinit as pi
    from polyinit import native
    from polyinit.backends.jax import initializer
    kernel_inits = [initializer(pi.lecun_normal(truncated=True)), initializer(pi.glorot_uniform()),
                    initializer(native.jax_normal(0.02))]
    bias_init = initializer(native.jax_uniform(0.05))
key = jax.random.key(0)
start = time.perf_counter()
for i, shape in enumerate(shapes):
    kernel_inits[i % 3](jax.random.fold_in(key, i), shape).block_until_ready()
for i, shape in enumerate(biases):
    bias_init(jax.random.fold_in(key, 1000 + i), shape).block_until_ready()
print(time.perf_counter() - start)
"""


def run(side: str, layers: int) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, side, str(layers)], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    native, ours = [], []
    for _ in range(args.repeats):
        native.append(run("native", args.layers))
        ours.append(run("polyinit", args.layers))
    params = 3 * args.layers
    a, b = statistics.median(native), statistics.median(ours)
    print(f"eager init of {params} parameters of distinct shapes, median of {args.repeats} fresh processes")
    print(f"{'native jax.nn.initializers':28} {a:7.2f} s")
    print(f"{'polyinit':28} {b:7.2f} s")
    print(f"ratio polyinit / native      {b / a:7.2f}")


if __name__ == "__main__":
    main()
