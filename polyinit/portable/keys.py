"""Stream keys from (seed, parameter key), and what portable mode can draw."""

from __future__ import annotations

import hashlib
import math

from polyinit import nodes as n
from polyinit.errors import NotExpressibleError, PolyinitError
from polyinit.plan import Plan
from polyinit.portable.threefry import MASK, threefry2x32_scalar

# Element i of a leaf uses counter word i // 2 < 2^32; kept at 2^32 so that a flat index fits a
# uint32 in every framework (JAX without x64 has no 64-bit ints).
MAX_LEAF_SIZE = 1 << 32


def _key_hash(key: str | int) -> int:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise PolyinitError(f"portable draw: key must be a str (a parameter path) or an int, received key={key!r}")
    tag = ("s:" + key) if isinstance(key, str) else f"i:{key}"
    return int.from_bytes(hashlib.blake2b(tag.encode("utf-8"), digest_size=8).digest(), "little")


def stream_key(seed: int, key: str | int = "") -> tuple[int, int]:
    """The Threefry key of parameter ``key`` under ``seed``:
    ``threefry2x32(key=(seed lo, seed hi), counter=(h lo, h hi))``, h = BLAKE2b-64 of the key.

    >>> stream_key(0, "w") == stream_key(0, "w") != stream_key(1, "w")
    True
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 64:
        raise PolyinitError(f"portable draw: seed must be an int in [0, 2**64), received seed={seed!r}")
    h = _key_hash(key)
    return threefry2x32_scalar((seed & MASK, seed >> 32), (h & MASK, h >> 32))


def check_portable(plan: Plan, backend: str) -> None:
    """Refuse what portable mode cannot make bit-identical, naming the spec and the backend."""
    if not isinstance(plan, Plan):
        raise PolyinitError(f"{backend} backend: draw_portable expects a resolved Plan, received {plan!r}")
    for leaf in plan.leaves:
        if isinstance(leaf, n.OrthogonalMatrix):
            raise NotExpressibleError(
                f"{backend} backend, portable mode: {plan.spec!r} needs a QR decomposition, whose "
                "rounding differs between LAPACK builds, so it cannot be bit-identical across "
                "frameworks; draw it with the backend's native draw instead"
            )
        if math.prod(leaf.shape) > MAX_LEAF_SIZE:
            raise NotExpressibleError(
                f"{backend} backend, portable mode: a random leaf of "
                f"{math.prod(leaf.shape)} elements exceeds 2**32; refusing {plan.spec!r}"
            )
