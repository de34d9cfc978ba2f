"""JAX / Flax backend: pure ``init(key, shape, dtype)`` functions (the ``jax.nn.initializers``
protocol), usable as ``kernel_init``, ``bias_init`` and ``embedding_init`` in ``flax.linen`` and
``flax.nnx``. Randomness comes only from the key (one split per random leaf of the plan); the plan
is static Python data, so ``jax.jit`` traces the draw once per shape.

>>> import jax, polyinit
>>> init = initializer(polyinit.lecun_normal(truncated=True))   # Flax's Dense default
>>> w = init(jax.random.key(0), (784, 256))
>>> w.shape, str(w.dtype)
((784, 256), 'float32')
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, Optional

try:
    import jax
    import jax.numpy as jnp
except ImportError as _missing:  # say which extra installs the framework
    from polyinit.errors import BackendUnavailableError

    raise BackendUnavailableError(
        f"polyinit.backends.jax cannot import jax ({_missing}); install it with: pip install 'polyinit[jax]'"
    ) from None
import numpy as np

from polyinit import _validate as check
from polyinit import nodes as n
from polyinit.backends import common
from polyinit.backends._jax_sharding import run_sharded
from polyinit.errors import NotExpressibleError, PolyinitError
from polyinit.layout import IN_OUT, Layout
from polyinit.plan import Plan, resolve
from polyinit.spec import Spec

NAME = "jax"
DEFAULT_LAYOUT = IN_OUT
ANY_LAYOUT = True
_OPS = n.op_table(jnp, lambda mask, like: mask.astype(like.dtype))


# Compiling is what costs on CPU, not drawing: XLA compiles one threefry kernel per output size
# (about 0.2 s each) and one small program per shape for every eager op. So:
# * random bits come from a few shared sizes: every tensor of at most SHARED_SIZE elements slices
#   one draw of that size (at most 2^16 spare values, ~0.2 ms);
# * each leaf's slice, reshape and arithmetic is one jitted program per shape whose numbers are
#   arguments, so every scheme with that leaf kind shares it;
# * whatever a plan does with its leaves (reshapes, ops, blocks) is one jitted program per plan
#   structure.
SHARED_SIZE = 1 << 16


def _flag(name: str) -> bool:
    """A JAX config flag's current value (``jax.config`` sets its flags as attributes at run time,
    which JAX's type stubs do not declare)."""
    return bool(getattr(jax.config, name))


def _bits_size(size: int) -> int:
    return max(size, SHARED_SIZE)


def _take(bits, shape):
    """The first prod(shape) of flat ``bits`` as ``shape`` (bits drawn in ``shape`` pass as they are)."""
    return bits if bits.shape == tuple(shape) else bits[: math.prod(shape)].reshape(shape)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _scaled(bits, shift, scale, shape, dtype):
    """shift + scale * the first prod(shape) bits, as ``shape`` in ``dtype``."""
    return (shift + scale * _take(bits, shape)).astype(dtype)


@functools.partial(jax.jit, static_argnames=("shape", "dtype"))
def _truncated(u, mean, std, a, b, u_low, u_high, shape, dtype):
    """Inverse CDF of the standard normal cut to [a, b] from u ~ U(2 Phi(a) - 1, 2 Phi(b) - 1)."""
    u = jnp.clip(_take(u, shape), u_low, u_high)
    return (mean + std * jnp.clip(math.sqrt(2.0) * jax.lax.erf_inv(u), a, b)).astype(dtype)


@functools.partial(jax.jit, static_argnames=("rows", "cols", "dtype"))
def _orthogonal(bits, gain, rows, cols, dtype):
    """QR of a standard normal (max, min) matrix, sign of diag(R) folded in, transposed if wide."""
    g = bits[: rows * cols].reshape(max(rows, cols), min(rows, cols))
    q, r = jnp.linalg.qr(g)
    return (gain * common.haar_orthogonal(q, r, rows, cols, jnp)).astype(dtype)


