"""The one validation path: every public entry point (specs, schemes, ``resolve``, each backend's
initializer) checks its arguments here, so a number, a shape, a layout or a seed is accepted or
refused the same way everywhere, with a message naming the argument and the value it got.

Numbers go through ``float()`` and integers through ``operator.index``, so numpy and JAX scalars
and 0-d arrays work (``Normal(std=np.array(0.02))``, ``Orthogonal(gain=jnp.sqrt(2.0))``), while
bools, strings, arrays with elements and non-finite values are refused.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import operator
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Optional

from polyinit.errors import BackendError, PolyinitError, ShapeError, SpecError

if TYPE_CHECKING:  # polyinit.layout is imported where a layout is checked, not with this module
    from polyinit.layout import Layout


def _is_bool(value: Any) -> bool:
    # numpy and JAX booleans are not Python bools; their dtype says so.
    dtype = getattr(value, "dtype", None)
    return isinstance(value, bool) or getattr(dtype, "kind", None) == "b"


def _scalar_shape(value: Any) -> bool:
    """True for Python numbers and 0-d arrays/scalars; False for arrays with elements."""
    shape = getattr(value, "shape", ())
    try:
        return tuple(shape) == ()
    except TypeError:
        return False


def real(owner: str, name: str, value: Any, *, finite: bool = True, error: type[PolyinitError] = SpecError) -> float:
    """``value`` as a float, refusing bools, strings, complex numbers, non-scalar arrays and
    (when ``finite``) NaN/inf.

    A bool is refused on purpose: ``Normal(std=True)`` is almost always a bug, and torch's
    ``calculate_gain`` refuses it for the same reason.

    >>> import numpy as np
    >>> real("Normal", "std", np.array(0.02))
    0.02
    """
    dtype_kind = getattr(getattr(value, "dtype", None), "kind", None)
    if (
        _is_bool(value)
        or isinstance(value, (str, bytes, complex))
        or dtype_kind == "c"
        or not (isinstance(value, numbers.Real) or hasattr(value, "__float__"))
        or not _scalar_shape(value)
    ):
        raise error(f"{owner}: {name} must be a real number, received {name}={value!r}")
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError) as problem:
        # e.g. a traced JAX value inside jit, which has no concrete number yet.
        raise error(f"{owner}: {name} must be a concrete real number, received {name}={value!r} ({problem})") from None
    if math.isnan(result) or (finite and math.isinf(result)):
        raise error(f"{owner}: {name} must be finite, received {name}={value!r}")
    return result


def positive(owner: str, name: str, value: Any) -> float:
    """A finite real number > 0."""
    result = real(owner, name, value)
    if result <= 0:
        raise SpecError(f"{owner}: {name} must be > 0, received {name}={value!r}")
    return result


def integer(
    owner: str, name: str, value: Any, *, minimum: Optional[int] = None, error: type[PolyinitError] = SpecError
) -> int:
    """``value`` through ``operator.index`` (so ``np.int64`` and 0-d integer arrays work), never
    a bool or a float (``10.7`` is refused, not truncated)."""
    if _is_bool(value):
        raise error(f"{owner}: {name} must be an integer, received {name}={value!r}")
    try:
        result = operator.index(value)
    except TypeError:
        raise error(f"{owner}: {name} must be an integer, received {name}={value!r}") from None
    if minimum is not None and result < minimum:
        raise error(f"{owner}: {name} must be >= {minimum}, received {name}={value!r}")
    return result


def choice(owner: str, name: str, value: Any, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(f"{owner}: unknown {name} {value!r}; expected one of {', '.join(map(repr, allowed))}")
    return value


def boolean(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{owner}: {name} must be a bool, received {name}={value!r}")
    return value


def axis(owner: str, value: Any) -> str | int:
    """An axis is a role ('out', 'in') or a physical integer index."""
    if isinstance(value, str):
        return choice(owner, "axis", value, ("out", "in"))
    try:
        return integer(owner, "axis", value)
    except SpecError:
        raise SpecError(f"{owner}: axis must be 'out', 'in' or an integer, received axis={value!r}") from None


def shape(owner: str, value: Any) -> tuple[int, ...]:
    """A shape: an int or a sequence of non-negative ints (numpy/JAX integers fine); a float
    such as ``10.7`` or a bool is refused, never truncated.

    >>> shape("resolve", (3, 4))
    (3, 4)
    """
    if (
        not isinstance(value, (str, bytes))
        and hasattr(value, "__index__")
        and not _is_bool(value)
        and _scalar_shape(value)
    ):
        value = (value,)
    try:
        dims = tuple(value) if not isinstance(value, (str, bytes, dict)) else None
    except TypeError:
        dims = None
    if dims is None:
        raise ShapeError(f"{owner}: shape must be a sequence of ints, received shape={value!r}")
    out = []
    for d in dims:
        try:
            size = integer(owner, "shape", d, minimum=0, error=ShapeError)
        except ShapeError:
            raise ShapeError(f"{owner}: shape must hold non-negative ints, received shape={value!r}") from None
        out.append(size)
    return tuple(out)


def layout(owner: str, value: Any) -> Layout | None:
    """None, a ``Layout``, or a pattern string such as ``"out in *"`` (accepted everywhere)."""
    from polyinit.layout import Layout

    if value is None or isinstance(value, Layout):
        return value
    if isinstance(value, str):
        return Layout(value)
    raise SpecError(
        f"{owner}: layout must be a polyinit.Layout or a pattern string such as 'out in *', received layout={value!r}"
    )


SEED_LIMIT = 2**64  # the portable generator's key and torch's manual_seed take 64-bit seeds


def seed(owner: str, value: Any) -> int:
    """An integer seed in [0, 2**64) (``np.int64`` fine), never a bool, a float or a string: the
    one range every draw accepts (native, portable, sharded), so a seed good for one is good for all.

    >>> seed("Rules", 2**64 - 1) == 2**64 - 1
    True
    """
    result = integer(owner, "seed", value, minimum=0, error=PolyinitError)
    if result >= SEED_LIMIT:
        raise PolyinitError(f"{owner}: seed must be < 2**64, received seed={value!r}")
    return result


@contextlib.contextmanager
def framework_errors(backend: str, what: str) -> Iterator[None]:
    """Re-raise a framework's own error inside a backend entry point as a ``BackendError``
    naming the backend and what was being done (the original stays chained as ``__cause__``)."""
    try:
        yield
    except (PolyinitError, MemoryError):
        raise
    except Exception as error:
        raise BackendError(f"{backend} backend: {what} failed: {type(error).__name__}: {error}") from error
