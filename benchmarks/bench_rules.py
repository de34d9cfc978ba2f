"""Rules on GPT-2 124M (transformers, built from its config, no download) against the equivalent
hand-written ``model.apply`` loop, alternating in the same process; prints the medians of 5 runs
and the ratio (the target: rules within 1.1x of the loop).

    python benchmarks/bench_rules.py [--repeats 5] [--layers 12]

Both do the same work: N(0, 0.02) into every embedding and every dense (Linear or transformers'
Conv1D) weight, zeros into the biases, ones and zeros into the LayerNorms, each tensor once (the
tied ``lm_head.weight`` is ``transformer.wte.weight``). polyinit's run includes walking the model,
matching, resolving, checking every write condition first and keeping the values it overwrites
(to restore them if a write fails).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import polyinit as pi
from polyinit import rules as R


def gpt2(layers: int) -> torch.nn.Module:
    import transformers.utils as utils
    import transformers.utils.import_utils as import_utils

    # A torchvision built for another torch fails at import; GPT-2 does not need it.
    for module in (utils, import_utils):
        module.is_torchvision_available = lambda: False
        module.is_torchvision_v2_available = lambda: False
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(n_layer=layers))


RULES = R.Rules(
    [
        (R.kind("embedding", "dense") & R.role("weight", "embedding"), pi.Normal(std=0.02)),
        (R.role("bias", "offset"), pi.zeros()),
        (R.role("scale"), pi.ones()),
    ],
    seed=0,
    require_all=True,
)


def by_hand(net: torch.nn.Module) -> None:
    from transformers.pytorch_utils import Conv1D

    seen: set = set()
    generator = torch.Generator().manual_seed(0)

    def init(module: torch.nn.Module) -> None:
        weight = getattr(module, "weight", None)
        if weight is None or id(weight) in seen:
            return
        seen.add(id(weight))
        with torch.no_grad():
            if isinstance(module, (torch.nn.Linear, Conv1D, torch.nn.Embedding)):
                weight.normal_(0.0, 0.02, generator=generator)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.LayerNorm):
                weight.fill_(1.0)
                module.bias.zero_()

    net.apply(init)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", type=int, default=12)
    args = parser.parse_args()
    torch.set_num_threads(1)  # both sides single-threaded: the comparison, not the machine's load
    net = gpt2(args.layers)
    print(f"GPT-2, {args.layers} layers: {sum(p.numel() for p in net.parameters()) / 1e6:.0f}M parameters")
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
    print(f"model.apply loop {a:.3f} s, polyinit rules {b:.3f} s, ratio {b / a:.2f} (median of {args.repeats})")


if __name__ == "__main__":
    main()
