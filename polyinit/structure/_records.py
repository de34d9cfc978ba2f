"""What the structure passes report (``Part``, ``ParamStructure``, ``Structure``) and the state they
share while they run (``State``: the graph, its facts, what is placed so far)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from polyinit.structure._facts import DenseUse, Facts
from polyinit.structure.graph import MOVEMENT, Graph


@dataclass(frozen=True)
class Part:
    """One logical part of a packed tensor: ``name`` (``q``, ``k``, ``v``, ``gate``, ``up``), the
    weight's ``axes`` it spans (the output axes) and the ``ranges`` of their flat index it owns.
    A gated MLP's separate gate and up projections carry one part each, spanning the whole
    tensor: which of the two they are."""

    name: str
    axes: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ParamStructure:
    """What the trace says one parameter is: site, block (0-based along its stream), stack
    (``""``, ``"encoder"``, ``"decoder"``), role by use (``weight``, ``bias``, ``scale``,
    ``offset``), provenance (``"structure"``) and the parts of a packed tensor."""

    site: str
    block: int | None = None
    stack: str = ""
    role: str = "weight"
    source: str = "structure"
    parts: tuple[Part, ...] = ()


@dataclass(frozen=True)
class Structure:
    """Per parameter path what the trace placed, the depth per stack, the residual adds per
    stack (node ids) and tied readouts (readout path -> embedding path)."""

    params: Mapping[str, ParamStructure]
    depths: Mapping[str, int]
    residual: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    tied: Mapping[str, str] = field(default_factory=dict)

    def get(self, path: str) -> ParamStructure | None:
        return self.params.get(path)


@dataclass
class Attention:
    """One attention: the values that are q, k and v, and its output (the mixing product)."""

    q: int
    k: int
    v: int
    out: int
    slots: dict = field(default_factory=dict)  # "q"/"k"/"v" -> the dense uses producing it
    outs: list = field(default_factory=list)  # the dense uses after the attention in its branch


@dataclass
class Add:
    """One residual add: the stream value ``x``, the ``branch`` added to it and the branch's
    nodes (a bitset), and the block it was given."""

    node: int
    x: int
    branch: int
    members: int = 0  # bitset of the branch's nodes
    block: int = 0


class State:
    """The graph, its facts and what the passes have placed so far: the first placement of a
    parameter wins (a tied table is placed where it is first met)."""

    def __init__(self, graph: Graph, params: Iterable[Any]):
        self.g, self.f = graph, Facts(graph)
        self.alias = {a: p.path for p in params for a in getattr(p, "aliases", ())}
        self.found: dict[str, ParamStructure] = {}
        self.claimed: set[int] = set()  # dense-use nodes already placed

    def place(self, path: str | None, site: str, block: int | None, stack: str, role: str, parts: tuple = ()) -> None:
        if path is None:
            return
        path = self.alias.get(path, path)
        if path not in self.found:
            self.found[path] = ParamStructure(site, block, stack, role, "structure", parts)

    def place_dense(self, use: DenseUse, site: str, block: int | None, stack: str, parts: tuple = ()) -> None:
        """The weight of ``use`` and the bias added right after it (same site, parts on axis 0)."""
        self.claimed.add(use.node)
        self.place(use.path, site, block, stack, "weight", parts)
        for user in self.f.users_through(use.node, MOVEMENT):
            if user.op == "add" and len(user.inputs) == 2:
                other = [i for i in user.inputs if self.f.strip(i) != use.node and self.f.param_of[i]]
                if other:
                    bias_parts = tuple(Part(p.name, (0,), p.ranges) for p in parts)
                    self.place(self.f.param_of[other[0]], site, block, stack, "bias", bias_parts)
