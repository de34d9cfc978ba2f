"""The signal through a stack of default-initialised layers, in closed form or by quadrature.

The input is standard normal. Each layer's output y (one coordinate, over units and batch) is
tracked as a *distribution*, a discrete measure (nodes, weights), so that E[phi(y)^2] for any
activation phi is a finite sum:

* dense, conv (1d/2d/3d), conv_transpose: y = sum_i w_i x_i + b, with x = phi(previous y). The
  weights are independent with mean 0, so E[(sum w x)^2] = fan_in var(w) E[x^2] exactly, and in the
  wide limit the sum is Gaussian (the mean-field assumption, error O(1/width)): y ~ N(0, q) + b,
  the bias drawn from its own default distribution.
* embedding: the first layer's output is a row of the table, the table's own distribution; the
  layers after it are the framework's dense layers.
* batchnorm (training mode: batch statistics) and layernorm: y = gamma (x - E x) / sqrt(Var x + eps)
  + beta, exact on the measure (the width and the batch are large).
* lstm and gru: one time step from the zero state (so the recurrent kernels and the forget gate do
  not act): LSTM h = sigmoid(a_o) tanh(sigmoid(a_i) tanh(a_g)); GRU h = (1 - sigmoid(a_z))
  tanh(a_n + sigmoid(a_r) b_hn). Each gate's pre-activation is Gaussian + its bias; products of
  independent gates are products of measures.
* mha (self-attention over T tokens, without residuals): tokens are split into a part common to the
  sequence (second moment C) and a token part (E). Logits within a row have variance
  s^2 = (d var(W_q) E[x^2]) (d var(W_k) E_token), and E[sum_j a_j^2] for a softmax of T i.i.d.
  N(0, s^2) logits is the integral T int_0^inf t E[e^{2s} e^{-t e^s}] E[e^{-t e^s}]^{T-1} dt (from
  1/S^2 = int t e^{-tS} dt). The averaged values go to the common part (C' = d var(W_o) (d var(W_v)
  C_x + E_v / T)), the rest to the token part. Approximations: |q|^2 / head_dim taken at its mean
  and the attention averaged over a row taken as uniform, both O(1/T) or O(1/head_dim).

Quadrature: Gauss-Hermite (``HERMITE`` nodes) for Gaussians, Gauss-Legendre (``LEGENDRE``) for
uniform and truncated normal biases; products of gates are regrouped into ``GROUPS`` groups of two
nodes that keep each group's mean and variance exactly. The relative error of every Var below is
under 1e-4 (a test compares with a run at twice the resolution). ReLU's second moment is exact on
these symmetric node sets. GELU is the exact erf form, x Phi(x).

>>> [round(v, 4) for v in stack("torch", "dense", "relu", n_in=784, n_out=256, depth=2)]
[0.3338, 0.0569]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from polyinit import nodes as n
from polyinit.defaults import Param, layer_defaults
from polyinit.errors import PolyinitError

HERMITE, LEGENDRE, GROUPS = 40, 16, 128
ACTIVATIONS = ("linear", "relu", "tanh", "gelu", "silu", "sigmoid")
KINDS = (
    "dense",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose",
    "embedding",
    "lstm",
    "gru",
    "batchnorm",
    "layernorm",
    "mha",
)


def _record(framework: str) -> Any:
    """The framework's record (``polyinit/frameworks``): epsilons, recurrent names, missing layers."""
    from polyinit.frameworks import get_framework

    return get_framework(framework)


_ERF = np.frompyfunc(math.erf, 1, 1)


def _erf(x: np.ndarray) -> np.ndarray:
    """math.erf elementwise: exact, and the measures here have at most a few thousand nodes."""
    return _ERF(x).astype(np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


ACTIVATION: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "silu": lambda x: x * _sigmoid(x),
    "sigmoid": _sigmoid,
}


