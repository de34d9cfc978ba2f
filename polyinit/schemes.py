"""Named schemes, each a one-line factory over the spec (as ``jax.nn.initializers`` does).

The ``*_normal`` schemes are untruncated by default (Glorot's, He's and torch's meaning); pass
``truncated=True`` for the Keras/JAX meaning (cut at +-2 sigma0, variance corrected).
"""

from __future__ import annotations

from typing import Optional

from polyinit.gain import calculate_gain
from polyinit.spec import Blocks, Constant, Spec, VarianceScaling
from polyinit.errors import SpecError


def _normal(truncated: bool) -> str:
    if not isinstance(truncated, bool):
        raise SpecError(f"truncated must be a bool, received truncated={truncated!r}")
    return "truncated_normal" if truncated else "normal"


def constant(value: float) -> Constant:
    """Every element is ``value``.

    >>> constant(0.5)
    Constant(value=0.5)
    """
    return Constant(value=value)


def zeros() -> Constant:
    """All zeros (biases in Keras, Flax, MXNet)."""
    return Constant(value=0.0)


def ones() -> Constant:
    """All ones (norm-layer scales)."""
    return Constant(value=1.0)


def glorot_uniform(gain: float = 1.0) -> VarianceScaling:
    """U(+-gain * sqrt(6 / (fan_in + fan_out))): Var = gain^2 * 2 / (fan_in + fan_out).

    >>> glorot_uniform()
    VarianceScaling(scale=1.0, mode='fan_avg', distribution='uniform', stream=0)
    """
    return VarianceScaling(scale=_gain_squared(gain), mode="fan_avg", distribution="uniform")


def glorot_normal(gain: float = 1.0, *, truncated: bool = False) -> VarianceScaling:
    """N(0, gain^2 * 2 / (fan_in + fan_out)), torch ``xavier_normal_``; ``truncated=True`` is Keras's."""
    return VarianceScaling(scale=_gain_squared(gain), mode="fan_avg", distribution=_normal(truncated))


def he_uniform(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> VarianceScaling:
    """torch ``kaiming_uniform_``: U(+-gain * sqrt(3 / fan)), gain = calculate_gain(nonlinearity, a).

    >>> he_uniform().scale  # gain sqrt(2)
    2.0000000000000004
    """
    return VarianceScaling(scale=calculate_gain(nonlinearity, a) ** 2, mode=_torch_mode(mode),
                           distribution="uniform")


def he_normal(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *,
              truncated: bool = False) -> VarianceScaling:
    """torch ``kaiming_normal_``: N(0, gain^2 / fan); ``truncated=True`` is Keras/JAX ``he_normal``."""
    return VarianceScaling(scale=calculate_gain(nonlinearity, a) ** 2, mode=_torch_mode(mode),
                           distribution=_normal(truncated))


def lecun_uniform() -> VarianceScaling:
    """U(+-sqrt(3 / fan_in))."""
    return VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform")


def lecun_normal(*, truncated: bool = False) -> VarianceScaling:
    """N(0, 1 / fan_in); ``truncated=True`` is Keras/JAX/Flax ``lecun_normal``."""
    return VarianceScaling(scale=1.0, mode="fan_in", distribution=_normal(truncated))


def lstm_bias(forget_bias: float = 1.0, *, gate_order: str = "ifgo", base: Optional[Spec] = None) -> Blocks:
    """A gate-stacked bias with ``forget_bias`` on the forget block and ``base`` (zeros) elsewhere.

    Keras ``unit_forget_bias`` and MXNet ``LSTMBias`` use order "ifgo" (i, f, c, o); Haiku "igfo".

    >>> lstm_bias().parts[1]
    Constant(value=1.0)
    """
    if sorted(gate_order) != sorted("ifgo"):
        raise SpecError(f"lstm_bias: gate_order must be a permutation of 'ifgo', received {gate_order!r}")
    base = zeros() if base is None else base
    return Blocks(axis="out", parts=tuple(constant(forget_bias) if g == "f" else base for g in gate_order))


def lstm_kernel(*, i: Spec, f: Spec, g: Spec, o: Spec, gate_order: str = "ifgo") -> Blocks:
    """A gate-stacked kernel with one spec per gate block, stacked along the output axis."""
    if sorted(gate_order) != sorted("ifgo"):
        raise SpecError(f"lstm_kernel: gate_order must be a permutation of 'ifgo', received {gate_order!r}")
    by_gate = {"i": i, "f": f, "g": g, "o": o}
    return Blocks(axis="out", parts=tuple(by_gate[gate] for gate in gate_order))


def _gain_squared(gain: float) -> float:
    from polyinit import _validate

    return _validate.real("gain", "gain", gain) ** 2


def _torch_mode(mode: str) -> str:
    if mode not in ("fan_in", "fan_out", "fan_avg", "fan_geo_avg"):
        raise SpecError(f"unknown mode {mode!r}; expected 'fan_in', 'fan_out', 'fan_avg' or 'fan_geo_avg'")
    return mode


# The names the frameworks use for the same schemes.
xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal
