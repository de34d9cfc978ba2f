"""Every argument of every modern scheme is checked (issue 22, point 2; issue 23's bad input):
each listed hostile input is a clear PolyinitError naming the argument, the model is left bit for
bit as it was, and a hypothesis fuzz over every scheme's arguments on the tests' torch, Keras and
nnx transformer finds only "clear PolyinitError, model bit-identical" or "finite values"."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_modern_frameworks import keras_gpt, nnx_gpt, torch_gpt

from polyinit import modern
from polyinit.context import ContextError
from polyinit.errors import PolyinitError, SpecError
from polyinit.rules import apply, every, select


def snapshot(model) -> dict:
    """Every parameter's values, copied, by path (through polyinit's own walker: any framework)."""
    from polyinit.frameworks import walker_for

    walker = walker_for(model)
    return {p.path: np.array(walker.read(model, p), copy=True) for p in walker.walk(model)}


def assert_same(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for path, values in before.items():
        assert np.array_equal(values, after[path], equal_nan=True), path


@pytest.fixture(scope="module")
def gpt():
    return torch_gpt()


@pytest.mark.parametrize(
    "call, error, words",
    [
        (lambda m: modern.gpt2(m, depth=2.5), ContextError, "depth must be an integer"),
        (lambda m: modern.gpt2(m, depth=True), ContextError, "depth must be an integer"),
        (lambda m: modern.gpt2(m, depth=-2), ContextError, "depth must be >= 1"),
        (lambda m: modern.gpt2(m, depth=0), ContextError, "depth must be >= 1"),
        (lambda m: modern.small_init(m, width=0), ContextError, "width must be >= 1"),
        (lambda m: modern.small_init(m, width=63.5), ContextError, "width must be an integer"),
        (lambda m: modern.small_init(m, width=True), ContextError, "width must be an integer"),
        (lambda m: modern.gpt2(m, depth={"encodr": 3}), ContextError, "stack 'encodr'"),
        (lambda m: modern.gpt2(m, dept=1), ContextError, "did you mean 'depth'"),
        (lambda m: modern.olmo(m, init_std_=0.1), ContextError, "did you mean 'init_std'"),
        (lambda m: modern.gpt2(m, std=0), SpecError, "std must be > 0"),
        (lambda m: modern.gpt2(m, std=float("nan")), SpecError, "std must be"),
        (lambda m: modern.gpt2(m, seed=-1), PolyinitError, "seed must be >= 0"),
        (lambda m: modern.gpt2(m, seed=1.5), PolyinitError, "seed must be an integer"),
        (lambda m: modern.olmo(m, init_fn="mitchel"), SpecError, "'mitchell', 'full_megatron', 'llama'"),
        (
            lambda m: modern.olmo(m, init_fn="llama", generation="olmo1"),
            SpecError,
            "'normal', 'mitchell', 'full_megatron'",
        ),
        (lambda m: modern.olmo(m, generation="olmo2"), SpecError, "'olmo1', 'olmo_core'"),
        (lambda m: modern.olmo(m, scale_emb_init=1), SpecError, "scale_emb_init must be a bool"),
        (lambda m: modern.wang(m, variant="tinyllama"), SpecError, "'neox', 'litgpt'"),
        (lambda m: modern.wang(m, litgpt_neox_mlp=True), SpecError, "needs variant='litgpt'"),
        (lambda m: modern.llama_depth(m, reference="meta"), SpecError, "'torchtitan', 'olmo_core'"),
        (lambda m: modern.deepnet(m, reference="fairseq"), SpecError, "'paper', 'torchscale'"),
        (lambda m: modern.deepnet(m, architecture="encoder_decoder"), ContextError, "needs an encoder and a decoder"),
        (lambda m: modern.deepnet(m, architecture="seq2seq"), SpecError, "'encoder', 'decoder', 'encoder_decoder'"),
        (lambda m: modern.megatron(m, multiplier=-2.0), SpecError, "multiplier must be > 0"),
        (lambda m: modern.mup(m, None), ContextError, "base must be"),
        (lambda m: modern.mup(m, m, init={"hiden": None}), SpecError, "'input', 'hidden', 'output'"),
        (lambda m: modern.mup(m, m, init={"hidden": 0.02}), SpecError, "must be a polyinit spec"),
        (lambda m: modern.t5(m, factor=True), SpecError, "factor must be a real number"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_arguments_are_clear_errors_and_leave_the_model(gpt, call, error, words):
    before = snapshot(gpt)
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        call(gpt)
    assert_same(before, snapshot(gpt))


def test_mup_refuses_a_base_of_another_architecture(gpt):
    """Same number of parameters, different kinds: a base that is not the model at another width."""
    torch = pytest.importorskip("torch")
    count = len(select(gpt, every()))
    other = torch.nn.Sequential(*(torch.nn.Linear(4, 4, bias=False) for _ in range(count)))
    with pytest.raises(ContextError, match="another architecture"):
        modern.mup(gpt, other)


def test_unknown_keyword_lists_the_valid_ones(gpt):
    with pytest.raises(ContextError) as caught:
        modern.wang(gpt, varient="litgpt")
    assert "did you mean 'variant'" in str(caught.value) and "litgpt_neox_mlp" in str(caught.value)


# --- the fuzz ---

SCHEMES = {
    "gpt2": ("std",),
    "megatron": ("init_method_std", "multiplier", "embedding_init_method_std"),
    "olmo": (
        "init_fn",
        "generation",
        "init_std",
        "init_cutoff_factor",
        "emb_init_std",
        "scale_emb_init",
        "embed_scale",
    ),
    "llama_depth": ("reference", "std"),
    "small_init": (),
    "wang": ("variant", "litgpt_neox_mlp"),
    "u_mup": (),
    "small_init_emb": ("scale",),
    "modded_nanogpt": (),
    "t_fixup": (),
    "deepnet": ("architecture", "reference", "torchscale_unreset_attention"),
    "t5": ("factor",),
    "fixup": (),
    "mup": ("std", "readout_zero", "query_zero"),
}
CONTEXT = ("depth", "width", "dept", "d_kv")
HOSTILE = [
    0,
    1,
    3,
    -1,
    2.5,
    0.02,
    1e30,
    1e-30,
    -0.5,
    True,
    False,
    None,
    "x",
    "llama",
    "olmo_core",
    "litgpt",
    "torchscale",
    "paper",
    "decoder",
    "encoder_decoder",
    "normal",
    "mitchell",
    "fan_in",
    float("nan"),
    float("inf"),
    np.int64(2),
    np.float32(0.1),
    {"encoder": 2},
    {"": 3},
    [1],
    10**9,
]
VALUES = st.sampled_from(HOSTILE)


@st.composite
def calls(draw):
    scheme = draw(st.sampled_from(sorted(SCHEMES)))
    names = SCHEMES[scheme] + ("seed",) + CONTEXT
    chosen = draw(st.lists(st.sampled_from(names), max_size=3, unique=True))
    return scheme, {key: draw(VALUES) for key in chosen}


def _attempt(model, scheme: str, kwargs: dict, base) -> str:
    """ "refused" (a PolyinitError, the model unchanged) or "applied" (every value finite)."""
    before = snapshot(model)
    try:
        function = getattr(modern, scheme)
        rules = function(model, base, **kwargs) if scheme == "mup" else function(model, **kwargs)
        apply(model, rules)
    except PolyinitError:
        assert_same(before, snapshot(model))
        return "refused"
    for path, values in snapshot(model).items():
        assert np.all(np.isfinite(values)), (scheme, kwargs, path)
    return "applied"


def torch_cnn_lstm():
    """A small residual CNN with an LSTM head: no transformer sites, so most schemes refuse it."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            return x + self.conv2(torch.relu(self.conv1(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.layer1 = nn.Conv2d(3, 8, 3, padding=1), nn.Sequential(Branch(), Branch())
            self.lstm, self.fc = nn.LSTM(8, 16, batch_first=True), nn.Linear(16, 10)

        def forward(self, x):
            h = self.layer1(self.stem(x)).mean(dim=(2, 3))[:, None, :]
            return self.fc(self.lstm(h)[0][:, -1])

    return Net()


@pytest.mark.parametrize(
    "build", [torch_gpt, keras_gpt, nnx_gpt, torch_cnn_lstm], ids=["torch", "keras", "nnx", "torch_cnn_lstm"]
)
def test_fuzz_every_scheme_argument(build):
    """derandomized and bounded: 60 calls per framework, every scheme, up to 3 hostile arguments."""
    model, base = build(), build()
    outcomes: list[str] = []

    @settings(max_examples=60, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(calls())
    def run(call):
        scheme, kwargs = call
        outcomes.append(_attempt(model, scheme, kwargs, base))

    run()
    # Both outcomes occur, so the fuzz is not all refusals (nor all accepted).
    assert {"refused", "applied"} <= set(outcomes), outcomes
