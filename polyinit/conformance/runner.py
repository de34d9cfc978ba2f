"""The conformance runner: a spec x backend x shape x dtype case, checked against the plan's promise.

Used by the ``conformance/`` suite, by ``polyinit conformance MODULE:ATTR`` and by the pytest
fixture ``polyinit_conformance``. Each case draws enough independent samples (seeds ``seed``,
``seed + 1``, ...) to reach ``required_samples`` elements, runs every check that applies, and adds the
seed contract: the same seed gives the same values, another seed gives other values.

>>> import polyinit
>>> checks = run_case(polyinit.get_backend("numpy"), polyinit.glorot_uniform(), (64, 32), polyinit.OUT_IN)
>>> all(c.passed for c in checks)
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from polyinit import nodes as n
from polyinit.backends.contract import Backend
from polyinit.conformance.checks import Check, check, required_samples, samples_needed
from polyinit.errors import PolyinitError
from polyinit.layout import IN_OUT, OUT_IN, Layout, preset
from polyinit.plan import Plan, resolve
from polyinit.spec import Spec

# Per-check false-alarm probability: with ~10^4 checks in the full suite, Bonferroni keeps the
# suite-wide rate under 1e-3 (see conformance/README.md). The sample size per case follows from it
# and the power wanted (checks.required_samples).
SUITE_ALPHA = 1e-7

STANDARD_SHAPES: dict[str, tuple[tuple[int, ...], Layout]] = {
    "dense_out_in": ((256, 784), OUT_IN),
    "dense_in_out": ((784, 256), IN_OUT),
    "conv1d": ((32, 16, 5), OUT_IN),
    "conv2d": ((3, 3, 16, 32), IN_OUT),
    "conv3d": ((8, 4, 3, 3, 3), OUT_IN),
    "grouped": ((32, 4, 3, 3), preset("torch", "conv")),
    "depthwise": ((3, 3, 16, 2), preset("keras", "depthwise_conv", native=False)),
    "transposed": ((16, 32, 3, 3), preset("torch", "conv_transpose")),
    "embedding": ((1000, 64), preset("keras", "embedding")),
    "attention": ((64, 4, 16), Layout("in out out")),
    "bias": ((256,), OUT_IN),
}


@dataclass
class CaseResult:
    backend: str
    spec: str
    shape_name: str
    shape: tuple[int, ...]
    dtype: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures_text(self) -> str:
        return "\n".join(
            f"{self.backend} {self.spec} {self.shape_name}{self.shape} {self.dtype}: {c}"
            for c in self.checks
            if not c.passed
        )


def applicable(spec: Spec, shape: tuple[int, ...], layout: Layout) -> bool:
    """Whether ``spec`` resolves for this shape (Identity is 2-D only, Dirac needs a conv, ...)."""
    try:
        resolve(spec, shape, layout)
    except PolyinitError:
        return False
    return True


def run_case(
    backend: Backend,
    spec: Spec,
    shape: tuple[int, ...],
    layout: Optional[Layout],
    dtype: str = "float32",
    seed: int = 0,
    alpha: float = SUITE_ALPHA,
) -> list[Check]:
    """Every statistical check of ``backend``'s draws of ``spec``, plus the contract of each draw
    (shape, dtype and device as requested) and the seed contract.

    Every draw goes through the backend's public entry point (``sample_plan``). Small tensors are
    topped up to ``required_samples`` with one draw of the same spec on a tensor with an extra
    ``batch`` axis in front (counted in no fan, so the numbers are the same), or with repeated
    draws where the plan has structure across elements or the backend takes no other layout.
    """
    plan = resolve(spec, shape, layout, dtype)
    needed = required_samples(plan, alpha)
    count = samples_needed(plan, needed)
    first = backend.sample_plan(plan, seed)
    results = _native(backend, first, plan, "draw")
    values = backend.to_numpy(first)
    if values.shape != plan.shape:  # nothing else is meaningful on the wrong shape
        return results + [
            Check(
                "shape",
                float(plan.size),
                float(values.size),
                0.0,
                False,
                f"asked for {plan.shape}, received {values.shape}",
            )
        ]
    draws = [values]
    if count > 1:
        batched = _batched(plan, needed - values.size) if backend.ANY_LAYOUT else None
        extra = [batched] if batched is not None else [plan] * (count - 1)
        for i, more in enumerate(extra, start=1):
            native = backend.sample_plan(more, seed + i)
            results += _native(backend, native, more, "top-up")
            draws.append(backend.to_numpy(native))
    results += check(draws, plan, alpha)
    again = backend.to_numpy(backend.sample_plan(plan, seed))
    same = bool(np.array_equal(again, values, equal_nan=True))
    results.append(Check("same seed, same values", 1.0, float(same), 0.0, same))
    if plan.leaves:
        differ = not np.array_equal(values, backend.to_numpy(backend.sample_plan(plan, seed + 1)))
        results.append(Check("other seed, other values", 1.0, float(differ), 0.0, differ))
    return _merge_native(results)


def _batched(plan: Plan, rest: int) -> Optional[Plan]:
    """The plan's spec on (k, *shape) with a leading ``batch`` axis, k a power of two with at
    least ``rest`` elements in all (few distinct sizes: JAX compiles one kernel per size), where
    the plan's elements are iid and the batched plan draws the very same numbers; else None."""
    key = n.elementwise_key(plan.root)
    if key is None:
        return None
    roles = plan.layout.roles(len(plan.shape)) if plan.layout is not None else ("spatial",) * len(plan.shape)
    copies = 1 << max(0, math.ceil(math.log2(max(1, math.ceil(rest / plan.size)))))
    try:
        batched = resolve(plan.spec, (copies,) + plan.shape, Layout(" ".join(("batch",) + roles)), plan.dtype)
    except PolyinitError:
        return None
    return batched if n.elementwise_key(batched.root) == key else None


