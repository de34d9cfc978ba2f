"""The JAX tracer (issue 20): the jaxpr of an nnx module and of a linen module with its variables,
checked op by op (which op reads which kernel along which axes, where q and k meet before the
softmax, which norms the written-out mean/rsqrt ops are), then the sites, blocks and depth the
structure passes read off a GPT-style transformer in each, with expected values written from the
architecture, and the same for copies whose attributes (nnx) or modules (linen) have meaningless
names. Keras on the JAX backend: tests/test_structure_keras.py (a subprocess)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.structure_checks import assert_attention, kernel_axes, readers, sites

jax = pytest.importorskip("jax")
jnp = jax.numpy
nnx = pytest.importorskip("flax.nnx")
linen = pytest.importorskip("flax.linen")

from polyinit import modern
from polyinit.context import ContextError, model_context
from polyinit.frameworks.flax import LinenWalker, NnxWalker
from polyinit.structure import find_structure, trace_jax
from tests.modern_models import promised_stds

V, P, D, HEADS, L = 96, 8, 32, 4, 3
TOKENS = jnp.arange(P, dtype=jnp.int32)[None] % V
NAMES = ("wte", "wpe", "h", "ln_f", "lm_head", "ln_1", "attn", "ln_2", "mlp", "c_fc", "c_proj")
BLIND = dict(zip(NAMES, (f"m{i}" for i in range(len(NAMES)))))
MEANINGFUL = {n: n for n in NAMES}


def nnx_walk(model) -> list[str]:
    return [p.path for p in NnxWalker().walk(model)]


# --- op level ----------------------------------------------------------------------------------


def test_linear_kernel_is_contracted_along_its_input_axis():
    model = nnx.Linear(16, 8, rngs=nnx.Rngs(0))
    g = trace_jax.trace(model, jnp.ones((2, 16)))
    assert set(g.params()) == set(nnx_walk(model)) == {"kernel", "bias"}
    assert kernel_axes(g, "kernel") == ((0,), (), (1,))


@pytest.mark.parametrize(
    "equation, kernel_shape, x_shape, axes",
    [
        ("btd,dnh->btnh", (16, 2, 4), (1, 8, 16), ((0,), (), (1, 2))),  # per-head q/k/v
        ("btnh,nhd->btd", (2, 4, 16), (1, 8, 2, 4), ((0, 1), (), (2,))),  # per-head output
        ("btd,ndh->btnh", (2, 16, 4), (1, 8, 16), ((1,), (), (0, 2))),  # heads first (Gemma's layout)
    ],
    ids=["heads_out", "heads_in", "heads_first"],
)
def test_einsum_reads_the_kernel_along_the_equation(equation, kernel_shape, x_shape, axes):
    model = nnx.Einsum(equation, kernel_shape, rngs=nnx.Rngs(0))
    g = trace_jax.trace(model, jnp.ones(x_shape))
    assert kernel_axes(g, "kernel") == axes


def test_written_out_norms_become_norm_nodes():
    """nnx's LayerNorm (x - mean) * rsqrt(E[x^2] - mean^2 + eps) * scale + bias and RMSNorm are
    one ``norm`` node each, reading x, then the scale, then the offset."""

    class Two(nnx.Module):
        def __init__(self, rngs):
            self.a, self.b = nnx.LayerNorm(D, rngs=rngs), nnx.RMSNorm(D, rngs=rngs)

        def __call__(self, x):
            return self.b(self.a(x))

    g = trace_jax.trace(Two(nnx.Rngs(0)), jnp.ones((1, P, D)))
    norms = [n for n in g if n.op == "norm"]
    assert [(n.attrs["fn"], n.attrs["axes"]) for n in norms] == [("layer", (2,)), ("rms", (2,))]
    layer, rms = norms
    assert g[layer.inputs[0]].op == "input" and rms.inputs[0] == layer.id
    assert [g[i].attrs["path"] for i in layer.inputs[1:]] == ["a/scale", "a/bias"]
    assert [g[i].attrs["path"] for i in rms.inputs[1:]] == ["b/scale"]
    assert not [n for n in g if n.op == "unary" and n.attrs["fn"] == "rsqrt"]


def test_softmax_written_out_is_one_node():
    g = trace_jax.trace(nnx.Linear(4, 4, rngs=nnx.Rngs(0)), jnp.ones((2, 4)))
    assert not [n for n in g if n.op == "softmax"]
    model = nnx.MultiHeadAttention(HEADS, D, decode=False, rngs=nnx.Rngs(0))
    g = trace_jax.trace(model, jnp.ones((1, P, D)))
    (soft,) = [n for n in g if n.op == "softmax"]
    assert soft.shape[soft.attrs["axis"]] == P  # normalised over the key positions
    assert not [n for n in g if n.op == "unary" and n.attrs["fn"] == "exp"]
    assert_attention(g, "query/kernel", "key/kernel", "value/kernel")
    assert kernel_axes(g, "out/kernel") == ((0, 1), (), (2,))


def test_wrong_input_type_is_refused_and_the_model_is_unchanged():
    model = nnx.Linear(4, 2, rngs=nnx.Rngs(0))
    before = np.asarray(model.kernel[...]).copy()
    with pytest.raises(TypeError, match="expected a jax or numpy array"):
        trace_jax.trace(model, "tokens")
    assert np.array_equal(before, np.asarray(model.kernel[...]))


def test_a_failing_forward_pass_leaves_the_model_as_it_was():
    model = nnx.Linear(4, 2, rngs=nnx.Rngs(0))
    before = np.asarray(model.kernel[...]).copy()
    with pytest.raises(TypeError):
        trace_jax.trace(model, jnp.ones((2, 5)))  # 5 features into a 4-input layer
    assert np.array_equal(before, np.asarray(model.kernel[...]))
    assert kernel_axes(trace_jax.trace(model, jnp.ones((2, 4))), "kernel") == ((0,), (), (1,))


# --- a GPT-style transformer in nnx and in linen -------------------------------------------------


def nnx_gpt(names: dict):
    """GPT-2's architecture (token and position embeddings, L pre-norm blocks of attention and a
    GELU MLP, final norm, untied readout) with every attribute named by ``names``."""
    n = names

    class MLP(nnx.Module):
        def __init__(self, rngs):
            setattr(self, n["c_fc"], nnx.Linear(D, 4 * D, rngs=rngs))
            setattr(self, n["c_proj"], nnx.Linear(4 * D, D, rngs=rngs))

        def __call__(self, x):
            return getattr(self, n["c_proj"])(nnx.gelu(getattr(self, n["c_fc"])(x)))

    class Block(nnx.Module):
        def __init__(self, rngs):
            setattr(self, n["ln_1"], nnx.LayerNorm(D, rngs=rngs))
            setattr(self, n["attn"], nnx.MultiHeadAttention(HEADS, D, decode=False, rngs=rngs))
            setattr(self, n["ln_2"], nnx.LayerNorm(D, rngs=rngs))
            setattr(self, n["mlp"], MLP(rngs))

        def __call__(self, x):
            x = x + getattr(self, n["attn"])(getattr(self, n["ln_1"])(x))
            return x + getattr(self, n["mlp"])(getattr(self, n["ln_2"])(x))

    class GPT(nnx.Module):
        def __init__(self, rngs):
            setattr(self, n["wte"], nnx.Embed(V, D, rngs=rngs))
            setattr(self, n["wpe"], nnx.Embed(P, D, rngs=rngs))
            setattr(self, n["h"], nnx.List([Block(rngs) for _ in range(L)]))
            setattr(self, n["ln_f"], nnx.LayerNorm(D, rngs=rngs))
            setattr(self, n["lm_head"], nnx.Linear(D, V, use_bias=False, rngs=rngs))

        def __call__(self, tokens):
            x = getattr(self, n["wte"])(tokens) + getattr(self, n["wpe"])(jnp.arange(tokens.shape[1])[None])
            for block in getattr(self, n["h"]):
                x = block(x)
            return getattr(self, n["lm_head"])(getattr(self, n["ln_f"])(x))

    return GPT(nnx.Rngs(0))


def linen_gpt(names: dict):
    """The same architecture in linen, every submodule named by ``names``, the readout tied to
    the token embedding (``Embed.attend``)."""
    n = names

    class Block(linen.Module):
        @linen.compact
        def __call__(self, x):
            y = linen.LayerNorm(name=n["ln_1"])(x)
            x = x + linen.MultiHeadDotProductAttention(num_heads=HEADS, qkv_features=D, name=n["attn"])(y, y)
            y = linen.LayerNorm(name=n["ln_2"])(x)
            y = linen.Dense(D, name=n["c_proj"])(linen.gelu(linen.Dense(4 * D, name=n["c_fc"])(y)))
            return x + y

    class GPT(linen.Module):
        @linen.compact
        def __call__(self, tokens):
            wte = linen.Embed(V, D, name=n["wte"])
            x = wte(tokens) + linen.Embed(P, D, name=n["wpe"])(jnp.arange(tokens.shape[1])[None])
            for i in range(L):
                x = Block(name=f"{n['h']}_{i}")(x)
            return wte.attend(linen.LayerNorm(name=n["ln_f"])(x))

    module = GPT()
    return module, module.init(jax.random.key(0), TOKENS)


def expected(path: str, names: dict, sep_block: str):
    """The site of each parameter from GPT-2's architecture, the path read with ``names``."""
    inverse = {v: k for k, v in names.items()}
    parts = [p for p in path.split("/") if p != "params"]
    meaning = [inverse.get(p, p) for p in parts]
    block = None
    if meaning[0] == "h" or meaning[0].startswith(names["h"] + "_"):
        block = int(parts[1]) if sep_block == "/" else int(parts[0].rsplit("_", 1)[1])
        meaning = meaning[2:] if sep_block == "/" else meaning[1:]
    leaf = meaning[-1]
    role = {"kernel": "weight", "bias": "bias", "scale": "scale", "embedding": "weight"}[leaf]
    if meaning[0] in ("ln_1", "ln_2", "ln_f"):
        return "norm", block, "offset" if leaf == "bias" else "scale"
    if meaning[0] == "attn":
        return {"query": "q", "key": "k", "value": "v", "out": "attn_out"}[meaning[1]], block, role
    site = {
        "wte": "embedding",
        "wpe": "position",
        "lm_head": "readout",
        "c_fc": "mlp_in",
        "c_proj": "mlp_out",
        "mlp": {"c_fc": "mlp_in", "c_proj": "mlp_out"}.get(meaning[1] if len(meaning) > 1 else ""),
    }[meaning[0]]
    return site, block, role


