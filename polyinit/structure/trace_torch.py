"""The torch tracer: one forward pass under a ``TorchFunctionMode`` recorded as a :class:`Graph`.

Every torch function the model calls (``F.linear``, ``matmul``, ``einsum``,
``scaled_dot_product_attention``, ``embedding``, ``layer_norm``, ``rms_norm``, the elementwise,
reduction and movement ops, ``Tensor.__getitem__``, ``split``...) becomes a node; a tensor is
known by its identity, so a parameter read through ``.t()``, a view or a slice stays traceable to
its path (the walker's ``Param.path``: the first ``module.name`` that holds it).
``F.multi_head_attention_forward`` (``nn.MultiheadAttention``) is spelled out as its projections
(slices of the packed ``in_proj_weight``), attention and output projection. The model runs in eval
mode under ``no_grad`` and its training flags are restored: nothing in the model changes.

>>> import torch
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
>>> graph = trace(model, torch.zeros(2, 4))
>>> [n.op for n in graph][:4]
['input', 'param', 'contract', 'param']
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from polyinit.structure.einsum import parse_einsum
from polyinit.structure.graph import Graph
from polyinit.writing import is_dtensor

_TOKENS = 8  # a short input: structure does not depend on the sequence length

_BINARY = {
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "div": "div",
    "truediv": "div",
    "true_divide": "div",
    "maximum": "max",
    "minimum": "min",
    "floordiv": "div",
    "multiply": "mul",
    "subtract": "sub",
    "divide": "div",
}
_REVERSED = {"radd": "add", "rsub": "sub", "rmul": "mul", "rtruediv": "div", "rdiv": "div"}
_UNARY = (
    "relu",
    "gelu",
    "silu",
    "tanh",
    "exp",
    "rsqrt",
    "sqrt",
    "neg",
    "sigmoid",
    "square",
    "log",
    "abs",
    "erf",
    "softplus",
    "mish",
    "relu6",
    "leaky_relu",
    "elu",
    "hardswish",
    "hardtanh",
    "sin",
    "cos",
    "reciprocal",
    "clamp",
    "clip",
    "gelu_new",
    "quick_gelu",
    "logsigmoid",
    "glu",
    "selu",
)
_CONVERT = (
    "to",
    "float",
    "half",
    "double",
    "bfloat16",
    "type",
    "type_as",
    "clone",
    "detach",
    "data",
    "contiguous",
    "dropout",
    "dropout1d",
    "dropout2d",
    "alpha_dropout",
    "feature_alpha_dropout",
    "cpu",
    "cuda",
)
_RESHAPE = ("view", "reshape", "flatten", "unflatten", "unsqueeze", "squeeze", "view_as", "reshape_as")
_BROADCAST = ("expand", "expand_as", "broadcast_to")
_REDUCE = {"mean": "mean", "sum": "sum", "amax": "max", "max": "max", "var": "var", "std": "std", "norm": "norm"}
_NORMS = {
    "layer_norm": "layer",
    "rms_norm": "rms",
    "group_norm": "group",
    "batch_norm": "batch",
    "instance_norm": "instance",
}


def _name(func: Any) -> str:
    name = getattr(func, "__name__", "") or ""
    if name in ("__get__", "__set__"):  # a property: Tensor.T, Tensor.mT; a setter (t.data = v) is "data="
        owner = getattr(func, "__self__", None)
        name = (getattr(owner, "__name__", "") or "") + ("=" if name == "__set__" else "")
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name.startswith("i") and name[1:] in _BINARY:
            name = name[1:]
    elif name.endswith("_") and not name.startswith("_"):
        name = name[:-1]  # in place: add_ is add
    return name


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)
    elif hasattr(value, "to_tuple"):  # transformers' ModelOutput
        yield from _tensors(value.to_tuple())


def _unwrapped(value: Any, unwrap: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrapped(v, unwrap) for v in value)
    return value if isinstance(value, torch.Tensor) else unwrap(value)


class _Recorder(TorchFunctionMode):
    """Records every torch function call into ``graph``; tensors are known by identity."""

    def __init__(self, graph: Graph, paths: dict, unwrap: Any = None):
        super().__init__()
        self.g, self.paths, self.unwrap = graph, paths, unwrap
        self.nodes: dict[int, tuple[torch.Tensor, int]] = {}

    def node(self, value: Any) -> int:
        """The node of a tensor (a parameter node for a model tensor, a const for a new one) or
        of a Python number (a const)."""
        if isinstance(value, torch.Tensor):
            known = self.nodes.get(id(value))
            if known is not None and known[0] is value:
                return known[1]
            path = self.paths.get(id(value))
            if path is not None:
                return self.bind(value, self.g.add("param", (), tuple(value.shape), path=path))
            return self.bind(value, self.g.add("const", (), tuple(value.shape)))
        return self.g.add("const", (), ())

    def bind(self, tensor: torch.Tensor, node: int) -> int:
        self.nodes[id(tensor)] = (tensor, node)
        return node

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.unwrap is not None:  # tensor wrappers that reach torch functions (Keras variables)
            args = tuple(_unwrapped(a, self.unwrap) for a in args)
            kwargs = {k: _unwrapped(v, self.unwrap) for k, v in kwargs.items()}
        if _name(func) == "data=":  # t.data = v: t now holds v's value (megatron-core's make_viewless_tensor)
            self.bind(args[0], self.node(args[1]))
            return out
        try:
            self.record(_name(func), args, kwargs, out)
        except Exception:
            self.other(_name(func), args, kwargs, out)
        return out

    # -- recording -------------------------------------------------------------------------
    def add(self, op: str, inputs: list, out: torch.Tensor, **attrs: Any) -> int:
        return self.bind(out, self.g.add(op, tuple(inputs), tuple(out.shape), **attrs))

    def other(self, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        inputs = [self.node(t) for t in _tensors((args, kwargs))]
        for t in _tensors(out):
            self.add("other", inputs, t, name=name)

    def record(self, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        if not any(True for _ in _tensors(out)):
            return
        handler = _HANDLERS.get(name)
        if handler is not None:
            handler(self, args, kwargs, out)
        elif name in _BINARY or name in _REVERSED:
            a, b = args[0], args[1] if len(args) > 1 else kwargs.get("other")
            if name in _REVERSED:
                a, b = b, a
            self.add(_BINARY.get(name) or _REVERSED[name], [self.node(a), self.node(b)], out)
        elif name in _UNARY:
            self.add("unary", [self.node(args[0])], out, fn=name)
        elif name in _CONVERT:
            if out is not args[0]:  # x.to(its own dtype) is x: no node (Keras casts every operand)
                self.add("convert", [self.node(args[0])], out, name=name)
        elif name in _RESHAPE:
            self.add("reshape", [self.node(args[0])], out)
        elif name in _BROADCAST:
            self.add("broadcast", [self.node(args[0])], out)
        elif name in _REDUCE and isinstance(out, torch.Tensor):
            dims = args[1] if len(args) > 1 else kwargs.get("dim", ())
            dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
            rank = max(args[0].dim(), 1)
            axes = tuple(sorted(int(d) % rank for d in dims))
            self.add("reduce", [self.node(args[0])], out, fn=_REDUCE[name], axes=axes)
        elif name in _NORMS:
            self.norm(name, args, kwargs, out)
        else:
            self.other(name, args, kwargs, out)

    def contract(
        self,
        a: Any,
        b: Any,
        out: torch.Tensor,
        ca: Sequence[int],
        cb: Sequence[int],
        ba: Sequence[int] = (),
        bb: Sequence[int] = (),
    ) -> int:
        return self.add(
            "contract", [self.node(a), self.node(b)], out, contract=(tuple(ca), tuple(cb)), batch=(tuple(ba), tuple(bb))
        )

    def biased(self, node: int, bias: Any, out: torch.Tensor) -> None:
        """``node`` then ``+ bias``: the op's output value is the add."""
        if bias is None:
            return
        self.bind(out, self.g.add("add", (node, self.node(bias)), tuple(out.shape)))

    def lerp(self, args: tuple, kwargs: dict, out: Any) -> None:
        """``lerp(start, end, w) = start + w * (end - start)``, written out so that an nGPT block's
        update ``lerp(h, norm(f(h)), alpha)`` is the residual add it is."""
        start, end = args[0], args[1] if len(args) > 1 else kwargs["end"]
        weight = args[2] if len(args) > 2 else kwargs["weight"]
        shape = tuple(out.shape)
        step = self.g.add("sub", (self.node(end), self.node(start)), shape)
        scaled = self.g.add("mul", (self.node(weight), step), shape)
        self.bind(out, self.g.add("add", (self.node(start), scaled), shape))

    def linear(self, args: tuple, kwargs: dict, out: Any) -> None:
        x, w = args[0], args[1] if len(args) > 1 else kwargs["weight"]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        node = self.contract(x, w, out, (x.dim() - 1,), (1,))
        self.biased(node, bias, out)

    def matmul(self, args: tuple, kwargs: dict, out: Any) -> None:
        a, b = args[0], args[1]
        if a.dim() < 2 or b.dim() < 2:
            return self.other("matmul", args, kwargs, out)
        batch = tuple(range(a.dim() - 2)) if a.dim() == b.dim() else ()
        self.contract(a, b, out, (a.dim() - 1,), (b.dim() - 2,), batch, batch)

    def rmatmul(self, args: tuple, kwargs: dict, out: Any) -> None:
        self.matmul((args[1], args[0]), kwargs, out)

    def addmm(self, args: tuple, kwargs: dict, out: Any) -> None:
        bias, a, b = args[:3]
        batch = (0,) if a.dim() == 3 else ()
        node = self.contract(a, b, out, (a.dim() - 1,), (b.dim() - 2,), batch, batch)
        self.biased(node, bias, out)

    def einsum(self, args: tuple, kwargs: dict, out: Any) -> None:
        """A two-operand einsum as a contract (batch, a's free, b's free axes) and, where the
        equation orders its output otherwise (Keras' ``aecd,abcd->acbe`` score), a transpose."""
        equation, operands = args[0], args[1:]
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = tuple(operands[0])
        parsed = parse_einsum(equation) if len(operands) == 2 else None
        if parsed is None:
            return self.other("einsum", args, kwargs, out)
        contract, batch, perm = parsed
        if perm == tuple(range(len(perm))):
            self.contract(operands[0], operands[1], out, *contract, *batch)
            return
        natural = [0] * len(perm)
        for axis, source in enumerate(perm):
            natural[source] = out.shape[axis]
        node = self.g.add(
            "contract",
            (self.node(operands[0]), self.node(operands[1])),
            tuple(natural),
            contract=contract,
            batch=batch,
        )
        self.add("transpose", [node], out, perm=perm)

    def attention(self, args: tuple, kwargs: dict, out: Any) -> None:
        q, k, v = (args[i] if len(args) > i else kwargs[n] for i, n in enumerate(("query", "key", "value")))
        mask = args[3] if len(args) > 3 else kwargs.get("attn_mask")
        inputs = [self.node(q), self.node(k), self.node(v)] + ([self.node(mask)] if mask is not None else [])
        self.add("attention", inputs, out if isinstance(out, torch.Tensor) else out[0])

    def embedding(self, args: tuple, kwargs: dict, out: Any) -> None:
        indices, table = args[0], args[1] if len(args) > 1 else kwargs["weight"]
        self.add("gather", [self.node(table), self.node(indices)], out, axis=0)

    def norm(self, name: str, args: tuple, kwargs: dict, out: Any) -> None:
        x = args[0]
        if name == "batch_norm":
            scale = args[3] if len(args) > 3 else kwargs.get("weight")
            offset = args[4] if len(args) > 4 else kwargs.get("bias")
        elif name == "rms_norm":
            scale, offset = (args[2] if len(args) > 2 else kwargs.get("weight")), None
        else:
            scale = args[2] if len(args) > 2 else kwargs.get("weight")
            offset = args[3] if len(args) > 3 else kwargs.get("bias")
        inputs = [self.node(x)] + [self.node(t) if t is not None else self.node(0.0) for t in (scale, offset)]
        self.add("norm", inputs, out, fn=_NORMS[name], axes=(x.dim() - 1,))

    def conv(self, args: tuple, kwargs: dict, out: Any) -> None:
        x, w = args[0], args[1] if len(args) > 1 else kwargs["weight"]
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        node = self.add("conv", [self.node(x), self.node(w)], out, in_axis=1, out_axis=0)
        self.biased(node, bias, out)

    def softmax(self, args: tuple, kwargs: dict, out: Any) -> None:
        dim = args[1] if len(args) > 1 else kwargs.get("dim", -1)
        self.add("softmax", [self.node(args[0])], out, axis=int(dim) % max(out.dim(), 1))

    def transpose(self, args: tuple, kwargs: dict, out: Any) -> None:
        x, n = args[0], args[0].dim()
        perm = list(range(n))
        if n >= 2:
            if len(args) >= 3:
                i, j = int(args[1]) % n, int(args[2]) % n
            else:  # t(), T, mT: the last two axes
                i, j = n - 2, n - 1
            perm[i], perm[j] = perm[j], perm[i]
        self.add("transpose", [self.node(x)], out, perm=tuple(perm))

    def permute(self, args: tuple, kwargs: dict, out: Any) -> None:
        dims = args[1:] if len(args) > 2 or not isinstance(args[1], (list, tuple)) else args[1]
        n = args[0].dim()
        self.add("transpose", [self.node(args[0])], out, perm=tuple(int(d) % n for d in dims))

    def movedim(self, args: tuple, kwargs: dict, out: Any) -> None:
        """``movedim(x, source, destination)`` as the transpose it is."""
        x = args[0]
        source = args[1] if len(args) > 1 else kwargs["source"]
        destination = args[2] if len(args) > 2 else kwargs["destination"]
        source = [source] if isinstance(source, int) else list(source)
        destination = [destination] if isinstance(destination, int) else list(destination)
        n = x.dim()
        moved = {int(d) % n: int(s) % n for s, d in zip(source, destination)}
        rest = iter(a for a in range(n) if a not in moved.values())
        perm = tuple(moved[i] if i in moved else next(rest) for i in range(n))
        self.add("transpose", [self.node(x)], out, perm=perm)

    def getitem(self, args: tuple, kwargs: dict, out: Any) -> None:
        """Basic slicing (``x[a:b]``, ``x[..., :n]``, ``x[0:8, 0:16]``: Keras' ``ops.slice`` on
        torch) as one slice node per axis it cuts; new axes with every other axis whole
        (``x[:, None]``) as a reshape; anything else (integers, masks) is an ``other`` node."""
        x, index = args[0], args[1]
        index = index if isinstance(index, tuple) else (index,)
        if index.count(Ellipsis) == 1:  # x[..., :n]: the ellipsis stands for the full axes
            at = index.index(Ellipsis)
            fill = x.dim() - (len(index) - 1 - sum(i is None for i in index))
            index = index[:at] + (slice(None),) * fill + index[at + 1 :]
        whole = [i is None or (isinstance(i, slice) and i == slice(None)) for i in index]
        if any(i is None for i in index) and all(whole):
            # x[:, :, None]: new axes only, the values as they are (transformers' repeat_kv)
            self.add("reshape", [self.node(x)], out)
            return
        if len(index) > x.dim() or not all(isinstance(i, slice) for i in index):
            self.other("getitem", (x,) + tuple(i for i in index if isinstance(i, torch.Tensor)), {}, out)
            return
        node, shape = self.node(x), list(x.shape)
        for axis, cut in enumerate(index):
            start, stop, step = cut.indices(x.shape[axis])
            if (start, stop, step) == (0, x.shape[axis], 1):
                continue
            shape[axis] = len(range(start, stop, step))
            node = self.g.add("slice", (node,), tuple(shape), axis=axis, start=start, stop=stop, step=step)
        self.bind(out, node if node != self.node(x) else self.g.add("convert", (node,), tuple(out.shape)))

    def pieces(self, args: tuple, kwargs: dict, out: Any, dim_at: int) -> None:
        x = args[0]
        dim = args[dim_at] if len(args) > dim_at else kwargs.get("dim", 0)
        axis, start, source = int(dim) % x.dim(), 0, self.node(x)
        for piece in out:
            stop = start + piece.shape[axis]
            self.add("slice", [source], piece, axis=axis, start=start, stop=stop, step=1)
            start = stop

    def split(self, args: tuple, kwargs: dict, out: Any) -> None:
        self.pieces(args, kwargs, out, 2)

    def unbind(self, args: tuple, kwargs: dict, out: Any) -> None:
        x = args[0]
        dim = int(args[1] if len(args) > 1 else kwargs.get("dim", 0)) % x.dim()
        source = self.node(x)
        for i, piece in enumerate(out):
            shape = list(x.shape)
            shape[dim] = 1
            cut = self.g.add("slice", (source,), tuple(shape), axis=dim, start=i, stop=i + 1, step=1)
            self.bind(piece, self.g.add("reshape", (cut,), tuple(piece.shape)))

    def repeat_interleave(self, args: tuple, kwargs: dict, out: Any) -> None:
        """``x.repeat_interleave(r, dim)`` as unsqueeze, broadcast, reshape (GQA's shared k/v)."""
        x, repeats = args[0], args[1] if len(args) > 1 else kwargs.get("repeats")
        dim = args[2] if len(args) > 2 else kwargs.get("dim")
        if not isinstance(repeats, int) or dim is None:
            return self.other("repeat_interleave", args, kwargs, out)
        axis = int(dim) % x.dim()
        shape = list(x.shape)
        shape.insert(axis + 1, 1)
        grown = self.g.add("reshape", (self.node(x),), tuple(shape))
        shape[axis + 1] = repeats
        grown = self.g.add("broadcast", (grown,), tuple(shape))
        self.bind(out, self.g.add("reshape", (grown,), tuple(out.shape)))

    def multi_head_attention(self, args: tuple, kwargs: dict, out: Any) -> None:
        """``F.multi_head_attention_forward`` (``nn.MultiheadAttention``) spelled out: q, k, v
        projections (rows [iE, (i+1)E) of a packed ``in_proj_weight``, or separate weights), the
        attention, the output projection."""
        bound = inspect.signature(torch.nn.functional.multi_head_attention_forward).bind(*args, **kwargs)
        a = bound.arguments
        result = out[0]
        embed = int(a["embed_dim_to_check"])
        slots = []
        owns = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
        for i, (x, own) in enumerate(zip((a["query"], a["key"], a["value"]), owns)):
            rows = {"axis": 0, "start": i * embed, "stop": (i + 1) * embed, "step": 1}
            if a.get("use_separate_proj_weight") and a.get(own) is not None:
                weight = self.node(a[own])
            else:
                weight = self.g.add("slice", (self.node(a["in_proj_weight"]),), (embed, x.shape[-1]), **rows)
            shape = tuple(x.shape[:-1]) + (embed,)
            node = self.g.add(
                "contract", (self.node(x), weight), shape, contract=((x.dim() - 1,), (1,)), batch=((), ())
            )
            if a.get("in_proj_bias") is not None:
                bias = self.g.add("slice", (self.node(a["in_proj_bias"]),), (embed,), **rows)
                node = self.g.add("add", (node, bias), shape)
            slots.append(node)
        mixed = self.g.add("attention", tuple(slots), tuple(result.shape[:-1]) + (embed,))
        node = self.g.add(
            "contract",
            (mixed, self.node(a["out_proj_weight"])),
            tuple(result.shape),
            contract=((result.dim() - 1,), (1,)),
            batch=((), ()),
        )
        if a.get("out_proj_bias") is not None:
            node = self.g.add("add", (node, self.node(a["out_proj_bias"])), tuple(result.shape))
        self.bind(result, node)

    def pow(self, args: tuple, kwargs: dict, out: Any) -> None:
        """``x ** y`` with a number ``y``: ``square`` and ``sqrt`` by name (a norm written out as
        ``mean(x ** 2)``, Keras' ``ops.power`` on torch), else ``pow<y>``."""
        x, y = args[0], args[1] if len(args) > 1 else kwargs.get("exponent")
        if isinstance(y, torch.Tensor) and y.numel() == 1:
            y = y.item()
        if not isinstance(x, torch.Tensor) or not isinstance(y, (int, float)):
            return self.other("pow", args, kwargs, out)
        fn = "square" if y == 2 else "sqrt" if y == 0.5 else f"pow{float(y):g}"
        self.add("unary", [self.node(x)], out, fn=fn)

    def narrow(self, args: tuple, kwargs: dict, out: Any) -> None:
        x, dim, start, length = args[:4]
        axis = int(dim) % x.dim()
        self.add("slice", [self.node(x)], out, axis=axis, start=int(start), stop=int(start) + int(length), step=1)

    def cat(self, args: tuple, kwargs: dict, out: Any) -> None:
        tensors = list(args[0])
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        self.add("concat", [self.node(t) for t in tensors], out, axis=int(dim) % out.dim())

    def stack(self, args: tuple, kwargs: dict, out: Any) -> None:
        tensors = list(args[0])
        axis = int(args[1] if len(args) > 1 else kwargs.get("dim", 0)) % out.dim()
        parts = []
        for t in tensors:
            shape = list(t.shape)
            shape.insert(axis, 1)
            parts.append(self.g.add("reshape", (self.node(t),), tuple(shape)))
        self.bind(out, self.g.add("concat", tuple(parts), tuple(out.shape), axis=axis))


