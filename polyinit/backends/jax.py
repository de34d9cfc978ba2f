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

import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from polyinit import nodes as n
from polyinit.errors import NotExpressibleError, PolyinitError
from polyinit.layout import IN_OUT, Layout
from polyinit.moments import normal_cdf
from polyinit.plan import Plan, resolve
from polyinit.spec import Spec

NAME = "jax"
DEFAULT_LAYOUT = IN_OUT
_OPS = n.op_table(jnp, lambda mask, like: mask.astype(like.dtype))


class Primitives:
    def __init__(self, keys: Any, dtype):
        self.keys, self.dtype = keys, dtype

    def Fill(self, node: n.Fill):
        return jnp.full(node.shape, node.value, self.dtype)

    def Fixed(self, node: n.Fixed):
        return jnp.asarray(node.values, self.dtype)

    # Random bits are drawn as a flat vector and reshaped: XLA's compile time for the threefry
    # kernel grows with the output's rank (about 1 s for a 5-D conv3d kernel on CPU, 0.2 s flat).
    def _uniform(self, index: int, shape, low: float, high: float):
        return jax.random.uniform(self.keys[index], (math.prod(shape),), self.dtype, low, high).reshape(shape)

    def Uniform(self, node: n.Uniform, index: int):
        return self._uniform(index, node.shape, node.low, node.high)

    def Normal(self, node: n.Normal, index: int):
        flat = jax.random.normal(self.keys[index], (math.prod(node.shape),), self.dtype)
        return node.mean + node.std * flat.reshape(node.shape)

    def TruncatedNormal(self, node: n.TruncatedNormal, index: int):
        # Inverse CDF with u kept off +-1: jax.random.truncated_normal clips to the *bounds*, so
        # with wide bounds (torch's absolute +-2 at std 0.02) a u of exactly -1 lands at -100 sigma.
        lo, hi = 2 * normal_cdf(node.a) - 1, 2 * normal_cdf(node.b) - 1
        edge = 1 - float(jnp.finfo(self.dtype).eps)
        u = self._uniform(index, node.shape, lo, hi)
        z = math.sqrt(2.0) * jax.lax.erf_inv(jnp.clip(u, max(lo, -edge), min(hi, edge)))
        return node.mean + node.std * jnp.clip(z, node.a, node.b)

    def OrthogonalMatrix(self, node: n.OrthogonalMatrix, index: int):
        rows, cols = node.shape
        g = jax.random.normal(self.keys[index], (max(rows, cols), min(rows, cols)), self.dtype)
        q, r = jnp.linalg.qr(g)
        q = q * jnp.sign(jnp.diagonal(r))[None, :]
        return node.gain * (q if rows >= cols else q.T)

    def Reshape(self, node: n.Reshape, x):
        return jnp.reshape(x, node.shape)

    def Transpose(self, node: n.Transpose, x):
        return jnp.transpose(x, node.perm)

    def Concat(self, node: n.Concat, parts):
        return jnp.concatenate(parts, axis=node.axis)

    def Scatter(self, node: n.Scatter, x):
        index = tuple(slice(None) if i is None else i for i in node.index)
        return jnp.zeros(node.shape, self.dtype).at[index].set(x)

    def Op(self, node: n.Op, args):
        if node.name == "rank":
            return jnp.argsort(jnp.argsort(args[0], axis=node.axis), axis=node.axis).astype(self.dtype)
        return _OPS[node.name](*args)


def _dtype_name(dtype) -> str:
    name = np.dtype(dtype).name if dtype is not None else "float32"
    if name not in ("float16", "bfloat16", "float32", "float64"):
        raise PolyinitError(f"jax backend: cannot initialise dtype {name}; floating dtypes only")
    return name


def draw(plan: Plan, key: Any) -> jax.Array:
    """A draw of ``plan`` from ``key``, in the plan's dtype."""
    if plan.dtype == "float64" and not jax.config.jax_enable_x64:
        raise NotExpressibleError("jax backend: float64 needs jax_enable_x64 (JAX would silently "
                                  f"give float32); refusing {plan.spec!r}")
    dtype = jnp.dtype(plan.dtype)
    if plan.size == 0:
        return jnp.zeros(plan.shape, dtype)
    compute = dtype if plan.dtype in ("float32", "float64") else jnp.float32
    keys = jax.random.split(key, len(plan.leaves)) if plan.leaves else None
    return n.evaluate(plan.root, Primitives(keys, compute), plan.leaf_index).astype(dtype)


def initializer(spec: Spec, layout: Layout = DEFAULT_LAYOUT) -> Callable[..., jax.Array]:
    """``init(key, shape, dtype=float32) -> Array`` for ``spec``, laid out as ``layout``.

    Flax linen ``DenseGeneral`` and nnx ``LinearGeneral`` call their initializers on a flattened
    2-D (in, out) shape, which ``IN_OUT`` reads correctly.
    """
    if not isinstance(spec, Spec):
        raise PolyinitError(f"jax backend: expected a polyinit spec, received {spec!r}")

    def init(key: Any, shape, dtype: Optional[Any] = None, out_sharding: Any = None) -> jax.Array:
        plan = resolve(spec, tuple(int(d) for d in shape), layout, _dtype_name(dtype))
        return draw(plan, key)

    init.__name__ = f"polyinit_{spec.kind}"
    init.__doc__ = f"Initializer for {spec!r} (layout {layout.pattern!r})."
    return init


def to_numpy(array) -> np.ndarray:
    return np.asarray(jnp.asarray(array, jnp.float32) if array.dtype == jnp.bfloat16 else array, dtype=np.float64)


# float64 only with jax_enable_x64 (checked again at each draw).
DTYPES = ("float16", "bfloat16", "float32") + (("float64",) if jax.config.jax_enable_x64 else ())


def sample_plan(plan: Plan, seed: int) -> jax.Array:
    """The conformance hook: one draw of ``plan`` from ``jax.random.key(seed)``."""
    return draw(plan, jax.random.key(seed))


def draw_seeded(plan: Plan, seed: int) -> jax.Array:
    """Draw exactly ``plan`` (no re-resolving) from ``seed``: the conformance runner's flat top-up draws."""
    return draw(plan, jax.random.key(seed))
