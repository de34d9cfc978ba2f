"""Copy weights between frameworks through the portable records: ``transfer(source, target)``.

Both models are walked into portable records (``polyinit.params.Param``) in declaration order
and collapsed into logical parameters (``polyinit.params.logical_params``); the i-th logical
parameter of the source goes to the i-th of the target. Each value is moved through the logical
order (out, in, spatial, batch; an embedding as (num, dim); ``polyinit.logical``), so a torch
(out, in) weight lands in a Keras (in, out) kernel transposed, a torch (out, in, kh, kw) conv
weight in a Flax (kh, kw, in, out) kernel, and a torch LSTM's (4H, in) ``weight_ih_l0`` in a Keras
(in, 4H) kernel or in nnx's four per-gate (in, H) kernels (a stack's parts are its gates). A sum
(torch's ``bias_ih + bias_hh``) is read as the sum; written into a sum, the whole value goes to the
first part and zeros to the others: the effective bias is exact, the split between the two is not
kept. Every pair is checked first (count, role, kind where both are known, logical shape); any
mismatch is an error naming both paths, and nothing is written. A failed write restores what was
written.

Sources: a model of any framework polyinit walks (torch module, Keras model, flax nnx module or
linen variables, Gluon block); a torch ``state_dict`` (torch's layout is assumed: the names give
the roles); a Keras ``.weights.h5`` file together with ``source_model=`` (a Keras model of the
architecture, into which the file is loaded: the file itself keeps neither the layers' order nor
their names).

>>> # report = transfer(torch_model, keras_model)     # then keras_model(x) == torch_model(x)
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from polyinit.logical import canonical_order, inverse
from polyinit.layout import OUT_IN, Layout
from polyinit.params import LogicalParam, Param, RuleError, logical_params, split_view

_SAME_ROLE = {"scale": "weight", "offset": "bias", "embedding": "weight", "recurrent": "weight"}


class TransferError(RuleError):
    """The source and target cannot be paired parameter by parameter (count, role or shape)."""


@dataclass(frozen=True)
class Moved:
    """One parameter moved: from where, to where, the logical shape, and the two physical orders."""

    source: str
    target: str
    logical_shape: tuple[int, ...]
    source_shape: tuple[int, ...]
    target_shape: tuple[int, ...]


@dataclass
class TransferReport:
    rows: list[Moved] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{'source':40} {'target':40} {'logical shape':18} source -> target shape"]
        lines += [f"{r.source:40} {r.target:40} {str(r.logical_shape):18} {r.source_shape} -> {r.target_shape}"
                  for r in self.rows]
        return "\n".join(lines)


def _to_logical(param: LogicalParam, read: Any) -> np.ndarray:
    """The logical parameter's value in the canonical order: its parts read, each in its logical
    shape (a C-order reshape), then stacked, summed or taken whole."""
    parts = [np.asarray(read(p)).reshape(p.logical_shape) for p in param.parts]
    value = np.stack(parts) if param.combine == "stack" else sum(parts[1:], parts[0])
    return np.transpose(value, canonical_order(param, param.shape, param.layout))


def _from_logical(param: LogicalParam, logical: np.ndarray) -> list[tuple[Param, np.ndarray]]:
    """(part, values in its real shape) for each part of ``param``: a stack's blocks, or a sum's
    whole value in the first part and zeros in the others."""
    value = np.transpose(logical, inverse(canonical_order(param, param.shape, param.layout)))
    if param.combine == "stack":
        pieces = list(value)
    else:
        pieces = [value] + [np.zeros_like(value)] * (len(param.parts) - 1)
    return [(p, np.ascontiguousarray(piece).reshape(p.shape)) for p, piece in zip(param.parts, pieces)]


def _canonical_shape(param: LogicalParam) -> tuple[int, ...]:
    return tuple(param.shape[i] for i in canonical_order(param, param.shape, param.layout))


def _stored_shape(param: LogicalParam) -> tuple[int, ...]:
    return param.parts[0].shape if len(param.parts) == 1 else param.shape


def _state_dict_records(state: Mapping[str, Any]) -> tuple[list[Param], dict[str, np.ndarray]]:
    """Records for a torch state_dict: floating tensors in order, one layer per module prefix,
    roles from the leaf names; an RNN module's leaves (``weight_ih_l0``...) typed as the torch
    walker types them, with the gates read off the shapes (an LSTM's packed gates, its summed
    biases), so a state_dict pairs as its model would."""
    from polyinit.frameworks.torch import rnn_types_from_shapes

    floating = [(name, tensor) for name, tensor in state.items()
                if getattr(tensor, "is_floating_point", lambda: False)()]  # not num_batches_tracked
    modules: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, tensor in floating:
        prefix, _, leaf = name.rpartition(".")
        modules.setdefault(prefix, {})[leaf] = tuple(tensor.shape)
    types = {prefix: rnn_types_from_shapes(leaves) for prefix, leaves in modules.items()}
    layer_of = {prefix: i for i, prefix in enumerate(modules)}
    params, values = [], {}
    for name, tensor in floating:
        prefix, _, leaf = name.rpartition(".")
        shape, ptype = tuple(tensor.shape), types[prefix].get(leaf)
        if ptype is None:
            role = leaf if leaf in ("running_mean", "running_var") else "bias" if "bias" in leaf else "weight"
            params.append(Param(name, "other", role, shape, OUT_IN, layer_of[prefix], key=name))
        else:
            logical, semantic = split_view(shape, ptype.layout, ptype.split, ptype.semantic)
            part = ptype.part and dataclasses.replace(ptype.part, group=f"{prefix}.{ptype.part.group}")
            params.append(Param(name, "recurrent", ptype.role, shape, Layout(ptype.layout), layer_of[prefix],
                                key=name, logical=logical, semantic=semantic, part=part))
        values[name] = tensor.detach().cpu().numpy()
    return params, values


def _source(source: Any, source_model: Any) -> tuple[list[Param], Any]:
    """(records, read(param) -> numpy array) of the source."""
    from polyinit.frameworks import walker_for

    if isinstance(source, (str, os.PathLike)):
        if source_model is None:
            raise TransferError(f"transfer: a weights file ({os.fspath(source)!r}) keeps neither the layers' order "
                                "nor their names; pass source_model=, a model of its architecture to load it into")
        source_model.load_weights(os.fspath(source))
        source = source_model
    if isinstance(source, Mapping) and source and all(hasattr(v, "is_floating_point") for v in source.values()):
        params, values = _state_dict_records(source)
        return params, lambda param: values[param.path]
    walker = walker_for(source)
    params = walker.walk(source)
    return params, lambda param: np.asarray(walker.read(source, param))


def _compatible(source: LogicalParam, target: LogicalParam) -> bool:
    roles = {_SAME_ROLE.get(source.role, source.role), _SAME_ROLE.get(target.role, target.role)}
    if len(roles) > 1:
        return False
    known = {source.kind, target.kind} - {"other"}
    return len(known) <= 1 or known <= {"dense", "attention"}


def transfer(source: Any, target: Any, *, source_model: Any = None) -> "TransferReport | tuple[Any, TransferReport]":
    """Copy every parameter of ``source`` into ``target`` (any frameworks); see the module
    docstring. Returns the report, or ``(new_tree, report)`` for a linen variables tree.

    >>> # transfer(torch_cnn, keras_cnn); transfer(torch_cnn.state_dict(), nnx_cnn)
    """
    from polyinit.frameworks import walker_for

    records, read = _source(source, source_model)
    walker = walker_for(target)
    source_params, target_params = logical_params(records), logical_params(walker.walk(target))
    if len(source_params) != len(target_params):
        extra = [p.path for p in source_params[len(target_params):]] or [p.path for p in target_params[len(source_params):]]
        side = "source" if len(source_params) > len(target_params) else "target"
        raise TransferError(f"transfer: the source has {len(source_params)} parameters and the target "
                            f"{len(target_params)}; unpaired in the {side}: {', '.join(extra[:8])}")
    moves, report = [], TransferReport()
    for s, t in zip(source_params, target_params):
        shape, t_logical = _canonical_shape(s), _canonical_shape(t)
        if not _compatible(s, t) or shape != t_logical:
            raise TransferError(f"transfer: source {s.path!r} ({s.kind} {s.role}, logical shape {shape}) does not "
                                f"match target {t.path!r} ({t.kind} {t.role}, logical shape {t_logical}); nothing "
                                "was written")
        moves += _from_logical(t, _to_logical(s, read))
        report.rows.append(Moved(s.path, t.path, shape, _stored_shape(s), _stored_shape(t)))
    result = walker.write(target, moves)
    return (result, report) if walker.returns_new else report


class _CallableModule(types.ModuleType):
    """``polyinit.transfer`` names this module and its function: importing the module (which
    binds it on the package, after ``import polyinit`` left the function to load lazily) must not
    break ``polyinit.transfer(source, target)``, so the module calls the function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return transfer(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
