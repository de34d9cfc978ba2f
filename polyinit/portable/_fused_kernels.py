"""The numba kernel behind ``polyinit.portable.fused`` (importing this module imports numba and
compiles it; ``polyinit.portable._native`` does that once per machine and keeps the machine code).

Each function mirrors its namesake in ``polyinit.portable.floats`` or ``threefry``, one element
at a time; see ``fused`` for why the values agree bit for bit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import llvmlite.binding as llvm_binding
import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types, uint32
from numba.core import cgutils
from numba.extending import intrinsic

from polyinit.portable import floats
from polyinit.portable._native import BLOCK_PAIRS, ENTRY, HAS_SCALE, HAS_SHIFT, MAP_WORDS, MIRROR, POSITIVE_ZERO, STREAM
from polyinit.portable.threefry import PARITY, ROTATIONS

_F = np.float32


def _f32s(values: Iterable[float]) -> tuple[np.float32, ...]:
    return tuple(_F(v) for v in values)


# numba freezes these globals into the code with their types: float32 stays float32.
A, B, C, D, E, F = (_f32s(c) for c in (floats._A, floats._B, floats._C, floats._D, floats._E, floats._F))
ATANH = _f32s(floats._ATANH)
TAIL, CENTRAL, SQRT2 = _F(floats._TAIL), _F(floats._CENTRAL), _F(floats._SQRT2)
LN2_HI, LN2_LO = _F(floats._LN2_HI), _F(floats._LN2_LO)
LARGEST_BELOW_ONE, SMALLEST_NORMAL = _F(floats._LARGEST_BELOW_ONE), _F(floats._SMALLEST_NORMAL)
HALF, ONE, TWO, ZERO = _F(0.5), _F(1.0), _F(2.0), _F(0.0)
EXPONENT_BIAS, NEAR, FAR = _F(127.0), _F(1.6), _F(5.0)
TWO_M24, TWO_M32 = _F(2.0**-24), _F(2.0**-32)
R0, R1, R2, R3, R4, R5, R6, R7 = (uint32(r) for r in ROTATIONS)


@intrinsic
def _bits(typingctx, x):
    """float32 -> its uint32 bit pattern (a bitcast, as ``Ops.bits``)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _from_bits(typingctx, w):
    """uint32 -> the float32 with that bit pattern (``Ops.from_bits``)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.uint32), codegen


LANES = 16  # one AVX-512 register of float32; LLVM splits the vectors where the CPU has less


def _lanes_below(builder, values, limit):
    """The ``<LANES x i1>`` mask ``values < limit`` (ordered, as Python's ``<`` compiles)."""
    vector = ir.VectorType(ir.FloatType(), LANES)
    bound = ir.Constant(vector, [ir.Constant(ir.FloatType(), float(limit))] * LANES)
    return builder.fcmp_ordered("<", values, bound)


def _declare(builder, name, result, *arguments):
    """The LLVM intrinsic ``name`` taking ``arguments``' types; a vector compress is named after
    its vector type (``.v16f32``, ``.v16i32``)."""
    if name.startswith("llvm.experimental.vector.compress"):
        name += f".v{LANES}{'f32' if isinstance(result.element, ir.FloatType) else 'i32'}"
    signature = ir.FunctionType(result, [argument.type for argument in arguments])
    return cgutils.get_or_insert_function(builder.module, signature, name)


def _count(builder, mask):
    """The number of set lanes of ``mask``, as an int64."""
    bits = builder.bitcast(mask, ir.IntType(LANES))
    ctpop = _declare(builder, f"llvm.ctpop.i{LANES}", bits.type, bits)
    return builder.zext(builder.call(ctpop, [bits]), ir.IntType(64))


def _lanes(context, builder, array_type, array, index, element):
    """A ``<LANES x element>*`` to elements ``index ..`` of an array of ``element``."""
    data = context.make_array(array_type)(context, builder, array).data
    pointer = builder.gep(data, [index])
    return builder.bitcast(pointer, ir.VectorType(element, LANES).as_pointer())


def _splat(builder, scalar):
    """``<LANES x type>`` with every lane ``scalar``."""
    vector = ir.VectorType(scalar.type, LANES)
    one = builder.insert_element(ir.Constant(vector, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


@intrinsic
def _pack(typingctx, q, j, tail, tail_at, m):
    """Copy the elements of q[j : j + LANES] below ``TAIL`` to tail[m ..] and their indices to
    tail_at[m ..], in order; return m plus their number. LLVM does not vectorise a compaction
    loop (each store address depends on every earlier element; the scalar loop cost a quarter
    of the normal draw), so this packs a register with ``llvm.experimental.vector.compress``
    (AVX-512's vcompressps, from register to register: the form that stores to memory is
    microcoded on AMD Zen 4 and made the draw slower still) and stores all of it: the lanes past
    the packed ones are garbage that the next store, or nobody, reads. Needs tail[m : m + LANES]
    in bounds, which m <= j and j + LANES <= the block give."""

    def codegen(context, builder, signature, args):
        q_type, _, tail_type, at_type, _ = signature.args
        values = builder.load(_lanes(context, builder, q_type, args[0], args[1], ir.FloatType()), align=4)
        mask = _lanes_below(builder, values, TAIL)
        first = builder.trunc(args[1], ir.IntType(32))
        steps = ir.Constant(ir.VectorType(ir.IntType(32), LANES), list(range(LANES)))
        indices = builder.add(_splat(builder, first), steps)
        for row, row_type, target, element in (
            (values, tail_type, args[2], ir.FloatType()),
            (indices, at_type, args[3], ir.IntType(32)),
        ):
            compress = _declare(builder, "llvm.experimental.vector.compress", row.type, row, mask, row)
            packed = builder.call(compress, [row, mask, ir.Constant(row.type, ir.Undefined)])
            builder.store(packed, _lanes(context, builder, row_type, target, args[4], element), align=4)
        return builder.add(args[4], _count(builder, mask))

    return types.int64(q, types.int64, tail, tail_at, types.int64), codegen


@intrinsic
def _address_lanes(typingctx, array):
    """How many float32 elements ``array``'s data lies past a ``LANES``-element boundary."""

    def codegen(context, builder, signature, args):
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        address = builder.ptrtoint(data, ir.IntType(64))
        return builder.lshr(
            builder.and_(address, ir.Constant(ir.IntType(64), 4 * LANES - 1)), ir.Constant(ir.IntType(64), 2)
        )

    return types.int64(array), codegen


@intrinsic
def _stream(typingctx, dst, j, src):
    """dst[j : j + LANES] = src[j : j + LANES] with a non-temporal store (``!nontemporal``:
    x86's vmovntps), which writes the cache line without reading it first, and leaves the
    caches to what comes next. dst[j] must be aligned to ``LANES`` elements (else LLVM stores
    normally)."""

    def codegen(context, builder, signature, args):
        dst_type, _, src_type = signature.args
        values = builder.load(_lanes(context, builder, src_type, args[2], args[1], ir.FloatType()), align=4)
        store = builder.store(
            values, _lanes(context, builder, dst_type, args[0], args[1], ir.FloatType()), align=4 * LANES
        )
        store.set_metadata("nontemporal", builder.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))
        return context.get_dummy_value()

    return types.none(dst, types.int64, src), codegen


@intrinsic
def _fence(typingctx):
    """Make the non-temporal stores visible before the kernel returns and another thread reads
    the output: they are weakly ordered, and only a store fence orders them (x86's sfence; a
    locked instruction, which LLVM emits for a generic fence, is not documented to)."""

    def codegen(context, builder, signature, args):
        if llvm_binding.get_process_triple().startswith(("x86_64", "i686", "i386")):
            builder.call(
                cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse.sfence"
                ),
                [],
            )
        else:
            builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.none(), codegen


@njit(inline="always")
def _rotl(x, r):
    return uint32((x << r) | (x >> (uint32(32) - r)))


@njit(inline="always")
def _quad(x0, x1, ra, rb, rc, rd):
    """Four Threefry rounds."""
    x0 = uint32(x0 + x1)
    x1 = uint32(_rotl(x1, ra) ^ x0)
    x0 = uint32(x0 + x1)
    x1 = uint32(_rotl(x1, rb) ^ x0)
    x0 = uint32(x0 + x1)
    x1 = uint32(_rotl(x1, rc) ^ x0)
    x0 = uint32(x0 + x1)
    x1 = uint32(_rotl(x1, rd) ^ x0)
    return x0, x1


@njit(inline="always")
def _threefry(k0, k1, k2, c0, c1):
    """threefry2x32-20 of counter (c0, c1) under key schedule (k0, k1, k2), unrolled."""
    x0, x1 = uint32(c0 + k0), uint32(c1 + k1)
    x0, x1 = _quad(x0, x1, R0, R1, R2, R3)
    x0, x1 = uint32(x0 + k1), uint32(x1 + k2 + uint32(1))
    x0, x1 = _quad(x0, x1, R4, R5, R6, R7)
    x0, x1 = uint32(x0 + k2), uint32(x1 + k0 + uint32(2))
    x0, x1 = _quad(x0, x1, R0, R1, R2, R3)
    x0, x1 = uint32(x0 + k0), uint32(x1 + k1 + uint32(3))
    x0, x1 = _quad(x0, x1, R4, R5, R6, R7)
    x0, x1 = uint32(x0 + k1), uint32(x1 + k2 + uint32(4))
    x0, x1 = _quad(x0, x1, R0, R1, R2, R3)
    return uint32(x0 + k2), uint32(x1 + k0 + uint32(5))


@njit(inline="always")
def _horner(c, x):
    acc = x * c[0] + c[1]
    for i in range(2, len(c)):
        acc = acc * x + c[i]
    return acc


@njit(inline="always")
def _log(x):
    bits = _bits(x)
    exponent = _F(bits >> uint32(23)) - EXPONENT_BIAS
    m = _from_bits((bits & uint32(0x007FFFFF)) | uint32(0x3F800000))
    big = m > SQRT2
    m = m * HALF if big else m
    exponent = exponent + ONE if big else exponent
    s = (m - ONE) / (m + ONE)
    log_m = (s * TWO) * _horner(ATANH, s * s)
    return exponent * LN2_HI + (exponent * LN2_LO + log_m)


@njit(inline="always")
def _sqrt(x):
    y = _from_bits(uint32((_bits(x) >> uint32(1)) + uint32(0x1FBD1DF5)))
    for _ in range(4):
        y = (y + x / y) * HALF
    return y


@njit(inline="always")
def _central(q):
    """Acklam's central branch (q >= TAIL): ``floats``' ``ndtri_lower`` for those q."""
    d = q - HALF
    r = CENTRAL - d * d
    return (d * _horner(A, r)) / _horner(B, r)


@njit(inline="always")
def _tail(q):
    """Acklam's tail branches (q < TAIL): t = sqrt(-log q), the far one where t > 5."""
    t = _sqrt(-_log(q))
    far = -(_horner(E, t - FAR) / _horner(F, t - FAR))
    near = -(_horner(C, t - NEAR) / _horner(D, t - NEAR))
    return far if t > FAR else near


@njit(inline="always")
def _ndtri_lower(q, g, tail, tail_at):
    """g[j] = ndtri_lower(q[j]). The central branch for every element, then the tail branches
    for the tail elements only (about 15% of a normal's), packed into ``tail`` (their indices
    into ``tail_at``) and written back: each loop is branch-free, so LLVM vectorises it (a branch
    per element made the draw 4x slower), and the log, the square root and two rational
    functions run on the tail alone. Each element gets the value of the branch ``floats``
    selects for it, computed the same way."""
    size = q.size
    whole = size - size % LANES
    for j in range(size):
        g[j] = _central(q[j])
    m = 0
    for j in range(0, whole, LANES):
        m = _pack(q, j, tail, tail_at, m)
    for j in range(whole, size):  # the last few: write, then advance only for the tail
        tail[m], tail_at[m] = q[j], j
        m += 1 if q[j] < TAIL else 0
    for k in range(m):
        tail[k] = _tail(tail[k])
    for k in range(m):
        g[tail_at[k]] = tail[k]


@njit(inline="always")
def _affine(z, shift, scale, has_shift, has_scale):
    if has_scale:
        z = z * scale
    if has_shift:
        z = z + shift
    return z


@njit(inline="always")
def _uniform(w, shift, scale, has_shift, has_scale):
    return _affine(_F(w >> uint32(8)) * TWO_M24, shift, scale, has_shift, has_scale)


@njit(inline="always")
def _normal_q(w):
    return (_F(w & uint32(0x7FFFFFFF)) + HALF) * TWO_M32


@njit(inline="always")
def _normal(w, g, shift, scale, has_shift, has_scale):
    """The normal value of word ``w`` given g = ndtri_lower(_normal_q(w)): the top bit is the sign."""
    return _affine(-g if w >= uint32(0x80000000) else g, shift, scale, has_shift, has_scale)


@njit(inline="always")
def _truncated_u(w, p_span, p_low):
    u = ((_F(w >> uint32(8)) + HALF) * TWO_M24) * p_span + p_low
    return min(max(u, SMALLEST_NORMAL), LARGEST_BELOW_ONE)


@njit(inline="always")
def _truncated_q(w, p_span, p_low):
    u = _truncated_u(w, p_span, p_low)
    return u if u < HALF else ONE - u


@njit(inline="always")
def _truncated(w, g, shift, scale, has_shift, has_scale, a, b, mirror, p_span, p_low):
    """The truncated normal value of word ``w`` given g = ndtri_lower(_truncated_q(w))."""
    z = min(max(g if _truncated_u(w, p_span, p_low) < HALF else -g, a), b)
    return _affine(-z if mirror else z, shift, scale, has_shift, has_scale)


@njit(inline="always")
def _keep_sign_of_zero(v, positive_zero):
    """floats.positive_zero where asked (a draw applies it to its result, not to leaves): -0 -> +0."""
    return ZERO if positive_zero and v == ZERO else v


@njit(inline="always")
def _emit(dst, values, positive_zero, stream):
    """dst[:] = values (-0 as +0 where ``positive_zero``); with ``stream``, the aligned middle
    with non-temporal stores. Both are plain copies of the same floats: the bits do not change."""
    size = dst.size
    for j in range(size):
        values[j] = _keep_sign_of_zero(values[j], positive_zero)
    head = min((LANES - _address_lanes(dst)) % LANES, size) if stream else size
    whole = head + (size - head) // LANES * LANES
    for j in range(head):
        dst[j] = values[j]
    for j in range(head, whole, LANES):
        _stream(dst, j, values)
    for j in range(whole, size):
        dst[j] = values[j]


@njit(inline="always")
def _convert(
    words,
    out,
    offset,
    positive_zero,
    stream,
    scratch,
    kind,
    shift,
    scale,
    has_shift,
    has_scale,
    a,
    b,
    mirror,
    p_span,
    p_low,
):
    """out[offset + j] = value of words[j] (at most 2 BLOCK_PAIRS words): one branch-free loop
    per step, so each loop vectorises (``kind`` does not change within a call, and LLVM hoists
    the choice out of the loop). ``scratch`` is (q, g, tail, tail index), each a block long.

    The output is written through a slice: an index ``offset + j`` into ``out`` is not known
    to be non-negative, so numba wraps it as a Python index (``i + size`` where ``i < 0``), the
    addresses stop being consecutive, and LLVM stores each element with a scatter instruction
    (on AMD Zen 4 that made the uniform draw 2.4x slower)."""
    size = words.size
    q, g, tail, tail_at = scratch
    values = g[:size]
    if kind == 0:
        for j in range(size):
            values[j] = _uniform(words[j], shift, scale, has_shift, has_scale)
    else:
        normal = kind == 1  # else the truncated normal
        for j in range(size):
            q[j] = _normal_q(words[j]) if normal else _truncated_q(words[j], p_span, p_low)
        _ndtri_lower(q[:size], g, tail, tail_at)
        for j in range(size):
            if normal:
                values[j] = _normal(words[j], g[j], shift, scale, has_shift, has_scale)
            else:
                values[j] = _truncated(words[j], g[j], shift, scale, has_shift, has_scale, a, b, mirror, p_span, p_low)
    _emit(out[offset : offset + size], values, positive_zero, stream)


SIGNATURE = types.void(
    types.CPointer(types.float32),
    types.int64,
    types.int64,
    types.CPointer(types.uint32),
    types.voidptr,
    types.uint32,
    types.uint32,
    types.uint32,
    types.int32,
    types.int32,
    types.float32,
    types.float32,
    types.float32,
    types.float32,
    types.float32,
    types.float32,
)


@njit(inline="always")
def _fill(
    out,
    words,
    scratch,
    k0,
    k1,
    leaf,
    start,
    positive_zero,
    stream,
    kind,
    shift,
    scale,
    has_shift,
    has_scale,
    a,
    b,
    mirror,
    p_span,
    p_low,
):
    """out[j] = value of flat element start + j; element i is word i % 2 of threefry((i // 2, leaf))."""
    k2 = uint32(k0 ^ k1 ^ uint32(PARITY))
    end = start + out.size
    last_pair = ((end - 1) >> 1) + 1
    for block in range(start >> 1, last_pair, BLOCK_PAIRS):
        count = min(BLOCK_PAIRS, last_pair - block)
        for p in range(count):  # the cipher, vectorised across pairs
            words[2 * p], words[2 * p + 1] = _threefry(k0, k1, k2, uint32(block + p), leaf)
        lo, hi = max(2 * block, start), min(2 * (block + count), end)
        _convert(
            words[lo - 2 * block : hi - 2 * block],
            out,
            lo - start,
            positive_zero,
            stream,
            scratch,
            kind,
            shift,
            scale,
            has_shift,
            has_scale,
            a,
            b,
            mirror,
            p_span,
            p_low,
        )


@cfunc(SIGNATURE, error_model="numpy")  # numpy's error model: no zero-division checks, nothing raises
def kernel(out_ptr, size, start, words_ptr, scratch_ptr, k0, k1, leaf, flags, kind, shift, scale, a, b, p_span, p_low):
    """The one C entry point. Fill ``out[0:size]`` with flat elements ``start ..`` of a leaf, or
    with flag ``MAP_WORDS`` map the ``size`` words at ``words`` to floats (tests reach any word
    this way). With flag ``STREAM`` the output is written with non-temporal stores (for
    outputs larger than the caches). ``scratch``: 5 blocks of 4-byte words, the caller's (one per thread)."""
    out, block = carray(out_ptr, (size,)), 2 * BLOCK_PAIRS
    rows = carray(scratch_ptr, (5, block), np.float32)  # rows: words, q, g, tail, tail index
    scratch = (rows[1], rows[2], rows[3], carray(scratch_ptr, (5, block), np.int32)[4])
    has_shift, has_scale, mirror = (flags & HAS_SHIFT) != 0, (flags & HAS_SCALE) != 0, (flags & MIRROR) != 0
    if flags & MAP_WORDS:
        given = carray(words_ptr, (size,))
        for lo in range(0, size, block):
            hi = min(lo + block, size)
            _convert(
                given[lo:hi],
                out,
                lo,
                False,
                False,
                scratch,
                kind,
                shift,
                scale,
                has_shift,
                has_scale,
                a,
                b,
                mirror,
                p_span,
                p_low,
            )
    else:
        _fill(
            out,
            carray(scratch_ptr, (block,), np.uint32),
            scratch,
            k0,
            k1,
            leaf,
            start,
            (flags & POSITIVE_ZERO) != 0,
            (flags & STREAM) != 0,
            kind,
            shift,
            scale,
            has_shift,
            has_scale,
            a,
            b,
            mirror,
            p_span,
            p_low,
        )
        if flags & STREAM:
            _fence()


_DECLARE = re.compile(r"^declare (.*?)@([-\w.$]+)\((.*)\)(.*)$")
_EXTERNAL = re.compile(r"^(@[-\w.$\"]+) = external (.*?)global (\S+)(.*)$")


def native_ir() -> str:
    """The kernel's optimised LLVM IR, made to stand alone: the C entry point renamed ``ENTRY``,
    and every external the numba cfunc wrapper references (only on its path that reports a raised
    exception through the interpreter: numba's GIL helpers, the C API, NRT's destructor) defined
    as a trap. That path cannot be taken, since nothing in the kernel raises, and without those
    references the object code loads with llvmlite alone: no numba, no Python C API symbols."""
    library = kernel._library  # type: ignore[attr-defined]  # numba keeps the compiled code there; its stubs omit it
    text = library.get_llvm_str().replace(f"@{kernel.native_name}", f"@{ENTRY}")
    lines = []
    for line in text.splitlines():
        declared, external = _DECLARE.match(line), _EXTERNAL.match(line)
        if declared and not declared.group(2).startswith("llvm."):
            lines += [
                f"define internal {declared.group(1)}@{declared.group(2)}({declared.group(3)}){declared.group(4)} {{",
                "  unreachable",
                "}",
            ]
        elif external:
            lines.append(
                f"{external.group(1)} = internal {external.group(2)}global {external.group(3)} "
                f"zeroinitializer{external.group(4)}"
            )
        else:
            lines.append(line)
    return "\n".join(lines)


__all__ = ["kernel", "native_ir"]
