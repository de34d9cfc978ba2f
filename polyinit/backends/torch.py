"""PyTorch backend: in-place ``fn(tensor, generator=None)`` initializers, like ``torch.nn.init``.

Draws happen on the tensor's own device with torch's own RNG (``generator=`` or the global one),
under ``no_grad``. A single-leaf plan (uniform, normal, truncated normal, constant) is drawn in
place, so a non-contiguous view is filled where it lies and no temporary is allocated. Anything
else is computed out of place and copied in. float16/bfloat16 are computed in float32 and cast (torch
lacks QR and precise erfinv there); a meta tensor is left as it is (nothing to draw).

>>> import torch, polyinit
>>> init = initializer(polyinit.he_uniform(a=5 ** 0.5))   # torch's Linear default
>>> w = init(torch.empty(256, 784), generator=torch.Generator().manual_seed(0))
>>> bool(w.abs().max() <= 1 / 784 ** 0.5)
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import numpy as np

try:
    import torch
except ImportError as _missing:  # say which extra installs the framework
    from polyinit.errors import BackendUnavailableError

    raise BackendUnavailableError(
        f"polyinit.backends.torch cannot import torch ({_missing}); install it with: pip install 'polyinit[torch]'"
    ) from None

from polyinit import _validate as check
from polyinit import nodes as n
from polyinit.backends import common
from polyinit.errors import PolyinitError
from polyinit.layout import OUT_IN, Layout
from polyinit.plan import Plan, resolve
from polyinit.spec import Spec

NAME = "torch"
DEFAULT_LAYOUT = OUT_IN
ANY_LAYOUT = True
_DTYPES = {torch.float16: "float16", torch.bfloat16: "bfloat16", torch.float32: "float32", torch.float64: "float64"}
_OPS = n.op_table(torch, lambda mask, like: mask.to(like.dtype))


def _truncated_(out: torch.Tensor, node: n.TruncatedNormal, generator: Optional[torch.Generator]) -> torch.Tensor:
    """In place, by inverse CDF with the shared edge rule (``common.truncation_interval``); keeping
    u off +-1 avoids torch trunc_normal_'s rare values clamped to the bounds."""
    low, high, clamp_low, clamp_high = common.truncation_interval(node.a, node.b, torch.finfo(out.dtype).eps)
    out.uniform_(low, high, generator=generator)
    out.clamp_(clamp_low, clamp_high).erfinv_().mul_(common.SQRT2)
    return out.clamp_(node.a, node.b).mul_(node.std).add_(node.mean)


