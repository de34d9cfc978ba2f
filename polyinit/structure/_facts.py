"""Facts about a graph that every structure pass reads: which values are live (computed from a
model input), which values are a parameter seen through movement ops, the ancestors of each value
(as an int bitset: bit i set when node i is an ancestor), and the dense uses of parameters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from polyinit.structure.graph import MOVEMENT, Graph, Node

# Ops that carry a value unchanged up to layout, a slice or a dtype.
CARRY = MOVEMENT + ("slice",)


@dataclass(frozen=True)
class DenseUse:
    """A parameter read as a matrix by a ``contract`` (or a ``conv``): ``node`` is the op, ``x``
    the activation it multiplies, ``weight`` the operand node that is the parameter (possibly
    through a transpose or a slice), ``path`` the parameter's path."""

    node: int
    x: int
    weight: int
    path: str


class Facts:
    """Per-node facts of ``graph``, computed once in one topological sweep."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.param_of: list[str | None] = []
        self.live: list[bool] = []
        self.anc: list[int] = []
        for node in graph:
            self.param_of.append(self._param_of(node))
            self.live.append(node.op == "input" or any(self.live[i] for i in node.inputs))
            bits = 0
            for i in node.inputs:
                bits |= self.anc[i] | (1 << i)
            self.anc.append(bits)
        self.dense = [use for use in map(self._dense_use, graph) if use is not None]
        self.dense_at = {use.node: use for use in self.dense}
        self.dense_bits = sum(1 << use.node for use in self.dense)

    def _param_of(self, node: Node) -> str | None:
        if node.op == "param":
            return node.attrs["path"]
        if node.op in CARRY and node.inputs:
            return self.param_of[node.inputs[0]]
        return None

    def _dense_use(self, node: Node) -> DenseUse | None:
        if node.op not in ("contract", "conv") or len(node.inputs) < 2:
            return None
        a, b = node.inputs[:2]
        for x, w in ((a, b), (b, a)):
            if self.live[x] and self.param_of[w] is not None and not self.live[w]:
                return DenseUse(node.id, x, w, self.param_of[w])
        return None

    def is_ancestor(self, a: int, b: int) -> bool:
        """True when value ``a`` is an ancestor of value ``b`` (or ``a == b``)."""
        return a == b or bool(self.anc[b] >> a & 1)

    def strip(self, value: int) -> int:
        """The value behind movement ops (``x.view(...)`` is ``x``)."""
        while self.graph[value].op in MOVEMENT and self.graph[value].inputs:
            value = self.graph[value].inputs[0]
        return value

    def users_through(self, value: int, ops: tuple) -> Iterator[Node]:
        """Users of ``value``, looking through chains of ``ops``."""
        seen, todo = set(), [value]
        while todo:
            for user in self.graph.users(todo.pop()):
                if user.id in seen:
                    continue
                seen.add(user.id)
                if user.op in ops:
                    todo.append(user.id)
                else:
                    yield user


def bits(mask: int) -> Iterator[int]:
    """The set bit positions of ``mask``, ascending."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low
