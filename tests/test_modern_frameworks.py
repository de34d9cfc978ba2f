"""One scheme on one architecture written in torch, Keras and nnx gives the same per-parameter
statistics (issue 11, point 4): a GPT-2-small-like model (token and position embeddings, L
pre-norm blocks of attention and MLP, final norm) in each framework's own idiom, with the
framework's own attention layer (torch separate q/k/v Linear layers, Keras and nnx
``MultiHeadAttention`` with rank-3 kernels), compared through the promised std of every
parameter, keyed by (site, block)."""

from __future__ import annotations

import math

import pytest

from polyinit import modern
from polyinit.context import model_context
from polyinit.plan import resolve
from polyinit.rules import KEEP, Context, name

V, P, D, HEADS, L = 96, 16, 64, 4, 3


def torch_gpt():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.c_proj = (nn.Linear(D, D) for _ in range(4))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc, self.c_proj = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2, self.mlp = nn.LayerNorm(D), Attention(), nn.LayerNorm(D), MLP()

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(V, D), nn.Embedding(P, D)
            self.h = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(D)

    return GPT()


def keras_gpt():
    keras = pytest.importorskip("keras")

    class MLP(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.c_fc = keras.layers.Dense(4 * D, name="c_fc")
            self.c_proj = keras.layers.Dense(D, name="c_proj")

        def call(self, x):
            return self.c_proj(self.c_fc(x))

    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.ln_1 = keras.layers.LayerNormalization(name="ln_1")
            self.attn = keras.layers.MultiHeadAttention(HEADS, D // HEADS, name="attn")
            self.ln_2 = keras.layers.LayerNormalization(name="ln_2")
            self.mlp = MLP(name="mlp")

        def call(self, x):
            y = self.ln_1(x)
            x = x + self.attn(y, y)
            return x + self.mlp(self.ln_2(x))

    class GPT(keras.Model):
        def __init__(self):
            super().__init__(name="gpt")
            self.wte = keras.layers.Embedding(V, D, name="wte")
            self.wpe = keras.layers.Embedding(P, D, name="wpe")
            self.h = [Block(name=f"h_{i}") for i in range(L)]
            self.ln_f = keras.layers.LayerNormalization(name="ln_f")

        def call(self, tokens):
            x = self.wte(tokens) + self.wpe(keras.ops.arange(P)[None, :])
            for block in self.h:
                x = block(x)
            return self.ln_f(x)

    model = GPT()
    model(keras.ops.zeros((1, P), dtype="int32"))
    return model


def nnx_gpt():
    nnx = pytest.importorskip("flax.nnx")

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.c_fc, self.c_proj = nnx.Linear(D, 4 * D, rngs=rngs), nnx.Linear(4 * D, D, rngs=rngs)

    class Block(nnx.Module):
        def __init__(self, rngs):
            self.ln_1 = nnx.LayerNorm(D, rngs=rngs)
            self.attn = nnx.MultiHeadAttention(HEADS, D, decode=False, rngs=rngs)
            self.ln_2 = nnx.LayerNorm(D, rngs=rngs)
            self.mlp = MLP(rngs)

    class GPT(nnx.Module):
        def __init__(self, rngs):
            self.wte, self.wpe = nnx.Embed(V, D, rngs=rngs), nnx.Embed(P, D, rngs=rngs)
            self.h = (
                nnx.List([Block(rngs) for _ in range(L)]) if hasattr(nnx, "List") else [Block(rngs) for _ in range(L)]
            )
            self.ln_f = nnx.LayerNorm(D, rngs=rngs)

    return GPT(nnx.Rngs(0))


def promised(model, rules) -> dict:
    """(site, block, role) -> sorted promised stds of the weights there (q, k and v separately;
    a fused qkv counts as its three blocks)."""
    ctx = model_context(model)
    rule_context = Context(ctx.params)
    table: dict = {}
    for p in ctx.params:
        index = next((i for i, (sel, _) in enumerate(rules.rules) if sel.matches(p, rule_context)), None)
        if index is None or rules.rules[index][1] is KEEP or p.role not in ("weight", "embedding"):
            continue
        stats = resolve(rules.rules[index][1], p.shape, p.layout).stats
        site = ctx.sites[p.path]
        table.setdefault((site.site, site.block), []).append(round(stats.std, 12))
    return {key: sorted(values) for key, values in table.items()}


@pytest.mark.parametrize(
    "scheme",
    [
        lambda m: modern.gpt2(m),
        lambda m: modern.olmo(m, init_fn="mitchell"),
        lambda m: modern.olmo(m, init_fn="full_megatron"),
        lambda m: modern.wang(m),
        lambda m: modern.modded_nanogpt(m, keep=name("*wpe*")),
        lambda m: modern.deepnet(m),
        lambda m: modern.olmo(m, init_fn="llama", generation="olmo_core"),
        lambda m: modern.olmo(m, init_fn="fan_in", generation="olmo_core"),
        lambda m: modern.llama_depth(m),
        lambda m: modern.wang(m, variant="litgpt"),
        lambda m: modern.deepnet(m, reference="torchscale"),
    ],
    ids=[
        "gpt2",
        "olmo_mitchell",
        "olmo_full_megatron",
        "wang",
        "modded_nanogpt",
        "deepnet",
        "olmo_core_llama",
        "olmo_core_fan_in",
        "llama_depth",
        "wang_litgpt",
        "deepnet_torchscale",
    ],
)
def test_same_statistics_in_torch_keras_and_nnx(scheme):
    tables = {}
    for name, build in (("torch", torch_gpt), ("keras", keras_gpt), ("nnx", nnx_gpt)):
        model = build()
        ctx = model_context(model)
        assert (ctx.depth, ctx.width) == (L, D), name
        tables[name] = promised(model, scheme(model))
    assert tables["torch"] == tables["keras"] == tables["nnx"]
    assert tables["torch"][("attn_out", L - 1)]  # the scheme spoke about every block


def test_three_lines_on_each_framework():
    """The same three lines initialise each framework's model, and the draws follow the promise."""
    import numpy as np

    from polyinit.rules import apply

    for build in (torch_gpt, keras_gpt, nnx_gpt):
        model = build()
        report = apply(model, modern.gpt2(model, seed=0))
        rows = {r.path: r for r in report.rows}
        out = [
            r
            for r in report.rows
            if "c_proj" in r.path and ("kernel" in r.path or "weight" in r.path) and "mlp" in r.path
        ]
        assert out, sorted(rows)
        for row in out:
            assert abs(row.std / (0.02 / math.sqrt(2 * L)) - 1) < 5.33 * math.sqrt(2 / (4 * np.prod(row.shape)))
