"""``polyinit compare``: each framework's default for one layer kind, side by side, and what it does
to the signal through a deep stack with an activation between layers.

The closed form (``polyinit.propagation``) runs the variance recursion with each framework's
weight and bias distributions from the defaults registry; where the framework is installed, the
same stack of its real layers is built with its own defaults and a standard-normal batch is pushed
through, so the two can be read side by side. Measurements are cached on disk (``compare_cache``).

>>> rows = compare(frameworks=("torch", "keras"), measure=False)
>>> [round(r.weight.bound, 4) for r in rows]
[0.0357, 0.076]
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from polyinit import defaults, propagation
from polyinit import nodes as n
from polyinit.defaults import Param
from polyinit.errors import PolyinitError

# Sizes used when --in/--out are not given: each kind's usual scale, and a measurement that stays quick.
DEFAULT_SIZES = {
    "dense": (784, 256),
    "conv1d": (32, 32),
    "conv2d": (32, 32),
    "conv3d": (16, 16),
    "conv_transpose": (32, 32),
    "embedding": (1000, 256),
    "lstm": (256, 256),
    "gru": (256, 256),
    "batchnorm": (256, 256),
    "layernorm": (256, 256),
    "mha": (256, 256),
}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Distribution:
    """A parameter's default in words and numbers."""

    words: str
    std: float
    bound: Optional[float]  # |w| <= bound, where the support is bounded
    truncated_at: Optional[float] = None  # in units of the final std


@dataclass
class Row:
    framework: str
    version: str  # the installed version where measured, else the version the registry describes
    weight: Distribution
    bias: Distribution
    params: dict[str, dict]  # every parameter of the first layer: shape, words, std
    gain: float  # fan_in var(w) of the first layer's main weight (nan for norms and embeddings)
    linear: list[float]  # closed-form Var after each layer, linear stack
    activated: list[float]  # the same with the activation between layers
    measured_linear: Optional[list[float]] = None
    measured_activated: Optional[list[float]] = None
    source: str = "closed form"
    weight_samples: Optional[list[float]] = field(default=None, repr=False)
    bias_samples: Optional[list[float]] = field(default=None, repr=False)


def describe(param: Param) -> Distribution:
    """Words and numbers for one parameter's default, e.g. ``U(+-0.0357)``."""
    plan = param.plan()
    node, stats = plan.root, plan.stats
    std = stats.std if stats and stats.std is not None else 0.0
    bound = max(abs(stats.low), abs(stats.high)) if stats and math.isfinite(stats.low) else None
    parts = getattr(param.spec, "parts", None)  # gate blocks (Keras's unit_forget_bias): each gate's constant
    if parts and all(hasattr(p, "value") for p in parts):
        return Distribution("per gate " + "/".join(f"{p.value:g}" for p in parts), std, bound)
    if isinstance(node, n.Fill):
        return Distribution(f"{node.value:g}", 0.0, abs(node.value))
    if isinstance(node, n.Uniform):
        if node.low == -node.high:
            return Distribution(f"U(+-{node.high:.4g})", std, bound)
        return Distribution(f"U[{node.low:.4g}, {node.high:.4g})", std, bound)
    if isinstance(node, n.Normal):
        return Distribution(f"N(0, {node.std:.4g}^2)", std, None)
    if isinstance(node, n.TruncatedNormal):
        cut = node.b * node.std / std
        return Distribution(f"trunc. normal, std {std:.4g}, cut at +-{cut:.3g} std", std, bound, cut)
    return Distribution(plan.describe(), std, bound)


def _is_bias(name: str) -> bool:
    leaf = name.replace(".", "/").split("/")[-1]
    return leaf in ("b", "beta", "offset") or "bias" in leaf


def main_weight_and_bias(params: dict[str, Param]) -> tuple[Param, Optional[Param]]:
    """The first parameter (the layer's main weight; a norm's scale) and its first bias, if any."""
    (_, weight), *rest = params.items()
    return weight, next((p for key, p in rest if _is_bias(key)), None)