def _native(backend: Backend, array: Any, plan: Plan, what: str) -> list[Check]:
    """The draw is the array that was asked for: its dtype and its device."""
    dtype, device, want = backend.dtype_of(array), backend.device_of(array), backend.default_device()
    return [
        Check(
            "dtype",
            1.0,
            float(dtype == plan.dtype),
            0.0,
            dtype == plan.dtype,
            f"{what}: asked for {plan.dtype}, received {dtype}",
        ),
        Check(
            "device", 1.0, float(device == want), 0.0, device == want, f"{what}: expected on {want}, found on {device}"
        ),
    ]


def _merge_native(results: list[Check]) -> list[Check]:
    """One dtype and one device check per case (the first failure if any), first in the list."""
    merged = []
    for name in ("dtype", "device"):
        mine = [c for c in results if c.name == name]
        if mine:
            merged.append(next((c for c in mine if not c.passed), mine[0]))
    return merged + [c for c in results if c.name not in ("dtype", "device")]


def run(
    specs: dict[str, Spec],
    backends: Iterable[str],
    shapes: Optional[dict] = None,
    dtypes: Iterable[str] = ("float32",),
    seed: int = 0,
    modules: Optional[dict[str, Backend]] = None,
) -> list[CaseResult]:
    """Every applicable (spec, backend, shape, dtype) case; ``modules`` maps extra backend names
    to backend-like objects (a user's own initializer, a deliberately broken backend)."""
    from polyinit.backends import get_backend

    results = []
    for backend_name in backends:
        backend = (modules or {}).get(backend_name) or get_backend(backend_name)
        for spec_name, spec in specs.items():
            for shape_name, (shape, layout) in (shapes or STANDARD_SHAPES).items():
                if not applicable(spec, shape, layout):
                    continue
                for dtype in dtypes:
                    if dtype not in backend.DTYPES:
                        continue
                    checks = run_case(backend, spec, shape, layout, dtype, seed)
                    results.append(CaseResult(backend_name, spec_name, shape_name, shape, dtype, checks))
    return results