_HANDLERS = {
    "linear": _Recorder.linear,
    "matmul": _Recorder.matmul,
    "mm": _Recorder.matmul,
    "bmm": _Recorder.matmul,
    "rmatmul": _Recorder.rmatmul,
    "addmm": _Recorder.addmm,
    "baddbmm": _Recorder.addmm,
    "einsum": _Recorder.einsum,
    "scaled_dot_product_attention": _Recorder.attention,
    "embedding": _Recorder.embedding,
    "conv1d": _Recorder.conv,
    "conv2d": _Recorder.conv,
    "conv3d": _Recorder.conv,
    "softmax": _Recorder.softmax,
    "log_softmax": _Recorder.softmax,
    "transpose": _Recorder.transpose,
    "swapaxes": _Recorder.transpose,
    "t": _Recorder.transpose,
    "T": _Recorder.transpose,
    "mT": _Recorder.transpose,
    "permute": _Recorder.permute,
    "movedim": _Recorder.movedim,
    "moveaxis": _Recorder.movedim,
    "getitem": _Recorder.getitem,
    "split": _Recorder.split,
    "chunk": _Recorder.split,
    "tensor_split": _Recorder.split,
    "split_with_sizes": _Recorder.split,
    "unbind": _Recorder.unbind,
    "narrow": _Recorder.narrow,
    "pow": _Recorder.pow,
    "multi_head_attention_forward": _Recorder.multi_head_attention,
    "repeat_interleave": _Recorder.repeat_interleave,
    "cat": _Recorder.cat,
    "concat": _Recorder.cat,
    "concatenate": _Recorder.cat,
    "stack": _Recorder.stack,
    "lerp": _Recorder.lerp,
}


