"""The picture for ``polyinit compare --plot``: weight histograms side by side, and Var through
depth for linear and ReLU stacks (closed form as lines, real layers as dots)."""

from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np

from polyinit.compare import Row
from polyinit.defaults import layer_defaults

# Keras and Flax coincide on square layers (Glorot = LeCun when fan_in = fan_out): dashes keep both visible.
STYLES = {"torch": "-", "keras": "--", "flax": "-", "mxnet": "-.", "haiku": ":"}
COLOURS = {"torch": "#ee4c2c", "keras": "#c98a00", "flax": "#4a7dc4", "mxnet": "#2a9d8f", "haiku": "#8d6cab"}


def _weights(row: Row, layer: str, n_in: int, n_out: int, kernel: int) -> tuple[np.ndarray, str]:
    if row.samples:
        return np.asarray(row.samples), "real layer"
    from polyinit.backends.numpy import draw

    kind = "dense" if layer == "dense" else "conv"
    dims = dict(n_in=n_in, n_out=n_out) if kind == "dense" else dict(n_in=n_in, n_out=n_out, kernel=(kernel, kernel))
    weight = next(iter(layer_defaults(row.framework, kind, **dims).values()))
    return draw(weight.plan(), np.random.default_rng(0)).ravel()[:20000], "polyinit spec"


def plot(rows: Sequence[Row], path: str, layer: str, n_in: int, n_out: int, depth: int, kernel: int = 3) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig = plt.figure(figsize=(3.2 * max(len(rows), 3), 7.5), constrained_layout=True)
    grid = fig.add_gridspec(2, len(rows) * 2)
    samples = [_weights(r, layer, n_in, n_out, kernel) for r in rows]
    limit = max(float(np.max(np.abs(w))) for w, _ in samples) * 1.05
    bins = np.linspace(-limit, limit, 61)
    for i, (row, (weights, source)) in enumerate(zip(rows, samples)):
        ax = fig.add_subplot(grid[0, 2 * i:2 * i + 2])
        ax.hist(weights, bins=bins, color=COLOURS[row.framework], alpha=0.85)
        ax.set_title(f"{row.framework} {row.version}\n" + "\n".join(textwrap.wrap(row.weight.words, 30)), fontsize=9)
        ax.set_xlabel(f"weight (std {row.weight.std:.3g}; {source})", fontsize=8)
        ax.set_yticks([])
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.tick_params(labelsize=7)
    half = len(rows)
    for j, (title, key, measured) in enumerate((("linear stack", "linear", "measured_linear"),
                                                 ("ReLU stack", "relu", "measured_relu"))):
        ax = fig.add_subplot(grid[1, j * half:(j + 1) * half])
        layers = np.arange(1, depth + 1)
        for row in rows:
            colour = COLOURS[row.framework]
            ax.plot(layers, getattr(row, key), STYLES[row.framework], color=colour, label=f"{row.framework} (1st-layer n_in var(w) = {row.gain:.3g})")
            if getattr(row, measured):
                ax.plot(layers, getattr(row, measured), "o", color=colour, markersize=4)
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_ylabel("Var of the layer's output (input Var 1)")
        ax.set_title(f"{title}: lines closed form, dots real layers", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(f"Framework defaults for {layer} {n_in} -> {n_out}: weights, and the signal through "
                 f"{depth} layers", fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)
