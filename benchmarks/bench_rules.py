"""Applying a rule set to a ~100M-parameter torch model against the equivalent hand-written
``module.apply`` loop, alternating in the same process; prints both medians and the ratio.

    python benchmarks/bench_rules.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import polyinit as pi
from polyinit import rules as R


def model() -> torch.nn.Module:
    # 12 blocks of Linear(1024, 4096) + Linear(4096, 1024) + LayerNorm, and a 32000 x 1024 embedding:
    # 12 * 8.4M + 32.8M = 133M parameters.
    blocks = []
    for _ in range(12):
        blocks += [torch.nn.Linear(1024, 4096), torch.nn.Linear(4096, 1024), torch.nn.LayerNorm(1024)]
    return torch.nn.Sequential(torch.nn.Embedding(32000, 1024), *blocks)


RULES = R.Rules([(R.kind("embedding"), pi.Normal(std=0.02)), (R.kind("dense") & R.role("weight"), pi.glorot_uniform()),
                 (R.role("bias"), pi.zeros()), (R.kind("norm"), R.KEEP)], seed=0, require_all=True)


def by_hand(net: torch.nn.Module) -> None:
    def init(module):
        if isinstance(module, torch.nn.Embedding):
            torch.nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(module.weight)
            torch.nn.init.zeros_(module.bias)

    net.apply(init)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    net = model()
    print(f"{sum(p.numel() for p in net.parameters()) / 1e6:.0f}M parameters")
    by_hand(net), R.apply(net, RULES)  # warm up
    hand, ours = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        by_hand(net)
        hand.append(time.perf_counter() - start)
        start = time.perf_counter()
        R.apply(net, RULES)
        ours.append(time.perf_counter() - start)
    a, b = statistics.median(hand), statistics.median(ours)
    print(f"module.apply loop {a:.3f} s, polyinit rules {b:.3f} s, ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
