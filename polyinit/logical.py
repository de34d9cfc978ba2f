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

def canonical_order(param, shape: tuple[int, ...], layout: Optional[Layout]) -> tuple[int, ...]:
    """The permutation into the order portable draws fill: logical (out, in, spatial, batch),
    except embeddings, which every framework stores as (num, dim) already."""
    if param.kind == "embedding":
        return tuple(range(len(shape)))
    return to_logical(layout, len(shape))


def positional_key(param, ordinal: int) -> str:
    """A key that is the same for the same architecture in every framework: the owning layer's
    position in declaration order, the role, and the parameter's rank among that layer's
    parameters of that role (``"3.weight.0"``)."""
    return f"{param.layer}.{param.role}.{ordinal}"


def portable_draws(walker, planned: list, rules) -> list:
    """(param, native values or None) for every planned parameter, drawn by the portable
    generator in the canonical order and laid out as the framework stores the parameter."""
    from polyinit.backends import get_backend
    from polyinit.errors import PolyinitError
    from polyinit.layout import Layout as _Layout
    from polyinit.plan import resolve
    from polyinit.portable import check_portable

    from polyinit.frameworks import get_framework

    backend = get_backend(get_framework(walker.name).backend)  # the record names its backend
    counts: dict[tuple, int] = {}
    drawn = []
    for param, _, plan in planned:
        ordinal = counts.setdefault((param.layer, param.role), 0)
        counts[(param.layer, param.role)] += 1
        if plan is None:
            drawn.append((param, None))
            continue
        key = rules.key(param) if rules.key else positional_key(param, ordinal)
        try:  # refused before anything is written (orthogonal draws have no portable form)
            check_portable(plan, backend.NAME)
        except PolyinitError as error:
            raise type(error)(f"parameter {param.path!r}: {error}") from None
        perm = canonical_order(param, plan.shape, plan.layout)
        if perm == tuple(range(len(perm))):
            drawn.append((param, _PortablePending(backend, plan, rules.seed, key, param.shape)))
            continue
        roles = plan.layout.roles(len(plan.shape))
        canonical = resolve(plan.spec, tuple(plan.shape[i] for i in perm),
                            _Layout(" ".join(roles[i] for i in perm)), plan.dtype)
        drawn.append((param, _PortablePending(backend, canonical, rules.seed, key, param.shape,
                                              inverse(perm))))
    return drawn


class _PortablePending:
    """A portable draw not made yet: ``values()`` makes it in the backend's native type, in the
    parameter's physical shape; ``into(dtensor)`` draws only a DTensor's local shard."""

    def __init__(self, backend, plan, seed: int, key: str, shape: tuple[int, ...], perm=None):
        self.backend, self.plan, self.seed, self.key, self.shape, self.perm = backend, plan, seed, key, shape, perm

    def values(self):
        values = self.backend.draw_portable(self.plan, self.seed, self.key)
        if self.perm is not None:
            values = _transpose(self.backend.NAME, values, self.perm)
        return _reshape(self.backend.NAME, values, self.shape)

    def into_dtensor(self, tensor):
        from polyinit.errors import NotExpressibleError
        from polyinit.sharded import draw_dtensor

        if self.perm is not None or self.plan.shape != tuple(tensor.shape):
            raise NotExpressibleError(f"portable: key {self.key!r} is drawn in another order than torch stores "
                                      "it, which a shard-by-shard draw cannot follow; initialise it unsharded")
        return draw_dtensor(tensor, self.plan, self.seed, self.key)


def _transpose(name: str, values, perm):
    if name == "torch":
        return values.permute(perm)
    if name == "keras":
        from keras import ops

        return ops.transpose(values, perm)
    if name == "jax":
        import jax.numpy as jnp

        return jnp.transpose(values, perm)
    import numpy as np

    return np.transpose(values, perm)


def _reshape(name: str, values, shape):
    if tuple(values.shape) == tuple(shape):
        return values
    if name == "torch":
        return values.reshape(shape)
    if name == "keras":
        from keras import ops

        return ops.reshape(values, shape)
    return values.reshape(shape)
