"""Each framework's default initialisation of common layers, written as polyinit specs.

``layer_defaults(framework, layer, **dims)`` gives, for every parameter of that layer as the
framework stores it, the spec, the layout and the shape. Tests build the real layers of every
installed framework and check them against this registry with the conformance machinery, so it
cannot drift from the installed versions. Versions described (read from their sources):

* torch 2.13 (``reset_parameters`` in ``torch/nn/modules``), keras 3.15.1 (``keras/src/layers``),
  flax 0.12.8 linen and nnx (``flax/linen``, ``flax/nnx/nn``), MXNet Gluon 1.9.1 (in
  ``tests/real_mxnet``), dm-haiku 0.0.17 (``haiku/_src``; no mha: ``hk.MultiHeadAttention`` has no
  default ``w_init``), equinox 0.13.8 (``equinox/nn``; checked in ``tests/test_equinox_models.py``).

>>> params = layer_defaults("torch", "dense", n_in=784, n_out=256)
>>> params["weight"].shape, params["weight"].plan().describe()
((256, 784), 'uniform(-0.03571, 0.03571)')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polyinit import native, schemes
from polyinit.errors import SpecError
from polyinit.layout import OUT_IN, Layout
from polyinit.plan import Plan, resolve
from polyinit.spec import Spec, TruncatedNormal, Uniform

if TYPE_CHECKING:  # rules imports the walkers' records, which import this module
    from polyinit.params import Param as WalkedParam  # a walker's record (this module's Param is a default)
    from polyinit.rules import Rules

LAYERS = ("dense", "conv", "conv_transpose", "embedding", "lstm", "gru", "batchnorm", "layernorm", "mha")


def _described() -> list:
    """The framework records that describe layer defaults (``polyinit/frameworks/<name>.py``), in
    their order. Imported here, not at the top: those modules import this one's helpers."""
    from polyinit.frameworks import frameworks

    return [f for f in frameworks() if f.defaults is not None]


if TYPE_CHECKING:  # made on first access by __getattr__; declared so each name keeps its own type
    FRAMEWORKS: tuple[str, ...]
    VERSIONS: dict[str, str]


