"""Attention: q and k meet in the score product before a ``softmax`` and v after it (or the fused
``attention`` op takes them by position); the dense uses that produce each slot are its
projections, one reached by several slots is packed (its slices found by following its output
features through the split), the dense uses after the attention in the branch are its output."""

from __future__ import annotations

from collections.abc import Iterator

from polyinit.structure._facts import DenseUse
from polyinit.structure._labels import free_axes, labels_at, ranges
from polyinit.structure._records import Add, Attention, Part, State
from polyinit.structure._stream import search
from polyinit.structure.graph import MOVEMENT

_SCORE = MOVEMENT + ("add", "sub", "mul", "div", "max", "min", "unary", "other")


def attentions(s: State) -> Iterator[Attention]:
    """Every attention of the graph, fused or written out."""
    f = s.f
    for node in s.g:
        if node.op == "attention" and len(node.inputs) >= 3:
            q, k, v = node.inputs[:3]
            yield Attention(q, k, v, out=node.id)
        elif node.op == "softmax" and f.live[node.id]:
            score = search(
                s,
                node.id,
                _SCORE,
                backward=True,
                found=lambda n: n.op == "contract" and n.id not in f.dense_at and all(f.live[i] for i in n.inputs[:2]),
            )
            mix = search(
                s,
                node.id,
                _SCORE,
                backward=False,
                found=lambda n: n.op == "contract" and n.id not in f.dense_at and len(n.inputs) >= 2,
            )
            if score is not None and mix is not None:
                a, b = s.g[mix].inputs[:2]
                v = b if f.is_ancestor(node.id, a) else a
                q, k = query_key(s, score, node.id)
                yield Attention(q, k, v, out=mix)


def query_key(s: State, score: int, softmax: int) -> tuple[int, int]:
    """(q, k) of a score product: k is the operand whose free axis the softmax normalises over
    (Keras computes ``einsum(key, query)``, torch ``q @ k.T``); operand order where the axis
    cannot be followed back (a reshape on the way)."""
    g, a, b = s.g, *s.g[score].inputs[:2]
    axis, value = g[softmax].attrs.get("axis", -1) % max(len(g[softmax].shape), 1), g[softmax].inputs[0]
    while value != score:
        node = g[value]
        if node.op == "transpose":
            axis, value = node.attrs["perm"][axis], node.inputs[0]
            continue
        same = [i for i in node.inputs if g[i].shape == node.shape and s.f.is_ancestor(score, i)]
        if node.op == "reshape" or not same:
            return a, b
        value = same[0]
    node = g[score]
    batch = len(node.attrs.get("batch", ((), ()))[0])
    a_free = len(g[a].shape) - batch - len(node.attrs.get("contract", ((), ()))[0])
    return (b, a) if batch <= axis < batch + a_free else (a, b)


def claim(s: State, att: Attention, add: Add) -> set:
    """Fill in ``att``'s projections (per slot) and output uses within ``add``'s branch; the
    dense-use nodes they are."""
    f = s.f
    att.slots = {slot: producers(s, getattr(att, slot)) for slot in ("q", "k", "v")}
    att.outs = [
        u
        for u in f.dense
        if add.members >> u.node & 1
        and f.is_ancestor(att.out, u.node)
        and not any(
            f.is_ancestor(att.out, o.node) and f.is_ancestor(o.node, u.x)
            for o in f.dense
            if o.node != u.node and add.members >> o.node & 1
        )
    ]
    return {u.node for uses in att.slots.values() for u in uses} | {u.node for u in att.outs}


def place(s: State, att: Attention, stack: str, block: int) -> None:
    """q, k, v projections and the output; a parameter feeding several slots is packed: its
    parts are the slices its weight is read through, else where its output features go."""
    by_path: dict[str, list[tuple[str, DenseUse]]] = {}
    for slot, found in att.slots.items():
        for use in found:
            by_path.setdefault(use.path, []).append((slot, use))
    for entries in by_path.values():
        names = [slot for slot, _ in entries]
        if len(names) == 1:
            s.place_dense(entries[0][1], names[0], block, stack)
            continue
        nodes = {use.node for _, use in entries}
        if len(nodes) == 1:
            use = entries[0][1]
            seen = labels_at(s.f, use, [getattr(att, n) for n in names])
            axes = free_axes(s.f, use)
            parts = tuple(Part(n, axes, ranges(seen.get(getattr(att, n), set()))) for n in names)
        else:
            parts = tuple(_sliced(s, slot, use) for slot, use in entries)
        for _, use in entries:
            s.place_dense(use, "qkv", block, stack, parts)
    for use in att.outs:
        s.place_dense(use, "attn_out", block, stack)


def _sliced(s: State, name: str, use: DenseUse) -> Part:
    """The part of a packed weight one dense use reads through a slice."""
    node = s.g[use.weight]
    while node.op in MOVEMENT and node.op != "slice" and node.inputs:
        node = s.g[node.inputs[0]]
    if node.op != "slice":
        return Part(name, (), ())
    return Part(name, (node.attrs["axis"],), ((node.attrs["start"], node.attrs["stop"]),))


def producers(s: State, slot: int) -> list:
    """The dense uses nearest before ``slot`` (crossing rotary, norms, reshapes)."""
    f, todo, seen, out = s.f, [slot], {slot}, []
    while todo:
        node = s.g[todo.pop()]
        if node.id in f.dense_at:
            out.append(f.dense_at[node.id])
            continue
        if node.op in ("contract", "conv", "gather", "softmax", "attention", "input"):
            continue
        if node.op == "add" and any(f.is_ancestor(i, j) for i in node.inputs for j in node.inputs if i != j):
            continue  # a residual add: the stream, not this slot's computation
        for i in node.inputs:
            if i not in seen and f.live[i]:
                seen.add(i)
                todo.append(i)
    return sorted(out, key=lambda u: u.node)