def _paths(model: Any) -> dict:
    """id(tensor) -> the walker's path (the first ``prefix.name`` that holds it)."""
    paths: dict = {}
    for prefix, module in model.named_modules():
        own = list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))
        for leaf, tensor in own:
            if tensor is not None and id(tensor) not in paths:
                paths[id(tensor)] = f"{prefix}.{leaf}" if prefix else leaf
    return paths


def example_input(model: Any) -> Any | None:
    """A short input derived from the model: token ids for a model with a vocabulary in its
    ``config`` (transformers, litgpt) or a ``vocab_size`` attribute (olmo-core), pixels for a
    transformers vision config, (src, tgt) for ``nn.Transformer``, ``example_input_array``
    (Lightning), ``input_size`` or timm's ``pretrained_cfg``; else None.

    Token ids are ``arange(8) mod vocab`` (no random draw, no global RNG touched)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    given = getattr(model, "example_input_array", None)
    if given is not None:
        return given
    config = getattr(model, "config", None)
    sizes = (
        getattr(config, "padded_vocab_size", None),
        getattr(config, "vocab_size", None),
        getattr(model, "vocab_size", None),
    )
    vocab = next((v for v in sizes if isinstance(v, int) and not isinstance(v, bool)), None)
    if vocab:
        ids = (torch.arange(_TOKENS, device=device) % vocab).unsqueeze(0)
        if hasattr(config, "to_dict"):  # transformers: keyword inputs, no KV cache
            inputs = {"input_ids": ids, "use_cache": False}
            if getattr(config, "is_encoder_decoder", False):
                inputs["decoder_input_ids"] = ids
            return inputs
        return ids
    size = getattr(config, "image_size", None)
    if isinstance(size, int) and hasattr(config, "to_dict"):
        return {"pixel_values": torch.zeros(1, getattr(config, "num_channels", 3), size, size, device=device)}
    if isinstance(model, torch.nn.Transformer):  # (src, tgt) of width d_model
        dims = (1, _TOKENS, model.d_model) if model.batch_first else (_TOKENS, 1, model.d_model)
        x = torch.zeros(dims, device=device)
        return (x, x)
    shape = getattr(model, "input_size", None) or _timm_input_size(model)
    if isinstance(shape, (tuple, list)) and all(isinstance(d, int) for d in shape):
        return torch.zeros((1, *shape), device=device)
    return None


def guessed_input(model: Any) -> Any | None:
    """An input read off the model's first layer with parameters, for a model nothing else
    describes (``example_input`` gave None): an ``Embedding`` takes token ids ``arange(8) mod
    rows``, a ``Linear`` zeros ``(1, 8, in_features)``, a ``Conv1d``/``Conv2d`` zeros of its input
    channels at length or side 32; else None. It is a guess: the context falls back to names (and
    says so) where the model's forward pass does not run on it."""
    nn = torch.nn
    first = next((m for m in model.modules() if any(True for _ in m.parameters(recurse=False))), None)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if isinstance(first, nn.Embedding):
        return (torch.arange(_TOKENS, device=device) % first.num_embeddings).unsqueeze(0)
    if isinstance(first, nn.Linear):
        return torch.zeros(1, _TOKENS, first.in_features, device=device)
    if isinstance(first, (nn.Conv1d, nn.Conv2d)):
        spatial = (32,) * (1 if isinstance(first, nn.Conv1d) else 2)
        return torch.zeros(1, first.in_channels, *spatial, device=device)
    return None


