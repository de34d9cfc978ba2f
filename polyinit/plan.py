"""``resolve(spec, shape, layout, dtype)``: the one place where scheme math lives.

A spec plus a concrete shape and layout becomes a ``Plan``: a tree of primitive draws with numbers
(``uniform(-0.0357, 0.0357)``) and the statistics those draws promise (mean, variance, support,
kurtosis). Backends draw the primitives; the conformance suite checks samples against the promise.

>>> from polyinit import OUT_IN, he_uniform
>>> resolve(he_uniform(a=5 ** 0.5), (256, 784), OUT_IN).describe()
'uniform(-0.03571, 0.03571)'
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from polyinit import _validate as check
from polyinit import moments as mom
from polyinit import nodes as n
from polyinit import spec as s
from polyinit.errors import ShapeError
from polyinit.layout import Fans, Layout, compute_fans
from polyinit.moments import Moments, Stats
from polyinit.support import check_finite

DTYPES = ("float16", "bfloat16", "float32", "float64")


@dataclass(eq=False, frozen=True)
class Plan:
    """Primitive draws with concrete numbers, and the statistics they promise.

    Immutable, like its spec and its nodes: ``resolve`` shares one plan between every parameter
    of the same spec, shape, layout and dtype.
    """

    spec: s.Spec
    shape: tuple[int, ...]
    layout: Optional[Layout]
    dtype: str
    root: n.Node
    promise: Optional[Stats] | Callable[[], Optional[Stats]]
    fans: Optional[Fans]
    leaves: tuple[n.Node, ...]

    @functools.cached_property
    def stats(self) -> Optional[Stats]:
        """The promised statistics, computed on first use and kept (in the instance's own cache,
        not in a field): backends never need them, and an expression's numerical integration
        would otherwise cost every draw."""
        return _force(self.promise)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def leaf_index(self) -> dict[int, int]:
        return {id(leaf): i for i, leaf in enumerate(self.leaves)}

    def flat(self, size: int) -> Optional[Plan]:
        """``size`` more values as a flat plan, where the plan's elements are iid (the conformance
        runner tops small tensors up this way, in one call of one shape); else None."""
        root = n.flat_copy(self.root, size) if self.size else None
        if root is None:
            return None
        return Plan(self.spec, (size,), self.layout, self.dtype, root, self.promise, self.fans, n.random_leaves(root))

    def describe(self) -> str:
        """The draw in words with numbers, e.g. ``uniform(-0.0357, 0.0357)``."""
        return "empty (no elements)" if self.size == 0 else self.root.describe()


@dataclass
class _Context:
    layout: Optional[Layout]
    fans_seen: list
    memo: dict


def resolve(spec: s.Spec, shape: Sequence[int], layout: Optional[Layout] = None, dtype: str = "float32") -> Plan:
    """Resolve ``spec`` for a parameter of ``shape`` laid out as ``layout``.

    The layout is needed only by schemes that use fans or axis roles; a zero-size shape resolves
    to an empty plan whatever the scheme.

    >>> from polyinit import IN_OUT, glorot_uniform
    >>> plan = resolve(glorot_uniform(), (784, 256), IN_OUT)
    >>> round(plan.stats.high, 4), plan.fans.fan_in, plan.fans.fan_out
    (0.076, 784, 256)
    """
    if not isinstance(spec, s.Spec):
        raise ShapeError(f"resolve: expected a polyinit spec, received {spec!r}")
    shape = check.shape("resolve", shape)
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise ShapeError(f"resolve: unsupported dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    layout = check.layout("resolve", layout)
    if math.prod(shape) == 0:
        root = n.Fill(shape, 0.0)
        return Plan(spec, shape, layout, dtype, root, None, None, ())
    return _resolve_cached(spec, shape, layout, dtype)


@functools.lru_cache(maxsize=512)
def _resolve_cached(spec: s.Spec, shape: tuple[int, ...], layout: Optional[Layout], dtype: str) -> Plan:
    # Specs and layouts are frozen, so a plan can be shared: initialising the layers of a model
    # resolves the same (spec, shape) many times.
    # Deterministic arrays (identity, dirac, bilinear) are recipes, computed at each draw, so a
    # cached plan holds numbers, never a large array.
    ctx = _Context(layout=layout, fans_seen=[], memo={})
    root, stats = _resolve(spec, shape, ctx)
    # No plan that could write an inf or a NaN leaves resolve (see polyinit.support).
    check_finite(root, dtype, f"resolve: {_short(repr(spec))}")
    fans = ctx.fans_seen[0] if ctx.fans_seen else None
    return Plan(spec, shape, layout, dtype, root, stats, fans, n.random_leaves(root))


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


Resolved = tuple[n.Node, "Optional[Stats] | Callable[[], Optional[Stats]]"]
_RESOLVERS: dict[type, Callable[..., Resolved]] = {}


def _resolver(kind: type) -> Callable[[Callable[..., Resolved]], Callable[..., Resolved]]:
    def register(fn: Callable[..., Resolved]) -> Callable[..., Resolved]:
        _RESOLVERS[kind] = fn
        return fn

    return register


def _resolve(spec: s.Spec, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    # Equal specs at equal shapes resolve to one node: the same random variable, drawn once.
    key = (spec, shape)
    if key not in ctx.memo:
        ctx.memo[key] = _RESOLVERS[type(spec)](spec, shape, ctx)
    return ctx.memo[key]


def _fans(shape: tuple[int, ...], ctx: _Context) -> Fans:
    fans = compute_fans(shape, ctx.layout)
    ctx.fans_seen.append(fans)
    return fans


def _axis(axis: int | str, shape: tuple[int, ...], ctx: _Context, owner: str) -> int:
    """A role ('out'/'in') or an integer axis, as a physical index."""
    rank = len(shape)
    if isinstance(axis, int):
        if not -rank <= axis < rank:
            raise ShapeError(f"{owner}: axis {axis} is out of range for shape {shape}")
        return axis % rank
    if ctx.layout is None and rank != 1:
        raise ShapeError(f"{owner}: axis {axis!r} is a role, so it needs a layout; shape {shape} has none")
    # A rank-1 tensor is a bias: its one axis is 'out' under any layout.
    found = ctx.layout.axes_with(axis, rank) if ctx.layout else tuple(i for i in (0,) if axis == "out")
    if len(found) != 1:
        under = f"layout {ctx.layout.pattern!r}" if ctx.layout else "no layout (a rank-1 tensor is 'out')"
        raise ShapeError(
            f"{owner}: shape {shape} under {under} has {len(found)} {axis!r} axes; name an integer axis instead"
        )
    return found[0]


# --- leaves -------------------------------------------------------------------------------


def _finite(moments_of: Callable[..., Moments], *args: Any) -> Optional[Moments]:
    """Raw moments, or None when they overflow a float (a float64 plan of huge values): a plan
    that cannot promise finite moments says so instead of promising an inf or a wrong number."""
    try:
        moments = moments_of(*args)
    except (OverflowError, ZeroDivisionError):
        return None
    return moments if all(math.isfinite(m) for m in moments) else None


def _uniform(shape: tuple[int, ...], low: float, high: float) -> Resolved:
    return n.Uniform(shape, low, high), Stats(
        _finite(mom.uniform, low, high), low, high, distribution=("uniform", low, high)
    )


def _normal(shape: tuple[int, ...], mean: float, std: float) -> Resolved:
    return n.Normal(shape, mean, std), Stats(
        _finite(mom.normal, mean, std), -math.inf, math.inf, distribution=("normal", mean, std)
    )


def _truncated(shape: tuple[int, ...], mean: float, std0: float, a: float, b: float) -> Resolved:
    moments = _finite(lambda: mom.affine(mom.standard_truncated(a, b), std0, mean))
    return n.TruncatedNormal(shape, mean, std0, a, b), Stats(
        moments, mean + a * std0, mean + b * std0, distribution=("truncated_normal", mean, std0, a, b)
    )


@_resolver(s.Constant)
def _constant(spec: s.Constant, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    return n.Fill(shape, spec.value), Stats(_finite(mom.constant, spec.value), spec.value, spec.value)


@_resolver(s.Uniform)
def _uniform_spec(spec: s.Uniform, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    return _uniform(shape, spec.low, spec.high)


@_resolver(s.Normal)
def _normal_spec(spec: s.Normal, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    return _normal(shape, spec.mean, spec.std)


@_resolver(s.TruncatedNormal)
def _truncated_spec(spec: s.TruncatedNormal, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    if spec.bounds == "absolute":
        a, b = (spec.low - spec.mean) / spec.std, (spec.high - spec.mean) / spec.std
        return _truncated(shape, spec.mean, spec.std, a, b)
    std0 = spec.std / mom.truncated_std(spec.low, spec.high) if spec.preserve_std else spec.std
    return _truncated(shape, spec.mean, std0, spec.low, spec.high)


@_resolver(s.VarianceScaling)
def _variance_scaling(spec: s.VarianceScaling, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    """Var = scale / n; n from the mode; normal, uniform U(+-sqrt(3 var)), or truncated at +-2
    sigma0 with sigma0 = sqrt(var) / std(N(0,1) | [-2, 2]) so the final variance is exact."""
    fans = _fans(shape, ctx)
    denominator = {
        "fan_in": fans.fan_in,
        "fan_out": fans.fan_out,
        "fan_avg": (fans.fan_in + fans.fan_out) / 2,
        "fan_geo_avg": math.sqrt(fans.fan_in * fans.fan_out),
    }[spec.mode]
    variance = spec.scale / denominator
    if spec.distribution == "normal":
        return _normal(shape, 0.0, math.sqrt(variance))
    if spec.distribution == "uniform":
        bound = math.sqrt(3 * variance)
        return _uniform(shape, -bound, bound)
    return _truncated(shape, 0.0, math.sqrt(variance) / mom.truncated_std(-2.0, 2.0), -2.0, 2.0)


@_resolver(s.Orthogonal)
def _orthogonal(spec: s.Orthogonal, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    """Keep ``axis`` as the matrix rows, flatten the rest into columns; entries have E[x^2] =
    gain^2 / max(rows, cols) and excess kurtosis -6 / (max + 2) (coordinates of a random unit vector)."""
    if len(shape) < 2:
        raise ShapeError(f"Orthogonal: needs a tensor of rank >= 2, received shape {shape}")
    axis = _axis(spec.axis, shape, ctx, "Orthogonal")
    rows = shape[axis]
    cols = math.prod(shape) // rows
    moved = (rows,) + shape[:axis] + shape[axis + 1 :]
    node: n.Node = n.Reshape(moved, n.OrthogonalMatrix((rows, cols), spec.gain))
    if axis != 0:
        perm = tuple(range(1, axis + 1)) + (0,) + tuple(range(axis + 1, len(shape)))
        node = n.Transpose(shape, node, perm)
    size = max(rows, cols)
    g2 = spec.gain * spec.gain
    moments = _finite(lambda: (0.0, g2 / size, 0.0, g2 * g2 * 3.0 / (size * (size + 2))))
    return node, Stats(moments, -abs(spec.gain), abs(spec.gain), orthogonal=(axis, spec.gain))


@_resolver(s.Identity)
def _identity(spec: s.Identity, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    if len(shape) != 2:
        raise ShapeError(f"Identity: needs a 2-D tensor, received shape {shape}")
    ones = min(shape)  # gain on the diagonal, 0 elsewhere
    return _fixed(shape, functools.partial(_eye, shape, spec.gain), "identity", spec.gain, ones)


def _eye(shape: tuple[int, ...], gain: float) -> np.ndarray:
    rows, cols = shape  # _identity admits 2-D shapes only
    return gain * np.eye(rows, cols)


@_resolver(s.Dirac)
def _dirac(spec: s.Dirac, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    """torch ``dirac_``: ``w[g*opg + d, d, k//2...] = gain`` for d < min(out/groups, in)."""
    out_axis, in_axis, spatial = _conv_axes(shape, ctx, "Dirac")
    if shape[out_axis] % spec.groups:
        raise ShapeError(f"Dirac: out channels {shape[out_axis]} are not divisible by groups={spec.groups}")
    per_group = shape[out_axis] // spec.groups
    recipe = functools.partial(_dirac_values, shape, spec.gain, spec.groups, out_axis, in_axis, spatial)
    return _fixed(shape, recipe, "dirac", spec.gain, spec.groups * min(per_group, shape[in_axis]))


def _dirac_values(
    shape: tuple[int, ...], gain: float, groups: int, out_axis: int, in_axis: int, spatial: tuple[int, ...]
) -> np.ndarray:
    per_group = shape[out_axis] // groups
    values = np.zeros(shape)
    for g in range(groups):
        for d in range(min(per_group, shape[in_axis])):
            index = [0] * len(shape)
            index[out_axis], index[in_axis] = g * per_group + d, d
            for ax in spatial:
                index[ax] = shape[ax] // 2
            values[tuple(index)] = gain
    return values


@_resolver(s.DeltaOrthogonal)
def _delta_orthogonal(spec: s.DeltaOrthogonal, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    """JAX ``delta_orthogonal``: zeros, and an orthogonal (in, out) matrix at (k-1)//2."""
    out_axis, in_axis, spatial = _conv_axes(shape, ctx, "DeltaOrthogonal")
    n_in, n_out = shape[in_axis], shape[out_axis]
    if n_in > n_out:
        raise ShapeError(f"DeltaOrthogonal: needs in <= out channels, received in={n_in}, out={n_out}")
    matrix: n.Node = n.OrthogonalMatrix((n_in, n_out), spec.gain)
    if out_axis < in_axis:
        matrix = n.Transpose((n_out, n_in), matrix, (1, 0))
    index = tuple((shape[ax] - 1) // 2 if ax in spatial else None for ax in range(len(shape)))
    node = n.Scatter(shape, matrix, index)
    # One in prod(k) positions holds the matrix, whose entries have E[x^2] = gain^2 / out.
    weight = 1.0 / math.prod(shape[ax] for ax in spatial)
    g2 = spec.gain * spec.gain
    centre = (0.0, g2 / n_out, 0.0, g2 * g2 * 3.0 / (n_out * (n_out + 2)))
    stats = Stats(
        _finite(mom.mixture, [(weight, centre), (1 - weight, mom.constant(0.0))]),
        -abs(spec.gain),
        abs(spec.gain),
        delta=(index, spec.gain),
    )
    return node, stats


@_resolver(s.Sparse)
def _sparse(spec: s.Sparse, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    """N(0, std^2) times a mask with exactly ceil(sparsity * n_out) zeros per input index.
    Nonzero fraction p = 1 - zeros/n_out: Var = p std^2, E[x^4] = 3 p std^4."""
    if len(shape) != 2:
        raise ShapeError(f"Sparse: needs a 2-D tensor, received shape {shape}")
    axis = _axis("out", shape, ctx, "Sparse")
    n_out = shape[axis]
    zeros = math.ceil(spec.sparsity * n_out)
    normal = n.Normal(shape, 0.0, spec.std)
    keys = n.Uniform(shape, 0.0, 1.0)
    mask = n.Op(shape, "ge", (n.Op(shape, "rank", (keys,), axis=axis), n.Fill(shape, float(zeros))))
    keep = 1.0 - zeros / n_out
    moments = _finite(lambda: (0.0, keep * spec.std**2, 0.0, 3.0 * keep * spec.std**4))
    return n.Op(shape, "mul", (normal, mask)), Stats(
        moments, -math.inf, math.inf, zero_fraction=zeros / n_out, zeros_per_slice=(axis, zeros)
    )


@_resolver(s.BilinearUpsampling)
def _bilinear(spec: s.BilinearUpsampling, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    """MXNet ``Bilinear``: f = ceil(kw/2), c = (2f - 1 - f%2) / (2f), w = (1-|x/f-c|)(1-|y/f-c|)."""
    if ctx.layout is None:
        raise ShapeError(f"BilinearUpsampling: needs a layout to find the spatial axes of shape {shape}")
    spatial = ctx.layout.axes_with("spatial", len(shape))
    if len(spatial) != 2:
        raise ShapeError(
            f"BilinearUpsampling: needs exactly 2 spatial axes, shape {shape} under "
            f"layout {ctx.layout.pattern!r} has {len(spatial)}"
        )
    kernel = _bilinear_kernel(shape[spatial[0]], shape[spatial[1]])
    # Every other axis repeats the kernel, so the tensor's moments are the kernel's.
    flat = kernel.ravel()
    moments = tuple(float(np.mean(flat**k)) for k in range(1, 5))
    recipe = functools.partial(_bilinear_values, shape, spatial)
    node = n.Fixed(shape, recipe, float(flat.min()), float(flat.max()), "bilinear")
    stats = Stats(
        moments,  # type: ignore[arg-type]  # 4 moments, a tuple[float, ...]
        node.low,
        node.high,
        exact=OnDemand(recipe, shape),
    )
    return node, stats


def _bilinear_kernel(kh: int, kw: int) -> np.ndarray:
    f = math.ceil(kw / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    x = np.arange(kw)
    y = np.arange(kh)
    return (1 - np.abs(y[:, None] / f - c)) * (1 - np.abs(x[None, :] / f - c))


def _bilinear_values(shape: tuple[int, ...], spatial: tuple[int, ...]) -> np.ndarray:
    kernel = _bilinear_kernel(shape[spatial[0]], shape[spatial[1]])
    view = [1] * len(shape)
    view[spatial[0]], view[spatial[1]] = kernel.shape
    return np.broadcast_to(kernel.reshape(view), shape).copy()


class OnDemand:
    """An array computed from a small recipe each time it is asked for (``np.asarray(x)``): the
    ``exact`` values of a deterministic plan, without the plan (shared by the resolve cache)
    holding the array itself."""

    def __init__(self, recipe: Callable[[], np.ndarray], shape: tuple[int, ...]):
        self.recipe, self.shape = recipe, shape

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        values = self.recipe()
        return values if dtype is None else values.astype(dtype)

    def __repr__(self) -> str:
        return f"OnDemand(shape={self.shape})"


def _fixed(shape: tuple[int, ...], recipe: Callable[[], np.ndarray], name: str, value: float, count: int) -> Resolved:
    """A tensor that holds ``value`` at ``count`` places and 0 elsewhere, from ``recipe``; its
    moments in closed form: E[x^k] = (count / size) value^k."""
    fraction = count / math.prod(shape)
    moments = _finite(lambda: mom.mixture([(fraction, mom.constant(value)), (1 - fraction, mom.constant(0.0))]))
    present = [value] * (count > 0) + [0.0] * (fraction < 1)
    node = n.Fixed(shape, recipe, min(present), max(present), name)
    return node, Stats(moments, node.low, node.high, exact=OnDemand(recipe, shape))


def _conv_axes(shape: tuple[int, ...], ctx: _Context, owner: str) -> tuple[int, int, tuple[int, ...]]:
    if not 3 <= len(shape) <= 5:
        raise ShapeError(f"{owner}: needs a 3-, 4- or 5-D conv kernel, received shape {shape}")
    spatial = ctx.layout.axes_with("spatial", len(shape)) if ctx.layout else ()
    return _axis("out", shape, ctx, owner), _axis("in", shape, ctx, owner), spatial


# --- projections --------------------------------------------------------------------------


@_resolver(s.Normalized)
def _normalized(spec: s.Normalized, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    """w / ||w||_2 over each slice along ``axis`` (m elements). The slices' squares sum to 1 and
    their elements are exchangeable, so E[x^2] = 1/m whatever the operand; a centred normal
    operand makes each slice a uniform random direction: E[x] = E[x^3] = 0, E[x^4] = 3 / (m (m+2))
    (excess kurtosis -6 / (m + 2)). Other operands get no closed-form moments (the conformance
    suite compares them with the numpy reference's draws); the unit norms are promised exactly."""
    if not shape:
        raise ShapeError("Normalized: needs a tensor of rank >= 1, received a scalar")
    axis = _axis(spec.axis, shape, ctx, "Normalized")
    m = shape[axis]
    if m < 2:
        raise ShapeError(
            f"Normalized: axis {spec.axis!r} of shape {shape} has {m} element; a unit vector "
            "of one element is only a sign, refused (normalise along an axis of 2 or more)"
        )
    leaf, operand = _resolve(spec.operand, shape, ctx)
    low, high = _force(operand).low, _force(operand).high  # type: ignore[union-attr]  # leaves promise
    node = n.Op(shape, "l2_normalize", (_unit_scale(leaf, shape),), axis=axis)
    centred_normal = isinstance(leaf, n.Normal) and leaf.mean == 0.0
    moments = (0.0, 1.0 / m, 0.0, 3.0 / (m * (m + 2))) if centred_normal else None
    return node, Stats(moments, -1.0 if low < 0 else 0.0, 1.0 if high > 0 else 0.0, unit_norm=axis)


def _unit_scale(leaf: n.Node, shape: tuple[int, ...]) -> n.Node:
    """The leaf times the power of two that brings its scale near 1: exact, the same direction,
    and squares far from float32's subnormals (which XLA and TensorFlow flush to zero on CPU, so
    a draw at std 1e-20 would otherwise differ between frameworks) and from overflow (a sum of
    at most 2^32 squares of values within 80 stays below 3e13)."""
    if isinstance(leaf, n.Uniform):
        typical = max(abs(leaf.low), abs(leaf.high))
    else:
        assert isinstance(leaf, (n.Normal, n.TruncatedNormal))  # Normalized admits these leaves
        typical = max(abs(leaf.mean), leaf.std)
    scale = 2.0 ** -math.floor(math.log2(typical))
    return leaf if scale == 1.0 else n.Op(shape, "mul", (leaf, n.Fill(shape, scale)))


# --- composition --------------------------------------------------------------------------


@_resolver(s.Blocks)
def _blocks(spec: s.Blocks, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    if not shape:
        raise ShapeError("Blocks: needs a tensor of rank >= 1, received a scalar")
    axis = _packed_axis(spec.axis, shape, ctx, _axis(spec.axis, shape, ctx, "Blocks"))
    count = len(spec.parts)
    if shape[axis] % count:
        raise ShapeError(
            f"Blocks: axis {axis} of shape {shape} has {shape[axis]} entries, not divisible into {count} blocks"
        )
    part_shape = shape[:axis] + (shape[axis] // count,) + shape[axis + 1 :]
    # Each block is a different set of elements: equal parts are independent draws, not one.
    resolved = [_resolve(part, part_shape, _Context(ctx.layout, ctx.fans_seen, {})) for part in spec.parts]
    node = n.Concat(shape, axis, tuple(node for node, _ in resolved))
    return node, functools.partial(_mixture_stats, axis, [promise for _, promise in resolved])


def _packed_axis(role: int | str, shape: tuple[int, ...], ctx: _Context, axis: int) -> int:
    """The axis Blocks split for the role ``"out"``: the ``batch`` axis where the layout has one.

    A logical view splits a packed output axis into (blocks, size) with the blocks as a ``batch``
    axis (an LSTM's (4H, in) weight seen as (4, H, in) "batch out in", packed q/k/v as (3, E, E),
    conv groups; portable draws move it last: "out in batch"). Blocks along ``out`` then mean what
    they mean on the stored tensor, whose packed axis runs block-major: whole entries of the batch
    axis (one gate each for lstm_kernel's four), not slices of every block's ``out``. A count that
    does not divide the batch axis is refused by the caller."""
    if role == "out" and ctx.layout is not None and len(shape) > 1:
        batch = ctx.layout.axes_with("batch", len(shape))
        if len(batch) == 1:
            return batch[0]
    return axis


def _mixture_stats(axis: int, promises: list[Optional[Stats] | Callable[[], Optional[Stats]]]) -> Stats:
    """The blocks' mixture where every part has closed-form moments (else unknown moments and
    support), and each part's own promise: the blocks are not exchangeable."""
    stats = [_force(p) for p in promises]
    parts = (axis, tuple(stats))
    if any(st is None or st.moments is None for st in stats):
        return Stats(None, -math.inf, math.inf, blocks=parts)
    known = [st for st in stats if st is not None]  # all of them: any() above returned on a None
    mixed = _finite(mom.mixture, [(1.0 / len(known), st.moments) for st in known])
    return Stats(mixed, min(st.low for st in known), max(st.high for st in known), blocks=parts)


def _force(promise: Optional[Stats] | Callable[[], Optional[Stats]]) -> Optional[Stats]:
    return promise() if callable(promise) else promise


@_resolver(s.Binary)
def _binary(spec: s.Binary, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    args = (_resolve(spec.left, shape, ctx)[0], _resolve(spec.right, shape, ctx)[0])
    return _expression(n.Op(shape, spec.op, args))


@_resolver(s.Unary)
def _unary(spec: s.Unary, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    return _expression(n.Op(shape, spec.op, (_resolve(spec.operand, shape, ctx)[0],)))


@_resolver(s.Where)
def _where(spec: s.Where, shape: tuple[int, ...], ctx: _Context) -> Resolved:
    args = tuple(_resolve(x, shape, ctx)[0] for x in (spec.condition, spec.if_true, spec.if_false))
    return _expression(n.Op(shape, "where", args))


_GRID = 1 << 20


def _expression(node: n.Op) -> Resolved:
    return node, functools.partial(_expression_stats, node)


def _expression_stats(node: n.Op) -> Optional[Stats]:
    """Statistics of an elementwise expression of at most one iid random leaf, by integrating
    E[f(x)^k] against the leaf's density on a 2^20-point midpoint grid (error ~1e-6). Expressions
    of several random leaves get no closed-form promise (``stats=None``)."""
    leaves = n.random_leaves(node)
    if len(leaves) > 1 or any(not isinstance(leaf, (n.Uniform, n.Normal, n.TruncatedNormal)) for leaf in leaves):
        return None
    if n.flat_copy(node, 1) is None:  # structure across elements (blocks, fixed arrays, ranks)
        return None
    with np.errstate(all="ignore"):  # overflow shows as inf below, and is refused there
        if leaves:
            points, weights = _quadrature(leaves[0])
            values = n.elementwise(node, {id(leaves[0]): points})
            method = "quadrature"
        else:
            values, weights = n.elementwise(node, {}), np.array([1.0])
            method = "closed form"
        values = np.broadcast_to(values, weights.shape)
        moments = tuple(float(np.sum(weights * values**k)) for k in range(1, 5))
        # The support's ends come from the grid's ends too, so a bound like U's high is not missed.
        ends = n.elementwise(node, {id(leaves[0]): _ends(leaves[0])}) if leaves else values
        low = float(min(values.min(), np.min(ends)))
        high = float(max(values.max(), np.max(ends)))
    zero_fraction = float(np.sum(weights[values == 0]))
    finite = all(math.isfinite(m) for m in moments)
    return Stats(
        moments if finite else None,  # type: ignore[arg-type]  # k=1..4: 4 moments
        low,
        high,
        zero_fraction=zero_fraction or None,
        method=method,
    )


def _quadrature(leaf: n.Node) -> tuple[np.ndarray, np.ndarray]:
    u = (np.arange(_GRID) + 0.5) / _GRID
    if isinstance(leaf, n.Uniform):
        return leaf.low + u * (leaf.high - leaf.low), np.full(_GRID, 1.0 / _GRID)
    if not isinstance(leaf, (n.Normal, n.TruncatedNormal)):  # pragma: no cover - callers pass random leaves
        raise TypeError(f"_quadrature: {type(leaf).__name__} is not a random leaf")
    lo, hi = (-12.0, 12.0) if isinstance(leaf, n.Normal) else (max(leaf.a, -12.0), min(leaf.b, 12.0))
    z = lo + u * (hi - lo)
    density = np.exp(-0.5 * z * z)
    return leaf.mean + leaf.std * z, density / density.sum()


def _ends(leaf: n.Node) -> np.ndarray:
    if isinstance(leaf, n.Uniform):
        return np.array([leaf.low, leaf.high])
    if isinstance(leaf, n.TruncatedNormal):
        return np.array([leaf.mean + leaf.a * leaf.std, leaf.mean + leaf.b * leaf.std])
    return np.array([0.0])
