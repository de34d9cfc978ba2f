"""Haiku: the walker of a params tree (``hk.transform(f).init(...)``'s ``{module: {name: array}}``),
read with dm-haiku's own conventions (0.0.17, ``haiku/_src``). Returns a new tree.

Haiku keeps no module types in the tree, only its module names (``mlp/~/linear_0``,
``conv2_d``, ``lstm/linear``, ``multi_head_attention/query``) and its parameter names (``w``,
``b``, ``embeddings``, ``scale``, ``offset``, ``w_i``, ``w_h``), so kinds and roles come from
those names and the shapes:

* ``w`` of rank 2 is a dense kernel (in, out); of higher rank a conv kernel (*k, in, out), or
  (*k, out, in) where the module is a transposed conv (``conv2_d_transpose``);
* ``hk.LSTM`` stores one kernel (in + H, 4H) over [x, h] with the gates in the order i, g, f, o
  and one bias (4H,), to whose forget gate it adds 1 at call time: the walker reads it as torch's
  records, an input weight and a recurrent weight, each per gate in the order i, f, g, o, and the
  effective bias per gate (the forget gate's is stored + 1; records over slices of the one tensor,
  and writes put the slices back);
* ``hk.GRU``'s ``w_i`` (in, 3H), ``w_h`` (H, 3H), ``b`` (3H,) hold the gates z, r, n: read per
  gate in torch's order r, z, n;
* ``hk.MultiHeadAttention``'s query, key and value kernels are one logical parameter each, as the
  blocks of torch's packed ``in_proj_weight`` are; its output ``linear`` is the attention output;
* a batch norm's ``scale`` and ``offset`` keep the reduced axes, (1, ..., C): their logical view is
  (C,). A tree merged with the state (``hk.data_structures.merge(params, state)``) adds each
  norm's running mean and variance (``mean_ema``/``var_ema`` ``average``): merge with
  ``{**params, **state}``, which keeps Haiku's order (``hk.data_structures.merge`` sorts the keys).

Declaration order is the tree's order, which is the order Haiku created the parameters in (a tree
that went through ``jax.jit`` comes back with its keys sorted: walk the one ``init`` returned).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from polyinit.frameworks import Framework
from polyinit.frameworks._walk import Builder, dtype_name
from polyinit.layout import Layout
from polyinit.params import ModelError, Param, ParamType, Part

# Haiku's own parameter and state names (hk.Linear, ConvND, Embed, norms, GRU, EMA): what tells
# a Haiku tree from a linen one (kernel, bias, embedding).
_HAIKU_NAMES = {"w", "b", "embeddings", "scale", "offset", "w_i", "w_h", "average", "hidden", "counter"}
_LINEN_NAMES = {"kernel", "bias", "embedding", "mean", "var"}
_QKV = ("query", "key", "value")
_LSTM_GATES = {"i": 0, "g": 1, "f": 2, "o": 3}  # Haiku's block order; torch's is i, f, g, o
_TORCH_LSTM = "ifgo"
_GRU_GATES = {"z": 0, "r": 1, "n": 2}
_TORCH_GRU = "rzn"


@dataclasses.dataclass(frozen=True)
class _Slice:
    """A record's place in the tree: module, leaf, and where set, the (rows, columns) block of a
    packed recurrent tensor it is (a bias is sliced on its only axis)."""

    module: str
    leaf: str
    rows: tuple[int, int] | None = None
    cols: tuple[int, int] | None = None
    offset: float = 0.0  # what the layer adds at call time: the value a record means is stored + offset

    def take(self, array: Any) -> Any:
        if self.cols is None:
            return array
        if array.ndim == 1:
            return array[self.cols[0] : self.cols[1]]
        rows = self.rows or (0, array.shape[0])
        return array[rows[0] : rows[1], self.cols[0] : self.cols[1]]

    def place(self, target: np.ndarray, values: np.ndarray) -> None:
        if self.cols is None:
            target[...] = values
        elif target.ndim == 1:
            target[self.cols[0] : self.cols[1]] = values
        else:
            rows = self.rows or (0, target.shape[0])
            target[rows[0] : rows[1], self.cols[0] : self.cols[1]] = values


def _kind(module: str, leaves: Mapping) -> str:
    """A module's kind from Haiku's naming and its leaves' names and shapes."""
    names = module.split("/")
    last = names[-1]
    if any(n.startswith("multi_head_attention") for n in names[:-1]) and last in _QKV:
        return "attention"
    if "embeddings" in leaves:
        return "embedding"
    if "scale" in leaves or "offset" in leaves or last in ("mean_ema", "var_ema"):
        return "norm"
    if "w_i" in leaves or (last == "linear" and len(names) > 1 and names[-2].startswith("lstm")):
        return "recurrent"
    w = leaves.get("w")
    if w is not None and len(w.shape) > 2:
        return "conv_transpose" if "transpose" in last else "conv"
    return "dense" if w is not None else "other"


