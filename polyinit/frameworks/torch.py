"""PyTorch: the walker (``nn.Module`` -> records in registration order), module types, presets."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any

from polyinit.frameworks import Framework, module_type_of, register_module_type
from polyinit.frameworks._walk import Builder, dtype_name, fused_rnn_types
from polyinit.layout import Layout
from polyinit.params import ModelError, ModuleType, Param, ParamType

if TYPE_CHECKING:  # typing only: the plan and selectors are imported where a model is drawn
    from polyinit.plan import Plan
    from polyinit.selectors import Selector

_NN = "torch.nn.modules"
_DENSE = ModuleType("dense", {"weight": ParamType("weight", "out in"), "bias": ParamType("bias", "out")})
_CONV = ModuleType("conv", {"weight": ParamType("weight", "out in *"), "bias": ParamType("bias", "out")})
_CONV_T = ModuleType("conv_transpose", {"weight": ParamType("weight", "out in *"), "bias": ParamType("bias", "out")})
_EMBED = ModuleType("embedding", {"weight": ParamType("embedding", "out in", semantic="in out")})
_NORM = ModuleType(
    "norm",
    {
        "weight": ParamType("scale", "out"),
        "bias": ParamType("offset", "out"),
        "running_mean": ParamType("running_mean", "out"),
        "running_var": ParamType("running_var", "out"),
    },
)
_RNN = ModuleType("recurrent", {"*": ParamType("weight", "out in")})
_QKV = (
    "q",
    "k",
    "v",
)  # a packed attention input projection's blocks, in the order it computes them  # leaves typed by _rnn_types
_ATTENTION = ModuleType(
    "attention",
    {
        "in_proj_weight": ParamType("weight", "out in", semantic="batch out in", split=(0, 3), packs=_QKV),
        "in_proj_bias": ParamType("bias", "out", semantic="batch out", split=(0, 3), packs=_QKV),
        "q_proj_weight": ParamType("weight", "out in"),
        "k_proj_weight": ParamType("weight", "out in"),
        "v_proj_weight": ParamType("weight", "out in"),
        "bias_k": ParamType("bias", "out in *"),
        "bias_v": ParamType("bias", "out in *"),
    },
)

for _path, _entry in {
    f"{_NN}.linear.Linear": _DENSE,
    f"{_NN}.linear.Bilinear": ModuleType(
        "dense", {"weight": ParamType("weight", "out in in"), "bias": ParamType("bias", "out")}
    ),
    f"{_NN}.conv.Conv1d": _CONV,
    f"{_NN}.conv.Conv2d": _CONV,
    f"{_NN}.conv.Conv3d": _CONV,
    f"{_NN}.conv.ConvTranspose1d": _CONV_T,
    f"{_NN}.conv.ConvTranspose2d": _CONV_T,
    f"{_NN}.conv.ConvTranspose3d": _CONV_T,
    f"{_NN}.sparse.Embedding": _EMBED,
    f"{_NN}.sparse.EmbeddingBag": _EMBED,
    # Private API: torch._NormBase is the common base of BatchNorm*, InstanceNorm* and SyncBatchNorm
    # (checked on torch 2.13); naming it here is the one place polyinit relies on it.
    f"{_NN}.batchnorm._NormBase": _NORM,
    f"{_NN}.normalization.LayerNorm": _NORM,
    f"{_NN}.normalization.GroupNorm": _NORM,
    f"{_NN}.normalization.RMSNorm": _NORM,
    f"{_NN}.rnn.RNNBase": _RNN,
    f"{_NN}.rnn.RNNCellBase": _RNN,
    f"{_NN}.activation.MultiheadAttention": _ATTENTION,
    # transformers' Conv1D (GPT-2 and friends) stores its weight as (in, out): a dense layer.
    "transformers.pytorch_utils.Conv1D": ModuleType(
        "dense", {"weight": ParamType("weight", "in out"), "bias": ParamType("bias", "out")}
    ),
    # T5's (and its descendants') LayerNorm: a scale only (RMS norm without bias).
    "transformers.models.t5.modeling_t5.T5LayerNorm": _NORM,
    # GPT-2's c_attn packs q, k and v along its output axis: three (E, E) blocks.
    "transformers.models.gpt2.modeling_gpt2.GPT2Attention": ModuleType(
        "attention",
        {
            "c_attn.weight": ParamType("weight", "in out", semantic="in batch out", split=(1, 3), packs=_QKV),
            "c_attn.bias": ParamType("bias", "out", semantic="batch out", split=(0, 3), packs=_QKV),
        },
    ),
    # Llama-family RMS norms hold a scale only.
    "transformers.models.llama.modeling_llama.LlamaRMSNorm": _NORM,
    # Phi-3 fuses its MLP input: gate_up_proj (2 * d_ff, d_model), the gate first (chunk(2, dim=-1)).
    "transformers.models.phi3.modeling_phi3.Phi3MLP": ModuleType(
        "dense",
        {
            "gate_up_proj.weight": ParamType(
                "weight", "out in", semantic="batch out in", split=(0, 2), packs=("gate", "up")
            )
        },
    ),
}.items():
    register_module_type(_path, _entry)

_STATE = ("running_mean", "running_var")
# An RNN's leaves carry the layer and direction in their names: weight_ih_l1_reverse is
# ("weight", "ih", "_l1_reverse"); an RNN cell's have no suffix (weight_ih).
_RNN_LEAF = re.compile(r"(weight|bias)_(ih|hh|hr)(.*)$")
_SOURCES = {"ih": "input", "hh": "hidden", "hr": "projection"}


def _rnn_types(module: Any, leaves: list[str]) -> dict:
    """The types of an RNN module's leaves: LSTM weights and biases packed as 4 gates (i, f, g,
    o); the two biases of one layer and direction one logical bias (their sum), except a GRU's."""
    import torch

    gates = 4 if isinstance(module, (torch.nn.LSTM, torch.nn.LSTMCell)) else 1
    sums = not isinstance(module, (torch.nn.GRU, torch.nn.GRUCell))
    return _rnn_leaf_types(leaves, gates, sums)


