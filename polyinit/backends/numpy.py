"""The reference backend: draws a plan into a numpy array with an explicit ``numpy.random.Generator``.

Random leaves are drawn in ``Plan.leaves`` order from the one generator, in float64, and the result
is cast once to the target dtype (float16/32/64, and bfloat16 through ml_dtypes), so the same seed
gives the same bytes.

>>> import numpy as np
>>> from polyinit import OUT_IN, glorot_uniform
>>> w = sample(glorot_uniform(), (256, 784), rng=np.random.default_rng(0), layout=OUT_IN)
>>> bool(abs(w).max() < (6 / 1040) ** 0.5)
True
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np

from polyinit import nodes as n
from polyinit.backends import common
from polyinit.errors import BackendUnavailableError, PolyinitError
from polyinit.layout import OUT_IN, Layout
from polyinit.plan import Plan, resolve
from polyinit.spec import Spec

NAME = "numpy"
DEFAULT_LAYOUT = OUT_IN  # numpy has no layer convention; torch's (out, in, *k) like MXNet's
ANY_LAYOUT = True


OPS = n.op_table(np, lambda mask, like: mask.astype(np.result_type(like)))


def _standard_truncated(rng: np.random.Generator, shape: tuple[int, ...], a: float, b: float) -> np.ndarray:
    """Inverse CDF of N(0, 1) on [a, b] with the shared edge rule (``common.truncation_interval``);
    ndtri(p) = sqrt(2) erfinv(2p - 1), and (u + 1) / 2 is exact in float64 for u near -1."""
    low, high, clamp_low, clamp_high = common.truncation_interval(a, b, float(np.finfo(np.float64).eps))
    u = np.clip(rng.uniform(low, high, size=shape), clamp_low, clamp_high)
    return np.clip(_ndtri((u + 1.0) / 2.0), a, b)


def _ndtri(p: np.ndarray) -> np.ndarray:
    """Inverse of the standard normal CDF: scipy's when present, else Acklam's rational
    approximation (relative error < 1.2e-9, below float32 resolution)."""
    try:
        from scipy.special import ndtri
    except ImportError:
        return _acklam(p)
    return ndtri(p)


def _acklam(p: np.ndarray) -> np.ndarray:
    a = (
        -3.969683028665376e01,
        2.209460984245205e02,
        -2.759285104469687e02,
        1.383577518672690e02,
        -3.066479806614716e01,
        2.506628277459239e00,
    )
    b = (
        -5.447609879822406e01,
        1.615858368580409e02,
        -1.556989798598866e02,
        6.680131188771972e01,
        -1.328068155288572e01,
    )
    c = (
        -7.784894002430293e-03,
        -3.223964580411365e-01,
        -2.400758277161838e00,
        -2.549732539343734e00,
        4.374664141464968e00,
        2.938163982698783e00,
    )
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
    q = np.minimum(p, 1 - p)
    t = np.sqrt(-2 * np.log(q))
    tail = (((((c[0] * t + c[1]) * t + c[2]) * t + c[3]) * t + c[4]) * t + c[5]) / (
        (((d[0] * t + d[1]) * t + d[2]) * t + d[3]) * t + 1
    )
    r = (p - 0.5) ** 2
    mid = (
        (p - 0.5)
        * (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    )
    return np.where(q < 0.02425, np.where(p < 0.5, tail, -tail), mid)


def orthogonal_from_normal(g: np.ndarray, rows: int, cols: int, xp: Any = np) -> np.ndarray:
    """Haar-random (rows, cols) from a standard normal (max, min) matrix (``common.haar_orthogonal``)."""
    q, r = xp.linalg.qr(g)
    return common.haar_orthogonal(q, r, rows, cols, xp)


class Primitives:
    """The numpy implementation of every node kind; also the shape of every other backend's."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def Fill(self, node: n.Fill) -> np.ndarray:
        return np.full(node.shape, node.value, dtype=np.float64)

    def Fixed(self, node: n.Fixed) -> np.ndarray:
        return np.asarray(node.values, dtype=np.float64)

    def Uniform(self, node: n.Uniform, index: int) -> np.ndarray:
        return self.rng.uniform(node.low, node.high, size=node.shape)

    def Normal(self, node: n.Normal, index: int) -> np.ndarray:
        return self.rng.normal(node.mean, node.std, size=node.shape)

    def TruncatedNormal(self, node: n.TruncatedNormal, index: int) -> np.ndarray:
        return node.mean + node.std * _standard_truncated(self.rng, node.shape, node.a, node.b)

    def OrthogonalMatrix(self, node: n.OrthogonalMatrix, index: int) -> np.ndarray:
        rows, cols = node.shape
        g = self.rng.standard_normal((max(rows, cols), min(rows, cols)))
        return node.gain * orthogonal_from_normal(g, rows, cols)

    def Reshape(self, node: n.Reshape, x: np.ndarray) -> np.ndarray:
        return x.reshape(node.shape)

    def Transpose(self, node: n.Transpose, x: np.ndarray) -> np.ndarray:
        return np.transpose(x, node.perm)

    def Concat(self, node: n.Concat, parts: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate(parts, axis=node.axis)

    def Scatter(self, node: n.Scatter, x: np.ndarray) -> np.ndarray:
        out = np.zeros(node.shape)
        out[tuple(slice(None) if i is None else i for i in node.index)] = x
        return out

    def Op(self, node: n.Op, args: Sequence[np.ndarray]) -> np.ndarray:
        if node.name == "rank":
            assert node.axis is not None  # a rank op always names its axis
            return common.rank(args[0], node.axis, np).astype(args[0].dtype)
        if node.name == "l2_normalize":
            assert node.axis is not None  # built with its axis (plan.py)
            return common.l2_normalize(args[0], node.axis, np)
        return OPS[node.name](*args)


def numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            raise BackendUnavailableError("bfloat16 in numpy needs ml_dtypes: pip install ml_dtypes") from None
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def draw(plan: Plan, rng: np.random.Generator) -> np.ndarray:
    """Draw a resolved plan with ``rng``; the result has the plan's shape and dtype."""
    if not isinstance(plan, Plan):
        raise PolyinitError(f"numpy backend: expected a polyinit Plan, received {plan!r}")
    if not isinstance(rng, np.random.Generator):
        raise PolyinitError(
            f"numpy backend: rng must be a numpy.random.Generator (never the global RNG), received {rng!r}"
        )
    dtype = numpy_dtype(plan.dtype)
    if plan.size == 0:
        return np.zeros(plan.shape, dtype=dtype)
    values = n.evaluate(plan.root, Primitives(rng), plan.leaf_index)
    return np.asarray(values).astype(dtype)


def sample(
    spec: Spec,
    shape: Sequence[int],
    *,
    rng: np.random.Generator,
    layout: Optional[Layout] = None,
    dtype: str = "float32",
) -> np.ndarray:
    """Resolve ``spec`` for ``shape`` and draw it with ``rng``.

    >>> from polyinit import Uniform
    >>> sample(Uniform(low=-1, high=1), (2, 3), rng=np.random.default_rng(0)).shape
    (2, 3)
    """
    return draw(resolve(spec, shape, layout, dtype), rng)


# bfloat16 only where ml_dtypes is installed (it gives numpy the dtype).
DTYPES = ("float16",) + (("bfloat16",) if importlib.util.find_spec("ml_dtypes") else ()) + ("float32", "float64")


def initializer(spec: Spec, layout: Layout = DEFAULT_LAYOUT) -> Callable[..., np.ndarray]:
    """``fn(shape, rng, dtype="float32") -> ndarray`` drawing ``spec`` laid out as ``layout``.

    >>> from polyinit import he_normal
    >>> initializer(he_normal())((256, 784), np.random.default_rng(0)).dtype
    dtype('float32')
    """

    def fn(shape: Sequence[int], rng: np.random.Generator, dtype: str = "float32") -> np.ndarray:
        return sample(spec, shape, rng=rng, layout=layout, dtype=dtype)

    return fn


def sample_plan(plan: Plan, seed: int) -> np.ndarray:
    """One draw of ``plan``'s spec through ``initializer``, from ``default_rng(seed)``."""
    return initializer(plan.spec, plan.layout or DEFAULT_LAYOUT)(plan.shape, np.random.default_rng(seed), plan.dtype)


def draw_plan(plan: Plan, seed: int) -> np.ndarray:
    """Draw exactly ``plan`` (no re-resolving) from ``default_rng(seed)``."""
    return draw(plan, np.random.default_rng(seed))


def to_numpy(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float64)


def dtype_of(array: np.ndarray) -> str:
    return np.dtype(array.dtype).name


def device_of(array: np.ndarray) -> str:
    return "cpu"


def default_device() -> str:
    return "cpu"


def draw_portable(plan: Plan, seed: int, key: str | int = "", out: Optional[np.ndarray] = None) -> np.ndarray:
    """The portable draw of ``plan``: the same float32 values, bit for bit, as ``draw_portable``
    of every other backend with the same (seed, key) (see ``polyinit.portable``), written into
    ``out`` (C-contiguous, the plan's shape and dtype) or a fresh array, in chunks.

    >>> from polyinit import Normal
    >>> draw_portable(resolve(Normal(std=1.0), (2, 2)), seed=0, key="w").shape
    (2, 2)
    """
    from polyinit.portable import evaluate
    from polyinit.portable.xp_numpy import Ops

    if out is not None and (
        out.shape != plan.shape or out.dtype != numpy_dtype(plan.dtype) or not out.flags.c_contiguous
    ):
        raise PolyinitError(
            f"numpy backend: draw_portable needs out of shape {plan.shape} and dtype "
            f"{plan.dtype}, C-contiguous; received {out.shape} {out.dtype}"
        )
    return evaluate.draw(Ops(), plan, seed, key, out)
