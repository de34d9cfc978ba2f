"""Threefry-2x32 with 20 rounds, once over an array interface and once over Python ints.

Per round r: ``x0 += x1; x1 = rotl(x1, R[r % 8]); x1 ^= x0``, with R = 13 15 26 6 17 29 16 24;
the key schedule is (k0, k1, k0 ^ k1 ^ 0x1BD11BDA), injected before round 0 and after every 4th
round s as ``x0 += ks[s % 3]; x1 += ks[(s + 1) % 3] + s`` (Random123 ``threefry.h``).

>>> [hex(w) for w in threefry2x32_scalar((0x13198a2e, 0x03707344), (0x243f6a88, 0x85a308d3))]
['0xc4923a9c', '0x483df7a0']
"""

from __future__ import annotations

from typing import Any

ROTATIONS = (13, 15, 26, 6, 17, 29, 16, 24)
PARITY = 0x1BD11BDA
ROUNDS = 20
MASK = 0xFFFFFFFF


def _schedule(key: tuple[int, int]) -> tuple[int, int, int]:
    k0, k1 = key[0] & MASK, key[1] & MASK
    return k0, k1, k0 ^ k1 ^ PARITY


def threefry2x32(ops: Any, key: tuple[Any, Any], x0: Any, x1: Any) -> tuple[Any, Any]:
    """Encrypt the counter words ``(x0, x1)`` (arrays of 32-bit words in ``ops``' representation)
    under ``key``, with ``ops.add``/``xor``/``rotl`` only. The key is two Python ints, or two
    scalar words (a compiled backend passes them as arguments, so a new seed or parameter needs no
    new program). The counter arrays are consumed: a backend may encrypt them in place."""
    if isinstance(key[0], int):
        ks = _schedule(key)
    else:
        ks = (key[0], key[1], ops.xor(ops.xor(key[1], key[0]), PARITY))
    x0, x1 = ops.add(x0, ks[0]), ops.add(x1, ks[1])
    for r in range(ROUNDS):
        x0 = ops.add(x0, x1)
        x1 = ops.xor(ops.rotl(x1, ROTATIONS[r % 8]), x0)
        if r % 4 == 3:
            s = r // 4 + 1
            x0 = ops.add(x0, ks[s % 3])
            extra = ks[(s + 1) % 3]
            x1 = ops.add(x1, (extra + s) & MASK) if isinstance(extra, int) else ops.add(ops.add(x1, extra), s)
    return x0, x1


def threefry2x32_scalar(key: tuple[int, int], counter: tuple[int, int]) -> tuple[int, int]:
    """The same cipher on Python ints (key derivation on the host)."""
    ks = _schedule(key)
    x0, x1 = (counter[0] + ks[0]) & MASK, (counter[1] + ks[1]) & MASK
    for r in range(ROUNDS):
        x0 = (x0 + x1) & MASK
        rot = ROTATIONS[r % 8]
        x1 = (((x1 << rot) | (x1 >> (32 - rot))) & MASK) ^ x0
        if r % 4 == 3:
            s = r // 4 + 1
            x0 = (x0 + ks[s % 3]) & MASK
            x1 = (x1 + ks[(s + 1) % 3] + s) & MASK
    return x0, x1