class HaikuWalker:
    """A Haiku params tree ``{module: {name: array}}`` (or params merged with state)."""

    returns_new = True
    name = "haiku"

    def walk(self, tree: Any) -> list[Param]:
        builder = Builder("* in out", sep="/")
        norms: dict[str, str] = {}  # a norm module -> the unit its EMA state joins
        owners = {m: owner for m in tree if (owner := _ema_owner(m)) is not None}
        states = list(owners)
        for module, leaves in tree.items():
            if module in owners:
                continue
            kind = _kind(module, leaves)
            if kind == "recurrent":
                self._recurrent(builder, module, leaves)
            else:
                self._layer(builder, tree, module, leaves, kind, norms)
            # A norm's running statistics right after its scale and offset, as torch lists them.
            for state in [m for m in states if owners[m][0] == module]:
                states.remove(state)
                self._norm_state(builder, tree, state, tree[state], owners[state], norms)
        for state in states:  # statistics whose norm has no parameters here
            self._norm_state(builder, tree, state, tree[state], owners[state], norms)
        self.handles = builder.handles
        self.unknown = builder.unknown
        return builder.finish()

    def _layer(self, builder: Builder, tree: Any, module: str, leaves: Mapping, kind: str, norms: dict) -> None:
        rows, types, views = [], {}, {}
        unit = None
        parent = module.rsplit("/", 1)[0] if "/" in module else ""
        stacked = kind == "attention" and _same_qkv(tree, parent)
        for leaf, value in leaves.items():
            shape = tuple(value.shape)
            rows.append((leaf, _Slice(module, leaf), (module, leaf), shape, dtype_name(value.dtype), True, ""))
            role = {"w": "weight", "b": "bias", "embeddings": "embedding", "scale": "scale", "offset": "offset"}.get(
                leaf, "other"
            )
            if kind == "norm" and len(shape) > 1:
                views[leaf] = ((shape[-1],), Layout("out"))  # (1, ..., C): the reduced axes kept
            if role == "weight" and kind == "conv_transpose":
                types[leaf] = ParamType(
                    role, "* in out", semantic="* out in"
                )  # (*k, out, in), Haiku's fan_in on axis -2
            elif role == "weight" and stacked:
                types[leaf] = ParamType(role, "in out")  # one logical parameter each, as torch's q/k/v blocks
            elif role == "bias" and stacked:
                types[leaf] = ParamType(role, "out")
            elif role in ("weight", "embedding"):
                types[leaf] = ParamType(role, "* in out" if len(shape) > 2 else "in out")
            else:
                types[leaf] = ParamType(role, "* out" if len(shape) > 1 else "out")
        if stacked:
            unit = f"{parent}/qkv"
        if kind == "norm":
            norms[module] = module
            unit = module
        builder.layer(module, None, rows, key_prefix=module, kind=kind, types=types, views=views, unit=unit)

    def _norm_state(self, builder: Builder, tree: Any, module: str, leaves: Mapping, owner: tuple, norms: dict) -> None:
        """``batch_norm/~/mean_ema``'s ``average`` is the norm's running mean (``hidden`` is the
        EMA's un-debiased accumulator and ``counter`` its step: not values anyone initialises)."""
        norm, role = owner
        value = leaves.get("average")
        if value is None:
            return
        shape = tuple(value.shape)
        row = ("average", _Slice(module, "average"), (module, "average"), shape, dtype_name(value.dtype), False, "")
        views = {"average": ((shape[-1],), Layout("out"))} if len(shape) > 1 else {}
        builder.layer(
            module,
            None,
            [row],
            key_prefix=module,
            kind="norm",
            unit=norms.get(norm, norm),
            types={"average": ParamType(role, "* out" if len(shape) > 1 else "out")},
            views=views,
        )

    def _recurrent(self, builder: Builder, module: str, leaves: Mapping) -> None:
        """hk.LSTM's packed ``w``/``b`` or hk.GRU's ``w_i``/``w_h``/``b``, one record per gate."""
        rows, types = [], {}
        pieces: list[tuple[str, str, tuple[int, int] | None]]
        if "w_i" in leaves:  # GRU
            hidden = leaves["w_h"].shape[0]
            pieces = [("w_i", "weight", None), ("w_h", "recurrent", None), ("b", "bias", None)]
            gates, order = _GRU_GATES, _TORCH_GRU
        else:  # LSTM: w is (in + H, 4H) over [x, h]
            hidden = leaves["w"].shape[1] // 4
            n_in = leaves["w"].shape[0] - hidden
            pieces = [("w", "weight", (0, n_in)), ("w", "recurrent", (n_in, n_in + hidden)), ("b", "bias", None)]
            gates, order = _LSTM_GATES, _TORCH_LSTM
        for leaf, role, rows_of in pieces:
            value = leaves[leaf]
            for index, gate in enumerate(order):
                block = gates[gate]
                # hk.LSTM adds 1 to the forget gate's pre-activation at call time: the record is the
                # effective bias (torch's b_ih + b_hh), stored as that minus 1.
                offset = 1.0 if role == "bias" and gate == "f" and gates is _LSTM_GATES else 0.0
                where = _Slice(module, leaf, rows_of, (block * hidden, (block + 1) * hidden), offset)
                name = f"{leaf}[{role}:{gate}]"
                shape = (
                    (hidden,)
                    if len(value.shape) == 1
                    else ((rows_of or (0, value.shape[0]))[1] - (rows_of or (0, 0))[0], hidden)
                )
                rows.append((name, where, (module, leaf, role, gate), shape, dtype_name(value.dtype), True, ""))
                types[name] = ParamType(role, "in out" if role != "bias" else "out", part=Part(role, "stack", index))
        builder.layer(module, None, rows, key_prefix=module, kind="recurrent", types=types, unit=module)

    def draw(self, param: Param, plan: Any, seed: int) -> Any:
        from polyinit.frameworks.flax import _jax_draw

        return _jax_draw(param, plan, seed)

    def write(self, tree: Any, drawn: list) -> Any:
        import jax.numpy as jnp

        by_leaf: dict[tuple[str, str], list] = {}
        for param, values in drawn:
            if values is not None:
                where = self.handles[param.path]
                stored = np.asarray(values, dtype=np.float64) - where.offset if where.offset else np.asarray(values)
                by_leaf.setdefault((where.module, where.leaf), []).append((where, stored))
        new = {}
        for (module, leaf), pieces in by_leaf.items():  # all built before the tree is
            old = tree[module][leaf]
            target = np.array(old)
            for where, values in pieces:
                expected = where.take(target).shape
                if values.shape != expected:
                    raise ModelError(
                        f"haiku: {module}/{leaf} {where.rows or ''}{where.cols or ''} is {expected}, "
                        f"received {values.shape}; nothing was written"
                    )
                where.place(target, values)
            new[(module, leaf)] = jnp.asarray(target, dtype=old.dtype)
        return {
            module: {leaf: new.get((module, leaf), value) for leaf, value in leaves.items()}
            for module, leaves in tree.items()
        }

    def read(self, tree: Any, param: Param) -> Any:
        where = self.handles[param.path]
        return np.asarray(where.take(np.asarray(tree[where.module][where.leaf])), dtype=np.float64) + where.offset


