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

from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Optional, TypeAlias, Union

from polyinit.layout import Layout

if TYPE_CHECKING:  # typing only: params and rules import this module's neighbours at run time
    from polyinit.params import Param
    from polyinit.plan import Plan
    from polyinit.rules import Rules

# Values of whichever framework draws (numpy, torch, jax or a Keras backend's tensor): the
# framework is picked at run time, so there is no narrower static type.
Array: TypeAlias = Any
# A backend module (polyinit.backends.numpy, .torch, ...): its draw_portable is outside the Backend protocol.
BackendModule: TypeAlias = Any

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
    return inverse(to_logical(layout, rank))


def inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation that undoes ``perm`` (``transpose(transpose(x, perm), inverse(perm)) == x``)."""
    undo = [0] * len(perm)
    for i, axis in enumerate(perm):
        undo[axis] = i
    return tuple(undo)


def logical_shape(shape: tuple[int, ...], layout: Optional[Layout]) -> tuple[int, ...]:
    """``shape`` in the logical order.

    >>> from polyinit.layout import IN_OUT
    >>> logical_shape((3, 3, 16, 32), IN_OUT)
    (32, 16, 3, 3)
    """
    return tuple(shape[axis] for axis in to_logical(layout, len(shape)))


# --- portable draws of whole models -----------------------------------------------------------


def canonical_order(
    param: Param | SimpleNamespace, shape: tuple[int, ...], layout: Optional[Layout]
) -> tuple[int, ...]:
    """The permutation into the order portable draws fill: logical (out, in, spatial, batch),
    except embeddings, which every framework stores as (num, dim) already."""
    if param.kind == "embedding":
        return tuple(range(len(shape)))
    return to_logical(layout, len(shape))


def positional_key(param: Param, ordinal: int) -> str:
    """A key from the owning layer's position in declaration order, the role, and the
    parameter's rank among that layer's parameters of that role (``"3.weight.0"``): the keys of
    ``Rules(key=positional)``."""
    return f"{param.layer}.{param.role}.{ordinal}"


def positional(param: Param) -> str:
    """``Rules(key=positional)`` keys portable draws by declaration position (``"3.weight.0"``),
    as before identities: for two models whose declaration orders agree but whose sites the
    context cannot read. Outside portable draws it is the record's own key."""
    return param.key


def identity_keys(params: list[Param], model: Any = None) -> dict[str, str | tuple[str, ...]]:
    """{tensor path or Part group: seed key}: the semantic identity of the logical parameter
    (``polyinit.identity``, read from ``model``'s context where given); a packed tensor maps to its
    blocks' identities, in block order."""
    from polyinit.identity import identified

    keys: dict = {}
    for lp in identified(params, model):
        if lp.packed is not None:
            keys[lp.parts[0].path] = keys.get(lp.parts[0].path, ()) + (lp.identity,)
        elif lp.combine:
            keys[lp.path] = lp.identity
        else:
            keys[lp.parts[0].path] = lp.identity
    return keys


def portable_draws(walker: Any, planned: list, rules: Rules, model: Any = None) -> list[tuple[Param, Pending | None]]:
    """(param, native values or None) for every planned parameter, drawn by the portable
    generator in the canonical order and laid out as the framework stores the parameter.

    Each logical parameter's key is its semantic identity (``"3.attn.q.weight"``,
    ``polyinit.identity``), so two implementations of one architecture get the same values
    whatever their declaration order or names; ``Rules(key=fn)`` gives the keys instead
    (``Rules(key=positional)``: declaration positions).

    A tensor that packs several logical parameters (torch's ``in_proj_weight``, GPT-2's
    ``c_attn``) is drawn block by block, each block under its own identity, and packed, when its
    plan is resolved on the logical view (``fans="semantic"``, the portable default): it then
    equals three separate q, k, v projections. A logical parameter stored as several tensors
    (``params.Part``) is drawn once, as a whole, when every part has the same plan: a stack (nnx's
    per-gate kernels) as one tensor with a leading ``batch`` axis, in the canonical order of that
    whole, so that it equals the packed tensor of another framework (torch's ``weight_ih_l0``)
    drawn under ``fans="semantic"``; a sum (torch's ``bias_ih + bias_hh``) as one value, written to
    the first part with zeros in the others, so that the effective bias equals the single bias of
    another framework. Parts whose rules give different plans are drawn one by one."""
    from polyinit.backends import get_backend
    from polyinit.frameworks import get_framework
    from polyinit.rules import _user_key

    backend_name = get_framework(walker.name).backend
    assert backend_name is not None  # every framework with a walker names its backend
    backend = get_backend(backend_name)
    wholes = _whole_groups(planned)
    by_position = rules.key is positional
    identities = identity_keys([param for param, _, _ in planned], model) if rules.key is None else {}
    counts: dict[tuple, int] = {}
    group_draws: dict[str, _GroupDraw] = {}
    drawn: list[tuple[Param, Pending | None]] = []
    for param, _, plan in planned:
        group = param.part.group if param.part is not None and param.part.group in wholes else None
        if group is not None and group in group_draws:  # a later part of a group drawn whole
            drawn.append((param, _PartPending(group_draws[group], param.part.index, param.shape)))
            continue
        ordinal = counts.setdefault((param.layer, param.role), 0)
        counts[(param.layer, param.role)] += 1
        if plan is None:
            drawn.append((param, None))
            continue
        if by_position:
            key = positional_key(param, ordinal)
        elif rules.key is not None:
            key = _user_key(rules, param)
        else:
            key = identities.get(group or (param.part.group if param.part else param.path), param.key)
        _check(plan, backend, param)
        if isinstance(key, tuple):  # a packed tensor
            if plan.shape == param.logical_shape and param.logical is not None:
                drawn.append((param, _packed_pending(backend, param, plan, rules.seed, key)))
                continue
            key = "+".join(key)  # drawn whole under the tensor's own fans
        if group is not None:
            combine, count = param.part.combine, wholes[group]
            whole = _canonical_pending(backend, param, plan, rules.seed, key, count if combine == "stack" else 0)
            group_draws[group] = _GroupDraw(backend, whole, combine, count)
            drawn.append((param, _PartPending(group_draws[group], param.part.index, param.shape)))
        else:
            drawn.append((param, _canonical_pending(backend, param, plan, rules.seed, key)))
    return drawn