@pytest.mark.parametrize("names", [MEANINGFUL, BLIND], ids=["named", "name_blind"])
def test_nnx_gpt_sites_blocks_and_depth(names):
    model = nnx_gpt(names)
    paths = nnx_walk(model)
    g = trace_jax.trace(model, TOKENS)
    structure = find_structure(g)
    found = [None if s is None else (s[0], s[1], s[3]) for s in sites(structure, paths)]
    assert found == [expected(p, names, "/") for p in paths], list(zip(paths, found))
    assert dict(structure.depths) == {"": L}
    layer0 = f"{names['h']}/0/{names['attn']}"
    assert_attention(g, f"{layer0}/query/kernel", f"{layer0}/key/kernel", f"{layer0}/value/kernel")


def test_nnx_name_blind_copy_gives_the_same_structure():
    named, blind = nnx_gpt(MEANINGFUL), nnx_gpt(BLIND)
    s_named = find_structure(trace_jax.trace(named, TOKENS))
    s_blind = find_structure(trace_jax.trace(blind, TOKENS))
    assert sites(s_named, nnx_walk(named)) == sites(s_blind, nnx_walk(blind))
    assert not set(nnx_walk(named)) & set(nnx_walk(blind))


@pytest.mark.parametrize("names", [MEANINGFUL, BLIND], ids=["named", "name_blind"])
def test_linen_gpt_sites_blocks_and_depth_and_tied_readout(names):
    module, variables = linen_gpt(names)
    paths = [p.path for p in LinenWalker().walk(variables)]
    for model in ((module, variables), module.bind(variables)):
        g = trace_jax.trace(model, TOKENS)
        assert set(g.params()) == set(paths)
        structure = find_structure(g)
        found = [None if s is None else (s[0], s[1], s[3]) for s in sites(structure, paths)]
        assert found == [expected(p, names, "_") for p in paths], list(zip(paths, found))
        assert dict(structure.depths) == {"": L}
        wte = f"params/{names['wte']}/embedding"
        assert dict(structure.tied) == {wte: wte}  # the readout is the embedding's table
        ((_, side),) = readers(g, wte, "contract")
        assert side == 1