def _rnn_leaf_types(leaves: list[str], gates: int, sums: bool) -> dict:
    return fused_rnn_types(leaves, _parse_rnn_leaf, gates, sums)


def _parse_rnn_leaf(leaf: str) -> tuple[str, bool, str] | None:
    match = _RNN_LEAF.match(leaf)
    if match is None:
        return None
    tensor, source, suffix = match.groups()
    return _SOURCES[source], tensor == "bias", f"bias{suffix}"


def rnn_types_from_shapes(shapes: dict[str, tuple[int, ...]]) -> dict:
    """The same types for one module's leaves of a ``state_dict`` (no module to ask): the number
    of gates G is read off the shapes, ``weight_hh_l0`` being (G*H, H), or (G*H, proj) beside a
    ``weight_hr_l0`` of (proj, H): G = 4 is an LSTM, 3 a GRU (whose biases do not sum), 1 an RNN.

    >>> types = rnn_types_from_shapes({"weight_ih_l0": (32, 6), "weight_hh_l0": (32, 8),
    ...                                "bias_ih_l0": (32,), "bias_hh_l0": (32,)})
    >>> types["weight_ih_l0"].split, types["bias_hh_l0"].part.combine
    ((0, 4), 'sum')
    """
    hh = next((shape for leaf, shape in shapes.items() if leaf.startswith("weight_hh") and len(shape) == 2), None)
    if hh is None:
        return {}
    hr = next((shape for leaf, shape in shapes.items() if leaf.startswith("weight_hr") and len(shape) == 2), None)
    hidden = hr[1] if hr is not None else hh[1]
    if hidden == 0 or hh[0] % hidden:
        return {}
    gates = hh[0] // hidden
    return _rnn_leaf_types(list(shapes), 4 if gates == 4 else 1, gates != 3)


