"""Flax: the nnx walker (attribute definition order), the linen walker (variables trees, module
order), module types and presets. JAX arrays are drawn with the JAX backend."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from polyinit.frameworks import Framework, module_type_of, register_module_type
from polyinit.frameworks._walk import Builder, dtype_name, role_by_name
from polyinit.layout import Layout
from polyinit.params import ModelError, ModuleType, Param, ParamType, grouped_view

_NN = "flax.nnx.nn"
_KERNEL = {"kernel": ParamType("weight", "* in out"), "bias": ParamType("bias", "out")}
_NORM = ModuleType("norm", {"scale": ParamType("scale", "out"), "bias": ParamType("offset", "out"),
                            "mean": ParamType("running_mean", "out"), "var": ParamType("running_var", "out")})
_CELL = ModuleType("recurrent", {})
for _path, _entry in {
    f"{_NN}.linear.Linear": ModuleType("dense", _KERNEL), f"{_NN}.linear.LinearGeneral": ModuleType("dense", _KERNEL),
    f"{_NN}.linear.Einsum": ModuleType("dense", _KERNEL), f"{_NN}.linear.Conv": ModuleType("conv", _KERNEL),
    f"{_NN}.linear.ConvTranspose": ModuleType("conv_transpose", _KERNEL),
    f"{_NN}.linear.Embed": ModuleType("embedding", {"embedding": ParamType("embedding", "in out")}),
    f"{_NN}.normalization.BatchNorm": _NORM, f"{_NN}.normalization.LayerNorm": _NORM,
    f"{_NN}.normalization.RMSNorm": _NORM, f"{_NN}.normalization.GroupNorm": _NORM,
    f"{_NN}.attention.MultiHeadAttention": ModuleType("attention", {}),
    f"{_NN}.recurrent.RNNCellBase": _CELL,
}.items():
    register_module_type(_path, _entry)

# Linen variables trees carry no module types, only names (Dense_0, or the user's own): the kind
# comes from the nearest name that contains a known layer class name.
_LINEN_KINDS = (("MultiHeadDotProductAttention", "attention"), ("MultiHeadAttention", "attention"),
                ("SelfAttention", "attention"), ("ConvTranspose", "conv_transpose"), ("Conv", "conv"),
                ("Embed", "embedding"), ("Norm", "norm"), ("LSTM", "recurrent"), ("GRU", "recurrent"),
                ("Cell", "recurrent"), ("Dense", "dense"), ("Linear", "dense"), ("Einsum", "dense"))
_COLLECTIONS = ("params", "batch_stats", "cache", "intermediates", "constants", "state")


def _attention_layout(module_name: str, shape: tuple) -> Any:
    if len(shape) != 3:
        return None
    return Layout("in in out") if module_name in ("out", "attention_output") else Layout("in out out")


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
        self._visit(builder, model, (), None, set())
        self.variables = builder.handles
        self.unknown = builder.unknown
        return builder.finish()

    def _visit(self, builder: Builder, module: Any, path: tuple, forced: Any, seen: set) -> None:
        from flax import nnx

        if id(module) in seen:
            return
        seen.add(id(module))
        entry, _ = module_type_of(module)
        own, children = [], []
        # Attribute definition order (vars() keeps insertion order): nnx.iter_modules sorts by name.
        for attribute, value in vars(module).items():
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
        prefix = "/".join(str(p) for p in path)
        if own:
            rows, views = [], {}
            for leaf, variable in own:
                value = variable[...]
                shape = tuple(value.shape)
                rows.append((leaf, variable, id(variable), shape, dtype_name(value.dtype), isinstance(variable, nnx.Param), ""))
                if forced == "attention" and _attention_layout(str(path[-1]), shape) is not None:
                    views[leaf] = (None, _attention_layout(str(path[-1]), shape), _attention_layout(str(path[-1]), shape).pattern)
                groups = getattr(module, "feature_group_count", 1)
                if leaf == "kernel" and isinstance(groups, int) and groups > 1:
                    views[leaf] = grouped_view(shape, Layout("* in out").roles(len(shape)), len(shape) - 1, groups, {})
            builder.layer(prefix, module, rows, key_prefix=prefix, kind=forced, views=views)
            if forced == "recurrent" and path and str(path[-1]).startswith("h"):
                _recurrent_roles(builder, prefix)
        inner = entry.kind if entry is not None and entry.kind in ("attention", "recurrent") else forced
        for name, child in children:
            self._visit(builder, child, path + tuple(name.split("/")), inner, seen)

    def draw(self, param: Param, plan: Any, seed: int) -> Any:
        return _jax_draw(param, plan, seed, like=self.variables[param.path][...])

    def write(self, model: Any, drawn: list) -> Any:
        written = []
        try:
            for param, values in drawn:
                if values is not None:
                    variable = self.variables[param.path]
                    written.append((variable, variable[...]))
                    variable[...] = values
        except Exception as error:
            for variable, backup in written:
                variable[...] = backup
            raise ModelError(f"nnx: writing failed ({type(error).__name__}: {error}); "
                             f"the {len(written)} variables written were restored") from error
        return model

    def read(self, model: Any, param: Param) -> Any:
        return np.asarray(self.variables[param.path][...], dtype=np.float64)


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
        builder = Builder("* in out", sep="/")
        collections = _has_collections(tree)
        layers: dict[str, list] = {}
        for path, leaf in flatten(tree):
            parts = path.split("/")
            module = "/".join(parts[1 if collections else 0:-1])  # batch_stats/BN_0 is the same layer as params/BN_0
            layers.setdefault(module, []).append((parts, path, leaf))
        for module, leaves in layers.items():
            names = module.split("/") if module else []
            kind = next((k for n in reversed(names) for key, k in _LINEN_KINDS if key in n), None)
            parent = names[-1] if names else ""
            rows, views = [], {}
            for parts, path, leaf in leaves:
                shape = tuple(leaf.shape)
                name = "/".join(parts[:1] + [parts[-1]]) if collections else parts[-1]
                rows.append((name, leaf, path, shape, dtype_name(leaf.dtype), parts[0] == "params" or not collections, ""))
                if kind == "attention" and _attention_layout(parent, shape) is not None:
                    views[name] = (None, _attention_layout(parent, shape), _attention_layout(parent, shape).pattern)
            before = len(builder.params)
            builder.layer(module, None, rows, key_prefix=module or "root",
                          kind=kind or "other", views=views)
            for i in range(before, len(builder.params)):
                p = builder.params[i]
                leaf_name = p.path.rsplit("/", 1)[-1]
                role = role_by_name(p.kind, leaf_name)
                if p.kind == "recurrent" and leaf_name == "kernel" and parent.startswith("h"):
                    role = "recurrent"
                import dataclasses

                builder.params[i] = dataclasses.replace(p, role=role, path=_real_path(p, collections, module))
                builder.handles[builder.params[i].path] = builder.handles.pop(p.path)
        self.leaves = builder.handles
        return builder.finish()

    def draw(self, param: Param, plan: Any, seed: int) -> Any:
        return _jax_draw(param, plan, seed)

    def write(self, tree: Any, drawn: list) -> Any:
        return rebuild(tree, {param.path: values for param, values in drawn if values is not None})

    def read(self, tree: Any, param: Param) -> Any:
        return np.asarray(dict(flatten(tree))[param.path], dtype=np.float64)


def _real_path(p: Param, collections: bool, module: str) -> str:
    """The Builder joins layer path and leaf ("Dense_0/params/kernel"); the tree has the collection
    first ("params/Dense_0/kernel")."""
    if not collections:
        return p.path
    leaf = p.path[len(module) + 1:] if module else p.path
    collection, name = leaf.split("/", 1)
    return "/".join(x for x in (collection, module, name) if x)


def _has_collections(tree: Any) -> bool:
    return isinstance(tree, Mapping) and "params" in tree and all(isinstance(v, Mapping) for v in tree.values())


def flatten(tree: Any, prefix: str = ""):
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
    return bool(leaves) and all(isinstance(v, jax.Array) for v in leaves)


_PRESETS = {"dense": ("in out", "in out"), "conv": ("* in out", "* in out"),
            "conv_transpose": ("* in out", "* in out"),   # kernel (*k, in, out)
            "embedding": ("in out", "in out"),
            "depthwise_conv": ("* in out", "* in out")}   # feature_group_count: (*k, 1, C*m)

FRAMEWORK = Framework(name="flax", display="Flax (nnx)", detect=_detect_nnx, walker=NnxWalker, priority=30,
                      presets=_PRESETS, aliases=("nnx", "jax"))
LINEN = Framework(name="linen", display="Flax (linen)", detect=_detect_linen, walker=LinenWalker, priority=35,
                  presets=_PRESETS)


# Haiku has no walker (its params are linen-like trees); its kernels follow Keras' layouts.
HAIKU = Framework(name="haiku", display="Haiku", detect=lambda model: False, walker=LinenWalker, priority=99,
                  presets={"dense": ("in out", "in out"), "conv": ("* in out", "* in out"),
                           "conv_transpose": ("* in out", "* out in"), "depthwise_conv": ("* in out", "* batch out"),
                           "embedding": ("in out", "in out")})


def _register_linen() -> None:
    from polyinit.frameworks import register_framework

    register_framework(LINEN)
    register_framework(HAIKU)


_register_linen()
