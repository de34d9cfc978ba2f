"""Rules: write an init rule once, apply it to whole models in PyTorch, Keras, Flax and MXNet.

A rule set is an ordered list of ``selector >> spec`` pairs (or ``(selector, spec)`` tuples); for
each parameter the first rule whose selector matches decides. Selectors pick parameters by layer
kind, role, name (glob or regex, matching tied aliases too), position or a predicate, and combine
with ``&``, ``|`` and ``~`` (``>>`` binds tighter than ``&``: write ``(a & b) >> spec``). ``KEEP``
leaves the framework's own initialisation in place.

>>> import polyinit as pi
>>> rules = Rules([
...     role("bias") >> pi.zeros(),
...     (kind("dense") & first()) >> pi.glorot_uniform(),  # the first dense layer
...     (role("weight"), pi.Normal(std=0.01)),
... ], seed=0)

Positions count layers with parameters in **declaration order** (torch registration order, Keras
layer order, nnx attribute order, linen module order, Gluon child order). ``first()``, ``last()``
and ``nth(i)`` alone count every layer; combined with ``&`` they count only the layers the rest
of the selector picks, so ``kind("dense") & first()`` is the first dense layer (also written
``first(kind="dense")``). An index out of range matches nothing.

Seeds: each parameter's seed is ``sha256(seed, key)``; the key is the record's ``key`` (its path
without framework auto-numbering: Keras and Gluon layer counters never enter it), or
``Rules(key=fn)``'s ``fn(param)``. A model rebuilt in the same or another process gets identical
weights; traversal order and the other rules never matter.

``apply(model, rules)`` checks every parameter's plan and every write condition before writing
any, restores what was written if a write still fails (an error leaves the model bit-identical),
is strict by default (a rule that matches nothing, or only parameters an earlier rule took, is an
error naming the rule) and returns a report of what was drawn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from polyinit.errors import PolyinitError
from polyinit.params import KINDS, ROLES, ModelError, Param, RuleError
from polyinit.plan import Plan, resolve
from polyinit.selectors import Context, Selector, every, first, kind, last, name, nth, predicate, regex, role
from polyinit.spec import Spec

__all__ = [
    "KEEP",
    "KINDS",
    "ROLES",
    "ModelError",
    "Param",
    "Report",
    "Row",
    "RuleError",
    "Rules",
    "Selector",
    "SpecFactory",
    "apply",
    "every",
    "first",
    "kind",
    "last",
    "name",
    "nth",
    "optax_labels",
    "param_seed",
    "predicate",
    "regex",
    "role",
    "select",
    "set_trainable",
    "torch_param_groups",
]


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


def _seed(value: Any) -> int:
    if value is None:
        raise RuleError(
            "Rules: seed=None is refused (it would mean the same weights every run, silently); "
            "pass an integer, e.g. secrets.randbits(31) for fresh weights each run"
        )
    from polyinit import _validate

    # The one validation path (polyinit._validate.seed): the range the portable and sharded
    # draws accept, [0, 2**64), so a seed apply(native) takes is one apply(portable=True) takes.
    try:
        return _validate.seed("Rules", value)
    except PolyinitError as error:
        raise RuleError(f"{error} ({type(value).__name__})") from None


@dataclass
class Rules:
    """An ordered rule set. ``seed``: an integer (numpy/JAX integers too). ``strict``: a rule
    matching nothing, or only parameters an earlier rule took, is an error. ``require_all``: a
    parameter matched by no rule is an error (else it is kept and reported as unmatched).
    ``key``: ``fn(param) -> str``, the seed key of each parameter (default ``param.key``)."""

    rules: Sequence[Any]
    seed: int = 0
    strict: bool = True
    require_all: bool = False
    key: Optional[Callable[[Param], str]] = None

    def __post_init__(self):
        if isinstance(self.rules, (str, bytes)) or not hasattr(self.rules, "__iter__"):
            raise RuleError(f"Rules: expected a list of (selector, action) pairs, received {self.rules!r}")
        self.rules = list(self.rules)
        self.seed = _seed(self.seed)
        for i, pair in enumerate(self.rules):
            if not (
                isinstance(pair, tuple)
                and len(pair) == 2
                and isinstance(pair[0], Selector)
                and (isinstance(pair[1], (Spec, SpecFactory)) or pair[1] is KEEP)
            ):
                raise RuleError(f"rule {i}: expected (selector, spec, SpecFactory or KEEP), received {pair!r}")
        if self.key is not None and not callable(self.key):
            raise RuleError(f"Rules: key must be a callable param -> str, received {self.key!r}")

    def label(self, index: int) -> str:
        selector, action = self.rules[index]
        return f"rule {index} [{selector!r} -> {action!r}]"


@dataclass(frozen=True)
class Row:
    """One parameter in the report: what was drawn, not the model's current values.

    ``drawn`` is the resolved plan in words (``uniform(-0.07596, 0.07596)``); ``fans`` the
    convention (``native`` or ``semantic``) and ``fan_in``/``fan_out`` the numbers used; ``mean``
    and ``std`` the plan's promised statistics. Holds no reference to the model."""

    path: str
    kind: str
    role: str
    shape: tuple[int, ...]
    layer: int
    aliases: tuple[str, ...]
    rule_index: Optional[int]
    rule: Optional[str]
    spec: Optional[str]
    fans: str
    layout: str
    plan: Optional[Plan] = field(default=None, repr=False, compare=False)

    @property
    def drawn(self) -> str:
        return "" if self.plan is None else self.plan.describe()

    @property
    def fan_in(self) -> Optional[int]:
        return None if self.plan is None or self.plan.fans is None else self.plan.fans.fan_in

    @property
    def fan_out(self) -> Optional[int]:
        return None if self.plan is None or self.plan.fans is None else self.plan.fans.fan_out

    def _stats(self):
        return None if self.plan is None or self.plan.size == 0 else self.plan.stats

    @property
    def mean(self) -> Optional[float]:
        stats = self._stats()
        return None if stats is None or stats.mean is None else float(stats.mean)

    @property
    def std(self) -> Optional[float]:
        stats = self._stats()
        return None if stats is None or stats.var is None else float(stats.var) ** 0.5


