"""``polyinit conformance MODULE:ATTR``: check your own specs in every installed backend.

ATTR may be a spec, a list of specs, or a dict name -> spec. A dict value may also be a pair
``(spec, fn)`` or ``(spec, fn, layout)`` where ``fn(shape, seed) -> array`` is your own
initializer for weights laid out as ``layout`` (default ``OUT_IN``): it is then checked as one more
backend ("yours") on the standard shapes of that layout, which tells whether the spec describes it;
the shape it returns is checked before its statistics. MODULE is an importable module (the current
directory is searched first, for this import only) or a path to a .py file. Prints a table, writes
JSON with ``--json FILE``, and exits 1 if any check fails, 2 on a usage error or when your own
function raises.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional, TypeAlias, TypeGuard, Union

from polyinit.errors import PolyinitError
from polyinit.layout import OUT_IN, Layout
from polyinit.spec import Spec

if TYPE_CHECKING:  # typing only: the command line imports numpy and the runner when it runs
    import numpy as np

    from polyinit.conformance.runner import CaseResult
    from polyinit.plan import Plan

# A user's own initializer under a spec: (spec, fn(shape, seed)[, layout]).
SpecPair: TypeAlias = Union[tuple[Spec, Callable], tuple[Spec, Callable, Layout]]


def load_specs(target: str) -> dict[str, Union[Spec, SpecPair]]:
    """The specs named by ``MODULE:ATTR`` (or ``path/to/file.py:ATTR``)."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise PolyinitError(f"conformance: target must look like MODULE:ATTR, received {target!r}")
    if module_name.endswith(".py"):
        spec = importlib.util.spec_from_file_location(os.path.basename(module_name)[:-3], module_name)
        if spec is None or spec.loader is None:
            raise PolyinitError(f"conformance: cannot load {module_name!r}")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as error:  # the user's file raised while being run
            raise PolyinitError(
                f"conformance {target!r}: running {module_name!r} raised {type(error).__name__}: {error}"
            ) from error
    else:
        module = _import_from_cwd(module_name)
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise PolyinitError(f"conformance: {module_name!r} has no attribute {attr!r}") from None
    if isinstance(value, Spec):
        specs: dict[str, Union[Spec, SpecPair]] = {attr: value}
    elif isinstance(value, dict):
        specs = {str(k): v for k, v in value.items()}
    elif isinstance(value, (list, tuple)):
        specs = {f"{attr}[{i}]": v for i, v in enumerate(value)}
    else:
        raise PolyinitError(
            f"conformance: {target} is a {type(value).__name__}; expected a spec, a list or a dict of specs"
        )
    bad = [name for name, v in specs.items() if not isinstance(v, Spec) and not _is_pair(v)]
    if bad:
        raise PolyinitError(f"conformance: {target}: entries {bad} are not polyinit specs")
    return specs


def _import_from_cwd(module_name: str) -> ModuleType:
    """Import ``module_name`` with the working directory searched first, then leave ``sys.path``
    as it was (a second call must not add it again)."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ImportError as error:
        raise PolyinitError(f"conformance: cannot import {module_name!r}: {error}") from None
    except Exception as error:  # the user's module raised while being imported
        raise PolyinitError(f"conformance: importing {module_name!r} raised {type(error).__name__}: {error}") from error
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _is_pair(value: object) -> TypeGuard[SpecPair]:
    return (
        isinstance(value, tuple)
        and len(value) in (2, 3)
        and isinstance(value[0], Spec)
        and callable(value[1])
        and (len(value) == 2 or isinstance(value[2], Layout))
    )


class UserFunctionError(PolyinitError):
    """A user's own initializer raised: a usage problem (exit 2), not a failed check (exit 1)."""