def _timm_input_size(model: Any) -> tuple | None:
    """(channels, height, width) of a timm model: its ``pretrained_cfg["input_size"]``, with the
    height and width its patch embedding was built for (``img_size=`` overrides the config's)."""
    config = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    size = config.get("input_size") if isinstance(config, dict) else None
    if not (isinstance(size, (tuple, list)) and len(size) == 3):
        return None
    built = (getattr(m, "img_size", None) for m in model.modules())
    spatial = next((tuple(s) for s in built if isinstance(s, (tuple, list)) and len(s) == 2), tuple(size[1:]))
    return (size[0], *spatial)


def silent(model: Any) -> str | None:
    """Why this model's forward pass cannot be traced, or None. A model on the meta device is
    traced on meta or fake tensors (``trace``)."""
    if any(is_dtensor(p) for p in model.parameters()):
        # FSDP2 gathers the parameters for a forward pass (a collective every rank must join) and
        # leaves the root's gathered: tracing on a derived input would change the model.
        return "its parameters are sharded (DTensor, FSDP2): a forward pass would gather them"
    return None


def check_input(model: Any, example_input: Any) -> None:
    """Refuse an input the forward pass cannot take: a tensor, or a tuple/list/dict holding one."""
    if not any(True for _ in _tensors(example_input)):
        raise TypeError(
            f"expected a torch.Tensor, or a tuple, list or dict of them (keyword inputs), "
            f"received a {type(example_input).__name__}"
        )


