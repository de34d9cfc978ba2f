"""Flax: the nnx walker (attribute definition order), the linen walker (variables trees, module
order), module types and presets. JAX arrays are drawn with the JAX backend."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from polyinit.frameworks import Framework, module_type_of, register_module_type
from polyinit.frameworks._walk import Builder, View, assign_item, dtype_name, role_by_name, write_or_restore
from polyinit.layout import Layout
from polyinit.params import ModuleType, Param, ParamType, Part, grouped_view

if TYPE_CHECKING:  # typing only: selectors are imported where rules are built
    from polyinit.selectors import Selector

_NN = "flax.nnx.nn"
_KERNEL = {"kernel": ParamType("weight", "* in out"), "bias": ParamType("bias", "out")}
_NORM = ModuleType(
    "norm",
    {
        "scale": ParamType("scale", "out"),
        "bias": ParamType("offset", "out"),
        "mean": ParamType("running_mean", "out"),
        "var": ParamType("running_var", "out"),
    },
)
_CELL = ModuleType("recurrent", {})


def _lstm_gates(forget: str) -> ModuleType:
    """An LSTM cell with one dense layer per gate and source (flax's ``LSTMCell``: ``ii``, ``hi``,
    ``if``, ... with the bias on the hidden side only). The four input kernels stack into one
    logical (4, in, H) weight, the four hidden kernels into the (4, H, H) recurrent one, the
    biases into one (4, H) bias, in the gate order i, f, g, o. ``forget``: the forget gate's
    input layer (nnx names it ``if_``: ``if`` is a Python keyword). Leaves are listed in the
    order linen creates them (ii, hi, if, hf, ...; its call computes gate by gate)."""
    params = {}
    for index, gate in enumerate("ifgo"):
        params[f"{forget if gate == 'f' else 'i' + gate}.kernel"] = ParamType(
            "weight", "in out", part=Part("weight", "stack", index)
        )
        params[f"h{gate}.kernel"] = ParamType("recurrent", "in out", part=Part("recurrent", "stack", index))
        params[f"h{gate}.bias"] = ParamType("bias", "out", part=Part("bias", "stack", index))
    return ModuleType("recurrent", params)


# The fused cells: one input and one hidden dense layer over all gates; OptimizedLSTMCell's
# (in, 4H) kernels read as (in, 4, H), its (4H,) bias as (4, H) (gates i, f, g, o: jnp.split).
_FUSED_LSTM = ModuleType(
    "recurrent",
    {
        "dense_i.kernel": ParamType("weight", "in out", split=(1, 4)),
        "dense_h.kernel": ParamType("recurrent", "in out", split=(1, 4)),
        "dense_h.bias": ParamType("bias", "out", split=(0, 4)),
    },
)
_FUSED = ModuleType("recurrent", {"dense_h.kernel": ParamType("recurrent", "in out")})
# linen's GRUCell, for the order it creates its layers in (ir, hr, iz, hz, in, hn; hn has a bias).
_LINEN_GRU = ModuleType(
    "recurrent",
    {
        f"{side}{gate}.{leaf}": ParamType("recurrent" if side == "h" else "weight", "in out")
        if leaf == "kernel"
        else ParamType("bias", "out")
        for gate in "rzn"
        for side in "ih"
        for leaf in ("kernel", "bias")
        if leaf == "kernel" or side == "i" or gate == "n"
    },
)
for _path, _entry in {
    f"{_NN}.linear.Linear": ModuleType("dense", _KERNEL),
    f"{_NN}.linear.LinearGeneral": ModuleType("dense", _KERNEL),
    f"{_NN}.linear.Einsum": ModuleType("dense", _KERNEL),
    f"{_NN}.linear.Conv": ModuleType("conv", _KERNEL),
    f"{_NN}.linear.ConvTranspose": ModuleType("conv_transpose", _KERNEL),
    f"{_NN}.linear.Embed": ModuleType("embedding", {"embedding": ParamType("embedding", "in out")}),
    f"{_NN}.normalization.BatchNorm": _NORM,
    f"{_NN}.normalization.LayerNorm": _NORM,
    f"{_NN}.normalization.RMSNorm": _NORM,
    f"{_NN}.normalization.GroupNorm": _NORM,
    f"{_NN}.attention.MultiHeadAttention": ModuleType("attention", {}),
    f"{_NN}.recurrent.RNNCellBase": _CELL,
    f"{_NN}.recurrent.LSTMCell": _lstm_gates("if_"),
    f"{_NN}.recurrent.OptimizedLSTMCell": _FUSED_LSTM,
    f"{_NN}.recurrent.GRUCell": _FUSED,
    f"{_NN}.recurrent.SimpleCell": _FUSED,
    # linen's cells, for the linen walker (which finds them by name: LSTMCell_0). OptimizedLSTMCell
    # creates the same per-gate parameters as LSTMCell, in the same order.
    "flax.linen.recurrent.LSTMCell": _lstm_gates("if"),
    "flax.linen.recurrent.OptimizedLSTMCell": _lstm_gates("if"),
    "flax.linen.recurrent.GRUCell": _LINEN_GRU,
}.items():
    register_module_type(_path, _entry)

# Linen variables trees carry no module types, only names (Dense_0, or the user's own): the kind
# comes from the nearest name that contains a known layer class name.
_LINEN_KINDS = (
    ("MultiHeadDotProductAttention", "attention"),
    ("MultiHeadAttention", "attention"),
    ("SelfAttention", "attention"),
    ("ConvTranspose", "conv_transpose"),
    ("Conv", "conv"),
    ("Embed", "embedding"),
    ("Norm", "norm"),
    ("LSTM", "recurrent"),
    ("GRU", "recurrent"),
    ("Cell", "recurrent"),
    ("Dense", "dense"),
    ("Linear", "dense"),
    ("Einsum", "dense"),
)
# Linen cells whose parameters a registered entry describes, by the name linen gives the module.
_LINEN_CELLS = (
    ("OptimizedLSTMCell", "flax.linen.recurrent.OptimizedLSTMCell"),
    ("ConvLSTMCell", None),
    ("LSTMCell", "flax.linen.recurrent.LSTMCell"),
    ("GRUCell", "flax.linen.recurrent.GRUCell"),
)
_COLLECTIONS = ("params", "batch_stats", "cache", "intermediates", "constants", "state")


def _attention_layout(module_name: str, shape: tuple) -> Any:
    if len(shape) != 3:
        return None
    return Layout("in in out") if module_name in ("out", "attention_output") else Layout("in out out")


def _general_layout(module: Any, leaf: str, shape: tuple) -> Any:
    """A ``LinearGeneral``'s kernel (batch..., in_features..., out_features...) and bias (batch...,
    out_features...) layouts, from the module's own feature tuples: nnx's MultiHeadAttention's
    query kernel (d_model, heads, head_dim) is ``in out out`` and its (heads, head_dim) bias
    ``out out``."""
    ins, outs = getattr(module, "in_features", None), getattr(module, "out_features", None)
    if not (isinstance(ins, tuple) and isinstance(outs, tuple)) or leaf not in ("kernel", "bias"):
        return None
    roles = (["in"] * len(ins) if leaf == "kernel" else []) + ["out"] * len(outs)
    roles = ["batch"] * (len(shape) - len(roles)) + roles
    return Layout(" ".join(roles)) if len(roles) == len(shape) and len(shape) > 1 else None


def _jax_draw(param: Param, plan: Any, seed: int, like: Any = None) -> Any:
    """The draw for ``param``; laid out like ``like`` (the current value) when that is sharded over
    several devices, each device drawing only its shard (the same values as unsharded)."""
    import jax

    from polyinit.backends.jax import draw, draw_sharded

    key = jax.random.key(seed)
    sharding = getattr(like, "sharding", None)
    if sharding is not None and len(sharding.device_set) > 1 and plan.shape == param.shape:
        return draw_sharded(plan, key, sharding)
    values = draw(plan, key)
    return values if plan.shape == param.shape else values.reshape(param.shape)


class NnxWalker:
    returns_new = False
    name = "nnx"

    def walk(self, model: Any) -> list[Param]:
        builder = Builder("* in out", sep="/")
        self._visit(builder, model, (), None, set(), None)
        self.variables = builder.handles
        self.unknown = builder.unknown
        return builder.finish()

    def _visit(self, builder: Builder, module: Any, path: tuple, forced: Any, seen: set, unit: Any) -> None:
        from flax import nnx

        if id(module) in seen:
            return
        seen.add(id(module))
        entry, _ = module_type_of(module)
        prefix = "/".join(str(p) for p in path)
        builder.add_overrides(prefix, entry)  # a cell's entry types its gates' kernels (ii.kernel)
        if unit is None and entry is not None and entry.kind == "recurrent":
            unit = prefix  # a cell and its gate layers are one layer
        own, children = [], []
        for attribute, value in _declared_attributes(module):
            if attribute.startswith("_"):
                continue
            if isinstance(value, (nnx.Param, nnx.BatchStat)):
                own.append((attribute, value))
            elif isinstance(value, nnx.Module):
                children.append((attribute, value))
            elif isinstance(value, (list, tuple)):
                children += [(f"{attribute}/{i}", v) for i, v in enumerate(value) if isinstance(v, nnx.Module)]
            elif isinstance(value, dict):
                children += [(f"{attribute}/{k}", v) for k, v in value.items() if isinstance(v, nnx.Module)]
        # Parameters before statistics, as torch (parameters, then buffers), Keras (trainable, then
        # not) and linen (params, then batch_stats) list them: nnx.BatchNorm defines mean and var
        # before scale and bias, and the same architecture must give the same record sequence.
        own.sort(key=lambda item: isinstance(item[1], nnx.BatchStat))
        if own:
            rows: list[tuple] = []
            views: dict[str, View] = {}
            for leaf, variable in own:
                value = variable[...]
                shape = tuple(value.shape)
                rows.append(
                    (leaf, variable, id(variable), shape, dtype_name(value.dtype), isinstance(variable, nnx.Param), "")
                )
                general = _general_layout(module, leaf, shape)
                if general is not None:
                    views[leaf] = (None, general, general.pattern)
                elif forced == "attention" and _attention_layout(str(path[-1]), shape) is not None:
                    views[leaf] = (
                        None,
                        _attention_layout(str(path[-1]), shape),
                        _attention_layout(str(path[-1]), shape).pattern,
                    )
                groups = getattr(module, "feature_group_count", 1)
                if leaf == "kernel" and isinstance(groups, int) and groups > 1:
                    views[leaf] = grouped_view(shape, Layout("* in out").roles(len(shape)), len(shape) - 1, groups, {})
            builder.layer(prefix, module, rows, key_prefix=prefix, kind=forced, views=views, unit=unit)
            if forced == "recurrent" and path and str(path[-1]).startswith("h"):
                _recurrent_roles(builder, prefix)
        inner = entry.kind if entry is not None and entry.kind in ("attention", "recurrent") else forced
        for name, child in children:
            self._visit(builder, child, path + tuple(name.split("/")), inner, seen, unit)

    def draw(self, param: Param, plan: Any, seed: int) -> Any:
        return _jax_draw(param, plan, seed, like=self.variables[param.path][...])

    def write(self, model: Any, drawn: list) -> Any:
        pending = [(self.variables[param.path], values) for param, values in drawn if values is not None]
        write_or_restore("nnx", pending, lambda v: v[...], assign_item)
        return model

    def read(self, model: Any, param: Param) -> Any:
        return np.asarray(self.variables[param.path][...], dtype=np.float64)


def _declared_attributes(module: Any) -> list[tuple[str, Any]]:
    """A module's attributes in the order they were first assigned (declaration order).

    ``vars()`` has that order until an nnx transform (``nnx.jit``, the scan inside ``nnx.RNN``)
    writes the module back, which rebuilds its ``__dict__`` sorted by name (flax 0.12.8), so the
    records, ``first()`` and the portable keys would change after a forward pass. nnx's own record
    of a module's attributes, ``_pytree__nodes`` (a mapping filled on first assignment), keeps the
    assignment order through that; attributes it does not list keep ``vars()``' order, after it.
    (``nnx.iter_modules`` and ``nnx.state`` sort by name.)"""
    attributes = vars(module)
    recorded = getattr(module, "_pytree__nodes", None)
    names = [name for name in (recorded if isinstance(recorded, Mapping) else ()) if name in attributes]
    listed = set(names)
    names += [name for name in attributes if name not in listed]
    return [(name, attributes[name]) for name in names]


def _recurrent_roles(builder: Builder, prefix: str) -> None:
    """The hidden-to-hidden kernels of an nnx RNN cell (hi, hf, ...) have the recurrent role."""
    import dataclasses

    for i, p in enumerate(builder.params):
        if p.layer_path == prefix and p.role == "weight":
            builder.params[i] = dataclasses.replace(p, role="recurrent")


class LinenWalker:
    """A flax.linen variables or params tree (nested mappings of jax arrays); returns a new tree."""

    returns_new = True
    name = "linen"

    def walk(self, tree: Any) -> list[Param]:
        import dataclasses

        builder = Builder("* in out", sep="/")
        collections = _has_collections(tree)
        layers: dict[str, list] = {}
        for path, leaf in flatten(tree):
            parts = path.split("/")
            module = "/".join(parts[1 if collections else 0 : -1])  # batch_stats/BN_0 is the same layer as params/BN_0
            layers.setdefault(module, []).append((parts, path, leaf))
        for module, leaves, (kind, unit, cell, child) in _creation_order(layers):
            parent = module.split("/")[-1] if module else ""
            rows, views, types = [], {}, {}
            for parts, path, leaf in leaves:
                shape = tuple(leaf.shape)
                name = "/".join(parts[:1] + [parts[-1]]) if collections else parts[-1]
                rows.append(
                    (name, leaf, path, shape, dtype_name(leaf.dtype), parts[0] == "params" or not collections, "")
                )
                if kind == "attention" and _attention_layout(parent, shape) is not None:
                    views[name] = (None, _attention_layout(parent, shape), _attention_layout(parent, shape).pattern)
                types[name] = (cell.params.get(f"{child}.{parts[-1]}") if cell is not None else None) or _linen_type(
                    kind or "other", parent, parts[-1]
                )
            before = len(builder.params)
            builder.layer(
                module,
                None,
                rows,
                key_prefix=module or "root",
                kind=kind or "other",
                views=views,
                types=types,
                unit=unit,
            )
            for i in range(before, len(builder.params)):
                p = builder.params[i]
                builder.params[i] = dataclasses.replace(p, path=_real_path(p, collections, module))
                builder.handles[builder.params[i].path] = builder.handles.pop(p.path)
        self.leaves = builder.handles
        return builder.finish()

    def draw(self, param: Param, plan: Any, seed: int) -> Any:
        return _jax_draw(param, plan, seed)

    def write(self, tree: Any, drawn: list) -> Any:
        return rebuild(tree, {param.path: values for param, values in drawn if values is not None})

    def read(self, tree: Any, param: Param) -> Any:
        return np.asarray(dict(flatten(tree))[param.path], dtype=np.float64)


def _linen_type(kind: str, parent: str, leaf: str) -> ParamType:
    """A linen leaf's type from its name: the hidden-side kernels of a cell (hi, hf, ...) are
    recurrent; kernels are laid out (*k, in, out), everything else (biases, scales) (out,)."""
    role = role_by_name(kind, leaf)
    if kind == "recurrent" and leaf == "kernel" and parent.startswith("h"):
        role = "recurrent"
    return ParamType(role, "* in out" if role in ("weight", "recurrent", "embedding", "other") else "out")


def _creation_order(layers: dict) -> list:
    """(module, leaves, (kind, unit, cell entry, child name)) in linen's module order, except
    inside a cell that a registered entry describes: linen.RNN's scan returns a cell's variables
    sorted by name (hf before ii), so they are put back in the order the entry lists them, which
    is the order the cell creates them. A cell's modules are one layer (``unit``)."""
    from polyinit.frameworks import module_type

    found: list[tuple] = []
    first_of: dict[str, int] = {}
    for module, leaves in layers.items():
        names = module.split("/") if module else []
        at, kind = next(
            ((i, k) for i in reversed(range(len(names))) for key, k in _LINEN_KINDS if key in names[i]), (None, None)
        )
        unit = cell = None
        child = ""
        if kind == "recurrent":
            assert at is not None  # a kind was found, so at names its module
            unit, child = "/".join(names[: at + 1]), ".".join(names[at + 1 :])
            path = next((p for key, p in _LINEN_CELLS if key in names[at]), None)
            cell = module_type(path) if path else None
        first_of.setdefault(unit or module, len(first_of))
        found.append((module, leaves, (kind, unit, cell, child)))
    if not any(info[2] is not None for _, _, info in found):
        return found

    def rank(info: tuple, leaf: str) -> int:
        order = list(info[2].params) if info[2] is not None else []
        name = f"{info[3]}.{leaf}"
        return order.index(name) if name in order else len(order)

    ordered = []
    for module, leaves, info in found:
        leaves = sorted(leaves, key=lambda item: rank(info, item[0][-1]))
        ordered.append((module, leaves, info))
    return sorted(ordered, key=lambda m: (first_of[m[2][1] or m[0]], min(rank(m[2], item[0][-1]) for item in m[1])))