@dataclass(frozen=True)
class Measure:
    """A discrete probability measure: E[f(X)] = sum(p * f(x))."""

    x: np.ndarray
    p: np.ndarray

    def expect(self, f: Callable[[np.ndarray], np.ndarray] = lambda x: x) -> float:
        return float(np.dot(self.p, f(self.x)))

    @property
    def var(self) -> float:
        mean = self.expect()
        return max(self.expect(np.square) - mean * mean, 0.0)

    def map(self, f: Callable[[np.ndarray], np.ndarray]) -> Measure:
        return Measure(f(self.x), self.p)

    def plus(self, other: Measure) -> Measure:
        """The law of X + Y for independent X, Y."""
        return Measure((self.x[:, None] + other.x[None, :]).ravel(), np.outer(self.p, other.p).ravel()).regroup()

    def times(self, other: Measure) -> Measure:
        return Measure((self.x[:, None] * other.x[None, :]).ravel(), np.outer(self.p, other.p).ravel()).regroup()

    def regroup(self, groups: int = 0) -> Measure:
        """At most 2 * groups nodes: sorted nodes in groups of equal mass, each group replaced by two
        nodes at mean +- std with half its mass, so every group's mean and variance are kept."""
        groups = groups or GROUPS
        if self.x.size <= 2 * groups:
            return self
        order = np.argsort(self.x)
        x, p = self.x[order], self.p[order]
        edges = np.searchsorted(np.cumsum(p), np.linspace(0, 1, groups + 1)[1:-1] * p.sum())
        starts = np.unique(np.r_[0, edges])  # reduceat needs strictly increasing starts
        starts = starts[starts < x.size]
        mass = np.add.reduceat(p, starts)
        mean = np.add.reduceat(p * x, starts) / mass
        second = np.add.reduceat(p * x * x, starts) / mass
        std = np.sqrt(np.maximum(second - mean * mean, 0.0))
        return Measure(np.concatenate([mean - std, mean + std]), np.concatenate([mass, mass]) / 2)


def point(value: float) -> Measure:
    return Measure(np.array([float(value)]), np.array([1.0]))


def gaussian(var: float, mean: float = 0.0) -> Measure:
    z, w = np.polynomial.hermite_e.hermegauss(HERMITE)
    return Measure(mean + math.sqrt(max(var, 0.0)) * z, w / w.sum())


def _legendre(low: float, high: float, density: Callable[[np.ndarray], np.ndarray]) -> Measure:
    z, w = np.polynomial.legendre.leggauss(LEGENDRE)
    x = 0.5 * (high - low) * z + 0.5 * (high + low)
    p = w * density(x)
    return Measure(x, p / p.sum())


def of_param(param: Param) -> Measure:
    """The law of one entry of a default parameter (a bias, an embedding table)."""
    plan = param.plan()
    root = plan.root
    if isinstance(root, n.Fill):
        return point(root.value)
    if isinstance(root, n.Uniform):
        return _legendre(root.low, root.high, np.ones_like)
    if isinstance(root, n.Normal):
        return gaussian(root.std**2, root.mean)
    if isinstance(root, n.TruncatedNormal):
        return _legendre(
            root.mean + root.a * root.std,
            root.mean + root.b * root.std,
            lambda x: np.exp(-0.5 * ((x - root.mean) / root.std) ** 2),
        )
    # Anything else: a symmetric two-point law with the promised mean and variance.
    mean, var = (plan.stats.mean, plan.stats.var) if plan.stats is not None else (None, None)
    if mean is None or var is None:
        raise PolyinitError(f"compare: {plan.describe()} has no closed-form moments to propagate")
    std = math.sqrt(var)
    return Measure(np.array([mean - std, mean + std]), np.array([0.5, 0.5]))


def weight_var(param: Param) -> float:
    stats = param.plan().stats
    if stats is None or stats.mean is None or stats.var is None:
        raise PolyinitError(f"compare: {param.note or 'a weight'} has no closed-form moments")
    if abs(stats.mean) > 1e-12:
        raise PolyinitError(f"compare: {param.note or 'a weight'} has mean {stats.mean}; the recursion needs mean 0")
    return stats.var


# --- each layer kind ---------------------------------------------------------------------------


def _dims(kind: str, width_in: int, width_out: int, kernel: int, heads: int) -> tuple[str, dict]:
    if kind.startswith("conv"):
        rank = 2 if kind == "conv_transpose" else int(kind[4])
        return (
            "conv_transpose" if kind == "conv_transpose" else "conv",
            dict(n_in=width_in, n_out=width_out, kernel=(kernel,) * rank),
        )
    if kind in ("lstm", "gru"):
        return kind, dict(n_in=width_in, hidden=width_out)
    if kind in ("batchnorm", "layernorm"):
        return kind, dict(c=width_in)
    if kind == "mha":
        return kind, dict(d_model=width_in, heads=heads)
    if kind == "embedding":
        return kind, dict(num=width_in, dim=width_out)
    return kind, dict(n_in=width_in, n_out=width_out)


