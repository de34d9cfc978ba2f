"""Each framework's default initialisation of common layers, written as polyinit specs.

``layer_defaults(framework, layer, **dims)`` gives, for every parameter of that layer as the
framework stores it, the spec, the layout and the shape. Tests build the real layers of every
installed framework and check them against this registry with the conformance machinery, so it
cannot drift from the installed versions. Versions described (read from their sources):

* torch 2.13 (``reset_parameters`` in ``torch/nn/modules``), keras 3.15.1 (``keras/src/layers``),
  flax 0.12.8 linen and nnx (``flax/linen``, ``flax/nnx/nn``), MXNet Gluon 1.9.1 (in
  ``tests/real_mxnet``), dm-haiku 0.0.17 (``haiku/_src``; no mha: ``hk.MultiHeadAttention`` has no
  default ``w_init``).

>>> params = layer_defaults("torch", "dense", n_in=784, n_out=256)
>>> params["weight"].shape, params["weight"].plan().describe()
((256, 784), 'uniform(-0.03571, 0.03571)')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from polyinit import native, schemes
from polyinit.errors import SpecError
from polyinit.layout import IN_OUT, OUT_IN, Layout, preset
from polyinit.plan import Plan, resolve
from polyinit.spec import Normal, Orthogonal, Spec, TruncatedNormal, Uniform, VarianceScaling

FRAMEWORKS = ("torch", "keras", "flax", "mxnet", "haiku")
LAYERS = ("dense", "conv", "conv_transpose", "embedding", "lstm", "gru", "batchnorm", "layernorm", "mha")
VERSIONS = {"torch": "2.13", "keras": "3.15.1", "flax": "0.12.8", "mxnet": "1.9.1", "haiku": "0.0.17"}


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


def _norm(c: int, *, stats: bool) -> dict[str, Param]:
    out = {"gamma": Param(_ONE, OUT_IN, (c,)), "beta": Param(_ZERO, OUT_IN, (c,))}
    if stats:
        out.update(running_mean=Param(_ZERO, OUT_IN, (c,)), running_var=Param(_ONE, OUT_IN, (c,)))
    return out


# --- torch ----------------------------------------------------------------------------------

def _torch(layer: str, d: dict) -> dict[str, Param]:
    if layer == "dense":
        return {"weight": Param(_TORCH_WEIGHT, OUT_IN, (d["n_out"], d["n_in"])),
                "bias": Param(_torch_uniform(d["n_in"]), OUT_IN, (d["n_out"],), "U(+-1/sqrt(fan_in))")}
    if layer in ("conv", "conv_transpose"):
        k, g = d["kernel"], d.get("groups", 1)
        if layer == "conv":
            shape, fan_in = (d["n_out"], d["n_in"] // g) + k, d["n_in"] // g * math.prod(k)
        else:  # weight (in, out/g, *k); torch reads dim 1 as "in"
            shape, fan_in = (d["n_in"], d["n_out"] // g) + k, d["n_out"] // g * math.prod(k)
        return {"weight": Param(_TORCH_WEIGHT, preset("torch", layer), shape),
                "bias": Param(_torch_uniform(fan_in), OUT_IN, (d["n_out"],))}
    if layer == "embedding":
        return {"weight": Param(Normal(std=1.0), OUT_IN, (d["num"], d["dim"]))}
    if layer in ("lstm", "gru"):
        h, gates = d["hidden"], 4 if layer == "lstm" else 3
        u = _torch_uniform(h)
        return {"weight_ih_l0": Param(u, OUT_IN, (gates * h, d["n_in"])),
                "weight_hh_l0": Param(u, OUT_IN, (gates * h, h)),
                "bias_ih_l0": Param(u, OUT_IN, (gates * h,)), "bias_hh_l0": Param(u, OUT_IN, (gates * h,))}
    if layer in ("batchnorm", "layernorm"):
        params = _norm(d["c"], stats=layer == "batchnorm")
        return {{"gamma": "weight", "beta": "bias"}.get(k, k): v for k, v in params.items()}
    if layer == "mha":
        e = d["d_model"]
        return {"in_proj_weight": Param(schemes.glorot_uniform(), OUT_IN, (3 * e, e), "xavier on packed (3E, E)"),
                "in_proj_bias": Param(_ZERO, OUT_IN, (3 * e,)),
                "out_proj.weight": Param(_TORCH_WEIGHT, OUT_IN, (e, e)),
                "out_proj.bias": Param(_ZERO, OUT_IN, (e,))}
    raise KeyError(layer)


# --- keras ----------------------------------------------------------------------------------

def _keras(layer: str, d: dict) -> dict[str, Param]:
    glorot = schemes.glorot_uniform()
    if layer == "dense":
        return {"kernel": Param(glorot, IN_OUT, (d["n_in"], d["n_out"])), "bias": Param(_ZERO, OUT_IN, (d["n_out"],))}
    if layer in ("conv", "conv_transpose"):
        k, g = d["kernel"], d.get("groups", 1)
        shape = k + ((d["n_in"] // g, d["n_out"]) if layer == "conv" else (d["n_out"], d["n_in"]))
        return {"kernel": Param(glorot, preset("keras", layer), shape), "bias": Param(_ZERO, OUT_IN, (d["n_out"],))}
    if layer == "embedding":
        return {"embeddings": Param(native.keras_random_uniform(), IN_OUT, (d["num"], d["dim"]))}
    if layer in ("lstm", "gru"):
        h, n_in = d["hidden"], d["n_in"]
        gates = 4 if layer == "lstm" else 3
        bias = Param(schemes.lstm_bias(1.0), OUT_IN, (4 * h,), "unit_forget_bias") if layer == "lstm" else \
            Param(_ZERO, Layout("batch out"), (2, 3 * h), "reset_after=True")
        return {"kernel": Param(glorot, IN_OUT, (n_in, gates * h)),
                "recurrent_kernel": Param(native.keras_orthogonal(), IN_OUT, (h, gates * h)), "bias": bias}
    if layer in ("batchnorm", "layernorm"):
        params = _norm(d["c"], stats=layer == "batchnorm")
        names = {"running_mean": "moving_mean", "running_var": "moving_variance"}
        return {names.get(k, k): v for k, v in params.items()}
    if layer == "mha":
        e, heads = d["d_model"], d["heads"]
        hd = e // heads
        proj = {f"{p}/kernel": Param(glorot, Layout("in out out"), (e, heads, hd)) for p in ("query", "key", "value")}
        proj.update({f"{p}/bias": Param(_ZERO, Layout("out out"), (heads, hd)) for p in ("query", "key", "value")})
        proj["attention_output/kernel"] = Param(glorot, Layout("in in out"), (heads, hd, e))
        proj["attention_output/bias"] = Param(_ZERO, OUT_IN, (e,))
        return proj
    raise KeyError(layer)


# --- flax (linen and nnx share these defaults) ------------------------------------------------

def _flax(layer: str, d: dict) -> dict[str, Param]:
    if layer == "dense":
        return {"kernel": Param(_LECUN_TRUNC, IN_OUT, (d["n_in"], d["n_out"])), "bias": Param(_ZERO, OUT_IN, (d["n_out"],))}
    if layer in ("conv", "conv_transpose"):
        k, g = d["kernel"], d.get("groups", 1)
        shape = k + ((d["n_in"] // g, d["n_out"]) if layer == "conv" else (d["n_in"], d["n_out"]))
        return {"kernel": Param(_LECUN_TRUNC, preset("flax", layer), shape), "bias": Param(_ZERO, OUT_IN, (d["n_out"],))}
    if layer == "embedding":
        # variance_scaling(1, fan_in, normal, out_axis=0) on (num, dim): fan_in = dim, untruncated.
        return {"embedding": Param(VarianceScaling(scale=1.0, mode="fan_in", distribution="normal"),
                                   Layout("out in"), (d["num"], d["dim"]), "N(0, 1/dim)")}
    if layer in ("lstm", "gru"):
        h, n_in = d["hidden"], d["n_in"]
        cell = d.get("cell", "linen")
        if cell == ("nnx.OptimizedLSTMCell" if layer == "lstm" else "nnx.GRUCell"):
            # The fused nnx cells: one input kernel and one recurrent kernel over all gates; the
            # recurrent one is orthogonal as a whole (h, gates*h): std 1/sqrt(gates*h), not per gate.
            width = (4 if layer == "lstm" else 3) * h
            bias = "dense_h/bias" if layer == "lstm" else "dense_i/bias"
            return {"dense_i/kernel": Param(_LECUN_TRUNC, IN_OUT, (n_in, width)),
                    "dense_h/kernel": Param(Orthogonal(axis=-1), IN_OUT, (h, width), "orthogonal over all gates"),
                    bias: Param(_ZERO, OUT_IN, (width,))}
        if cell not in (("linen", "nnx.LSTMCell") if layer == "lstm" else ("linen",)):
            raise SpecError(f"layer_defaults: flax {layer} has no cell {cell!r}; expected 'linen' or "
                            + ("'nnx.LSTMCell', 'nnx.OptimizedLSTMCell'" if layer == "lstm" else "'nnx.GRUCell'"))
        gates = ("i", "f", "g", "o") if layer == "lstm" else ("r", "z", "n")
        out = {}
        for gate in gates:
            # nnx.LSTMCell names its forget-gate input kernel ``if_`` (``if`` is a Python keyword).
            name = "if_" if cell == "nnx.LSTMCell" and gate == "f" else f"i{gate}"
            out[f"{name}/kernel"] = Param(_LECUN_TRUNC, IN_OUT, (n_in, h))
            out[f"h{gate}/kernel"] = Param(Orthogonal(axis=-1), IN_OUT, (h, h))
            has_bias = f"h{gate}" if layer == "lstm" else (f"i{gate}" if gate != "n" else None)
            if has_bias:
                out[f"{has_bias}/bias"] = Param(_ZERO, OUT_IN, (h,))
        if layer == "gru":
            out["in/bias"] = Param(_ZERO, OUT_IN, (h,))
            out["hn/bias"] = Param(_ZERO, OUT_IN, (h,))
        return out
    if layer in ("batchnorm", "layernorm"):
        params = _norm(d["c"], stats=layer == "batchnorm")
        names = {"gamma": "scale", "beta": "bias", "running_mean": "mean", "running_var": "var"}
        return {names[k]: v for k, v in params.items()}
    if layer == "mha":
        e, heads = d["d_model"], d["heads"]
        hd = e // heads
        out = {f"{p}/kernel": Param(_LECUN_TRUNC, Layout("in out out"), (e, heads, hd)) for p in ("query", "key", "value")}
        out.update({f"{p}/bias": Param(_ZERO, Layout("out out"), (heads, hd)) for p in ("query", "key", "value")})
        out["out/kernel"] = Param(_LECUN_TRUNC, Layout("in in out"), (heads, hd, e))
        out["out/bias"] = Param(_ZERO, OUT_IN, (e,))
        return out
    raise KeyError(layer)


# --- MXNet Gluon: every weight U(+-0.07) from the global default, biases zero -----------------

def _mxnet(layer: str, d: dict) -> dict[str, Param]:
    if layer == "dense":
        return {"weight": Param(_MX, OUT_IN, (d["n_out"], d["n_in"])), "bias": Param(_ZERO, OUT_IN, (d["n_out"],))}
    if layer in ("conv", "conv_transpose"):
        k, g = d["kernel"], d.get("groups", 1)
        shape = ((d["n_out"], d["n_in"] // g) if layer == "conv" else (d["n_in"], d["n_out"] // g)) + k
        return {"weight": Param(_MX, OUT_IN, shape), "bias": Param(_ZERO, OUT_IN, (d["n_out"],))}
    if layer == "embedding":
        return {"weight": Param(_MX, OUT_IN, (d["num"], d["dim"]))}
    if layer in ("lstm", "gru"):
        h, gates = d["hidden"], 4 if layer == "lstm" else 3
        return {"l0_i2h_weight": Param(_MX, OUT_IN, (gates * h, d["n_in"])),
                "l0_h2h_weight": Param(_MX, OUT_IN, (gates * h, h)),
                "l0_i2h_bias": Param(_ZERO, OUT_IN, (gates * h,)), "l0_h2h_bias": Param(_ZERO, OUT_IN, (gates * h,))}
    if layer in ("batchnorm", "layernorm"):
        return _norm(d["c"], stats=layer == "batchnorm")
    raise KeyError(layer)


# --- dm-haiku 0.0.17 (verified against the real modules in tests/test_defaults.py) ---------------

def _haiku(layer: str, d: dict) -> dict[str, Param]:
    if layer == "dense":
        return {"w": Param(_haiku_trunc(d["n_in"]), IN_OUT, (d["n_in"], d["n_out"]), "std 0.88/sqrt(fan_in)"),
                "b": Param(_ZERO, OUT_IN, (d["n_out"],))}
    if layer in ("conv", "conv_transpose"):
        k, g = d["kernel"], d.get("groups", 1)
        # ConvNDTranspose stores (*k, out, in) but scales by the forward input fan, prod(k) * in.
        fan = math.prod(k) * (d["n_in"] // g if layer == "conv" else d["n_in"])
        shape = k + ((d["n_in"] // g, d["n_out"]) if layer == "conv" else (d["n_out"], d["n_in"]))
        return {"w": Param(_haiku_trunc(fan), IN_OUT, shape), "b": Param(_ZERO, OUT_IN, (d["n_out"],))}
    if layer == "embedding":
        return {"embeddings": Param(native.jax_truncated_normal(1.0), IN_OUT, (d["num"], d["dim"]))}
    if layer == "lstm":
        h, n_in = d["hidden"], d["n_in"]
        return {"linear/w": Param(_haiku_trunc(n_in + h), IN_OUT, (n_in + h, 4 * h), "forget +1 added at call time"),
                "linear/b": Param(_ZERO, OUT_IN, (4 * h,))}
    if layer == "gru":
        h, n_in = d["hidden"], d["n_in"]
        vs = VarianceScaling(scale=1.0, mode="fan_in", distribution="truncated_normal")
        return {"w_i": Param(vs, IN_OUT, (n_in, 3 * h)), "w_h": Param(vs, IN_OUT, (h, 3 * h)),
                "b": Param(_ZERO, OUT_IN, (3 * h,))}
    if layer == "batchnorm":  # hk.BatchNorm's scale and offset keep the reduced axes: (1, c) for (batch, c)
        return {"scale": Param(_ONE, OUT_IN, (1, d["c"])), "offset": Param(_ZERO, OUT_IN, (1, d["c"]))}
    if layer == "layernorm":
        params = _norm(d["c"], stats=False)
        return {"scale": params["gamma"], "offset": params["beta"]}
    raise KeyError(layer)


_BUILDERS: dict[str, Callable[[str, dict], dict[str, Param]]] = {
    "torch": _torch, "keras": _keras, "flax": _flax, "mxnet": _mxnet, "haiku": _haiku}


def layer_defaults(framework: str, layer: str, **dims) -> dict[str, Param]:
    """Every parameter of ``layer`` as ``framework`` initialises it by default.

    dims: dense ``n_in, n_out``; conv/conv_transpose ``n_in, n_out, kernel`` (tuple) and optional
    ``groups``; embedding ``num, dim``; lstm/gru ``n_in, hidden`` (flax: optional ``cell``, "linen"
    by default, or "nnx.LSTMCell", "nnx.OptimizedLSTMCell", "nnx.GRUCell"); batchnorm/layernorm
    ``c``; mha ``d_model, heads``.
    """
    if framework not in _BUILDERS:
        raise SpecError(f"layer_defaults: unknown framework {framework!r}; expected one of {', '.join(FRAMEWORKS)}")
    if layer not in LAYERS:
        raise SpecError(f"layer_defaults: unknown layer {layer!r}; expected one of {', '.join(LAYERS)}")
    if "kernel" in dims:
        dims["kernel"] = tuple(dims["kernel"])
    try:
        return _BUILDERS[framework](layer, dims)
    except KeyError as missing:
        if missing.args and missing.args[0] == layer:
            raise SpecError(f"layer_defaults: {framework} has no {layer} layer default") from None
        raise SpecError(f"layer_defaults: {framework} {layer} needs the dimension {missing}") from None


# --- cross-application: framework X's defaults on a model in framework Y -----------------------


def _weight_fan_in(param, layer_params) -> int:
    from polyinit.layout import compute_fans

    weight = next((p for p in layer_params if p.role == "weight" and len(p.shape) >= 2), None)
    if weight is None:
        raise SpecError(f"torch bias default: layer of {param.path!r} has no weight to take fan_in from")
    return compute_fans(weight.shape, weight.layout).fan_in


def rules_for(framework: str, *, seed: int = 0):
    """Rules that give any model ``framework``'s default initialisation of its dense, conv,
    transposed-conv and embedding weights and biases and its norm parameters, with fans read from
    the target model's own layouts. Other parameters (recurrent, attention) are kept and reported.

    >>> rules_for("torch").rules[1][1]
    torch bias U(+-1/sqrt(fan_in of the weight))
    """
    from polyinit.rules import KEEP, Rules, SpecFactory, every, kind, role

    weights = kind("dense", "conv", "conv_transpose") & role("weight")
    biases = kind("dense", "conv", "conv_transpose") & role("bias")
    norm = [(kind("norm") & role("scale"), _ONE), (kind("norm") & role("offset"), _ZERO),
            (role("running_mean"), _ZERO), (role("running_var"), _ONE)]
    if framework == "torch":
        bias = SpecFactory(lambda p, layer: _torch_uniform(_weight_fan_in(p, layer)),
                           "torch bias U(+-1/sqrt(fan_in of the weight))")
        table = [(weights, _TORCH_WEIGHT), (biases, bias), (kind("embedding"), Normal(std=1.0))]
    elif framework == "keras":
        table = [(weights, schemes.glorot_uniform()), (biases, _ZERO), (kind("embedding"), native.keras_random_uniform())]
    elif framework == "flax":
        embed = SpecFactory(lambda p, layer: Normal(std=1 / math.sqrt(p.shape[-1])), "flax embedding N(0, 1/dim)")
        table = [(weights, _LECUN_TRUNC), (biases, _ZERO), (kind("embedding"), embed)]
    elif framework == "mxnet":
        table = [(weights, _MX), (biases, _ZERO), (kind("embedding"), _MX)]
    else:
        raise SpecError(f"rules_for: no cross-application rules for {framework!r}; expected torch, keras, flax or mxnet")
    return Rules(table + norm + [(every(), KEEP)], seed=seed, strict=False)
