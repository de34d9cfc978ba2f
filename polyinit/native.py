"""Each framework's own initializers, written as polyinit specs, quirks included.

Where a framework departs from the common convention, the spec here reproduces the framework's
exact behaviour, under the framework's name, so a port keeps the numbers it had:

* Keras ``"normal"`` in VarianceScaling means truncated (``keras_variance_scaling``);
  ``TruncatedNormal`` cuts at +-2 stddev without correction (``keras_truncated_normal``).
* JAX ``uniform(scale)`` is U[0, scale), not symmetric (``jax_uniform``); ``truncated_normal`` has
  bounds in std units and no correction.
* torch ``trunc_normal_`` takes absolute bounds (``torch_trunc_normal``).
* MXNet ``Xavier(magnitude)`` means Var = magnitude / (3 n) for uniform and magnitude / n for
  gaussian (``mxnet_xavier``); ``Uniform(scale)`` is U(-scale, scale).

>>> jax_uniform(0.01)
Uniform(low=0.0, high=0.01, stream=0)
>>> keras_variance_scaling(2.0, "fan_in", "normal").distribution
'truncated_normal'
"""

from __future__ import annotations

from typing import Any

from polyinit import _validate as check
from polyinit import schemes
from polyinit.errors import SpecError
from polyinit.spec import Normal, Orthogonal, TruncatedNormal, Uniform, VarianceScaling

# Each factory checks its arguments under the framework's own names (``minval``, ``stddev``,
# ``magnitude``), so an error names what the user wrote, not the spec field it maps to.


def _interval(owner: str, low_name: str, low: Any, high_name: str, high: Any) -> tuple[float, float]:
    lo, hi = check.real(owner, low_name, low), check.real(owner, high_name, high)
    if not lo < hi:
        raise SpecError(f"{owner}: {low_name} must be < {high_name}, received {low_name}={low!r}, {high_name}={high!r}")
    return lo, hi


def _bound(owner: str, low_name: str, low: Any, high_name: str, high: Any) -> tuple[float, float]:
    """Truncation bounds: may be infinite, never NaN; low < high."""
    lo = check.real(owner, low_name, low, finite=False)
    hi = check.real(owner, high_name, high, finite=False)
    if not lo < hi:
        raise SpecError(f"{owner}: {low_name} must be < {high_name}, received {low_name}={low!r}, {high_name}={high!r}")
    return lo, hi


# --- PyTorch (torch.nn.init) --------------------------------------------------------------


def torch_uniform(a: float = 0.0, b: float = 1.0) -> Uniform:
    """``torch.nn.init.uniform_(t, a, b)``: U[a, b)."""
    a, b = _interval("torch_uniform", "a", a, "b", b)
    return Uniform(low=a, high=b)


def torch_normal(mean: float = 0.0, std: float = 1.0) -> Normal:
    """``torch.nn.init.normal_``."""
    return Normal(mean=mean, std=std)


