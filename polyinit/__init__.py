"""polyinit: write a weight-initialisation scheme once, draw it natively in every framework.

>>> import numpy as np, polyinit
>>> plan = polyinit.resolve(polyinit.glorot_uniform(), (256, 784), polyinit.OUT_IN)
>>> plan.describe()
'uniform(-0.07596, 0.07596)'

``import polyinit`` imports numpy only; a framework is imported when its backend is asked for.
"""

from typing import TYPE_CHECKING, Any

from polyinit.backends import available_backends, backend_for, get_backend
from polyinit.errors import (
    BackendError,
    BackendUnavailableError,
    NonFiniteError,
    NotExpressibleError,
    PolyinitError,
    SerializationError,
    ShapeError,
    SpecError,
)
from polyinit.gain import calculate_gain
from polyinit.layout import IN_OUT, OUT_IN, Fans, Layout, compute_fans, preset
from polyinit.moments import Stats
from polyinit.plan import Plan, resolve
from polyinit.schemes import (
    constant,
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    kaiming_normal,
    kaiming_uniform,
    lecun_normal,
    lecun_uniform,
    lstm_bias,
    lstm_kernel,
    ones,
    xavier_normal,
    xavier_uniform,
    zeros,
)
from polyinit.spec import (
    BilinearUpsampling,
    Blocks,
    Constant,
    DeltaOrthogonal,
    Dirac,
    Identity,
    Normal,
    Normalized,
    Orthogonal,
    Sparse,
    Spec,
    TruncatedNormal,
    Uniform,
    VarianceScaling,
    clip,
    normalized,
    where,
)

__version__ = "0.1.0"

# Loaded on first use (PEP 562), to keep ``import polyinit`` cheap: the rest of the library does
# not need them, and they bring json and the model-record modules (benchmarks/bench_import.py).
_LAZY = {
    "from_dict": "polyinit.serialize",
    "from_json": "polyinit.serialize",
    "to_dict": "polyinit.serialize",
    "to_json": "polyinit.serialize",
    # The implementation module is ``transferring``: a module named ``transfer`` would, once
    # imported, shadow this function on the package.
    "transfer": "polyinit.transferring",
    "TransferError": "polyinit.transferring",
}

if TYPE_CHECKING:
    from polyinit.serialize import from_dict, from_json, to_dict, to_json
    from polyinit.transferring import TransferError, transfer


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'polyinit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # the next lookup finds it without this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "IN_OUT",
    "OUT_IN",
    "BackendError",
    "BackendUnavailableError",
    "BilinearUpsampling",
    "Blocks",
    "Constant",
    "DeltaOrthogonal",
    "Dirac",
    "Fans",
    "Identity",
    "Layout",
    "NonFiniteError",
    "Normal",
    "Normalized",
    "NotExpressibleError",
    "Orthogonal",
    "Plan",
    "PolyinitError",
    "SerializationError",
    "ShapeError",
    "Sparse",
    "Spec",
    "SpecError",
    "Stats",
    "TransferError",
    "TruncatedNormal",
    "Uniform",
    "VarianceScaling",
    "available_backends",
    "backend_for",
    "calculate_gain",
    "clip",
    "compute_fans",
    "constant",
    "from_dict",
    "from_json",
    "get_backend",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "lecun_normal",
    "lecun_uniform",
    "lstm_bias",
    "lstm_kernel",
    "normalized",
    "ones",
    "preset",
    "resolve",
    "to_dict",
    "to_json",
    "transfer",
    "where",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]


def _register_with_a_loaded_keras() -> None:
    """Where Keras is imported already, register ``PolyinitInitializer`` now, so that
    ``keras.models.load_model`` right after ``import polyinit`` finds it. Where it is not, import
    nothing: the light import stays light, and ``import polyinit.backends.keras`` registers it
    whenever Keras comes later."""
    import sys

    if "keras" in sys.modules:
        try:  # noqa: SIM105 (contextlib.suppress would cost the light import)
            import polyinit.backends.keras  # noqa: F401  (registration is the import's side effect)
        except (ImportError, AttributeError, PolyinitError):  # a Keras 2, or one half imported
            pass


_register_with_a_loaded_keras()