class Primitives:
    def __init__(self, generator: Optional[torch.Generator], device: torch.device, dtype: torch.dtype):
        self.generator, self.device, self.dtype = generator, device, dtype

    def _empty(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.empty(shape, device=self.device, dtype=self.dtype)

    def Fill(self, node: n.Fill) -> torch.Tensor:
        return torch.full(node.shape, node.value, device=self.device, dtype=self.dtype)

    def Fixed(self, node: n.Fixed) -> torch.Tensor:
        return torch.as_tensor(node.values, device=self.device).to(self.dtype)

    def Uniform(self, node: n.Uniform, index: int) -> torch.Tensor:
        return self._empty(node.shape).uniform_(node.low, node.high, generator=self.generator)

    def Normal(self, node: n.Normal, index: int) -> torch.Tensor:
        return self._empty(node.shape).normal_(node.mean, node.std, generator=self.generator)

    def TruncatedNormal(self, node: n.TruncatedNormal, index: int) -> torch.Tensor:
        return _truncated_(self._empty(node.shape), node, self.generator)

    def OrthogonalMatrix(self, node: n.OrthogonalMatrix, index: int) -> torch.Tensor:
        rows, cols = node.shape
        g = self._empty((max(rows, cols), min(rows, cols))).normal_(generator=self.generator)
        q, r = torch.linalg.qr(g)
        return node.gain * common.haar_orthogonal(q, r, rows, cols, torch)

    def Reshape(self, node: n.Reshape, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(node.shape)

    def Transpose(self, node: n.Transpose, x: torch.Tensor) -> torch.Tensor:
        return x.permute(node.perm)

    def Concat(self, node: n.Concat, parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts, dim=node.axis)

    def Scatter(self, node: n.Scatter, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(node.shape, device=self.device, dtype=self.dtype)
        out[tuple(slice(None) if i is None else i for i in node.index)] = x
        return out

    def Op(self, node: n.Op, args: list[torch.Tensor]) -> torch.Tensor:
        if node.name == "rank":
            assert node.axis is not None  # every rank op is built with its axis (plan.py)
            return common.rank(args[0], node.axis, torch).to(self.dtype)
        if node.name == "l2_normalize":
            assert node.axis is not None  # built with its axis (plan.py)
            return common.l2_normalize(args[0], node.axis, torch)
        return _OPS[node.name](*args)


def _check_tensor(tensor: Any) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise PolyinitError(f"torch backend: expected a torch.Tensor, received {type(tensor).__name__}")
    if tensor.dtype not in _DTYPES:
        raise PolyinitError(
            f"torch backend: cannot initialise a {tensor.dtype} tensor; "
            f"floating dtypes only ({', '.join(map(str, _DTYPES))})"
        )
    return tensor


def draw_into(tensor: torch.Tensor, plan: Plan, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Fill ``tensor`` in place with a draw of ``plan``; its shape and dtype must be the plan's
    (``plan_for(tensor, spec)`` resolves one that fits)."""
    _check_tensor(tensor)
    if not isinstance(plan, Plan):
        raise PolyinitError(f"torch backend: expected a polyinit Plan, received {plan!r}")
    if tuple(tensor.shape) != plan.shape:
        raise PolyinitError(f"torch backend: tensor shape {tuple(tensor.shape)} != plan shape {plan.shape}")
    if _DTYPES[tensor.dtype] != plan.dtype:
        raise PolyinitError(
            f"torch backend: the plan was resolved for {plan.dtype}, the tensor is "
            f"{tensor.dtype}; resolve it for the tensor (plan_for)"
        )
    if generator is not None and not isinstance(generator, torch.Generator):
        raise PolyinitError(f"torch backend: generator must be a torch.Generator or None, received {generator!r}")
    if tensor.device.type == "meta" or plan.size == 0:
        return tensor
    with check.framework_errors(
        "torch",
        f"drawing {plan.describe()[:120]} into a {tensor.dtype} "
        f"tensor of shape {tuple(tensor.shape)} on {tensor.device}",
    ):
        return _draw_into(tensor, plan, generator)


def _draw_into(tensor: torch.Tensor, plan: Plan, generator: Optional[torch.Generator]) -> torch.Tensor:
    with torch.no_grad():
        root = plan.root
        if tensor.dtype in (torch.float32, torch.float64) and isinstance(
            root, (n.Uniform, n.Normal, n.Fill, n.TruncatedNormal)
        ):
            if isinstance(root, n.Uniform):
                return tensor.uniform_(root.low, root.high, generator=generator)
            if isinstance(root, n.Normal):
                return tensor.normal_(root.mean, root.std, generator=generator)
            if isinstance(root, n.Fill):
                return tensor.fill_(root.value)
            return _truncated_(tensor, root, generator)
        compute = torch.float64 if tensor.dtype == torch.float64 else torch.float32
        prims = Primitives(generator, tensor.device, compute)
        return tensor.copy_(n.evaluate(root, prims, plan.leaf_index))


def plan_for(tensor: torch.Tensor, spec: Spec, layout: Layout | str | None = DEFAULT_LAYOUT) -> Plan:
    """The plan of ``spec`` for ``tensor``'s shape and dtype under ``layout``."""
    _check_tensor(tensor)
    return resolve(spec, tuple(tensor.shape), check.layout("torch backend", layout), _DTYPES[tensor.dtype])


def init_(
    tensor: torch.Tensor,
    spec: Spec,
    layout: Layout | str | None = DEFAULT_LAYOUT,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Fill ``tensor`` in place with ``spec`` and return it (the ``torch.nn.init`` idiom).

    >>> import polyinit
    >>> init_(torch.empty(3, 4), polyinit.zeros()).sum().item()
    0.0
    """
    return draw_into(tensor, plan_for(tensor, spec, layout), generator)


def initializer(spec: Spec, layout: Layout | str = DEFAULT_LAYOUT) -> Callable[..., torch.Tensor]:
    """A ``torch.nn.init``-style function ``fn(tensor, generator=None) -> tensor`` for ``spec``.

    With ``generator=None`` it draws from torch's global generator, exactly as ``torch.nn.init``
    does (so ``torch.manual_seed`` makes it reproducible); pass a generator to leave that alone.
    """
    if not isinstance(spec, Spec):
        raise PolyinitError(f"torch backend: expected a polyinit spec, received {spec!r}")
    checked = check.layout("torch backend", layout)  # a Layout or None, as resolve takes it

    def fn(tensor: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return init_(tensor, spec, checked, generator)

    fn.__name__ = f"polyinit_{spec.kind}_"
    fn.__doc__ = f"Fill a tensor in place with {spec!r} (layout {str(checked)!r})."
    return fn


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to(torch.float64).cpu().numpy()


DTYPES = tuple(_DTYPES.values())
_TORCH_DTYPES = {name: dtype for dtype, name in _DTYPES.items()}


def sample_plan(plan: Plan, seed: int) -> torch.Tensor:
    """A fresh tensor filled through ``initializer(spec, layout)(tensor, generator=)``."""
    tensor = torch.empty(plan.shape, dtype=_TORCH_DTYPES[plan.dtype])
    return initializer(plan.spec, plan.layout or DEFAULT_LAYOUT)(tensor, generator=torch.Generator().manual_seed(seed))


def draw_plan(plan: Plan, seed: int) -> torch.Tensor:
    """Exactly ``plan`` (no re-resolving) through ``draw_into``, from a generator seeded with ``seed``."""
    tensor = torch.empty(plan.shape, dtype=_TORCH_DTYPES[plan.dtype])
    return draw_into(tensor, plan, torch.Generator().manual_seed(seed))


def draw(plan: Plan, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A fresh tensor of ``plan``'s shape and dtype, drawn on the default device."""
    return draw_into(torch.empty(plan.shape, dtype=_TORCH_DTYPES[plan.dtype]), plan, generator)


def dtype_of(tensor: torch.Tensor) -> str:
    return _DTYPES.get(tensor.dtype, str(tensor.dtype))


def device_of(tensor: torch.Tensor) -> str:
    return str(tensor.device)


def default_device() -> str:
    return str(torch.empty(0).device)


def draw_portable(
    plan: Plan,
    seed: int,
    key: str | int = "",
    out: Optional[torch.Tensor] = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The portable draw of ``plan``: the same float32 values, bit for bit, as ``draw_portable``
    of every other backend with the same (seed, key) (see ``polyinit.portable``), with torch's
    own integer ops on ``out``'s device (or ``device``), written into ``out`` in chunks.

    >>> import polyinit
    >>> draw_portable(polyinit.resolve(polyinit.Normal(std=1.0), (2, 2)), seed=0, key="w").dtype
    torch.float32
    """
    from polyinit.portable import evaluate
    from polyinit.portable.xp_torch import Ops

    if out is None:
        return evaluate.draw(Ops(device), plan, seed, key)
    if tuple(out.shape) != plan.shape or _DTYPES.get(out.dtype) != plan.dtype:
        raise PolyinitError(
            f"torch backend: draw_portable needs out of shape {plan.shape} and dtype "
            f"{plan.dtype}; received {tuple(out.shape)} {out.dtype}"
        )
    if out.device.type == "meta":
        return out
    with torch.no_grad():
        if out.is_contiguous():
            return evaluate.draw(Ops(out.device), plan, seed, key, out)
        return out.copy_(evaluate.draw(Ops(out.device), plan, seed, key))
