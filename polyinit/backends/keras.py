"""Keras 3 backend: ``PolyinitInitializer``, a registered ``keras.initializers.Initializer`` for any spec.

Works under ``KERAS_BACKEND=tensorflow``, ``jax`` and ``torch`` (it uses ``keras.ops`` and
``keras.random`` only). Seeds behave like Keras's own: an int seed gives the same values on every
call, a ``keras.random.SeedGenerator`` advances, ``None`` draws an int at construction from Keras's
global seed generator (and a clone or a reloaded model draws a new one), so that after
``keras.utils.set_random_seed(s)`` the same program builds the same weights on every Keras backend.
``get_config`` holds the spec as polyinit's JSON dict,
so a ``.keras`` file that uses it reloads in a fresh process without ``custom_objects`` once
polyinit's Keras backend is imported: ``import polyinit.backends.keras`` before
``keras.models.load_model`` (it registers ``polyinit>PolyinitInitializer``, and the old name
``polyinit>Initializer`` for files saved before the rename).

>>> import polyinit
>>> init = PolyinitInitializer(polyinit.glorot_uniform(), seed=1)
>>> tuple(init((784, 256)).shape)
(784, 256)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, TypeAlias

try:
    import keras
except ImportError as _missing:  # say which extra installs the framework
    from polyinit.errors import BackendUnavailableError

    raise BackendUnavailableError(
        f"polyinit.backends.keras cannot import keras ({_missing}); install it with: "
        "pip install 'polyinit[keras]' (Keras on TensorFlow), "
        "'polyinit[keras-jax]' or 'polyinit[keras-torch]'"
    ) from None
import numpy as np
from keras import ops

from polyinit import _validate as check
from polyinit import nodes as n
from polyinit.backends import common
from polyinit.errors import NotExpressibleError, PolyinitError
from polyinit.layout import IN_OUT, Layout
from polyinit.plan import Plan, resolve
from polyinit.serialize import from_dict, to_dict
from polyinit.spec import Spec

NAME = "keras"
DEFAULT_LAYOUT = IN_OUT
ANY_LAYOUT = True
_OPS = n.op_table(ops, lambda mask, like: ops.cast(mask, like.dtype))

# A tensor of whichever framework Keras runs on (tf.Tensor, jax.Array or torch.Tensor): the backend is
# chosen at run time, so there is no narrower static type.
KerasTensor: TypeAlias = Any


def _leaf_seed(seed: Any, index: int) -> Any:
    """An int seed becomes one stateless int per random leaf (the same values every call, as
    Keras's own int-seeded initializers); a SeedGenerator is shared and advances."""
    if isinstance(seed, int):
        return (seed * 1_000_003 + index) % (2**31 - 1)
    return seed


class Primitives:
    def __init__(self, seed: Any, dtype: str) -> None:
        self.seed, self.dtype = seed, dtype

    def Fill(self, node: n.Fill) -> KerasTensor:
        return ops.full(node.shape, node.value, dtype=self.dtype)

    def Fixed(self, node: n.Fixed) -> KerasTensor:
        return ops.convert_to_tensor(node.values.astype(self.dtype))

    def Uniform(self, node: n.Uniform, index: int) -> KerasTensor:
        return keras.random.uniform(
            node.shape, node.low, node.high, dtype=self.dtype, seed=_leaf_seed(self.seed, index)
        )

    def Normal(self, node: n.Normal, index: int) -> KerasTensor:
        return keras.random.normal(node.shape, node.mean, node.std, dtype=self.dtype, seed=_leaf_seed(self.seed, index))

    def TruncatedNormal(self, node: n.TruncatedNormal, index: int) -> KerasTensor:
        if (node.a, node.b) == (-2.0, 2.0) and keras.backend.backend() in ("tensorflow", "jax"):
            # Keras's own op is exactly this cut on these backends (and fused, so faster).
            return keras.random.truncated_normal(
                node.shape, node.mean, node.std, dtype=self.dtype, seed=_leaf_seed(self.seed, index)
            )
        # Elsewhere the cut is fixed at +-2 std, and Keras's torch backend leaks past it, so the
        # inverse CDF is written out, with u kept off +-1.
        low, high, clamp_low, clamp_high = common.truncation_interval(node.a, node.b, float(np.finfo(self.dtype).eps))
        u = keras.random.uniform(node.shape, low, high, dtype=self.dtype, seed=_leaf_seed(self.seed, index))
        z = common.SQRT2 * ops.erfinv(ops.clip(u, clamp_low, clamp_high))
        return node.mean + node.std * ops.clip(z, node.a, node.b)

    def OrthogonalMatrix(self, node: n.OrthogonalMatrix, index: int) -> KerasTensor:
        rows, cols = node.shape
        g = keras.random.normal((max(rows, cols), min(rows, cols)), dtype=self.dtype, seed=_leaf_seed(self.seed, index))
        q, r = ops.qr(g)
        return node.gain * common.haar_orthogonal(q, r, rows, cols, ops, transpose=ops.transpose)

    def Reshape(self, node: n.Reshape, x: KerasTensor) -> KerasTensor:
        return ops.reshape(x, node.shape)

    def Transpose(self, node: n.Transpose, x: KerasTensor) -> KerasTensor:
        return ops.transpose(x, node.perm)

    def Concat(self, node: n.Concat, parts: Sequence[KerasTensor]) -> KerasTensor:
        return ops.concatenate(parts, axis=node.axis)

    def Scatter(self, node: n.Scatter, x: KerasTensor) -> KerasTensor:
        block = ops.reshape(x, tuple(1 if i is not None else d for i, d in zip(node.index, node.shape)))
        start = [0 if i is None else i for i in node.index]
        return ops.slice_update(ops.zeros(node.shape, dtype=self.dtype), start, block)

    def Op(self, node: n.Op, args: Sequence[KerasTensor]) -> KerasTensor:
        if node.name == "rank":
            assert node.axis is not None  # plan.py builds every "rank" Op with its axis
            return ops.cast(common.rank(args[0], node.axis, ops), self.dtype)
        if node.name == "l2_normalize":
            assert node.axis is not None  # built with its axis (plan.py)
            return common.l2_normalize(args[0], node.axis, ops)
        return _OPS[node.name](*args)


def draw(plan: Plan, seed: Any) -> KerasTensor:
    """A draw of ``plan``; ``seed`` is an int or a ``keras.random.SeedGenerator``."""
    if not isinstance(plan, Plan):
        raise PolyinitError(f"keras backend: expected a polyinit Plan, received {plan!r}")
    if not isinstance(seed, keras.random.SeedGenerator):
        seed = check.seed("keras backend", seed)
    if plan.size == 0:
        return ops.zeros(plan.shape, dtype=plan.dtype)
    if plan.dtype == "float64" and keras.backend.backend() == "jax":
        import jax

        if not jax.config.read("jax_enable_x64"):  # read(): the attribute is not in jax's stubs
            raise NotExpressibleError(f"keras backend (jax): float64 needs jax_enable_x64; refusing {plan.spec!r}")
    compute = plan.dtype if plan.dtype in ("float32", "float64") else "float32"
    values = ops.cast(n.evaluate(plan.root, Primitives(seed, compute), plan.leaf_index), plan.dtype)
    if keras.backend.standardize_dtype(values.dtype) != plan.dtype:
        raise NotExpressibleError(
            f"keras backend ({keras.backend.backend()}): asked for {plan.dtype}, "
            f"the backend gives {values.dtype}; refusing {plan.spec!r}"
        )
    return values


def _global_seed() -> int:
    """The int seed of an unseeded initializer, drawn from Keras's global ``SeedGenerator`` (the
    one ``keras.random.normal(seed=None)`` advances and ``keras.utils.set_random_seed`` resets),
    so that after ``set_random_seed(s)`` a program builds the same initializers on the TensorFlow,
    JAX and torch backends alike, and without it each process picks its own.

    Keras creates that generator on first use from Python's ``random`` (seeded by
    ``set_random_seed``); Python's state is put back afterwards, so polyinit never advances it
    (Keras's own unseeded initializers draw their seeds from it directly)."""
    state = random.getstate()
    try:
        value = keras.random.randint((), 1, 10**9, dtype="int32")
    finally:
        random.setstate(state)
    return int(ops.convert_to_numpy(value))


@keras.saving.register_keras_serializable(package="polyinit", name="PolyinitInitializer")
class PolyinitInitializer(keras.initializers.Initializer):
    """A Keras initializer drawing ``spec`` for a kernel laid out as ``layout`` (``* in out``)."""

    def __init__(self, spec: Spec | dict, layout: Layout | str = DEFAULT_LAYOUT, seed: Any = None):
        self.spec = from_dict(spec) if isinstance(spec, dict) else spec
        if not isinstance(self.spec, Spec):
            raise PolyinitError(f"keras backend: expected a polyinit spec, received {spec!r}")
        self.layout = check.layout("keras backend", layout) or DEFAULT_LAYOUT
        if isinstance(seed, dict):
            with check.framework_errors("keras", "reading the seed's config"):
                seed = keras.saving.deserialize_keras_object(seed)
        if seed is not None and not isinstance(seed, keras.random.SeedGenerator):
            seed = check.seed("keras backend", seed)
        self._init_seed = seed
        # seed=None follows Keras's global seed state (``keras.utils.set_random_seed``), through
        # Keras's own generator, never Python's ``random``: see _global_seed.
        self.seed = _global_seed() if seed is None else seed

    def __call__(self, shape: Sequence[int], dtype: Any = None) -> KerasTensor:
        with check.framework_errors("keras", f"reading dtype {dtype!r}"):
            name = keras.backend.standardize_dtype(dtype or keras.config.floatx())
        if name not in ("float16", "bfloat16", "float32", "float64"):
            raise PolyinitError(f"keras backend: cannot initialise dtype {name}; floating dtypes only")
        plan = resolve(self.spec, check.shape("keras backend", shape), self.layout, name)
        with check.framework_errors(
            f"keras ({keras.backend.backend()})", f"drawing {plan.describe()[:120]} of shape {plan.shape}"
        ):
            return draw(plan, self.seed)

    def get_config(self) -> dict:
        seed = self._init_seed
        if isinstance(seed, keras.random.SeedGenerator):
            seed = keras.saving.serialize_keras_object(seed)
        return {"spec": to_dict(self.spec), "layout": self.layout.pattern, "seed": seed}


# The class's own name must differ from Keras's base class: a saved config names the class, and
# ``load_model`` before this module is imported would otherwise build keras's ``Initializer``.
# Files saved when the class was called ``Initializer`` still load, and the old import still works.
Initializer = PolyinitInitializer
keras.saving.get_custom_objects()["polyinit>Initializer"] = PolyinitInitializer


def initializer(spec: Spec, layout: Layout | str = DEFAULT_LAYOUT, seed: Any = None) -> PolyinitInitializer:
    """The Keras initializer for ``spec`` (the backend contract's entry point); see ``PolyinitInitializer``."""
    return PolyinitInitializer(spec, layout, seed)


def to_numpy(tensor: KerasTensor) -> np.ndarray:
    # Flattened first: TensorFlow cannot hand numpy a 0-d tensor that went through a cast.
    shape = tuple(tensor.shape)
    flat = ops.reshape(tensor, (-1,))
    if str(tensor.dtype).endswith("bfloat16"):
        flat = ops.cast(flat, "float32")
    return np.asarray(ops.convert_to_numpy(flat), dtype=np.float64).reshape(shape)


DTYPES = ("float16", "bfloat16", "float32", "float64")


def sample_plan(plan: Plan, seed: int) -> KerasTensor:
    """One draw through the registered ``Initializer(spec, layout, seed)(shape, dtype)``, as a Keras layer calls it."""
    return initializer(plan.spec, plan.layout or DEFAULT_LAYOUT, seed=seed)(plan.shape, plan.dtype)


def draw_plan(plan: Plan, seed: int) -> KerasTensor:
    """Exactly ``plan`` (no re-resolving) through ``draw``, from the int ``seed``."""
    return draw(plan, seed)


def dtype_of(tensor: KerasTensor) -> str:
    return keras.backend.standardize_dtype(tensor.dtype)


def device_of(tensor: KerasTensor) -> str:
    return str(getattr(tensor, "device", "cpu"))  # TF, JAX and torch tensors all name theirs


def default_device() -> str:
    return device_of(ops.zeros(()))


def draw_portable(plan: Plan, seed: int, key: str | int = "") -> KerasTensor:
    """The portable draw of ``plan`` as a tensor of the current Keras backend: the same float32
    values, bit for bit, as ``draw_portable`` of every other polyinit backend with the same
    (seed, key) (see ``polyinit.portable``), computed with the backend framework's own ops
    (TensorFlow, JAX or torch)."""
    name = keras.backend.backend()
    if name == "jax":
        from polyinit.backends.jax import draw_portable as jax_draw

        return jax_draw(plan, seed, key)
    from polyinit.portable import evaluate

    if name == "torch":
        from keras.src.backend.torch.core import get_device

        from polyinit.portable.xp_torch import Ops as TorchOps

        return evaluate.draw(TorchOps(get_device()), plan, seed, key)
    if name == "tensorflow":
        from polyinit.portable.xp_tensorflow import Ops as TensorFlowOps

        return evaluate.draw(TensorFlowOps(), plan, seed, key)
    raise NotExpressibleError(
        f"keras backend ({name}): portable draws exist for the tensorflow, jax "
        f"and torch backends; refusing {plan.spec!r}"
    )
