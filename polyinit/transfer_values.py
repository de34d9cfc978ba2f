"""Moving one logical parameter's values between storages, and checking them before any write.

A logical parameter (``polyinit.params.LogicalParam``) is read into its **canonical** order (out,
in, spatial, batch; an embedding as (num, dim); ``polyinit.logical``) and written back from it.
Storages that differ only in how they split the output or input axes are one logical shape:
torch's (E, E) ``q_proj`` (out, in), Keras's (E, heads, head_dim) query kernel (in, out, out) and
the q block of a packed (3E, E) ``in_proj_weight`` are all (heads*head_dim, E) once consecutive
output axes and consecutive input axes are merged (a C-order reshape, the way keras-hub's own
converters reshape HF weights). :func:`flat_shape` gives that comparable shape.

>>> from polyinit.layout import Layout
>>> from polyinit.params import LogicalParam
>>> keras_q = LogicalParam("q/kernel", "attention", "weight", 0, (16, 4, 4), Layout("in out out"))
>>> flat_shape(keras_q)
(16, 16)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from polyinit.logical import canonical_order, inverse


def canonical_shape(param: Any) -> tuple[int, ...]:
    return tuple(param.shape[i] for i in canonical_order(param, param.shape, param.layout))


def flat_shape(param: Any) -> tuple[int, ...]:
    """The canonical shape with consecutive ``out`` axes merged into one, and ``in`` axes likewise
    (an embedding keeps its (num, dim))."""
    perm = canonical_order(param, param.shape, param.layout)
    shape = [param.shape[i] for i in perm]
    if param.kind == "embedding":
        return tuple(shape)
    roles = param.layout.roles(len(param.shape))
    flat: list[int] = []
    previous = None
    for axis, size in zip(perm, shape):
        role = roles[axis]
        if role in ("out", "in") and role == previous:
            flat[-1] *= size
        else:
            flat.append(size)
        previous = role
    return tuple(flat)


def read_logical(param: Any, read: Callable[[Any], np.ndarray]) -> np.ndarray:
    """The value of ``param`` in its canonical order: a packed block cut out of its tensor's
    logical view, a stack's parts stacked, a sum's parts summed."""
    if param.packed is not None:
        tensor = param.parts[0]
        axis, index, _ = param.packed
        value = np.take(np.asarray(read(tensor)).reshape(tensor.logical_shape), index, axis=axis)
    else:
        parts = [np.asarray(read(p)).reshape(p.logical_shape) for p in param.parts]
        value = np.stack(parts) if param.combine == "stack" else sum(parts[1:], parts[0])
    return np.transpose(value, canonical_order(param, param.shape, param.layout))


class TargetValues:
    """The new values of the target's tensors, assembled from logical values: a packed tensor's
    blocks each land in their slot, a stack's parts in their tensors, a sum's whole value in the
    first part and zeros in the others (the effective value is exact, the split is not kept)."""

    def __init__(self) -> None:
        self.tensors: dict[str, tuple[Any, np.ndarray]] = {}  # path -> (record, values in logical view)
        self.sources: dict[str, str] = {}  # path -> the source logical parameter it came from

    def put(self, param: Any, canonical: np.ndarray, source_path: str) -> None:
        value = np.transpose(
            canonical.reshape(canonical_shape(param)), inverse(canonical_order(param, param.shape, param.layout))
        )
        if param.packed is not None:
            tensor = param.parts[0]
            if tensor.path not in self.tensors:
                self.tensors[tensor.path] = (tensor, np.zeros(tensor.logical_shape, dtype=value.dtype))
            axis, index, _ = param.packed
            buffer = self.tensors[tensor.path][1]
            buffer[(slice(None),) * axis + (index,)] = value
            self.sources[tensor.path] = source_path
            return
        if param.combine == "stack":
            pieces = list(value)
        elif param.combine == "sum":
            pieces = [value] + [np.zeros_like(value)] * (len(param.parts) - 1)
        else:
            pieces = [value]
        for part, piece in zip(param.parts, pieces):
            self.tensors[part.path] = (part, np.ascontiguousarray(piece))
            self.sources[part.path] = source_path

    def moves(self) -> list[tuple[Any, np.ndarray]]:
        """(record, values in the record's real shape) for every tensor, in the order put."""
        return [
            (record, np.ascontiguousarray(values).reshape(record.shape)) for record, values in self.tensors.values()
        ]
