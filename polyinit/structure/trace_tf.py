"""The TensorFlow tracer: one forward pass of a Keras model on the TensorFlow backend, as a
:class:`~polyinit.structure.graph.Graph` read off the ``tf.function`` concrete graph.

A variable enters the graph as a captured resource handle; every ``ReadVariableOp`` (or
``ResourceGather``) of that handle is a read of one ``param`` node, named by the polyinit walker's
``Param.path`` of the Keras variable whose handle it is (tied weights: the walker's first path).

TensorFlow lowers ``einsum`` (``EinsumDense``, Keras' attention) to ``Transpose`` + ``Reshape`` +
``MatMul``: a (d, heads, head_dim) kernel is read as a (d, heads*head_dim) matrix. The tracer
folds those back into the ``contract`` node (``polyinit.structure.fold``), so a contract reads the
kernel's own axes (input d contracted, heads and head_dim free), as in the JAX trace of the same
layer.

>>> g = trace(keras_model, example_input(keras_model))                # doctest: +SKIP
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from polyinit.structure.einsum import parse_einsum
from polyinit.structure.fold import fold_contract
from polyinit.structure.fuse_norms import fuse_norms
from polyinit.structure.graph import Graph
from polyinit.structure.jaxpr import prune
from polyinit.structure.repeats import Repeats

BINARY = {
    "AddV2": "add",
    "Add": "add",
    "BiasAdd": "add",
    "Sub": "sub",
    "Mul": "mul",
    "RealDiv": "div",
    "Div": "div",
    "DivNoNan": "div",
    "Maximum": "max",
    "Minimum": "min",
}
UNARY = {
    "Relu": "relu",
    "Relu6": "relu6",
    "Elu": "elu",
    "Selu": "selu",
    "Gelu": "gelu",
    "Tanh": "tanh",
    "Sigmoid": "sigmoid",
    "Exp": "exp",
    "Log": "log",
    "Rsqrt": "rsqrt",
    "Sqrt": "sqrt",
    "Neg": "neg",
    "Square": "square",
    "Erf": "erf",
    "Softplus": "softplus",
    "Abs": "abs",
    "Reciprocal": "reciprocal",
    "Sin": "sin",
    "Cos": "cos",
    "Softsign": "softsign",
    "LeakyRelu": "leaky_relu",
}
MOVES = {
    "Reshape": "reshape",
    "ExpandDims": "reshape",
    "Squeeze": "reshape",
    "BroadcastTo": "broadcast",
    "Cast": "convert",
    "Identity": "convert",
    "StopGradient": "convert",
    "EnsureShape": "convert",
    "PreventGradient": "convert",
    "Snapshot": "convert",
}
REDUCE = {"Mean": "mean", "Sum": "sum", "Max": "max", "Min": "min", "Prod": "prod"}
MATMUL = ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "BatchMatMul")


def is_keras_tf(model: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.layers.Layer) and keras.backend.backend() == "tensorflow"


def example_input(model: Any) -> Any | None:
    """The model's declared inputs as arrays (``polyinit.structure.keras_input``), or None."""
    from polyinit.structure.keras_input import example_input as keras_example

    return keras_example(model)


