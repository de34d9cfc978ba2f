"""The residual stream: which adds are residual, how they chain into one stream per stack, and
which stack is the encoder.

A residual add is an ``add`` of a stream value ``x`` and a branch computed from ``x`` through at
least one dense use. In a parallel-residual block (GPT-J, GPT-NeoX, litgpt's Pythia:
``x + attn(ln1 x) + mlp(ln2 x)``) the adds may also come as ``(x + attn) + mlp`` where the MLP
branch reads ``x``, not ``x + attn``: an add of a residual add's result and a branch computed from
that add's own stream input ``x`` (with a dense use of its own) is residual too."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from polyinit.structure._facts import bits
from polyinit.structure._records import Add, State
from polyinit.structure.graph import MOVEMENT, Node

# Ops a walk along the residual stream may cross (norms, scaling, dropout, dtype, layout).
STREAM = MOVEMENT + ("norm", "add", "sub", "mul", "div", "unary", "reduce", "max", "min", "slice", "concat", "other")


def search(s: State, start: int, through: tuple, *, backward: bool, found: Callable[[Node], bool]) -> int | None:
    """The nearest node satisfying ``found`` from ``start``, crossing only ``through`` ops."""
    todo, seen = [start], {start}
    while todo:
        node = s.g[todo.pop(0)]
        if node.id != start and found(node):
            return node.id
        if node.id != start and node.op not in through:
            continue
        nxt = node.inputs if backward else [u.id for u in s.g.users(node.id)]
        for i in nxt:
            if i not in seen and (not backward or s.f.live[i]):
                seen.add(i)
                todo.append(i)
    return None


def residual_adds(s: State) -> list[Add]:
    """Every residual add, in graph order (sequential ones, then parallel branches among them)."""
    f, found = s.f, []
    for node in s.g:
        if node.op != "add" or len(node.inputs) != 2 or not all(f.live[i] for i in node.inputs):
            continue
        for x, r in (node.inputs, node.inputs[::-1]):
            while s.g[x].op == "mul" and sum(f.live[i] for i in s.g[x].inputs) == 1:
                x = next(i for i in s.g[x].inputs if f.live[i])  # DeepNorm's alpha * x + branch
            if x == r or not f.is_ancestor(x, r):
                continue
            if _has_dense_from(s, x, r):
                found.append(Add(node.id, x, r, _between(s, x, r)))
                break
    return sorted(found + list(_parallel_adds(s, found)), key=lambda a: a.node)


def _has_dense_from(s: State, x: int, r: int) -> bool:
    """Whether ``r`` is computed from ``x`` through at least one dense use."""
    dense = (s.f.anc[r] | (1 << r)) & s.f.dense_bits
    return any(s.f.anc[d] >> x & 1 for d in bits(dense))


def _between(s: State, x: int, r: int, exclude: int = 0) -> int:
    """Bitset of the nodes computed from ``x`` that ``r`` is computed from (``r`` included),
    less ``exclude``."""
    members = 0
    for n in bits((s.f.anc[r] | (1 << r)) >> (x + 1)):
        if s.f.anc[n + x + 1] >> x & 1:
            members |= 1 << (n + x + 1)
    return members & ~exclude


def _parallel_adds(s: State, adds: list[Add]) -> Iterator[Add]:
    """Adds of a residual add's result (through stream ops) and a branch computed from that
    add's stream input with a dense use of its own: the second branch of a parallel block."""
    f, ids = s.f, {a.node for a in adds}
    by_node = {a.node: a for a in adds}
    for node in s.g:
        if node.id in ids or node.op != "add" or len(node.inputs) != 2:
            continue
        for y, r in (node.inputs, node.inputs[::-1]):
            if not (f.live[y] and f.live[r]) or f.is_ancestor(y, r) or f.is_ancestor(r, y):
                continue
            before = [by_node[a] for a in back_to_adds(s, y, ids)]
            first = next((a for a in before if f.is_ancestor(a.x, r) and _has_dense_from(s, a.x, r)), None)
            if first is None:
                continue
            # the branch's own nodes: those computed from the stream input, not shared with y
            members = _between(s, first.x, r, exclude=f.anc[y] | (1 << y))
            if members & f.dense_bits:
                yield Add(node.id, y, r, members)
                break


def back_to_adds(s: State, value: int, adds: set) -> set:
    """Residual adds reached backwards from ``value`` crossing only stream ops (no dense use)."""
    todo, seen, hit = [value], {value}, set()
    while todo:
        node = s.g[todo.pop()]
        if node.id in adds:
            hit.add(node.id)
            continue
        if node.id != value and node.op not in STREAM:
            continue
        for i in node.inputs:
            if i not in seen and s.f.live[i]:
                seen.add(i)
                todo.append(i)
    return hit


def chains(s: State, adds: list[Add]) -> list[list[Add]]:
    """The adds grouped into streams: an add whose ``x`` is reached from an earlier add (through
    stream ops) continues that add's stream."""
    ids = {a.node for a in adds}
    found: list[list[Add]] = []
    where: dict[int, int] = {}
    for add in adds:
        before = back_to_adds(s, add.x, ids)
        if before:
            index = where[max(before)]
            found[index].append(add)
        else:
            index = len(found)
            found.append([add])
        where[add.node] = index
    return found


def stack_names(s: State, streams: list) -> list[str]:
    """``""`` for one stream; with two, the one whose output feeds the other's branches is the
    ``encoder``."""
    if len(streams) != 2:
        return [""] * len(streams)
    first_end = streams[0][-1].node
    feeds_second = any(s.f.is_ancestor(first_end, a.branch) for a in streams[1])
    return ["encoder", "decoder"] if feeds_second else ["decoder", "encoder"]


def stack_of(s: State, node: int, streams: list, stacks: list) -> str:
    """The one stack whose stream ``node`` feeds, else ``""``."""
    hits = {stacks[c] for c, chain in enumerate(streams) if s.f.is_ancestor(node, chain[0].x)}
    return hits.pop() if len(hits) == 1 else ""
