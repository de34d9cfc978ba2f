"""A gated MLP's gate and up projections get their identities from what they compute (issue 21):
the gate's output reaches the elementwise product through the activation, the up projection's
directly. So a name-blind copy (every module renamed m0, m1, ...) of transformers' Llama, Qwen2
and Phi-3, litgpt's LLaMA and olmo-core's Llama gives the same identities as the original, and
transfer pairs the two by identity with no ``mapping=``; keras-hub's Llama and Gemma (traced on
their Keras backend) mark gate and up the same way, with or without meaningful layer names.

The expected gate of each model is written from its modeling code (which projection goes through
``act_fn``/``silu``/``gelu``), never read from polyinit."""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from polyinit import transfer
from polyinit.identity import identities_of
from tests.test_structure_torch import LAYERS, MODELS, name_blind

# The RMSNorm classes of these codebases are in no registry: the walk warns, the trace types them.
pytestmark = pytest.mark.filterwarnings("ignore:polyinit. module types with parameters that no registry entry")

# model -> (path regex of the gate projection, of the up projection); Phi-3 fuses both in one
# gate_up_proj whose first half is the gate (Phi3MLP: gate, up = chunk(2); up * act(gate)).
GATES = {
    "llama": (r"gate_proj", r"up_proj"),
    "qwen2": (r"gate_proj", r"up_proj"),
    "phi3": (r"gate_up_proj\.weight#gate", r"gate_up_proj\.weight#up"),
    "litgpt": (r"fc_1", r"fc_2"),
    "olmo_core": (r"w1\.", r"w3\."),
}


@pytest.fixture(scope="module", params=sorted(GATES))
def gated(request):
    torch.manual_seed(0)
    model = MODELS[request.param][0]()
    return request.param, model, name_blind(model)


def test_gate_and_up_identities_come_from_the_product(gated):
    name, model, _ = gated
    found = identities_of(model)
    gate, up = GATES[name]
    for block in range(LAYERS):
        at = {identity: path for path, identity in found.items() if identity.startswith(f"{block}.mlp.")}
        assert re.search(gate, at[f"{block}.mlp.gate.weight"]), at
        assert re.search(up, at[f"{block}.mlp.up.weight"]), at
    assert not any(".mlp.in" in identity for identity in found.values())


def test_name_blind_copy_gives_the_same_identities(gated):
    _, model, blind = gated
    original, copy = identities_of(model), identities_of(blind)
    assert len(original) == len(copy)
    # name_blind keeps the declaration order, so the i-th logical parameter is the same one in both
    assert list(original.values()) == list(copy.values())


def test_transfer_to_the_name_blind_copy_pairs_by_identity(gated):
    """No name in common and no mapping=: every value lands on its own logical parameter (gate
    and up have one shape, so a swap would pass the shape checks and fail here)."""
    _, model, blind = gated
    with torch.no_grad():
        for p in blind.parameters():
            p.normal_(generator=torch.Generator().manual_seed(7))
    transfer(model, blind)
    source = [p.detach().numpy() for p in model.parameters()]
    target = [p.detach().numpy() for p in blind.parameters()]
    assert len(source) == len(target)
    assert all(np.array_equal(a, b) for a, b in zip(source, target))


# --- keras-hub, traced on its Keras backend --------------------------------------------------------

# backbone -> (its gate layer, its up layer), from keras-hub's decoder code:
# Llama: feedforward_output_dense(feedforward_intermediate_dense(x) * silu(feedforward_gate_dense(x)));
# Gemma: ffw_linear(gelu(ffw_gating(x)) * ffw_gating_2(x)).
KERAS_GATES = {
    "llama": ("feedforward_gate_dense", "feedforward_intermediate_dense"),
    "gemma": ("ffw_gating", "ffw_gating_2"),
}


def _keras_hub(name: str):
    pytest.importorskip("keras")
    hub = pytest.importorskip("keras_hub")
    if name == "llama":
        return hub.models.LlamaBackbone(
            vocabulary_size=50,
            num_layers=LAYERS,
            num_query_heads=4,
            num_key_value_heads=2,
            hidden_dim=16,
            intermediate_dim=32,
        )
    return hub.models.GemmaBackbone(
        vocabulary_size=50,
        num_layers=LAYERS,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=32,
        head_dim=8,
    )


@pytest.mark.parametrize("name", sorted(KERAS_GATES))
def test_keras_hub_gate_and_up_are_read_off_the_product(name):
    from polyinit.context import model_context

    model = _keras_hub(name)
    ctx = model_context(model)
    gate, up = KERAS_GATES[name]
    kernels = [p.path for p in ctx.params if ctx.sites[p.path].site == "mlp_in"]
    assert len(kernels) == 2 * LAYERS
    for path in kernels:
        layer = path.split("/")[-2]
        expected = "gate" if layer == gate else "up" if layer == up else "?"
        assert [part.name for part in ctx.parts(path)] == [expected], path
        assert ctx.source(path) == "structure"
    found = identities_of(model)
    for block in range(LAYERS):
        at = {identity: path for path, identity in found.items()}
        assert at[f"{block}.mlp.gate.weight"].split("/")[-2] == gate
        assert at[f"{block}.mlp.up.weight"].split("/")[-2] == up


@pytest.mark.parametrize("name", sorted(KERAS_GATES))
def test_keras_hub_with_meaningless_layer_names_gives_the_same_identities(name):
    """Every layer named n0, n1, ... (same classes): no name says gate, the product still does."""
    pytest.importorskip("tensorflow")
    from tests.test_structure_keras import meaningless_layer_names

    original = identities_of(_keras_hub(name))
    with meaningless_layer_names():
        blind = _keras_hub(name)
    copy = identities_of(blind)
    assert not set(original) & set(copy)  # no path in common
    assert list(original.values()) == list(copy.values())


def test_llama_depth_scales_the_traced_up_projection_on_the_name_blind_copy(gated):
    """Llama-style depth inits scale the up projection (w3) with the outputs; which one it is comes
    from the trace, so the name-blind copy gets the same std for every parameter, in order (the
    blind copy keeps the declaration order), and the up projections are at the depth-scaled std."""
    from polyinit import modern
    from polyinit.rules import apply

    name, model, blind = gated
    stds = [[row.std for row in apply(m, modern.llama_depth(m, seed=0)).rows] for m in (model, blind)]
    assert stds[0] == stds[1]
    if name != "phi3":  # Phi-3's fused gate_up is one tensor: its halves are checked by test_modern
        _, up = GATES[name]
        rows = apply(model, modern.llama_depth(model, seed=0)).rows
        ups = [r.std for r in rows if re.search(up, r.path) and r.path.endswith("weight")]
        gates = [r.std for r in rows if re.search(GATES[name][0], r.path) and r.path.endswith("weight")]
        assert len(ups) == len(gates) == LAYERS and all(u < g for u, g in zip(ups, gates))
