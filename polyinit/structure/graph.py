"""The one graph type every framework's tracer produces and every structure pass reads.

A :class:`Graph` is a list of :class:`Node` in topological order, in SSA form: each node makes one
value (its ``id``), and ``inputs`` are the ids of the values it reads. Parameters are nodes too
(``op="param"``, ``attrs["path"]`` = the walker record's ``Param.path``), so "which op reads this
weight, along which axes" is a question about the graph, the same for every framework.

The op vocabulary is small and framework-neutral; a tracer maps its framework's ops onto it and
anything else becomes ``"other"`` (with ``attrs["name"]``). Axes in attrs are non-negative ints of
the operand's shape.

| op | inputs | attrs | meaning |
|---|---|---|---|
| ``input`` | | ``index`` | a model input |
| ``param`` | | ``path`` | a parameter (or buffer) of the model |
| ``const`` | | | a constant not owned by the model |
| ``contract`` | a, b | ``contract``: ((a axes), (b axes)); ``batch``: ((a axes), (b axes)) | ``dot_general``: output axes are batch, then a's free axes, then b's free axes |
| ``conv`` | x, w | ``in_axis``, ``out_axis`` of w | a convolution |
| ``gather`` | table, indices | ``axis`` of table | an embedding lookup |
| ``add`` ``sub`` ``mul`` ``div`` ``max`` ``min`` | a, b | | broadcasting elementwise binary |
| ``unary`` | x | ``fn`` (``relu``, ``gelu``, ``silu``, ``tanh``, ``exp``, ``rsqrt``, ``sqrt``, ``neg``, ``square``, ...) | elementwise unary |
| ``reduce`` | x | ``fn`` (``sum``, ``mean``, ``max``), ``axes`` | a reduction |
| ``softmax`` | x | ``axis`` | softmax |
| ``norm`` | x, [scale], [offset] | ``fn`` (``layer``, ``rms``, ``batch``, ``group``), ``axes``, [``scale_plus_one``] | a fused normalisation (an offset without a scale: a ``const`` in the scale's slot; ``scale_plus_one``: ``x * (1 + scale)``, Gemma) |
| ``attention`` | q, k, v, [mask] | | a fused scaled dot-product attention |
| ``reshape`` ``transpose`` ``broadcast`` ``convert`` | x | ``perm`` for transpose | movement / dtype ops: identity of the data |
| ``slice`` | x | ``axis``, ``start``, ``stop``, ``step`` | a slice along one axis (split and chunk give one node per part) |
| ``concat`` | xs... | ``axis`` | concatenation |
| ``other`` | any | ``name`` | anything else |

``outputs`` are the ids of the model's outputs. Tracers live with their framework
(``polyinit.structure.trace_torch``, ``trace_jax``, ``trace_tf``); passes over the graph in
``polyinit.structure.passes``.

>>> g = Graph()
>>> x = g.add("input", (), (2, 4), index=0)
>>> w = g.add("param", (), (8, 4), path="fc.weight")
>>> y = g.add("contract", (x, w), (2, 8), contract=((1,), (1,)), batch=((), ()))
>>> g.outputs = (y,)
>>> [n.op for n in g.users(w)]
['contract']
"""  # noqa: E501  # the op table's Markdown rows cannot wrap

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

OPS = (
    "input",
    "param",
    "const",
    "contract",
    "conv",
    "gather",
    "add",
    "sub",
    "mul",
    "div",
    "max",
    "min",
    "unary",
    "reduce",
    "softmax",
    "norm",
    "attention",
    "reshape",
    "transpose",
    "broadcast",
    "convert",
    "slice",
    "concat",
    "other",
)
MOVEMENT = ("reshape", "transpose", "broadcast", "convert")


@dataclass(frozen=True)
class Node:
    """One op and the value it makes (see the module docstring for ``op`` and ``attrs``)."""

    id: int
    op: str
    inputs: tuple[int, ...]
    shape: tuple[int, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """Nodes in topological order, the parameter nodes by path, and the output ids."""

    nodes: list[Node] = field(default_factory=list)
    outputs: tuple[int, ...] = ()
    _users: dict[int, list[int]] = field(default_factory=dict, repr=False)

    def add(self, op: str, inputs: tuple[int, ...], shape: tuple[int, ...], **attrs: Any) -> int:
        """Append a node; returns its id. Inputs must already be in the graph."""
        if op not in OPS:
            raise ValueError(f"Graph.add: unknown op {op!r}; expected one of {', '.join(OPS)}")
        node = Node(len(self.nodes), op, tuple(inputs), tuple(int(d) for d in shape), dict(attrs))
        for i in node.inputs:
            if not 0 <= i < node.id:
                raise ValueError(f"Graph.add: {op} reads value {i}, which is not in the graph yet")
            self._users.setdefault(i, []).append(node.id)
        self.nodes.append(node)
        return node.id

    def __getitem__(self, node_id: int) -> Node:
        return self.nodes[node_id]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def users(self, node_id: int) -> list[Node]:
        """The nodes that read value ``node_id``, in graph order."""
        return [self.nodes[i] for i in self._users.get(node_id, ())]

    def params(self) -> dict[str, int]:
        """Parameter path -> its node id."""
        return {n.attrs["path"]: n.id for n in self.nodes if n.op == "param"}

    def param_node(self, path: str) -> Optional[Node]:
        return next((n for n in self.nodes if n.op == "param" and n.attrs.get("path") == path), None)
