"""The one write path: every writer (``apply``, ``transfer``, ``materialize``, ``draw_dtensor`` and
the sharded apply) goes through the same steps, in this order::

    validate arguments -> plan -> pre-write checks -> value checks -> write with rollback -> report

Nothing is written before the last check has passed, and a write that still fails restores what
was written, so an error leaves the model bit-identical. The steps here are framework-neutral
functions; the torch-specific checks import nothing until a torch tensor reaches them.

- :func:`check_fans`, :func:`check_portable_flag`: the writers' shared arguments.
- :func:`check_torch_tensor`: one torch tensor about to be written (meta device, inference tensor,
  DTensor placements, floating dtype).
- :func:`check_dtensor`: a DTensor's placements (``Partial`` refused: writing the same values on
  every rank would make the global tensor their sum) and the generator (only the portable draw
  gives the same global values whatever the sharding).
- :func:`check_targets`: every target of a walker, before the first write.
- :func:`check_values`: explicit values (transfer, surgery): finite and inside the target dtype.
- :func:`write_all`: the walker's write, with any framework error turned into a ``ModelError``.
- :func:`written_paths`: the report's source of truth: the paths that were actually written.

>>> check_values([0.5, -1.0], "float16", "layer.weight", "transfer")  # None: writable
>>> try:
...     check_values([1e30], "float16", "layer.weight", "transfer")
... except ValueCheckError as error:
...     print(error)
transfer: 1 value of 'layer.weight' is outside the float16 range (|x| <= 65504): 1e+30; nothing was written
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any, Optional

import numpy as np

from polyinit.params import FANS, ModelError, Param, RuleError

__all__ = [
    "DTYPE_MAX",
    "ValueCheckError",
    "check_dtensor",
    "check_fans",
    "check_portable_flag",
    "check_targets",
    "check_torch_tensor",
    "check_values",
    "is_dtensor",
    "write_all",
    "written_paths",
]

# The largest finite value of each floating dtype a parameter may have (float8 types included, for
# the dtypes torch and JAX name that way); a value beyond it would be written as inf.
DTYPE_MAX = {
    "float16": 65504.0,
    "bfloat16": 3.3895313892515355e38,
    "float32": 3.4028234663852886e38,
    "float64": 1.7976931348623157e308,
    "float8_e4m3fn": 448.0,
    "float8_e5m2": 57344.0,
}


class ValueCheckError(ModelError):
    """Explicit values cannot be written as they are: NaN/inf, or outside the target dtype's range."""


def check_fans(caller: str, fans: Optional[str], portable: bool) -> str:
    """``fans`` resolved (None: ``"semantic"`` for portable draws, else ``"native"``) and validated.

    >>> check_fans("apply", None, True)
    'semantic'
    """
    fans = ("semantic" if portable else "native") if fans is None else fans
    if not isinstance(fans, str) or fans not in FANS:
        raise RuleError(f"{caller}: fans must be one of {FANS}, received fans={fans!r}")
    return fans


def check_portable_flag(caller: str, portable: Any) -> bool:
    if not isinstance(portable, bool):
        raise RuleError(f"{caller}: portable must be a bool, received portable={portable!r}")
    return portable


def is_dtensor(tensor: Any) -> bool:
    """Whether ``tensor`` is a torch DTensor (without importing torch.distributed: a DTensor exists
    only where its module was imported by whoever sharded it)."""
    dtensor = getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)
    return dtensor is not None and isinstance(tensor, dtensor)


def check_dtensor(tensor: Any, path: str, caller: str, *, portable: bool = True) -> None:
    """Refuse a DTensor that a writer cannot fill so that its *global* value is the draw.

    ``Partial`` placements (``Partial("sum")``, ``"avg"``, ...) are refused: the global tensor is a
    reduction of the ranks' local tensors, so writing the same block on every rank would make it
    twice (or N times) the draw. ``portable=False`` is refused: torch's own DTensor random ops
    give global values that depend on the mesh, while the portable generator's value depends
    only on the global index (``polyinit.sharded``)."""
    partial = [p for p in tensor.placements if p.is_partial()]
    if partial:
        raise ModelError(
            f"{caller}: {path!r} is a DTensor with a pending reduction {partial[0]!r} (placements "
            f"{tuple(tensor.placements)}); writing its local blocks would make the global value a "
            "reduction of copies; redistribute it to Shard/Replicate placements first"
        )
    if not portable:
        raise ModelError(
            f"{caller}: {path!r} is a DTensor (sharded); only portable=True draws give the same "
            "global values whatever the sharding (torch's DTensor random ops depend on the mesh); "
            "pass portable=True"
        )


