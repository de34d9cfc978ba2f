"""The logical order of a parameter's axes, the same in every framework.

torch stores a dense weight as (out, in) and Keras as (in, out); a conv kernel is (out, in, *k)
in torch and MXNet, (*k, in, out) in Keras and Flax. Their logical order is the same: output
axes, then input axes, then the receptive field (spatial axes, in order), then batch axes. A
layout (``polyinit.layout.Layout``) names each physical axis's role, so the permutation between
the two is read off it, never guessed from the shape:

    logical = physical.transpose(to_logical(layout, rank))
    physical = logical.transpose(from_logical(layout, rank))

Portable draws fill the logical order, so the same (seed, key) gives the same logical weights in
every framework, and ``polyinit.transfer`` copies weights through it.

>>> from polyinit.layout import IN_OUT, OUT_IN
>>> to_logical(IN_OUT, 4)      # Keras conv kernel (kh, kw, in, out) -> (out, in, kh, kw)
(3, 2, 0, 1)
>>> to_logical(OUT_IN, 4)
(0, 1, 2, 3)
"""

from __future__ import annotations

from typing import Optional

from polyinit.layout import Layout

_ORDER = {"out": 0, "in": 1, "spatial": 2, "batch": 3}


def to_logical(layout: Optional[Layout], rank: int) -> tuple[int, ...]:
    """The permutation taking a physical tensor laid out as ``layout`` to the logical order
    (out, in, spatial..., batch...), stable within a role. No layout: the identity."""
    if layout is None or rank < 2:
        return tuple(range(rank))
    roles = layout.roles(rank)
    return tuple(sorted(range(rank), key=lambda axis: (_ORDER[roles[axis]], axis)))


def from_logical(layout: Optional[Layout], rank: int) -> tuple[int, ...]:
    """The inverse of ``to_logical``: logical order back to the physical layout."""
    forward = to_logical(layout, rank)
    inverse = [0] * rank
    for logical_axis, physical_axis in enumerate(forward):
        inverse[physical_axis] = logical_axis
    return tuple(inverse)


def logical_shape(shape: tuple[int, ...], layout: Optional[Layout]) -> tuple[int, ...]:
    """``shape`` in the logical order.

    >>> from polyinit.layout import IN_OUT
    >>> logical_shape((3, 3, 16, 32), IN_OUT)
    (32, 16, 3, 3)
    """
    return tuple(shape[axis] for axis in to_logical(layout, len(shape)))