def trace(model: Any, example_input: Any) -> Graph:
    """Run ``model`` once on ``example_input`` (a tensor: ``model(x)``; a tuple/list:
    ``model(*x)``; a dict: ``model(**x)``) and return the recorded graph. Raises what the
    forward pass raises (``polyinit.context`` turns it into a ``ContextError``).

    The pass runs on a stand-in where it can (``_on_stand_in``): a copy of the module tree whose
    parameters and buffers are meta tensors, without storage. The stand-in reads none of the
    model's memory, computes nothing, and whatever its forward pass caches stays in the copy.
    Reading matters: parameters fresh from ``to_empty`` are untouched pages, and a read maps them
    to the kernel's zero page, which every later write must copy. Where the forward pass needs
    values (``.item()``, a mask tested in Python: transformers), a model with storage runs itself
    on ``example_input``; a model on the meta device has none, so its stand-in runs again as
    torch's fake tensors (what ``torch.export`` traces with: such code recognises them and takes
    its tracing branch), and where that fails too ``StructureUnavailable`` is raised. No stand-in
    runs for a model with accelerate hooks or in a process that imported TensorFlow before triton
    (``_stand_ins_refused``)."""
    check_input(model, example_input)
    refused = _stand_ins_refused(model)
    why_not = refused
    if refused is None:
        try:
            return _on_stand_in(model, example_input, fake=False)
        except Exception:  # the forward needs values, or the module tree cannot be copied
            why_not = "it did not run on meta tensors"
    if any(t.device.type == "meta" for t in itertools.chain(model.parameters(), model.buffers())):
        from polyinit.structure import StructureUnavailable

        if refused is None:
            try:
                return _on_stand_in(model, example_input, fake=True)
            except Exception as problem:
                why_not = f"it did not run on meta or fake tensors ({type(problem).__name__})"
        raise StructureUnavailable(f"the model is on the meta device and its forward pass needs values: {why_not}")
    modes = {m: m.training for m in model.modules()}
    try:
        return _record_call(model, example_input)
    finally:
        for module, training in modes.items():
            module.training = training


