"""`polyinit compare --model module:factory`: every framework's defaults applied to the user's own
model through the rules, a per-parameter table, and the signal's variance through the real model."""

import json
import sys
import textwrap

import pytest

from polyinit.cli import main
from polyinit.compare_model import compare_model
from polyinit.errors import PolyinitError

MODELS = textwrap.dedent("""
    def torch_mlp():
        import torch
        layers = [torch.nn.Linear(512, 512, bias=False), torch.nn.Linear(512, 512, bias=False)]
        return torch.nn.Sequential(*layers), (512, 512)

    def keras_mlp():
        import keras
        return keras.Sequential([keras.Input((512,)), keras.layers.Dense(512, use_bias=False),
                                 keras.layers.Dense(512, use_bias=False)])

    def nnx_mlp():
        from flax import nnx
        class Two(nnx.Module):
            def __init__(self, rngs):
                self.first = nnx.Linear(512, 512, use_bias=False, rngs=rngs)
                self.second = nnx.Linear(512, 512, use_bias=False, rngs=rngs)
            def __call__(self, x):
                return self.second(self.first(x))
        return Two(nnx.Rngs(0)), (512, 512)

    def torch_encoder():
        import torch
        torch.manual_seed(0)
        layer = torch.nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, dropout=0.0)
        return torch.nn.TransformerEncoder(layer, 3, enable_nested_tensor=False), (8, 16, 64)

    not_a_factory = 3
""")

# Two bias-free linear layers 512 -> 512 on N(0, 1) input: Var(out) = (512 var(w))^2 for each
# framework's weight default: torch 1/3, Keras Glorot 1, Flax LeCun 1, MXNet 512 * 0.07^2 / 3.
EXPECTED = {"torch": (1 / 3) ** 2, "keras": 1.0, "flax": 1.0, "mxnet": (512 * 0.07**2 / 3) ** 2}


@pytest.fixture()
def models(tmp_path, monkeypatch):
    (tmp_path / "user_models.py").write_text(MODELS)
    monkeypatch.chdir(tmp_path)
    yield
    sys.modules.pop("user_models", None)


@pytest.mark.parametrize("factory,framework", [("torch_mlp", "torch"), ("keras_mlp", "keras"), ("nnx_mlp", "flax")])
def test_each_framework_on_the_users_model(models, factory, framework):
    pytest.importorskip({"torch": "torch", "keras": "keras", "flax": "flax"}[framework])
    path = list(sys.path)
    result = compare_model(f"user_models:{factory}", frameworks=["torch", "keras", "flax", "mxnet"])
    assert sys.path == path, "the working directory stays off sys.path"
    assert result.model_framework == framework and len(result.params) == 2
    assert {p["kind"] for p in result.params} == {"dense"} and result.params[0]["shape"] == [512, 512]
    assert "fan_in" in result.specs["torch"][0] and "fan_avg" in result.specs["keras"][0]
    assert "0.07" in result.specs["mxnet"][0]
    # One network of width 512, two layers: Var(out) wanders by about sqrt(2 * 2 / 512) ~ 9%; 25% allowed.
    for name, expected in EXPECTED.items():
        assert result.output_var[name] == pytest.approx(expected, rel=0.25), name


def test_cli_model_table_and_json(models, capsys):
    pytest.importorskip("torch")
    assert main(["compare", "--model", "user_models:torch_mlp", "--frameworks", "torch,keras"]) == 0
    text = capsys.readouterr().out
    assert "0.weight" in text and "1.weight" in text and "torch defaults" in text and "keras defaults" in text
    assert "Var of the output" in text
    assert main(["compare", "--model", "user_models:torch_mlp", "--json", "--frameworks", "mxnet"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_shape"] == [512, 512] and data["params"][0]["mxnet"].startswith("Uniform")


def test_bad_targets(models, capsys):
    with pytest.raises(PolyinitError, match="MODULE:FACTORY"):
        compare_model("user_models")
    with pytest.raises(PolyinitError, match="cannot import 'no_such_module'"):
        compare_model("no_such_module:f")
    with pytest.raises(PolyinitError, match="not a callable factory"):
        compare_model("user_models:not_a_factory")
    assert main(["compare", "--model", "user_models:missing"]) == 2
    assert "not a callable factory" in capsys.readouterr().err


def test_a_modern_scheme_next_to_the_defaults(models, capsys):
    """--scheme shows a modern scheme's per-parameter draw next to the defaults: GPT-2's residual
    outputs (attention out_proj, linear2) at 0.02 / sqrt(2 L) with L = 3 encoder layers."""
    pytest.importorskip("torch")
    import math

    result = compare_model("user_models:torch_encoder", frameworks=("torch",), schemes=("gpt2",))
    rows = {p["path"]: i for i, p in enumerate(result.params)}
    column = result.specs["gpt2 scheme"]
    assert f"std={0.02 / math.sqrt(6):.4g}" in column[rows["layers.2.linear2.weight"]]
    assert f"std={0.02 / math.sqrt(6):.4g}" in column[rows["layers.0.self_attn.out_proj.weight"]]
    assert "std=0.02" in column[rows["layers.1.linear1.weight"]]
    assert "gpt2 scheme" in result.output_var
    assert (
        main(
            [
                "compare",
                "--model",
                "user_models:torch_encoder",
                "--frameworks",
                "torch",
                "--scheme",
                "gpt2",
                "--no-measure",
            ]
        )
        == 0
    )
    assert "gpt2 scheme" in capsys.readouterr().out
    assert main(["compare", "--scheme", "gpt2"]) == 2
    assert "needs --model" in capsys.readouterr().err
