"""Specs to and from plain dicts and JSON, with a schema version tag.

>>> from polyinit import Uniform
>>> to_dict(Uniform(low=-1.0, high=1.0))
{'polyinit': 1, 'spec': {'kind': 'uniform', 'low': -1.0, 'high': 1.0, 'stream': 0}}
>>> from_json(to_json(Uniform(low=-1.0, high=1.0))) == Uniform(low=-1.0, high=1.0)
True

The round trip is exact: floats go through ``repr``-exact JSON numbers. An unknown key, kind or
version raises ``SerializationError``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from polyinit.errors import PolyinitError, SerializationError
from polyinit.spec import MAX_DEPTH, SPEC_KINDS, Spec

SCHEMA_VERSION = 1


def _encode(spec: Spec) -> dict:
    out: dict[str, Any] = {"kind": spec.kind}
    for field in dataclasses.fields(spec):  # type: ignore[arg-type]
        value = getattr(spec, field.name)
        if isinstance(value, Spec):
            value = _encode(value)
        elif isinstance(value, tuple):
            value = [_encode(v) for v in value]
        out[field.name] = value
    return out


def _decode(data: Any, where: str, depth: int = 0) -> Spec:
    # Specs nest at most MAX_DEPTH levels; a deeper document is refused before it is walked.
    if depth > MAX_DEPTH:
        raise SerializationError(f"{where[:80]}...: nested deeper than {MAX_DEPTH} levels, the most a spec may have")
    if not isinstance(data, dict):
        raise SerializationError(f"{where}: expected a spec object, received {data!r}")
    kind = data.get("kind")
    cls = SPEC_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise SerializationError(f"{where}: unknown kind {kind!r}; known kinds: {', '.join(sorted(SPEC_KINDS))}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names) - {"kind"})
    if unknown:
        raise SerializationError(f"{where}: unknown key(s) {unknown} for kind {kind!r}; expected {sorted(names)}")
    args = {}
    for name, value in data.items():
        if name == "kind":
            continue
        if isinstance(value, dict):
            value = _decode(value, f"{where}.{name}", depth + 1)
        elif isinstance(value, list):
            value = tuple(_decode(v, f"{where}.{name}[{i}]", depth + 1) for i, v in enumerate(value))
        args[name] = value
    try:
        return cls(**args)
    except PolyinitError as error:
        raise SerializationError(f"{where}: {error}") from error
    except TypeError as error:  # a missing required argument
        raise SerializationError(f"{where}: {error}") from error


def to_dict(spec: Spec) -> dict:
    """``{"polyinit": 1, "spec": {...}}``: plain data, JSON-ready."""
    if not isinstance(spec, Spec):
        raise SerializationError(f"to_dict: expected a polyinit spec, received {spec!r}")
    return {"polyinit": SCHEMA_VERSION, "spec": _encode(spec)}


def from_dict(data: Any) -> Spec:
    """The spec a ``to_dict`` document describes; strict about keys, kinds and the version."""
    if not isinstance(data, dict):
        raise SerializationError(f"from_dict: expected a dict, received {data!r}")
    unknown = sorted(set(data) - {"polyinit", "spec"})
    if unknown:
        raise SerializationError(f"from_dict: unknown top-level key(s) {unknown}")
    version = data.get("polyinit")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise SerializationError(
            f"from_dict: unsupported schema version {version!r}; this polyinit reads version {SCHEMA_VERSION}"
        )
    return _decode(data.get("spec"), "spec")


def to_json(spec: Spec, **kwargs: Any) -> str:
    """JSON text of ``to_dict(spec)``. Specs refuse NaN and infinities except for truncation
    bounds, which may be infinite and are written as ``Infinity`` (as Python's json reads)."""
    return json.dumps(to_dict(spec), allow_nan=True, **kwargs)


def from_json(text: str) -> Spec:
    """The spec in a ``to_json`` document."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as error:
        raise SerializationError(f"from_json: not valid JSON: {error}") from None
    except RecursionError:
        raise SerializationError(
            f"from_json: the document nests deeper than Python's JSON reader "
            f"allows; specs nest at most {MAX_DEPTH} levels"
        ) from None
    return from_dict(data)
