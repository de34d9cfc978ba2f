"""Run a draw with its output laid out as ``out_sharding``, each device computing only its shard,
in every mode ``jax.nn.initializers`` accept an ``out_sharding``: eagerly or inside a user's
``jax.jit``, with or without ``jax.set_mesh``, a ``NamedSharding`` or (under a mesh) a bare
``PartitionSpec``, Explicit or Auto mesh axes.

Two mechanisms, because JAX's explicit-sharding mode ignores the one that serves the others:

* no mesh in context, or only Auto axes: the draw runs as ``jax.jit(fn, out_shardings=...)``
  (cached per function and sharding). Inside a user's jit this becomes a sharding constraint
  that XLA propagates back to the random bits.
* a mesh with Explicit axes in context (``jax.set_mesh``): a nested jit's ``out_shardings`` is
  dropped there (the array's type carries its sharding, and the nested result's type says
  replicated), so the draw runs under ``jax.sharding.auto_axes(fn, out_sharding=...)``, as
  ``jax.random`` itself does: inside, the axes are Auto and the constraint propagates; outside,
  the result's type is the requested sharding.

The draws passed here compute every element from its global index (partitionable threefry, or
polyinit's portable generator), so the values do not depend on the sharding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable
from typing import Any

import jax
from jax.sharding import PartitionSpec, Sharding

from polyinit.errors import PolyinitError


def _checked(out_sharding: Any, where: str) -> Any:
    if isinstance(out_sharding, PartitionSpec):
        if jax.sharding.get_abstract_mesh().empty:
            raise PolyinitError(
                f"{where}: out_sharding={out_sharding} is a PartitionSpec, which needs a mesh: "
                "call it under `with jax.set_mesh(mesh):` or pass NamedSharding(mesh, spec)"
            )
        return out_sharding
    if not isinstance(out_sharding, Sharding):
        raise PolyinitError(
            f"{where}: out_sharding must be a jax.sharding.Sharding (e.g. NamedSharding) "
            f"or, under jax.set_mesh, a PartitionSpec; received out_sharding={out_sharding!r}"
        )
    return out_sharding


@functools.lru_cache(maxsize=256)
def _program(fn: Callable, static: Hashable, sharding: Any, explicit_axes: tuple) -> Callable:
    draw = functools.partial(fn, static)
    if explicit_axes:
        return jax.jit(jax.sharding.auto_axes(draw, out_sharding=sharding, axes=explicit_axes))
    return jax.jit(draw, out_shardings=sharding)


def run_sharded(fn: Callable, static: Hashable, args: tuple, out_sharding: Any, where: str) -> jax.Array:
    """``fn(static, *args)`` laid out as ``out_sharding`` (``static``: the hashable part that
    selects a compiled program, e.g. a plan; ``args``: arrays, e.g. a key). Programs are cached
    per (fn, static, sharding, explicit axes); jit itself retraces for another context mesh."""
    sharding = _checked(out_sharding, where)
    mesh = jax.sharding.get_abstract_mesh()
    explicit_axes = tuple(mesh.explicit_axes) if not mesh.empty else ()
    try:
        program = _program(fn, static, sharding, explicit_axes)
    except TypeError:  # an unhashable sharding: no cache
        program = _program.__wrapped__(fn, static, sharding, explicit_axes)
    return program(*args)
