"""Portable draws: the same float32 weights, bit for bit, in every framework.

Each framework's own generator gives its own values. In portable mode polyinit draws from a
counter-based generator instead, written once over a small array interface that every backend
supplies with its framework's own integer and float ops, so that

    value[i] = f(seed, parameter key, leaf number, i)

for element ``i`` (row-major, of the plan's shape) of every random leaf of a plan: independent of
the framework, the device, the order in which parameters are initialised, and how a tensor is
split into chunks or shards.

**Generator: Threefry-2x32-20** (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
SC 2011; Random123). Chosen over Philox-4x32-10 because it needs only 32-bit add, xor and shifts:
Philox needs the high half of a 32x32-bit product, which JAX without x64 and torch/TensorFlow
(signed ints only) do not have natively. It is also JAX's own generator, so JAX gives an
independent check beyond the published known-answer vectors.

**Streams.** ``stream_key(seed, key)``: the parameter key (a str such as ``"encoder.0.weight"``
or an int) is hashed with BLAKE2b to 64 bits ``h``, and the stream's Threefry key is
``threefry2x32(key=(seed mod 2^32, seed div 2^32), counter=(h mod 2^32, h div 2^32))``. Element
``i`` of leaf ``j`` (leaves in ``Plan.leaves`` order) is word ``i mod 2`` of
``threefry2x32(stream key, counter=(i div 2, j))``. A leaf holds at most 2^32 elements.

**Floats** (all in float32, see ``polyinit.portable.floats``): uniform from the top 24 bits times
2^-24 (exact); normal by the inverse normal CDF of a 31-bit uniform with the 32nd bit as the sign;
truncated normal by the inverse CDF of a 24-bit uniform mapped into (Phi(a), Phi(b)). The inverse
CDF is Acklam's rational approximation evaluated with +, -, * and / only, which IEEE 754 rounds
correctly in every framework, in one fixed order; its tail logarithm is computed from the float's
bits (exponent by integer shifts, mantissa by a fixed atanh series) and its square root by a fixed
number of Newton steps. No library ``log``/``erfinv``/``sqrt`` is used: their implementations
differ (torch 2.13's CPU float32 ``sqrt`` is not even correctly rounded).

**Fused multiply-add.** XLA (JAX jit, TensorFlow ``jit_compile``) contracts ``a * b + c`` into one
FMA, which rounds once instead of twice and so changes the last bit. Every product that an addition
consumes goes through ``ops.fmul``, which in the compiled backends is ``maximum(a * b, -FLT_MAX)``:
an identity on every value we produce that no compiler can remove (it is not an identity for
-inf), and which stands between the multiply and the add, so the product is rounded on its own.
numpy and eager torch/TensorFlow run one kernel per op and never contract.

**Speed.** Over numpy's or torch's ops the cipher is 110 whole-array passes (0.2 to 0.4 GB/s on
CPU). Where numba is installed, numpy and CPU torch take random leaves from
``polyinit.portable.fused`` instead: the same float32 steps, compiled into one pass per block of
counters (2.7 to 3.1 GB/s for a uniform here on one thread), on every core, checked bit for bit
against these ops; numba compiles them once per machine into the user's cache directory
(``polyinit.portable._native``), and leaves under ``fused.MIN_SIZE`` elements use these ops. XLA (JAX,
TensorFlow under ``jit_compile``) fuses the ops itself.

**Orthogonal** (QR) cannot be bit-identical across LAPACKs: a plan with an orthogonal leaf is
refused with ``NotExpressibleError`` in portable mode.

Each backend has ``draw_portable(plan, seed, key)``; e.g. in numpy:

>>> import polyinit
>>> from polyinit.backends.numpy import draw_portable
>>> plan = polyinit.resolve(polyinit.Uniform(low=0.0, high=1.0), (2, 3))
>>> draw_portable(plan, seed=0, key="w").dtype
dtype('float32')
"""

from __future__ import annotations

from polyinit.portable.keys import MAX_LEAF_SIZE, check_portable, stream_key
from polyinit.portable.threefry import threefry2x32, threefry2x32_scalar

__all__ = ["MAX_LEAF_SIZE", "check_portable", "stream_key", "threefry2x32", "threefry2x32_scalar"]
