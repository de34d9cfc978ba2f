"""Questions the structure tests ask of a traced graph (shared by the JAX and Keras tracer tests):
which op reads a parameter along which axes, what a value is computed from, where q and k meet.
Written against the graph table in ``polyinit.structure.graph`` only, never against a tracer."""

from __future__ import annotations

from polyinit.structure.graph import MOVEMENT, Graph


def through_movement(g: Graph, node_id: int) -> int:
    while g[node_id].op in MOVEMENT:
        node_id = g[node_id].inputs[0]
    return node_id


def readers(g: Graph, path: str, op: str) -> list[tuple]:
    """(node, operand index) of each ``op`` node that reads parameter ``path`` (through movement ops)."""
    param = g.params()[path]
    return [(n, i) for n in g if n.op == op for i, x in enumerate(n.inputs) if through_movement(g, x) == param]


def kernel_axes(g: Graph, path: str) -> tuple[tuple, tuple, tuple]:
    """(contracted, batch, free) axes of the parameter ``path`` in the one contract that reads it,
    each sorted (dot_general may list paired axes in any order)."""
    ((node, side),) = readers(g, path, "contract")
    contracted, batch = node.attrs["contract"][side], node.attrs["batch"][side]
    rank = len(g[node.inputs[side]].shape)
    free = tuple(a for a in range(rank) if a not in contracted and a not in batch)
    return tuple(sorted(contracted)), tuple(sorted(batch)), free


def ancestors(g: Graph, node_id: int) -> set:
    out, todo = set(), [node_id]
    while todo:
        for i in g[todo.pop()].inputs:
            if i not in out:
                out.add(i)
                todo.append(i)
    return out


def score_and_mix(g: Graph) -> list[tuple]:
    """For each softmax: (the contract its scores come from, the contract that reads it)."""
    found = []
    for soft in (n for n in g if n.op == "softmax"):
        before = [n for n in g if n.op == "contract" and n.id in ancestors(g, soft.id)]
        after = [n for n in g if n.op == "contract" and soft.id in ancestors(g, n.id)]
        found.append((max(before, key=lambda n: n.id), min(after, key=lambda n: n.id)))
    return found


def made_from(g: Graph, node_id: int, path: str) -> bool:
    return g.params()[path] in ancestors(g, node_id)


def assert_attention(g: Graph, q: str, k: str, v: str) -> None:
    """q and k (and not v) meet in the score product before a softmax; v is mixed in after it."""
    pairs = [(s, m) for s, m in score_and_mix(g) if made_from(g, s.id, q)]
    assert pairs, f"no softmax reads a score made from {q}"
    score, mix = pairs[0]
    a, b = score.inputs
    assert {made_from(g, a, q), made_from(g, b, q)} == {True, False}
    assert {made_from(g, a, k), made_from(g, b, k)} == {True, False}
    assert not made_from(g, score.id, v)
    value_side = [x for x in mix.inputs if made_from(g, x, v)]
    assert len(value_side) == 1 and not made_from(g, value_side[0], q)


def sites(structure, paths) -> list[tuple]:
    """(site, block, stack, role) per path in walker order; None where the trace placed nothing."""
    out = []
    for path in paths:
        found = structure.get(path)
        out.append(None if found is None else (found.site, found.block, found.stack, found.role))
    return out