def _stand_ins_refused(model: Any) -> str | None:
    """Why no stand-in may run for ``model`` in this process, or None. accelerate's offloading
    hooks hold the offloaded weights, which a copy of the module tree would copy. Meta tensors'
    Python decompositions and fake tensors import torch's compiler stack, triton included; triton
    carries its own LLVM, and where TensorFlow (which carries another) was imported first, LLVM
    registers its options twice and the process aborts."""
    import importlib.util
    import sys

    if any(hasattr(m, "_hf_hook") for m in model.modules()):
        return "no stand-in was tried: a module carries accelerate hooks, whose offloaded weights a copy would copy"
    if "tensorflow" in sys.modules and "triton" not in sys.modules and importlib.util.find_spec("triton"):
        return (
            "no stand-in was tried: TensorFlow is imported, and meta or fake tensors would import triton, whose "
            "LLVM aborts a process that loaded TensorFlow's first; import torch's triton before TensorFlow"
        )
    return None


def _record_call(model: Any, example_input: Any) -> Graph:
    """The graph of ``model`` in eval mode on ``example_input`` (unpacked as ``trace`` says)."""
    model.eval()
    args: tuple = ()
    kwargs: dict = {}
    if isinstance(example_input, dict):
        kwargs = example_input
    elif isinstance(example_input, (tuple, list)):
        args = tuple(example_input)
    else:
        args = (example_input,)
    return record(_paths(model), list(_tensors(example_input)), lambda: model(*args, **kwargs))


