"""Model walkers: list a model's parameters with portable metadata, draw, and write them back.

One small class per framework, chosen from the model's type through ``sys.modules`` (nothing is
imported to ask). Each has ``walk(model) -> [Param]``, ``draw(param, plan, seed) -> values``,
``write(model, [(param, values)]) -> model or new tree`` and ``read(result, param)``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from polyinit.errors import PolyinitError
from polyinit.layout import IN_OUT, OUT_IN, Layout, preset
from polyinit.rules import Param

_ROLE_BY_NAME = {"weight": "weight", "kernel": "weight", "bias": "bias", "gamma": "scale", "scale": "scale",
                 "beta": "offset", "offset": "offset", "embedding": "embedding", "embeddings": "embedding",
                 "running_mean": "running_mean", "moving_mean": "running_mean", "mean": "running_mean",
                 "running_var": "running_var", "moving_variance": "running_var", "var": "running_var",
                 "recurrent_kernel": "recurrent", "depthwise_kernel": "weight", "pointwise_kernel": "weight"}


_SUFFIXES = sorted(_ROLE_BY_NAME, key=len, reverse=True)


def _role(kind: str, leaf: str) -> str:
    role = _ROLE_BY_NAME.get(leaf, "other")
    if kind == "norm":
        return {"weight": "scale", "bias": "offset"}.get(role, role)
    if kind == "embedding" and role == "weight":
        return "embedding"
    return role


def _dtype(name: str) -> str:
    name = name.replace("torch.", "")
    if name not in ("float16", "bfloat16", "float32", "float64"):
        raise PolyinitError(f"rules: cannot initialise a parameter of dtype {name}")
    return name


class TorchWalker:
    returns_new = False

    def walk(self, model) -> list[Param]:
        import torch.nn as nn

        kinds = ((nn.MultiheadAttention, "attention"), (nn.Linear, "dense"), (nn.Bilinear, "dense"),
                 ((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), "conv_transpose"),
                 ((nn.Conv1d, nn.Conv2d, nn.Conv3d), "conv"), ((nn.Embedding, nn.EmbeddingBag), "embedding"),
                 ((nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm), "norm"),
                 ((nn.RNNBase, nn.RNNCellBase), "recurrent"))
        self.tensors, params, seen, layer = {}, [], set(), -1
        for prefix, module in model.named_modules():
            own = list(module.named_parameters(recurse=False)) + [
                (n, b) for n, b in module.named_buffers(recurse=False) if n in ("running_mean", "running_var")]
            own = [(n, t) for n, t in own if id(t) not in seen and t.is_floating_point()]
            if not own:
                continue
            layer += 1
            kind = next((k for types, k in kinds if isinstance(module, types)), "other")
            for leaf, tensor in own:
                seen.add(id(tensor))
                path = f"{prefix}.{leaf}" if prefix else leaf
                self.tensors[path] = tensor
                layout = preset("torch", "conv_transpose") if kind == "conv_transpose" else OUT_IN
                params.append(Param(path, kind, self._role(kind, leaf), tuple(tensor.shape), layout, layer,
                                    _dtype(str(tensor.dtype))))
        return params

    @staticmethod
    def _role(kind: str, leaf: str) -> str:
        if kind in ("norm", "embedding") or leaf.startswith("running_"):
            return _role(kind, leaf)
        if leaf.startswith("weight_hh"):
            return "recurrent"
        # weight, weight_ih_l0, in_proj_weight, q_proj_weight; bias, bias_ih_l0, in_proj_bias, bias_k
        return "weight" if "weight" in leaf else "bias" if "bias" in leaf else "other"

    def draw(self, param: Param, plan, seed: int):
        # Every plan was resolved against its tensor's shape and dtype before this, so drawing
        # cannot fail any more: the draw is deferred to ``write`` and goes straight into the
        # parameter (no temporary, one pass over memory, as a hand-written loop does).
        return (plan, seed)

    def write(self, model, drawn):
        import torch

        from polyinit.backends.torch import draw_into

        for param, pending in drawn:
            target = self.tensors[param.path]
            if isinstance(pending, tuple):  # (plan, seed) from draw()
                plan, seed = pending
                draw_into(target, plan, torch.Generator(device=target.device).manual_seed(seed))
            elif pending is not None:  # explicit values (surgery)
                with torch.no_grad():
                    target.copy_(torch.as_tensor(pending))
        return model

    def read(self, model, param: Param):
        return self.tensors[param.path].detach().float().cpu().numpy().copy()  # never a view into the model

    def moments(self, model, param: Param):
        tensor = self.tensors[param.path].detach()
        if tensor.numel() == 0 or tensor.device.type == "meta":
            return None, None
        std, mean = torch_std_mean(tensor)
        return float(mean), float(std)


def torch_std_mean(tensor):
    import torch

    return torch.std_mean(tensor.float(), correction=0)


class KerasWalker:
    returns_new = False
    _KINDS = (("MultiHeadAttention", "attention"), ("EinsumDense", "dense"), ("Dense", "dense"),
              ("Transpose", "conv_transpose"), ("Conv", "conv"), ("Embedding", "embedding"),
              ("Normalization", "norm"), ("LSTM", "recurrent"), ("GRU", "recurrent"), ("RNN", "recurrent"))

    def walk(self, model, input_shape=None) -> list[Param]:
        if not model.built:
            if input_shape is None:
                raise PolyinitError("rules: this Keras model is not built; pass input_shape= to build it")
            import keras

            # Calling the model builds every sublayer, subclassed models included (build() alone
            # does not when the model has no build method of its own).
            model(keras.ops.zeros(tuple(1 if d is None else d for d in input_shape)))
        self.variables, params, layer = {}, [], -1
        layers = list(model._flatten_layers(include_self=False, recursive=True))
        # The EinsumDense projections inside a MultiHeadAttention are attention parameters.
        attention = [l.path + "/" for l in layers if "MultiHeadAttention" in type(l).__name__]
        for owner in layers:
            own = list(owner._trainable_variables) + list(owner._non_trainable_variables)
            own = [v for v in own if "float" in str(v.dtype) and v.path not in self.variables]
            if not own:
                continue
            layer += 1
            cls = type(owner).__name__
            kind = next((k for key, k in self._KINDS if key in cls), "other")
            if kind == "dense" and owner.path.startswith(tuple(attention)):
                kind = "attention"
            for v in own:
                self.variables[v.path] = v
                layout = IN_OUT
                if kind == "conv_transpose":
                    layout = preset("keras", "conv_transpose")
                elif kind == "attention" and len(v.shape) == 3:
                    layout = Layout("in in out") if owner.name == "attention_output" else Layout("in out out")
                params.append(Param(v.path, kind, _role(kind, v.name), tuple(v.shape), layout, layer, _dtype(str(v.dtype))))
        return params

    def draw(self, param: Param, plan, seed: int):
        from polyinit.backends.keras import draw

        return draw(plan, seed)

    def write(self, model, drawn):
        for param, values in drawn:
            if values is not None:
                self.variables[param.path].assign(values)
        return model

    def read(self, model, param: Param):
        import keras

        return keras.ops.convert_to_numpy(self.variables[param.path]).astype(np.float64)


def _flax_kind(names: list[str]) -> str:
    table = (("MultiHeadDotProductAttention", "attention"), ("MultiHeadAttention", "attention"),
             ("SelfAttention", "attention"), ("ConvTranspose", "conv_transpose"), ("Conv", "conv"),
             ("Embed", "embedding"), ("Norm", "norm"), ("LSTM", "recurrent"), ("GRU", "recurrent"),
             ("Cell", "recurrent"), ("Dense", "dense"), ("Linear", "dense"), ("Einsum", "dense"))
    for name in names:  # the nearest typed ancestor decides
        for key, kind in table:
            if key in name:
                return kind
    return "other"


def _flax_layout(kind: str, leaf: str, module: str, shape) -> Layout:
    if kind == "conv_transpose":
        return preset("flax", "conv_transpose")
    if kind == "attention" and len(shape) == 3:
        return Layout("in in out") if module in ("out", "attention_output") else Layout("in out out")
    return IN_OUT


class LinenWalker:
    """A flax.linen variables/params tree (nested mappings of jax arrays); returns a new tree."""

    returns_new = True

    def walk(self, tree) -> list[Param]:
        params, layers = [], {}
        for path, leaf in _flatten(tree):
            parts = path.split("/")
            module_path = "/".join(parts[:-1])
            layer = layers.setdefault(module_path, len(layers))
            kind = _flax_kind(list(reversed(parts[:-1])))
            name = parts[-1]
            role = "recurrent" if kind == "recurrent" and len(parts) > 1 and parts[-2].startswith("h") and name == "kernel" else _role(kind, name)
            params.append(Param(path, kind, role, tuple(leaf.shape), _flax_layout(kind, name, parts[-2] if len(parts) > 1 else "", leaf.shape),
                                layer, _dtype(str(leaf.dtype))))
        return params

    def draw(self, param: Param, plan, seed: int):
        import jax

        from polyinit.backends.jax import draw

        return draw(plan, jax.random.key(seed))

    def write(self, tree, drawn):
        updates = {param.path: values for param, values in drawn if values is not None}
        return _rebuild(tree, updates)

    def read(self, tree, param: Param):
        return np.asarray(dict(_flatten(tree))[param.path], dtype=np.float64)


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from _flatten(value, path)
        else:
            yield path, value


def _rebuild(tree, updates, prefix=""):
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        out[key] = _rebuild(value, updates, path) if isinstance(value, Mapping) else updates.get(path, value)
    return out


class NnxWalker:
    returns_new = False

    def walk(self, model) -> list[Param]:
        from flax import nnx

        self.variables, params, layer = {}, [], -1
        modules = list(nnx.iter_modules(model))
        # The LinearGeneral projections inside a MultiHeadAttention are attention parameters.
        attention = [tuple(p) for p, m in modules if isinstance(m, nnx.MultiHeadAttention)]
        for path, module in modules:
            own = [(k, v) for k, v in vars(module).items() if isinstance(v, (nnx.Param, nnx.BatchStat))]
            if not own:
                continue
            layer += 1
            names = [type(module).__name__] + [str(p) for p in reversed(path)]
            kind = _flax_kind(names)
            if kind == "dense" and any(tuple(path[:len(a)]) == a and len(path) > len(a) for a in attention):
                kind = "attention"
            prefix = "/".join(str(p) for p in path)
            for leaf, variable in own:
                full = f"{prefix}/{leaf}" if prefix else leaf
                self.variables[full] = variable
                value = variable[...]
                params.append(Param(full, kind, _role(kind, leaf), tuple(value.shape),
                                    _flax_layout(kind, leaf, str(path[-1]) if path else "", value.shape), layer,
                                    _dtype(str(value.dtype))))
        return params

    draw = LinenWalker.draw

    def write(self, model, drawn):
        for param, values in drawn:
            if values is not None:
                self.variables[param.path][...] = values
        return model

    def read(self, model, param: Param):
        return np.asarray(self.variables[param.path][...], dtype=np.float64)


class MxnetWalker:
    """A Gluon block (real mxnet) or a name -> array dict in MXNet's naming (dense0_weight, ...)."""

    returns_new = False
    _KINDS = (("deconv", "conv_transpose"), ("conv", "conv"), ("dense", "dense"), ("embedding", "embedding"),
              ("norm", "norm"), ("lstm", "recurrent"), ("gru", "recurrent"), ("rnn", "recurrent"))

    def walk(self, model) -> list[Param]:
        self.arrays = dict(model.collect_params().items()) if hasattr(model, "collect_params") else dict(model)
        params, layers = [], {}
        for path, array in self.arrays.items():
            shape = tuple(array.shape)
            match = re.match(r"(.*?[a-z]+)\d*_(.*)$", path)
            prefix, leaf = (match.group(1), match.group(2)) if match else ("", path)
            layer = layers.setdefault(path[: len(path) - len(leaf)], len(layers))
            kind = next((k for key, k in self._KINDS if key in prefix.lower()), "other")
            # The longest known name the leaf ends with: l0_i2h_bias -> bias, running_mean, gamma, ...
            name = next((n for n in _SUFFIXES if leaf.endswith(n)), leaf)
            role = "recurrent" if leaf.endswith("h2h_weight") else _role(kind, name)
            params.append(Param(path, kind, role, shape, OUT_IN, layer, _dtype(np.dtype(array.dtype).name)))
        return params

    def draw(self, param: Param, plan, seed: int):
        from polyinit.backends.numpy import draw

        return draw(plan, np.random.default_rng(seed))

    def write(self, model, drawn):
        for param, values in drawn:
            if values is None:
                continue
            target = self.arrays[param.path]
            if isinstance(target, np.ndarray):
                target[...] = values
            elif hasattr(target, "set_data"):  # a Gluon Parameter
                target.set_data(values)
            else:  # an NDArray
                target[:] = values
        return model

    def read(self, model, param: Param):
        target = self.arrays[param.path]
        if hasattr(target, "set_data"):  # a Gluon Parameter
            target = target.data()
        return np.asarray(target if isinstance(target, np.ndarray) else target.asnumpy(), dtype=np.float64)


def walker_for(model: Any):
    """The walker for ``model``'s framework, found without importing any framework."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return TorchWalker()
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.layers.Layer):
        return KerasWalker()
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(model, nnx.Module):
        return NnxWalker()
    mx = sys.modules.get("mxnet")
    if mx is not None and hasattr(mx, "gluon") and isinstance(model, mx.gluon.Block):
        return MxnetWalker()
    if isinstance(model, Mapping):
        leaves = [leaf for _, leaf in _flatten(model)]
        jax = sys.modules.get("jax")
        if leaves and jax is not None and all(isinstance(v, jax.Array) for v in leaves):
            return LinenWalker()
        if leaves and all(hasattr(v, "shape") and hasattr(v, "dtype") for v in leaves):
            return MxnetWalker()
    raise PolyinitError(f"rules: no walker for a {type(model).__module__}.{type(model).__name__}; expected a "
                        "torch nn.Module, a Keras model, a flax linen param tree or nnx Module, or an MXNet "
                        "Gluon block or name -> array dict")