def test_linen_params_tree_without_collections():
    module, variables = linen_gpt(MEANINGFUL)
    g = trace_jax.trace((module, variables["params"]), TOKENS)
    assert "wte/embedding" in g.params() and not any(p.startswith("params/") for p in g.params())


def test_example_input_from_the_first_layer():
    """nnx and linen declare no input: their first layer says what they read. The GPTs start
    with a token table (integer tokens, as long as the position table allows); a module starting
    with a Linear reads in_features; one starting with a Conv gives None (no spatial size)."""
    module, variables = linen_gpt(BLIND)
    for model in (nnx_gpt(BLIND), (module, variables), module.bind(variables)):
        x = trace_jax.example_input(model)
        assert x.shape == (1, P) and x.dtype == jnp.int32 and np.array_equal(x, np.arange(P)[None] % V)
    assert trace_jax.example_input(variables) is None  # a variables tree alone has no forward pass
    assert trace_jax.example_input(nnx.Linear(5, 3, rngs=nnx.Rngs(0))).shape == (1, 5)
    assert trace_jax.example_input(nnx.Conv(3, 4, kernel_size=(3, 3), rngs=nnx.Rngs(0))) is None

    class Holder(nnx.Module):  # parameters with no forward pass of their own
        def __init__(self, rngs):
            self.table = nnx.Embed(V, D, rngs=rngs)

    assert trace_jax.example_input(Holder(nnx.Rngs(0))) is None


