"""Everything polyinit knows about each framework, one module per framework, and the registries.

``polyinit/frameworks/<name>.py`` defines ``FRAMEWORK = Framework(...)``: how to recognise a model
of that framework without importing it, its walker (model -> portable ``Param`` records, draw,
write), its layout presets and its module-type entries. Adding a framework is one new file here:
the modules are discovered with ``pkgutil`` and imported only when a model or preset asks.

The module-type registry maps a layer class, named by its import path (so a third-party package
such as transformers is never imported by polyinit), to its kind and per-parameter roles and
layouts. Users add their own with :func:`register_module_type`.

>>> from polyinit.params import ModuleType, ParamType
>>> register_module_type("mylib.layers.FancyDense", ModuleType("dense", {
...     "w": ParamType("weight", "in out"), "b": ParamType("bias", "out")}))
>>> module_type("mylib.layers.FancyDense").kind
'dense'
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from polyinit.errors import SpecError
from polyinit.layout import Layout
from polyinit.params import ModelError, ModuleType

_MODULE_TYPES: dict[str, ModuleType] = {}


@dataclass(frozen=True)
class Framework:
    """One framework's record. ``detect(model)`` must not import the framework (it looks in
    ``sys.modules``); ``walker`` is a factory called only once a model of this framework exists.
    ``presets``: kind -> (native pattern, semantic pattern). ``priority``: lower asks first.
    ``defaults``: the framework's layer defaults as specs (``polyinit.defaults.layer_defaults``);
    ``measurer``: compare's real-layer measurement (``polyinit.measure``); ``version``, ``module``,
    ``colour`` and ``style`` for compare's table, cache and picture. Every per-framework table of
    defaults, compare and plot is derived from these records."""

    name: str
    display: str
    detect: Callable[[Any], bool]
    walker: Callable[[], Any]
    presets: dict = field(default_factory=dict)
    priority: int = 50
    aliases: tuple[str, ...] = ()
    defaults: Optional[Callable[[str, dict], dict]] = None  # (layer, dims) -> {name: defaults.Param}
    measurer: Optional[Callable[..., Any]] = None  # (measure.Setup, seed, x) -> (linear, activated, arrays)
    cross_rules: Optional[Callable[..., list]] = None  # (weights, biases) selectors -> defaults as rules
    version: str = ""  # the version the defaults and measurer were checked against
    module: str = ""  # the module the measurer imports (is the framework installed?)
    colour: str = "#777777"  # compare's picture
    style: str = "-"
    distribution: str = ""  # the pip distribution, for its installed version without importing it
    norm_epsilon: tuple = (1e-5, 1e-5)  # the default batchnorm and layernorm epsilons
    recurrent_names: tuple | dict = ()  # (input kernel of a gate, biases added to every gate, GRU's b_hn), or per kind
    missing_layers: tuple = ()  # compare's layer kinds this framework has no default for
    preset_twins: Optional[Callable[[], tuple]] = None  # its own layers and initializer, for the preset checks
    backend: Optional[str] = None  # the polyinit backend that draws for its models
    forward: Optional[Callable[[Any, Any], Any]] = None  # (model, float32 numpy batch) -> numpy output, inference mode
    input_size: Optional[Callable[[Any], Any]] = None  # a model's input size without the batch axis, or None


_FRAMEWORKS: dict[str, Framework] = {}
_LOADED = False


def register_framework(framework: Framework) -> Framework:
    """Add (or replace) a framework record; returns it."""
    for name in (framework.name,) + framework.aliases:
        _FRAMEWORKS[name] = framework
    return framework


def frameworks() -> list[Framework]:
    """Every framework record, in detection order (each listed once)."""
    _load()
    unique = {id(f): f for f in _FRAMEWORKS.values()}
    return sorted(unique.values(), key=lambda f: (f.priority, f.name))


def _load() -> None:
    """Import every module of this package once (each defines FRAMEWORK; none imports its framework)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            if hasattr(module, "FRAMEWORK"):
                register_framework(module.FRAMEWORK)


def get_framework(name: str) -> Framework:
    _load()
    try:
        return _FRAMEWORKS[name]
    except KeyError:
        raise SpecError(f"no framework named {name!r}; known: {sorted(_FRAMEWORKS)}") from None


def framework_for(model: Any) -> Framework:
    """The framework of ``model``, found without importing any framework."""
    for framework in frameworks():
        if framework.detect(model):
            return framework
    if isinstance(model, (list, tuple)):
        hint = "a list or tuple of parameters is not a model; pass the model itself"
    elif type(model).__name__ in ("OrderedDict",) or (
        isinstance(model, dict) and model and type(next(iter(model.values()))).__module__.startswith("torch")
    ):
        hint = "a torch state_dict holds copies' names only; pass the nn.Module (model.load_state_dict after)"
    else:
        hint = (
            "expected a torch nn.Module, a Keras model, a flax nnx Module or linen variables tree, "
            "a Haiku params tree, an Equinox module, or an MXNet Gluon block or name -> array dict"
        )
    raise ModelError(f"rules: no walker for a {type(model).__module__}.{type(model).__name__}: {hint}")


def walker_for(model: Any) -> Any:  # a TorchWalker, KerasWalker, ...: the walkers share no base class
    """A fresh walker for ``model``'s framework."""
    return framework_for(model).walker()


def register_module_type(import_path: str, entry: ModuleType) -> None:
    """Register a layer class by its import path (``"transformers.pytorch_utils.Conv1D"``).
    Subclasses inherit the entry through their MRO; a later registration replaces an earlier one."""
    if not isinstance(entry, ModuleType):
        raise SpecError(f"register_module_type: entry must be a ModuleType, received {entry!r}")
    _MODULE_TYPES[import_path] = entry


def module_type(import_path: str) -> Optional[ModuleType]:
    return _MODULE_TYPES.get(import_path)


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def module_type_of(obj: Any) -> tuple[Optional[ModuleType], str]:
    """(entry, import path of the class) for the nearest registered class in ``obj``'s MRO."""
    for cls in type(obj).__mro__:
        entry = _MODULE_TYPES.get(class_path(cls))
        if entry is not None:
            return entry, class_path(type(obj))
    return None, class_path(type(obj))


def preset(framework: str, kind: str, *, native: bool = True) -> Layout:
    """The layout of a ``kind`` weight in ``framework`` (see ``polyinit.layout.preset``)."""
    _load()
    try:
        record = _FRAMEWORKS.get(framework)
        known = record is not None and kind in record.presets
    except TypeError:  # not even hashable
        record, known = None, False
    if not known:
        kinds = sorted({k for f in _FRAMEWORKS.values() for k in f.presets})
        names = sorted(n for n, f in _FRAMEWORKS.items() if f.presets)
        raise SpecError(
            f"preset: no layout for framework={framework!r}, kind={kind!r}; frameworks: {names}; kinds: {kinds}"
        )
    assert record is not None  # known implies a record
    native_pattern, semantic_pattern = record.presets[kind]
    return Layout(native_pattern if native else semantic_pattern)
