"""The one error family of polyinit.

Every message names what was wrong (argument, value) and where (spec, shape, parameter path,
backend) when those exist, so a user never has to guess which of fifty layers failed.
"""

from __future__ import annotations


class PolyinitError(ValueError):
    """Base class of every error polyinit raises on bad input."""


class SpecError(PolyinitError):
    """A spec was built with an invalid argument (negative std, low >= high, unknown mode, ...)."""


class ShapeError(PolyinitError):
    """A spec cannot be resolved for this shape and layout (rank too low for fans, bad axes, ...)."""


class SerializationError(PolyinitError):
    """A dict or JSON document is not a valid serialised spec (unknown key, kind or version)."""


class NotExpressibleError(PolyinitError):
    """A backend cannot draw a plan exactly; polyinit refuses rather than approximates."""


class BackendUnavailableError(PolyinitError, ImportError):
    """A backend's framework is not installed; the message names the extra to install."""


class NonFiniteError(SpecError):
    """A plan could write a non-finite value: a divisor whose support reaches 0, or values (or
    intermediate results) beyond the range of the dtype drawn in. Refused at ``resolve``."""


class BackendError(PolyinitError):
    """A framework raised while a backend drew a plan; the message names the backend, the plan
    and the framework's own error (chained as ``__cause__``)."""
