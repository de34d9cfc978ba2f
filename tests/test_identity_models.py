"""Identities, portable draws and transfer on a model with attention, an LSTM and a conv (issue 21):
torch's nn.MultiheadAttention (packed in_proj) against Keras's and nnx's MultiHeadAttention
(per-head kernels and (heads, head_dim) biases); state_dicts paired by name, never by position;
every refusal names the first divergence and leaves the target bit-identical; written values
checked."""

from __future__ import annotations

import random

import numpy as np
import pytest
from identity_pairs import logical_values

import polyinit as pi
from polyinit.identity import identities_of
from polyinit.rules import Rules, apply
from polyinit.selectors import every, kind, role
from polyinit.transferring import TransferError, transfer

X = np.random.default_rng(5).standard_normal((2, 8, 8, 3)).astype(np.float32)
RULES = Rules(
    [
        (kind("dense", "attention", "conv") & role("weight"), pi.glorot_uniform()),
        (role("bias"), pi.Uniform(low=-0.2, high=0.2)),
        (every(), pi.Normal(std=0.3)),
    ],
    seed=3,
    strict=False,
)


def torch_net(names=("conv", "attn", "lstm")):
    """Conv2d -> 36 tokens of 16 -> residual MultiheadAttention (4 heads) -> LSTM(8), last step.
    ``names``: the attributes' names (another author's, or meaningless ones)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    conv_name, attn_name, lstm_name = names

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            setattr(self, conv_name, nn.Conv2d(3, 16, 3))
            setattr(self, attn_name, nn.MultiheadAttention(16, 4, batch_first=True))
            setattr(self, lstm_name, nn.LSTM(16, 8, batch_first=True))

        def forward(self, x):
            h = getattr(self, conv_name)(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).reshape(x.shape[0], 36, 16)
            h = h + getattr(self, attn_name)(h, h, h, need_weights=False)[0]
            return getattr(self, lstm_name)(h)[0][:, -1]

    net = Net()

    def run(x):
        with torch.no_grad():
            return net(torch.as_tensor(x)).numpy()

    return net, run


def keras_net(prefix=""):
    keras = pytest.importorskip("keras")
    L = keras.layers
    inputs = keras.Input((8, 8, 3))
    h = L.Reshape((36, 16))(L.Conv2D(16, 3, name=f"{prefix}conv")(inputs))
    h = L.Add()([h, L.MultiHeadAttention(4, 4, name=f"{prefix}attention")(h, h)])
    model = keras.Model(inputs, L.LSTM(8, name=f"{prefix}lstm")(h))
    return model, lambda x: keras.ops.convert_to_numpy(model(x))


def nnx_net():
    nnx = pytest.importorskip("flax.nnx")

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(3, 16, (3, 3), padding="VALID", rngs=rngs)
            self.attn = nnx.MultiHeadAttention(num_heads=4, in_features=16, decode=False, rngs=rngs)
            self.rnn = nnx.RNN(nnx.LSTMCell(16, 8, rngs=rngs))

        def __call__(self, x):
            h = self.conv(x).reshape(x.shape[0], 36, 16)
            return self.rnn(h + self.attn(h))[:, -1]

    net = Net(nnx.Rngs(0))
    return net, lambda x: np.asarray(net(x))


BUILDERS = {"keras": keras_net, "nnx": nnx_net}


def _same(values_a: dict, values_b: dict) -> list[str]:
    return sorted(
        k
        for k in set(values_a) | set(values_b)
        if k not in values_a or k not in values_b or values_a[k].tobytes() != values_b[k].tobytes()
    )


def test_identities_of_the_attention_lstm_conv_model_agree_across_frameworks_and_names():
    expected = sorted(identities_of(torch_net()[0]).values())
    assert "attn.q.weight" in expected and "attn.v.bias" in expected and "attn.o.weight" in expected
    for build in (keras_net, nnx_net):
        assert sorted(identities_of(build()[0]).values()) == expected
    # a name-blind copy: the same architecture with meaningless names
    assert sorted(identities_of(torch_net(("a", "b", "c"))[0]).values()) == expected
    assert sorted(identities_of(keras_net("x")[0]).values()) == expected


@pytest.mark.parametrize("framework", sorted(BUILDERS))
def test_portable_apply_with_attention_biases_is_bit_identical_to_torch(framework):
    """Keras's and nnx's (heads, head_dim) q/k/v biases are drawn (they used to be a ShapeError),
    and torch's packed in_proj is drawn block by block under the q, k and v identities."""
    source, run_source = torch_net()
    target, run_target = BUILDERS[framework]()
    apply(source, RULES, portable=True)
    apply(target, RULES, portable=True)
    assert _same(logical_values(source), logical_values(target)) == []
    np.testing.assert_allclose(run_target(X), run_source(X), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("framework", sorted(BUILDERS))
def test_transfer_to_and_from_torch_gives_the_same_outputs(framework):
    source, run_source = torch_net()
    middle, run_middle = BUILDERS[framework]()
    transfer(source, middle)
    np.testing.assert_allclose(run_middle(X), run_source(X), rtol=1e-5, atol=1e-5)
    back, run_back = torch_net()
    apply(back, RULES)  # other values, so that nothing passes by staying as built
    transfer(middle, back)
    np.testing.assert_allclose(run_back(X), run_source(X), rtol=1e-5, atol=1e-5)


# --- state_dicts: by name, never by position ------------------------------------------------


def _linears(count=11, names=None):
    torch = pytest.importorskip("torch")
    from collections import OrderedDict

    torch.manual_seed(count)
    layers = [torch.nn.Linear(4, 4) for _ in range(count)]
    return torch.nn.Sequential(OrderedDict(zip(names, layers))) if names else torch.nn.Sequential(*layers)


def _assert_layers_equal(source, target):
    for (name, a), b in zip(source.named_parameters(), target.parameters()):
        assert a.detach().numpy().tobytes() == b.detach().numpy().tobytes(), name


def test_a_state_dict_with_sorted_shuffled_or_prefixed_keys_goes_to_the_right_layers():
    source = _linears()
    state = source.state_dict()
    shuffled = list(state.items())
    random.Random(0).shuffle(shuffled)
    for items in (sorted(state.items()), shuffled, [(f"module.{k}", v) for k, v in sorted(state.items())]):
        target = _linears(names=None)
        apply(target, RULES)
        transfer(dict(items), target)
        _assert_layers_equal(source, target)


def test_a_state_dict_with_other_names_and_the_same_structure_goes_to_the_right_layers():
    source = _linears(names=[f"block_{chr(97 + i)}" for i in range(11)])  # sorted order is not the layers' order
    target = _linears()
    apply(target, RULES)
    report = transfer(source.state_dict(), target)
    _assert_layers_equal(source, target)
    assert (report.rows[-1].identity, report.rows[-1].source) == ("layer.10.bias", "block_k.bias")


def test_a_bfloat16_state_dict_is_read_and_float64_moves_exactly():
    torch = pytest.importorskip("torch")
    source = _linears(2)
    target = _linears(2)
    transfer({k: v.to(torch.bfloat16) for k, v in source.state_dict().items()}, target)
    for a, b in zip(source.parameters(), target.parameters()):
        assert torch.equal(b, a.detach().to(torch.bfloat16).float())
    wide, copy = _linears(2).double(), _linears(3)[:2].double()
    with torch.no_grad():
        wide[0].weight.add_(1e-12)  # not representable in float32
    transfer(wide, copy)
    assert all(torch.equal(a, b) for a, b in zip(wide.parameters(), copy.parameters()))


# --- refusals: the first divergence named, the target bit-identical ---------------------------


def _encoder(layers=2, d_ff=32, bias=True):
    torch = pytest.importorskip("torch")
    torch.manual_seed(layers)
    layer = torch.nn.TransformerEncoderLayer(16, 4, d_ff, dropout=0.0, batch_first=True, bias=bias)
    return torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def _refused(source, target, pattern, **options):
    before = [t.detach().clone() for t in target.state_dict().values()]
    with pytest.raises(TransferError, match=pattern):
        transfer(source, target, **options)
    assert all(a.is_meta or a.equal(b) for a, b in zip(before, target.state_dict().values()))  # meta: no values


def test_bad_input_names_the_first_divergence_and_writes_nothing():
    # a missing block: block 1's q is the first source parameter with no counterpart
    _refused(
        _encoder(2),
        _encoder(1),
        r"first source parameter with no counterpart is 1\.attn\.q\.weight "
        r"\(layers\.1\.self_attn\.in_proj_weight#q, logical shape \(16, 16\)\)",
    )
    # mismatched architectures: the MLP is wider in the target
    _refused(
        _encoder(2),
        _encoder(2, d_ff=64),
        r"diverge at 0\.mlp\.in\.weight \(layers\.0\.linear1\.weight, "
        r"logical shape \(64, 16\)\).*logical shape \(32, 16\)",
    )
    # one extra parameter: the source has biases the target does not
    _refused(_encoder(1), _encoder(1, bias=False), r"first source parameter with no counterpart is 0\.attn\.q\.bias")
    # mapping names what identities cannot: a model declared in the other order
    torch = pytest.importorskip("torch")
    source = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Linear(8, 4))
    target = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Linear(4, 8))
    _refused(source, target, r"diverge at layer\.0\.weight \(0\.weight, logical shape \(4, 8\)\)")
    _refused(
        source,
        target,
        r"mapping names 'layer\.9\.weight', which is not a logical parameter of the source \(close: layer\.1\.weight",
        mapping={"layer.9.weight": "0.weight"},
    )
    mapping = {f"layer.{i}.{r}": f"{1 - i}.{r}" for i in (0, 1) for r in ("weight", "bias")}
    transfer(source, target, mapping=mapping)
    assert torch.equal(target[1].weight, source[0].weight) and torch.equal(target[0].bias, source[1].bias)


