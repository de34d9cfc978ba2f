"""Equinox: the walker (a module is a pytree of dataclass fields, read in declaration order and
rewritten with ``eqx.tree_at``), its module types, and its layer defaults (equinox 0.13.8,
``equinox/nn``). JAX arrays are drawn with the JAX backend.

Equinox stores weights as torch does: ``Linear.weight`` (out, in), ``Conv.weight``
(out, in/groups, *k), ``LSTMCell.weight_ih`` (4H, in) with the gates i, f, g, o, so the same
architecture gives torch's records. Two differences are read off the modules: a conv's bias is
(out, 1, ..., 1) (its logical view is (out,)), and an LSTM cell has one bias where torch adds two.
Batch norm's running statistics live in ``eqx.nn.State``, outside the module: not walked.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import numpy as np

from polyinit.frameworks import Framework, module_type_of, register_module_type
from polyinit.frameworks._walk import Builder, dtype_name, fused_rnn_type
from polyinit.layout import Layout
from polyinit.params import ModelError, ModuleType, Param, ParamType

_NN = "equinox.nn"
_DENSE = ModuleType("dense", {"weight": ParamType("weight", "out in"), "bias": ParamType("bias", "out")})
_NORM = ModuleType("norm", {"weight": ParamType("scale", "out"), "bias": ParamType("offset", "out")})
_ATTENTION = ModuleType("attention", {})
for _path, _entry in {
    f"{_NN}._linear.Linear": _DENSE,
    f"{_NN}._conv.Conv": ModuleType(
        "conv", {"weight": ParamType("weight", "out in *"), "bias": ParamType("bias", "out *")}
    ),
    # ConvTranspose keeps (out, in/groups, *k) too (unlike torch's (in, out, *k)), scaled by in * prod(k).
    f"{_NN}._conv.ConvTranspose": ModuleType(
        "conv_transpose", {"weight": ParamType("weight", "out in *"), "bias": ParamType("bias", "out *")}
    ),
    f"{_NN}._embedding.Embedding": ModuleType(
        "embedding", {"weight": ParamType("embedding", "out in", semantic="in out")}
    ),
    f"{_NN}._normalisation.LayerNorm": _NORM,
    f"{_NN}._normalisation.GroupNorm": _NORM,
    f"{_NN}._normalisation.RMSNorm": _NORM,
    f"{_NN}._batch_norm.BatchNorm": _NORM,
    f"{_NN}._rnn.LSTMCell": ModuleType(
        "recurrent",
        {
            "weight_ih": fused_rnn_type("input", False, 4, None),
            "weight_hh": fused_rnn_type("hidden", False, 4, None),
            "bias": ParamType("bias", "out", split=(0, 4)),
        },
    ),  # one bias: torch's b_ih + b_hh
    f"{_NN}._rnn.GRUCell": ModuleType(
        "recurrent",
        {
            "weight_ih": fused_rnn_type("input", False, 3, None),
            "weight_hh": fused_rnn_type("hidden", False, 3, None),
            "bias": ParamType("bias", "out", split=(0, 3)),
            "bias_n": ParamType("bias", "out"),
        },
    ),
    f"{_NN}._attention.MultiheadAttention": _ATTENTION,
    f"{_NN}._activations.PReLU": ModuleType("other", {"negative_slope": ParamType("other", "out")}),
}.items():
    register_module_type(_path, _entry)

# q, k and v projections are each one logical parameter of the attention layer, as the blocks of
# torch's packed in_proj_weight are (polyinit.identity names them attn.q/k/v); the output
# projection is a dense layer of its own (torch's out_proj).
_QKV = ("query_proj", "key_proj", "value_proj")


def _attention_types(module: Any) -> dict[str, ParamType]:
    """Overrides for an attention module's projections (``query_proj.weight`` ...): weights and
    biases of the attention layer where the three have one shape (torch's packed blocks), else
    left as dense layers."""
    shapes = {tuple(getattr(module, name).weight.shape) for name in _QKV}
    if len(shapes) != 1:
        return {}
    types = {}
    for name in _QKV:
        types[f"{name}.weight"] = ParamType("weight", "out in")
        types[f"{name}.bias"] = ParamType("bias", "out")
    return types


class EquinoxWalker:
    """An ``eqx.Module``: fields in declaration order (``dataclasses.fields``), lists and tuples
    by index, dicts by key. Returns a new module (``eqx.tree_at``); the given one is untouched."""

    returns_new = True
    name = "equinox"

    def walk(self, model: Any) -> list[Param]:
        builder = Builder("out in *", sep=".")
        self._visit(builder, model, (), None, None)
        self.handles = builder.handles
        self.unknown = builder.unknown
        return builder.finish()

    def _visit(self, builder: Builder, module: Any, path: tuple, forced: Any, unit: Any) -> None:
        import equinox as eqx
        import jax

        if isinstance(module, eqx.nn.StateIndex):
            return  # where a stateful layer (BatchNorm) keeps its initial state: eqx.nn.State's, not a parameter
        prefix = ".".join(str(step[1]) for step in path)
        entry, _ = module_type_of(module)
        own, children = [], []
        for name, value in _fields(module):
            here = path + (("attr", name),)
            if isinstance(value, eqx.Module):
                children.append((here, value))
            elif isinstance(value, jax.Array):
                own.append((name, value, here))
            elif isinstance(value, (list, tuple, dict)):  # modules, or arrays the module owns (w.0, w.1)
                how = "key" if isinstance(value, dict) else "index"
                for k, v in value.items() if isinstance(value, dict) else enumerate(value):
                    if isinstance(v, eqx.Module):
                        children.append((here + ((how, k),), v))
                    elif isinstance(v, jax.Array):
                        own.append((f"{name}.{k}", v, here + ((how, k),)))
        if own:
            rows, views = [], {}
            for leaf, value, handle in own:
                shape = tuple(value.shape)
                rows.append((leaf, handle, id(value), shape, dtype_name(value.dtype), True, ""))
                if leaf == "bias" and len(shape) > 1 and entry is not None and entry.kind.startswith("conv"):
                    views[leaf] = ((shape[0],), Layout("out"))  # (out, 1, ..., 1): broadcast over space
            builder.layer(prefix, module, rows, key_prefix=prefix or "root", kind=forced, views=views, unit=unit)
        attention = entry is not None and entry.kind == "attention"
        if attention:
            for leaf, ptype in _attention_types(module).items():
                builder.overrides[f"{prefix}.{leaf}" if prefix else leaf] = ptype
        for child_path, child in children:
            child_unit, child_kind = unit, forced
            if attention and child_path[-1][1] in _QKV and _attention_types(module):
                child_unit, child_kind = f"{prefix}.qkv", "attention"
            self._visit(builder, child, child_path, child_kind, child_unit)

    def draw(self, param: Param, plan: Any, seed: int) -> Any:
        from polyinit.frameworks.flax import _jax_draw

        return _jax_draw(param, plan, seed)

    def write(self, model: Any, drawn: list) -> Any:
        import equinox as eqx
        import jax.numpy as jnp

        updates = [(self.handles[param.path], values) for param, values in drawn if values is not None]
        if not updates:
            return model
        replacements = []
        for handle, values in updates:  # every value checked before the new module is built
            old = _get(model, handle)
            new = jnp.asarray(values, dtype=old.dtype)
            if new.shape != old.shape:
                raise ModelError(
                    f"equinox: {_name(handle)} is {tuple(old.shape)}, received {tuple(new.shape)}; nothing was written"
                )
            replacements.append(new)
        return eqx.tree_at(lambda m: [_get(m, handle) for handle, _ in updates], model, replace=replacements)

    def read(self, model: Any, param: Param) -> Any:
        return np.asarray(_get(model, self.handles[param.path]), dtype=np.float64)


def _fields(module: Any) -> list[tuple[str, Any]]:
    """A module's dataclass fields in declaration order (static fields hold no arrays)."""
    return [
        (f.name, getattr(module, f.name, None))
        for f in dataclasses.fields(module)
        if not f.metadata.get("static", False)
    ]


def _get(model: Any, handle: tuple) -> Any:
    for how, key in handle:
        model = getattr(model, key) if how == "attr" else model[key]
    return model


def _name(handle: tuple) -> str:
    return ".".join(str(key) for _, key in handle)


def _detect(model: Any) -> bool:
    eqx = sys.modules.get("equinox")
    return eqx is not None and isinstance(model, eqx.Module)


# --- layer defaults and compare's measurer (equinox 0.13.8, ``equinox/nn``) ----------------------
# Every weight and bias is U(-lim, lim) (``_misc.default_init``), lim = 1/sqrt(fan_in): a Linear's
# in_features, a Conv's (and ConvTranspose's) in/groups * prod(kernel), an RNN cell's hidden size
# (``math.sqrt(1 / hidden_size)``) for its kernels and biases alike; Embedding is N(0, 1); norms
# ones and zeros; MultiheadAttention is four Linears, without biases by default.


def _uniform(fan_in: int) -> Any:
    from polyinit.defaults import _torch_uniform

    return _torch_uniform(fan_in)  # U(+-1/sqrt(fan_in)), as torch's bias


def _layer_defaults(layer: str, d: dict) -> dict:
    import math

    from polyinit.defaults import _ONE, _ZERO
    from polyinit.defaults import Param as Default
    from polyinit.layout import OUT_IN
    from polyinit.spec import Normal

    if layer == "dense":
        u = _uniform(d["n_in"])
        return {"weight": Default(u, OUT_IN, (d["n_out"], d["n_in"])), "bias": Default(u, OUT_IN, (d["n_out"],))}
    if layer in ("conv", "conv_transpose"):
        k, g = d["kernel"], d.get("groups", 1)
        u = _uniform(d["n_in"] // g * math.prod(k))
        return {
            "weight": Default(u, OUT_IN, (d["n_out"], d["n_in"] // g) + k),
            "bias": Default(u, OUT_IN, (d["n_out"],) + (1,) * len(k), "shape (out, 1, ..., 1)"),
        }
    if layer == "embedding":
        return {"weight": Default(Normal(std=1.0), OUT_IN, (d["num"], d["dim"]))}
    if layer in ("lstm", "gru"):
        h, n_in, gates = d["hidden"], d["n_in"], 4 if layer == "lstm" else 3
        u = _uniform(h)
        out = {
            "weight_ih": Default(u, OUT_IN, (gates * h, n_in), "U(+-1/sqrt(hidden))"),
            "weight_hh": Default(u, OUT_IN, (gates * h, h)),
            "bias": Default(u, OUT_IN, (gates * h,)),
        }
        if layer == "gru":
            out["bias_n"] = Default(u, OUT_IN, (h,))
        return out
    if layer in ("batchnorm", "layernorm"):  # BatchNorm's running statistics live in eqx.nn.State
        return {"weight": Default(_ONE, OUT_IN, (d["c"],)), "bias": Default(_ZERO, OUT_IN, (d["c"],))}
    if layer == "mha":
        u = _uniform(d["d_model"])
        return {
            f"{name}.weight": Default(u, OUT_IN, (d["d_model"], d["d_model"]), "no biases by default")
            for name in ("query_proj", "key_proj", "value_proj", "output_proj")
        }
    raise KeyError(layer)


def _cross_rules(weights: Any, biases: Any) -> list:
    """Equinox's defaults as rules for any model: weights and biases U(+-1/sqrt(fan_in of the
    weight)), embeddings N(0, 1): the very rules of torch's defaults (``polyinit.defaults.rules_for``)."""
    from polyinit.frameworks.torch import _cross_rules as torch_rules

    return torch_rules(weights, biases)


def _measure(setup: Any, seed: int, x: np.ndarray) -> tuple[list[float], list[float], list[np.ndarray]]:
    """compare's measurement on real Equinox layers: one example per call, mapped over the batch
    with ``jax.vmap``; convs channels first (the input arrives channels last)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from polyinit.measure import _stack, _widths, jax_activations

    acts = jax_activations()
    k, rank = setup.kernel, setup.rank
    keys = jax.random.split(jax.random.key(seed), setup.depth)

    def make(index: int) -> tuple[Any, Any]:
        i, o = _widths(setup, index)
        kind = "dense" if setup.kind == "embedding" and index else setup.kind
        key = keys[index]
        if kind == "dense":
            return eqx.nn.Linear(i, o, key=key), None
        if kind == "conv_transpose":
            return eqx.nn.ConvTranspose2d(i, o, k, key=key), None
        if kind.startswith("conv"):
            return eqx.nn.Conv(rank, i, o, k, key=key), None
        if kind == "embedding":
            return eqx.nn.Embedding(i, o, key=key), None
        if kind in ("lstm", "gru"):
            return (eqx.nn.LSTMCell if kind == "lstm" else eqx.nn.GRUCell)(i, o, key=key), None
        if kind == "batchnorm":
            return eqx.nn.make_with_state(eqx.nn.BatchNorm)(i, "batch", mode="batch")
        if kind == "layernorm":
            return eqx.nn.LayerNorm(i), None
        return eqx.nn.MultiheadAttention(setup.heads, i, key=key), None

    built = [make(index) for index in range(setup.depth)]
    calls = [lambda t, m=m, s=s: _equinox_apply()(m, s, setup.kind, k, t) for m, s in built]
    data = jnp.asarray(np.moveaxis(x, -1, 1) if rank else x)
    linear = _stack(calls, data, acts["linear"], np.asarray)
    activated = _stack(calls, data, acts[setup.activation], np.asarray)
    arrays = [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(built[0][0], eqx.is_inexact_array))]
    # A conv's bias is (out, 1, ..., 1): flat, for the picture's bias histogram.
    return (
        linear,
        activated,
        [a.reshape(-1) if a.ndim > 1 and a.shape[1:] == (1,) * (a.ndim - 1) else a for a in arrays],
    )


_APPLY: list = []


def _equinox_apply():
    """One compiled call per layer structure and shape (``eqx.filter_jit``: arrays traced, the
    rest static), as compare's Flax measurer does: eager cells compile every small op."""
    if not _APPLY:
        import equinox as eqx
        import jax

        from polyinit.measure import _crop

        def apply(module, state, kind, k, t):
            if kind in ("lstm", "gru") and not isinstance(module, eqx.nn.Linear):
                hidden = module.hidden_size
                zero = jax.numpy.zeros(hidden)
                carry = (zero, zero) if kind == "lstm" else zero
                out = jax.vmap(lambda x: module(x, carry))(t[:, 0])
                return (out[0] if kind == "lstm" else out)[:, None]
            if kind == "batchnorm":
                return jax.vmap(module, axis_name="batch", in_axes=(0, None), out_axes=(0, None))(t, state)[0]
            if kind == "mha" and isinstance(module, eqx.nn.MultiheadAttention):
                return jax.vmap(lambda x: module(x, x, x))(t)
            y = jax.vmap(module)(t)
            if kind == "conv_transpose":
                return y[(slice(None), slice(None)) + _crop(k, 2)[1:-1]]
            return y

        _APPLY.append(eqx.filter_jit(apply))
    return _APPLY[0]


def _forward(model: Any, x: Any) -> Any:
    """An Equinox model's output for a numpy batch (compare --model): Equinox layers take one
    example, so the batch is mapped with ``jax.vmap``."""
    import jax
    import jax.numpy as jnp

    return np.asarray(jax.vmap(model)(jnp.asarray(x)))


FRAMEWORK = Framework(
    name="equinox",
    display="Equinox",
    detect=_detect,
    walker=EquinoxWalker,
    priority=97,
    backend="jax",
    forward=_forward,
    distribution="equinox",
    version="0.13.8",
    module="equinox",
    defaults=_layer_defaults,
    measurer=_measure,
    cross_rules=_cross_rules,
    norm_epsilon=(1e-5, 1e-5),
    recurrent_names={"lstm": ("weight_ih", ("bias",), None), "gru": ("weight_ih", ("bias",), "bias_n")},
    colour="#2a9d8f",
    style="-.",
    presets={
        "dense": ("out in", "out in"),
        "conv": ("out in *", "out in *"),
        "conv_transpose": ("out in *", "out in *"),
        "embedding": ("out in", "in out"),
    },
)
