"""Fused CPU kernels for portable draws: the same float32 values as ``floats`` over an ``Ops``, in
one pass, compiled by numba once per machine (optional: ``pip install polyinit[fast]``), on every
core.

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

**Threads.** Element ``i`` depends only on the stream key, the leaf and ``i``, so a fill is cut
into contiguous chunks (``CHUNKS_PER_THREAD`` per thread, cut at cipher blocks), which the threads
take in turn, each computed exactly as a single-threaded fill computes it: the bits do not
depend on the thread count (``tests/test_portable_threads.py`` compares 1, 2 and 7 threads). The
kernel runs without the GIL. Fresh memory (never written, or read before it was written) is
prepared for the threads' writes first (``polyinit._pages``). ``threads()`` says how many a fill uses: every
core this process may run on, or ``POLYINIT_NUM_THREADS``, or fewer where the caller's framework
sets a limit (torch: ``torch.get_num_threads()``); chunks are at least ``THREAD_GRAIN`` elements.

**Cold start.** ``polyinit.portable._native`` keeps the compiled kernel in the user's cache
directory and loads it without numba; the Ops classes use the reference ops for leaves under
``MIN_SIZE`` elements, which therefore load nothing.

>>> import numpy as np, polyinit
>>> from polyinit.portable import fused, stream_key
>>> if fused.available():
...     leaf = polyinit.resolve(polyinit.Uniform(low=0.0, high=1.0), (4,)).root
...     out = np.empty(4, np.float32)
...     _ = fused.fill(leaf, stream_key(0, "w"), 0, 0, out)
...     assert (0 <= out).all() and (out < 1).all()
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from polyinit import _pages
from polyinit import nodes as n
from polyinit.errors import BackendError
from polyinit.moments import normal_cdf
from polyinit.portable import _native

MIN_SIZE = 1 << 16  # elements: a smaller leaf is drawn by the reference ops (a few ms at most)
THREAD_GRAIN = 1 << 17  # elements: a thread's share, and a chunk, is never smaller (starting it costs ~50 us)
CHUNKS_PER_THREAD = 8  # a fill is cut into this many chunks per thread, taken in turn (load balance)
STREAM_BYTES = 1 << 23  # an output this large is written with non-temporal stores (past the caches)
_unavailable: str | None = None
_pool: tuple[ThreadPoolExecutor, int, int] | None = None  # (pool, its workers, the pid that made it)


def enabled() -> bool:
    """Whether fused kernels may be used: ``POLYINIT_PORTABLE_FUSED`` is not ``0`` and loading
    them has not failed. Loads nothing (``available`` does)."""
    return os.environ.get("POLYINIT_PORTABLE_FUSED", "1") != "0" and _unavailable is None


def available() -> bool:
    """Whether fused kernels can run here: ``enabled()``, and the kernel loads (from the cache,
    or compiled by numba where the cache has none). Set ``POLYINIT_PORTABLE_FUSED=0`` to force
    the reference path, e.g. to compare the two."""
    return enabled() and _build() is not None


def _build() -> Callable[..., None] | None:
    global _unavailable
    if _unavailable is None:
        try:
            return _native.kernel()
        except (ImportError, OSError, RuntimeError) as error:  # numba absent, too old/new for this numpy
            _unavailable = f"{type(error).__name__}: {error}"
    return None


def threads(limit: int | None = None) -> int:
    """Threads a fill uses: ``POLYINIT_NUM_THREADS`` if set, else the cores this process may run
    on; at most ``limit`` (a framework's own setting) where given; at least 1."""
    setting = os.environ.get("POLYINIT_NUM_THREADS", "").strip()
    if setting:
        if not setting.isdigit() or int(setting) < 1:
            raise BackendError(f"POLYINIT_NUM_THREADS must be a whole number >= 1, got {setting!r}")
        count = int(setting)
    else:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(count, limit) if limit is not None else count)


def _executor(workers: int) -> ThreadPoolExecutor:
    """A pool of at least ``workers`` threads; a new one after a fork (the child has none of the
    parent's threads, so the parent's pool would never run what it is given)."""
    global _pool
    if _pool is None or _pool[1] < workers or _pool[2] != os.getpid():
        _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="polyinit-fill"), workers, os.getpid()
    return _pool[0]


_F32 = np.float32


def _leaf_args(node: n.Node) -> tuple:
    """The kernel's leaf arguments: (flags, kind, shift, scale, a, b, P(b) - P(a), P(a)), with
    the host-side constants that ``floats`` computes in Python (the interval's CDF values, the
    mirror) computed here the same way. The shift and scale flags are decided on the unrounded
    values, as ``floats._affine`` decides them."""

    def flags(shift: float, scale: float, mirror: bool = False) -> int:
        return (
            (_native.HAS_SHIFT if shift != 0.0 else 0)
            | (_native.HAS_SCALE if scale != 1.0 else 0)
            | (_native.MIRROR if mirror else 0)
        )

    if isinstance(node, n.Uniform):
        scale = node.high - node.low
        return flags(node.low, scale), 0, _F32(node.low), _F32(scale), 0.0, 0.0, 0.0, 0.0
    if isinstance(node, n.Normal):
        return flags(node.mean, node.std), 1, _F32(node.mean), _F32(node.std), 0.0, 0.0, 0.0, 0.0
    if isinstance(node, n.TruncatedNormal):
        a, b, mirror = node.a, node.b, node.a + node.b > 0
        if mirror:
            a, b = -b, -a
        p_low, p_high = normal_cdf(a), normal_cdf(b)
        return (
            flags(node.mean, node.std, mirror),
            2,
            _F32(node.mean),
            _F32(node.std),
            _F32(a),
            _F32(b),
            _F32(p_high - p_low),
            _F32(p_low),
        )
    raise AssertionError(f"not a portable leaf: {node!r}")