def __getattr__(name: str) -> tuple[str, ...] | dict[str, str]:
    # FRAMEWORKS and VERSIONS are derived from the framework records, when first asked for.
    if name == "FRAMEWORKS":
        return tuple(f.name for f in _described())
    if name == "VERSIONS":
        return {f.name: f.version for f in _described()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Param:
    """One parameter's default: its spec, how its axes are laid out, and its stored shape."""

    spec: Spec
    layout: Layout
    shape: tuple[int, ...]
    note: str = ""

    def plan(self, dtype: str = "float32") -> Plan:
        return resolve(self.spec, self.shape, self.layout, dtype)


def _torch_uniform(fan_in: int) -> Uniform:
    bound = 1 / math.sqrt(fan_in)
    return Uniform(low=-bound, high=bound)


_TORCH_WEIGHT = schemes.he_uniform(a=math.sqrt(5))  # U(+-1/sqrt(fan_in))
_LECUN_TRUNC = schemes.lecun_normal(truncated=True)
_ZERO, _ONE = schemes.zeros(), schemes.ones()
_MX = native.mxnet_uniform(0.07)


def _haiku_trunc(fan_in: int) -> TruncatedNormal:
    """hk.Linear/Conv: TruncatedNormal(stddev=1/sqrt(fan_in)) at +-2 std, with no correction."""
    return TruncatedNormal(std=1 / math.sqrt(fan_in), low=-2.0, high=2.0, bounds="std")


def _mha(spec: Spec, e: int, heads: int, out: str) -> dict[str, Param]:
    """Keras's and Flax's multi-head attention: query/key/value kernels (E, heads, E/heads), biases
    (heads, E/heads), and the output kernel (heads, E/heads, E) named ``out``, all drawn from ``spec``."""
    hd = e // heads
    params = {f"{p}/kernel": Param(spec, Layout("in out out"), (e, heads, hd)) for p in ("query", "key", "value")}
    params.update({f"{p}/bias": Param(_ZERO, Layout("out out"), (heads, hd)) for p in ("query", "key", "value")})
    params[f"{out}/kernel"] = Param(spec, Layout("in in out"), (heads, hd, e))
    params[f"{out}/bias"] = Param(_ZERO, OUT_IN, (e,))
    return params


def _norm(c: int, *, stats: bool) -> dict[str, Param]:
    out = {"gamma": Param(_ONE, OUT_IN, (c,)), "beta": Param(_ZERO, OUT_IN, (c,))}
    if stats:
        out.update(running_mean=Param(_ZERO, OUT_IN, (c,)), running_var=Param(_ONE, OUT_IN, (c,)))
    return out


def layer_defaults(framework: str, layer: str, **dims: Any) -> dict[str, Param]:
    """Every parameter of ``layer`` as ``framework`` initialises it by default.

    dims: dense ``n_in, n_out``; conv/conv_transpose ``n_in, n_out, kernel`` (tuple) and optional
    ``groups``; embedding ``num, dim``; lstm/gru ``n_in, hidden`` (flax: optional ``cell``, "linen"
    by default, or "nnx.LSTMCell", "nnx.OptimizedLSTMCell", "nnx.GRUCell"); batchnorm/layernorm
    ``c``; mha ``d_model, heads``.
    """
    builders = {f.name: f.defaults for f in _described()}
    if framework not in builders:
        raise SpecError(f"layer_defaults: unknown framework {framework!r}; expected one of {', '.join(builders)}")
    if layer not in LAYERS:
        raise SpecError(f"layer_defaults: unknown layer {layer!r}; expected one of {', '.join(LAYERS)}")
    if "kernel" in dims:
        dims["kernel"] = tuple(dims["kernel"])
    try:
        return builders[framework](layer, dims)
    except KeyError as missing:
        if missing.args and missing.args[0] == layer:
            raise SpecError(f"layer_defaults: {framework} has no {layer} layer default") from None
        raise SpecError(f"layer_defaults: {framework} {layer} needs the dimension {missing}") from None


# --- cross-application: framework X's defaults on a model in framework Y -----------------------


def _weight_fan_in(param: WalkedParam, layer_params: Sequence[WalkedParam]) -> int:
    from polyinit.layout import compute_fans

    weight = next((p for p in layer_params if p.role == "weight" and len(p.shape) >= 2), None)
    if weight is None:
        raise SpecError(f"torch bias default: layer of {param.path!r} has no weight to take fan_in from")
    return compute_fans(weight.shape, weight.layout).fan_in


def rules_for(framework: str, *, seed: int = 0) -> Rules:
    """Rules that give any model ``framework``'s default initialisation of its dense, conv,
    transposed-conv and embedding weights and biases and its norm parameters, with fans read from
    the target model's own layouts. Other parameters (recurrent, attention) are kept and reported.

    >>> rules_for("torch").rules[1][1]
    torch bias U(+-1/sqrt(fan_in of the weight))
    """
    from polyinit.rules import KEEP, Rules, every, kind, role

    weights = kind("dense", "conv", "conv_transpose") & role("weight")
    biases = kind("dense", "conv", "conv_transpose") & role("bias")
    norm = [
        (kind("norm") & role("scale"), _ONE),
        (kind("norm") & role("offset"), _ZERO),
        (role("running_mean"), _ZERO),
        (role("running_var"), _ONE),
    ]
    records = {f.name: f for f in _described() if f.cross_rules is not None}
    if framework not in records:
        raise SpecError(
            f"rules_for: no cross-application rules for {framework!r}; expected one of {', '.join(records)}"
        )
    table = records[framework].cross_rules(weights, biases)
    return Rules(table + norm + [(every(), KEEP)], seed=seed, strict=False)
