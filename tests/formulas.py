"""Fans by the frameworks' own documented rules, written out independently of polyinit."""

import math


def torch_fans(shape):
    """torch _calculate_fan_in_and_fan_out: dim 1 in, dim 0 out, the rest receptive field."""
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def keras_fans(shape):
    """keras compute_fans (rank >= 2): second-last in, last out, the leading axes receptive field."""
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive
