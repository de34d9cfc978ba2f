"""Copy weights between models of any frameworks and authors: ``polyinit.transfer(source, target)``.

This module is the implementation; the public name is the function ``polyinit.transfer`` (loaded
lazily by the package, so ``import polyinit`` stays light). The module is not named ``transfer``
so that importing it never rebinds ``polyinit.transfer`` from the function to a module.

Both models are walked into portable records (``polyinit.params.Param``), collapsed into logical
parameters (``polyinit.params.logical_params``: q, k and v of a packed tensor each one; an LSTM's
per-gate kernels one) and given their semantic identities (``polyinit.identity``:
``"3.attn.q.weight"``). Parameters are paired (``polyinit.transfer_pairing``) by the user's
``mapping=``, then by identity, then by name where both sides have the same names; never by
position. Each value moves through the canonical order (out, in, spatial, batch; an embedding as
(num, dim); ``polyinit.transfer_values``), so GPT-2's packed (E, 3E) ``c_attn`` lands in Keras's
per-head (E, heads, head_dim) query, key and value kernels, a torch (out, in) weight in a Keras
(in, out) kernel, a torch LSTM's (4H, in) ``weight_ih_l0`` in nnx's four per-gate kernels. A sum
(torch's ``bias_ih + bias_hh``) is read as the sum; written into a sum, the whole value goes to
the first part and zeros to the others.

Before anything is written: every parameter is paired and has the same logical shape (else a
TransferError names the first divergence: identity, path and shape on each side); the target
can be written (not on the meta device, not an inference tensor outside inference mode); every
value is finite and inside the target dtype's range (unless ``allow_nonfinite=True``). float64
to float64 is exact; bfloat16 sources are read exactly. A failed write restores what was written.

Sources: a model of any framework polyinit walks (torch module, Keras model, flax nnx module or
linen variables, Gluon block); a torch ``state_dict`` (its names are the target's, in any order,
possibly under a common prefix such as ``module.``: it is typed as the target; otherwise its names
give the roles and sites, read in the dict's order); a Keras ``.weights.h5`` file together with
``source_model=`` (a Keras model of the architecture, into which the file is loaded: the file
itself keeps neither the layers' order nor their names).

>>> # report = transfer(hf_gpt2, keras_hub_gpt2)   # then both compute the same function
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polyinit import writing
from polyinit.layout import OUT_IN, Layout
from polyinit.params import Param, RuleError, split_view
from polyinit.transfer_values import TargetValues, canonical_shape, read_logical

_AS_TARGET = object()  # _source's mark for a state_dict typed as the target (same records, same identities)


class TransferError(RuleError):
    """The source and target cannot be paired parameter by parameter, or a value cannot be written
    (the message names the first divergence, or the parameter); nothing was written."""


@dataclass(frozen=True)
class Moved:
    """One logical parameter moved: from where, to where, its canonical logical shape, the two
    stored shapes, and its identity in the target."""

    source: str
    target: str
    logical_shape: tuple[int, ...]
    source_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    identity: str = ""


@dataclass
class TransferReport:
    rows: list[Moved] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{'identity':24} {'source':40} {'target':40} {'logical shape':18} source -> target shape"]
        lines += [
            f"{r.identity:24} {r.source:40} {r.target:40} {r.logical_shape!s:18} {r.source_shape} -> {r.target_shape}"
            for r in self.rows
        ]
        return "\n".join(lines)


def _stored_shape(param: Any) -> tuple[int, ...]:
    return param.parts[0].shape if len(param.parts) == 1 else param.shape


def _numpy(tensor: Any) -> np.ndarray:
    """A torch tensor's values as numpy, exactly: float64 stays float64, bfloat16 and float16
    widen to float32 (numpy has no bfloat16)."""
    import torch

    tensor = tensor.detach()
    if tensor.device.type == "meta":
        raise TransferError("transfer: the source holds tensors on the meta device (no values to read)")
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()
    return tensor.cpu().numpy()


def _state_dict_records(state: Mapping[str, Any]) -> tuple[list[Param], dict[str, np.ndarray]]:
    """Records for a torch state_dict read on its own: floating tensors in order, one layer per
    module prefix, roles from the leaf names; an RNN module's leaves (``weight_ih_l0``...) typed as
    the torch walker types them, with the gates read off the shapes (an LSTM's packed gates, its
    summed biases), so a state_dict pairs as its model would."""
    from polyinit.frameworks.torch import rnn_types_from_shapes

    floating = [
        (name, tensor) for name, tensor in state.items() if getattr(tensor, "is_floating_point", lambda: False)()
    ]  # not num_batches_tracked
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
        dtype = str(tensor.dtype).replace("torch.", "")
        if ptype is None:
            role = leaf if leaf in ("running_mean", "running_var") else "bias" if "bias" in leaf else "weight"
            params.append(
                Param(name, "other", role, shape, OUT_IN, layer_of[prefix], dtype, layer_path=prefix, key=name)
            )
        else:
            logical, semantic = split_view(shape, ptype.layout, ptype.split, ptype.semantic)
            part = ptype.part and dataclasses.replace(ptype.part, group=f"{prefix}.{ptype.part.group}")
            params.append(
                Param(
                    name,
                    "recurrent",
                    ptype.role,
                    shape,
                    Layout(ptype.layout),
                    layer_of[prefix],
                    dtype,
                    layer_path=prefix,
                    key=name,
                    logical=logical,
                    semantic=semantic,
                    part=part,
                )
            )
        values[name] = _numpy(tensor)
    return params, values


def _typed_as_target(state: Mapping[str, Any], target_records: list[Param]) -> dict[str, str] | None:
    """{target path: state_dict key} where the state_dict's floating tensors are exactly the
    target's parameters by name (in any order, all under one common prefix such as ``module.``;
    tied copies allowed), else None."""
    keys = [k for k, v in state.items() if getattr(v, "is_floating_point", lambda: False)()]
    if not target_records or not keys:
        return None
    first = target_records[0].path
    for key in keys:
        if not key.endswith(first) or (len(key) > len(first) and key[-len(first) - 1] != "."):
            continue
        prefix = key[: len(key) - len(first)]
        found = {p.path: prefix + p.path for p in target_records}
        known = set(found.values()) | {prefix + a for p in target_records for a in p.aliases}
        if all(k in state for k in found.values()) and all(k in known for k in keys):
            return found
    return None


_TORCH_FILES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def _load_weights_file(path: str, source_model: Any) -> Any:
    """A Keras ``.weights.h5`` file loaded into ``source_model`` (the file keeps neither the
    layers' order nor their names); a torch checkpoint is refused with what to do instead."""
    if path.endswith(_TORCH_FILES):
        raise TransferError(
            f"transfer: {path!r} is a torch checkpoint; load it and pass its state_dict: "
            "transfer(torch.load(path), target) or transfer(safetensors.torch.load_file(path), target)"
        )
    if source_model is None or not callable(getattr(source_model, "load_weights", None)):
        raise TransferError(
            f"transfer: a Keras weights file ({path!r}) keeps neither the layers' order nor their "
            "names; pass source_model=, a Keras model of its architecture to load it into"
            + ("" if source_model is None else f" (received {type(source_model).__name__})")
        )
    source_model.load_weights(path)
    return source_model


def _source(source: Any, source_model: Any, target_records: list[Param]) -> tuple[list[Param], Any, Any]:
    """(records, read(param) -> numpy array, the source model or None) of the source."""
    from polyinit.frameworks import walker_for

    if isinstance(source, (str, os.PathLike)):
        source = _load_weights_file(os.fspath(source), source_model)
    if isinstance(source, Mapping) and source and all(hasattr(v, "is_floating_point") for v in source.values()):
        by_name = _typed_as_target(source, target_records)
        if by_name is not None:  # the target's own names: typed as the target, whatever the order
            return list(target_records), lambda param: _numpy(source[by_name[param.path]]), _AS_TARGET
        params, values = _state_dict_records(source)
        return params, lambda param: values[param.path], None
    walker = walker_for(source)
    params = walker.walk(source)
    return params, lambda param: np.asarray(walker.read(source, param)), source


def _identified(records: list[Param], model: Any = None) -> list:
    from polyinit.identity import identified

    return identified(records, model)


def transfer(
    source: Any,
    target: Any,
    *,
    source_model: Any = None,
    mapping: Mapping[str, str] | None = None,
    allow_nonfinite: bool = False,
) -> TransferReport | tuple[Any, TransferReport]:
    """Copy every logical parameter of ``source`` into ``target`` (any frameworks, any authors);
    see the module docstring. ``mapping``: ``{source identity or path: target identity or path}``
    for what identities and names cannot pair. Returns the report, or ``(new_tree, report)`` for a
    linen variables tree.

    >>> # transfer(torch_cnn, keras_cnn); transfer(torch_cnn.state_dict(), nnx_cnn)
    >>> # transfer(hf_bert, keras_hub_bert, mapping={"layer.0.weight": "layer.0.weight"})
    """
    from polyinit.frameworks import walker_for

    if not isinstance(allow_nonfinite, bool):
        raise TransferError(f"transfer: allow_nonfinite must be a bool, received {allow_nonfinite!r}")
    walker = walker_for(target)
    try:
        target_records = walker.walk(target)
    except RuleError as error:  # an unbuilt Keras model: transfer takes no input_shape=
        raise TransferError(
            f"transfer: the target cannot be walked ({error}); build it first (call it once on an "
            "input, or model.build(shape))".replace("; pass input_shape= to build it", "")
        ) from None
    records, read, source_walked = _source(source, source_model, target_records)
    from polyinit.transfer_pairing import pair

    target_params = _identified(target_records, target)
    source_params = target_params if source_walked is _AS_TARGET else _identified(records, source_walked)
    pairs = pair(source_params, target_params, mapping, TransferError)
    values, report = TargetValues(), TransferReport()
    for s, t in pairs:
        values.put(t, read_logical(s, read).reshape(canonical_shape(t)), s.path)
        report.rows.append(Moved(s.path, t.path, canonical_shape(s), _stored_shape(s), _stored_shape(t), t.identity))
    moves = values.moves()
    _check_writable(walker, moves, values.sources, allow_nonfinite)
    result = writing.write_all(walker, target, moves, "transfer")
    return (result, report) if walker.returns_new else report


def _check_writable(walker: Any, moves: list, sources: dict, allow_nonfinite: bool) -> None:
    """The one write path's checks (``polyinit.writing``), before the first write: every target
    tensor writable (meta device, inference tensors, ...), and every value finite and inside the
    target dtype's range unless ``allow_nonfinite``; each refusal a TransferError naming the
    target parameter and the source it came from."""
    try:
        writing.check_targets(walker, [record for record, _ in moves], "transfer")
        for record, array in moves:
            if not allow_nonfinite:
                try:
                    writing.check_values(array, record.dtype, record.path, "transfer")
                except writing.ValueCheckError as error:
                    raise TransferError(
                        f"{error} (from the source's {sources[record.path]!r}; allow_nonfinite=True writes it)"
                    ) from None
    except TransferError:
        raise
    except RuleError as error:
        raise TransferError(f"transfer: {error}; nothing was written") from None