def registry_params(
    framework: str, kind: str, width_in: int, width_out: int, kernel: int = 3, heads: int = 4
) -> dict[str, Param]:
    """The registry's default parameters of one layer of the stack (conv1d -> conv with a 1-d kernel)."""
    layer, dims = _dims(kind, width_in, width_out, kernel, heads)
    return layer_defaults(framework, layer, **dims)


def _affine(params: dict[str, Param], x: Measure, fan_in: int) -> Measure:
    weight, *rest = params.values()
    out = gaussian(fan_in * weight_var(weight) * x.expect(np.square))
    return out.plus(of_param(rest[0])) if rest else out


def _recurrent_names(framework: str, kind: str) -> tuple:
    """(input kernel of a gate, the biases added to every gate, GRU's b_hn), by name, from the
    framework's record: one tuple for both kinds or one per kind; ``{gate}`` names the first gate."""
    names = _record(framework).recurrent_names
    kernel, biases, b_hn = names[kind] if isinstance(names, dict) else names
    return kernel.format(gate="i" if kind == "lstm" else "r"), biases, b_hn


def _recurrent(framework: str, kind: str, params: dict[str, Param], x: Measure, fan_in: int) -> Measure:
    kernel, biases, b_hn = _recurrent_names(framework, kind)
    # Only the input part of each gate acts (h = 0): fan_in input units (hk.LSTM's kernel reads [x, h],
    # but the h rows meet zeros).
    weighted = gaussian(fan_in * weight_var(params[kernel]) * x.expect(np.square))
    gate = weighted
    for name in biases:
        gate = gate.plus(of_param(params[name]))
    sig = gate.map(_sigmoid)
    if kind == "lstm":
        return sig.times(sig.times(gate.map(np.tanh)).map(np.tanh))
    if b_hn is None:
        return sig.times(gate.map(np.tanh))
    # torch's candidate gate: tanh(W_in x + b_in + r * b_hn); b_hn is scaled by the reset gate, not added.
    inner = weighted.plus(of_param(params[biases[0]])).plus(sig.times(of_param(params[b_hn])))
    return sig.times(inner.map(np.tanh))


def _norm(framework: str, kind: str, params: dict[str, Param], x: Measure) -> Measure:
    eps = _record(framework).norm_epsilon[kind == "layernorm"]
    scale, offset = (of_param(p) for p in list(params.values())[:2])
    mean, var = x.expect(), x.var
    standard = x.map(lambda v: (v - mean) / math.sqrt(var + eps))
    return standard.times(scale).plus(offset)


def softmax_square_sum(logit_var: float, tokens: int) -> float:
    """E[sum_j a_j^2] for a = softmax of ``tokens`` i.i.d. N(0, logit_var) logits:
    T int_0^inf t E[e^{2s} e^{-t e^s}] E[e^{-t e^s}]^{T-1} dt, with t = e^u on a fine grid.

    >>> round(softmax_square_sum(0.0, 16), 6)
    0.0625
    """
    if logit_var <= 0:
        return 1.0 / tokens
    s = gaussian(logit_var)
    u = np.linspace(-40.0, 12.0, 6001)
    t = np.exp(u)[:, None]
    e = np.exp(s.x)[None, :]
    decay = np.exp(-t * e)
    laplace = decay @ s.p
    second = (decay * e * e) @ s.p
    integrand = np.exp(2 * u) * second * laplace ** (tokens - 1)
    return float(tokens * np.sum((integrand[1:] + integrand[:-1]) * 0.5 * np.diff(u)))


def _mha_vars(framework: str, params: dict[str, Param]) -> tuple[float, float, float, float]:
    """var(w) of the query, key, value and output projections."""
    if "in_proj_weight" in params:  # torch: q, k and v packed in one (3E, E) weight
        packed = weight_var(params["in_proj_weight"])
        return packed, packed, packed, weight_var(params["out_proj.weight"])
    # Keras's and Flax's query/key/value/out kernels; Equinox's query_proj/.../output_proj weights.
    query, key, value, out = (weight_var(params[k]) for k in params if k.endswith(("kernel", "_proj.weight")))
    return query, key, value, out