def _packed_pending(
    backend: BackendModule, param: Param, plan: Plan, seed: int, keys: tuple[str, ...]
) -> _PackedPending:
    """Block by block draws of a packed tensor: each block's plan is the tensor's spec resolved on
    the block's shape and layout (the logical view without its packing ``batch`` axis)."""
    from polyinit.plan import resolve

    assert plan.layout is not None  # rules resolve each plan with its Param's layout, never None
    roles = plan.layout.roles(len(plan.shape))
    axis = next(i for i, (size, role) in enumerate(zip(plan.shape, roles)) if role == "batch" and size == len(keys))
    shape, block_roles = plan.shape[:axis] + plan.shape[axis + 1 :], roles[:axis] + roles[axis + 1 :]
    layout = Layout(" ".join(block_roles) or "out")
    block = resolve(plan.spec, shape, layout, plan.dtype)
    as_block = SimpleNamespace(kind=param.kind, shape=shape)  # a block as a parameter of its own
    blocks = [_canonical_pending(backend, as_block, block, seed, key) for key in keys]
    return _PackedPending(backend, blocks, axis, param.shape)


def _check(plan: Plan, backend: BackendModule, param: Param) -> None:
    from polyinit.errors import PolyinitError
    from polyinit.portable import check_portable

    try:  # refused before anything is written (orthogonal draws have no portable form)
        check_portable(plan, backend.NAME)
    except PolyinitError as error:
        raise type(error)(f"parameter {param.path!r}: {error}") from None


def _whole_groups(planned: list) -> dict[str, int]:
    """{group: number of parts} of the Part groups drawn whole: every part planned, with one plan
    (spec, shape, layout, dtype), and for a stack the part indexes 0..n-1."""
    parts: dict[str, list] = {}
    for param, _, plan in planned:
        if param.part is not None:
            parts.setdefault(param.part.group, []).append((param.part.index, plan))
    wholes = {}
    for group, members in parts.items():
        plans = [plan for _, plan in members]
        if any(plan is None for plan in plans) or len(members) < 2:
            continue
        first = plans[0]
        same = all(
            (p.spec, p.shape, p.layout.roles(len(p.shape)), p.dtype)
            == (first.spec, first.shape, first.layout.roles(len(first.shape)), first.dtype)
            for p in plans
        )
        if same and sorted(index for index, _ in members) == list(range(len(members))):
            wholes[group] = len(members)
    return wholes


def _canonical_pending(
    backend: BackendModule, param: Param | SimpleNamespace, plan: Plan, seed: int, key: str, stack: int = 0
) -> _PortablePending:
    """The pending portable draw of ``plan`` (``stack`` > 0: of ``stack`` such blocks along a new
    leading batch axis) in the canonical order, to be laid out as the parameter is stored."""
    from polyinit.plan import resolve

    assert plan.layout is not None  # rules resolve each plan with its Param's layout, never None
    shape, roles = plan.shape, plan.layout.roles(len(plan.shape))
    if stack:
        shape, roles = (stack,) + tuple(shape), ("batch",) + tuple(roles)
    perm = canonical_order(param, shape, Layout(" ".join(roles)))
    if perm == tuple(range(len(perm))) and not stack:
        return _PortablePending(backend, plan, seed, key, param.shape)
    canonical = resolve(plan.spec, tuple(shape[i] for i in perm), Layout(" ".join(roles[i] for i in perm)), plan.dtype)
    return _PortablePending(backend, canonical, seed, key, None if stack else param.shape, inverse(perm))


