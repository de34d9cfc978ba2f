"""Selectors: which parameters of a model a rule is about, over portable records (``Param``).

Selectors pick parameters by layer kind, role, name (glob or regex, matching tied aliases too),
position or a predicate, and combine with ``&``, ``|`` and ``~``; ``selector >> action`` makes a
rule (``>>`` binds tighter than ``&``: write ``(a & b) >> spec``).

Positions count layers with parameters in declaration order. ``first()``, ``last()`` and
``nth(i)`` alone count every layer; combined with ``&`` they count only the layers the rest of the
selector picks, so ``kind("dense") & first()`` is the first dense layer (also
``first(kind="dense")``). An index out of range matches nothing.

>>> from polyinit.params import Param
>>> from polyinit.layout import Layout
>>> params = [Param("emb", "embedding", "embedding", (10, 4), Layout("out in"), 0),
...           Param("fc.weight", "dense", "weight", (8, 4), Layout("out in"), 1)]
>>> context = Context(params)
>>> [p.path for p in params if (kind("dense") & first()).matches(p, context)]
['fc.weight']
>>> [p.path for p in params if first().matches(p, context)]
['emb']
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any, Optional

from polyinit.params import KINDS, ROLES, Param, RuleError

__all__ = ["Context", "Selector", "every", "first", "kind", "last", "name", "nth", "predicate", "regex", "role"]


class Context:
    """All records of one model, with per-selector caches (positions need the whole model)."""

    def __init__(self, params: Sequence[Param]):
        self.params = list(params)
        self.cache: dict[int, Any] = {}


class Selector:
    """Matches parameters; combine with ``&``, ``|`` and ``~``; ``selector >> spec`` is a rule."""

    def __init__(self, test: Callable[[Param, Context], bool], text: str, position: Optional[int] = None):
        self.test, self.text, self.position = test, text, position

    def matches(self, param: Param, context: Context) -> bool:
        return bool(self.test(param, context))

    def __and__(self, other: Selector) -> Selector:
        _selector("&", other)
        if self.position is not None and other.position is None:
            return _position_within(other, self.position, f"({self.text} & {other.text})")
        if other.position is not None and self.position is None:
            return _position_within(self, other.position, f"({self.text} & {other.text})")
        return Selector(lambda p, c: self.matches(p, c) and other.matches(p, c), f"({self.text} & {other.text})")

    def __or__(self, other: Selector) -> Selector:
        _selector("|", other)
        return Selector(lambda p, c: self.matches(p, c) or other.matches(p, c), f"({self.text} | {other.text})")

    def __invert__(self) -> Selector:
        return Selector(lambda p, c: not self.matches(p, c), f"~{self.text}")

    def __rshift__(self, action: Any) -> tuple:
        return (self, action)

    def __repr__(self) -> str:
        return self.text


def _selector(op: str, other: Any) -> None:
    if not isinstance(other, Selector):
        hint = " (>> binds tighter than & and |: write (a & b) >> spec)" if isinstance(other, tuple) else ""
        raise RuleError(f"selector {op}: expected a selector, received {other!r}{hint}")


def _position_within(scope: Selector, index: int, text: str) -> Selector:
    """The parameters of the ``index``-th layer among the layers ``scope`` picks, that ``scope`` picks."""

    def test(p: Param, c: Context) -> bool:
        key = id(selector)
        if key not in c.cache:
            layers = list(dict.fromkeys(q.layer for q in c.params if scope.matches(q, c)))
            c.cache[key] = layers[index] if -len(layers) <= index < len(layers) else None
        return c.cache[key] == p.layer and scope.matches(p, c)

    selector = Selector(test, text)
    return selector


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
    """Parameters whose path, or a tied alias's path, matches the glob ``pattern``."""
    if not isinstance(pattern, str):
        raise RuleError(f"name: pattern must be a string, received {pattern!r}")
    return Selector(
        lambda p, c: any(fnmatch.fnmatchcase(x, pattern) for x in (p.path,) + p.aliases), f"name({pattern!r})"
    )


def regex(pattern: str) -> Selector:
    """Parameters whose path, or a tied alias's path, matches the regular expression (``re.search``)."""
    try:
        compiled = re.compile(pattern)
    except (re.error, TypeError) as error:
        raise RuleError(f"regex: invalid pattern {pattern!r}: {error}") from None
    return Selector(lambda p, c: any(compiled.search(x) for x in (p.path,) + p.aliases), f"regex({pattern!r})")


def nth(index: int, kind: Optional[str] = None) -> Selector:
    """Parameters of the ``index``-th layer with parameters in declaration order (negative from
    the end; out of range matches nothing). ``kind=`` counts only layers of that kind; inside
    ``&`` the position counts only the layers the other side picks."""
    try:
        index = operator.index(index)
    except TypeError:
        raise RuleError(f"nth: index must be an integer, received {index!r}") from None
    if kind is not None:
        scope = globals()["kind"](kind)
        return _position_within(scope, index, f"nth({index}, kind={kind!r})")

    def test(p: Param, c: Context) -> bool:
        if -1 not in c.cache:
            c.cache[-1] = len({q.layer for q in c.params})
        layers = c.cache[-1]
        return -layers <= index < layers and p.layer == index % layers

    return Selector(test, f"nth({index})", position=index)


def first(kind: Optional[str] = None) -> Selector:
    """The first layer (of ``kind``, or of what the rest of an ``&`` picks)."""
    selector = nth(0, kind)
    selector.text = "first()" if kind is None else f"first(kind={kind!r})"
    return selector


def last(kind: Optional[str] = None) -> Selector:
    """The last layer (of ``kind``, or of what the rest of an ``&`` picks)."""
    selector = nth(-1, kind)
    selector.text = "last()" if kind is None else f"last(kind={kind!r})"
    return selector


def predicate(test: Callable[[Param], bool], text: str = "predicate") -> Selector:
    """Parameters for which ``test(param)`` is true, e.g. ``predicate(lambda p: p.shape[0] > 512)``."""
    if not callable(test):
        raise RuleError(f"predicate: expected a callable, received {test!r}")
    return Selector(lambda p, c: test(p), text)


def every() -> Selector:
    return Selector(lambda p, c: True, "every()")
