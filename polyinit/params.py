"""The portable record of one model parameter, and the module-type entries walkers read.

A leaf module: it imports nothing from polyinit but the error family and ``Layout``, so walkers
(``polyinit.frameworks``) and rules (``polyinit.rules``) both import it and never each other.

Every walker turns a model into a list of :class:`Param` in **declaration order** (torch
registration order, Keras layer order, nnx attribute order, linen module order, Gluon child
order). A record says what a parameter *means*: a dense layer's weight, which axes are inputs and
outputs, the how-manieth layer it belongs to, which other paths share it. The same architecture in
any framework yields the same sequence of ``(kind, role, logical_shape)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from polyinit.errors import PolyinitError
from polyinit.layout import Layout

KINDS = ("dense", "conv", "conv_transpose", "embedding", "norm", "recurrent", "attention", "other")
ROLES = ("weight", "bias", "scale", "offset", "recurrent", "embedding", "running_mean", "running_var", "other")
FANS = ("native", "semantic")


class RuleError(PolyinitError):
    """A rule set cannot be applied as written (unmatched rule, unmatched parameter, bad shape)."""


class ModelError(RuleError):
    """The model cannot be initialised as it is (meta device, deferred shape, inference tensor...)."""


@dataclass(frozen=True)
class Param:
    """One parameter of a model, described portably.

    ``path``: the framework's own path. ``kind`` / ``role``: what the owning layer is and what the
    parameter does in it (``KINDS``, ``ROLES``). ``shape`` / ``layout``: the real shape, with the
    framework's own fan convention. ``logical_shape`` / ``semantic_layout``: the same values seen
    by the data flow (a C-order reshape of the real tensor: packed q/k/v as 3 blocks, groups as a
    batch axis), used under ``apply(..., fans="semantic")``. ``layer``: position of the owning
    layer among layers with parameters, in declaration order; ``kind_position``: the same among
    layers of its kind. ``layer_path`` / ``module_type``: the owning layer and its class's import
    path. ``key``: the stable seed key (no framework auto-numbering). ``aliases``: other paths of
    the same (tied) tensor. ``trainable``, ``dtype``, ``device`` as the framework reports them.

    >>> p = Param("0.weight", "dense", "weight", (8, 4), Layout("out in"), 0)
    >>> p.fans("native").fan_in, p.logical_shape
    (4, (8, 4))
    """

    path: str
    kind: str
    role: str
    shape: tuple[int, ...]
    layout: Layout
    layer: int
    dtype: str = "float32"
    layer_path: str = ""
    module_type: str = ""
    kind_position: int = 0
    key: str = ""
    aliases: tuple[str, ...] = ()
    trainable: bool = True
    device: str = "cpu"
    logical: Optional[tuple[int, ...]] = field(default=None, repr=False)
    semantic: Optional[Layout] = field(default=None, repr=False)

    @property
    def logical_shape(self) -> tuple[int, ...]:
        return self.shape if self.logical is None else self.logical

    @property
    def semantic_layout(self) -> Layout:
        return self.layout if self.semantic is None else self.semantic

    def target(self, fans: str) -> tuple[tuple[int, ...], Layout]:
        """(shape, layout) a plan is resolved against under the fan convention ``fans``."""
        if fans == "native":
            return self.shape, self.layout
        return self.logical_shape, self.semantic_layout

    def fans(self, fans: str = "native"):
        from polyinit.layout import compute_fans

        return compute_fans(*self.target(fans))


@dataclass(frozen=True)
class ParamType:
    """How a module type's parameter is read: its role, native layout, and data-flow view.

    ``semantic``: the layout pattern on the logical shape; ``split``: ``(axis, parts)`` splits real
    axis ``axis`` into ``parts`` blocks as a new leading ``batch`` axis (packed q/k/v: ``(0, 3)``
    for torch's (3E, E) ``in_proj_weight``; ``(1, 3)`` for GPT-2's (E, 3E) ``c_attn``).
    """

    role: str
    layout: str = "out in *"
    semantic: Optional[str] = None
    split: Optional[tuple[int, int]] = None


@dataclass(frozen=True)
class ModuleType:
    """A layer class's kind and its parameters' types (by leaf name; ``*`` for any other leaf).
    Dotted leaf names (``c_attn.weight``) reach into children and override their own entry."""

    kind: str
    params: dict = field(default_factory=dict)


def split_view(shape: tuple[int, ...], pattern: str, split: Optional[tuple[int, int]],
               semantic: Optional[str]) -> tuple[Optional[tuple[int, ...]], Optional[Layout]]:
    """The logical (shape, layout) of a parameter whose real axis ``split[0]`` holds ``split[1]``
    equal blocks: the axis becomes (parts, size / parts), the blocks a ``batch`` axis."""
    if split is None:
        return None, Layout(semantic) if semantic else None
    axis, parts = split
    if len(shape) <= axis or shape[axis] % parts:
        return None, Layout(semantic) if semantic else None
    logical = shape[:axis] + (parts, shape[axis] // parts) + shape[axis + 1:]
    if semantic is None:
        roles = Layout(pattern).roles(len(shape))
        semantic = " ".join(roles[:axis] + ("batch",) + roles[axis:])
    return logical, Layout(semantic)


def grouped_view(shape: tuple[int, ...], roles: tuple[str, ...], axis: int, groups: int,
                 data_flow: dict) -> tuple[Optional[tuple[int, ...]], Optional[Layout]]:
    """A grouped conv weight as (groups, ...) blocks: ``axis`` (the axis that holds all groups'
    channels) splits into (groups, size / groups); ``data_flow`` renames roles (transposed convs)."""
    roles = tuple(data_flow.get(r, r) for r in roles)
    if groups <= 1 or shape[axis] % groups:
        return (None, Layout(" ".join(roles))) if data_flow else (None, None)
    logical = shape[:axis] + (groups, shape[axis] // groups) + shape[axis + 1:]
    return logical, Layout(" ".join(roles[:axis] + ("batch",) + roles[axis:]))


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)
