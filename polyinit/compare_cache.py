"""On-disk cache of ``polyinit compare`` measurements, keyed by the framework's installed version,
the arguments, polyinit's version and the measuring code itself, so a repeated compare imports no
framework. The folder is ``$POLYINIT_CACHE``, else ``$XDG_CACHE_HOME/polyinit``, else
``~/.cache/polyinit``. Versions are read from package metadata, which imports nothing.

>>> len(key("torch", "2.13.0", layer="dense", seed=0))
64
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import polyinit

# The distribution that installs each framework.


def folder() -> Path:
    explicit = os.environ.get("POLYINIT_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "polyinit"


def installed_version(framework: str) -> Optional[str]:
    from polyinit.frameworks import get_framework

    record = get_framework(framework)
    if not record.distribution or record.measurer is None:
        return None  # nothing to measure it with: closed form only
    try:
        return metadata.version(record.distribution)
    except metadata.PackageNotFoundError:
        return None


def _code_digest() -> str:
    """The measuring code's own bytes (``measure.py`` and the framework records, which hold the
    measurers): a change to how polyinit measures invalidates old entries. Read, never imported."""
    here = Path(__file__).parent
    digest = hashlib.sha256(here.joinpath("measure.py").read_bytes())
    for path in sorted(here.joinpath("frameworks").glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def key(framework: str, version: str, **arguments: Any) -> str:
    text = json.dumps(
        {
            "framework": framework,
            "version": version,
            "polyinit": polyinit.__version__,
            "code": _code_digest(),
            **arguments,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def load(digest: str, depth: Optional[int] = None) -> Optional[dict]:
    """The cached measurement, or None (a miss: measure again). An entry that is not a valid
    measurement (not JSON, nested too deep to parse, ``{}``, missing keys, a curve whose length is
    not ``depth``, values that are not numbers) is a miss with a warning naming the file: a cache
    must never crash a compare, nor be printed as a measurement."""
    path = folder() / f"compare-{digest}.json"
    try:
        text = path.read_text()
    except OSError:
        return None  # absent or unreadable: measure again
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: a document nested 100,000 deep
        _warn_invalid(path, f"not readable JSON ({type(error).__name__})")
        return None
    problem = _problem(value, depth)
    if problem is not None:
        _warn_invalid(path, problem)
        return None
    return value


def _problem(value: object, depth: Optional[int]) -> Optional[str]:
    """What is wrong with a cache entry, or None: a dict with ``linear``/``activated`` (``depth``
    numbers each, None for NaN) and ``weight``/``bias`` (lists of numbers)."""
    if not isinstance(value, dict):
        return f"a {type(value).__name__}, not a measurement"
    for name in ("linear", "activated", "weight", "bias"):
        series = value.get(name)
        if not isinstance(series, list):
            return f"no list {name!r}"
        if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in series):
            return f"{name!r} holds values that are not numbers"
    for name in ("linear", "activated"):
        if depth is not None and len(value[name]) != depth:
            return f"{name!r} has {len(value[name])} values for depth {depth}"
    return None


def _warn_invalid(path: Path, problem: str) -> None:
    warnings.warn(f"polyinit compare: ignoring the cache entry {str(path)!r}: {problem}; measuring again", stacklevel=3)


def store(digest: str, value: dict) -> None:
    """Write atomically (a temporary file renamed), and never fail the compare over the cache."""
    target = folder() / f"compare-{digest}.json"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(value))
        partial.replace(target)
    except OSError:
        pass