class _Leaves:
    """Draws each random leaf from its key, in ``compute`` precision, cast to ``out``.

    ``shaped``: draw each leaf's bits in the leaf's own shape instead of a shared flat size, so
    that an output sharding propagates to the random bits (each device draws only its shard).
    The values are the same either way: JAX's partitionable threefry numbers the elements of a
    draw by their linear index, whatever its shape or length.
    """

    def __init__(self, keys: Any, compute: np.dtype, out: np.dtype, shaped: bool = False):
        self.keys, self.compute, self.out, self.shaped = keys, compute, out, shaped

    def _shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(shape) if self.shaped else (_bits_size(math.prod(shape)),)

    def _uniform_bits(self, index: int, shape: Sequence[int], low: float, high: float) -> jax.Array:
        return jax.random.uniform(self.keys[index], self._shape(shape), self.compute, low, high)

    def _normal_bits(self, index: int, shape: Sequence[int]) -> jax.Array:
        return jax.random.normal(self.keys[index], self._shape(shape), self.compute)

    def Uniform(self, node: n.Uniform, index: int) -> jax.Array:
        bits = self._uniform_bits(index, node.shape, node.low, node.high)
        return _scaled(bits, 0.0, 1.0, node.shape, self.out)

    def Normal(self, node: n.Normal, index: int) -> jax.Array:
        return _scaled(self._normal_bits(index, node.shape), node.mean, node.std, node.shape, self.out)

    def TruncatedNormal(self, node: n.TruncatedNormal, index: int) -> jax.Array:
        # Inverse CDF with u kept off +-1: jax.random.truncated_normal clips to the *bounds*, so
        # with wide bounds (torch's absolute +-2 at std 0.02) a u of exactly -1 lands at -100 sigma.
        eps = float(jnp.finfo(self.compute).eps)
        low, high, clamp_low, clamp_high = common.truncation_interval(node.a, node.b, eps)
        u = self._uniform_bits(index, node.shape, low, high)
        return _truncated(u, node.mean, node.std, node.a, node.b, clamp_low, clamp_high, node.shape, self.out)

    def OrthogonalMatrix(self, node: n.OrthogonalMatrix, index: int) -> jax.Array:
        rows, cols = node.shape
        return _orthogonal(self._normal_bits(index, (rows * cols,)), node.gain, rows, cols, self.out)


class _Structure:
    """A plan's tree as a static jit argument, hashed and compared by ``nodes.structure``."""

    def __init__(self, plan: Plan):
        self.root, self.leaf_index = plan.root, plan.leaf_index
        self.key, self.fixed = n.structure(plan.root, plan.leaf_index)
        self.hash = hash(self.key)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Structure) and self.key == other.key


@functools.lru_cache(maxsize=512)
def _structure_of(plan: Plan) -> _Structure:
    return _Structure(plan)


class _Combine:
    """Everything but the random draws, traced inside ``_combine``: leaves and Fixed arrays are
    its inputs."""

    def __init__(self, leaves: Sequence[jax.Array], fixed: dict[int, Any], dtype: Any):
        self.leaves, self.fixed, self.dtype = leaves, fixed, dtype

    def _leaf(self, node: n.Node, index: int) -> jax.Array:
        return self.leaves[index]

    Uniform = Normal = TruncatedNormal = OrthogonalMatrix = _leaf

    def Fill(self, node: n.Fill) -> jax.Array:
        return jnp.full(node.shape, node.value, self.dtype)

    def Fixed(self, node: n.Fixed) -> jax.Array:
        return self.fixed[id(node)]

    def Reshape(self, node: n.Reshape, x: jax.Array) -> jax.Array:
        return jnp.reshape(x, node.shape)

    def Transpose(self, node: n.Transpose, x: jax.Array) -> jax.Array:
        return jnp.transpose(x, node.perm)

    def Concat(self, node: n.Concat, parts: list[jax.Array]) -> jax.Array:
        return jnp.concatenate(parts, axis=node.axis)

    def Scatter(self, node: n.Scatter, x: jax.Array) -> jax.Array:
        index = tuple(slice(None) if i is None else i for i in node.index)
        return jnp.zeros(node.shape, self.dtype).at[index].set(x)

    def Op(self, node: n.Op, args: list[jax.Array]) -> jax.Array:
        if node.name == "rank":
            assert node.axis is not None  # every rank op is built with its axis (plan.py)
            return common.rank(args[0], node.axis, jnp).astype(self.dtype)
        if node.name == "l2_normalize":
            assert node.axis is not None  # built with its axis (plan.py)
            return common.l2_normalize(args[0], node.axis, jnp)
        return _OPS[node.name](*args)


@functools.partial(jax.jit, static_argnames=("structure", "compute", "dtype"))
def _combine(
    structure: _Structure, leaves: tuple[jax.Array, ...], fixed: tuple[jax.Array, ...], compute: str, dtype: str
) -> jax.Array:
    arrays = {id(node): value for node, value in zip(structure.fixed, fixed)}
    prims = _Combine(leaves, arrays, compute)
    return n.evaluate(structure.root, prims, structure.leaf_index).astype(dtype)