def torch_trunc_normal(mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> TruncatedNormal:
    """``torch.nn.init.trunc_normal_``: a and b are absolute values; no variance correction."""
    a, b = _bound("torch_trunc_normal", "a", a, "b", b)
    return TruncatedNormal(mean=mean, std=std, low=a, high=b, bounds="absolute")


torch_xavier_uniform = schemes.glorot_uniform
torch_xavier_normal = schemes.glorot_normal
torch_kaiming_uniform = schemes.he_uniform
torch_kaiming_normal = schemes.he_normal


def torch_orthogonal(gain: float = 1.0) -> Orthogonal:
    """``torch.nn.init.orthogonal_``: rows = dim 0 (out), the rest flattened."""
    return Orthogonal(gain=gain, axis=0)


# --- Keras 3 (keras.initializers) ---------------------------------------------------------


def keras_random_uniform(minval: float = -0.05, maxval: float = 0.05) -> Uniform:
    minval, maxval = _interval("keras_random_uniform", "minval", minval, "maxval", maxval)
    return Uniform(low=minval, high=maxval)


def keras_random_normal(mean: float = 0.0, stddev: float = 0.05) -> Normal:
    return Normal(mean=mean, std=check.positive("keras_random_normal", "stddev", stddev))


def keras_truncated_normal(mean: float = 0.0, stddev: float = 0.05) -> TruncatedNormal:
    """``keras.initializers.TruncatedNormal``: cut at mean +- 2 stddev, no variance correction."""
    stddev = check.positive("keras_truncated_normal", "stddev", stddev)
    return TruncatedNormal(mean=mean, std=stddev, low=-2.0, high=2.0, bounds="std")


def keras_variance_scaling(
    scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal"
) -> VarianceScaling:
    """``keras.initializers.VarianceScaling``: ``"normal"`` means truncated (corrected), and
    ``"untruncated_normal"`` is the plain normal."""
    mapping = {
        "truncated_normal": "truncated_normal",
        "normal": "truncated_normal",
        "untruncated_normal": "normal",
        "uniform": "uniform",
    }
    if not isinstance(distribution, str) or distribution not in mapping:
        raise SpecError(
            f"keras_variance_scaling: unknown distribution {distribution!r}; expected one of {', '.join(mapping)}"
        )
    return VarianceScaling(scale=scale, mode=mode, distribution=mapping[distribution])


def keras_glorot_normal() -> VarianceScaling:
    return schemes.glorot_normal(truncated=True)


def keras_he_normal() -> VarianceScaling:
    return schemes.he_normal(truncated=True)


def keras_lecun_normal() -> VarianceScaling:
    return schemes.lecun_normal(truncated=True)


def keras_he_uniform() -> VarianceScaling:
    return VarianceScaling(scale=2.0, mode="fan_in", distribution="uniform")


def keras_orthogonal(gain: float = 1.0) -> Orthogonal:
    """``keras.initializers.Orthogonal``: columns = last axis, the leading axes flattened."""
    return Orthogonal(gain=gain, axis=-1)


# --- JAX (jax.nn.initializers) ------------------------------------------------------------


def jax_uniform(scale: float = 1e-2) -> Uniform:
    """``jax.nn.initializers.uniform(scale)``: U[0, scale), not symmetric."""
    return Uniform(low=0.0, high=check.positive("jax_uniform", "scale", scale))


def jax_normal(stddev: float = 1e-2) -> Normal:
    return Normal(mean=0.0, std=check.positive("jax_normal", "stddev", stddev))


def jax_truncated_normal(stddev: float = 1e-2, lower: float = -2.0, upper: float = 2.0) -> TruncatedNormal:
    """``jax.nn.initializers.truncated_normal``: bounds in std units, no correction."""
    stddev = check.positive("jax_truncated_normal", "stddev", stddev)
    lower, upper = _bound("jax_truncated_normal", "lower", lower, "upper", upper)
    return TruncatedNormal(std=stddev, low=lower, high=upper, bounds="std")


def jax_variance_scaling(scale: float, mode: str, distribution: str) -> VarianceScaling:
    """``jax.nn.initializers.variance_scaling``: ``"normal"`` is untruncated here (unlike Keras)."""
    return VarianceScaling(scale=scale, mode=mode, distribution=distribution)


def jax_orthogonal(scale: float = 1.0, column_axis: int = -1) -> Orthogonal:
    scale = check.real("jax_orthogonal", "scale", scale)
    if isinstance(column_axis, str):  # JAX takes an integer only; 'in'/'out' would be a role
        raise SpecError(f"jax_orthogonal: column_axis must be an integer, received column_axis={column_axis!r}")
    return Orthogonal(gain=scale, axis=check.integer("jax_orthogonal", "column_axis", column_axis))


# --- MXNet 1.x (mx.init) ------------------------------------------------------------------


def mxnet_uniform(scale: float = 0.07) -> Uniform:
    """``mx.init.Uniform(scale)``: U(-scale, scale); 0.07 is Gluon's global default."""
    scale = check.positive("mxnet_uniform", "scale", scale)
    return Uniform(low=-scale, high=scale)


def mxnet_normal(sigma: float = 0.01) -> Normal:
    return Normal(mean=0.0, std=check.positive("mxnet_normal", "sigma", sigma))


def mxnet_xavier(rnd_type: str = "uniform", factor_type: str = "avg", magnitude: float = 3.0) -> VarianceScaling:
    """``mx.init.Xavier``: U(+-sqrt(magnitude / n)) or N(0, magnitude / n), n by factor_type.
    So scale = magnitude / 3 (uniform) or magnitude (gaussian); default Xavier() is Glorot-uniform."""
    modes = {"avg": "fan_avg", "in": "fan_in", "out": "fan_out"}
    magnitude = check.positive("mxnet_xavier", "magnitude", magnitude)
    if not isinstance(factor_type, str) or factor_type not in modes:
        raise SpecError(f"mxnet_xavier: unknown factor_type {factor_type!r}; expected avg, in or out")
    if rnd_type == "uniform":
        return VarianceScaling(scale=magnitude / 3.0, mode=modes[factor_type], distribution="uniform")
    if rnd_type == "gaussian":
        return VarianceScaling(scale=magnitude, mode=modes[factor_type], distribution="normal")
    raise SpecError(f"mxnet_xavier: unknown rnd_type {rnd_type!r}; expected uniform or gaussian")


def mxnet_msra_prelu(factor_type: str = "avg", slope: float = 0.25) -> VarianceScaling:
    """``mx.init.MSRAPrelu``: Xavier gaussian with magnitude 2 / (1 + slope^2); default factor avg."""
    slope = check.real("mxnet_msra_prelu", "slope", slope)
    magnitude = 2.0 / (1 + slope * slope)
    if magnitude == 0.0:
        raise SpecError(f"mxnet_msra_prelu: slope={slope!r} gives magnitude 2 / (1 + slope^2) = 0")
    return mxnet_xavier("gaussian", factor_type, magnitude)
