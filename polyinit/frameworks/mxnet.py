"""MXNet: the Gluon walker (block tree, child order), the name -> array dict walker, module types,
presets. Values are drawn with the numpy backend and written as MXNet arrays."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from polyinit.frameworks import Framework, module_type_of, register_module_type
from polyinit.frameworks._walk import (
    ROLE_BY_NAME,
    Builder,
    assign_item,
    dtype_name,
    fused_rnn_types,
    role_by_name,
    write_or_restore,
)
from polyinit.layout import Layout
from polyinit.params import ModelError, ModuleType, Param, ParamType, grouped_view

if TYPE_CHECKING:  # typing only: selectors are imported where rules are built
    from polyinit.selectors import Selector

_G = "mxnet.gluon"
_DENSE = {"weight": ParamType("weight", "out in"), "bias": ParamType("bias", "out")}
_CONV = {"weight": ParamType("weight", "out in *"), "bias": ParamType("bias", "out")}
_NORM = ModuleType(
    "norm",
    {
        "gamma": ParamType("scale", "out"),
        "beta": ParamType("offset", "out"),
        "running_mean": ParamType("running_mean", "out"),
        "running_var": ParamType("running_var", "out"),
    },
)
for _path, _entry in {
    f"{_G}.nn.basic_layers.Dense": ModuleType("dense", _DENSE),
    f"{_G}.nn.conv_layers._Conv": ModuleType("conv", _CONV),
    f"{_G}.nn.conv_layers.Conv1DTranspose": ModuleType("conv_transpose", _CONV),
    f"{_G}.nn.conv_layers.Conv2DTranspose": ModuleType("conv_transpose", _CONV),
    f"{_G}.nn.conv_layers.Conv3DTranspose": ModuleType("conv_transpose", _CONV),
    f"{_G}.nn.basic_layers.Embedding": ModuleType("embedding", {"weight": ParamType("embedding", "in out")}),
    f"{_G}.nn.basic_layers._BatchNorm": _NORM,
    f"{_G}.nn.basic_layers.BatchNorm": _NORM,
    f"{_G}.nn.basic_layers.LayerNorm": _NORM,
    f"{_G}.nn.basic_layers.InstanceNorm": _NORM,
    f"{_G}.nn.basic_layers.GroupNorm": _NORM,
    f"{_G}.rnn.rnn_layer._RNNLayer": ModuleType("recurrent", {"*": ParamType("weight", "out in")}),
    f"{_G}.rnn.rnn_cell.HybridRecurrentCell": ModuleType("recurrent", {"*": ParamType("weight", "out in")}),
}.items():
    register_module_type(_path, _entry)

_SUFFIXES = sorted(ROLE_BY_NAME, key=len, reverse=True)


# Private Gluon API, isolated here (checked on MXNet 1.9.1): ``Block._children`` (child name ->
# block, in the order added) and ``Block._reg_params`` (attribute name -> the block's own
# Parameters) are the block tree; the public ``collect_params()`` only gives prefix-built names,
# which carry global counters (dense3_) and no structure. ``Parameter._data is None`` means the
# shape is still deferred (or the block is not initialised).
def _children(block: Any) -> list:
    return list(block._children.items())


def _own(block: Any) -> list:
    return list(block._reg_params.items())


def _deferred(param: Any) -> bool:
    return param._data is None or 0 in tuple(param.shape)


def _recurrent_role(leaf: str) -> str:
    if leaf.endswith("h2h_weight"):
        return "recurrent"
    return "bias" if leaf.endswith("bias") else "weight"


# A Gluon RNN layer's attributes carry the direction and layer (l0_i2h_weight, r1_h2h_bias); a
# cell's have none (i2h_weight). LSTMs pack their 4 gates (i, f, c, o: rnn_cell.LSTMCell's
# slice_gates) along the first axis, as torch does.
_RNN_ATTRIBUTE = re.compile(r"(.*?)(i2h|h2h|h2r)_(weight|bias)$")
_SOURCES = {"i2h": "input", "h2h": "hidden", "h2r": "projection"}
_LSTMS = (f"{_G}.rnn.rnn_layer.LSTM", f"{_G}.rnn.rnn_cell.LSTMCell")
_GRUS = (f"{_G}.rnn.rnn_layer.GRU", f"{_G}.rnn.rnn_cell.GRUCell")


def _block_rnn_types(block: Any, attributes: list[str]) -> dict:
    from polyinit.frameworks import class_path

    classes = {class_path(cls) for cls in type(block).__mro__}
    return _rnn_types(attributes, lstm=bool(classes & set(_LSTMS)), gru=bool(classes & set(_GRUS)))


def _rnn_types(attributes: list[str], *, lstm: bool, gru: bool) -> dict:
    """Types of an RNN's attributes: an LSTM's gates split (4, H), and the two biases of one
    layer and direction one logical bias (their sum), except a GRU's (its h2h bias of the
    candidate gate is scaled by the reset gate)."""
    return fused_rnn_types(attributes, _parse_rnn_attribute, 4 if lstm else 1, not gru)


def _parse_rnn_attribute(attribute: str) -> tuple[str, bool, str] | None:
    match = _RNN_ATTRIBUTE.match(attribute)
    if match is None:
        return None
    prefix, source, tensor = match.groups()
    return _SOURCES[source], tensor == "bias", f"{prefix}bias"


class GluonWalker:
    returns_new = False
    name = "mxnet"

    def walk(self, model: Any) -> list[Param]:
        builder = Builder("out in *", sep="/")
        self.real_paths: dict[str, Any] = {}
        self._visit(builder, model, "", set())
        self.arrays = builder.handles
        self.unknown = builder.unknown
        return builder.finish()

    def _visit(self, builder: Builder, block: Any, key: str, seen: set) -> None:
        if id(block) in seen:
            return
        seen.add(id(block))
        entry, _ = module_type_of(block)
        own = _own(block)
        if own:
            rows, views = [], {}
            for attribute, param in own:
                # Path: Gluon's own full name (dense0_weight), as collect_params() lists it.
                rows.append(
                    (
                        param.name,
                        param,
                        id(param),
                        tuple(param.shape),
                        dtype_name(np.dtype(param.dtype).name),
                        param.grad_req != "null",
                        "",
                        attribute,
                    )
                )
                if entry is not None and entry.kind in ("conv", "conv_transpose") and attribute == "weight":
                    groups = int(block._kwargs.get("num_group", 1)) if hasattr(block, "_kwargs") else 1
                    flow = {"out": "in", "in": "out"} if entry.kind == "conv_transpose" else {}
                    views[attribute] = grouped_view(
                        tuple(param.shape), Layout("out in *").roles(len(param.shape)), 0, groups, flow
                    )
            before = len(builder.params)
            types = (
                _block_rnn_types(block, [a for a, _ in own])
                if entry is not None and entry.kind == "recurrent"
                else None
            )
            builder.layer("", block, rows, key_prefix=key or "root", views=views, types=types)
            import dataclasses

            names = {param.name: attribute for attribute, param in own}
            for i in range(before, len(builder.params)):
                p = builder.params[i]
                leaf = names[p.path]
                role = p.role
                if p.kind == "recurrent":
                    role = role if types and leaf in types else _recurrent_role(leaf)
                elif entry is None or (leaf not in entry.params and "*" not in entry.params):
                    role = role_by_name(p.kind, next((n for n in _SUFFIXES if leaf.endswith(n)), leaf))
                builder.params[i] = dataclasses.replace(p, role=role, key=f"{key or 'root'}/{leaf}")
        for name, child in _children(block):
            self._visit(builder, child, f"{key}/{name}" if key else str(name), seen)

    def check(self, planned: list) -> None:
        deferred = [param.path for param, _ in planned if _deferred(self.arrays[param.path])]
        if deferred:
            raise ModelError(
                f"mxnet: parameters {deferred} have deferred shapes or are not initialised; run "
                "net.initialize() and one forward pass first (or give in_units=/in_channels=)"
            )

    def draw(self, param: Param, plan: Any, seed: int) -> Any:
        from polyinit.backends.numpy import draw

        return draw(plan, np.random.default_rng(seed)).reshape(param.shape)

    def write(self, model: Any, drawn: list) -> Any:
        import mxnet as mx

        # MXNet runs ops asynchronously, and after a forward pass on the oneDNN build a weight may
        # still be being reordered: wait, so that backups and writes see the settled values.
        mx.nd.waitall()
        pending = [(self.arrays[param.path], values) for param, values in drawn if values is not None]

        def assign(target: Any, values: Any) -> None:
            # An MXNet array, not numpy: set_data of a numpy array fails on the oneDNN build once
            # a forward pass has run.
            if not isinstance(values, mx.nd.NDArray):
                values = mx.nd.array(np.asarray(values), dtype=target.dtype, ctx=target.list_ctx()[0])
            target.set_data(values)

        write_or_restore("mxnet", pending, lambda target: target.data().copy(), assign)
        return model

    def read(self, model: Any, param: Param) -> Any:
        import mxnet as mx

        mx.nd.waitall()  # see write
        return self.arrays[param.path].data().asnumpy().astype(np.float64)


# A Gluon parameter name: the block prefixes (each a name and a global counter: hybridsequential0_conv0_)
# and the parameter's own name, one of the known leaves (an RNN's l0_i2h_weight, running_mean, weight).
_DICT_NAME = re.compile(
    r"^(.*?)((?:[lr]\d+_)?(?:i2h|h2h|h2r)_(?:weight|bias)|(?:running|moving)_(?:mean|var)"
    r"|[A-Za-z]+)$"
)


class ArrayDictWalker:
    """A name -> array dict in MXNet's naming (dense0_weight, ...): no block tree, so the kind and
    the layer come from the names. Values are written in place."""

    returns_new = False
    name = "mxnet-dict"
    _KINDS = (
        ("deconv", "conv_transpose"),
        ("conv", "conv"),
        ("dense", "dense"),
        ("embedding", "embedding"),
        ("norm", "norm"),
        ("lstm", "recurrent"),
        ("gru", "recurrent"),
        ("rnn", "recurrent"),
    )

    def walk(self, model: Any) -> list[Param]:
        builder = Builder("out in *", sep="_")
        self.unknown: dict[str, list[str]] = {}
        groups: dict[str, list] = {}
        for path, array in model.items():
            match = _DICT_NAME.match(path)
            layer, leaf = (match.group(1), match.group(2)) if match else ("", path)
            # The kind comes from the layer's own (last) name component: conv in hybridsequential0_conv0_.
            own = re.search(r"([A-Za-z]+)\d*_$", layer)
            groups.setdefault(layer, []).append((path, leaf, own.group(1) if own else "", array))
        seen: dict[str, int] = {}
        for layer, items in groups.items():
            kind = next((k for key, k in self._KINDS if key in items[0][2].lower()), "other")
            # The seed key without Gluon's global counters (hybridsequential1_conv3_ in a second
            # identical net): the layer's name with its digits removed, and its rank among the
            # layers of that name, so identical nets get identical keys and siblings distinct ones.
            base = re.sub(r"\d+_", "_", layer).rstrip("_") or "root"
            rank = seen[base] = seen.get(base, -1) + 1
            rows = [
                (leaf, array, id(array), tuple(array.shape), np.dtype(array.dtype).name, True, "")
                for _, leaf, _, array in items
            ]
            before = len(builder.params)
            types = None
            if kind == "recurrent":  # the layer's name says which RNN it is (lstm0_, gru1_)
                name = items[0][2].lower()
                types = _rnn_types([leaf for _, leaf, _, _ in items], lstm="lstm" in name, gru="gru" in name)
            builder.layer(layer.rstrip("_"), None, rows, key_prefix=f"{base}#{rank}", kind=kind, types=types)
            import dataclasses

            for i in range(before, len(builder.params)):
                p = builder.params[i]
                leaf = p.path[len(layer) :]
                name = next((n for n in _SUFFIXES if leaf.endswith(n)), leaf)
                role = "recurrent" if leaf.endswith("h2h_weight") else role_by_name(kind, name)
                if types and leaf in types:
                    role = types[leaf].role
                builder.params[i] = dataclasses.replace(p, role=role, path=layer + leaf)
        self.arrays = dict(model)
        return builder.finish()

    def draw(self, param: Param, plan: Any, seed: int) -> Any:
        from polyinit.backends.numpy import draw

        return draw(plan, np.random.default_rng(seed)).reshape(param.shape)

    def write(self, model: Any, drawn: list) -> Any:
        pending = [(self.arrays[param.path], values) for param, values in drawn if values is not None]
        write_or_restore("mxnet", pending, np.array, assign_item)
        return model

    def read(self, model: Any, param: Param) -> Any:
        return np.asarray(self.arrays[param.path], dtype=np.float64)


def _detect_gluon(model: Any) -> bool:
    mx = sys.modules.get("mxnet")
    return mx is not None and hasattr(mx, "gluon") and isinstance(model, mx.gluon.Block)


def _detect_dict(model: Any) -> bool:
    if not isinstance(model, Mapping) or not model:
        return False
    if any(type(v).__module__.startswith("torch") for v in model.values()):
        return False  # a torch state_dict is not a model
    return all(hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, Mapping) for v in model.values())


_PRESETS = {
    "dense": ("out in", "out in"),
    "conv": ("out in *", "out in *"),
    "conv_transpose": ("out in *", "in out *"),
    "embedding": ("in out", "in out"),
    "depthwise_conv": ("out in *", "out in *"),
}

# --- layer defaults and compare's measurer ---------------------------------------------------
# Imported here (after the walker) from the shared helpers of polyinit.defaults and polyinit.measure,
# which import no framework record at module level.
from collections.abc import Callable

from polyinit.defaults import _MX, _ZERO, _norm
from polyinit.defaults import Param as Default
from polyinit.layout import OUT_IN
from polyinit.measure import Setup, _crop, _stack, _widths

# --- MXNet Gluon: every weight U(+-0.07) from the global default, biases zero -----------------


def _layer_defaults(layer: str, d: dict) -> dict[str, Default]:
    if layer == "dense":
        return {"weight": Default(_MX, OUT_IN, (d["n_out"], d["n_in"])), "bias": Default(_ZERO, OUT_IN, (d["n_out"],))}
    if layer in ("conv", "conv_transpose"):
        k, g = d["kernel"], d.get("groups", 1)
        shape = ((d["n_out"], d["n_in"] // g) if layer == "conv" else (d["n_in"], d["n_out"] // g)) + k
        return {"weight": Default(_MX, OUT_IN, shape), "bias": Default(_ZERO, OUT_IN, (d["n_out"],))}
    if layer == "embedding":
        return {"weight": Default(_MX, OUT_IN, (d["num"], d["dim"]))}
    if layer in ("lstm", "gru"):
        h, gates = d["hidden"], 4 if layer == "lstm" else 3
        return {
            "l0_i2h_weight": Default(_MX, OUT_IN, (gates * h, d["n_in"])),
            "l0_h2h_weight": Default(_MX, OUT_IN, (gates * h, h)),
            "l0_i2h_bias": Default(_ZERO, OUT_IN, (gates * h,)),
            "l0_h2h_bias": Default(_ZERO, OUT_IN, (gates * h,)),
        }
    if layer in ("batchnorm", "layernorm"):
        return _norm(d["c"], stats=layer == "batchnorm")
    raise KeyError(layer)


# --- MXNet Gluon ---------------------------------------------------------------------------------


def _measure(setup: Setup, seed: int, x: np.ndarray) -> tuple[list[float], list[float], list[np.ndarray]]:
    import mxnet as mx
    from mxnet.gluon import nn, rnn

    acts = {
        "linear": lambda t: t,
        "relu": mx.nd.relu,
        "tanh": mx.nd.tanh,
        "gelu": lambda t: mx.nd.LeakyReLU(t, act_type="gelu"),
        "silu": lambda t: t * mx.nd.sigmoid(t),
        "sigmoid": mx.nd.sigmoid,
    }
    k, rank = setup.kernel, setup.rank

    def make(index: int) -> tuple[Any, Callable]:
        i, o = _widths(setup, index)
        kind = "dense" if setup.kind == "embedding" and index else setup.kind
        if kind == "dense":
            m = nn.Dense(o, in_units=i)
        elif kind == "conv_transpose":
            m = nn.Conv2DTranspose(o, k, in_channels=i)
            m.initialize()
            return m, lambda t: m(t)[(slice(None), slice(None)) + _crop(k, rank)[1:-1]]
        elif kind.startswith("conv"):
            m = getattr(nn, f"Conv{rank}D")(o, k, in_channels=i)
        elif kind == "embedding":
            m = nn.Embedding(i, o)
        elif kind in ("lstm", "gru"):
            m = (rnn.LSTM if kind == "lstm" else rnn.GRU)(o, input_size=i, layout="NTC")
        elif kind == "batchnorm":
            m = nn.BatchNorm(in_channels=i)
            m.initialize()

            def train(t, m=m):
                with mx.autograd.train_mode():
                    return m(t)

            return m, train
        else:
            m = nn.LayerNorm(in_channels=i)
        m.initialize()  # Gluon's own default
        return m, m

    mx.random.seed(seed)  # MXNet cannot give its global state back; documented in the module
    built = [make(index) for index in range(setup.depth)]
    calls = [call for _, call in built]
    data = mx.nd.array(np.moveaxis(x, -1, 1) if rank else x)
    linear = _stack(calls, data, acts["linear"], lambda a: a.asnumpy())
    activated = _stack(calls, data, acts[setup.activation], lambda a: a.asnumpy())
    return linear, activated, [p.data().asnumpy() for p in built[0][0].collect_params().values()]


def _cross_rules(weights: Selector, biases: Selector) -> list:
    """Gluon's defaults as rules for any model: U(+-0.07) weights and embeddings, zero biases."""
    from polyinit.rules import kind

    return [(weights, _MX), (biases, _ZERO), (kind("embedding"), _MX)]


def _forward(model: Any, x: Any) -> Any:
    """A Gluon block's output for a numpy batch (compare --model)."""
    import mxnet as mx

    return model(mx.nd.array(x)).asnumpy()


FRAMEWORK = Framework(
    name="mxnet",
    display="MXNet",
    detect=_detect_gluon,
    walker=GluonWalker,
    priority=40,
    defaults=_layer_defaults,
    measurer=_measure,
    cross_rules=_cross_rules,
    backend="mxnet",
    distribution="mxnet",
    forward=_forward,
    recurrent_names=("l0_i2h_weight", (), None),
    missing_layers=("mha",),
    version="1.9.1",
    module="mxnet",
    colour="#2a9d8f",
    style="-.",
    presets=_PRESETS,
)
ARRAY_DICT = Framework(
    name="mxnet-dict",
    display="MXNet (name -> array dict)",
    detect=_detect_dict,
    walker=ArrayDictWalker,
    priority=90,
    backend="mxnet",
)


def _register() -> None:
    from polyinit.frameworks import register_framework

    register_framework(ARRAY_DICT)


_register()
