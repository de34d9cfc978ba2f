"""One logical parameter, one identity (issue 21): transformers' GPT-2, BERT and Llama against
keras-hub's backbones get the same identities, the same portable values and transfer into each
other in both directions, whatever their declaration order, names and storage (packed c_attn,
per-projection Linear, per-head EinsumDense), on the TensorFlow and JAX Keras backends.

Each backend runs in a subprocess (``tests/identity_pairs.py``): the Keras backend is fixed at
import, and transformers loads triton, which aborts a process where TensorFlow was loaded first."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from identity_pairs import NAMES

# Both models compute the same function in float32; keras-hub's own converters reach 2.2e-6.
TOLERANCE = 1e-5
_NEEDS = ("torch", "transformers", "keras_hub")


@pytest.fixture(scope="module", params=["tensorflow", "jax"])
def results(request):
    missing = [p for p in _NEEDS + (request.param,) if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(f"the transformers/keras-hub pairs need {', '.join(missing)}")
    tests = Path(__file__).parent
    env = dict(
        os.environ,
        KERAS_BACKEND=request.param,
        TF_CPP_MIN_LOG_LEVEL="2",
        PYTHONPATH=os.pathsep.join([str(tests.parent), str(tests)]),
    )
    out = subprocess.run(
        [sys.executable, "-W", "ignore", str(tests / "identity_pairs.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("RESULTS "))
    return json.loads(line[len("RESULTS ") :])


@pytest.mark.parametrize("name", NAMES)
def test_identities_are_equal_between_transformers_and_keras_hub(results, name):
    hf, kh = results[name]["identities"]["hf"], results[name]["identities"]["keras_hub"]
    assert sorted(hf.values()) == sorted(kh.values())
    assert len(set(hf.values())) == len(hf)
    # a name-blind copy (every module renamed m0, m1, ...): the same identities, from the structure
    # (Llama's separate gate and up projections included: the gate is the one whose output reaches
    # the product through the activation)
    assert sorted(results[name]["identities"]["hf_name_blind"].values()) == sorted(hf.values())
    if name == "gpt2":  # packed c_attn against per-head query/key/value: the same three identities
        assert [hf[f"h.1.attn.c_attn.weight#{p}"] for p in "qkv"] == [
            "1.attn.q.weight",
            "1.attn.k.weight",
            "1.attn.v.weight",
        ]
        assert kh["transformer_layer_1/self_attention/key/bias"] == "1.attn.k.bias"
    if name == "bert":  # keras-hub declares the FFN norm before the MLP: norms keep their order
        assert kh["transformer_layer_0/feedforward_layer_norm/gamma"] == hf["encoder.layer.0.output.LayerNorm.weight"]
    if name == "llama":  # keras-hub declares up before gate; the trace tells them apart
        assert (
            hf["layers.0.mlp.up_proj.weight"]
            == kh["transformer_layer_0/feedforward_intermediate_dense/kernel"]
            == "0.mlp.up.weight"
        )


@pytest.mark.parametrize("name", NAMES)
def test_transfer_both_directions_gives_the_same_outputs(results, name):
    forward, back = results[name]["transfer"]
    assert forward < TOLERANCE and back < TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_portable_apply_gives_bit_identical_logical_parameters_and_outputs(results, name):
    assert results[name]["portable_differ"] == []
    assert results[name]["portable_output"] < TOLERANCE


def test_a_fused_gate_up_projection_pairs_with_separate_gate_and_up(results):
    """Phi-3's gate_up_proj (2 * d_ff, d) is two logical parameters, gate then up, as Llama's
    gate_proj and up_proj are: same identities, transfer both ways, the same portable values."""
    fused, split = results["fused_mlp"]["fused"], results["fused_mlp"]["split"]
    assert fused == {
        "gate_up_proj.weight#gate": "mlp.gate.weight",
        "gate_up_proj.weight#up": "mlp.up.weight",
        "down_proj.weight": "mlp.out.weight",
    }
    assert sorted(split.values()) == sorted(fused.values())
    for check in ("transfer_forward", "transfer_back", "portable_output"):
        assert results["fused_mlp"][check] < TOLERANCE, check
    assert results["fused_mlp"]["portable_differ"] == []
