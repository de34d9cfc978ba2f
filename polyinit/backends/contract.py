"""The written backend contract: what every backend module provides, and all the conformance
runner ever calls.

A backend is a module (or any object) with these members; ``polyinit.backends.Backend`` is the
``typing.Protocol`` that states them, and ``missing_members`` names what an object lacks. A new
framework is one module that meets it, registered with ``polyinit.backends.register``.

Draws
    ``draw(plan, source)``           the plan's primitives drawn natively from the framework's own
                                     randomness (numpy Generator, torch Generator, JAX key, Keras
                                     seed); the result has the plan's shape and dtype.
    ``initializer(spec, layout)``    the public entry point users call (torch in-place fn, JAX
                                     ``init(key, shape, dtype)``, Keras ``Initializer``, MXNet
                                     ``Polyinit``, numpy ``fn(shape, rng, dtype)``).
    ``sample_plan(plan, seed)``      one draw of ``resolve(plan.spec, plan.shape, plan.layout,
                                     plan.dtype)`` through ``initializer``, seeded natively from the
                                     int ``seed``: what the conformance runner checks.
    ``draw_plan(plan, seed)``        exactly ``plan`` (no re-resolving) through ``draw`` from ``seed``,
                                     for plans that are not a spec's (flat copies, broken variants).

Reading a draw back
    ``to_numpy(array)``              a float64 ``numpy.ndarray`` with the same values.
    ``dtype_of(array)``              the polyinit dtype name of a native array ("float32", ...).
    ``device_of(array)``             where a native array lives, in the framework's words.
    ``default_device()``             where a fresh draw should land (``device_of`` compares to it).

Constants
    ``NAME``, ``DTYPES`` (dtype names it draws), ``DEFAULT_LAYOUT`` (its frameworks' weight layout),
    ``ANY_LAYOUT`` (True when ``sample_plan`` honours any layout it is given, so the runner may top
    small tensors up with one draw of a tensor with an extra ``batch`` axis; False for a fixed
    function such as a user's own initializer, which then gets repeated draws of the same shape).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from polyinit.layout import Layout

MEMBERS = (
    "NAME",
    "DTYPES",
    "DEFAULT_LAYOUT",
    "ANY_LAYOUT",
    "draw",
    "initializer",
    "sample_plan",
    "draw_plan",
    "to_numpy",
    "dtype_of",
    "device_of",
    "default_device",
)


@runtime_checkable
class Backend(Protocol):
    """The backend contract (see the module docstring for each member's meaning)."""

    NAME: str
    DTYPES: tuple[str, ...]
    DEFAULT_LAYOUT: Layout
    ANY_LAYOUT: bool

    def draw(self, plan: Any, source: Any) -> Any: ...

    def initializer(self, spec: Any, layout: Layout = ...) -> Any: ...

    def sample_plan(self, plan: Any, seed: int) -> Any: ...

    def draw_plan(self, plan: Any, seed: int) -> Any: ...

    def to_numpy(self, array: Any) -> Any: ...

    def dtype_of(self, array: Any) -> str: ...

    def device_of(self, array: Any) -> str: ...

    def default_device(self) -> str: ...


def missing_members(backend: object) -> list[str]:
    """The contract's members ``backend`` lacks or has of the wrong kind (empty when it conforms).

    >>> from types import SimpleNamespace
    >>> missing_members(SimpleNamespace(NAME="toy", DTYPES=("float32",)))[:2]
    ['DEFAULT_LAYOUT', 'ANY_LAYOUT']
    """
    missing = []
    for name in MEMBERS:
        value = getattr(backend, name, None)
        if value is None:
            missing.append(name)
        elif name == "NAME" and not isinstance(value, str):
            missing.append(name)
        elif name == "DTYPES" and not (isinstance(value, tuple) and all(isinstance(d, str) for d in value)):
            missing.append(name)
        elif name == "DEFAULT_LAYOUT" and not isinstance(value, Layout):
            missing.append(name)
        elif name == "ANY_LAYOUT" and not isinstance(value, bool):
            missing.append(name)
        elif name.islower() and not callable(value):
            missing.append(name)
    return missing
