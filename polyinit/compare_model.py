"""``polyinit compare --model module:factory``: each framework's defaults applied to your own model.

``factory()`` returns a torch ``nn.Module``, a Keras model, a Flax nnx module, an Equinox module or
a Gluon block, or ``(model, input_shape)``; a Haiku params tree (or linen variables) is compared
too, but carries no function, so the signal through it is not measured. For every framework with cross-application rules
(``polyinit.defaults.rules_for``: torch, keras, flax, mxnet) a fresh model is built, that
framework's defaults are applied through ``polyinit.rules.apply``, and a standard-normal batch of
``input_shape`` is pushed through it; the model as its own framework built it is the first column.
Parameters the rules do not cover (recurrent, attention) keep the model's own initialisation.

>>> parse_target("mypackage.models:build")
('mypackage.models', 'build')
"""

from __future__ import annotations

import csv
import importlib
import io
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from polyinit.errors import PolyinitError


def cross_frameworks() -> tuple[str, ...]:
    """The frameworks whose defaults can be applied to any model (records with ``cross_rules``)."""
    from polyinit.frameworks import frameworks

    return tuple(f.name for f in frameworks() if f.cross_rules is not None)


@dataclass
class ModelComparison:
    target: str
    model_framework: str
    input_shape: Optional[tuple[int, ...]]
    seed: int
    params: list[dict] = field(default_factory=list)  # path, kind, role, shape
    specs: dict[str, list[str]] = field(default_factory=dict)  # framework -> spec per parameter
    output_var: dict[str, Optional[float]] = field(default_factory=dict)  # "native" and each framework
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "target": self.target,
            "model_framework": self.model_framework,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "seed": self.seed,
            "params": [dict(p, **{f: self.specs[f][i] for f in self.specs}) for i, p in enumerate(self.params)],
            "output_var": self.output_var,
            "notes": self.notes,
        }


def parse_target(target: str) -> tuple[str, str]:
    module, sep, attribute = target.partition(":")
    if not sep or not module or not attribute:
        raise PolyinitError(f"compare --model: expected MODULE:FACTORY, received {target!r}")
    return module, attribute


def load_factory(target: str) -> Callable[[], Any]:
    """Import MODULE (the working directory searched too, for this import only) and return FACTORY."""
    module_name, attribute = parse_target(target)
    added = os.getcwd() not in sys.path
    if added:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise PolyinitError(f"compare --model {target!r}: cannot import {module_name!r} ({error})") from None
    except Exception as error:  # the user's module raised while being imported
        raise PolyinitError(
            f"compare --model {target!r}: importing {module_name!r} raised {type(error).__name__}: {error}"
        ) from error
    finally:
        if added:
            sys.path.remove(os.getcwd())
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise PolyinitError(f"compare --model {target!r}: {module_name}.{attribute} is not a callable factory")
    return factory


def framework_of(model: Any) -> str:
    """The model's framework, from the framework records' ``detect`` (which imports nothing)."""
    from polyinit.frameworks import frameworks

    for record in frameworks():
        if record.detect(model):
            return record.name
    raise PolyinitError(
        f"compare --model: {type(model).__module__}.{type(model).__name__} is not a torch, "
        "Keras, Flax nnx, Equinox or Gluon model, nor a Haiku or linen params tree"
    )


def _build(factory: Callable, seed: int) -> tuple[Any, Optional[tuple[int, ...]]]:
    from polyinit import native_logs
    from polyinit.compare import preserved_global_rngs
    from polyinit.measure import python_random

    # The factory imports its framework: TensorFlow's C++ start-up lines are hidden as compare's are.
    with preserved_global_rngs(), python_random(seed), native_logs.hidden():
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.manual_seed(seed)  # the model's own layers draw from torch's global generator
        try:
            built = factory()
        except PolyinitError:
            raise
        except Exception as error:  # the user's factory: name it, keep its traceback as the cause
            name = getattr(factory, "__qualname__", repr(factory))
            raise PolyinitError(
                f"compare --model: the factory {name}() raised {type(error).__name__}: {error}"
            ) from error
    if isinstance(built, tuple) and len(built) == 2:
        return built[0], tuple(int(d) for d in built[1])
    return built, None


# The modern schemes compare can show: those that need nothing but the model (muP needs a base
# model, so it is called from Python: polyinit.modern.mup(model, base)).
SCHEMES = (
    "gpt2",
    "megatron",
    "olmo",
    "u_mup",
    "fixup",
    "t_fixup",
    "deepnet",
    "t5",
    "small_init",
    "wang",
    "small_init_emb",
    "modded_nanogpt",
)


def apply_defaults(model: Any, framework: str, seed: int, scheme: Optional[str] = None) -> tuple[list[dict], Any]:
    """``framework``'s defaults (or the modern ``scheme``, ``polyinit.modern``) on ``model``, through
    the rules machinery: one dict per parameter (path, kind, role, shape, spec: for a scheme the
    resolved draw, e.g. ``normal(mean=0, std=0.008165)``, so its per-layer std reads directly), and
    the model (the same one, written in place, or the new one of a Haiku, linen or Equinox model).
    The only place this module touches ``polyinit.rules``."""
    from polyinit.rules import apply

    if scheme is not None:
        from polyinit import modern

        model, report = _applied(model, apply(model, getattr(modern, scheme)(model, seed=seed)))
        return [
            dict(path=r.path, kind=r.kind, role=r.role, shape=list(r.shape), spec=r.drawn or None) for r in report.rows
        ], model
    from polyinit.defaults import rules_for

    model, report = _applied(model, apply(model, rules_for(framework, seed=seed)))
    return [dict(path=r.path, kind=r.kind, role=r.role, shape=list(r.shape), spec=r.spec) for r in report.rows], model


