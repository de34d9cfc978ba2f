"""The gain table of torch ``nn.init.calculate_gain``, in pure Python.

A gain g maps to variance scaling as ``scale = g**2``: He's ReLU gain sqrt(2) is scale 2.
"""

from __future__ import annotations

import math
from typing import Optional

from polyinit._validate import real
from polyinit.errors import SpecError

_UNIT_GAIN = (
    "linear",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "sigmoid",
)
NONLINEARITIES = _UNIT_GAIN + ("tanh", "relu", "leaky_relu", "selu")


def calculate_gain(nonlinearity: str, param: Optional[float] = None) -> float:
    """The recommended gain for a nonlinearity, equal to torch's table.

    linear/conv*/sigmoid 1, tanh 5/3, relu sqrt(2), leaky_relu sqrt(2 / (1 + a^2)) with slope
    ``a = param`` (0.01 when None), selu 3/4.

    >>> calculate_gain("leaky_relu", 0.2) == math.sqrt(2 / 1.04)
    True
    """
    if nonlinearity in _UNIT_GAIN:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 3.0 / 4
    if nonlinearity == "leaky_relu":
        # The negative slope; a product, not **, so a huge slope gives gain 0 rather than an
        # OverflowError (schemes refuse the resulting zero scale, naming their argument).
        slope = 0.01 if param is None else real("calculate_gain", "param", param)
        return math.sqrt(2.0 / (1 + slope * slope))
    raise SpecError(
        f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; expected one of {', '.join(NONLINEARITIES)}"
    )
