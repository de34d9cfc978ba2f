"""Backend registry: name -> module path, imported lazily and cached; and the backend contract.

Every registered backend meets ``Backend`` (``polyinit.backends.contract``: the members each
backend module provides, which are all the conformance runner calls). A new framework is one new
module plus ``register("name", "its.module.path", framework="its_framework")``: nothing existing
changes. Nothing here imports a framework. ``backend_for(tensor)`` finds a backend from a tensor's type
through ``sys.modules`` only, so a framework that was never imported is never imported by asking.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from polyinit.backends.contract import Backend, missing_members
from polyinit.errors import BackendUnavailableError, PolyinitError

__all__ = [
    "REGISTRY",
    "Backend",
    "available_backends",
    "backend_for",
    "get_backend",
    "missing_members",
    "register",
    "unregister",
]

# name -> (module path, the framework module it needs, the pip extra that installs it)
REGISTRY: dict[str, tuple[str, str, str]] = {
    "numpy": ("polyinit.backends.numpy", "numpy", ""),
    "torch": ("polyinit.backends.torch", "torch", "torch"),
    "keras": ("polyinit.backends.keras", "keras", "keras"),
    "jax": ("polyinit.backends.jax", "jax", "jax"),
    "mxnet": ("polyinit.backends.mxnet", "numpy", ""),
    # The same module where the real mxnet is absent: MXNet's initializer protocol over numpy arrays.
    "mxnet-protocol": ("polyinit.backends.mxnet", "numpy", ""),
}
_LOADED: dict[str, ModuleType] = {}


def get_backend(name: str) -> ModuleType:
    """The backend module ``name``, importing its framework now.

    >>> get_backend("numpy").NAME
    'numpy'
    """
    if name in _LOADED:
        return _LOADED[name]
    if name not in REGISTRY:
        raise PolyinitError(f"unknown backend {name!r}; known backends: {', '.join(REGISTRY)}")
    module_path, framework, extra = REGISTRY[name]
    try:
        importlib.import_module(framework)
    except ImportError as error:
        raise BackendUnavailableError(
            f"backend {name!r} needs {framework}, which is not installed ({error}); "
            f"install it with: pip install 'polyinit[{extra}]'"
        ) from None
    _LOADED[name] = importlib.import_module(module_path)
    return _LOADED[name]


def register(name: str, backend: str | object, *, framework: str = "numpy", extra: str = "") -> None:
    """Add a backend: a module path (imported on first use, once ``framework`` imports) or an
    object that meets ``Backend`` already. Refuses an object that does not, naming what it lacks.

    >>> from types import SimpleNamespace
    >>> register("toy", SimpleNamespace(NAME="toy"))
    Traceback (most recent call last):
    ...
    polyinit.errors.PolyinitError: register: backend 'toy' lacks DTYPES, DEFAULT_LAYOUT, ANY_LAYOUT, draw, initializer, sample_plan, draw_plan, to_numpy, dtype_of, device_of, default_device of the backend contract (polyinit.backends.contract)
    """  # noqa: E501  # a doctest's expected error is one line
    if not isinstance(name, str) or not name:
        raise PolyinitError(f"register: name must be a non-empty string, received {name!r}")
    if isinstance(backend, str):
        REGISTRY[name] = (backend, framework, extra)
        _LOADED.pop(name, None)
        return
    lacking = missing_members(backend)
    if lacking:
        raise PolyinitError(
            f"register: backend {name!r} lacks {', '.join(lacking)} of the backend contract "
            "(polyinit.backends.contract)"
        )
    REGISTRY[name] = (f"<object {type(backend).__name__}>", framework, extra)
    _LOADED[name] = backend  # type: ignore[assignment]


def unregister(name: str) -> None:
    """Remove a backend added with ``register`` (tests use this to clean up)."""
    REGISTRY.pop(name, None)
    _LOADED.pop(name, None)


def available_backends() -> list[str]:
    """Backends whose framework imports here (this imports them). Without the real mxnet the
    MXNet entry is ``"mxnet-protocol"``: MXNet's initializer protocol drawn into numpy arrays."""
    names = []
    for name in REGISTRY:
        try:
            module = get_backend(name)
        except BackendUnavailableError:
            continue
        if name.startswith("mxnet") and (name == "mxnet-protocol") != (module._mx is None):
            continue  # one of the two names, whichever says what this machine has
        names.append(name)
    return names


# (module that must already be loaded, dotted type name) -> backend
_TENSOR_TYPES = (
    ("torch", "torch.Tensor", "torch"),
    ("jax", "jax.Array", "jax"),
    ("numpy", "numpy.ndarray", "numpy"),
)


def backend_for(tensor: object) -> ModuleType:
    """The backend for ``tensor``'s type, looked up without importing any framework."""
    for module_name, type_path, backend in _TENSOR_TYPES:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        cls: object = module  # the module, then each attribute along type_path (None where one is missing)
        for part in type_path.split(".")[1:]:
            cls = getattr(cls, part, None)
        if isinstance(cls, type) and isinstance(tensor, cls):
            return get_backend(backend)
    raise PolyinitError(
        f"no backend for a {type(tensor).__module__}.{type(tensor).__name__}; known backends: {', '.join(REGISTRY)}"
    )