def check_torch_tensor(tensor: Any, path: str, caller: str, *, portable: bool = True, meta_ok: bool = False) -> None:
    """Everything that can make writing ``tensor`` fail or go wrong, checked before the first write:
    the meta device (no storage; unless ``meta_ok``, for ``materialize``), an inference tensor
    outside ``torch.inference_mode()``, a non-floating dtype, and a DTensor's placements
    (:func:`check_dtensor`)."""
    import torch

    if tensor.device.type == "meta" and not meta_ok:
        raise ModelError(
            f"{caller}: {path!r} is on the meta device (no storage to write); materialise the model "
            "first (polyinit.materialize or model.to_empty(device=...))"
        )
    if tensor.is_inference() and not torch.is_inference_mode_enabled():
        raise ModelError(
            f"{caller}: {path!r} is an inference tensor (created under torch.inference_mode()) "
            "and cannot be written outside it; rebuild the model outside inference_mode"
        )
    if not tensor.is_floating_point():
        raise ModelError(f"{caller}: {path!r} has dtype {tensor.dtype}; only floating tensors are written")
    if is_dtensor(tensor):
        check_dtensor(tensor, path, caller, portable=portable)


def check_targets(walker: Any, params: Sequence[Param], caller: str, *, portable: bool = False) -> None:
    """The pre-write checks of every parameter in ``params`` (those about to be written), before
    the first write: the torch tensor checks for a torch walker (its ``tensors`` handles), the
    walker's own ``check`` otherwise (Keras: a variable's shape; Gluon: deferred shapes)."""
    tensors = getattr(walker, "tensors", None)
    if getattr(walker, "name", None) == "torch" and tensors is not None:
        for param in params:
            check_torch_tensor(tensors[param.path], param.path, caller, portable=portable)
    elif hasattr(walker, "check"):
        walker.check([(param, None) for param in params])


def _as_float64(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor (bfloat16 has no numpy dtype)
        values = values.detach().float().cpu().numpy() if values.dtype.itemsize < 4 else values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def check_values(values: Any, dtype: str, path: str, caller: str) -> None:
    """Refuse values that cannot be written as they are into a ``dtype`` parameter at ``path``:
    any NaN or inf, and any |x| beyond the dtype's largest finite value (``DTYPE_MAX``), which the
    cast would turn into inf. Raises :class:`ValueCheckError` naming the caller, the path, how
    many values and the first one; returns None when every value can be written."""
    array = _as_float64(values)
    bad = ~np.isfinite(array)
    if bad.any():
        raise ValueCheckError(
            f"{caller}: {int(bad.sum())} value(s) of {path!r} are not finite "
            f"(first: {float(array[bad].flat[0])!r}); nothing was written"
        )
    limit = DTYPE_MAX.get(str(dtype))
    if limit is not None:
        over = np.abs(array) > limit
        if over.any():
            raise ValueCheckError(
                f"{caller}: {int(over.sum())} value{'s' if over.sum() > 1 else ''} of {path!r} "
                f"{'are' if over.sum() > 1 else 'is'} outside the {dtype} range (|x| <= {limit:g}): "
                f"{float(array[over].flat[0])!r}; nothing was written"
            )


def write_all(walker: Any, model: Any, drawn: list, caller: str) -> Any:
    """``walker.write(model, drawn)`` (every walker restores what it wrote when a write fails);
    a framework error that escapes it becomes a ``ModelError`` naming ``caller``. Returns what the
    walker returns (the model, or a new linen tree)."""
    from polyinit.errors import PolyinitError

    try:
        return walker.write(model, drawn)
    except PolyinitError:
        raise
    except Exception as error:
        raise ModelError(f"{caller}: writing failed ({type(error).__name__}: {error})") from error


def written_paths(drawn: Iterable[tuple[Param, Any]]) -> tuple[str, ...]:
    """The paths of the parameters ``drawn`` writes (those with values, not ``None``): what a
    report may call drawn."""
    return tuple(param.path for param, values in drawn if values is not None)