_COLUMNS = ("path", "kind", "role", "shape", "rule", "drawn", "fans", "fan_in", "fan_out", "aliases")


@dataclass
class Report:
    """Rows in declaration order, the fan convention, rules that took nothing (non-strict) and
    module types with parameters that no registry entry describes."""

    rows: list[Row] = field(default_factory=list)
    fans: str = "native"
    unused: list[str] = field(default_factory=list)
    unknown_types: dict = field(default_factory=dict)

    def __str__(self) -> str:
        def cell(row: Row, key: str) -> str:
            value = getattr(row, key)
            if key == "rule":
                return "unmatched (kept)" if row.rule_index is None else f"rule {row.rule_index}"
            if key == "aliases":
                return ", ".join(value)
            return "" if value is None else str(value)

        body = [_COLUMNS] + [tuple(cell(r, k) for k in _COLUMNS) for r in self.rows]
        widths = [max(len(line[i]) for line in body) for i in range(len(_COLUMNS))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in body]
        lines.append(f"fans: {self.fans} convention")
        lines += [f"unused: {u}" for u in self.unused]
        lines += [f"unregistered module type {t}: {', '.join(p)}" for t, p in self.unknown_types.items()]
        return "\n".join(lines)

    def as_dicts(self) -> list[dict]:
        keys = (
            "path",
            "kind",
            "role",
            "shape",
            "layer",
            "aliases",
            "rule_index",
            "rule",
            "spec",
            "drawn",
            "fans",
            "layout",
            "fan_in",
            "fan_out",
            "mean",
            "std",
        )
        return [{key: getattr(r, key) for key in keys} for r in self.rows]


