"""Keras 3: the walker (model -> records in layer order), module types, presets."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from polyinit.frameworks import Framework, module_type_of, register_module_type
from polyinit.frameworks._walk import Builder, View, dtype_name, write_or_restore
from polyinit.layout import Layout
from polyinit.params import ModelError, ModuleType, Param, ParamType, grouped_view

if TYPE_CHECKING:  # typing only: selectors are imported where rules are built
    from polyinit.selectors import Selector

_L = "keras.src.layers"
_KERNEL = {"kernel": ParamType("weight", "* in out"), "bias": ParamType("bias", "out")}
_NORM = ModuleType(
    "norm",
    {
        "gamma": ParamType("scale", "out"),
        "beta": ParamType("offset", "out"),
        "scale": ParamType("scale", "out"),
        "moving_mean": ParamType("running_mean", "out"),
        "moving_variance": ParamType("running_var", "out"),
        "mean": ParamType("running_mean", "out"),
        "variance": ParamType("running_var", "out"),
    },
)
_RNN = ModuleType(
    "recurrent",
    {
        "kernel": ParamType("weight", "in out"),
        "recurrent_kernel": ParamType("recurrent", "in out"),
        "bias": ParamType("bias", "out"),
    },
)
# An LSTM cell packs its 4 gates (i, f, c, o, as in keras.src.layers.rnn.lstm) along the output
# axis: kernel (in, 4H) reads as (in, 4, H), bias (4H,) as (4, H), so fans are per gate.
_LSTM = ModuleType(
    "recurrent",
    {
        "kernel": ParamType("weight", "in out", split=(1, 4)),
        "recurrent_kernel": ParamType("recurrent", "in out", split=(1, 4)),
        "bias": ParamType("bias", "out", split=(0, 4)),
    },
)
for _path, _entry in {
    f"{_L}.core.dense.Dense": ModuleType("dense", _KERNEL),
    f"{_L}.core.einsum_dense.EinsumDense": ModuleType("dense", _KERNEL),
    f"{_L}.convolutional.base_conv.BaseConv": ModuleType("conv", _KERNEL),
    f"{_L}.convolutional.base_conv_transpose.BaseConvTranspose": ModuleType(
        "conv_transpose",
        {"kernel": ParamType("weight", "* in out", semantic="* out in"), "bias": ParamType("bias", "out")},
    ),
    f"{_L}.convolutional.base_depthwise_conv.BaseDepthwiseConv": ModuleType(
        "conv", {"kernel": ParamType("weight", "* in out", semantic="* batch out"), "bias": ParamType("bias", "out")}
    ),
    f"{_L}.convolutional.base_separable_conv.BaseSeparableConv": ModuleType(
        "conv",
        {
            "depthwise_kernel": ParamType("weight", "* in out", semantic="* batch out"),
            "pointwise_kernel": ParamType("weight", "* in out"),
            "bias": ParamType("bias", "out"),
        },
    ),
    f"{_L}.core.embedding.Embedding": ModuleType("embedding", {"embeddings": ParamType("embedding", "in out")}),
    f"{_L}.normalization.batch_normalization.BatchNormalization": _NORM,
    f"{_L}.normalization.layer_normalization.LayerNormalization": _NORM,
    f"{_L}.normalization.group_normalization.GroupNormalization": _NORM,
    f"{_L}.normalization.rms_normalization.RMSNormalization": _NORM,
    f"{_L}.preprocessing.normalization.Normalization": _NORM,
    f"{_L}.rnn.lstm.LSTMCell": _LSTM,
    f"{_L}.rnn.gru.GRUCell": _RNN,
    f"{_L}.rnn.simple_rnn.SimpleRNNCell": _RNN,
    f"{_L}.attention.multi_head_attention.MultiHeadAttention": ModuleType("attention", {}),
    # keras-hub: a learned position embedding is an embedding table (sequence length, dim); the
    # Llama family's RMS norm keeps a scale only.
    "keras_hub.src.layers.modeling.position_embedding.PositionEmbedding": ModuleType(
        "embedding",
        {"embeddings": ParamType("embedding", "in out"), "position_embeddings": ParamType("embedding", "in out")},
    ),
    "keras_hub.src.models.llama.llama_layernorm.LlamaLayerNorm": _NORM,
}.items():
    register_module_type(_path, _entry)


# Private Keras API, isolated here (checked on Keras 3.15.1): ``_flatten_layers(include_self=False,
# recursive=False)`` lists a layer's direct sublayers in the order they were assigned (the public
# ``layers`` exists only on models), and ``_trainable_variables`` / ``_non_trainable_variables`` are
# a layer's *own* variables (the public ``weights`` include every sublayer's).
def _children(layer: Any) -> list:
    return list(layer._flatten_layers(include_self=False, recursive=False))


def _own_variables(layer: Any) -> list:
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


class KerasWalker:
    returns_new = False
    name = "keras"

    def walk(self, model: Any, input_shape: Any = None) -> list[Param]:
        if not model.built:
            if input_shape is None:
                raise ModelError("rules: this Keras model is not built; pass input_shape= to build it")
            import keras

            # Calling the model builds every sublayer, subclassed models included.
            model(keras.ops.zeros(tuple(1 if d is None else d for d in input_shape)))
        builder = Builder("* in out", sep="/")
        self._visit(builder, model, "", None, set())
        self.variables = builder.handles
        self.unknown = builder.unknown
        return builder.finish()

    def _visit(self, builder: Builder, layer: Any, key: str, forced: Any, seen: set) -> None:
        # The key is the chain of child indices (0/3/1): Keras' auto-numbered names (dense_2) never enter it.
        if id(layer) in seen:
            return
        seen.add(id(layer))
        entry, _ = module_type_of(layer)
        own = list(_own_variables(layer))
        if own:
            rows = [
                (v.path.rsplit("/", 1)[-1], v, id(v), tuple(v.shape), dtype_name(v.dtype), v.trainable, "") for v in own
            ]
            layer_path = own[0].path.rsplit("/", 1)[0]
            builder.layer(
                layer_path,
                layer,
                rows,
                key_prefix=key or "root",
                kind=forced,
                views=self._views(layer, entry, forced, own),
            )
        inner = "attention" if entry is not None and entry.kind == "attention" else forced
        for i, child in enumerate(_children(layer)):
            self._visit(builder, child, f"{key}/{i}" if key else str(i), inner, seen)

    @staticmethod
    def _views(layer: Any, entry: Any, forced: Any, own: list) -> dict[str, View]:
        views: dict[str, View] = {}
        einsum = einsum_layouts(getattr(layer, "equation", None), getattr(layer, "bias_axes", None))
        for v in own:
            leaf, shape = v.path.rsplit("/", 1)[-1], tuple(v.shape)
            if leaf in einsum and len(einsum[leaf].split()) == len(shape):
                views[leaf] = (None, Layout(einsum[leaf]), einsum[leaf])
            elif forced == "attention" and len(shape) == 3:
                pattern = "in in out" if layer.name == "attention_output" else "in out out"
                views[leaf] = (None, Layout(pattern), pattern)
            elif entry is not None and entry.kind == "recurrent" and leaf == "bias" and len(shape) == 2:
                # GRUCell(reset_after=True): (2, 3H), the input and the recurrent bias stacked
                views[leaf] = (None, Layout("batch out"), "batch out")
            elif entry is not None and entry.kind == "conv" and leaf == "kernel" and getattr(layer, "groups", 1) > 1:
                roles = Layout("* in out").roles(len(shape))
                views[leaf] = grouped_view(shape, roles, len(shape) - 1, int(layer.groups), {})
        return views

    def check(self, planned: list) -> None:
        for param, _plan in planned:
            variable = self.variables[param.path]
            if tuple(variable.shape) != tuple(param.shape):
                raise ModelError(
                    f"keras: variable {param.path!r} has shape {tuple(variable.shape)}, expected {param.shape}"
                )

    def draw(self, param: Param, plan: Any, seed: int) -> Any:
        from polyinit.backends.keras import draw

        values = draw(plan, seed)
        if plan.shape != param.shape:  # a logical view (fans="semantic"): same values, real shape
            import keras

            values = keras.ops.reshape(values, param.shape)
        return values

    def write(self, model: Any, drawn: list) -> Any:
        pending = [(self.variables[param.path], values) for param, values in drawn if values is not None]
        write_or_restore("keras", pending, lambda v: v.numpy().copy(), lambda v, values: v.assign(values))
        return model

    def read(self, model: Any, param: Param) -> Any:
        import keras
        import numpy as np

        return keras.ops.convert_to_numpy(self.variables[param.path]).astype(np.float64)


def einsum_layouts(equation: Any, bias_axes: Any) -> dict:
    """The kernel's and the bias's layouts read off an ``EinsumDense`` equation: a kernel axis
    that the input has and the output lacks is an ``in`` axis, one only the output has an ``out``
    axis, one both have a ``batch`` axis; every bias axis is an output axis. So MultiHeadAttention's
    query kernel ``"abc,cde->abde"`` (d_model, heads, head_dim) is ``in out out`` and its (heads,
    head_dim) bias ``out out``, and keras-hub's own attention layers are read the same way.

    >>> einsum_layouts("abc,cde->abde", "de")
    {'kernel': 'in out out', 'bias': 'out out'}
    >>> einsum_layouts("abcd,cde->abe", "e")["kernel"]
    'in in out'
    """
    if not isinstance(equation, str) or "->" not in equation or equation.count(",") != 1:
        return {}
    inputs, output = equation.replace(" ", "").split("->")
    source, kernel = inputs.split(",")
    roles = ["batch" if c in source and c in output else "in" if c in source else "out" for c in kernel]
    layouts = {"kernel": " ".join(roles)}
    if isinstance(bias_axes, str) and bias_axes:
        layouts["bias"] = " ".join("out" for _ in bias_axes)
    return layouts


def _detect(model: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.layers.Layer)


# --- layer defaults and compare's measurer ---------------------------------------------------
# Imported here (after the walker) from the shared helpers of polyinit.defaults and polyinit.measure,
# which import no framework record at module level.
from collections.abc import Callable

import numpy as np

from polyinit import native, schemes
from polyinit.defaults import _ZERO, _mha, _norm
from polyinit.defaults import Param as Default
from polyinit.layout import IN_OUT, OUT_IN, preset
from polyinit.measure import Setup, _crop, _stack, _widths, python_random

# --- keras ----------------------------------------------------------------------------------


def _layer_defaults(layer: str, d: dict) -> dict[str, Default]:
    glorot = schemes.glorot_uniform()
    if layer == "dense":
        return {
            "kernel": Default(glorot, IN_OUT, (d["n_in"], d["n_out"])),
            "bias": Default(_ZERO, OUT_IN, (d["n_out"],)),
        }
    if layer in ("conv", "conv_transpose"):
        k, g = d["kernel"], d.get("groups", 1)
        shape = k + ((d["n_in"] // g, d["n_out"]) if layer == "conv" else (d["n_out"], d["n_in"]))
        return {"kernel": Default(glorot, preset("keras", layer), shape), "bias": Default(_ZERO, OUT_IN, (d["n_out"],))}
    if layer == "embedding":
        return {"embeddings": Default(native.keras_random_uniform(), IN_OUT, (d["num"], d["dim"]))}
    if layer in ("lstm", "gru"):
        h, n_in = d["hidden"], d["n_in"]
        gates = 4 if layer == "lstm" else 3
        bias = (
            Default(schemes.lstm_bias(1.0), OUT_IN, (4 * h,), "unit_forget_bias")
            if layer == "lstm"
            else Default(_ZERO, Layout("batch out"), (2, 3 * h), "reset_after=True")
        )
        return {
            "kernel": Default(glorot, IN_OUT, (n_in, gates * h)),
            "recurrent_kernel": Default(native.keras_orthogonal(), IN_OUT, (h, gates * h)),
            "bias": bias,
        }
    if layer in ("batchnorm", "layernorm"):
        params = _norm(d["c"], stats=layer == "batchnorm")
        names = {"running_mean": "moving_mean", "running_var": "moving_variance"}
        return {names.get(k, k): v for k, v in params.items()}
    if layer == "mha":
        return _mha(glorot, d["d_model"], d["heads"], "attention_output")
    raise KeyError(layer)


# --- keras ---------------------------------------------------------------------------------------


def _measure(setup: Setup, seed: int, x: np.ndarray) -> tuple[list[float], list[float], list[np.ndarray]]:
    import keras
    from keras import layers as L
    from keras import ops

    acts = {
        "linear": lambda t: t,
        "relu": ops.relu,
        "tanh": ops.tanh,
        "gelu": lambda t: ops.gelu(t, approximate=False),
        "silu": ops.silu,
        "sigmoid": ops.sigmoid,
    }
    k, rank = setup.kernel, setup.rank

    def make(index: int) -> tuple[Any, Callable]:
        i, o = _widths(setup, index)
        kind = "dense" if setup.kind == "embedding" and index else setup.kind
        if kind == "dense":
            m = L.Dense(o)
        elif kind == "conv_transpose":
            m = L.Conv2DTranspose(o, k)
            return m, lambda t: m(t)[_crop(k, rank)]
        elif kind.startswith("conv"):
            m = getattr(L, f"Conv{rank}D")(o, k)
        elif kind == "embedding":
            m = L.Embedding(i, o)
        elif kind in ("lstm", "gru"):
            m = (L.LSTM if kind == "lstm" else L.GRU)(o, return_sequences=True)
        elif kind == "batchnorm":
            m = L.BatchNormalization()
            return m, lambda t: m(t, training=True)
        elif kind == "layernorm":
            m = L.LayerNormalization()
        else:
            m = L.MultiHeadAttention(num_heads=setup.heads, key_dim=i // setup.heads)
            return m, lambda t: m(t, t)
        return m, m

    # Keras's unseeded initializers take their seeds from Python's random when the layer builds.
    with python_random(seed):
        built = [make(index) for index in range(setup.depth)]
        calls = [call for _, call in built]
        linear = _stack(calls, x, acts["linear"], keras.ops.convert_to_numpy)
    activated = _stack(calls, x, acts[setup.activation], keras.ops.convert_to_numpy)
    return linear, activated, [keras.ops.convert_to_numpy(w) for w in built[0][0].weights]


def _cross_rules(weights: Selector, biases: Selector) -> list:
    """Keras's defaults as rules for any model: Glorot-uniform weights, zero biases, U(+-0.05) embeddings."""
    from polyinit.rules import kind

    return [(weights, schemes.glorot_uniform()), (biases, _ZERO), (kind("embedding"), native.keras_random_uniform())]


