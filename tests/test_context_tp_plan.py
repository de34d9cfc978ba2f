"""Tensor-parallel plans as evidence (issue 20 (g)): where the trace is silent, a model's TP plan
decides input (colwise) against output (rowwise) projections and the report says so; on
transformers' Llama and GPT-NeoX the plan agrees with the trace for every parameter it covers."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from polyinit import modern
from polyinit.context import model_context
from polyinit.structure.tp_plan import direction, plan_of
from tests.modern_models import value_dependent

# The site families each plan direction stands for (the trace's sites).
FAMILY = {
    "in": {"q", "k", "v", "qkv", "mlp_in"},
    "out": {"attn_out", "mlp_out"},
    "embedding": {"embedding"},
    "readout": {"readout"},
}


class Blind(torch.nn.Module):
    """Two MLP blocks whose modules say nothing (a, b), with a plan for them; its forward pass
    takes two inputs, which neither the model nor its first layer describes, so the trace is silent."""

    def __init__(self, width: int = 8, blocks: int = 2):
        super().__init__()
        self.tp_plan = {"layers.*.a": "colwise", "layers.*.b": "rowwise"}
        self.layers = torch.nn.ModuleList(
            torch.nn.ModuleDict({"a": torch.nn.Linear(width, 4 * width), "b": torch.nn.Linear(4 * width, width)})
            for _ in range(blocks)
        )

    def forward(self, x, mask):
        x = x * mask
        for layer in self.layers:
            x = x + layer["b"](torch.relu(layer["a"](x)))
        return x


def test_the_plan_decides_where_the_trace_and_the_names_are_silent():
    model = Blind()
    ctx = model_context(model)
    assert [ctx.site(p.path).site for p in ctx.params] == ["mlp_in"] * 2 + ["mlp_out"] * 2 + ["mlp_in"] * 2 + [
        "mlp_out"
    ] * 2
    assert [ctx.site(p.path).block for p in ctx.params] == [0] * 4 + [1] * 4
    assert ctx.depth == 2
    assert {ctx.source(p.path) for p in ctx.params} == {"tp_plan"}
    assert "8 from the TP plan" in ctx.summary().splitlines()[0]
    rules = modern.gpt2(ctx)  # a depth-scaled scheme places the plan's output projections
    assert rules.rules


def test_without_the_plan_the_same_model_is_other_by_names():
    model = Blind()
    model.tp_plan = {}
    ctx = model_context(model)
    assert {ctx.site(p.path).site for p in ctx.params} == {"other"}
    assert {ctx.source(p.path) for p in ctx.params} == {"name"}


def test_the_trace_wins_over_the_plan():
    """A plan that contradicts the forward pass is not used where the trace speaks."""
    model = Blind()
    model.tp_plan = {"layers.*.a": "rowwise", "layers.*.b": "colwise"}
    ctx = model_context(model, example_input=(torch.zeros(1, 8), torch.ones(1, 8)))
    assert [ctx.site(p.path).site for p in ctx.params][:4] == ["mlp_in", "mlp_in", "mlp_out", "mlp_out"]
    assert {ctx.source(p.path) for p in ctx.params} == {"structure"}


def test_direction_reads_styles_and_block_patterns():
    plan = {"model.layers.*.mlp.down_proj": "local_rowwise", "model.embed_tokens": "embedding_rowwise"}
    assert direction("model.layers.11.mlp.down_proj.weight", plan) == "out"
    assert direction("model.embed_tokens.weight", plan) == "embedding"
    assert direction("model.layers.x.y.mlp.down_proj.weight", plan) is None  # * is one part
    assert direction("model.norm.weight", plan) is None


def _llama():
    t = pytest.importorskip("transformers")
    return t.LlamaForCausalLM(
        t.LlamaConfig(
            vocab_size=50,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )


def _neox():
    t = pytest.importorskip("transformers")
    return t.GPTNeoXForCausalLM(
        t.GPTNeoXConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    )


@pytest.mark.parametrize("build", [_llama, _neox], ids=["llama", "gpt_neox"])
def test_the_plan_agrees_with_the_trace(build):
    """Every parameter the plan covers is, by the trace, in the family the plan says."""
    model = build()
    plan = plan_of(model)
    ctx = model_context(model)
    covered = [(p.path, direction(p.path, plan)) for p in ctx.params if direction(p.path, plan) is not None]
    assert len(covered) >= 2 * 4  # every block's projections at least
    for path, said in covered:
        assert ctx.source(path) == "structure", path
        assert ctx.site(path).site in FAMILY[said], (path, said, ctx.site(path))


def test_the_plan_places_a_meta_device_llama_like_the_trace():
    """On the meta device a forward pass that needs values cannot run: the plan places the
    projections it covers, in the family the trace gives on the materialised model."""
    t = pytest.importorskip("transformers")
    config = _llama().config
    with torch.device("meta"):
        meta = value_dependent(t.LlamaForCausalLM)(config)
    traced, planned = model_context(_llama()), model_context(meta)
    assert "needs values" in planned.summary()
    plan = plan_of(meta)
    checked = 0
    for p in planned.params:
        said = direction(p.path, plan)
        if said is None:
            continue
        assert planned.source(p.path) == "tp_plan"
        assert planned.site(p.path) == traced.site(p.path), p.path
        checked += 1
    assert checked >= 2 * 7  # q, k, v, o, gate, up, down of both blocks


def test_a_meta_device_llama_is_traced_on_stand_ins():
    """Where its forward pass runs on meta or fake tensors, a meta-device model is traced like the
    materialised one: every site from the structure, the same sites, blocks and depth."""
    t = pytest.importorskip("transformers")
    config = _llama().config
    with torch.device("meta"):
        meta = t.LlamaForCausalLM(config)
    traced, on_meta = model_context(_llama()), model_context(meta)
    assert {on_meta.source(p.path) for p in on_meta.params} == {"structure"}
    assert on_meta.sites == traced.sites and dict(on_meta.depths) == dict(traced.depths)