def _dtype_name(dtype: Any) -> str:
    # No dtype: JAX's default float, float64 under JAX_ENABLE_X64, as jax.nn.initializers give.
    try:
        name = jnp.dtype(dtype).name if dtype is not None else jax.dtypes.canonicalize_dtype(float).name
    except TypeError:
        raise PolyinitError(f"jax backend: dtype must be a floating dtype, received dtype={dtype!r}") from None
    if name not in ("float16", "bfloat16", "float32", "float64"):
        raise PolyinitError(f"jax backend: cannot initialise dtype {name}; floating dtypes only")
    return name


def _check_key(key: Any) -> None:
    """A typed key (``jax.random.key``) or a raw uint32[2] one (``jax.random.PRNGKey``)."""
    dtype = getattr(key, "dtype", None)
    typed = dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key)
    raw = dtype == jnp.uint32 and getattr(key, "shape", None) == (2,)
    if not isinstance(key, jax.Array) or not ((typed and key.shape == ()) or raw):
        raise PolyinitError(
            f"jax backend: key must be one JAX random key, jax.random.key(seed) or "
            f"jax.random.PRNGKey(seed), received {key!r}"
        )


def draw(plan: Plan, key: Any, *, shaped: bool = False) -> jax.Array:
    """A draw of ``plan`` from ``key``, in the plan's dtype (``shaped``: see ``_Leaves``)."""
    if not isinstance(plan, Plan):
        raise PolyinitError(f"jax backend: expected a polyinit Plan, received {plan!r}")
    _check_key(key)
    if plan.dtype == "float64" and not _flag("jax_enable_x64"):
        raise NotExpressibleError(
            f"jax backend: float64 needs jax_enable_x64 (JAX would silently give float32); refusing {plan.spec!r}"
        )
    dtype = jnp.dtype(plan.dtype)
    if plan.size == 0:
        return jnp.zeros(plan.shape, dtype)
    compute = dtype if plan.dtype in ("float32", "float64") else jnp.dtype(jnp.float32)
    keys = jax.random.split(key, len(plan.leaves)) if plan.leaves else None
    root = plan.root
    if isinstance(root, n.Fixed):
        return jnp.asarray(root.values, dtype)
    # The common case, a plan that is one random leaf, is drawn straight in the plan's dtype.
    single = isinstance(root, n.RANDOM_LEAVES)
    # Traced (inside a user's jit, which may shard the output): bits in each leaf's shape, so the
    # sharding reaches the random draw. Equal values either way under partitionable threefry.
    shaped = shaped or (_flag("jax_threefry_partitionable") and isinstance(key, jax.core.Tracer))
    drawer = _Leaves(keys, compute, dtype if single else compute, shaped)
    leaves = tuple(getattr(drawer, type(leaf).__name__)(leaf, i) for i, leaf in enumerate(plan.leaves))
    if single:
        return leaves[0]
    structure = _structure_of(plan)
    fixed = tuple(jnp.asarray(node.values, compute) for node in structure.fixed)
    return _combine(structure, leaves, fixed, compute.name, dtype.name)


def initializer(spec: Spec, layout: Layout | str = DEFAULT_LAYOUT) -> Callable[..., jax.Array]:
    """``init(key, shape, dtype=None) -> Array`` for ``spec``, laid out as ``layout``; no dtype means
    JAX's default float (float32, or float64 under ``JAX_ENABLE_X64``), as in ``jax.nn.initializers``.

    Flax linen ``DenseGeneral`` and nnx ``LinearGeneral`` call their initializers on a flattened
    2-D (in, out) shape, which ``IN_OUT`` reads correctly. ``out_sharding`` (a ``Sharding``, or a
    ``PartitionSpec`` under ``jax.set_mesh``) is honoured as ``jax.nn.initializers`` honour it,
    each device drawing only its shard (``draw_sharded``).
    """
    if not isinstance(spec, Spec):
        raise PolyinitError(f"jax backend: expected a polyinit spec, received {spec!r}")
    checked = check.layout("jax backend", layout)  # a Layout or None, as resolve takes it

    def init(key: Any, shape: Any, dtype: Optional[Any] = None, out_sharding: Any = None) -> jax.Array:
        _check_key(key)
        plan = resolve(spec, check.shape("jax backend", shape), checked, _dtype_name(dtype))
        with check.framework_errors("jax", f"drawing {plan.describe()[:120]} of shape {plan.shape}"):
            return draw(plan, key) if out_sharding is None else draw_sharded(plan, key, out_sharding)

    init.__name__ = f"polyinit_{spec.kind}"
    init.__doc__ = f"Initializer for {spec!r} (layout {str(checked)!r})."
    return init