def _preset_twins() -> tuple[dict, Callable]:
    """The conformance suite's twins: this framework's own layers and variance-scaling
    initializer, against which its layout presets are checked (polyinit.conformance.presets)."""
    import keras

    from polyinit.conformance.presets import DIM, GROUPS_IN, IN, MULTIPLIER, OUT, VOCAB, K, Layer

    def kernel(layer, input_shape, name="kernel"):
        layer.build(input_shape)
        return tuple(getattr(layer, name).shape)

    k2 = K * K
    image = (None, 8, 8, IN)
    layers = {
        "dense": Layer(kernel(keras.layers.Dense(OUT), (None, IN)), IN, OUT),
        "conv": Layer(kernel(keras.layers.Conv2D(OUT, K), image), IN * k2, OUT * k2),
        "conv_transpose": Layer(kernel(keras.layers.Conv2DTranspose(OUT, K), image), IN * k2, OUT * k2),
        "depthwise_conv": Layer(
            kernel(keras.layers.DepthwiseConv2D(K, depth_multiplier=MULTIPLIER), (None, 8, 8, GROUPS_IN)), k2, None
        ),
        "embedding": Layer(kernel(keras.layers.Embedding(VOCAB, DIM), (None, 3), "embeddings"), VOCAB, DIM),
    }

    def own(shape, mode, seed):
        init = keras.initializers.VarianceScaling(1.0, mode, "untruncated_normal", seed=seed)
        return np.asarray(keras.ops.convert_to_numpy(init(shape)), dtype=np.float64)

    return layers, own