def _spans(start: int, size: int, count: int) -> list[tuple[int, int]]:
    """``count`` contiguous (offset, length) spans covering ``size`` elements, cut at multiples
    of a cipher block (so no block is encrypted by two threads)."""
    step = 2 * _native.BLOCK_PAIRS
    cuts = [0] + [min(size, -(-(start + size * t // count) // step) * step - start) for t in range(1, count)] + [size]
    return [(lo, hi - lo) for lo, hi in itertools.pairwise(cuts) if hi > lo]


def fill(
    node: n.Node,
    key: tuple[int, int],
    leaf: int,
    start: int,
    out: np.ndarray,
    positive_zero: bool = True,
    max_threads: int | None = None,
) -> np.ndarray:
    """Write flat elements ``start .. start + out.size - 1`` of random leaf ``node`` (leaf number
    ``leaf`` of its plan, stream ``key``) into the float32 C-contiguous ``out``, as
    ``evaluate.evaluate_span`` of a plan made of that leaf alone gives them (-0 as +0); with
    ``positive_zero=False``, as ``evaluate.leaf_values`` gives them (a -0 stays). Uses
    ``threads(max_threads)`` threads where each gets ``THREAD_GRAIN`` elements or more."""
    kernel = _build()
    if kernel is None:
        raise RuntimeError(f"fused kernels unavailable: {_unavailable}")
    if out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("fused.fill writes a writeable C-contiguous float32 array")
    flat = out.reshape(-1)  # a view, since out is C-contiguous
    flags, kind, *numbers = _leaf_args(node)
    flags |= _native.POSITIVE_ZERO if positive_zero else 0
    flags |= _native.STREAM if out.nbytes >= STREAM_BYTES else 0

    workers = min(threads(max_threads), max(1, flat.size // THREAD_GRAIN))
    if flat.size == 0:
        return out
    # Several threads: prepare fresh memory for their writes (see polyinit._pages)
    untouched = workers > 1 and _pages.prepare_for_write(flat.ctypes.data, flat.nbytes) == "untouched"

    def run(offset: int, length: int) -> None:
        if untouched:  # fresh memory: map this chunk's pages in one call (polyinit._pages)
            _pages.populate(flat.ctypes.data + 4 * offset, 4 * length)
        scratch = np.empty(_native.SCRATCH_WORDS, np.uint32)  # one per thread
        kernel(
            flat.ctypes.data + 4 * offset,
            length,
            start + offset,
            None,
            scratch.ctypes.data,
            key[0],
            key[1],
            leaf,
            flags,
            kind,
            *numbers,
        )

    if workers == 1:
        run(0, flat.size)
        return out
    # Chunks taken in turn from a shared queue rather than one fixed span per thread: where a core
    # is slowed (another process, a noisy neighbour on a VM), the others take more chunks instead
    # of waiting for the slow one's half. The bits do not depend on who writes which chunk.
    chunks = _spans(start, flat.size, min(workers * CHUNKS_PER_THREAD, max(1, flat.size // THREAD_GRAIN)))
    queue, lock = iter(chunks), threading.Lock()

    def work() -> None:
        while True:
            with lock:
                chunk = next(queue, None)
            if chunk is None:
                return
            run(*chunk)

    pool = _executor(workers - 1)
    pending = [pool.submit(work) for _ in range(workers - 1)]
    work()  # this thread takes chunks too
    for future in pending:
        future.result()
    return out


def values(
    node: n.Node, key: tuple[int, int], leaf: int, start: int, stop: int, max_threads: int | None = None
) -> np.ndarray:
    """Flat elements ``start .. stop - 1`` of random leaf ``node`` as a new float32 array, as
    ``evaluate.leaf_values`` gives them (a plan may combine them further)."""
    return fill(node, key, leaf, start, np.empty(stop - start, np.float32), False, max_threads)


def map_words(node: n.Node, words: np.ndarray) -> np.ndarray:
    """The leaf's float32 values for the given 32-bit ``words`` (for tests: any word can be
    reached directly, where a draw reaches only what the cipher gives)."""
    kernel = _build()
    if kernel is None:
        raise RuntimeError(f"fused kernels unavailable: {_unavailable}")
    words = np.ascontiguousarray(words, np.uint32).reshape(-1)
    out = np.empty(words.size, np.float32)
    flags, kind, *numbers = _leaf_args(node)
    scratch = np.empty(_native.SCRATCH_WORDS, np.uint32)
    kernel(
        out.ctypes.data,
        out.size,
        0,
        words.ctypes.data,
        scratch.ctypes.data,
        0,
        0,
        0,
        flags | _native.MAP_WORDS,
        kind,
        *numbers,
    )
    return out
