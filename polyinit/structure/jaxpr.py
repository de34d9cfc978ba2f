"""A jaxpr as a :class:`~polyinit.structure.graph.Graph`: the one conversion every JAX-based
tracer (nnx, linen, Keras on the JAX backend) shares.

Each equation becomes one node (a few become several: ``split`` one ``slice`` per part, a
multi-axis ``slice`` a chain); nested calls (``jit``, ``custom_jvp_call``, ``checkpoint``, ...)
are inlined, except the activations JAX jits under their own name (``relu``, ``silu``, ...), which
become one ``unary`` node. A softmax written out as ``exp(x - max) / sum(exp(x - max))`` (as
``jax.nn.softmax`` and nnx's attention lower) becomes one ``softmax`` node on ``x``, so "q and k
meet before the softmax" is a question about one node whatever the library. ``dot_general``'s
dimension numbers are the ``contract`` node's attrs unchanged: its output axes are batch, then
lhs free, then rhs free, as the graph table says.

Importing this module imports no framework; :func:`to_graph` reads a ``ClosedJaxpr`` duck-typed.

>>> import jax, jax.numpy as jnp                                     # doctest: +SKIP
>>> closed = jax.make_jaxpr(lambda x, w: x @ w)(jnp.ones((2, 4)), jnp.ones((4, 8)))  # doctest: +SKIP
>>> g = to_graph(closed, [("input", 0), ("param", "w")])             # doctest: +SKIP
>>> g[g.outputs[0]].attrs["contract"]                                # doctest: +SKIP
((1,), (0,))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from polyinit.structure.graph import MOVEMENT, Graph

BINARY = {"add": "add", "add_any": "add", "sub": "sub", "mul": "mul", "div": "div", "max": "max", "min": "min"}
UNARY = {
    "exp": "exp",
    "log": "log",
    "tanh": "tanh",
    "logistic": "sigmoid",
    "rsqrt": "rsqrt",
    "sqrt": "sqrt",
    "neg": "neg",
    "square": "square",
    "erf": "erf",
    "abs": "abs",
    "sin": "sin",
    "cos": "cos",
    "log1p": "log1p",
    "expm1": "expm1",
    "sign": "sign",
    "erf_inv": "erf_inv",
    "exp2": "exp2",
}
MOVES = {
    "reshape": "reshape",
    "squeeze": "reshape",
    "expand_dims": "reshape",
    "broadcast_in_dim": "broadcast",
    "convert_element_type": "convert",
    "copy": "convert",
    "copy_p": "convert",
    "stop_gradient": "convert",
    "reduce_precision": "convert",
    "optimization_barrier": "convert",
    "transpose": "transpose",
}
REDUCE = {"reduce_sum": "sum", "reduce_max": "max", "reduce_min": "min", "reduce_prod": "prod"}
# Activations jax.nn jits under their own name: one unary node instead of their insides.
NAMED_UNARY = {
    "relu": "relu",
    "relu6": "relu6",
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "sigmoid": "sigmoid",
    "softplus": "softplus",
    "elu": "elu",
    "selu": "selu",
    "celu": "celu",
    "leaky_relu": "leaky_relu",
    "mish": "mish",
    "hard_tanh": "hard_tanh",
    "log_sigmoid": "log_sigmoid",
    "glu": "glu",
}
CALLS = (
    "jit",
    "pjit",
    "closed_call",
    "core_call",
    "custom_jvp_call",
    "custom_vjp_call",
    "custom_vjp_call_jaxpr",
    "checkpoint",
    "remat",
    "remat2",
    "custom_lin",
)


def to_graph(closed: Any, roles: Sequence[tuple], graph: Graph | None = None) -> Graph:
    """Convert a ``ClosedJaxpr`` to a Graph. ``roles[i]`` says what invar ``i`` is:
    ``("param", path)``, ``("input", index)`` or ``("const",)``. Nodes unused by the outputs are
    dropped (index arithmetic, the max a softmax subtracts), parameters and inputs are kept."""
    g = Graph() if graph is None else graph
    jaxpr = closed.jaxpr
    env: dict = {}
    for var, _value in zip(jaxpr.constvars, closed.consts):
        env[var] = g.add("const", (), _shape(var))
    for var, role in zip(jaxpr.invars, roles):
        if role[0] == "param":
            env[var] = g.add("param", (), _shape(var), path=role[1])
        elif role[0] == "input":
            env[var] = g.add("input", (), _shape(var), index=role[1])
        else:
            env[var] = g.add("const", (), _shape(var))
    _Converter(g).run(jaxpr, env)
    g.outputs = tuple(_read(g, env, v) for v in jaxpr.outvars)
    return prune(g)


def _shape(var: Any) -> tuple:
    return tuple(int(d) for d in getattr(var.aval, "shape", ()))


def _read(g: Graph, env: dict, var: Any) -> int:
    if type(var).__name__ == "Literal":  # a constant written into the equation
        return g.add("const", (), _shape(var))
    if var not in env:  # a constvar of an open inner jaxpr, or a value made outside the trace
        env[var] = g.add("const", (), _shape(var))
    return env[var]


class _Converter:
    def __init__(self, g: Graph):
        self.g = g

    def run(self, jaxpr: Any, env: dict) -> None:
        for eqn in jaxpr.eqns:
            ins = [_read(self.g, env, v) for v in eqn.invars]
            outs = self.equation(eqn, ins, env)
            for var, node in zip(eqn.outvars, outs):
                env[var] = node

    def equation(self, eqn: Any, ins: list, env: dict) -> list:
        name, params, g = eqn.primitive.name, eqn.params, self.g
        shape = _shape(eqn.outvars[0]) if eqn.outvars else ()
        if name in CALLS:
            return self.call(eqn, ins)
        if name in BINARY:
            return [self.binary(BINARY[name], ins, shape)]
        if name in UNARY:
            return [g.add("unary", tuple(ins), shape, fn=UNARY[name])]
        if name == "integer_pow":
            fn = "square" if params["y"] == 2 else f"pow{params['y']}"
            return [g.add("unary", tuple(ins), shape, fn=fn)]
        if name == "pow" and _literal(eqn.invars[1]) is not None:  # x ** 2.0 (Keras' ops.power)
            y = float(_literal(eqn.invars[1]))
            fn = "square" if y == 2 else "sqrt" if y == 0.5 else f"pow{y:g}"
            return [g.add("unary", (ins[0],), shape, fn=fn)]
        if name in MOVES:
            if name == "transpose":
                return [g.add("transpose", (ins[0],), shape, perm=tuple(int(p) for p in params["permutation"]))]
            return [g.add(MOVES[name], (ins[0],), shape)]
        if name in REDUCE:
            return [g.add("reduce", (ins[0],), shape, fn=REDUCE[name], axes=tuple(int(a) for a in params["axes"]))]
        if name == "dot_general":
            (ca, cb), (ba, bb) = params["dimension_numbers"]
            return [g.add("contract", tuple(ins), shape, contract=(_ints(ca), _ints(cb)), batch=(_ints(ba), _ints(bb)))]
        if name == "conv_general_dilated":
            rhs = params["dimension_numbers"].rhs_spec  # (out axis, in axis, spatial axes...) of the kernel
            return [g.add("conv", tuple(ins), shape, in_axis=int(rhs[1]), out_axis=int(rhs[0]))]
        if name == "gather":
            return [self.gather(eqn, ins, shape)]
        if name == "slice":
            return [self.slice(eqn, ins[0])]
        if name == "dynamic_slice":
            return [self.dynamic_slice(eqn, ins)]
        if name == "split":
            return self.split(eqn, ins[0])
        if name == "concatenate":
            return [g.add("concat", tuple(ins), shape, axis=int(params["dimension"]))]
        return [g.add("other", tuple(ins), _shape(v), name=name) for v in eqn.outvars] or []

    def binary(self, op: str, ins: list, shape: tuple) -> int:
        if op == "div":
            softmax = self.softmax(ins, shape)
            if softmax is not None:
                return softmax
        return self.g.add(op, tuple(ins), shape)

    def softmax(self, ins: list, shape: tuple) -> int | None:
        """``e / sum(e, axis)`` with ``e = exp(x [- max])``: a softmax of ``x`` along ``axis``."""
        g = self.g
        e, total = g[ins[0]], g[_through_movement(g, ins[1])]
        if not (
            e.op == "unary"
            and e.attrs.get("fn") == "exp"
            and total.op == "reduce"
            and total.attrs.get("fn") == "sum"
            and total.inputs == (e.id,)
            and len(total.attrs["axes"]) == 1
        ):
            return None
        x = g[e.inputs[0]]
        source = x.inputs[0] if x.op == "sub" else x.id
        return g.add("softmax", (source,), shape, axis=int(total.attrs["axes"][0]))

    def call(self, eqn: Any, ins: list) -> list:
        params = eqn.params
        named = params.get("name")
        if named in NAMED_UNARY and len(ins) == 1 and len(eqn.outvars) == 1:
            return [self.g.add("unary", tuple(ins), _shape(eqn.outvars[0]), fn=NAMED_UNARY[named])]
        inner = next((params[k] for k in ("jaxpr", "call_jaxpr", "fun_jaxpr") if k in params), None)
        if inner is None:
            return [self.g.add("other", tuple(ins), _shape(v), name=eqn.primitive.name) for v in eqn.outvars]
        open_jaxpr = getattr(inner, "jaxpr", inner)
        env: dict = {}
        for var in getattr(open_jaxpr, "constvars", ()):
            env[var] = self.g.add("const", (), _shape(var))
        # custom_vjp/jvp calls may pass extra leading operands (consts); align from the end
        invars = list(open_jaxpr.invars)
        for var, node in zip(invars[::-1], ins[::-1]):
            env[var] = node
        self.run(open_jaxpr, env)
        return [_read(self.g, env, v) for v in open_jaxpr.outvars]

    def gather(self, eqn: Any, ins: list, shape: tuple) -> int:
        index_map = tuple(eqn.params["dimension_numbers"].start_index_map)
        if len(index_map) == 1:
            return self.g.add("gather", (ins[0], ins[1]), shape, axis=int(index_map[0]))
        return self.g.add("other", tuple(ins), shape, name="gather")

    def slice(self, eqn: Any, x: int) -> int:
        params, full = eqn.params, self.g[x].shape
        strides = params.get("strides") or (1,) * len(full)
        node = x
        for axis, (start, stop, step) in enumerate(zip(params["start_indices"], params["limit_indices"], strides)):
            if (start, stop, step) != (0, full[axis], 1):
                shape = list(self.g[node].shape)
                shape[axis] = len(range(int(start), int(stop), int(step)))
                node = self.g.add(
                    "slice", (node,), tuple(shape), axis=axis, start=int(start), stop=int(stop), step=int(step)
                )
        return node

    def dynamic_slice(self, eqn: Any, ins: list) -> int:
        """A slice at literal start indices (Keras' position table ``[:length]``); the whole array
        is the array; anything else is ``other``."""
        x, full, sizes = ins[0], self.g[ins[0]].shape, tuple(eqn.params["slice_sizes"])
        starts = [getattr(v, "val", None) for v in eqn.invars[1:]]
        if sizes == full:
            return self.g.add("convert", (x,), full)
        if any(s is None for s in starts):
            return self.g.add("other", tuple(ins), _shape(eqn.outvars[0]), name="dynamic_slice")
        node, shape = x, list(full)
        for axis, (given, size) in enumerate(zip(starts, sizes)):
            if size != full[axis]:
                start = min(max(int(given or 0), 0), full[axis] - size)  # lax clamps the start
                shape[axis] = size
                node = self.g.add("slice", (node,), tuple(shape), axis=axis, start=start, stop=start + size, step=1)
        return node

    def split(self, eqn: Any, x: int) -> list:
        axis, start, outs = int(eqn.params["axis"]), 0, []
        for size, var in zip(eqn.params["sizes"], eqn.outvars):
            outs.append(self.g.add("slice", (x,), _shape(var), axis=axis, start=start, stop=start + int(size), step=1))
            start += int(size)
        return outs


def _literal(var: Any) -> Any:
    """The value of a scalar literal operand, else None."""
    value = getattr(var, "val", None) if type(var).__name__ == "Literal" else None
    return value if value is not None and getattr(value, "size", 1) == 1 else None


def _ints(axes: Any) -> tuple:
    return tuple(int(a) for a in axes)


def _through_movement(g: Graph, node_id: int) -> int:
    while g[node_id].op in MOVEMENT and g[node_id].op != "transpose":
        node_id = g[node_id].inputs[0]
    return node_id


def prune(g: Graph) -> Graph:
    """The same graph without nodes that no output depends on (inputs and parameters kept)."""
    live = set(g.outputs)
    for node in reversed(g.nodes):
        if node.id in live:
            live.update(node.inputs)
    out, remap = Graph(), dict[int, int]()
    for node in g.nodes:
        if node.id in live or node.op in ("input", "param"):
            remap[node.id] = out.add(node.op, tuple(remap[i] for i in node.inputs), node.shape, **dict(node.attrs))
    out.outputs = tuple(remap[i] for i in g.outputs)
    return out
