"""MLP: the dense uses of a branch that are not attention. One that feeds another dense use of the
branch is an input (``mlp_in``), the one whose output is added back the output (``mlp_out``).

A gated MLP computes ``out(act(gate x) * up x)``: the gate passes through the activation before
the elementwise product, the up projection is multiplied with it directly (through layout ops
and a bias only). That is read off the product, so separate gate and up projections (Llama's
``gate_proj``/``up_proj``, litgpt's ``fc_1``/``fc_2``, olmo-core's ``w1``/``w3``, keras-hub's
dense layers) each get one part naming which they are, and a fused gate/up projection (Phi-3's
``gate_up_proj``) gets its two parts, with the index ranges each half owns."""

from __future__ import annotations

import math

from polyinit.structure._facts import DenseUse
from polyinit.structure._labels import free_axes, labels_at, ranges
from polyinit.structure._records import Add, Part, State
from polyinit.structure.graph import MOVEMENT


def place(s: State, uses: list, add: Add, stack: str, block: int) -> None:
    """Place the MLP uses of one branch: inputs (with gate/up parts where gated) and outputs."""
    f = s.f
    inputs = [u for u in uses if any(o.node != u.node and f.is_ancestor(u.node, o.x) for o in uses)]
    separate = _separate_gate_up(s, inputs, add)
    for use in uses:
        if use in inputs:
            parts = _fused_gate_up(s, use) or separate.get(use.node, ())
            s.place_dense(use, "mlp_in", block, stack, parts)
        else:
            s.place_dense(use, "mlp_out", block, stack)


def _separate_gate_up(s: State, inputs: list, add: Add) -> dict[int, tuple]:
    """{dense-use node: (Part,)} for two input projections whose outputs meet in a product, one
    of them directly (the up projection) and the other through the activation (the gate)."""
    f = s.f
    found: dict[int, tuple] = {}
    for node in s.g:
        if node.op != "mul" or len(node.inputs) != 2 or not add.members >> node.id & 1:
            continue
        a, b = node.inputs
        from_a = [u for u in inputs if f.is_ancestor(u.node, a)]
        from_b = [u for u in inputs if f.is_ancestor(u.node, b)]
        if len(from_a) != 1 or len(from_b) != 1 or from_a[0] is from_b[0]:
            continue
        (ua,), (ub,) = from_a, from_b
        if f.is_ancestor(ua.node, b) or f.is_ancestor(ub.node, a):
            continue
        direct_a, direct_b = _direct(s, a, ua.node), _direct(s, b, ub.node)
        if direct_a == direct_b:
            continue  # both direct (a bilinear layer) or neither: nothing says which is the gate
        gate, up = (ub, ua) if direct_a else (ua, ub)
        found.setdefault(gate.node, (_whole(s, "gate", gate),))
        found.setdefault(up.node, (_whole(s, "up", up),))
    return found


def _whole(s: State, name: str, use: DenseUse) -> Part:
    """A part spanning the whole of ``use``'s weight (its output axes)."""
    axes = free_axes(s.f, use)
    size = math.prod(s.g[use.weight].shape[a] for a in axes)
    return Part(name, axes, ((0, size),))


def _direct(s: State, value: int, start: int) -> bool:
    """Whether ``value`` is ``start``'s output through layout ops, slices and bias adds only."""
    while value != start:
        node = s.g[value]
        if node.op in MOVEMENT + ("slice",) and node.inputs:
            value = node.inputs[0]
        elif node.op == "add" and len(node.inputs) == 2 and sum(s.f.live[i] for i in node.inputs) == 1:
            value = next(i for i in node.inputs if s.f.live[i])
        else:
            return False
    return True


def _fused_gate_up(s: State, use: DenseUse) -> tuple:
    """Parts of a fused gate/up input: its output halves meet in a product; the half that passes
    the activation is the gate."""
    f = s.f
    for user in s.g:
        if user.op != "mul" or user.id <= use.node or len(user.inputs) != 2:
            continue
        a, b = user.inputs
        if not (f.is_ancestor(use.node, a) and f.is_ancestor(use.node, b)):
            continue
        seen = labels_at(f, use, [a, b])
        if len(seen) != 2 or seen[a] & seen[b]:
            return ()  # the first product mixes the same features: not a gate/up split
        direct_a, direct_b = _direct(s, a, use.node), _direct(s, b, use.node)
        if direct_a != direct_b:
            gate = b if direct_a else a
        else:
            gate = a if _activated(s, use.node, a) else b
        up = b if gate == a else a
        axes = free_axes(f, use)
        return (Part("gate", axes, ranges(seen[gate])), Part("up", axes, ranges(seen[up])))
    return ()


def _activated(s: State, start: int, value: int) -> bool:
    """Whether the first-operand chain from ``value`` back to ``start`` crosses a unary op."""
    node = s.g[value]
    while node.id != start and node.inputs:
        if node.op == "unary":
            return True
        node = s.g[node.inputs[0]]
    return False