def _draw_shaped(plan: Plan, key: Any) -> jax.Array:
    return draw(plan, key, shaped=True)


def draw_sharded(plan: Plan, key: Any, out_sharding: Any) -> jax.Array:
    """``draw(plan, key)`` laid out as ``out_sharding`` (a ``jax.sharding.Sharding``, or a
    ``PartitionSpec`` under ``jax.set_mesh``), each device computing only its own shard, eagerly
    or inside ``jax.jit``, with Explicit or Auto mesh axes (see ``_jax_sharding``).

    JAX's partitionable threefry (the default since jax 0.5, ``jax_threefry_partitionable``)
    makes every random bit a function of its global index, so the global array is the same for
    any number of devices and any sharding, and equals the unsharded ``draw(plan, key)``.
    """
    if not _flag("jax_threefry_partitionable"):
        raise NotExpressibleError(
            "jax backend: a sharded draw equals the unsharded one only with "
            "jax_threefry_partitionable=True (JAX's default); it is off here"
        )
    return run_sharded(_draw_shaped, plan, (key,), out_sharding, "jax backend")


def transpose(array: jax.Array, perm: tuple[int, ...]) -> jax.Array:
    """``jnp.transpose(array, perm)``; for a concrete array on one CPU device, of at most
    ``xp_jax.SHARED_LIMIT`` elements, done by a host copy, which compiles nothing (an eager
    ``jnp.transpose`` compiles one program per shape, about 0.1 s each on CPU: most of what
    portable ``apply`` on a small nnx model would otherwise spend).

    >>> import jax.numpy as jnp
    >>> transpose(jnp.zeros((2, 3)), (1, 0)).shape
    (3, 2)
    """
    from polyinit.portable.xp_jax import SHARED_LIMIT

    devices = array.devices() if not isinstance(array, jax.core.Tracer) else ()
    if len(devices) != 1 or next(iter(devices)).platform != "cpu" or array.size > SHARED_LIMIT:
        return jnp.transpose(array, perm)
    return jax.device_put(np.ascontiguousarray(np.asarray(array).transpose(perm)), array.sharding)


def to_numpy(array: jax.Array) -> np.ndarray:
    # numpy converts JAX's bfloat16 (ml_dtypes) itself, with no JAX program to compile per shape.
    return np.asarray(array).astype(np.float64)


# float64 only with jax_enable_x64 (checked again at each draw).
DTYPES = ("float16", "bfloat16", "float32") + (("float64",) if _flag("jax_enable_x64") else ())


def sample_plan(plan: Plan, seed: int) -> jax.Array:
    """One draw through ``initializer(spec, layout)(jax.random.key(seed), shape, dtype)``."""
    init = initializer(plan.spec, plan.layout or DEFAULT_LAYOUT)
    return init(jax.random.key(seed), plan.shape, jnp.dtype(plan.dtype))


def draw_plan(plan: Plan, seed: int) -> jax.Array:
    """Exactly ``plan`` (no re-resolving) through ``draw``, from ``jax.random.key(seed)``."""
    return draw(plan, jax.random.key(seed))


def dtype_of(array: jax.Array) -> str:
    return np.dtype(array.dtype).name


def device_of(array: jax.Array) -> str:
    return ",".join(sorted(str(d) for d in array.devices()))


def default_device() -> str:
    return device_of(jnp.zeros(()))


def draw_portable(plan: Plan, seed: int, key: str | int = "", *, out_sharding: Any = None) -> jax.Array:
    """The portable draw of ``plan``: the same float32 values, bit for bit, as ``draw_portable``
    of every other backend with the same (seed, key) (see ``polyinit.portable``). Each value is
    computed from its own global index, so with ``out_sharding`` (as in ``initializer``), or under
    ``jax.jit(..., out_shardings=...)``, each device computes only its shard and the global array
    does not depend on the sharding.

    >>> import polyinit
    >>> draw_portable(polyinit.resolve(polyinit.Normal(std=1.0), (2, 2)), seed=0, key="w").shape
    (2, 2)
    """
    from polyinit.portable import xp_jax

    if plan.dtype == "float64" and not _flag("jax_enable_x64"):
        raise NotExpressibleError(
            f"jax backend: float64 needs jax_enable_x64 (JAX would silently give float32); refusing {plan.spec!r}"
        )
    return xp_jax.draw(plan, seed, key, out_sharding=out_sharding)