def _conv_view(module: Any, shape: tuple, transposed: bool) -> dict:
    """Grouped convs as (groups, ...) blocks; transposed convs' (in, out/g, *k) read as data flows."""
    from polyinit.params import grouped_view

    roles = Layout("out in *").roles(len(shape))
    flow = {"out": "in", "in": "out"} if transposed else {}
    return {"weight": grouped_view(shape, roles, 0, int(getattr(module, "groups", 1)), flow)}


class TorchWalker:
    returns_new = False
    name = "torch"
    draws_portable_in_place = True  # write() takes portable draws as pending (DTensor shards, no temporaries)

    def walk(self, model: Any) -> list[Param]:
        import torch

        builder = Builder("out in *", sep=".")
        for prefix, module in model.named_modules():
            entry, _ = module_type_of(module)
            builder.add_overrides(prefix, entry)
            own = [(n, t) for n, t in module.named_parameters(recurse=False)]
            own += [(n, b) for n, b in module.named_buffers(recurse=False) if n in _STATE and b is not None]
            if not own:
                continue
            views = None
            if entry is not None and entry.kind in ("conv", "conv_transpose") and own[0][0] == "weight":
                views = _conv_view(module, tuple(module.weight.shape), entry.kind == "conv_transpose")
            rows = [
                (
                    leaf,
                    t,
                    id(t),
                    tuple(t.shape),
                    dtype_name(t.dtype),
                    isinstance(t, torch.nn.Parameter) and t.requires_grad,
                    t.device,
                )
                for leaf, t in own
            ]
            types = None
            if isinstance(module, (torch.nn.RNNBase, torch.nn.RNNCellBase)):
                types = _rnn_types(module, [leaf for leaf, _ in own])
            builder.layer(
                prefix,
                module,
                rows,
                key_prefix=prefix,
                views=views,
                types=types,
                fallback="recurrent" if isinstance(module, torch.nn.RNNBase) else None,
            )
        self.tensors = builder.handles
        self.unknown = builder.unknown
        return builder.finish()

    def check(self, planned: list) -> None:
        """Everything that can make a write fail, before the first write (``polyinit.writing``)."""
        from polyinit.writing import check_torch_tensor

        for param, _ in planned:
            check_torch_tensor(self.tensors[param.path], param.path, "torch")

    def draw(self, param: Param, plan: Plan, seed: int) -> tuple[Plan, int]:
        # Drawing is deferred to write and goes straight into the parameter (no temporary).
        return (plan, seed)

    def write(self, model: Any, drawn: list) -> Any:
        """Write every pending draw; on any failure restore what was written and raise.

        A uniform, normal or constant plan drawn in place into a float32/float64 tensor cannot
        fail once ``check`` has passed (shape, dtype, device and storage are known good and the
        generator exists), so those are written last and without a backup copy: keeping a copy of
        every tensor would cost a pass over the whole model (about a third of the time on GPT-2).
        Everything else (expressions, truncated normals, orthogonal draws, half precision, explicit
        values) is written first, each after a backup copy of the tensor it overwrites."""
        import torch

        from polyinit.backends.torch import draw_into

        # (fallible, target tensor, plan or values, generator for a plan; None for values)
        jobs: list[tuple[bool, torch.Tensor, Any, torch.Generator | None]] = []
        for param, pending in drawn:
            if pending is None:
                continue
            target = self.tensors[param.path]
            if isinstance(pending, tuple):  # (plan, seed) from draw()
                plan, seed = pending
                seeded = torch.Generator(device=target.device).manual_seed(seed)
                jobs.append((not _infallible(target, plan), target, plan, seeded))
            else:  # explicit values (surgery), or a portable draw, which cannot fail once planned
                jobs.append((not hasattr(pending, "into_dtensor"), target, pending, None))
        jobs.sort(key=lambda job: not job[0])  # fallible first (a stable sort keeps the model's order)
        written: list = []
        try:
            with torch.no_grad():
                for fallible, target, plan, generator in jobs:
                    if fallible:
                        written.append((target, target.clone()))
                    if generator is None and hasattr(plan, "into_dtensor"):  # a portable draw
                        _write_portable(target, plan)
                    elif generator is None:
                        target.copy_(torch.as_tensor(plan))
                    elif tuple(target.shape) == plan.shape:
                        draw_into(target, plan, generator)
                    elif target.is_contiguous():  # a logical view (fans="semantic") of the same memory
                        draw_into(target.view(plan.shape), plan, generator)
                    else:
                        fresh = torch.empty(plan.shape, dtype=target.dtype, device=target.device)
                        target.copy_(draw_into(fresh, plan, generator).view(target.shape))
        except Exception as error:
            with torch.no_grad():
                for target, backup in written:
                    target.copy_(backup)
            raise ModelError(
                f"torch: writing failed ({type(error).__name__}: {error}); "
                f"the {len(written)} parameters touched were restored"
            ) from error
        return model

    def read(self, model: Any, param: Param) -> np.ndarray:
        """The values as numpy, exactly: float64 stays float64 (half precision widens to float32)."""
        import torch

        tensor = self.tensors[param.path].detach()
        if tensor.device.type == "meta":
            raise ModelError(f"torch: parameter {param.path!r} is on the meta device (no values to read)")
        if tensor.dtype not in (torch.float32, torch.float64):
            tensor = tensor.float()
        return tensor.cpu().numpy().copy()


