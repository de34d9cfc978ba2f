"""The portable record of one model parameter, and the module-type entries walkers read.

A leaf module: it imports nothing from polyinit but the error family and ``Layout``, so walkers
(``polyinit.frameworks``) and rules (``polyinit.rules``) both import it and never each other.

Every walker turns a model into a list of :class:`Param` in **declaration order** (torch
registration order, Keras layer order, nnx attribute order, linen module order, Gluon child
order). A record says what a parameter *means*: a dense layer's weight, which axes are inputs and
outputs, the how-manieth layer it belongs to, which other paths share it.

Some frameworks store one logical parameter as several tensors: nnx's and linen's ``LSTMCell``
keep one kernel per gate, torch and Gluon add two bias vectors (``b_ih + b_hh``) where Keras keeps
one. Each such tensor's record names its :class:`Part` of the logical parameter, and
:func:`logical_params` collapses a record list into one :class:`LogicalParam` per logical
parameter. The same architecture in any framework yields the same sequence of logical
``(layer, kind, role, shape)`` (shape read in one axis order, ``polyinit.logical``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from polyinit.errors import PolyinitError
from polyinit.layout import Fans, Layout

COMBINES = ("stack", "sum")
KINDS = ("dense", "conv", "conv_transpose", "embedding", "norm", "recurrent", "attention", "other")
ROLES = ("weight", "bias", "scale", "offset", "recurrent", "embedding", "running_mean", "running_var", "other")
FANS = ("native", "semantic")


class RuleError(PolyinitError):
    """A rule set cannot be applied as written (unmatched rule, unmatched parameter, bad shape)."""


class ModelError(RuleError):
    """The model cannot be initialised as it is (meta device, deferred shape, inference tensor...)."""


@dataclass(frozen=True)
class Part:
    """A tensor that is one part of a logical parameter made of several tensors.

    ``group``: the logical parameter's name, unique in the model (the owning layer's key and a
    name: ``"rnn/cell/weight"``). ``combine``: how the parts make the logical value:

    * ``"stack"``: part ``index`` is block ``index`` of a new leading ``batch`` axis,
      ``logical = stack([part_0, ..., part_{n-1}])`` of shape ``(n, *part.logical_shape)``
      (nnx's per-gate kernels ``ii, if_, ig, io`` are the (4, in, H) input kernel);
    * ``"sum"``: ``logical = part_0 + ... + part_{n-1}``, all of one shape (torch's LSTM adds
      ``bias_ih + bias_hh`` to every gate: one effective bias). ``index`` only orders the parts.

    In a :class:`ParamType`, ``group`` is relative: the walker prefixes it with the layer's key.

    >>> Part("rnn/cell/weight", "stack", 1)
    Part(group='rnn/cell/weight', combine='stack', index=1)
    """

    group: str
    combine: str
    index: int = 0

    def __post_init__(self):
        if self.combine not in COMBINES:
            raise RuleError(f"Part: combine must be one of {COMBINES}, received combine={self.combine!r}")
        if not isinstance(self.index, int) or self.index < 0:
            raise RuleError(f"Part: index must be a non-negative int, received index={self.index!r}")


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
    ``part``: the :class:`Part` of a logical parameter this tensor is, or None where the tensor is
    a whole parameter (rules still match and draw each tensor on its own). ``packs``: the logical
    parameters packed in the tensor, one per block of its logical view's leading ``batch`` axis
    (``("q", "k", "v")`` for torch's ``in_proj_weight``, GPT-2's ``c_attn``).

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
    part: Optional[Part] = None
    packs: tuple[str, ...] = ()

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

    def fans(self, fans: str = "native") -> Fans:
        from polyinit.layout import compute_fans

        return compute_fans(*self.target(fans))


@dataclass(frozen=True)
class ParamType:
    """How a module type's parameter is read: its role, native layout, and data-flow view.

    ``semantic``: the layout pattern on the logical shape; ``split``: ``(axis, parts)`` splits real
    axis ``axis`` into ``parts`` blocks as a new leading ``batch`` axis (packed q/k/v: ``(0, 3)``
    for torch's (3E, E) ``in_proj_weight``; ``(1, 3)`` for GPT-2's (E, 3E) ``c_attn``; the four
    gates of torch's (4H, in) ``weight_ih_l0``: ``(0, 4)``). ``part``: the :class:`Part` of a
    logical parameter the tensor is, its ``group`` relative to the layer. ``packs``: the names of
    the logical parameters the ``split`` blocks are, in order (``("q", "k", "v")`` for a packed
    q/k/v, ``("gate", "up")`` for a fused MLP input): each block is then a logical parameter of
    its own (``logical_params``), not a gate of one.
    """

    role: str
    layout: str = "out in *"
    semantic: Optional[str] = None
    split: Optional[tuple[int, int]] = None
    part: Optional[Part] = None
    packs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModuleType:
    """A layer class's kind and its parameters' types (by leaf name; ``*`` for any other leaf).
    Dotted leaf names (``c_attn.weight``) reach into children and override their own entry."""

    kind: str
    params: dict = field(default_factory=dict)


def split_view(
    shape: tuple[int, ...], pattern: str, split: Optional[tuple[int, int]], semantic: Optional[str]
) -> tuple[Optional[tuple[int, ...]], Optional[Layout]]:
    """The logical (shape, layout) of a parameter whose real axis ``split[0]`` holds ``split[1]``
    equal blocks: the axis becomes (parts, size / parts), the blocks a ``batch`` axis."""
    if split is None:
        return None, Layout(semantic) if semantic else None
    axis, parts = split
    if len(shape) <= axis or shape[axis] % parts:
        return None, Layout(semantic) if semantic else None
    logical = shape[:axis] + (parts, shape[axis] // parts) + shape[axis + 1 :]
    if semantic is None:
        roles = Layout(pattern).roles(len(shape))
        semantic = " ".join(roles[:axis] + ("batch",) + roles[axis:])
    return logical, Layout(semantic)


def grouped_view(
    shape: tuple[int, ...], roles: tuple[str, ...], axis: int, groups: int, data_flow: dict
) -> tuple[Optional[tuple[int, ...]], Optional[Layout]]:
    """A grouped conv weight as (groups, ...) blocks: ``axis`` (the axis that holds all groups'
    channels) splits into (groups, size / groups); ``data_flow`` renames roles (transposed convs)."""
    roles = tuple(data_flow.get(r, r) for r in roles)
    if groups <= 1 or shape[axis] % groups:
        return (None, Layout(" ".join(roles))) if data_flow else (None, None)
    logical = shape[:axis] + (groups, shape[axis] // groups) + shape[axis + 1 :]
    return logical, Layout(" ".join(roles[:axis] + ("batch",) + roles[axis:]))


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


# --- logical parameters made of several tensors ----------------------------------------------


@dataclass(frozen=True)
class LogicalParam:
    """One logical parameter: a whole tensor's record, or the parts of a :class:`Part` group.

    ``path``: the tensor's path, or the group's name. ``shape`` / ``layout``: the logical shape and
    its semantic layout (a stack adds a leading ``batch`` axis to its parts'). ``combine``:
    ``""`` (one tensor), ``"stack"`` or ``"sum"``. ``parts``: the records, in part order.
    ``packed``: ``(axis, index, name)`` where the parameter is block ``index`` of the ``batch``
    axis ``axis`` of one tensor's logical view (q of a packed q/k/v: ``(0, 0, "q")``); its path is
    then ``"<tensor path>#q"``. ``identity``: its semantic identity (``polyinit.identity``), filled
    in by whoever computes it."""

    path: str
    kind: str
    role: str
    layer: int
    shape: tuple[int, ...]
    layout: Layout
    combine: str = ""
    parts: tuple[Param, ...] = ()
    packed: Optional[tuple[int, int, str]] = None
    identity: str = ""

    def fans(self) -> Fans:
        from polyinit.layout import compute_fans

        return compute_fans(self.shape, self.layout)


def logical_params(params: list[Param]) -> list[LogicalParam]:
    """Collapse walker records into one record per logical parameter, in declaration order (a
    group stands where its first part was declared).

    A stack of ``n`` parts of logical shape ``s`` and roles ``r`` is shape ``(n, *s)``, layout
    ``batch r``; a sum of parts of shape ``s`` is shape ``s``. Parts must agree on layer, kind,
    role, combine and logical shape and roles, and a stack's indexes must be ``0 .. n-1``;
    otherwise a RuleError names the group.

    >>> w = [Param(f"cell/i{g}/kernel", "recurrent", "weight", (6, 8), Layout("in out"), 0,
    ...            part=Part("cell/weight", "stack", i)) for i, g in enumerate("ifgo")]
    >>> b = [Param(f"lstm.bias_{s}_l0", "recurrent", "bias", (32,), Layout("out"), 0,
    ...            logical=(4, 8), semantic=Layout("batch out"), part=Part("lstm.bias_l0", "sum", i))
    ...      for i, s in enumerate(("ih", "hh"))]
    >>> [(p.path, p.shape, p.layout.pattern, p.combine) for p in logical_params(w + b)]
    [('cell/weight', (4, 6, 8), 'batch in out', 'stack'), ('lstm.bias_l0', (4, 8), 'batch out', 'sum')]
    """
    order: list = []  # a Param (whole) or a group name, at its first declaration
    groups: dict[str, list[Param]] = {}
    for param in params:
        if param.part is None:
            order.append(param)
            continue
        if param.part.group not in groups:
            groups[param.part.group] = []
            order.append(param.part.group)
        groups[param.part.group].append(param)
    out = []
    for item in order:
        if isinstance(item, Param) and item.packs:
            out += _unpack(item)
        elif isinstance(item, Param):
            out.append(
                LogicalParam(
                    item.path, item.kind, item.role, item.layer, item.logical_shape, item.semantic_layout, "", (item,)
                )
            )
        else:
            out.append(_combine(item, sorted(groups[item], key=lambda p: _part(p).index)))
    return out


def _part(param: Param) -> Part:
    """``param.part``, for a param that logical_params grouped (so it has one)."""
    assert param.part is not None  # only params with a Part are grouped
    return param.part


def _combine(group: str, parts: list[Param]) -> LogicalParam:
    first = parts[0]
    roles = first.semantic_layout.roles(len(first.logical_shape))
    signature = (first.layer, first.kind, first.role, _part(first).combine, first.logical_shape, roles)
    for p in parts[1:]:
        if (
            p.layer,
            p.kind,
            p.role,
            _part(p).combine,
            p.logical_shape,
            p.semantic_layout.roles(len(p.logical_shape)),
        ) != signature:
            raise RuleError(
                f"logical_params: parts of {group!r} disagree: {first.path!r} is "
                f"{signature[:5]} and {p.path!r} is "
                f"{(p.layer, p.kind, p.role, _part(p).combine, p.logical_shape)}"
            )
    combine = _part(first).combine
    if combine == "stack":
        indexes = [_part(p).index for p in parts]
        if indexes != list(range(len(parts))):
            raise RuleError(
                f"logical_params: stack {group!r} has part indexes {indexes}, expected "
                f"0..{len(parts) - 1} ({', '.join(p.path for p in parts)})"
            )
        shape, layout = (len(parts),) + first.logical_shape, Layout(" ".join(("batch",) + roles))
    else:
        shape, layout = first.logical_shape, Layout(" ".join(roles) or "out")
    return LogicalParam(group, first.kind, first.role, first.layer, shape, layout, combine, tuple(parts))


def _unpack(param: Param) -> list[LogicalParam]:
    """One LogicalParam per block of a packed tensor: the logical view's ``batch`` axis that holds
    ``len(param.packs)`` blocks is dropped from each block's shape and layout."""
    shape, roles = param.logical_shape, param.semantic_layout.roles(len(param.logical_shape))
    axes = [i for i, (size, role) in enumerate(zip(shape, roles)) if role == "batch" and size == len(param.packs)]
    if not axes:
        raise RuleError(
            f"logical_params: {param.path!r} packs {param.packs} but its logical view {shape} "
            f"({' '.join(roles)}) has no batch axis of {len(param.packs)} blocks"
        )
    axis = axes[0]
    inner = shape[:axis] + shape[axis + 1 :]
    layout = Layout(" ".join(roles[:axis] + roles[axis + 1 :]) or "out")
    return [
        LogicalParam(
            f"{param.path}#{name}",
            param.kind,
            param.role,
            param.layer,
            inner,
            layout,
            "",
            (param,),
            (axis, index, name),
        )
        for index, name in enumerate(param.packs)
    ]
