"""Legacy-MXNet backend: an initializer that follows ``mxnet.initializer``'s protocol.

It is called with a parameter name (or an ``InitDesc``) and an array, dispatches on the name's
suffix as MXNet does (``weight`` -> the spec, ``bias``/``beta``/``moving_mean`` -> 0,
``gamma``/``moving_var`` -> 1, ...), uses MXNet's (out, in, *k) layout, and ``dumps()`` writes the
JSON ``mx.init`` writes. Where the real mxnet 1.x imports, the class is an
``mx.init.Initializer`` registered as ``"polyinit"``, so ``block.initialize(init=Polyinit(...))``
works in Gluon and ``mx.init.create(init.dumps())`` rebuilds it; elsewhere it fills numpy arrays.

Values are drawn on the host by the numpy reference backend from the initializer's own seeded
``numpy.random.Generator`` (MXNet itself draws Orthogonal and Bilinear in numpy, and Gluon
initialises on the CPU): a seeded initializer is reproducible per object, and an unseeded one takes
each weight's seed from MXNet's global ``mx.random`` stream, so ``mx.random.seed`` governs it.

>>> import numpy as np, polyinit
>>> init = Polyinit(polyinit.glorot_uniform(), seed=0)
>>> w, b = np.empty((256, 784), np.float32), np.empty(256, np.float32)
>>> init("dense0_weight", w); init("dense0_bias", b)
>>> bool(abs(w).max() < (6 / 1040) ** 0.5), float(abs(b).max())
(True, 0.0)
"""

from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np

from polyinit import _validate as check
from polyinit.backends import numpy as reference
from polyinit.errors import NotExpressibleError, PolyinitError
from polyinit.layout import OUT_IN, Layout
from polyinit.plan import Plan, resolve
from polyinit.serialize import from_dict, to_dict
from polyinit.spec import Spec

NAME = "mxnet"
DEFAULT_LAYOUT = OUT_IN
ANY_LAYOUT = True

try:  # The real mxnet 1.x, where it imports (it needs numpy < 1.24).
    import mxnet as _mx

    _Base: Any = _mx.init.Initializer
except (ImportError, AttributeError):  # absent, or a stray folder named mxnet on sys.path
    _mx = None
    _Base = object

# MXNet's suffix table (initializer.py, 1.9.1): name suffix -> constant, or None for the spec.
_SUFFIXES = (
    ("weight_quantize", None),
    ("bias_quantize", 0.0),
    ("moving_inv_var", 0.0),
    ("moving_mean", 0.0),
    ("moving_var", 1.0),
    ("moving_avg", 0.0),
    ("weight", None),
    ("bias", 0.0),
    ("gamma", 1.0),
    ("beta", 0.0),
    ("min", 0.0),
    ("max", 1.0),
)


def _write(arr: Any, values: np.ndarray) -> None:
    if isinstance(arr, np.ndarray):
        arr[...] = values
    else:  # an mx.nd.NDArray
        arr[:] = values.astype(arr.dtype)


def _dtype_name(arr: Any) -> str:
    try:
        name = np.dtype(arr.dtype).name
    except (AttributeError, TypeError):
        raise PolyinitError(f"mxnet backend: expected an array with a dtype, received {arr!r}") from None
    if name not in ("float16", "float32", "float64"):
        raise PolyinitError(f"mxnet backend: cannot initialise dtype {name}; floating dtypes only")
    return name


class Polyinit(_Base):
    """An MXNet initializer for ``spec`` (the weights) with MXNet's suffix defaults elsewhere."""

    def __init__(self, spec: Spec | dict, layout: Layout | str = DEFAULT_LAYOUT, seed: Optional[int] = None):
        self.spec = from_dict(spec) if isinstance(spec, dict) else spec
        if not isinstance(self.spec, Spec):
            raise PolyinitError(f"mxnet backend: expected a polyinit spec, received {spec!r}")
        self.layout = check.layout("mxnet backend", layout) or DEFAULT_LAYOUT
        seed = None if seed is None else check.seed("mxnet backend", seed)
        kwargs = {"spec": to_dict(self.spec), "layout": self.layout.pattern, "seed": seed}
        if _mx is not None:
            super().__init__(**kwargs)
        self._kwargs = kwargs
        # Unseeded: each weight takes its seed from MXNet's own generator (see _unseeded_rng).
        self._rng = None if seed is None else np.random.default_rng(seed)

    def dumps(self) -> str:
        """``["polyinit", {kwargs}]``, the JSON form ``mx.init.create`` reads."""
        return json.dumps([type(self).__name__.lower(), self._kwargs])

    def __call__(self, desc: Any, arr: Any) -> None:
        name = str(desc)
        attrs = getattr(desc, "attrs", None) or {}
        init = attrs.get("__init__")
        if init:
            # Gluon sets __init__ on every parameter: the parameter's own initializer wins
            # whatever the name, exactly as in MXNet.
            if isinstance(init, Polyinit):
                init._init_weight(name, arr)
            elif _mx is not None:
                _mxnet_weight_rule(_mx.init.create(init), desc, arr)
            elif init in ("zeros", "ones"):
                _write(arr, np.full(arr.shape, 0.0 if init == "zeros" else 1.0))
            else:
                raise PolyinitError(
                    f"mxnet backend: parameter {name!r} asks for initializer {init!r}, which needs the real mxnet"
                )
            return
        for suffix, value in _SUFFIXES:
            if name.endswith(suffix):
                if value is None:
                    self._init_weight(name, arr)
                else:
                    _write(arr, np.full(arr.shape, value))
                return
        raise PolyinitError(
            f"mxnet backend: no rule for parameter {name!r}; MXNet initialises only "
            "names ending in weight, bias, gamma, beta, moving_mean, moving_var, ..."
        )

    def _init_weight(self, name: Any, arr: Any) -> None:  # MXNet's subclass hook: see _mxnet_weight_rule
        try:
            plan = resolve(
                self.spec, check.shape("mxnet backend", getattr(arr, "shape", None)), self.layout, _dtype_name(arr)
            )
        except PolyinitError as error:
            raise type(error)(f"mxnet backend, parameter {str(name)!r}: {error}") from None
        with check.framework_errors("mxnet", f"writing parameter {str(name)!r}"):
            _write(arr, reference.draw(plan, self._rng or _unseeded_rng()))