class _PortablePending:
    """A portable draw not made yet: ``values()`` makes it in the backend's native type, in the
    parameter's physical shape (``shape`` None: in the drawn order's inverse, unreshaped);
    ``into(dtensor)`` draws only a DTensor's local shard."""

    def __init__(
        self,
        backend: BackendModule,
        plan: Plan,
        seed: int,
        key: str,
        shape: tuple[int, ...] | None,
        perm: tuple[int, ...] | None = None,
    ) -> None:
        self.backend, self.plan, self.seed, self.key, self.shape, self.perm = backend, plan, seed, key, shape, perm

    def fills_in_place(self, shape: tuple[int, ...]) -> bool:
        """Whether the draw is in the order a tensor of ``shape`` stores it (drawn straight in)."""
        return self.perm is None and self.plan.shape == tuple(shape)

    def values(self) -> Array:
        values = self.backend.draw_portable(self.plan, self.seed, self.key)
        if self.perm is not None:
            values = _transpose(self.backend.NAME, values, self.perm)
        return values if self.shape is None else _reshape(self.backend.NAME, values, self.shape)

    def into_dtensor(self, tensor: Any) -> Any:  # a torch DTensor (torch is not imported here)
        """Each rank draws its own shard; a draw in another axis order than torch stores it (a
        packed q/k/v or gate view under fans="semantic"), or with structure across elements, is
        drawn whole on each rank and its local block kept."""
        from polyinit.portable.evaluate import is_elementwise
        from polyinit.sharded import draw_dtensor, write_local_block

        if self.perm is not None or self.plan.shape != tuple(tensor.shape) or not is_elementwise(self.plan):
            return write_local_block(tensor, self.values())
        return draw_dtensor(tensor, self.plan, self.seed, self.key)


class _PackedPending:
    """The blocks of a packed tensor, drawn each under its own key, stacked on their ``batch``
    axis of the logical view and laid out as the tensor is stored."""

    def __init__(
        self, backend: BackendModule, blocks: list[_PortablePending], axis: int, shape: tuple[int, ...]
    ) -> None:
        self.backend, self.blocks, self.axis, self.shape = backend, blocks, axis, shape
        self.key = "+".join(block.key for block in blocks)

    def fills_in_place(self, shape: tuple[int, ...]) -> bool:
        return False

    def values(self) -> Array:
        name = self.backend.NAME
        return _reshape(name, _stack(name, [block.values() for block in self.blocks], self.axis), self.shape)

    def into_dtensor(self, tensor: Any) -> Any:  # a torch DTensor (torch is not imported here)
        from polyinit.sharded import write_local_block

        return write_local_block(tensor, self.values())


class _GroupDraw:
    """One draw of a logical parameter stored as ``count`` tensors, made once, split on demand."""

    def __init__(self, backend: BackendModule, whole: _PortablePending, combine: str, count: int) -> None:
        self.backend, self.whole, self.combine, self.count = backend, whole, combine, count
        self._values: Array | None = None

    def part(self, index: int) -> Array:
        if self._values is None:
            self._values = self.whole.values()
        if self.combine == "stack":
            return self._values[index]
        return self._values if index == 0 else _zeros_like(self.backend.NAME, self._values)


class _PartPending:
    """Part ``index`` of a group draw, laid out as the part is stored."""

    def __init__(self, group: _GroupDraw, index: int, shape: tuple[int, ...]) -> None:
        self.group, self.index, self.shape = group, index, shape
        self.key = group.whole.key

    def fills_in_place(self, shape: tuple[int, ...]) -> bool:
        return False

    def values(self) -> Array:
        return _reshape(self.group.backend.NAME, self.group.part(self.index), self.shape)

    def into_dtensor(self, tensor: Any) -> Any:  # a torch DTensor (torch is not imported here)
        """The part's values, drawn whole on each rank (a group draw spans several tensors), and
        the local block kept."""
        from polyinit.sharded import write_local_block

        return write_local_block(tensor, self.values())


def _zeros_like(name: str, values: Array) -> Array:
    if name == "torch":
        import torch

        return torch.zeros_like(values)
    if name == "keras":
        from keras import ops

        return ops.zeros_like(values)
    if name == "jax":
        import jax.numpy as jnp

        return jnp.zeros_like(values)
    import numpy as np

    return np.zeros_like(values)


def _transpose(name: str, values: Array, perm: tuple[int, ...]) -> Array:
    if name == "torch":
        return values.permute(perm)
    if name == "keras":
        from keras import ops

        return ops.transpose(values, perm)
    if name == "jax":
        from polyinit.backends.jax import transpose  # no program compiled per shape

        return transpose(values, perm)
    import numpy as np

    return np.transpose(values, perm)


def _reshape(name: str, values: Array, shape: tuple[int, ...]) -> Array:
    if tuple(values.shape) == tuple(shape):
        return values
    if name == "torch":
        return values.reshape(shape)
    if name == "keras":
        from keras import ops

        return ops.reshape(values, shape)
    return values.reshape(shape)


def _stack(name: str, values: list[Array], axis: int) -> Array:
    if name == "torch":
        import torch

        return torch.stack(values, axis)
    if name == "keras":
        from keras import ops

        return ops.stack(values, axis)
    if name == "jax":
        import jax.numpy as jnp

        return jnp.stack(values, axis)
    import numpy as np

    return np.stack(values, axis)


# What portable_draws hands back for a parameter: values drawn when asked for.
Pending: TypeAlias = Union[_PortablePending, _PackedPending, _PartPending]
