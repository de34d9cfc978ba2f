"""Backend-agnostic descriptions of initialisation schemes.

A spec is frozen, keyword-only data: it says *what* distribution a parameter should follow, never
*how* a framework draws it. Specs are validated when built, so a bad argument fails at the line that
wrote it, not deep inside a model walk. ``polyinit.plan.resolve`` turns a spec plus a shape and a
layout into concrete numbers.

Specs compose like random variables. The same spec object (or an equal one) used twice in one
expression denotes the *same* draw, so the custom rule "w ~ U(-10, 10); w <- w * 1[|w| >= 5]" is

>>> w = Uniform(low=-10.0, high=10.0)
>>> rule = w * (abs(w) >= 5)

To combine *independent* draws of the same distribution, give them different ``stream`` numbers:
``Uniform(low=-1, high=1) + Uniform(low=-1, high=1, stream=1)``.

Numbers may be Python, numpy or JAX scalars (``jnp.sqrt(2.0) * spec`` works). An expression is a
random variable, not a truth value: ``bool(w >= 5)`` raises. Expressions nest at most
``MAX_DEPTH`` levels, so every walk over them (hashing, printing, resolving, drawing, JSON) stays
far from Python's recursion limit.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, Union, cast

if sys.version_info >= (3, 11):  # tells type checkers that _spec makes keyword-only frozen dataclasses
    from typing import dataclass_transform
else:  # pragma: no cover - Python 3.10: the decorator only informs type checkers

    def dataclass_transform(**_: Any) -> Callable[[Any], Any]:
        return lambda decorator: decorator


from polyinit import _validate as check
from polyinit.errors import SpecError

Number = Union[int, float]

MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")
BINARY_OPS = ("add", "sub", "mul", "div", "ge", "gt", "le", "lt", "minimum", "maximum")
UNARY_OPS = ("neg", "abs")
COMPARISONS = ("ge", "gt", "le", "lt")
# Walks over a spec recurse about three Python frames per level (dataclass repr is the deepest),
# so 100 levels stay well inside the default limit of 1000 whoever the caller is.
MAX_DEPTH = 100


def _operand(value: Spec | Number, op: str) -> Spec:
    """Numbers inside expressions become constants; anything else is a user error."""
    if isinstance(value, Spec):
        return value
    return Constant(value=check.real(f"expression {op!r}", "operand", value))


class Spec:
    """Base class of every spec; gives specs arithmetic so user rules need no backend code."""

    kind: ClassVar[str] = "spec"
    # Random leaves carry a stream number; deterministic ones don't.
    random: ClassVar[bool] = False
    # Nesting depth: 0 for leaves; composites set theirs when built (not a field: no effect on
    # equality, hashing or JSON).
    _depth: ClassVar[int] = 0
    # numpy defers to the spec's reflected operators: np.float64(2) * spec is an expression, not
    # an object array.
    __array_ufunc__ = None

    def _binary(self, op: str, other: Spec | Number, *, swap: bool = False) -> Binary:
        left, right = self, _operand(other, op)
        if swap:
            left, right = right, left
        return Binary(op=op, left=left, right=right)

    def __add__(self, other):
        return self._binary("add", other)

    def __radd__(self, other):
        return self._binary("add", other, swap=True)

    def __sub__(self, other):
        return self._binary("sub", other)

    def __rsub__(self, other):
        return self._binary("sub", other, swap=True)

    def __mul__(self, other):
        return self._binary("mul", other)

    def __rmul__(self, other):
        return self._binary("mul", other, swap=True)

    def __truediv__(self, other):
        return self._binary("div", other)

    def __rtruediv__(self, other):
        return self._binary("div", other, swap=True)

    # Comparisons give 1.0 where true and 0.0 elsewhere, so they work as masks: w * (abs(w) >= 5).
    def __ge__(self, other):
        return self._binary("ge", other)

    def __gt__(self, other):
        return self._binary("gt", other)

    def __le__(self, other):
        return self._binary("le", other)

    def __lt__(self, other):
        return self._binary("lt", other)

    def __neg__(self):
        return Unary(op="neg", operand=self)

    def __abs__(self):
        return Unary(op="abs", operand=self)


_SpecClass = TypeVar("_SpecClass", bound=Any)


@dataclass_transform(kw_only_default=True, frozen_default=True, eq_default=True)
def _spec(kind: str, *, random: bool = False) -> Callable[[_SpecClass], _SpecClass]:
    """Class decorator: a frozen keyword-only dataclass registered under ``kind``."""

    def wrap(cls: _SpecClass) -> _SpecClass:
        cls.kind = kind
        cls.random = random
        made = dataclass(frozen=True, kw_only=True, eq=True, repr=True)(cls)
        # Comparison operators build expressions, so keep dataclass's structural == only.
        SPEC_KINDS[kind] = made
        return cast(_SpecClass, made)

    return wrap


SPEC_KINDS: dict[str, type] = {}


def _set(obj: Spec, **values: Any) -> None:
    for name, value in values.items():
        object.__setattr__(obj, name, value)


def _nest(obj: Spec, children: tuple) -> None:
    """Record ``obj``'s depth, refusing expressions deeper than ``MAX_DEPTH``."""
    depth = 1 + max(child._depth for child in children)
    if depth > MAX_DEPTH:
        raise SpecError(
            f"{type(obj).__name__}: expression nested {depth} levels deep; polyinit "
            f"supports at most {MAX_DEPTH} (a long chain of + or * is one level per "
            "term: combine fewer terms, or fold constants into one number)"
        )
    object.__setattr__(obj, "_depth", depth)


