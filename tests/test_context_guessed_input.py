"""A torch model that nothing describes (no config, no ``input_size``) is traced on an input read
off its first layer (issue 20, point 1: the example input is derived from the model where it can
be); where its forward pass refuses that guess, names decide and the summary says why and what to
pass. The sites expected here are written from the model's code, never read from polyinit."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from polyinit import modern
from polyinit.context import model_context
from polyinit.rules import apply

D, L = 16, 2


class Block(nn.Module):
    """Pre-norm attention and MLP with names that say nothing to polyinit's name hints."""

    def __init__(self):
        super().__init__()
        self.n1, self.mix, self.n2 = nn.LayerNorm(D), nn.MultiheadAttention(D, 2, batch_first=True), nn.LayerNorm(D)
        self.f1, self.f2 = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    def forward(self, x):
        h = self.n1(x)
        x = x + self.mix(h, h, h, need_weights=False)[0]
        return x + self.f2(torch.relu(self.f1(self.n2(x))))


class Net(nn.Module):
    def __init__(self, first: nn.Module):
        super().__init__()
        self.first, self.blocks, self.last = first, nn.ModuleList(Block() for _ in range(L)), nn.Linear(D, 3)

    def forward(self, x):
        x = self.first(x)
        for block in self.blocks:
            x = block(x)
        return self.last(x)


@pytest.mark.parametrize("first", [nn.Linear(8, D), nn.Embedding(50, D)], ids=["linear", "embedding"])
def test_a_model_nothing_describes_is_traced_on_its_first_layers_input(first):
    model = Net(first)
    ctx = model_context(model)
    sites = {p.path: ctx.site(p.path) for p in ctx.params}
    assert {ctx.source(p.path) for p in ctx.params} == {"structure"}, ctx.summary()
    assert ctx.depth == L
    for i in range(L):
        assert sites[f"blocks.{i}.mix.in_proj_weight"].site == "qkv"
        assert sites[f"blocks.{i}.mix.out_proj.weight"].site == "attn_out"
        assert sites[f"blocks.{i}.f1.weight"].site == "mlp_in"
        assert sites[f"blocks.{i}.f2.weight"].site == "mlp_out"
        assert sites[f"blocks.{i}.f2.weight"].block == i
    assert sites["first.weight"].site == "embedding"
    assert "first layer" in ctx.origin


def test_gpt2_scales_the_mlp_outputs_of_such_a_model():
    """The silent mislabel the guess removes: with names alone f2 was "other" and got 0.02."""
    model = Net(nn.Embedding(50, D))
    stds = {row.path: row.std for row in apply(model, modern.gpt2(model, seed=0)).rows}
    assert stds["blocks.0.f2.weight"] == pytest.approx(0.02 / (2 * L) ** 0.5)
    assert stds["blocks.0.f1.weight"] == pytest.approx(0.02)


class TwoInputs(Net):
    def forward(self, x, mask):  # the guess is one tensor: this forward refuses it
        return super().forward(x * mask)


def test_a_guess_the_forward_refuses_falls_back_to_names_and_says_what_to_pass():
    model = TwoInputs(nn.Linear(8, D))
    before = [p.detach().clone() for p in model.parameters()]
    ctx = model_context(model)
    assert ctx.structure is None
    assert "first layer's input" in ctx.note and "example_input=" in ctx.note
    assert "names used because" in ctx.summary()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    given = model_context(model, example_input=(torch.zeros(1, 4, 8), torch.ones(1, 4, 8)))
    assert given.site("blocks.1.f2.weight").site == "mlp_out"
