"""Fused CPU kernels for portable draws: the same float32 values as ``floats`` over an ``Ops``, in
one pass, compiled by numba (optional: ``pip install polyinit[fast]``).

The reference path (``evaluate`` over ``xp_numpy.Ops`` / ``xp_torch.Ops``) runs the cipher as 110
whole-array passes and each float step as another pass: on CPU it is bound by memory traffic and
per-call overhead (0.2 to 0.4 GB/s for a uniform). Here each block of 1024 counter pairs is
encrypted in registers (LLVM vectorises the 20 rounds across pairs) and turned into floats before
it leaves the cache, which is what "one fused kernel per chunk" means.

**Why the values are the same, bit for bit.** Every step below is the same IEEE 754 float32
operation, on the same operands and in the same order, as in ``polyinit.portable.floats``:
numba types a float32 op with float32 operands (every constant is an ``np.float32`` global,
frozen into the code with its type) as a float32 op; numba compiles without fast-math, so LLVM
neither reassociates nor contracts a product and an addition into a fused multiply-add; integer
words are ``uint32`` and wrap modulo 2^32 exactly as the cipher asks. ``tests/test_portable_fused.py``
checks every distribution against the reference path on 10^6 values at odd offsets and on
hand-picked words (the tails, both ends of each interval), and the portable bit-identity tests
compare it against JAX and TensorFlow, whose draws XLA compiles from the same ``floats`` code.

Only elementwise random leaves are fused (uniform, normal, truncated normal); whatever a plan
combines them with still runs through ``Ops``.

>>> import numpy as np, polyinit
>>> from polyinit.portable import fused, stream_key
>>> if fused.available():
...     leaf = polyinit.resolve(polyinit.Uniform(low=0.0, high=1.0), (4,)).root
...     out = np.empty(4, np.float32)
...     _ = fused.fill(leaf, stream_key(0, "w"), 0, 0, out)
...     assert (0 <= out).all() and (out < 1).all()
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from polyinit import nodes as n
from polyinit.moments import normal_cdf

_kernels: Any = None  # the compiled module-level kernels, built on first use
_unavailable: "str | None" = None


def available() -> bool:
    """Whether fused kernels can run here: numba imports and ``POLYINIT_PORTABLE_FUSED`` is not
    ``0`` (set it to force the reference path, e.g. to compare the two)."""
    if os.environ.get("POLYINIT_PORTABLE_FUSED", "1") == "0":
        return False
    return _build() is not None


def _build() -> Any:
    global _kernels, _unavailable
    if _kernels is None and _unavailable is None:
        try:
            from polyinit.portable import _fused_kernels
        except ImportError as error:  # numba absent, or too old/new for this numpy
            _unavailable = str(error)
        else:
            _kernels = _fused_kernels
    return _kernels


_F32 = np.float32


def _leaf_args(node: n.Node) -> tuple:
    """The kernel's arguments for a random leaf: (kind, shift, scale, has shift, has scale, a, b,
    mirror, P(b) - P(a), P(a)), with the host-side constants that ``floats`` computes in Python
    (the interval's CDF values, the mirror) computed here the same way. ``has shift/scale`` are
    decided on the unrounded values, as ``floats._affine`` decides them."""
    none = (_F32(0), _F32(0), False, _F32(0), _F32(0))
    if isinstance(node, n.Uniform):
        scale = node.high - node.low
        return (0, _F32(node.low), _F32(scale), node.low != 0.0, scale != 1.0) + none
    if isinstance(node, n.Normal):
        return (1, _F32(node.mean), _F32(node.std), node.mean != 0.0, node.std != 1.0) + none
    if isinstance(node, n.TruncatedNormal):
        a, b, mirror = node.a, node.b, node.a + node.b > 0
        if mirror:
            a, b = -b, -a
        p_low, p_high = normal_cdf(a), normal_cdf(b)
        return (2, _F32(node.mean), _F32(node.std), node.mean != 0.0, node.std != 1.0,
                _F32(a), _F32(b), mirror, _F32(p_high - p_low), _F32(p_low))
    raise AssertionError(f"not a portable leaf: {node!r}")


def fill(node: n.Node, key: tuple[int, int], leaf: int, start: int, out: np.ndarray,
         positive_zero: bool = True) -> np.ndarray:
    """Write flat elements ``start .. start + out.size - 1`` of random leaf ``node`` (leaf number
    ``leaf`` of its plan, stream ``key``) into the float32 C-contiguous ``out``, as
    ``evaluate.evaluate_span`` of a plan made of that leaf alone gives them (-0 as +0); with
    ``positive_zero=False``, as ``evaluate.leaf_values`` gives them (a -0 stays)."""
    _build().fill(out.reshape(-1), np.uint32(key[0]), np.uint32(key[1]), np.uint32(leaf), start, positive_zero,
                  *_leaf_args(node))
    return out


def values(node: n.Node, key: tuple[int, int], leaf: int, start: int, stop: int) -> np.ndarray:
    """Flat elements ``start .. stop - 1`` of random leaf ``node`` as a new float32 array, as
    ``evaluate.leaf_values`` gives them (a plan may combine them further)."""
    return fill(node, key, leaf, start, np.empty(stop - start, np.float32), positive_zero=False)


def map_words(node: n.Node, words: np.ndarray) -> np.ndarray:
    """The leaf's float32 values for the given 32-bit ``words`` (for tests: any word can be
    reached directly, where a draw reaches only what the cipher gives)."""
    out = np.empty(words.size, np.float32)
    _build().map_words(np.ascontiguousarray(words, np.uint32).reshape(-1), out, *_leaf_args(node))
    return out
