"""The picture for ``polyinit compare --plot``: each framework's weight and bias histograms, and Var
through depth for the linear and the activated stacks (closed form as lines, real layers as dots).
Where nothing was measured, the histograms are drawn from the registry's specs and the picture
says "closed form"."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

from polyinit.compare import Row, main_weight_and_bias
from polyinit.propagation import registry_params


# Keras and Flax coincide on square layers (Glorot = LeCun when fan_in = fan_out): dashes keep both visible.
def _look(framework: str) -> tuple[str, str]:
    """(colour, line style) of a framework, from its record (``polyinit/frameworks``)."""
    from polyinit.frameworks import get_framework

    record = get_framework(framework)
    return record.colour, record.style


def _samples(row: Row, layer: str, n_in: int, n_out: int) -> tuple[Optional[np.ndarray], Optional[np.ndarray], str]:
    """(weights, biases, where from): the real layer's where measured, else drawn from the specs."""
    if row.weight_samples:
        bias = np.asarray(row.bias_samples) if row.bias_samples else None
        return np.asarray(row.weight_samples), bias, "real layer"
    if not row.params:
        return None, None, ""
    from polyinit.backends.numpy import draw

    main, first_bias = main_weight_and_bias(registry_params(row.framework, layer, n_in, n_out))
    rng = np.random.default_rng(0)
    drawn = [draw(p.plan(), rng).ravel()[:20000] if p is not None else None for p in (main, first_bias)]
    return drawn[0], drawn[1], "closed form: drawn from the spec"


def _histogram(ax: Any, values: Optional[np.ndarray], colour: str, label: str) -> None:
    if values is None or values.size == 0:
        ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, fontsize=9)
    elif np.ptp(values) == 0:
        value = float(values[0])
        ax.axvline(value, color=colour, linewidth=3)
        ax.set_xlim(value - 1, value + 1)
        ax.text(0.5, 0.85, f"all {value:g}", ha="center", transform=ax.transAxes, fontsize=8)
    else:
        ax.hist(values, bins=int(np.clip(values.size // 10, 10, 60)), color=colour, alpha=0.85)
    ax.set_xlabel(label, fontsize=7)
    ax.set_yticks([])
    ax.tick_params(labelsize=7)


def plot(rows: Sequence[Row], path: str, layer: str, activation: str, n_in: int, n_out: int, depth: int) -> str:
    """Write the picture to ``path``; returns its title (which ends "(closed form)" when nothing was measured)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    measured = any(r.measured_linear for r in rows)
    fig = plt.figure(figsize=(3.2 * max(len(rows), 3), 9.5), constrained_layout=True)
    grid = fig.add_gridspec(3, len(rows) * 2, height_ratios=(1, 0.7, 1.3))
    for i, row in enumerate(rows):
        weights, biases, source = _samples(row, layer, n_in, n_out)
        colour, style = _look(row.framework)
        top = fig.add_subplot(grid[0, 2 * i : 2 * i + 2])
        _histogram(top, weights, colour, f"weight (std {row.weight.std:.3g}; {source})")
        top.set_title(f"{row.framework} {row.version}\n" + "\n".join(textwrap.wrap(row.weight.words, 30)), fontsize=9)
        top.xaxis.set_major_locator(MaxNLocator(5))
        low = fig.add_subplot(grid[1, 2 * i : 2 * i + 2])
        _histogram(low, biases, colour, f"bias: {row.bias.words}")
        low.xaxis.set_major_locator(MaxNLocator(4))
    half = len(rows)
    how = "lines closed form, dots real layers" if measured else "closed form (nothing measured)"
    for j, (name, key, real) in enumerate(
        (("linear stack", "linear", "measured_linear"), (f"{activation} stack", "activated", "measured_activated"))
    ):
        ax = fig.add_subplot(grid[2, j * half : (j + 1) * half])
        layers = np.arange(1, depth + 1)
        for row in rows:
            colour, style = _look(row.framework)
            if not row.params:
                continue
            ax.plot(
                layers,
                getattr(row, key),
                style,
                color=colour,
                label=f"{row.framework} (1st-layer fan_in var(w) = {row.gain:.3g})",
            )
            if getattr(row, real):
                ax.plot(layers, getattr(row, real), "o", color=colour, markersize=4)
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("Var of the layer's output (input Var 1)")
        ax.set_title(f"{name}: {how}", fontsize=10)
        ax.legend(fontsize=8)
    heading = (
        f"Framework defaults for {layer} {n_in} -> {n_out}: weights, biases, and the signal through "
        f"{depth} layers" + ("" if measured else " (closed form)")
    )
    fig.suptitle(heading, fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return heading