def _unseeded_rng() -> np.random.Generator:
    """An unseeded ``Polyinit`` follows MXNet's own seeding, as ``mx.init.Xavier`` does: each weight
    takes a seed from MXNet's global generator, so ``mx.random.seed(0)`` makes it reproducible.
    Without the real mxnet there is no such generator: fresh OS entropy, no global state touched."""
    if _mx is None:
        return np.random.default_rng()
    seed = _mx.nd.random.randint(0, 2**31 - 1, shape=(1,), dtype="int32", ctx=_mx.cpu()).asscalar()
    return np.random.default_rng(int(seed))


if _mx is not None:
    _mx.init.register(Polyinit)


def _mxnet_weight_rule(init: Any, desc: Any, arr: Any) -> None:
    """The one use of MXNet's private API. ``Initializer._init_weight`` is the hook MXNet's
    ``__call__`` runs for a parameter it treats as a weight, and subclasses override it (``Polyinit``
    does, above, as MXNet's docs ask). A parameter whose ``__init__`` attribute names another
    initializer must get that initializer's weight rule whatever its name suffix, exactly as
    MXNet's own ``__call__`` does for it; ``_init_weight`` is the only entry point to that rule
    (calling the initializer would dispatch on the suffix again). Checked against mxnet 1.9.1
    (python/mxnet/initializer.py, ``Initializer.__call__``)."""
    init._init_weight(desc, arr)


def initializer(spec: Spec, layout: Layout = DEFAULT_LAYOUT, seed: Optional[int] = None) -> Polyinit:
    """An MXNet initializer for ``spec``; see ``Polyinit``."""
    return Polyinit(spec, layout, seed)


DTYPES = ("float16", "float32", "float64")  # MXNet 1.x has no bfloat16 NDArray for initialisers


def sample_plan(plan: Plan, seed: int) -> Any:
    """One draw through ``Polyinit(spec, layout, seed)``, filling a fresh array as a weight, the MXNet way."""
    if plan.dtype not in DTYPES:
        raise PolyinitError(
            f"mxnet backend: cannot initialise dtype {plan.dtype}; floating dtypes only ({', '.join(DTYPES)})"
        )
    if _mx is not None and (plan.shape == () or plan.size == 0):
        raise NotExpressibleError(
            "mxnet backend: MXNet 1.x NDArrays have no 0-d or zero-size "
            f"shape; refusing {plan.spec!r} at shape {plan.shape}"
        )
    arr = _mx.nd.zeros(plan.shape, dtype=plan.dtype) if _mx is not None else np.empty(plan.shape, plan.dtype)
    Polyinit(plan.spec, plan.layout or DEFAULT_LAYOUT, seed)("param_weight", arr)
    return arr


def draw(plan: Plan, rng: np.random.Generator) -> np.ndarray:
    """A host draw of ``plan``, as ``Polyinit`` makes before writing it (the numpy reference's)."""
    return reference.draw(plan, rng)


def draw_plan(plan: Plan, seed: int) -> np.ndarray:
    """Exactly ``plan`` (no re-resolving) as ``Polyinit`` draws it, on the host, from ``seed``."""
    return reference.draw(plan, np.random.default_rng(seed))


def to_numpy(arr: Any) -> np.ndarray:
    return np.asarray(arr if isinstance(arr, np.ndarray) else arr.asnumpy(), dtype=np.float64)


def dtype_of(arr: Any) -> str:
    return np.dtype(arr.dtype).name


def device_of(arr: Any) -> str:
    return "cpu" if isinstance(arr, np.ndarray) else str(arr.context)


def default_device() -> str:
    return str(_mx.current_context()) if _mx is not None else "cpu"


def draw_portable(plan: Plan, seed: int, key: str | int = "") -> np.ndarray:
    """The portable draw of ``plan`` on the host (the numpy reference backend's): the same float32
    values, bit for bit, as ``draw_portable`` of every other backend with the same (seed, key) (see
    ``polyinit.portable``). ``Polyinit``, the MXNet initializer, does not write these: it draws
    from its own seeded numpy generator; portable values reach a Gluon block through
    ``apply(block, rules, portable=True)``, which writes the result of this function."""
    return reference.draw_portable(plan, seed, key)