@pytest.mark.parametrize("names", [MEANINGFUL, BLIND], ids=["named", "name_blind"])
def test_model_context_traces_nnx_and_linen_with_no_example_input(names):
    """Issue 20 (d): model_context takes an nnx module, a (linen module, variables) pair or a
    bound linen module, derives the input, and every site comes from the trace: equal to the
    architecture's, the same for the name-blind copies, on the paths the rules walk (linen: the
    variables tree that apply takes)."""
    module, variables = linen_gpt(names)
    linen_paths = [p.path for p in LinenWalker().walk(variables)]
    for model in ((module, variables), module.bind(variables)):
        ctx = model_context(model)
        assert [p.path for p in ctx.params] == linen_paths
        assert {ctx.source(p) for p in linen_paths} == {"structure"}
        found = [(ctx.site(p).site, ctx.site(p).block, ctx.structure.get(p).role) for p in linen_paths]
        assert found == [expected(p, names, "_") for p in linen_paths]
        assert ctx.depth == L and "traced on" in ctx.origin
    model = nnx_gpt(names)
    ctx = model_context(model)
    paths = nnx_walk(model)
    assert {ctx.source(p) for p in paths} == {"structure"} and ctx.depth == L
    assert [(ctx.site(p).site, ctx.site(p).block) for p in paths] == [expected(p, names, "/")[:2] for p in paths]


def test_linen_variables_alone_say_how_to_give_the_forward_pass():
    _, variables = linen_gpt(BLIND)
    ctx = model_context(variables)
    assert "model_context((module, variables))" in ctx.summary()
    assert {ctx.source(p.path) for p in ctx.params} == {"name"}


SCHEMES = {
    "gpt2": modern.gpt2,
    "megatron": modern.megatron,
    "small_init": modern.small_init,
    "wang": modern.wang,
    "u_mup": modern.u_mup,
    "modded_nanogpt": modern.modded_nanogpt,
    **{
        f"olmo_{fn}": (lambda c, fn=fn: modern.olmo(c, init_fn=fn, generation="olmo1"))
        for fn in ("normal", "mitchell", "full_megatron")
    },
}


def promised(ctx, rules) -> list:
    """Per parameter in declaration order: the promised std (fans="semantic"), or None."""
    return promised_stds(ctx, rules)


def test_nnx_every_scheme_places_every_parameter_and_blind_copy_agrees():
    """Through model_context(example_input=...): each scheme gives every parameter of the nnx GPT
    a rule (the speedrun names the position table it has none for), and the name-blind copy gets
    the same std for every parameter."""
    named = model_context(nnx_gpt(MEANINGFUL), example_input=TOKENS)
    blind = model_context(nnx_gpt(BLIND), example_input=TOKENS)
    assert named.depth == blind.depth == L
    assert all(named.source(p.path) == "structure" for p in named.params)
    for scheme, make in SCHEMES.items():
        if scheme == "modded_nanogpt":
            with pytest.raises(ContextError, match=r"wpe/embedding .*site position from structure"):
                make(named)
            with pytest.raises(ContextError, match=r"m1/embedding .*site position from structure"):
                make(blind)
            continue
        stds = promised(named, make(named))
        assert None not in stds, scheme
        assert promised(blind, make(blind)) == stds, scheme


def test_nnx_without_an_example_input_says_what_to_pass():
    """An nnx module whose first layer says nothing of its input (a Conv: no spatial size):
    model_context falls back to names and says why, naming the model and the argument to pass."""

    class Stem(nnx.Module):
        def __init__(self, rngs):
            self.m0 = nnx.Conv(3, 8, kernel_size=(3, 3), rngs=rngs)
            self.m1 = nnx.Linear(8, 4, rngs=rngs)

        def __call__(self, x):
            return self.m1(self.m0(x).mean(axis=(1, 2)))

    ctx = model_context(Stem(nnx.Rngs(0)))
    assert re.search(r"no example input could be derived for the [\w.<>]*Stem", ctx.summary())
    assert "model_context(model, example_input=...)" in ctx.summary()
    assert {ctx.source(p.path) for p in ctx.params} == {"name"}