def test_values_are_checked_before_any_write():
    torch = pytest.importorskip("torch")
    source, target = _linears(2), _linears(2)
    with torch.no_grad():
        source[1].weight[2, 3] = float("nan")
    _refused(source, target, r"1 value\(s\) of '1\.weight' are not finite.*from the source's '1\.weight'")
    transfer(source, target, allow_nonfinite=True)
    assert torch.isnan(target[1].weight[2, 3])
    with torch.no_grad():
        source[1].weight[2, 3] = 1e30
    _refused(
        source,
        _linears(2).half(),
        r"1 value of '1\.weight' is outside the float16 range \(\|x\| <= 65504\): 1\.00+\d*e\+30",
    )
    _refused(source, _linears(2).to("meta"), r"'0\.weight' is on the meta device")
    with torch.inference_mode():
        frozen = _linears(2)
    _refused(_linears(2), frozen, r"'0\.weight' is an inference tensor")
    _refused(source, _linears(2), "allow_nonfinite must be a bool", allow_nonfinite="yes")


def test_positional_keys_remain_available():
    """Rules(key=positional) keys portable draws by declaration position, as before identities:
    the CNN twins (one declaration order) still agree, and the keys differ from the identities'."""
    from test_portable_models import keras_cnn, torch_cnn

    from polyinit.logical import positional

    by_position = Rules(RULES.rules, seed=3, strict=False, key=positional)
    torch_model, keras_model, identity_keyed = torch_cnn()[0], keras_cnn()[0], torch_cnn()[0]
    apply(torch_model, by_position, portable=True)
    apply(keras_model, by_position, portable=True)
    apply(identity_keyed, RULES, portable=True)
    positional_values = logical_values(torch_model)
    assert _same(positional_values, logical_values(keras_model)) == []
    assert all(
        positional_values[k].tobytes() != v.tobytes() for k, v in logical_values(identity_keyed).items() if v.size > 1
    )


def test_advice_that_can_be_followed(tmp_path):
    """A torch checkpoint path is refused with how to load it (not 'pass source_model=', which is
    for Keras files); an unbuilt Keras target is refused with how to build it (transfer takes no
    input_shape=)."""
    keras = pytest.importorskip("keras")
    with pytest.raises(TransferError, match=r"torch checkpoint; load it and pass its state_dict"):
        transfer(str(tmp_path / "model.pt"), _linears(2))
    unbuilt = keras.Sequential([keras.layers.Dense(4)])
    with pytest.raises(TransferError, match=r"build it first") as caught:
        transfer(_linears(1), unbuilt)
    assert "input_shape" not in str(caught.value)