def _write_portable(target: Any, pending: Any) -> None:
    """A portable draw into ``target``: shard by shard for a DTensor, in place when the draw's
    order is the tensor's, else through one temporary."""
    from polyinit.backends.torch import draw_portable

    # A DTensor exists only where torch.distributed.tensor was imported (by whoever sharded it).
    dtensor = getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)
    if dtensor is not None and isinstance(target, dtensor):
        pending.into_dtensor(target)
    elif pending.fills_in_place(tuple(target.shape)) and target.is_contiguous():
        draw_portable(pending.plan, pending.seed, pending.key, out=target)
    else:
        target.copy_(pending.values())


def _infallible(target: Any, plan: Any) -> bool:
    """A plan torch draws with one in-place kernel (uniform_, normal_, fill_) into this tensor."""
    import torch

    from polyinit import nodes

    return (
        target.dtype in (torch.float32, torch.float64)
        and isinstance(plan.root, (nodes.Uniform, nodes.Normal, nodes.Fill))
        and plan.size > 0
    )


def _detect(model: Any) -> bool:
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(model, torch.nn.Module):
        return False
    # On Keras's torch backend every Keras layer is also an nn.Module; it is a Keras model (its
    # variables, layouts and layer kinds are Keras's), whatever the order the records are asked in.
    keras = sys.modules.get("keras")
    return keras is None or not isinstance(model, keras.layers.Layer)


# --- layer defaults and compare's measurer ---------------------------------------------------
# Imported here (after the walker) from the shared helpers of polyinit.defaults and polyinit.measure,
# which import no framework record at module level.
import math
from collections.abc import Callable

import numpy as np

from polyinit import schemes
from polyinit.defaults import _TORCH_WEIGHT, _ZERO, _norm, _torch_uniform
from polyinit.defaults import Param as Default
from polyinit.layout import OUT_IN, preset
from polyinit.measure import Setup, _crop, _stack, _widths
from polyinit.spec import Normal

# --- torch ----------------------------------------------------------------------------------