def _real_path(p: Param, collections: bool, module: str) -> str:
    """The Builder joins layer path and leaf ("Dense_0/params/kernel"); the tree has the collection
    first ("params/Dense_0/kernel")."""
    if not collections:
        return p.path
    leaf = p.path[len(module) + 1 :] if module else p.path
    collection, name = leaf.split("/", 1)
    return "/".join(x for x in (collection, module, name) if x)


def _has_collections(tree: Any) -> bool:
    return isinstance(tree, Mapping) and "params" in tree and all(isinstance(v, Mapping) for v in tree.values())


def flatten(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from flatten(value, path)
        else:
            yield path, value


def rebuild(tree: Any, updates: dict, prefix: str = "", fill: Any = None) -> dict:
    """A copy of ``tree`` with ``updates[path]`` at those leaves (others kept, or ``fill``)."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out[key] = rebuild(value, updates, path, fill)
        else:
            out[key] = updates.get(path, value if fill is None else fill)
    return out


def _detect_nnx(model: Any) -> bool:
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(model, nnx.Module)


def _detect_linen(model: Any) -> bool:
    jax = sys.modules.get("jax")
    if jax is None or not isinstance(model, Mapping):
        return False
    leaves = [leaf for _, leaf in flatten(model)]
    if "haiku" in sys.modules:  # a Haiku params tree is a mapping of arrays too, named w, b, ...
        from polyinit.frameworks.haiku import _detect as is_haiku

        if is_haiku(model):
            return False
    return bool(leaves) and all(isinstance(v, jax.Array) for v in leaves)


_PRESETS = {
    "dense": ("in out", "in out"),
    "conv": ("* in out", "* in out"),
    "conv_transpose": ("* in out", "* in out"),  # kernel (*k, in, out)
    "embedding": ("in out", "in out"),
    "depthwise_conv": ("* in out", "* in out"),
}  # feature_group_count: (*k, 1, C*m)


# --- layer defaults and compare's measurer ---------------------------------------------------
# Imported here (after the walker) from the shared helpers of polyinit.defaults and polyinit.measure,
# which import no framework record at module level.
import math
from collections.abc import Callable

from polyinit import native
from polyinit.defaults import _LECUN_TRUNC, _ONE, _ZERO, _haiku_trunc, _mha, _norm
from polyinit.defaults import Param as Default
from polyinit.errors import SpecError
from polyinit.layout import IN_OUT, OUT_IN, preset
from polyinit.measure import Setup, _crop, _stack, _widths, jax_activations
from polyinit.spec import Normal, Orthogonal, VarianceScaling

# --- flax (linen and nnx share these defaults) ------------------------------------------------


def _layer_defaults(layer: str, d: dict) -> dict[str, Default]:
    if layer == "dense":
        return {
            "kernel": Default(_LECUN_TRUNC, IN_OUT, (d["n_in"], d["n_out"])),
            "bias": Default(_ZERO, OUT_IN, (d["n_out"],)),
        }
    if layer in ("conv", "conv_transpose"):
        k, g = d["kernel"], d.get("groups", 1)
        shape = k + ((d["n_in"] // g, d["n_out"]) if layer == "conv" else (d["n_in"], d["n_out"]))
        return {
            "kernel": Default(_LECUN_TRUNC, preset("flax", layer), shape),
            "bias": Default(_ZERO, OUT_IN, (d["n_out"],)),
        }
    if layer == "embedding":
        # variance_scaling(1, fan_in, normal, out_axis=0) on (num, dim): fan_in = dim, untruncated.
        return {
            "embedding": Default(
                VarianceScaling(scale=1.0, mode="fan_in", distribution="normal"),
                Layout("out in"),
                (d["num"], d["dim"]),
                "N(0, 1/dim)",
            )
        }
    if layer in ("lstm", "gru"):
        h, n_in = d["hidden"], d["n_in"]
        cell = d.get("cell", "linen")
        if cell == ("nnx.OptimizedLSTMCell" if layer == "lstm" else "nnx.GRUCell"):
            # The fused nnx cells: one input kernel and one recurrent kernel over all gates; the
            # recurrent one is orthogonal as a whole (h, gates*h): std 1/sqrt(gates*h), not per gate.
            width = (4 if layer == "lstm" else 3) * h
            bias = "dense_h/bias" if layer == "lstm" else "dense_i/bias"
            return {
                "dense_i/kernel": Default(_LECUN_TRUNC, IN_OUT, (n_in, width)),
                "dense_h/kernel": Default(Orthogonal(axis=-1), IN_OUT, (h, width), "orthogonal over all gates"),
                bias: Default(_ZERO, OUT_IN, (width,)),
            }
        if cell not in (("linen", "nnx.LSTMCell") if layer == "lstm" else ("linen",)):
            raise SpecError(
                f"layer_defaults: flax {layer} has no cell {cell!r}; expected 'linen' or "
                + ("'nnx.LSTMCell', 'nnx.OptimizedLSTMCell'" if layer == "lstm" else "'nnx.GRUCell'")
            )
        gates = ("i", "f", "g", "o") if layer == "lstm" else ("r", "z", "n")
        out = {}
        for gate in gates:
            # nnx.LSTMCell names its forget-gate input kernel ``if_`` (``if`` is a Python keyword).
            name = "if_" if cell == "nnx.LSTMCell" and gate == "f" else f"i{gate}"
            out[f"{name}/kernel"] = Default(_LECUN_TRUNC, IN_OUT, (n_in, h))
            out[f"h{gate}/kernel"] = Default(Orthogonal(axis=-1), IN_OUT, (h, h))
            has_bias = f"h{gate}" if layer == "lstm" else (f"i{gate}" if gate != "n" else None)
            if has_bias:
                out[f"{has_bias}/bias"] = Default(_ZERO, OUT_IN, (h,))
        if layer == "gru":
            out["in/bias"] = Default(_ZERO, OUT_IN, (h,))
            out["hn/bias"] = Default(_ZERO, OUT_IN, (h,))
        return out
    if layer in ("batchnorm", "layernorm"):
        params = _norm(d["c"], stats=layer == "batchnorm")
        names = {"gamma": "scale", "beta": "bias", "running_mean": "mean", "running_var": "var"}
        return {names[k]: v for k, v in params.items()}
    if layer == "mha":
        return _mha(_LECUN_TRUNC, d["d_model"], d["heads"], "out")
    raise KeyError(layer)


# --- flax nnx ------------------------------------------------------------------------------------


def _measure(setup: Setup, seed: int, x: np.ndarray) -> tuple[list[float], list[float], list[np.ndarray]]:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    acts = jax_activations()
    k, rank = setup.kernel, setup.rank
    rngs = nnx.Rngs(seed)

    def make(index: int) -> tuple[Any, str]:
        i, o = _widths(setup, index)
        kind = "dense" if setup.kind == "embedding" and index else setup.kind
        if kind == "dense":
            return nnx.Linear(i, o, rngs=rngs), "plain"
        if kind == "conv_transpose":
            return nnx.ConvTranspose(i, o, (k, k), padding="VALID", rngs=rngs), "crop"
        if kind.startswith("conv"):
            return nnx.Conv(i, o, (k,) * rank, padding="VALID", rngs=rngs), "plain"
        if kind == "embedding":
            return nnx.Embed(i, o, rngs=rngs), "plain"
        if kind in ("lstm", "gru"):
            return (nnx.LSTMCell if kind == "lstm" else nnx.GRUCell)(i, o, rngs=rngs), "cell"
        if kind == "batchnorm":
            return nnx.BatchNorm(i, use_running_average=False, rngs=rngs), "plain"
        if kind == "layernorm":
            return nnx.LayerNorm(i, rngs=rngs), "plain"
        return nnx.MultiHeadAttention(num_heads=setup.heads, in_features=i, decode=False, rngs=rngs), "plain"

    apply = _flax_apply()
    built = [make(index) for index in range(setup.depth)]
    calls = []
    for module, how in built:
        graphdef, state = nnx.split(module)
        calls.append(lambda t, g=graphdef, s=state, how=how: apply(g, how, k, s, t))
    data = jnp.asarray(x)
    linear = _stack(calls, data, acts["linear"], np.asarray)
    activated = _stack(calls, data, acts[setup.activation], np.asarray)
    leaves = jax.tree_util.tree_leaves(nnx.state(built[0][0], nnx.Param))
    return linear, activated, [np.asarray(leaf) for leaf in leaves]


_FLAX_APPLY: list = []


def _flax_apply():
    """One jitted call per layer structure (graphdef) and shape: eager nnx cells compile every
    small op on first use, which made one LSTM measurement take 20 s."""
    if not _FLAX_APPLY:
        import jax
        from flax import nnx

        def apply(graphdef, how, k, state, t):
            module = nnx.merge(graphdef, state)
            if how == "cell":  # one step from the zero carry (the default carry_init)
                carry = module.initialize_carry((t.shape[0], t.shape[-1]), nnx.Rngs(0))
                return module(carry, t[:, 0])[1][:, None]
            y = module(t)
            return y[_crop(k, 2)] if how == "crop" else y

        _FLAX_APPLY.append(jax.jit(apply, static_argnums=(0, 1, 2)))
    return _FLAX_APPLY[0]


# --- dm-haiku 0.0.17 (verified against the real modules in tests/test_defaults.py) ---------------


def _haiku_layer_defaults(layer: str, d: dict) -> dict[str, Default]:
    if layer == "dense":
        return {
            "w": Default(_haiku_trunc(d["n_in"]), IN_OUT, (d["n_in"], d["n_out"]), "std 0.88/sqrt(fan_in)"),
            "b": Default(_ZERO, OUT_IN, (d["n_out"],)),
        }
    if layer in ("conv", "conv_transpose"):
        k, g = d["kernel"], d.get("groups", 1)
        # ConvNDTranspose stores (*k, out, in) but scales by the forward input fan, prod(k) * in.
        fan = math.prod(k) * (d["n_in"] // g if layer == "conv" else d["n_in"])
        shape = k + ((d["n_in"] // g, d["n_out"]) if layer == "conv" else (d["n_out"], d["n_in"]))
        return {"w": Default(_haiku_trunc(fan), IN_OUT, shape), "b": Default(_ZERO, OUT_IN, (d["n_out"],))}
    if layer == "embedding":
        return {"embeddings": Default(native.jax_truncated_normal(1.0), IN_OUT, (d["num"], d["dim"]))}
    if layer == "lstm":
        h, n_in = d["hidden"], d["n_in"]
        return {
            "linear/w": Default(_haiku_trunc(n_in + h), IN_OUT, (n_in + h, 4 * h), "forget +1 added at call time"),
            "linear/b": Default(_ZERO, OUT_IN, (4 * h,)),
        }
    if layer == "gru":
        h, n_in = d["hidden"], d["n_in"]
        vs = VarianceScaling(scale=1.0, mode="fan_in", distribution="truncated_normal")
        return {
            "w_i": Default(vs, IN_OUT, (n_in, 3 * h)),
            "w_h": Default(vs, IN_OUT, (h, 3 * h)),
            "b": Default(_ZERO, OUT_IN, (3 * h,)),
        }
    if layer == "batchnorm":  # hk.BatchNorm's scale and offset keep the reduced axes: (1, c) for (batch, c)
        return {"scale": Default(_ONE, OUT_IN, (1, d["c"])), "offset": Default(_ZERO, OUT_IN, (1, d["c"]))}
    if layer == "layernorm":
        params = _norm(d["c"], stats=False)
        return {"scale": params["gamma"], "offset": params["beta"]}
    raise KeyError(layer)


# --- dm-haiku ------------------------------------------------------------------------------------


def _haiku_measure(setup: Setup, seed: int, x: np.ndarray) -> tuple[list[float], list[float], list[np.ndarray]]:
    import haiku as hk
    import jax
    import jax.numpy as jnp

    acts = jax_activations()
    k, rank = setup.kernel, setup.rank

    def layer(index: int) -> Callable:
        i, o = _widths(setup, index)
        kind = "dense" if setup.kind == "embedding" and index else setup.kind
        if kind == "dense":
            return hk.Linear(o)
        if kind == "conv_transpose":
            m = hk.Conv2DTranspose(o, k, padding="VALID")
            return lambda t: m(t)[_crop(k, rank)]
        if kind.startswith("conv"):
            return getattr(hk, f"Conv{rank}D")(o, k, padding="VALID")
        if kind == "embedding":
            return hk.Embed(vocab_size=i, embed_dim=o)
        if kind in ("lstm", "gru"):
            core = hk.LSTM(o) if kind == "lstm" else hk.GRU(o)
            return lambda t: core(t[:, 0], core.initial_state(t.shape[0]))[0][:, None]
        if kind == "batchnorm":
            m = hk.BatchNorm(create_scale=True, create_offset=True, decay_rate=0.9)
            return lambda t: m(t, is_training=True)
        return hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)

    # Any, not hk.TransformedWithState: haiku's MutableParams alias does not resolve under mypy.
    def forward(name: str) -> Any:
        def run(t):
            outs, y = [], t
            for index in range(setup.depth):
                y = layer(index)(y if index == 0 else acts[name](y))
                outs.append(y)
            return outs

        return hk.transform_with_state(run)

    data = jnp.asarray(x)
    params, state = forward("linear").init(jax.random.key(seed), data)
    results = []
    for name in ("linear", setup.activation):
        outs, _ = forward(name).apply(params, state, None, data)
        results.append([float(np.var(np.asarray(y, dtype=np.float64))) for y in outs])
    first = params[sorted(params, key=lambda m: (len(m), m))[0]]
    return results[0], results[1], [np.asarray(v) for v in first.values()]


def _cross_rules(weights: Selector, biases: Selector) -> list:
    """Flax's defaults as rules for any model: truncated LeCun-normal weights, zero biases, N(0, 1/dim) embeddings."""
    from polyinit.rules import SpecFactory, kind

    embed = SpecFactory(lambda p, layer: Normal(std=1 / math.sqrt(p.shape[-1])), "flax embedding N(0, 1/dim)")
    return [(weights, _LECUN_TRUNC), (biases, _ZERO), (kind("embedding"), embed)]


def _preset_twins() -> tuple[dict, Callable]:
    """The conformance suite's twins: this framework's own layers and variance-scaling
    initializer, against which its layout presets are checked (polyinit.conformance.presets)."""
    import jax
    from flax import nnx

    from polyinit.conformance.presets import DIM, GROUPS_IN, IN, MULTIPLIER, OUT, VOCAB, K, Layer

    rngs = nnx.Rngs(0)

    def weight(layer, name="kernel"):
        return tuple(getattr(layer, name).shape)

    k2 = K * K
    layers = {
        "dense": Layer(weight(nnx.Linear(IN, OUT, rngs=rngs)), IN, OUT),
        "conv": Layer(weight(nnx.Conv(IN, OUT, (K, K), rngs=rngs)), IN * k2, OUT * k2),
        "conv_transpose": Layer(weight(nnx.ConvTranspose(IN, OUT, (K, K), rngs=rngs)), IN * k2, OUT * k2),
        "depthwise_conv": Layer(
            weight(nnx.Conv(GROUPS_IN, GROUPS_IN * MULTIPLIER, (K, K), feature_group_count=GROUPS_IN, rngs=rngs)),
            k2,
            None,
        ),
        "embedding": Layer(weight(nnx.Embed(VOCAB, DIM, rngs=rngs), "embedding"), VOCAB, DIM),
    }

    def own(shape, mode, seed):
        init = jax.nn.initializers.variance_scaling(1.0, mode, "normal")  # JAX's "normal" is untruncated
        return np.asarray(init(jax.random.key(seed), shape), dtype=np.float64)

    return layers, own


def _forward(model: Any, x: Any) -> Any:
    """An nnx model's output for a numpy batch (compare --model)."""
    import jax.numpy as jnp

    return np.asarray(model(jnp.asarray(x)))


FRAMEWORK = Framework(
    name="flax",
    display="Flax (nnx)",
    detect=_detect_nnx,
    walker=NnxWalker,
    priority=30,
    defaults=_layer_defaults,
    measurer=_measure,
    preset_twins=_preset_twins,
    cross_rules=_cross_rules,
    backend="jax",
    forward=_forward,
    distribution="flax",
    norm_epsilon=(1e-5, 1e-6),
    recurrent_names=("i{gate}/kernel", (), None),
    version="0.12.8",
    module="flax.nnx",
    colour="#4a7dc4",
    style="-",
    presets=_PRESETS,
    aliases=("nnx", "jax"),
)
LINEN = Framework(
    name="linen",
    display="Flax (linen)",
    detect=_detect_linen,
    walker=LinenWalker,
    priority=35,
    backend="jax",
    presets=_PRESETS,
)


# Haiku's defaults and measurer (they share Flax's helpers); its record, walker included, is
# polyinit/frameworks/haiku.py, which registers it. Its kernels follow Keras' layouts.
HAIKU = Framework(
    name="haiku",
    display="Haiku",
    detect=lambda model: False,
    walker=LinenWalker,
    priority=99,
    defaults=_haiku_layer_defaults,
    measurer=_haiku_measure,
    backend="jax",
    distribution="dm-haiku",
    recurrent_names={"lstm": ("linear/w", (), None), "gru": ("w_i", (), None)},
    missing_layers=("mha",),
    version="0.0.17",
    module="haiku",
    colour="#8d6cab",
    style=":",
    presets={
        "dense": ("in out", "in out"),
        "conv": ("* in out", "* in out"),
        "conv_transpose": ("* in out", "* out in"),
        "depthwise_conv": ("* in out", "* batch out"),
        "embedding": ("in out", "in out"),
    },
)


def _register_linen() -> None:
    from polyinit.frameworks import register_framework

    register_framework(LINEN)


_register_linen()
