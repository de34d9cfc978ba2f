"""Sharded draws in torch: each rank draws only its own shard of a DTensor (FSDP2 parameters
included), and the gathered tensor equals the unsharded draw with the same seed.

This needs a value that depends only on its global index, which the portable counter-based
generator gives (``polyinit.portable``): the local block of a DTensor is a set of runs of
consecutive global (row-major) indices, and each run is drawn with ``evaluate_span``. Only
elementwise plans (uniform, normal, truncated normal, variance scaling, expressions of them)
can be drawn in pieces; a plan with structure across elements (orthogonal, blocks, rank masks)
is refused with ``NotExpressibleError``.

>>> # mesh = init_device_mesh("cpu", (world,)); w = distribute_tensor(torch.empty(4096, 1024), mesh, [Shard(0)])
>>> # draw_dtensor(w, resolve(he_normal(), (4096, 1024), OUT_IN), seed=0, key="layer.weight")
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from polyinit.errors import NotExpressibleError, PolyinitError
from polyinit.plan import Plan


def local_runs(
    global_shape: tuple[int, ...], local_shape: tuple[int, ...], offset: tuple[int, ...]
) -> list[tuple[int, int]]:
    """(start, stop) global flat-index runs of the block at ``offset`` of size ``local_shape``, in
    the block's own row-major order.

    >>> local_runs((4, 6), (2, 6), (2, 0))      # rows 2-3: one run
    [(12, 24)]
    >>> local_runs((4, 6), (4, 3), (0, 3))      # columns 3-5: one run per row
    [(3, 6), (9, 12), (15, 18), (21, 24)]
    """
    rank = len(global_shape)
    strides = [math.prod(global_shape[d + 1 :]) for d in range(rank)]
    # Trailing axes the block spans whole merge into one run with the first partial axis before them.
    k = rank - 1
    while k > 0 and local_shape[k] == global_shape[k] and offset[k] == 0:
        k -= 1
    length = local_shape[k] * strides[k]
    runs = []
    for index in itertools.product(*(range(n) for n in local_shape[:k])):
        start = sum((offset[d] + i) * strides[d] for d, i in enumerate(index)) + offset[k] * strides[k]
        runs.append((start, start + length))
    return runs


def local_block(tensor: Any, caller: str) -> tuple[Any, tuple[int, ...], tuple[int, ...]]:
    """(local tensor, its shape, its global offset) of a DTensor under its placements; a local
    shard that does not match its placement is an error naming ``caller``."""
    # Private API (torch 2.13): the local block's shape and global offset under the placements;
    # torch exposes no public equivalent, and DTensor.__create_chunk_list__ is private too.
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    local = tensor.to_local()
    shape, offset = compute_local_shape_and_global_offset(tuple(tensor.shape), tensor.device_mesh, tensor.placements)
    if tuple(local.shape) != tuple(shape):
        raise PolyinitError(f"{caller}: local shard {tuple(local.shape)} does not match its placement {tuple(shape)}")
    return local, tuple(shape), tuple(offset)


def write_local_block(tensor: Any, full: Any) -> Any:
    """Copy into ``tensor`` (a DTensor) its local block of ``full``, the whole tensor's values
    (the same on every rank): for a draw that cannot be made shard by shard (one drawn in another
    axis order than torch stores it, or one part of a parameter drawn whole), at the cost of one
    whole tensor on each rank for the time of the copy. Collective-free. Returns ``tensor``."""
    import torch

    from polyinit.writing import check_dtensor

    if tuple(full.shape) != tuple(tensor.shape):
        raise PolyinitError(f"write_local_block: values {tuple(full.shape)} for DTensor {tuple(tensor.shape)}")
    check_dtensor(tensor, f"DTensor {tuple(tensor.shape)}", "write_local_block")
    local, shape, offset = local_block(tensor, "write_local_block")
    with torch.no_grad():
        local.copy_(full[tuple(slice(o, o + n) for o, n in zip(offset, shape))])
    return tensor


def draw_dtensor(tensor: Any, plan: Plan, seed: int, key: str | int) -> Any:
    """Fill ``tensor`` (a ``torch.distributed.tensor.DTensor`` of the plan's global shape) with its
    local part of the portable draw of ``plan``; collective-free. Returns ``tensor``."""
    import torch
    from torch.distributed.tensor import DTensor

    from polyinit.portable import check_portable, stream_key
    from polyinit.portable.evaluate import CHUNK, evaluate_span, fill_fused, is_elementwise
    from polyinit.portable.xp_torch import Ops
    from polyinit.writing import check_torch_tensor

    if not isinstance(tensor, DTensor):
        raise PolyinitError(f"draw_dtensor: expected a DTensor, received {type(tensor).__name__}")
    check_torch_tensor(tensor, f"DTensor {tuple(tensor.shape)}", "draw_dtensor")  # Partial placements refused
    if tuple(tensor.shape) != plan.shape:
        raise PolyinitError(f"draw_dtensor: DTensor shape {tuple(tensor.shape)} != plan shape {plan.shape}")
    check_portable(plan, "torch")
    if not is_elementwise(plan):
        raise NotExpressibleError(
            f"draw_dtensor: {plan.describe()} has structure across elements and "
            "cannot be drawn shard by shard; draw it whole and distribute it"
        )
    local, shape, offset = local_block(tensor, "draw_dtensor")
    if local.numel() == 0:
        return tensor
    ops, stream = Ops(local.device), stream_key(seed, key)
    flat = local.view(-1) if local.is_contiguous() else None
    pieces, at = [], 0
    with torch.no_grad():
        for run_start, run_stop in local_runs(plan.shape, shape, offset):
            if flat is not None and fill_fused(ops, plan, stream, flat[at : at + run_stop - run_start], run_start):
                at += run_stop - run_start  # one fused pass straight into the shard
                continue
            for start in range(run_start, run_stop, CHUNK):  # bounded temporaries
                stop = min(start + CHUNK, run_stop)
                values = ops.cast(evaluate_span(ops, plan, stream, start, stop), plan.dtype)
                if flat is not None:
                    flat[at : at + stop - start].copy_(values)
                else:
                    pieces.append(values)
                at += stop - start
        if flat is None:
            local.copy_(torch.cat(pieces).view(local.shape))
    return tensor
