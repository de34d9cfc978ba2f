"""Context inference from structure on keras-hub's GPT-2 124M (built from its config, no download)
on the TensorFlow backend: one traced forward pass (``tf.function`` concrete graph on 8 tokens)
plus the passes, against one eager forward pass of the same model measured in the same run, the
same trace with every block built into the TF graph (no repeat sharing, ``structure/repeats.py``),
and ``model_context`` (walk + trace + passes). Alternating in one process, medians.

    python benchmarks/bench_context_keras.py [--repeats 3] [--layers 12]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras_hub

from polyinit.context import model_context
from polyinit.structure import find_structure, repeats, trace
from polyinit.structure.trace_tf import example_input


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layers", type=int, default=12)
    args = parser.parse_args()
    model = keras_hub.models.GPT2Backbone(
        vocabulary_size=50257,
        num_layers=args.layers,
        num_heads=12,
        hidden_dim=768,
        intermediate_dim=3072,
        max_sequence_length=1024,
    )
    x = example_input(model)
    model(x)  # warm-up: the first call builds Keras' own state
    forwards, traces, fulls, contexts = [], [], [], []
    shared = repeats.signature
    for _ in range(args.repeats):
        forwards.append(seconds(lambda: model(x)))
        traces.append(seconds(lambda: find_structure(trace(model))))
        repeats.signature = lambda layer: None  # every block built into the graph
        try:
            fulls.append(seconds(lambda: find_structure(trace(model))))
        finally:
            repeats.signature = shared
        contexts.append(seconds(lambda: model_context(model)))
    f, t, u, c = (statistics.median(v) for v in (forwards, traces, fulls, contexts))
    print(
        f"keras-hub GPT-2 ({args.layers} layers, {model.count_params() / 1e6:.0f}M parameters), TensorFlow, "
        f"medians of {args.repeats}"
    )
    print(f"  eager forward pass (Keras' own)   {f:7.3f} s")
    print(f"  trace + passes                    {t:7.3f} s   ({t / f:.1f}x the forward pass)")
    print(f"  the same, every block built       {u:7.3f} s   (sharing repeats: {u / t:.1f}x faster)")
    print(f"  model_context (walk+trace+passes) {c:7.3f} s   (target < 2 s)")


if __name__ == "__main__":
    main()