def _applied(model: Any, result: Any) -> tuple[Any, Any]:
    """(model, report) from ``apply``'s result: a report, or (new model, report) for immutable models."""
    return result if isinstance(result, tuple) else (model, result)


def _input_shape(model: Any, framework: str) -> Optional[tuple[int, ...]]:
    """A batch of 256 for a model whose input size its framework's record can read off it
    (Keras inputs, a torch first Linear)."""
    from polyinit.frameworks import get_framework

    guess = get_framework(framework).input_size
    size = guess(model) if guess is not None else None
    return None if size is None else (256,) + tuple(size)


def output_var(model: Any, framework: str, shape: tuple[int, ...], seed: int) -> float:
    """Var of the model's output for a standard-normal batch of ``shape`` (inference mode), through
    the framework record's ``forward``."""
    from polyinit.frameworks import get_framework

    forward = get_framework(framework).forward
    if forward is None:
        raise PolyinitError(f"compare --model: a {framework} model carries no function to measure")
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    y = forward(model, x)
    return float(np.var(np.asarray(y, dtype=np.float64)))


def compare_model(
    target: str,
    frameworks: Optional[Sequence[str]] = None,
    seed: int = 0,
    measure: bool = True,
    progress: Optional[Callable[[str], None]] = None,
    schemes: Sequence[str] = (),
) -> ModelComparison:
    """Each framework's defaults on the model ``target`` names, side by side (see the module
    docstring), and next to them each of ``schemes`` (``SCHEMES``: GPT-2's scaled residual, OLMo,
    DeepNet, ...) applied to the same model."""
    from polyinit._validate import seed as valid_seed

    valid_seed("compare --model", seed)
    unknown = [name for name in schemes if name not in SCHEMES]
    if unknown:
        raise PolyinitError(f"compare --scheme: unknown scheme(s) {unknown}; expected some of {', '.join(SCHEMES)}")
    from polyinit.frameworks import get_framework

    say = progress or (lambda text: None)
    factory = load_factory(target)
    model, shape = _build(factory, seed)
    native = framework_of(model)
    shape = shape or _input_shape(model, native)
    result = ModelComparison(target, native, shape, seed)
    if get_framework(native).forward is None:  # a params tree: names and shapes, no function
        shape = None
        result.notes.append(f"a {native} params tree carries no function: the signal is not measured")
    elif shape is None:
        result.notes.append("no input shape: return (model, input_shape) from the factory to measure the signal")
    if measure and shape is not None:
        say(f"{native}: the model as built")
        result.output_var["native"] = output_var(model, native, shape, seed)
    crossing = cross_frameworks()
    for framework in crossing if frameworks is None else frameworks:
        if framework not in crossing:
            result.notes.append(f"{framework}: no cross-application rules (expected some of {', '.join(crossing)})")
            continue
        say(f"{framework}'s defaults on the {native} model")
        fresh, _ = _build(factory, seed)
        rows, fresh = apply_defaults(fresh, framework, seed)
        if not result.params:
            result.params = [{k: r[k] for k in ("path", "kind", "role", "shape")} for r in rows]
        result.specs[framework] = [r["spec"] or "kept" for r in rows]
        if measure and shape is not None:
            result.output_var[framework] = output_var(fresh, native, shape, seed)
    for scheme in schemes:
        say(f"the {scheme} scheme on the {native} model")
        fresh, _ = _build(factory, seed)
        rows, fresh = apply_defaults(fresh, native, seed, scheme=scheme)
        if not result.params:
            result.params = [{k: r[k] for k in ("path", "kind", "role", "shape")} for r in rows]
        result.specs[f"{scheme} scheme"] = [r["spec"] or "kept" for r in rows]
        if measure and shape is not None:
            result.output_var[f"{scheme} scheme"] = output_var(fresh, native, shape, seed)
    return result


def render(result: ModelComparison, fmt: str = "table") -> str:
    """The per-parameter table (text, Markdown or CSV) and the output variance of each."""
    names = list(result.specs)
    head = ["parameter", "kind/role", "shape"] + [
        name if name.endswith(" scheme") else f"{name} defaults" for name in names
    ]
    body = [
        [p["path"], f"{p['kind']}/{p['role']}", "x".join(map(str, p["shape"]))]
        + [_short(result.specs[name][i]) for name in names]
        for i, p in enumerate(result.params)
    ]
    variances = ", ".join(f"{key} {value:.4g}" for key, value in result.output_var.items())
    footer = [f"Var of the output for an N(0, 1) batch of {result.input_shape}: {variances}"] if variances else []
    footer += result.notes
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows([head] + body + [["output_var", "", ""] + [result.output_var.get(n, "") for n in names]])
        return out.getvalue().rstrip("\n")
    if fmt == "markdown":
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
        title = f"**polyinit compare --model {result.target}** ({result.model_framework} model)"
        return "\n".join([title, ""] + lines + [""] + footer)
    widths = [max(len(row[i]) for row in [head] + body) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head] + body]
    return "\n".join([f"polyinit compare --model {result.target} ({result.model_framework} model)"] + lines + footer)


def _short(spec: str) -> str:
    """A spec's repr without its keywords' names and defaults: VarianceScaling(0.3333, fan_in, uniform)."""
    import re

    text = re.sub(r", stream=0\)", ")", spec)
    text = re.sub(r"\b(scale|mode|distribution|value|low|high|std|mean)=", "", text)
    text = re.sub(r"'([a-z_]+)'", r"\1", text)
    return re.sub(r"-?\d+\.\d{5,}", lambda m: f"{float(m.group()):.4g}", text)
