"""Rules: write an init rule once, apply it to whole models in PyTorch, Keras, Flax and MXNet.

A rule set is an ordered list of ``selector >> spec`` pairs; for each parameter the first rule
whose selector matches decides. Selectors pick parameters by layer kind, role, name (glob or
regex), layer index or a predicate, and combine with ``&``, ``|`` and ``~``. ``KEEP`` leaves the
framework's own initialisation in place.

>>> import polyinit as pi
>>> rules = Rules([
...     (role("bias"), pi.zeros()),
...     (kind("dense") & first(), pi.glorot_uniform()),
...     (role("weight"), pi.Normal(std=0.01)),
... ], seed=0)

``apply(model, rules)`` validates every parameter's plan before writing any (an error leaves the
model exactly as it was), is strict by default (a rule that matches nothing is an error naming the
rule), derives each parameter's seed from (seed, path) so results do not depend on traversal
order, and returns a report with one row per parameter.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from polyinit.errors import PolyinitError
from polyinit.layout import Layout
from polyinit.plan import Plan, resolve
from polyinit.spec import Spec

KINDS = ("dense", "conv", "conv_transpose", "embedding", "norm", "recurrent", "attention", "other")
ROLES = ("weight", "bias", "scale", "offset", "recurrent", "embedding", "running_mean", "running_var", "other")


class RuleError(PolyinitError):
    """A rule set cannot be applied as written (unmatched rule, unmatched parameter, bad shape)."""


@dataclass(frozen=True)
class Param:
    """One parameter of a model, described portably (the framework's own path and layout)."""

    path: str
    kind: str
    role: str
    shape: tuple[int, ...]
    layout: Layout
    layer: int  # index of the owning layer among the layers that have parameters
    dtype: str = "float32"


@dataclass(frozen=True)
class Context:
    layers: int  # how many layers have parameters


class Selector:
    """Matches parameters; combine with ``&``, ``|`` and ``~``."""

    def __init__(self, test: Callable[[Param, Context], bool], text: str):
        self.test, self.text = test, text

    def matches(self, param: Param, context: Context) -> bool:
        return bool(self.test(param, context))

    def __and__(self, other: "Selector") -> "Selector":
        return Selector(lambda p, c: self.matches(p, c) and other.matches(p, c), f"({self.text} & {other.text})")

    def __or__(self, other: "Selector") -> "Selector":
        return Selector(lambda p, c: self.matches(p, c) or other.matches(p, c), f"({self.text} | {other.text})")

    def __invert__(self) -> "Selector":
        return Selector(lambda p, c: not self.matches(p, c), f"~{self.text}")

    def __repr__(self) -> str:
        return self.text


def kind(*kinds: str) -> Selector:
    """Parameters of layers of these kinds (dense, conv, conv_transpose, embedding, norm, ...)."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise RuleError(f"kind: unknown kind(s) {unknown}; expected some of {', '.join(KINDS)}")
    return Selector(lambda p, c: p.kind in kinds, f"kind{kinds}")


def role(*roles: str) -> Selector:
    """Parameters with these roles (weight, bias, scale, offset, recurrent, embedding, ...)."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise RuleError(f"role: unknown role(s) {unknown}; expected some of {', '.join(ROLES)}")
    return Selector(lambda p, c: p.role in roles, f"role{roles}")


def name(pattern: str) -> Selector:
    """Parameters whose path matches the glob ``pattern`` (``*`` crosses separators)."""
    return Selector(lambda p, c: fnmatch.fnmatchcase(p.path, pattern), f"name({pattern!r})")


def regex(pattern: str) -> Selector:
    """Parameters whose path matches the regular expression (``re.search``)."""
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise RuleError(f"regex: invalid pattern {pattern!r}: {error}") from None
    return Selector(lambda p, c: compiled.search(p.path) is not None, f"regex({pattern!r})")


def nth(index: int) -> Selector:
    """Parameters of the layer at ``index`` among layers with parameters (negative from the end)."""
    return Selector(lambda p, c: p.layer == (index % c.layers if c.layers else index), f"nth({index})")


def first() -> Selector:
    return nth(0)


def last() -> Selector:
    return nth(-1)


def predicate(test: Callable[[Param], bool], text: str = "predicate") -> Selector:
    """Parameters for which ``test(param)`` is true, e.g. ``predicate(lambda p: p.shape[0] > 512)``."""
    return Selector(lambda p, c: test(p), text)


def every() -> Selector:
    return Selector(lambda p, c: True, "every()")


@dataclass(frozen=True)
class SpecFactory:
    """A rule action whose spec depends on the parameter and its layer's other parameters (torch's
    bias bound 1/sqrt(fan_in) comes from the weight's fans). ``fn(param, layer_params) -> Spec``."""

    fn: Callable[[Param, list], Spec]
    text: str

    def spec_for(self, param: Param, layer_params: list) -> Spec:
        return self.fn(param, layer_params)

    def __repr__(self) -> str:
        return self.text


class _Keep:
    """The action that keeps the framework's own initialisation."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()


@dataclass
class Rules:
    """An ordered rule set. ``strict``: a rule matching nothing is an error. ``require_all``: a
    parameter matched by no rule is an error (else it is kept and reported as unmatched)."""

    rules: Sequence[tuple[Selector, Any]]
    seed: int = 0
    strict: bool = True
    require_all: bool = False

    def __post_init__(self):
        self.rules = list(self.rules)
        for i, pair in enumerate(self.rules):
            if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], Selector)
                    and (isinstance(pair[1], (Spec, SpecFactory)) or pair[1] is KEEP)):
                raise RuleError(f"rule {i}: expected (selector, spec, SpecFactory or KEEP), received {pair!r}")

    def label(self, index: int) -> str:
        selector, action = self.rules[index]
        return f"rule {index} [{selector!r} -> {action!r}]"


@dataclass
class Row:
    """One parameter in the report. ``mean`` and ``std`` are read from the model when first
    asked for (a pass over every parameter would otherwise double the cost of ``apply``)."""

    path: str
    kind: str
    role: str
    shape: tuple[int, ...]
    rule: Optional[str]
    spec: Optional[str]
    read_moments: Optional[Callable[[], tuple]] = field(default=None, repr=False, compare=False)
    _moments: Optional[tuple] = field(default=None, repr=False, compare=False)

    def _load(self) -> tuple:
        if self._moments is None:
            self._moments = self.read_moments() if self.read_moments else (None, None)
        return self._moments

    @property
    def mean(self) -> Optional[float]:
        return self._load()[0]

    @property
    def std(self) -> Optional[float]:
        return self._load()[1]


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def __str__(self) -> str:
        head = ("path", "kind", "role", "shape", "rule", "spec", "mean", "std")
        body = [(r.path, r.kind, r.role, str(r.shape), r.rule or "unmatched (kept)", r.spec or "",
                 "" if r.mean is None else f"{r.mean:.4g}", "" if r.std is None else f"{r.std:.4g}") for r in self.rows]
        widths = [min(60, max(len(x[i]) for x in [head] + body)) for i in range(len(head))]
        return "\n".join("  ".join(c[:60].ljust(w) for c, w in zip(line, widths)) for line in [head] + body)

    def as_dicts(self) -> list[dict]:
        keys = ("path", "kind", "role", "shape", "rule", "spec", "mean", "std")
        return [{key: getattr(r, key) for key in keys} for r in self.rows]


def param_seed(seed: int, path: str) -> int:
    """A 31-bit seed from (seed, path): independent of traversal order and of other parameters."""
    digest = hashlib.sha256(f"{seed}\x00{path}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def plan_model(params: Sequence[Param], rules: Rules) -> list[tuple[Param, Optional[int], Optional[Plan]]]:
    """Match every parameter and resolve every plan, raising before anything is written."""
    context = Context(layers=len({p.layer for p in params}))
    used: set[int] = set()
    planned = []
    for param in params:
        index = next((i for i, (sel, _) in enumerate(rules.rules) if sel.matches(param, context)), None)
        if index is None:
            if rules.require_all:
                raise RuleError(f"parameter {param.path!r} ({param.kind} {param.role}, shape {param.shape}) "
                                "is matched by no rule, and require_all=True")
            planned.append((param, None, None))
            continue
        used.add(index)
        action = rules.rules[index][1]
        if action is KEEP:
            planned.append((param, index, None))
            continue
        try:
            if isinstance(action, SpecFactory):
                action = action.spec_for(param, [p for p in params if p.layer == param.layer])
            plan = resolve(action, param.shape, param.layout, param.dtype)
        except PolyinitError as error:
            raise RuleError(f"{rules.label(index)} cannot initialise {param.path!r} "
                            f"(shape {param.shape}, layout {param.layout.pattern!r}): {error}") from None
        planned.append((param, index, plan))
    if rules.strict:
        unused = [rules.label(i) for i in range(len(rules.rules)) if i not in used]
        if unused:
            raise RuleError(f"{'; '.join(unused)} matched no parameter (strict=True); "
                            f"parameters: {', '.join(p.path for p in params[:12])}{' ...' if len(params) > 12 else ''}")
    return planned


def apply(model: Any, rules: Rules, **options: Any) -> Any:
    """Apply ``rules`` to ``model`` in its own framework; see the module docstring.

    torch ``nn.Module``, Keras models, flax nnx modules and MXNet Gluon blocks or name -> array
    dicts are changed in place and the report is returned; a flax linen param tree is not
    mutable, so ``(new_params, report)`` is returned. ``options`` go to the walker (Keras:
    ``input_shape=`` builds an unbuilt model).
    """
    from polyinit import walkers

    walker = walkers.walker_for(model)
    params = walker.walk(model, **options)
    planned = plan_model(params, rules)
    # Draw everything first, then write: a failing draw leaves the model as it was.
    drawn = [(param, walker.draw(param, plan, param_seed(rules.seed, param.path)) if plan is not None else None)
             for param, _, plan in planned]
    result = walker.write(model, drawn)
    report = _report(planned, lambda p: _moments(walker, result, p), rules)
    return (result, report) if walker.returns_new else report


def _moments(walker, result, param: Param):
    """(mean, std) of a parameter as it now is; natively where the walker can (no copies)."""
    if hasattr(walker, "moments"):
        return walker.moments(result, param)
    import numpy as np

    values = np.asarray(walker.read(result, param), dtype=np.float64)
    return (float(values.mean()), float(values.std())) if values.size else (None, None)


def _report(planned, moments: Callable[[Param], Any], rules: Rules) -> Report:
    report = Report()
    for param, index, _ in planned:
        report.rows.append(Row(param.path, param.kind, param.role, param.shape,
                               None if index is None else rules.label(index),
                               None if index is None else repr(rules.rules[index][1]),
                               read_moments=functools.partial(moments, param)))
    return report


# --- the same selectors for other uses: freezing and per-group learning rates ---------------


def select(model: Any, selector: Selector, **options: Any) -> list[Param]:
    """The parameters of ``model`` that ``selector`` matches (any framework)."""
    from polyinit import walkers

    params = walkers.walker_for(model).walk(model, **options)
    context = Context(layers=len({p.layer for p in params}))
    return [p for p in params if selector.matches(p, context)]


def torch_param_groups(model: Any, groups: Sequence[tuple[Selector, dict]], default: Optional[dict] = None) -> list[dict]:
    """torch optimizer param groups: the first matching selector decides each parameter's options.

    >>> # torch.optim.SGD(torch_param_groups(model, [(role("bias"), {"weight_decay": 0.0})]), lr=0.1)
    """
    from polyinit import walkers

    walker = walkers.TorchWalker()
    params = [p for p in walker.walk(model) if not p.role.startswith("running_")]
    context = Context(layers=len({p.layer for p in params}))
    buckets: list[list] = [[] for _ in range(len(groups) + 1)]
    for param in params:
        index = next((i for i, (sel, _) in enumerate(groups) if sel.matches(param, context)), len(groups))
        buckets[index].append(walker.tensors[param.path])
    options = [dict(opts) for _, opts in groups] + [dict(default or {})]
    return [{"params": bucket, **opts} for bucket, opts in zip(buckets, options) if bucket]


def optax_labels(params: Any, labels: Sequence[tuple[Selector, str]], default: str = "default") -> Any:
    """A tree of labels with the structure of a flax linen param tree, for ``optax.multi_transform``."""
    from polyinit import walkers

    walker = walkers.LinenWalker()
    found = walker.walk(params)
    context = Context(layers=len({p.layer for p in found}))
    chosen = {p.path: next((label for sel, label in labels if sel.matches(p, context)), default) for p in found}
    return walkers._rebuild(params, chosen)


def set_trainable(model: Any, selector: Selector, trainable: bool) -> list[str]:
    """Freeze (or unfreeze) the Keras variables ``selector`` matches; returns their paths."""
    from polyinit import walkers

    walker = walkers.KerasWalker()
    params = walker.walk(model)
    context = Context(layers=len({p.layer for p in params}))
    paths = [p.path for p in params if selector.matches(p, context)]
    for path in paths:
        walker.variables[path].trainable = trainable
    return paths