def param_seed(seed: int, key: str) -> int:
    """A 31-bit seed from (seed, key): independent of traversal order and of other parameters."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def match(params: Sequence[Param], selectors: Sequence[Selector], what: str = "rule") -> list[Optional[int]]:
    """For each parameter the index of the first selector that matches it (or None). A selector
    that raises is an error naming its index and the parameter's path."""
    context = Context(params)
    chosen = []
    for param in params:
        found = None
        for i, selector in enumerate(selectors):
            try:
                hit = selector.matches(param, context)
            except PolyinitError:
                raise
            except Exception as error:
                raise RuleError(
                    f"{what} {i} [{selector!r}] raised {type(error).__name__}: {error} on parameter {param.path!r}"
                ) from error
            if hit:
                found = i
                break
        chosen.append(found)
    return chosen


def _unused(
    params: Sequence[Param], selectors: Sequence[Selector], chosen: list, label: Callable[[int], str]
) -> list[str]:
    """Why each selector took no parameter: it matched none, or only ones earlier selectors took."""
    context = Context(params)
    out = []
    for i in sorted(set(range(len(selectors))) - set(chosen)):
        takers = sorted({chosen[k] for k, p in enumerate(params) if selectors[i].matches(p, context)})
        if takers:
            out.append(
                f"{label(i)} is shadowed by {', '.join(f'rule {j}' for j in takers)} "
                "(every parameter it matches is taken by an earlier rule)"
            )
        else:
            out.append(f"{label(i)} matched no parameter")
    return out


def _names(params: Sequence[Param]) -> str:
    shown = ", ".join(p.path for p in params[:12])
    return f"parameters: {shown}{' ...' if len(params) > 12 else ''}"


def plan_model(
    params: Sequence[Param], rules: Rules, fans: str = "native"
) -> list[tuple[Param, Optional[int], Optional[Plan]]]:
    """Match every parameter and resolve every plan, raising before anything is written."""
    chosen = match(params, [sel for sel, _ in rules.rules])
    planned: list[tuple[Param, Optional[int], Optional[Plan]]] = []
    by_layer: dict[int, list] = {}
    for param in params:
        by_layer.setdefault(param.layer, []).append(param)
    for param, index in zip(params, chosen):
        if index is None:
            if rules.require_all:
                raise RuleError(
                    f"parameter {param.path!r} ({param.kind} {param.role}, shape {param.shape}) "
                    "is matched by no rule, and require_all=True"
                )
            planned.append((param, None, None))
            continue
        action = rules.rules[index][1]
        if action is KEEP:
            planned.append((param, index, None))
            continue
        shape, layout = param.target(fans)
        if isinstance(action, SpecFactory):
            action = _factory_spec(rules, index, action, param, by_layer[param.layer])
        try:
            plan = resolve(action, shape, layout, param.dtype)
        except PolyinitError as error:
            raise RuleError(
                f"{rules.label(index)} cannot initialise {param.path!r} "
                f"(shape {shape}, layout {layout.pattern!r}, fans={fans}): {error}"
            ) from None
        planned.append((param, index, plan))
    if rules.strict:
        unused = _unused(params, [sel for sel, _ in rules.rules], chosen, rules.label)
        if unused:
            raise RuleError(f"{'; '.join(unused)} (strict=True); {_names(params)}")
    return planned


def _factory_spec(rules: Rules, index: int, factory: SpecFactory, param: Param, layer_params: list) -> Spec:
    """A SpecFactory's spec for ``param``: its exceptions wrapped like a raising selector's, and a
    result that is not a Spec refused (it would fail later, far from its cause)."""
    try:
        spec = factory.spec_for(param, layer_params)
    except PolyinitError:
        raise
    except Exception as error:
        raise RuleError(
            f"{rules.label(index)} raised {type(error).__name__}: {error} on parameter {param.path!r}"
        ) from error
    if not isinstance(spec, Spec):
        raise RuleError(f"{rules.label(index)} returned {spec!r} for {param.path!r}; expected a polyinit Spec")
    return spec