def _ema_owner(module: str) -> tuple[str, str] | None:
    """(norm module, role) of a batch norm's EMA state module (``batch_norm/~/mean_ema``)."""
    head, _, last = module.rpartition("/~/")
    if head and last in ("mean_ema", "var_ema"):
        return head, "running_mean" if last == "mean_ema" else "running_var"
    return None


def _same_qkv(tree: Any, parent: str) -> bool:
    """Whether an attention module's query, key and value kernels share one shape (then they are
    one stacked logical weight)."""
    shapes = {tuple(tree[f"{parent}/{name}"]["w"].shape) for name in _QKV if f"{parent}/{name}" in tree}
    return len(shapes) == 1 and all(f"{parent}/{name}" in tree for name in _QKV)


def _detect(model: Any) -> bool:
    """A two-level mapping of JAX arrays named as Haiku names them (w, b, ...), not as linen does."""
    jax = sys.modules.get("jax")
    if jax is None or "haiku" not in sys.modules or not isinstance(model, Mapping) or not model:
        return False
    names: set[str] = set()
    for leaves in model.values():
        if not isinstance(leaves, Mapping) or not all(isinstance(v, jax.Array) for v in leaves.values()):
            return False
        names.update(leaves)
    return bool(names & _HAIKU_NAMES) and not names & _LINEN_NAMES


def _register() -> Framework:
    """Haiku's record: the defaults and compare's measurer written beside Flax's (they share
    helpers), and this walker. Its priority stays last among the compared frameworks (compare's
    column order); linen's detection leaves Haiku's trees to it (``flax._detect_linen``)."""
    from polyinit.frameworks import flax

    return dataclasses.replace(flax.HAIKU, detect=_detect, walker=HaikuWalker)


FRAMEWORK = _register()