def _forward(model: Any, x: Any) -> Any:
    """The model's output for a numpy batch, in inference mode (compare --model)."""
    import keras

    return keras.ops.convert_to_numpy(model(x, training=False))


def _input_size(model: Any) -> Any:
    shape = getattr(model, "input_shape", None)
    return tuple(shape[1:]) if isinstance(shape, tuple) and all(d is not None for d in shape[1:]) else None


FRAMEWORK = Framework(
    name="keras",
    display="Keras 3",
    detect=_detect,
    walker=KerasWalker,
    priority=20,
    defaults=_layer_defaults,
    measurer=_measure,
    preset_twins=_preset_twins,
    cross_rules=_cross_rules,
    backend="keras",
    forward=_forward,
    input_size=_input_size,
    distribution="keras",
    norm_epsilon=(1e-3, 1e-3),
    recurrent_names=("kernel", (), None),
    version="3.15.1",
    module="keras",
    colour="#c98a00",
    style="--",
    presets={
        "dense": ("in out", "in out"),
        "conv": ("* in out", "* in out"),
        "conv_transpose": ("* in out", "* out in"),  # kernel (*k, filters, in)
        "depthwise_conv": ("* in out", "* batch out"),  # (*k, channels, multiplier)
        "embedding": ("in out", "in out"),
    },
)