def _seeds(planned: list, rules: Rules) -> list[Optional[int]]:
    keys: dict[str, str] = {}
    seeds: list[Optional[int]] = []
    for param, _, plan in planned:
        if plan is None:
            seeds.append(None)
            continue
        key = _user_key(rules, param) if rules.key else param.key
        if not isinstance(key, str):
            raise RuleError(f"Rules.key returned {key!r} for {param.path!r}; expected a string")
        if key in keys:
            raise RuleError(
                f"seed key {key!r} is shared by {keys[key]!r} and {param.path!r}: both would get "
                "the same values; make Rules(key=...) return distinct keys"
            )
        keys[key] = param.path
        seeds.append(param_seed(rules.seed, key))
    return seeds


def _user_key(rules: Rules, param: Param) -> Any:
    """``Rules(key=fn)``'s ``fn(param)`` (``param.key`` without one), its exceptions wrapped like
    a raising selector's."""
    if rules.key is None:
        return param.key
    try:
        return rules.key(param)
    except PolyinitError:
        raise
    except Exception as error:
        raise RuleError(
            f"Rules.key {rules.key!r} raised {type(error).__name__}: {error} on parameter {param.path!r}"
        ) from error


def apply(model: Any, rules: Rules, *, fans: Optional[str] = None, portable: bool = False, **options: Any) -> Any:
    """Apply ``rules`` to ``model`` in its own framework; see the module docstring.

    ``fans="native"`` resolves fans with each framework's own convention (torch reads a
    transposed conv's output-channel axis as its fan-in; Keras counts every channel into a
    depthwise conv's fan-in); ``fans="semantic"`` follows the data flow, so one rule gives the same
    statistics in every framework for grouped, depthwise and transposed convs and packed q/k/v.
    torch ``nn.Module``, Keras models, flax nnx modules and MXNet Gluon blocks or name -> array
    dicts are changed in place and the report is returned; a flax linen variables tree is not
    mutable, so ``(new_tree, report)`` is returned. ``options`` go to the walker (Keras:
    ``input_shape=`` builds an unbuilt model).

    ``portable=True`` draws every parameter from polyinit's counter-based generator
    (``polyinit.portable``) instead of the framework's: the same rules and seed give the same
    float32 weights, bit for bit, on the same architecture in every framework, up to each
    framework's layout. Each parameter is drawn in the logical order (out, in, spatial; an
    embedding as (num, dim)) and laid out as the framework stores it; its key is its position
    (``"layer.role.n"``, the same in every framework; ``Rules(key=...)`` overrides it); fans
    default to ``"semantic"`` so that the statistics agree too. torch DTensor (FSDP2) parameters
    are drawn shard by shard, each rank its own shard.

    >>> # report = apply(torch_model, Rules([role("weight") >> pi.he_normal()]), fans="semantic")
    """
    from polyinit import writing
    from polyinit.frameworks import walker_for

    # The one write path (polyinit.writing): validate, plan, pre-write checks, write with rollback.
    check_rules("apply", rules)
    portable = writing.check_portable_flag("apply", portable)
    fans = writing.check_fans("apply", fans, portable)
    walker = walker_for(model)
    params = walker.walk(model, **options)
    planned = plan_model(params, rules, fans)
    seeds = _seeds(planned, rules)
    writing.check_targets(walker, [param for param, _, plan in planned if plan is not None], "apply", portable=portable)
    # Draw everything first, then write: a failing draw leaves the model as it was.
    drawn = draws(walker, planned, seeds, rules, portable, model)
    result = writing.write_all(walker, model, drawn, "apply")
    report = _report(planned, rules, fans, walker)
    return (result, report) if walker.returns_new else report


def check_rules(caller: str, rules: Any) -> Rules:
    if not isinstance(rules, Rules):
        raise RuleError(f"{caller}: rules must be a Rules, received {type(rules).__name__}")
    return rules


def draws(walker: Any, planned: list, seeds: list, rules: Rules, portable: bool, model: Any = None) -> list:
    """(param, pending draw or None) for every planned parameter: the walker's native draw, or the
    portable one (kept pending where the walker draws portable values in place; keyed by the
    identities of ``model``'s context)."""
    if portable:
        from polyinit.logical import portable_draws

        drawn = portable_draws(walker, planned, rules, model)
        if not getattr(walker, "draws_portable_in_place", False):
            drawn = [(param, None if pending is None else pending.values()) for param, pending in drawn]
        return drawn
    return [
        (param, walker.draw(param, plan, seed) if plan is not None else None)
        for (param, _, plan), seed in zip(planned, seeds)
    ]