def _mha_stack(framework: str, activation: str, d: int, depth: int, heads: int, tokens: int) -> list[float]:
    params = registry_params(framework, "mha", d, d, heads=heads)
    var_q, var_k, var_v, var_o = _mha_vars(framework, params)
    phi = ACTIVATION[activation]
    common, token = 0.0, 1.0  # the input: i.i.d. N(0, 1) tokens
    out = []
    for index in range(depth):
        if index == 0:
            second, common_x = 1.0, 0.0
        else:
            c, e = gaussian(common), gaussian(token)
            values = phi(c.x[:, None] + e.x[None, :])  # rows: the sequence's common part
            second = float(c.p @ (values**2) @ e.p)
            common_x = float(c.p @ (values @ e.p) ** 2)
        token_x = max(second - common_x, 0.0)
        rho = softmax_square_sum((d * var_q * second) * (d * var_k * token_x), tokens)
        v_common, v_token = d * var_v * common_x, d * var_v * token_x
        common = d * var_o * (v_common + v_token / tokens)
        token = d * var_o * max(rho - 1.0 / tokens, 0.0) * v_token
        out.append(common + token)
    return out


def stack(
    framework: str,
    kind: str,
    activation: str,
    *,
    n_in: int,
    n_out: int,
    depth: int,
    kernel: int = 3,
    heads: int = 4,
    tokens: int = 16,
) -> list[float]:
    """Var of each layer's output for a stack of ``depth`` default layers with ``activation``
    between them (not before the first): layer 1 maps n_in -> n_out, later ones n_out -> n_out
    (norm layers keep n_in; mha works on width n_in).

    >>> [round(v, 3) for v in stack("keras", "dense", "linear", n_in=256, n_out=256, depth=3)]
    [1.0, 1.0, 1.0]
    """
    if kind not in KINDS:
        raise PolyinitError(f"compare: unknown layer {kind!r}; expected one of {', '.join(KINDS)}")
    if activation not in ACTIVATION:
        raise PolyinitError(f"compare: unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
    if kind == "mha":
        return _mha_stack(framework, activation, n_in, depth, heads, tokens)
    phi = ACTIVATION[activation]
    y = gaussian(1.0)
    out = []
    for index in range(depth):
        x = y if index == 0 else y.map(phi)
        width_in = n_in if index == 0 or kind in ("batchnorm", "layernorm") else n_out
        layer = "dense" if kind == "embedding" and index > 0 else kind
        if layer == "embedding":
            params = layer_defaults(framework, "embedding", num=n_in, dim=n_out)
            y = of_param(next(iter(params.values())))
        elif layer in ("batchnorm", "layernorm"):
            y = _norm(framework, layer, registry_params(framework, layer, width_in, width_in), x)
        elif layer in ("lstm", "gru"):
            y = _recurrent(framework, layer, registry_params(framework, layer, width_in, n_out), x, width_in)
        else:
            params = registry_params(framework, layer, width_in, n_out, kernel)
            receptive = kernel ** (2 if layer == "conv_transpose" else int(layer[4])) if layer.startswith("conv") else 1
            y = _affine(params, x, width_in * receptive)
        out.append(y.var)
    return out


def first_gain(framework: str, kind: str, *, n_in: int, n_out: int, kernel: int = 3, heads: int = 4) -> float:
    """fan_in var(w) of the first layer's main weight, the factor one layer applies to E[x^2]
    (NaN for norms and embeddings, which have none)."""
    if kind in ("batchnorm", "layernorm", "embedding"):
        return float("nan")
    params = registry_params(framework, kind, n_in, n_out, kernel, heads)
    weight = next(iter(params.values()))
    if kind in ("lstm", "gru"):
        weight = params[_recurrent_names(framework, kind)[0]]
    receptive = kernel ** (2 if kind == "conv_transpose" else int(kind[4])) if kind.startswith("conv") else 1
    return n_in * receptive * weight_var(weight)


def quadrature(hermite: int, legendre: int, groups: int) -> _Resolution:
    """A context that changes the quadrature resolution (for the error check in the tests)."""
    return _Resolution(hermite, legendre, groups)


class _Resolution:
    def __init__(self, *values: int):
        self.values = values

    def __enter__(self):
        global HERMITE, LEGENDRE, GROUPS
        self.saved = HERMITE, LEGENDRE, GROUPS
        HERMITE, LEGENDRE, GROUPS = self.values

    def __exit__(self, *exc: object) -> None:
        global HERMITE, LEGENDRE, GROUPS
        HERMITE, LEGENDRE, GROUPS = self.saved


def kinds_of(framework: str) -> Sequence[str]:
    """The stack kinds ``framework`` has a default for (its record's ``missing_layers`` left out:
    MXNet and Haiku have no mha)."""
    return tuple(k for k in KINDS if k not in _record(framework).missing_layers)