@contextmanager
def preserved_global_rngs() -> Iterator[None]:
    """Python's, numpy's and (where imported) torch's global generators as they were, afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    torch = sys.modules.get("torch")
    torch_state = torch.random.get_rng_state() if torch is not None else None
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        if torch is not None and torch_state is not None:
            torch.random.set_rng_state(torch_state)


# A stack deeper than this is refused: the closed form and the measurement both walk it layer by
# layer, and 10**9 layers would run for hours instead of failing (issue 22).
MAX_DEPTH = 10_000


def _check(layer: str, activation: str, sizes: dict, frameworks: Sequence[str], seed: int = 0) -> None:
    from polyinit._validate import seed as valid_seed

    valid_seed("compare", seed)  # -1 would fail inside every measurer, silently falling back to closed form
    if layer not in propagation.KINDS:
        raise PolyinitError(f"compare: unknown layer {layer!r}; expected one of {', '.join(propagation.KINDS)}")
    if activation not in propagation.ACTIVATIONS:
        raise PolyinitError(
            f"compare: unknown activation {activation!r}; expected one of {', '.join(propagation.ACTIVATIONS)}"
        )
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PolyinitError(f"compare: {name} must be a positive integer, received {name}={value!r}")
    if sizes["depth"] > MAX_DEPTH:
        raise PolyinitError(f"compare: depth must be at most {MAX_DEPTH} layers, received depth={sizes['depth']}")
    if layer == "mha" and sizes["n_in"] % sizes["heads"]:
        raise PolyinitError(
            f"compare: mha needs n_in divisible by heads, received n_in={sizes['n_in']}, heads={sizes['heads']}"
        )
    known = defaults.FRAMEWORKS  # from the framework records
    if not frameworks:
        raise PolyinitError(f"compare: no framework given; expected some of {', '.join(known)}")
    for framework in frameworks:
        if framework not in known:
            raise PolyinitError(f"compare: unknown framework {framework!r}; expected some of {', '.join(known)}")


def compare(
    layer: str = "dense",
    n_in: Optional[int] = None,
    n_out: Optional[int] = None,
    depth: int = 10,
    kernel: int = 3,
    frameworks: Optional[Sequence[str]] = None,
    measure: bool = True,
    seed: int = 0,
    activation: str = "relu",
    heads: int = 4,
    progress: Optional[Progress] = None,
    cache: bool = True,
) -> list[Row]:
    """One row per framework: its default weight and bias, fan_in var(w), and Var through depth
    (closed form; measured on real layers where the framework is installed and ``measure``).

    Global random generators (Python, numpy, torch, TensorFlow/Keras, JAX) are left as they were.
    """
    frameworks = defaults.FRAMEWORKS if frameworks is None else frameworks
    default_in, default_out = DEFAULT_SIZES.get(layer, (784, 256))
    n_in = default_in if n_in is None else n_in
    n_out = default_out if n_out is None else n_out
    _check(layer, activation, dict(n_in=n_in, n_out=n_out, depth=depth, kernel=kernel, heads=heads), frameworks, seed)
    rows = []
    for framework in frameworks:
        if layer not in propagation.kinds_of(framework):
            rows.append(_absent_row(framework, layer, depth))
            continue
        params = propagation.registry_params(framework, layer, n_in, n_out, kernel, heads)
        weight, bias = main_weight_and_bias(params)
        sizes = dict(n_in=n_in, n_out=n_out, depth=depth, kernel=kernel, heads=heads)
        row = Row(
            framework,
            defaults.VERSIONS[framework],
            describe(weight),
            describe(bias) if bias else Distribution("none", 0.0, None),
            {
                name: dict(shape=list(p.shape), words=describe(p).words, std=describe(p).std)
                for name, p in params.items()
            },
            propagation.first_gain(framework, layer, n_in=n_in, n_out=n_out, kernel=kernel, heads=heads),
            propagation.stack(framework, layer, "linear", **sizes),
            propagation.stack(framework, layer, activation, **sizes),
        )
        if measure:
            _measure_into(row, layer, activation, sizes, seed, progress or (lambda text: None), cache)
        rows.append(row)
    return rows


def _absent_row(framework: str, layer: str, depth: int) -> Row:
    nothing = Distribution("none", 0.0, None)
    nan = [float("nan")] * depth
    return Row(
        framework,
        defaults.VERSIONS[framework],
        nothing,
        nothing,
        {},
        float("nan"),
        nan,
        nan,
        source=f"{framework} has no {layer} layer",
    )


def _measure_into(
    row: Row, layer: str, activation: str, sizes: dict, seed: int, progress: Progress, cache: bool
) -> None:
    from polyinit import compare_cache

    framework = row.framework
    version = compare_cache.installed_version(framework)
    if version is None:
        row.source = f"closed form ({framework} not installed)"
        return
    key = compare_cache.key(framework, version, layer=layer, activation=activation, seed=seed, **sizes)
    found = compare_cache.load(key, sizes["depth"]) if cache else None
    if found is None:
        from polyinit import measure as measuring
        from polyinit import native_logs

        started = time.perf_counter()
        progress(f"{framework} {version}: importing")
        try:
            with native_logs.hidden():  # TensorFlow's C++ start-up lines, where the CLI hides them
                __import__(measuring.MODULES[framework])
        except ImportError as error:
            row.source = f"closed form ({framework} does not import: {error})"
            return
        progress(
            f"{framework}: imported in {time.perf_counter() - started:.1f} s; measuring {layer}, "
            f"{measuring.REPEATS} networks of {sizes['depth']} layers"
        )
        started = time.perf_counter()
        setup = measuring.Setup(
            layer, sizes["n_in"], sizes["n_out"], sizes["depth"], sizes["kernel"], sizes["heads"], activation
        )
        try:
            with preserved_global_rngs():
                measured = measuring.measure(framework, setup, seed)
                if measured is None:
                    raise PolyinitError(f"{framework} has no measurer for {layer}")
                found = asdict(measured)
        except Exception as error:  # one framework's failure must not hide the others' rows
            row.source = f"closed form (measuring {framework} failed: {type(error).__name__}: {error})"[:200]
            progress(row.source)
            return
        progress(f"{framework}: measured in {time.perf_counter() - started:.1f} s")
        if cache:
            compare_cache.store(key, found)
    else:
        progress(f"{framework} {version}: from the cache")
    row.version = version
    row.measured_linear, row.measured_activated = found["linear"], found["activated"]
    row.weight_samples, row.bias_samples = found["weight"], found["bias"]
    row.source = "measured on real layers"


def to_json(rows: Sequence[Row]) -> list[dict]:
    """Rows as plain data (without the weight samples); NaN becomes None."""

    def clean(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        return value

    return [clean({k: v for k, v in asdict(r).items() if not k.endswith("_samples")}) for r in rows]