def _on_stand_in(model: Any, example_input: Any, fake: bool) -> Graph:
    """The graph of a stand-in for ``model``: a deep copy of its module tree whose parameters and
    buffers are new tensors without storage (tied ones stay tied, the walker's paths are the
    same, and whatever the forward pass caches stays in the copy), on a like input. Plain meta
    tensors, or where ``fake``, fake tensors on the tensors' own devices (a meta tensor's: the
    CPU), made inside a ``FakeTensorMode`` that the forward pass then runs in."""
    mode: Any = contextlib.nullcontext()
    if not fake:
        make: Any = lambda t: torch.empty_like(t, device="meta")
    else:
        from torch._subclasses.fake_tensor import FakeTensorMode

        # Tensors the forward makes outside the mode's reach (kept from __init__, built from
        # lists) are allowed, and made fake where they meet a fake one.
        mode = FakeTensorMode(allow_non_fake_inputs=True)

        def make(t: torch.Tensor) -> torch.Tensor:
            device = torch.device("cpu") if t.device.type == "meta" else t.device
            with mode:
                return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)

    memo: dict = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if id(tensor) not in memo:
            new = make(tensor)
            if isinstance(tensor, torch.nn.Parameter):
                new = torch.nn.Parameter(new, requires_grad=tensor.requires_grad)
            new.__dict__.update(getattr(tensor, "__dict__", {}))  # megatron's per-parameter flags
            memo[id(tensor)] = new
    stand_in = copy.deepcopy(model, memo)
    stand_in_input = _stand_in_values(example_input, make)
    with mode:
        return _record_call(stand_in, stand_in_input)


