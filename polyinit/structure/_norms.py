"""Norms: a fused ``norm`` op, or a 1-D parameter multiplying a value normalised by a reduction
(an RMSNorm class polyinit never saw). Inside a branch a norm belongs to that block, on the stream
after every add (post-norm) to that add's block, else (final, embedding norms) to no block."""

from __future__ import annotations

from collections.abc import Iterator

from polyinit.structure._records import State
from polyinit.structure._stream import back_to_adds, stack_of


def norms(s: State, streams: list, stacks: list) -> None:
    """Place every norm's scale and offset."""
    adds = {a.node: (a, stacks[c]) for c, chain in enumerate(streams) for a in chain}
    last = {chain[-1].node for chain in streams}
    on_stream = []
    for node, scale, offset in _sites(s):
        inside = [(a, st) for a, st in adds.values() if a.members >> node & 1]
        if inside:
            add, stack = inside[0]
            s.place(scale, "norm", add.block, stack, "scale")
            s.place(offset, "norm", add.block, stack, "offset")
        else:
            on_stream.append((node, scale, offset, back_to_adds(s, node, set(adds))))
    post = any(hit and max(hit) not in last for *_, hit in on_stream)
    first: dict[int, int] = {}  # add -> the nearest norm after it (post-norm: that block's)
    for node, _, _, hit in sorted(on_stream):
        if hit:
            first.setdefault(max(hit), node)
    for node, scale, offset, hit in on_stream:
        add, stack = adds[max(hit)] if hit else (None, stack_of(s, node, streams, stacks))
        block = add.block if add is not None and post and first[max(hit)] == node else None
        s.place(scale, "norm", block, stack, "scale")
        s.place(offset, "norm", block, stack, "offset")


def _sites(s: State) -> Iterator[tuple]:
    """(location node, scale path, offset path) of every norm."""
    f = s.f
    for node in s.g:
        if node.op == "norm":
            ins = list(node.inputs[1:3]) + [None, None]
            yield node.id, *(f.param_of[i] if i is not None else None for i in ins[:2])
        elif node.op == "mul" and len(node.inputs) == 2:
            for scale, x in (node.inputs, node.inputs[::-1]):
                path = f.param_of[scale] or _one_plus(s, scale)
                if path and f.live[x] and len(s.g[scale].shape) <= 1 and _normalised(s, x):
                    offset = None
                    for user in s.g.users(node.id):
                        if user.op == "add":
                            offset = next((f.param_of[i] for i in user.inputs if f.param_of[i]), None)
                    yield node.id, path, offset
                    break


def _one_plus(s: State, value: int) -> str | None:
    """The parameter of a constant ``1 + w`` (Gemma's scale)."""
    node = s.g[value]
    if node.op == "add" and not s.f.live[value]:
        return next((s.f.param_of[i] for i in node.inputs if s.f.param_of[i]), None)
    return None


def _normalised(s: State, value: int) -> bool:
    """Whether ``value`` was divided by a statistic: a reduction within a few elementwise ops."""
    todo = [(value, 0)]
    while todo:
        i, d = todo.pop()
        node = s.g[i]
        if node.op == "reduce":
            return True
        if d >= 6 or node.op in ("contract", "conv", "gather", "param", "input"):
            continue
        todo.extend((j, d + 1) for j in node.inputs)
    return False
