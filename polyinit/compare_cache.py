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
    text = json.dumps({"framework": framework, "version": version, "polyinit": polyinit.__version__,
                       "code": _code_digest(), **arguments}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def load(digest: str) -> Optional[dict]:
    try:
        return json.loads((folder() / f"compare-{digest}.json").read_text())
    except (OSError, ValueError):
        return None  # absent or unreadable: measure again


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