def _layer_defaults(layer: str, d: dict) -> dict[str, Default]:
    if layer == "dense":
        return {
            "weight": Default(_TORCH_WEIGHT, OUT_IN, (d["n_out"], d["n_in"])),
            "bias": Default(_torch_uniform(d["n_in"]), OUT_IN, (d["n_out"],), "U(+-1/sqrt(fan_in))"),
        }
    if layer in ("conv", "conv_transpose"):
        k, g = d["kernel"], d.get("groups", 1)
        if layer == "conv":
            shape, fan_in = (d["n_out"], d["n_in"] // g) + k, d["n_in"] // g * math.prod(k)
        else:  # weight (in, out/g, *k); torch reads dim 1 as "in"
            shape, fan_in = (d["n_in"], d["n_out"] // g) + k, d["n_out"] // g * math.prod(k)
        return {
            "weight": Default(_TORCH_WEIGHT, preset("torch", layer), shape),
            "bias": Default(_torch_uniform(fan_in), OUT_IN, (d["n_out"],)),
        }
    if layer == "embedding":
        return {"weight": Default(Normal(std=1.0), OUT_IN, (d["num"], d["dim"]))}
    if layer in ("lstm", "gru"):
        h, gates = d["hidden"], 4 if layer == "lstm" else 3
        u = _torch_uniform(h)
        return {
            "weight_ih_l0": Default(u, OUT_IN, (gates * h, d["n_in"])),
            "weight_hh_l0": Default(u, OUT_IN, (gates * h, h)),
            "bias_ih_l0": Default(u, OUT_IN, (gates * h,)),
            "bias_hh_l0": Default(u, OUT_IN, (gates * h,)),
        }
    if layer in ("batchnorm", "layernorm"):
        params = _norm(d["c"], stats=layer == "batchnorm")
        return {{"gamma": "weight", "beta": "bias"}.get(k, k): v for k, v in params.items()}
    if layer == "mha":
        e = d["d_model"]
        return {
            "in_proj_weight": Default(schemes.glorot_uniform(), OUT_IN, (3 * e, e), "xavier on packed (3E, E)"),
            "in_proj_bias": Default(_ZERO, OUT_IN, (3 * e,)),
            "out_proj.weight": Default(_TORCH_WEIGHT, OUT_IN, (e, e)),
            "out_proj.bias": Default(_ZERO, OUT_IN, (e,)),
        }
    raise KeyError(layer)


# --- torch ---------------------------------------------------------------------------------------


def _measure(setup: Setup, seed: int, x: np.ndarray) -> tuple[list[float], list[float], list[np.ndarray]]:
    import torch
    from torch import nn
    from torch.nn import functional as F

    acts = {
        "linear": lambda t: t,
        "relu": torch.relu,
        "tanh": torch.tanh,
        "gelu": F.gelu,
        "silu": F.silu,
        "sigmoid": torch.sigmoid,
    }
    k, rank = setup.kernel, setup.rank

    def make(index: int) -> tuple[nn.Module, Callable]:
        i, o = _widths(setup, index)
        kind = "dense" if setup.kind == "embedding" and index else setup.kind
        m: nn.Module  # one layer of the kind under measure
        if kind == "dense":
            m = nn.Linear(i, o)
            return m, m
        if kind.startswith("conv"):
            if kind == "conv_transpose":
                m = nn.ConvTranspose2d(i, o, k)
                return m, lambda t: m(t)[(slice(None), slice(None)) + _crop(k, rank)[1:-1]]
            m = getattr(nn, f"Conv{rank}d")(i, o, k)
            return m, m
        if kind == "embedding":
            m = nn.Embedding(i, o)
            return m, m
        if kind in ("lstm", "gru"):
            m = (nn.LSTM if kind == "lstm" else nn.GRU)(i, o, batch_first=True)
            return m, lambda t: m(t)[0]
        if kind == "batchnorm":
            m = nn.BatchNorm1d(i)  # a fresh module is in training mode: batch statistics
            return m, m
        if kind == "layernorm":
            m = nn.LayerNorm(i)
            return m, m
        m = nn.MultiheadAttention(i, setup.heads, batch_first=True)
        return m, lambda t: m(t, t, t, need_weights=False)[0]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        built = [make(index) for index in range(setup.depth)]
    data = torch.from_numpy(np.moveaxis(x, -1, 1).copy() if rank else x)
    calls = [call for _, call in built]
    with torch.no_grad():
        linear = _stack(calls, data, acts["linear"], lambda t: t.numpy())
        activated = _stack(calls, data, acts[setup.activation], lambda t: t.numpy())
    return linear, activated, [p.detach().numpy() for p in built[0][0].parameters()]


def _cross_rules(weights: Selector, biases: Selector) -> list:
    """torch's defaults as rules for any model: weights U(+-1/sqrt(fan_in)), biases from their
    weight's fan_in, embeddings N(0, 1) (``polyinit.defaults.rules_for``)."""
    from polyinit.defaults import _weight_fan_in
    from polyinit.rules import SpecFactory, kind

    bias = SpecFactory(
        lambda p, layer: _torch_uniform(_weight_fan_in(p, layer)), "torch bias U(+-1/sqrt(fan_in of the weight))"
    )
    return [(weights, _TORCH_WEIGHT), (biases, bias), (kind("embedding"), Normal(std=1.0))]


def _preset_twins() -> tuple[dict, Callable]:
    """The conformance suite's twins: this framework's own layers and variance-scaling
    initializer, against which its layout presets are checked (polyinit.conformance.presets)."""
    import torch
    from torch import nn

    from polyinit.conformance.presets import DIM, GROUPS_IN, IN, MULTIPLIER, OUT, VOCAB, K, Layer

    k2 = K * K
    layers = {
        "dense": Layer(tuple(nn.Linear(IN, OUT).weight.shape), IN, OUT),
        "conv": Layer(tuple(nn.Conv2d(IN, OUT, K).weight.shape), IN * k2, OUT * k2),
        "conv_transpose": Layer(tuple(nn.ConvTranspose2d(IN, OUT, K).weight.shape), IN * k2, OUT * k2),
        "depthwise_conv": Layer(
            tuple(nn.Conv2d(GROUPS_IN, GROUPS_IN * MULTIPLIER, K, groups=GROUPS_IN).weight.shape), k2, None
        ),
        "embedding": Layer(tuple(nn.Embedding(VOCAB, DIM).weight.shape), VOCAB, DIM),
    }

    def own(shape, mode, seed):
        tensor = torch.empty(shape)
        nn.init.kaiming_normal_(tensor, mode=mode, nonlinearity="linear", generator=torch.Generator().manual_seed(seed))
        return tensor.double().numpy()

    return layers, own


def _forward(model: Any, x: Any) -> Any:
    """The model's output for a numpy batch, in inference mode (compare --model)."""
    import torch

    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _input_size(model: Any) -> Any:
    first = next((m for m in model.modules() if hasattr(m, "in_features")), None)
    return None if first is None else (first.in_features,)


FRAMEWORK = Framework(
    name="torch",
    display="PyTorch",
    detect=_detect,
    walker=TorchWalker,
    priority=10,
    defaults=_layer_defaults,
    measurer=_measure,
    preset_twins=_preset_twins,
    cross_rules=_cross_rules,
    backend="torch",
    forward=_forward,
    input_size=_input_size,
    distribution="torch",
    recurrent_names=("weight_ih_l0", ("bias_ih_l0", "bias_hh_l0"), "bias_hh_l0"),
    version="2.13",
    module="torch",
    colour="#ee4c2c",
    style="-",
    presets={
        "dense": ("out in", "out in"),
        "conv": ("out in *", "out in *"),
        "conv_transpose": ("out in *", "in out *"),  # weight (in, out/g, *k)
        "embedding": ("out in", "in out"),  # (num, dim); torch's fans read dim 1 as in
        "depthwise_conv": ("out in *", "out in *"),
    },  # (C*m, 1, *k): fans are right
)
