"""Which rows of a packed weight end up where: the output feature index of a dense use carried,
as an integer array, through the movement ops that split it (``view``, ``transpose``, ``split``,
``chunk``), so the slices of a packed q/k/v or gate/up tensor are read from the model's own data
flow (GPT-NeoX's per-head interleaved qkv included), not assumed."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from polyinit.structure._facts import DenseUse, Facts, bits
from polyinit.structure.graph import Node

_PASS_FIRST = ("add", "sub", "mul", "div", "max", "min", "unary", "norm", "convert")


def free_axes(facts: Facts, use: DenseUse) -> tuple[int, ...]:
    """The weight's axes that reach the dense use's output (not contracted, not batch)."""
    node = facts.graph[use.node]
    weight_shape = facts.graph[use.weight].shape
    side = 1 if node.inputs[1] == use.weight else 0
    if node.op == "conv":
        return (node.attrs.get("out_axis", 0),)
    used = set(node.attrs.get("contract", ((), ()))[side]) | set(node.attrs.get("batch", ((), ()))[side])
    return tuple(a for a in range(len(weight_shape)) if a not in used)


def labels_at(facts: Facts, use: DenseUse, targets: Iterable[int]) -> dict[int, set]:
    """target value -> the flat indices (over the weight's free axes) of the output features of
    ``use`` that reach it; only for a weight that is the contract's second operand."""
    graph = facts.graph
    node = graph[use.node]
    targets = list(targets)
    if node.op != "contract" or node.inputs[1] != use.weight:
        return {}
    free = [graph[use.weight].shape[a] for a in free_axes(facts, use)]
    size = math.prod(free)
    if not free or tuple(node.shape[len(node.shape) - len(free) :]) != tuple(free):
        return {}
    wanted = 0
    for t in targets:
        wanted |= facts.anc[t] | (1 << t)
    labels: dict[int, np.ndarray] = {use.node: np.broadcast_to(np.arange(size).reshape(free), node.shape)}
    for i in bits(wanted >> use.node):
        n = graph[i + use.node]
        if n.id in labels or not facts.is_ancestor(use.node, n.id):
            continue
        carried = _carry(n, [labels.get(j) for j in n.inputs])
        if carried is not None:
            labels[n.id] = carried
    return {t: set(np.unique(labels[t]).tolist()) for t in targets if t in labels}


def _carry(node: Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    first = inputs[0] if inputs else None
    try:
        if node.op == "reshape" and first is not None:
            return first.reshape(node.shape)
        if node.op == "transpose" and first is not None:
            return first.transpose(node.attrs["perm"])
        if node.op == "broadcast" and first is not None:
            return np.broadcast_to(first, node.shape)
        if node.op == "slice" and first is not None:
            index = [slice(None)] * first.ndim
            index[node.attrs["axis"]] = slice(node.attrs["start"], node.attrs["stop"], node.attrs.get("step", 1))
            return first[tuple(index)]
        present = [x for x in inputs if x is not None]
        if node.op == "concat" and len(present) == len(inputs):
            return np.concatenate(present, axis=node.attrs["axis"])
        if node.op in _PASS_FIRST:
            for x in inputs:
                if x is not None and tuple(x.shape) == node.shape:
                    return x
    except (ValueError, KeyError, IndexError):
        return None
    return None


def ranges(indices: set) -> tuple[tuple[int, int], ...]:
    """Sorted indices as half-open contiguous ranges: {0, 1, 2, 5} -> ((0, 3), (5, 6))."""
    out: list[list[int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return tuple((a, b) for a, b in out)
