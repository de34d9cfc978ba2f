"""Named schemes, each a one-line factory over the spec (as ``jax.nn.initializers`` does).

The ``*_normal`` schemes are untruncated by default (Glorot's, He's and torch's meaning); pass
``truncated=True`` for the Keras/JAX meaning (cut at +-2 sigma0, variance corrected).
"""

from __future__ import annotations

import math
from typing import Optional

from polyinit import _validate as check
from polyinit.errors import SpecError
from polyinit.gain import calculate_gain
from polyinit.spec import Blocks, Constant, Spec, VarianceScaling


def _normal(owner: str, truncated: bool) -> str:
    return "truncated_normal" if check.boolean(owner, "truncated", truncated) else "normal"


def _gain_squared(owner: str, gain: float) -> float:
    """gain^2, refusing a gain whose square is 0 or overflows (so the error names ``gain``,
    not the derived ``scale``)."""
    value = check.positive(owner, "gain", gain)
    scale = value * value
    if not 0.0 < scale < math.inf:
        raise SpecError(f"{owner}: gain^2 = {scale!r} is not a positive finite number, received gain={gain!r}")
    return scale


def _he_scale(owner: str, a: Optional[float], nonlinearity: str) -> float:
    """calculate_gain(nonlinearity, a)^2, with errors naming ``a``."""
    if a is not None:
        a = check.real(owner, "a", a)
    gain = calculate_gain(nonlinearity, a)
    if gain * gain == 0.0:
        raise SpecError(
            f"{owner}: a={a!r} gives gain sqrt(2 / (1 + a^2)) = {gain!r}, which "
            "squares to 0; use a smaller negative slope"
        )
    return gain * gain


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
    return VarianceScaling(scale=_gain_squared("glorot_uniform", gain), mode="fan_avg", distribution="uniform")


def glorot_normal(gain: float = 1.0, *, truncated: bool = False) -> VarianceScaling:
    """N(0, gain^2 * 2 / (fan_in + fan_out)), torch ``xavier_normal_``; ``truncated=True`` is Keras's."""
    return VarianceScaling(
        scale=_gain_squared("glorot_normal", gain), mode="fan_avg", distribution=_normal("glorot_normal", truncated)
    )


def he_uniform(a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu") -> VarianceScaling:
    """torch ``kaiming_uniform_``: U(+-gain * sqrt(3 / fan)), gain = calculate_gain(nonlinearity, a).

    >>> he_uniform().scale  # gain sqrt(2)
    2.0000000000000004
    """
    return VarianceScaling(scale=_he_scale("he_uniform", a, nonlinearity), mode=mode, distribution="uniform")


def he_normal(
    a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu", *, truncated: bool = False
) -> VarianceScaling:
    """torch ``kaiming_normal_``: N(0, gain^2 / fan); ``truncated=True`` is Keras/JAX ``he_normal``."""
    return VarianceScaling(
        scale=_he_scale("he_normal", a, nonlinearity), mode=mode, distribution=_normal("he_normal", truncated)
    )


def lecun_uniform() -> VarianceScaling:
    """U(+-sqrt(3 / fan_in))."""
    return VarianceScaling(scale=1.0, mode="fan_in", distribution="uniform")


def lecun_normal(*, truncated: bool = False) -> VarianceScaling:
    """N(0, 1 / fan_in); ``truncated=True`` is Keras/JAX/Flax ``lecun_normal``."""
    return VarianceScaling(scale=1.0, mode="fan_in", distribution=_normal("lecun_normal", truncated))


def lstm_bias(forget_bias: float = 1.0, *, gate_order: str = "ifgo", base: Optional[Spec] = None) -> Blocks:
    """A gate-stacked bias with ``forget_bias`` on the forget block and ``base`` (zeros) elsewhere.

    Keras ``unit_forget_bias`` and MXNet ``LSTMBias`` use order "ifgo" (i, f, c, o); Haiku "igfo".

    >>> lstm_bias().parts[1]
    Constant(value=1.0)
    """
    if not isinstance(gate_order, str) or sorted(gate_order) != sorted("ifgo"):
        raise SpecError(f"lstm_bias: gate_order must be a permutation of 'ifgo', received {gate_order!r}")
    forget = Constant(value=check.real("lstm_bias", "forget_bias", forget_bias))
    base = zeros() if base is None else base
    if not isinstance(base, Spec):
        raise SpecError(f"lstm_bias: base must be a spec, received base={base!r}")
    return Blocks(axis="out", parts=tuple(forget if g == "f" else base for g in gate_order))


def lstm_kernel(*, i: Spec, f: Spec, g: Spec, o: Spec, gate_order: str = "ifgo") -> Blocks:
    """A gate-stacked kernel with one spec per gate block, stacked along the output axis."""
    if not isinstance(gate_order, str) or sorted(gate_order) != sorted("ifgo"):
        raise SpecError(f"lstm_kernel: gate_order must be a permutation of 'ifgo', received {gate_order!r}")
    by_gate = {"i": i, "f": f, "g": g, "o": o}
    return Blocks(axis="out", parts=tuple(by_gate[gate] for gate in gate_order))


# The names the frameworks use for the same schemes.
xavier_uniform = glorot_uniform
xavier_normal = glorot_normal
kaiming_uniform = he_uniform
kaiming_normal = he_normal