def trace(model: Any, example_input: Any) -> Graph:
    """The graph of the Keras ``model`` called on ``example_input`` (an array, a tuple of
    positional inputs, or a dict of named inputs) with ``training=False``. ``input`` nodes are
    numbered in ``tf.nest.flatten(example_input)`` order (a dict's keys sorted).

    >>> g = trace(model, {"token_ids": ids, "padding_mask": mask})       # doctest: +SKIP
    """
    import keras

    backend = keras.backend.backend()
    if backend == "jax":  # the dispatcher's table knows "keras"; its backend decides the tracer
        from polyinit.structure import trace_jax

        return trace_jax.trace(model, example_input)
    if backend == "torch":
        from polyinit.structure import trace_keras_torch

        return trace_keras_torch.trace(model, example_input)
    if backend != "tensorflow":
        raise TypeError(
            f"trace_tf: no structure tracer for Keras on the {backend} backend (tensorflow, jax and torch are traced)"
        )
    check_input(example_input)
    import tensorflow as tf

    from polyinit.frameworks.keras import KerasWalker

    walker = KerasWalker()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unregistered layer types: reported by model_context, not here
        walker.walk(model)
    by_handle = {id(v.value.handle): path for path, v in walker.variables.items()}
    inputs = tf.nest.map_structure(tf.convert_to_tensor, example_input)
    positional = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    # Identical blocks are built into the TF graph once and replayed by the converter (repeats.py)
    sharing = Repeats(model, {id(v): path for path, v in walker.variables.items()})
    # autograph off: Keras 3 layers are backend-neutral Python, nothing for it to convert, and it costs
    forward = tf.function(lambda *xs: model(*xs, training=False), autograph=False)
    with sharing.installed():
        concrete = forward.get_concrete_function(*positional)
    handles = {internal.name: by_handle.get(id(external)) for external, internal in concrete.graph.captures}
    flat = [t.name for t in concrete.inputs if t.name not in handles]
    converter = _Converter(handles, flat, sharing.stubs())
    return fuse_norms(converter.run(concrete.graph, concrete.outputs))


def check_input(example_input: Any) -> None:
    """Refuse an input a forward pass cannot take: it must be an array (anything with ``shape``
    and ``dtype``), or a tuple, list or dict of them."""
    from polyinit.structure.keras_input import array_leaves

    if not array_leaves(example_input):
        raise TypeError(
            f"expected an array, or a tuple, list or dict of arrays, received a {type(example_input).__name__}"
        )


class _Converter:
    def __init__(self, handles: dict, inputs: list, stubs: dict | None = None):
        self.g, self.handles, self.inputs = Graph(), handles, inputs
        self.env: Any = {}  # tensor name -> node id
        self.params: dict = {}  # parameter path -> node id (one node however often it is read)
        self.stubs = stubs or {}  # first op index of a stubbed repeat -> its Call (repeats.py)

    def run(self, tf_graph: Any, outputs: list) -> Graph:
        ops = tf_graph.get_operations()
        i = 0
        while i < len(ops):
            stub = self.stubs.get(i)
            if stub is None:
                self.operation(ops[i])
                i += 1
            else:
                self.replay(ops, stub)
                i = max(stub.stop, i + 1)
        self.g.outputs = tuple(self.env[t.name] for t in outputs if t.name in self.env)
        return prune(self.g)

    def replay(self, ops: list, stub: Any) -> None:
        """The template's ops converted again, reading the stub's inputs and the stub layer's
        variables: the nodes the stubbed call would have given."""
        from collections import ChainMap

        template = stub.template
        outer, handles = self.env, self.handles
        local = {t.name: self.node(s) for t, s in zip(template.inputs, stub.inputs)}
        inside = {t.name for op in ops[template.start : template.stop] for t in op.outputs}
        # new nodes land in local; a tensor made outside the template is read where it was made
        self.env = ChainMap(local, {k: v for k, v in outer.items() if k not in inside})
        self.handles = {name: stub.paths.get(path, path) for name, path in handles.items()}
        try:
            for op in ops[template.start : template.stop]:
                self.operation(op)
            produced = [None if t is None else self.node(t) for t in template.outputs]
        finally:
            self.env, self.handles = outer, handles
        for tensor, node in zip(stub.outputs, produced):
            if tensor is not None:
                self.env[tensor.name] = node

    def node(self, tensor: Any) -> int:
        if tensor.name not in self.env:
            self.env[tensor.name] = self.g.add("const", (), _shape(tensor))
        return self.env[tensor.name]

    def param(self, handle: Any, shape: tuple) -> int:
        path = self.handles.get(handle.name)
        if path is None:
            return self.g.add("const", (), shape)
        if path not in self.params:
            self.params[path] = self.g.add("param", (), shape, path=path)
        return self.params[path]

    def operation(self, op: Any) -> None:
        kind, g = op.type, self.g
        if not op.outputs:
            return
        out = op.outputs[0]
        shape = _shape(out)
        if kind == "Placeholder":
            if out.name in self.inputs:
                self.env[out.name] = g.add("input", (), shape, index=self.inputs.index(out.name))
            return  # a captured handle: read through ReadVariableOp
        if kind == "ReadVariableOp":
            self.env[out.name] = self.param(op.inputs[0], shape)
            return
        if kind == "Const":
            return  # made on first use (see node): unused constants never enter the graph
        if kind == "ResourceGather":
            table = self.param(op.inputs[0], _shape(op.inputs[0]) or ())
            self.env[out.name] = g.add("gather", (table, self.node(op.inputs[1])), shape, axis=0)
            return
        made = self.known(op, kind, shape)
        if made is None:
            ins = tuple(self.node(t) for t in op.inputs if t.dtype.name != "resource")
            for tensor in op.outputs:
                self.env[tensor.name] = g.add("other", ins, _shape(tensor), name=kind)
        elif isinstance(made, list):
            for tensor, node in zip(op.outputs, made):
                self.env[tensor.name] = node
        else:
            self.env[out.name] = made

    def known(self, op: Any, kind: str, shape: tuple) -> Any:
        g, x = self.g, op.inputs
        if kind in BINARY:
            return g.add(BINARY[kind], (self.node(x[0]), self.node(x[1])), shape)
        if kind == "SquaredDifference":
            diff = g.add("sub", (self.node(x[0]), self.node(x[1])), shape)
            return g.add("unary", (diff,), shape, fn="square")
        if kind in UNARY:
            return g.add("unary", (self.node(x[0]),), shape, fn=UNARY[kind])
        if kind == "Pow" and _static(x[1]) is not None and _static(x[1]).size == 1:
            y = float(_static(x[1]).reshape(()))
            fn = "square" if y == 2 else "sqrt" if y == 0.5 else f"pow{y:g}"
            return g.add("unary", (self.node(x[0]),), shape, fn=fn)
        if kind in MOVES:
            return g.add(MOVES[kind], (self.node(x[0]),), shape)
        if kind == "Transpose" and _static(x[1]) is not None:
            return g.add("transpose", (self.node(x[0]),), shape, perm=tuple(int(p) for p in _static(x[1])))
        if kind in REDUCE and _static(x[1]) is not None:
            rank = len(_shape(x[0]))
            axes = tuple(sorted({int(a) % rank for a in _static(x[1]).reshape(-1)}))
            return g.add("reduce", (self.node(x[0]),), shape, fn=REDUCE[kind], axes=axes)
        if kind == "Softmax":
            return g.add("softmax", (self.node(x[0]),), shape, axis=len(shape) - 1)
        if kind in MATMUL:
            return self.matmul(op, shape)
        if kind == "Einsum" and len(x) == 2:
            return self.einsum(op.get_attr("equation").decode(), x, shape)
        if kind == "GatherV2" and _static(x[2]) is not None:
            axis = int(_static(x[2])) % len(_shape(x[0]))
            return g.add("gather", (self.node(x[0]), self.node(x[1])), shape, axis=axis)
        if kind in ("ConcatV2", "Concat"):
            values, axis = (x[:-1], x[-1]) if kind == "ConcatV2" else (x[1:], x[0])
            if _static(axis) is not None:
                return g.add("concat", tuple(self.node(t) for t in values), shape, axis=int(_static(axis)) % len(shape))
        if kind in ("Split", "SplitV"):
            return self.split(op, kind)
        if kind in ("Slice", "StridedSlice"):
            return self.slice(op, kind)
        if kind.startswith("FusedBatchNorm"):
            return [
                g.add("norm", tuple(self.node(t) for t in x[:3]), _shape(op.outputs[0]), fn="batch", axes=(0, 1, 2))
            ] + [g.add("other", (), _shape(t), name=kind) for t in op.outputs[1:]]
        return None

    def matmul(self, op: Any, shape: tuple) -> int | None:
        a, b = op.inputs[0], op.inputs[1]
        ra, rb = len(_shape(a)), len(_shape(b))
        if op.type == "MatMul":
            ta, tb = op.get_attr("transpose_a"), op.get_attr("transpose_b")
        else:
            ta, tb = op.get_attr("adj_x"), op.get_attr("adj_y")
        if ra != rb and rb != 2:
            return None  # a batch broadcast dot_general cannot say
        # Equal ranks: the leading axes are batch axes; a rank-2 right operand broadcasts over a's
        # leading axes, which stay free (TF's Dense and EinsumDense lowering). With one free axis
        # per side, dot_general's output order is matmul's, adjoints included.
        batch = (tuple(range(ra - 2)), tuple(range(rb - 2))) if ra == rb else ((), ())
        contract = ((ra - 2 if ta else ra - 1,), (rb - 1 if tb else rb - 2,))
        out = fold_contract(self.g, self.node(a), self.node(b), contract, batch)
        return out if self.g[out].shape == shape else self.g.add("broadcast", (out,), shape)

    def einsum(self, equation: str, x: Any, shape: tuple) -> int | None:
        parsed = parse_einsum(equation)
        if parsed is None:
            return None
        contract, batch, perm = parsed
        out = fold_contract(self.g, self.node(x[0]), self.node(x[1]), contract, batch)
        return out if perm == tuple(range(len(perm))) else self.g.add("transpose", (out,), shape, perm=perm)

    def split(self, op: Any, kind: str) -> list | None:
        x = op.inputs[1] if kind == "Split" else op.inputs[0]
        axis_tensor = op.inputs[0] if kind == "Split" else op.inputs[2]
        if _static(axis_tensor) is None:
            return None
        axis, start, outs = int(_static(axis_tensor)) % len(_shape(x)), 0, []
        for tensor in op.outputs:
            size = _shape(tensor)[axis]
            outs.append(
                self.g.add("slice", (self.node(x),), _shape(tensor), axis=axis, start=start, stop=start + size, step=1)
            )
            start += size
        return outs

    def slice(self, op: Any, kind: str) -> int | None:
        x = op.inputs[0]
        begin, second = _static(op.inputs[1]), _static(op.inputs[2])
        if begin is None or second is None:
            return None
        full = _shape(x)
        if kind == "Slice":
            stops = [len_ if size == -1 else b + size for b, size, len_ in zip(begin, second, full)]
            steps = [1] * len(full)
        else:
            masks = [op.get_attr(m) for m in ("ellipsis_mask", "new_axis_mask", "shrink_axis_mask")]
            strides = _static(op.inputs[3])
            if any(masks) or strides is None or len(begin) != len(full):
                return None
            b_mask, e_mask = op.get_attr("begin_mask"), op.get_attr("end_mask")
            begin = [0 if b_mask >> i & 1 else int(v) for i, v in enumerate(begin)]
            stops = [full[i] if e_mask >> i & 1 else int(v) for i, v in enumerate(second)]
            steps = [int(s) for s in strides]
        node, current = self.node(x), list(full)
        for axis, (start, stop, step) in enumerate(zip(begin, stops, steps)):
            start, stop = int(start) % (full[axis] or 1) if start < 0 else int(start), min(int(stop), full[axis])
            if (start, stop, step) != (0, full[axis], 1):
                current[axis] = len(range(start, stop, step))
                node = self.g.add("slice", (node,), tuple(current), axis=axis, start=start, stop=stop, step=step)
        return node


def _shape(tensor: Any) -> tuple:
    dims = tensor.shape.as_list() if tensor.shape.rank is not None else []
    return tuple(-1 if d is None else int(d) for d in dims)


def _static(tensor: Any) -> Any:
    import numpy as np
    import tensorflow as tf

    value = tf.get_static_value(tensor)
    return None if value is None else np.asarray(value)