class UserInitializer:
    """The backend contract around a user's ``fn(shape, seed) -> array``; every draw goes through
    it. Its values are judged as float32 (what a framework parameter would store), and as it takes
    no layout, small tensors are topped up with repeated draws of the same shape."""

    NAME: str = "yours"
    DTYPES: tuple[str, ...] = ("float32",)
    DEFAULT_LAYOUT: Layout = OUT_IN
    ANY_LAYOUT: bool = False

    def __init__(self, fn: Callable, layout: Layout = OUT_IN) -> None:
        self.fn, self.DEFAULT_LAYOUT = fn, layout

    def initializer(self, spec: Spec, layout: Optional[Layout] = None) -> Callable:
        return self.fn

    def sample_plan(self, plan: Plan, seed: int) -> np.ndarray:
        import numpy as np

        name = getattr(self.fn, "__name__", repr(self.fn))
        try:
            values = self.fn(plan.shape, seed)
        except Exception as error:  # anything: the user's code, reported with where it ran
            raise UserFunctionError(
                f"conformance: your initializer {name}{plan.shape!r}, seed={seed} raised "
                f"{type(error).__name__}: {error}"
            ) from error
        try:
            return np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise UserFunctionError(
                f"conformance: your initializer {name}{plan.shape!r} returned a "
                f"{type(values).__name__}, not an array of numbers ({error})"
            ) from None

    draw = draw_plan = sample_plan

    def to_numpy(self, array: Any) -> np.ndarray:
        import numpy as np

        return np.asarray(array, dtype=np.float64)

    def dtype_of(self, array: np.ndarray) -> str:
        return array.dtype.name

    def device_of(self, array: np.ndarray) -> str:
        return "cpu"

    def default_device(self) -> str:
        return "cpu"


def user_results(
    name: str, spec: Spec, fn: Callable, layout: Layout = OUT_IN, seed: int = 0, shapes: Optional[dict] = None
) -> list:
    """The conformance cases of a user's own ``fn(shape, seed)`` described by ``spec``: every
    standard shape of ``layout`` (or ``shapes``) where the spec applies."""
    from polyinit.conformance.runner import STANDARD_SHAPES, run

    chosen = shapes or {k: v for k, v in STANDARD_SHAPES.items() if v[1] == layout}
    return run({name: spec}, ["yours"], chosen, seed=seed, modules={"yours": UserInitializer(fn, layout)})


def main(
    target: str,
    backends: Optional[Sequence[str]] = None,
    json_path: Optional[str] = None,
    seed: int = 0,
    progress: Optional[Callable[[str], None]] = None,
) -> int:
    """Run the checks and print the table; ``progress(text)`` hears of each backend and spec as
    it starts and ends (the command line passes it where stderr is a terminal)."""
    from polyinit.backends import REGISTRY, available_backends
    from polyinit.conformance.runner import run

    say = progress or (lambda text: None)
    loaded = load_specs(target)
    specs = {name: v[0] if isinstance(v, tuple) else v for name, v in loaded.items()}  # pairs were checked
    unknown = [name for name in backends or () if name not in REGISTRY]
    if unknown:
        raise PolyinitError(f"conformance: --backends {','.join(unknown)}: unknown; valid: {', '.join(REGISTRY)}")
    if not backends:
        say("finding the installed backends (importing each framework)")
    names = list(backends) if backends else available_backends()
    results = []
    for backend in names:
        for name, spec in specs.items():
            say(f"{backend}: {name}: checking")
            started = time.perf_counter()
            found = run({name: spec}, [backend], seed=seed)
            say(f"{backend}: {name}: {_tally(found)} in {time.perf_counter() - started:.1f} s")
            results += found
    for name, value in loaded.items():
        if _is_pair(value):
            say(f"yours: {name}: checking")
            found = user_results(name, value[0], value[1], value[2] if len(value) == 3 else OUT_IN, seed)
            say(f"yours: {name}: {_tally(found)}")
            results += found
    if not results:
        raise PolyinitError(f"conformance: no spec in {target} applies to any standard shape")
    _print(results)
    if json_path:
        with open(json_path, "w") as out:
            json.dump(
                [
                    {
                        "backend": r.backend,
                        "spec": r.spec,
                        "shape_name": r.shape_name,
                        "shape": r.shape,
                        "dtype": r.dtype,
                        "passed": r.passed,
                        "checks": [asdict(c) for c in r.checks],
                    }
                    for r in results
                ],
                out,
                indent=2,
            )
    return 0 if all(r.passed for r in results) else 1


def _tally(results: list[CaseResult]) -> str:
    failed = sum(not r.passed for r in results)
    return f"{len(results) - failed} cases passed, {failed} failed"


def _print(results: list[CaseResult]) -> None:
    head = ("backend", "spec", "shape", "dtype", "checks", "result")
    rows = [
        (
            r.backend,
            r.spec,
            f"{r.shape_name} {r.shape}",
            r.dtype,
            f"{sum(c.passed for c in r.checks)}/{len(r.checks)}",
            "ok" if r.passed else "FAIL",
        )
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in (head,) + tuple(rows)) for i in range(len(head))]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    failed = [r for r in results if not r.passed]
    passed = len(results) - len(failed)
    for r in failed:
        print(r.failures_text())
    print(f"{passed} passed, {len(failed)} failed")