def _stand_in_values(value: Any, make: Any) -> Any:
    """``value`` with each tensor in it (nested tuples, lists, dicts) replaced by ``make(tensor)``."""
    if isinstance(value, torch.Tensor):
        return make(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_stand_in_values(v, make) for v in value)
    if isinstance(value, dict):
        return {k: _stand_in_values(v, make) for k, v in value.items()}
    return value


def record(paths: dict, inputs: Sequence[torch.Tensor], forward: Any, unwrap: Any = None) -> Graph:
    """The graph of ``forward()`` run under ``no_grad`` and the recorder: ``paths`` names the
    parameter tensors (id -> path), ``inputs`` become ``input`` nodes 0, 1, ... (shared by the
    Keras-on-torch tracer, whose variables are named by the Keras walker). ``unwrap`` maps an
    argument that is not a tensor to the tensor it stands for (a Keras variable to its
    ``value``), or returns it as it is."""
    graph = Graph()
    recorder = _Recorder(graph, paths, unwrap)
    for i, tensor in enumerate(inputs):
        recorder.bind(tensor, graph.add("input", (), tuple(tensor.shape), index=i))
    with torch.no_grad(), recorder:
        out = forward()
    graph.outputs = tuple(recorder.node(t) for t in _tensors(out) if id(t) in recorder.nodes)
    return graph