class _Expression:
    """Mixin of the expression specs: they are random variables, so they have no truth value."""

    def __bool__(self):
        raise SpecError(
            f"{self!r} is an expression (a random variable), not a truth value; "
            "comparisons of specs build masks such as w * (abs(w) >= 5)"
        )


def _stream(owner: str, value: Any) -> int:
    return check.integer(owner, "stream", value, minimum=0)


# --- deterministic leaves -------------------------------------------------------------------


@_spec("constant")
class Constant(Spec):
    """Every element equals ``value``. ``Constant(value=0.0)`` is zeros.

    >>> Constant(value=0.1)
    Constant(value=0.1)
    """

    value: float

    def __post_init__(self):
        _set(self, value=check.real("Constant", "value", self.value))


@_spec("identity")
class Identity(Spec):
    """``gain * eye(rows, cols)`` on a 2-D parameter (rectangular allowed, as in torch ``eye_``)."""

    gain: float = 1.0

    def __post_init__(self):
        _set(self, gain=check.real("Identity", "gain", self.gain))


@_spec("dirac")
class Dirac(Spec):
    """Conv identity (torch ``dirac_``): ``w[g*opg + d, d, k//2, ...] = gain`` for each group g.

    Preserves the input of a convolution in as many channels as possible.
    """

    gain: float = 1.0
    groups: int = 1

    def __post_init__(self):
        _set(
            self,
            gain=check.real("Dirac", "gain", self.gain),
            groups=check.integer("Dirac", "groups", self.groups, minimum=1),
        )


@_spec("bilinear")
class BilinearUpsampling(Spec):
    """MXNet's ``Bilinear`` deconvolution kernel over the two spatial axes.

    ``f = ceil(kw/2)``, ``c = (2f - 1 - f % 2) / (2f)``, ``w[y, x] = (1 - |x/f - c|)(1 - |y/f - c|)``.
    """


# --- random leaves --------------------------------------------------------------------------


@_spec("uniform", random=True)
class Uniform(Spec):
    """U[low, high). Variance ``(high - low)^2 / 12``.

    >>> Uniform(low=-0.05, high=0.05)
    Uniform(low=-0.05, high=0.05, stream=0)
    """

    low: float = 0.0
    high: float = 1.0
    stream: int = 0

    def __post_init__(self):
        low = check.real("Uniform", "low", self.low)
        high = check.real("Uniform", "high", self.high)
        if not low < high:
            raise SpecError(f"Uniform: low must be < high, received low={self.low!r}, high={self.high!r}")
        _set(self, low=low, high=high, stream=_stream("Uniform", self.stream))


