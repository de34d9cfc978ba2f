"""torch's ops for portable draws (the interface is ``xp_numpy.Ops``).

torch has no shifts or adds on uint32, so words are ``int32`` bit patterns: adds wrap modulo 2^32
in two's complement, a logical right shift is the arithmetic one masked to its low 32 - r bits,
and a constant >= 2^31 is passed as its negative twin. Eager torch runs one kernel per op, so
products are never fused into a following add.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, Union

import torch

from polyinit.portable import fused

Tensor: TypeAlias = torch.Tensor
Word: TypeAlias = Union[torch.Tensor, int]  # int32 bit patterns, or one word as a Python int
Float: TypeAlias = Union[torch.Tensor, float]  # a float32 tensor, or one float32 number


def _signed(value: int) -> int:
    """The int32 with the bit pattern of the uint32 ``value``."""
    return value - (1 << 32) if value >= 1 << 31 else value


class Ops:
    NAME = "torch"
    CHUNKED = True
    INDEXED = False
    # 2^15 elements: every op stays under torch's parallel grain size (32768), so no op starts
    # OpenMP threads; on this 2-core machine under load, larger chunks that do were 8x slower.
    CHUNK = 1 << 15

    def __init__(self, device: torch.device | str | None = None, use_fused: bool | None = None):
        self.device = torch.device(device or "cpu")
        # On CPU, random leaves of fused.MIN_SIZE elements or more come from polyinit.portable.fused's
        # compiled kernels where numba is installed (the same values, 5-16x faster), on at most
        # torch.get_num_threads() threads; use_fused=False forces torch ops throughout.
        self.fused = self.device.type == "cpu" and (use_fused is not False) and fused.enabled()

    def _use_fused(self, node: Any) -> bool:
        return self.fused and math.prod(node.shape) >= fused.MIN_SIZE and fused.available()

    # --- fused random leaves (see xp_numpy) ---------------------------------------------------
    def fused_leaf(self, node: Any, key: tuple[int, int], leaf: int, start: int, stop: int) -> torch.Tensor | None:
        if not self._use_fused(node):
            return None
        return torch.from_numpy(fused.values(node, key, leaf, start, stop, torch.get_num_threads()))

    def fill_leaf(self, out: torch.Tensor, node: Any, key: tuple[int, int], leaf: int, start: int = 0) -> bool:
        # Plain CPU tensors only: a subclass (DTensor, FakeTensor, a functional wrapper) may not
        # own the memory that .numpy() would show.
        if not (
            type(out) in (torch.Tensor, torch.nn.Parameter)
            and out.device.type == "cpu"
            and out.dtype == torch.float32
            and out.is_contiguous()
            and self._use_fused(node)
        ):
            return False
        fused.fill(node, key, leaf, start, out.detach().numpy(), max_threads=torch.get_num_threads())
        if not out.is_inference():  # a write through numpy is invisible to autograd's version counter
            torch.autograd.graph.increment_version(out)
        return True

    # --- words ------------------------------------------------------------------------------
    def iota(self, start: int, count: int) -> torch.Tensor:
        if start + count <= 1 << 31:
            return torch.arange(start, start + count, dtype=torch.int32, device=self.device)
        index = torch.arange(start, start + count, dtype=torch.int64, device=self.device)
        return torch.where(index >= 1 << 31, index - (1 << 32), index).to(torch.int32)

    def full_words(self, value: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full(like.shape, _signed(value), dtype=torch.int32, device=like.device)

    def flat_index(self, shape: tuple[int, ...]) -> torch.Tensor:
        return self.iota(0, int(torch.Size(shape).numel())).reshape(shape)

    # add, xor and rotl may overwrite their first argument (see xp_numpy).
    def add(self, a: torch.Tensor, b: torch.Tensor | int) -> torch.Tensor:
        return a.add_(_signed(b) if isinstance(b, int) else b)

    def xor(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.bitwise_xor_(b)

    def rotl(self, a: torch.Tensor, r: int) -> torch.Tensor:
        high = self.shr(a, 32 - r)
        return a.bitwise_left_shift_(r).bitwise_or_(high)

    def shr(self, a: torch.Tensor, r: int) -> torch.Tensor:
        return torch.bitwise_right_shift(a, r).bitwise_and_((1 << (32 - r)) - 1)

    def band(self, a: torch.Tensor, mask: int) -> torch.Tensor:
        return torch.bitwise_and(a, _signed(mask))

    def bor(self, a: torch.Tensor, mask: int) -> torch.Tensor:
        return torch.bitwise_or(a, _signed(mask))

    def band_is_set(self, a: torch.Tensor, mask: int) -> torch.Tensor:
        return self.band(a, mask) != 0

    def top_bit(self, a: torch.Tensor) -> torch.Tensor:
        return a < 0

    def interleave(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.stack((a, b), dim=1).reshape(-1)

    def to_float(self, a: torch.Tensor) -> torch.Tensor:
        return a.to(torch.float32)

    def bits(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(torch.int32)

    def from_bits(self, a: torch.Tensor) -> torch.Tensor:
        return a.view(torch.float32)

    # --- float32 ----------------------------------------------------------------------------
    def fadd(self, a: Float, b: Float) -> Tensor:
        if isinstance(a, torch.Tensor):
            return torch.add(a, b)
        assert isinstance(b, torch.Tensor)  # one operand of every float op is a tensor
        return torch.add(b, a)

    def fsub(self, a: Float, b: Float) -> Tensor:
        if isinstance(a, torch.Tensor):
            return torch.sub(a, b)
        assert isinstance(b, torch.Tensor)  # one operand of every float op is a tensor
        return torch.rsub(b, a)

    def fmul(self, a: Float, b: Float) -> Tensor:
        if isinstance(a, torch.Tensor):
            return torch.mul(a, b)
        assert isinstance(b, torch.Tensor)  # one operand of every float op is a tensor
        return torch.mul(b, a)

    def fdiv(self, a: Float, b: Float) -> Tensor:
        if not isinstance(a, torch.Tensor):  # torch.div takes a tensor first
            assert isinstance(b, torch.Tensor)  # one operand of every float op is a tensor
            return torch.div(torch.full_like(b, a), b)
        return torch.div(a, b)

    def sqrt(self, a: Tensor) -> Tensor:
        # torch's CPU float32 sqrt is not correctly rounded (see floats.sqrt); float64's root of
        # a float32, rounded once to float32, is (53 >= 2 * 24 + 2 bits). MPS has no float64.
        wide = a.double() if a.device.type != "mps" else a.cpu().double()
        return torch.sqrt(wide).float().to(a.device)

    def neg(self, a: Tensor) -> Tensor:
        return torch.neg(a)

    def abs(self, a: Tensor) -> Tensor:
        return torch.abs(a)

    def minimum(self, a: Tensor, b: Float) -> Tensor:
        return torch.clamp(a, max=b) if isinstance(b, float) else torch.minimum(a, b)

    def maximum(self, a: Tensor, b: Float) -> Tensor:
        return torch.clamp(a, min=b) if isinstance(b, float) else torch.maximum(a, b)

    def less(self, a: Tensor, b: Float) -> Tensor:
        return torch.lt(a, b)

    def less_equal(self, a: Tensor, b: Float) -> Tensor:
        return torch.le(a, b)

    def greater(self, a: Tensor, b: Float) -> Tensor:
        return torch.gt(a, b)

    def greater_equal(self, a: Tensor, b: Float) -> Tensor:
        return torch.ge(a, b)

    def not_equal(self, a: Tensor, b: Float) -> Tensor:
        return torch.ne(a, b)

    def where(self, cond: Tensor, x: Float, y: Float, like: Any = None) -> Tensor:
        if isinstance(x, float) or isinstance(y, float):
            x, y = (
                torch.tensor(v, dtype=torch.float32, device=cond.device) if isinstance(v, float) else v for v in (x, y)
            )
        return torch.where(cond, x, y)

    def replace_where(self, mask: Tensor, base: Tensor, x: Tensor, fn: Callable[[Ops, Tensor], Tensor]) -> Tensor:
        # index_select/index_copy_: boolean-mask indexing is 30x slower here (torch 2.13 CPU).
        index = torch.nonzero(mask.reshape(-1)).squeeze(1)
        flat = base.reshape(-1)
        flat.index_copy_(0, index, fn(self, x.reshape(-1).index_select(0, index)))
        return flat.reshape(base.shape)

    # --- arrays -----------------------------------------------------------------------------
    def full(self, shape: Sequence[int], value: float) -> torch.Tensor:
        return torch.full(shape, value, dtype=torch.float32, device=self.device)

    def fixed(self, values: Any) -> torch.Tensor:
        return torch.as_tensor(values.astype("float32"), device=self.device)

    def reshape(self, x: Tensor, shape: Sequence[int]) -> Tensor:
        return x.reshape(shape)

    def transpose(self, x: Tensor, perm: Sequence[int]) -> Tensor:
        return x.permute(tuple(perm))

    def concat(self, parts: Sequence[Tensor], axis: int) -> Tensor:
        return torch.cat(tuple(parts), dim=axis)

    def scatter(self, shape: Sequence[int], index: Any, x: Tensor) -> Tensor:
        out = torch.zeros(shape, dtype=torch.float32, device=self.device)
        out[tuple(slice(None) if i is None else i for i in index)] = x
        return out

    def rank(self, x: Tensor, axis: int) -> Tensor:
        order = torch.argsort(x, dim=axis, stable=True)
        return torch.argsort(order, dim=axis, stable=True).to(torch.float32)

    def cast(self, x: Tensor, dtype: str) -> Tensor:
        return x.to(getattr(torch, dtype))

    def zeros(self, shape: Sequence[int], dtype: str) -> Tensor:
        return torch.zeros(shape, dtype=getattr(torch, dtype), device=self.device)

    def empty(self, shape: Sequence[int], dtype: str) -> Tensor:
        return torch.empty(shape, dtype=getattr(torch, dtype), device=self.device)

    def write_flat(self, out: torch.Tensor, start: int, values: torch.Tensor) -> None:
        out.view(-1)[start : start + values.numel()].copy_(values)

    def copy_into(self, out: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return out.copy_(values)