def _report(planned: list, rules: Rules, fans: str, walker: Any) -> Report:
    report = Report(fans=fans, unknown_types=dict(getattr(walker, "unknown", {}) or {}))
    for param, index, plan in planned:
        layout = param.target(fans)[1].pattern
        report.rows.append(
            Row(
                param.path,
                param.kind,
                param.role,
                param.shape,
                param.layer,
                param.aliases,
                index,
                None if index is None else rules.label(index),
                None if index is None else repr(rules.rules[index][1]),
                fans,
                layout,
                plan,
            )
        )
    if not rules.strict:
        chosen = [index for _, index, _ in planned]
        report.unused = _unused([p for p, _, _ in planned], [s for s, _ in rules.rules], chosen, rules.label)
    return report


# --- the same selectors for other uses: freezing and per-group learning rates ---------------


def select(model: Any, selector: Selector, **options: Any) -> list[Param]:
    """The parameters of ``model`` that ``selector`` matches (any framework)."""
    from polyinit.frameworks import walker_for

    params = walker_for(model).walk(model, **options)
    return [p for p, hit in zip(params, match(params, [selector], "selector")) if hit is not None]


def _strict_groups(params: list[Param], selectors: list[Selector], what: str) -> list[Optional[int]]:
    chosen = match(params, selectors, what)
    unused = _unused(params, selectors, chosen, lambda i: f"{what} {i} [{selectors[i]!r}]")
    if unused:
        raise RuleError(f"{'; '.join(unused)}; {_names(params)}")
    return chosen


def torch_param_groups(
    model: Any, groups: Sequence[tuple[Selector, dict]], default: Optional[dict] = None
) -> list[dict]:
    """torch optimizer param groups: the first matching selector decides each parameter's options.
    Strict: a group whose selector takes no parameter is an error. Buffers are left out.

    >>> # torch.optim.SGD(torch_param_groups(model, [(role("bias"), {"weight_decay": 0.0})]), lr=0.1)
    """
    from polyinit.frameworks.torch import TorchWalker

    walker = TorchWalker()
    params = [p for p in walker.walk(model) if not p.role.startswith("running_")]
    chosen = _strict_groups(params, [sel for sel, _ in groups], "group")
    buckets: list[list] = [[] for _ in range(len(groups) + 1)]
    for param, index in zip(params, chosen):
        buckets[len(groups) if index is None else index].append(walker.tensors[param.path])
    options = [dict(opts) for _, opts in groups] + [dict(default or {})]
    return [{"params": bucket, **opts} for bucket, opts in zip(buckets, options) if bucket]


def optax_labels(params: Any, labels: Sequence[tuple[Selector, str]], default: str = "default") -> Any:
    """A tree of labels with the structure of a flax linen param tree, for ``optax.multi_transform``.
    Strict: a label whose selector takes no parameter is an error."""
    from polyinit.frameworks.flax import LinenWalker, rebuild

    walker = LinenWalker()
    found = walker.walk(params)
    chosen = _strict_groups(found, [sel for sel, _ in labels], "label")
    names = {p.path: default if i is None else labels[i][1] for p, i in zip(found, chosen)}
    return rebuild(params, names, fill=default)


def set_trainable(model: Any, selector: Selector, trainable: bool) -> list[str]:
    """Freeze (or unfreeze) the Keras variables ``selector`` matches; returns their paths. Strict:
    a selector that matches nothing is an error."""
    from polyinit.frameworks.keras import KerasWalker

    walker = KerasWalker()
    params = walker.walk(model)
    chosen = _strict_groups(params, [selector], "selector")
    paths = [p.path for p, i in zip(params, chosen) if i is not None]
    for path in paths:
        walker.variables[path].trainable = trainable
    return paths