@_spec("normal", random=True)
class Normal(Spec):
    """N(mean, std^2), untruncated.

    >>> Normal(std=0.02)
    Normal(mean=0.0, std=0.02, stream=0)
    """

    mean: float = 0.0
    std: float = 1.0
    stream: int = 0

    def __post_init__(self):
        _set(
            self,
            mean=check.real("Normal", "mean", self.mean),
            std=check.positive("Normal", "std", self.std),
            stream=_stream("Normal", self.stream),
        )


@_spec("truncated_normal", random=True)
class TruncatedNormal(Spec):
    """A normal cut to [low, high], in one of the two conventions in use, stated explicitly.

    ``bounds="absolute"``: low/high are values (torch ``trunc_normal_``, timm ``trunc_normal_``).
    ``bounds="std"``: low/high are in units of ``std`` around ``mean`` (JAX, Keras, Haiku).
    ``preserve_std=False``: ``std`` is the std *before* truncation, so the result is narrower
    (torch, JAX ``truncated_normal``, Keras ``TruncatedNormal``). ``preserve_std=True`` (only with
    ``bounds="std"``): ``std`` is the final std, as ``variance_scaling`` does; the pre-truncation
    std is ``std / s(low, high)`` where ``s`` is the std of N(0, 1) cut to [low, high].

    >>> TruncatedNormal(std=0.02, low=-2.0, high=2.0, bounds="absolute")  # torch/ViT
    TruncatedNormal(mean=0.0, std=0.02, low=-2.0, high=2.0, bounds='absolute', preserve_std=False, stream=0)
    """

    mean: float = 0.0
    std: float = 1.0
    low: float = -2.0
    high: float = 2.0
    bounds: str
    preserve_std: bool = False
    stream: int = 0

    def __post_init__(self):
        owner = "TruncatedNormal"
        mean = check.real(owner, "mean", self.mean)
        std = check.positive(owner, "std", self.std)
        low = check.real(owner, "low", self.low, finite=False)
        high = check.real(owner, "high", self.high, finite=False)
        bounds = check.choice(owner, "bounds", self.bounds, ("absolute", "std"))
        check.boolean(owner, "preserve_std", self.preserve_std)
        if not low < high:
            raise SpecError(f"{owner}: low must be < high, received low={self.low!r}, high={self.high!r}")
        if self.preserve_std and bounds != "std":
            raise SpecError(
                f"{owner}: preserve_std=True needs bounds='std' (the correction is "
                f"defined in std units), received bounds={bounds!r}"
            )
        a, b = (low, high) if bounds == "std" else ((low - mean) / std, (high - mean) / std)
        mass = 0.5 * (math.erf(b / math.sqrt(2)) - math.erf(a / math.sqrt(2)))
        # Inverse-CDF sampling loses all precision when almost no mass lies inside the bounds.
        if mass < 1e-4:
            raise SpecError(
                f"{owner}: the bounds keep only {mass:.3g} of the normal's mass "
                f"(low={self.low!r}, high={self.high!r}, bounds={bounds!r}); need >= 1e-4"
            )
        _set(self, mean=mean, std=std, low=low, high=high, bounds=bounds, stream=_stream(owner, self.stream))


@_spec("variance_scaling", random=True)
class VarianceScaling(Spec):
    """Var(w) = scale / n, with n the fan chosen by ``mode`` (computed from shape and layout).

    ``fan_avg`` is (fan_in + fan_out) / 2, ``fan_geo_avg`` is sqrt(fan_in * fan_out).
    ``distribution``: ``"normal"`` is untruncated (JAX's meaning; Keras calls it
    "untruncated_normal"); ``"truncated_normal"`` is cut at +-2 sigma0 and corrected so the final
    std is sqrt(scale / n) (Keras, JAX); ``"uniform"`` is U(+-sqrt(3 scale / n)).
    torch's gain maps to ``scale = gain**2``.

    >>> VarianceScaling(scale=2.0, mode="fan_in", distribution="normal")  # He normal
    VarianceScaling(scale=2.0, mode='fan_in', distribution='normal', stream=0)
    """

    scale: float = 1.0
    mode: str = "fan_in"
    distribution: str = "truncated_normal"
    stream: int = 0

    def __post_init__(self):
        owner = "VarianceScaling"
        _set(
            self,
            scale=check.positive(owner, "scale", self.scale),
            mode=check.choice(owner, "mode", self.mode, MODES),
            distribution=check.choice(owner, "distribution", self.distribution, DISTRIBUTIONS),
            stream=_stream(owner, self.stream),
        )


