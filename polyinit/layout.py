"""Axes by meaning, and the fans that follow from shape + layout.

A layout names the role of each axis of a parameter: ``out`` (output units), ``in`` (input units),
``spatial`` (receptive field, counted into both fans), ``batch`` (independent copies, counted into
neither). ``*`` stands for as many ``spatial`` axes as the rank leaves over, so one preset serves
dense and conv weights alike::

    OUT_IN = Layout("out in *")   # torch, MXNet: (out, in, *k)
    IN_OUT = Layout("* in out")   # Keras, Flax, JAX, Haiku: (*k, in, out)

    fan_in  = prod(in axes)  * prod(spatial axes)
    fan_out = prod(out axes) * prod(spatial axes)

Policy for small ranks: a rank-1 tensor is a vector of outputs (a bias) and a rank-0 tensor has no
axes; neither has both an ``in`` and an ``out`` axis, so schemes that need fans raise a
``ShapeError`` on them, while schemes that need none (constants, uniform, normal, ...) work.
A tensor with a zero-size dimension has no elements: every scheme resolves to an empty draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from polyinit.errors import ShapeError, SpecError

ROLES = ("out", "in", "spatial", "batch")


@dataclass(frozen=True)
class Fans:
    """Fans of one parameter: ``fan_in = in * receptive``, ``fan_out = out * receptive``."""

    fan_in: int
    fan_out: int
    receptive: int


@dataclass(frozen=True)
class Layout:
    """The role of each axis, as a pattern of ``out``, ``in``, ``spatial``, ``batch`` and ``*``.

    >>> Layout("out in *").roles(4)
    ('out', 'in', 'spatial', 'spatial')
    >>> Layout("in out out").roles(3)   # an attention kernel (d_model, heads, head_dim)
    ('in', 'out', 'out')
    """

    pattern: str

    def __post_init__(self):
        if not isinstance(self.pattern, str):
            raise SpecError(f"Layout: pattern must be a string, received pattern={self.pattern!r}")
        tokens = self.pattern.split()
        unknown = [t for t in tokens if t not in ROLES + ("*",)]
        if unknown or tokens.count("*") > 1 or not tokens:
            raise SpecError(
                f"Layout: pattern {self.pattern!r} must be words from {', '.join(ROLES)} with at most one '*'"
            )

    def roles(self, rank: int) -> tuple[str, ...]:
        """The role of each of ``rank`` axes; rank 1 is a bias ('out',), rank 0 has none."""
        tokens = self.pattern.split()
        if "*" in tokens:
            named = len(tokens) - 1
            if rank >= named:
                star = tokens.index("*")
                return tuple(tokens[:star]) + ("spatial",) * (rank - named) + tuple(tokens[star + 1 :])
        elif rank == len(tokens):
            return tuple(tokens)
        if rank == 1:
            return ("out",)
        if rank == 0:
            return ()
        raise ShapeError(f"layout {self.pattern!r} does not fit a rank-{rank} tensor")

    def axes_with(self, role: str, rank: int) -> tuple[int, ...]:
        return tuple(i for i, r in enumerate(self.roles(rank)) if r == role)

    def __str__(self) -> str:
        return self.pattern


OUT_IN = Layout("out in *")
IN_OUT = Layout("* in out")


def compute_fans(shape: Sequence[int], layout: Layout | None) -> Fans:
    """Fans of a tensor of ``shape`` laid out as ``layout``.

    >>> compute_fans((256, 784), OUT_IN)           # torch Linear(784, 256)
    Fans(fan_in=784, fan_out=256, receptive=1)
    >>> compute_fans((3, 3, 16, 32), IN_OUT)       # Keras Conv2D(32, 3) on 16 channels
    Fans(fan_in=144, fan_out=288, receptive=9)
    """
    from polyinit import _validate as check

    shape = check.shape("compute_fans", shape)
    layout = check.layout("compute_fans", layout)
    if layout is None:
        raise ShapeError(
            f"this scheme needs fans, so it needs a layout: shape {shape} has none; "
            "pass layout=polyinit.OUT_IN (torch, MXNet) or polyinit.IN_OUT (Keras, Flax)"
        )
    roles = layout.roles(len(shape))
    # An input side (in or receptive-field axes) and an output side: a depthwise kernel has no
    # 'in' axis but its receptive field is its fan-in.
    if "out" not in roles or not {"in", "spatial"} & set(roles):
        raise ShapeError(
            f"this scheme needs fans, but shape {shape} under layout {layout.pattern!r} "
            f"has roles {roles}, without an 'out' axis and an 'in' or spatial axis "
            "(rank-0/1 tensors such as biases have no fans; use a scheme without fans)"
        )

    def size(role: str) -> int:
        return math.prod(n for n, r in zip(shape, roles) if r == role)

    receptive = size("spatial")
    return Fans(fan_in=size("in") * receptive, fan_out=size("out") * receptive, receptive=receptive)


def preset(framework: str, kind: str, *, native: bool = True) -> Layout:
    """The layout of a ``kind`` weight in ``framework`` (each framework's presets live in its
    record, ``polyinit/frameworks/<name>.py``).

    ``native=True`` reproduces the framework's own fan convention (torch and Keras take the
    output-channel axis of a transposed conv as "in"); ``native=False`` follows the data flow.

    >>> preset("torch", "conv_transpose").pattern, preset("torch", "conv_transpose", native=False).pattern
    ('out in *', 'in out *')
    """
    # Imported here, not at the top: polyinit.frameworks imports this module for Layout.
    from polyinit.frameworks import preset as framework_preset

    return framework_preset(framework, kind, native=native)
