"""Context inference from structure on GPT-2 124M (transformers, built from its config, no
download): one traced forward pass on 8 tokens plus the passes (target: under 2 s), and a modern
scheme's apply against a plain rules apply plus that trace (target: within 1.2x). Both applies
draw N(0, 0.02)-like normals into the same tensors; the scheme's run includes building its context
(walk, trace, passes), its rule set, and the coverage check. Alternating in one process, medians.

    python benchmarks/bench_context.py [--repeats 5] [--layers 12]
"""

from __future__ import annotations

import argparse
import statistics
import time

import bench_rules
import torch

from polyinit import modern
from polyinit import rules as R
from polyinit.context import model_context
from polyinit.structure import find_structure, trace


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = bench_rules.gpt2(args.layers)
    params = R.select(model, R.every())
    model_context(model)  # warm-up: imports, first forward pass
    traces, contexts, schemes, plains = [], [], [], []
    for _ in range(args.repeats):
        traces.append(seconds(lambda: find_structure(trace(model), params)))
        contexts.append(seconds(lambda: model_context(model)))
        schemes.append(seconds(lambda: R.apply(model, modern.gpt2(model, seed=0))))
        plains.append(seconds(lambda: (find_structure(trace(model), params), R.apply(model, bench_rules.RULES))))
    t, c, s, p = (statistics.median(x) for x in (traces, contexts, schemes, plains))
    print(
        f"GPT-2 ({args.layers} layers, {sum(q.numel() for q in model.parameters()) / 1e6:.0f}M parameters), "
        f"medians of {args.repeats}, torch threads 1"
    )
    print(f"  trace + passes          {t:7.3f} s")
    print(f"  model_context (walk+trace+passes) {c:7.3f} s   (target < 2 s)")
    print(f"  apply(modern.gpt2)      {s:7.3f} s")
    print(f"  trace + apply(plain rules) {p:7.3f} s")
    print(f"  ratio scheme / (plain + trace) {s / p:5.2f}x   (target <= 1.2x)")


if __name__ == "__main__":
    main()