@_spec("orthogonal", random=True)
class Orthogonal(Spec):
    """A Haar-random (semi-)orthogonal matrix times ``gain``.

    The ``axis`` ('out' by default, or 'in', or an integer) is kept; every other axis is flattened,
    giving a (rows, cols) matrix with orthonormal rows or columns (whichever are fewer). With the
    default this equals torch ``orthogonal_`` on (out, in, *k) and Keras/JAX ``Orthogonal`` on
    (*k, in, out): Q^T Q = gain^2 I.
    """

    gain: float = 1.0
    axis: Union[str, int] = "out"
    stream: int = 0

    def __post_init__(self):
        _set(
            self,
            gain=check.real("Orthogonal", "gain", self.gain),
            axis=check.axis("Orthogonal", self.axis),
            stream=_stream("Orthogonal", self.stream),
        )


@_spec("delta_orthogonal", random=True)
class DeltaOrthogonal(Spec):
    """Conv kernel that is zero except an orthogonal (in, out) matrix at the spatial centre
    ``(k - 1) // 2`` (JAX ``delta_orthogonal``); needs out >= in."""

    gain: float = 1.0
    stream: int = 0

    def __post_init__(self):
        _set(
            self, gain=check.real("DeltaOrthogonal", "gain", self.gain), stream=_stream("DeltaOrthogonal", self.stream)
        )


@_spec("sparse", random=True)
class Sparse(Spec):
    """Martens' sparse init (torch ``sparse_``): N(0, std^2), then for each input index exactly
    ``ceil(sparsity * n_out)`` of the outputs are set to zero."""

    sparsity: float
    std: float = 0.01
    stream: int = 0

    def __post_init__(self):
        sparsity = check.real("Sparse", "sparsity", self.sparsity)
        if not 0.0 <= sparsity <= 1.0:
            raise SpecError(f"Sparse: sparsity must be in [0, 1], received sparsity={self.sparsity!r}")
        _set(
            self,
            sparsity=sparsity,
            std=check.positive("Sparse", "std", self.std),
            stream=_stream("Sparse", self.stream),
        )


# --- composition ----------------------------------------------------------------------------


@_spec("blocks")
class Blocks(Spec):
    """Equal blocks along ``axis``, each with its own spec: LSTM/GRU gate blocks.

    >>> Blocks(axis="out", parts=(Constant(value=0.0), Constant(value=1.0),
    ...                            Constant(value=0.0), Constant(value=0.0)))  # doctest: +ELLIPSIS
    Blocks(axis='out', parts=(...))
    """

    axis: Union[str, int] = "out"
    parts: tuple

    def __post_init__(self):
        parts = tuple(self.parts) if isinstance(self.parts, (list, tuple)) else self.parts
        if not isinstance(parts, tuple) or not parts or not all(isinstance(p, Spec) for p in parts):
            raise SpecError(f"Blocks: parts must be a non-empty sequence of specs, received parts={self.parts!r}")
        _set(self, axis=check.axis("Blocks", self.axis), parts=parts)
        _nest(self, parts)


@_spec("binary")
class Binary(_Expression, Spec):
    """``left <op> right`` elementwise; comparisons give 1.0/0.0."""

    op: str
    left: Spec
    right: Spec

    def __post_init__(self):
        check.choice("Binary", "op", self.op, BINARY_OPS)
        for name in ("left", "right"):
            if not isinstance(getattr(self, name), Spec):
                raise SpecError(f"Binary: {name} must be a spec, received {name}={getattr(self, name)!r}")
        _nest(self, (self.left, self.right))


@_spec("unary")
class Unary(_Expression, Spec):
    """``op(operand)`` elementwise: ``neg`` or ``abs``."""

    op: str
    operand: Spec

    def __post_init__(self):
        check.choice("Unary", "op", self.op, UNARY_OPS)
        if not isinstance(self.operand, Spec):
            raise SpecError(f"Unary: operand must be a spec, received operand={self.operand!r}")
        _nest(self, (self.operand,))


@_spec("where")
class Where(_Expression, Spec):
    """``if_true`` where ``condition`` is nonzero, else ``if_false``."""

    condition: Spec
    if_true: Spec
    if_false: Spec

    def __post_init__(self):
        for name in ("condition", "if_true", "if_false"):
            if not isinstance(getattr(self, name), Spec):
                raise SpecError(f"Where: {name} must be a spec, received {name}={getattr(self, name)!r}")
        _nest(self, (self.condition, self.if_true, self.if_false))


def where(condition: Spec, if_true: Spec | Number, if_false: Spec | Number) -> Where:
    """Elementwise select: ``if_true`` where ``condition`` != 0, else ``if_false``.

    >>> w = Normal(std=1.0)
    >>> where(abs(w) < 2, w, 0.0)  # doctest: +ELLIPSIS
    Where(...)
    """
    return Where(
        condition=_operand(condition, "where"), if_true=_operand(if_true, "where"), if_false=_operand(if_false, "where")
    )


def clip(operand: Spec, low: Number, high: Number) -> Binary:
    """``min(max(operand, low), high)`` elementwise.

    >>> clip(Normal(std=1.0), -2.0, 2.0)  # doctest: +ELLIPSIS
    Binary(op='minimum', ...)
    """
    low, high = check.real("clip", "low", low), check.real("clip", "high", high)
    if low >= high:
        raise SpecError(f"clip: low must be < high, received low={low!r}, high={high!r}")
    return Binary(
        op="minimum",
        left=Binary(op="maximum", left=_operand(operand, "clip"), right=Constant(value=low)),
        right=Constant(value=high),
    )


# --- projections ----------------------------------------------------------------------------

NORMALIZABLE = ("Normal", "TruncatedNormal", "Uniform", "VarianceScaling")


@_spec("normalized")
class Normalized(Spec):
    """``operand`` drawn, then L2-normalised along ``axis``: every 1-D slice along that axis (a
    row or a column of a matrix) has unit Euclidean norm, w <- w / ||w||_axis (nGPT, Loshchilov et
    al. 2024, olmo-core's ``normalize_matrices``).

    ``axis`` is a role (``"in"``: each output unit's weight vector; ``"out"``: each input's), so one
    rule means the same slices in torch's (out, in) and Keras's (in, out) layouts, or an integer
    axis of the stored tensor. The operand is one random leaf (normal, truncated normal, uniform,
    variance scaling); its scale does not matter after the projection, only its shape. With a
    centred normal operand every slice is a uniformly random direction.

    >>> Normalized(operand=Normal(std=0.02), axis="in")
    Normalized(operand=Normal(mean=0.0, std=0.02, stream=0), axis='in')
    """

    operand: Spec
    axis: Union[str, int] = "in"

    def __post_init__(self):
        if not isinstance(self.operand, Spec) or type(self.operand).__name__ not in NORMALIZABLE:
            raise SpecError(
                "Normalized: operand must be one random leaf spec "
                f"({', '.join(NORMALIZABLE)}), received operand={self.operand!r}"
            )
        _set(self, axis=check.axis("Normalized", self.axis))
        _nest(self, (self.operand,))


def normalized(operand: Spec, axis: Union[str, int] = "in") -> Normalized:
    """``operand`` L2-normalised along ``axis``: w / ||w||_2 over each slice along ``axis``.

    >>> normalized(TruncatedNormal(std=0.0625, low=-3.0, high=3.0, bounds="std"), axis="out")  # doctest: +ELLIPSIS
    Normalized(operand=TruncatedNormal(...), axis='out')
    """
    return Normalized(operand=operand, axis=axis)
