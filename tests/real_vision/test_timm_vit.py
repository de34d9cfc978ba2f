"""timm's VisionTransformer (issue 20, point 5) built from a config (``pretrained=False``, never
downloaded), and its name-blind copy (every submodule renamed, ``test_structure_torch.name_blind``):
sites, blocks and depth from one traced forward pass on the input ``model_context`` derives from
timm's ``pretrained_cfg``, equal to the architecture (timm's ``vision_transformer.py``); and
timm's own ``init_weights`` modes ('' = timm's, 'jax', 'jax_nlhb', 'moco'), per parameter,
against polyinit rules written on those sites (no modern scheme is timm's ViT init; the rules
are what a user writes with the sites).

Each of timm's parameters must follow the law polyinit promises for the matching parameter of
the name-blind copy (``reference_tables.check_param``: std within z <= 5, two-sided false-alarm
probability 5.7e-7 per parameter, fixed seeds; every value inside the support; zeros and ones
exact), so names decide nothing.
"""

from __future__ import annotations

import math
import re

import pytest
from vision_helpers import import_or_skip, promised_law

torch = import_or_skip("torch")
timm = import_or_skip("timm")

from reference_tables import check_param, torch_values
from test_structure_torch import SCHEMES, name_blind, promised

import polyinit
from polyinit.context import ContextError, Site, model_context
from polyinit.plan import resolve
from polyinit.rules import Rules, apply
from polyinit.selectors import predicate
from polyinit.spec import Blocks, Normal, TruncatedNormal, Uniform

D, DEPTH, HEADS, CLASSES = 64, 3, 4, 10


def vit(weight_init: str = "", **size) -> torch.nn.Module:
    """vit_small_patch16_224's architecture at a small width and depth (timm's registry entry,
    ``pretrained=False``); ``size``: img_size/patch_size overrides."""
    torch.manual_seed(0)
    return timm.create_model(
        "vit_small_patch16_224",
        pretrained=False,
        embed_dim=D,
        depth=DEPTH,
        num_heads=HEADS,
        num_classes=CLASSES,
        weight_init=weight_init,
        **size,
    )


# Each parameter's site in timm's VisionTransformer: the patch embedding (a conv reading the
# pixels) and the class token start the stream, pos_embed is added to it, Block = pre-norm
# attention (packed qkv, proj) + MLP (fc1, fc2), the final norm, then the head reads the class
# token's features: the readout.
ARCHITECTURE = [
    (r"^cls_token$", "embedding"),
    (r"^patch_embed\.proj\.", "embedding"),
    (r"^pos_embed$", "position"),
    (r"norm", "norm"),
    (r"attn\.qkv\.", "qkv"),
    (r"attn\.proj\.", "attn_out"),
    (r"mlp\.fc1\.", "mlp_in"),
    (r"mlp\.fc2\.", "mlp_out"),
    (r"^head\.", "readout"),
]


def expected_site(path: str) -> Site:
    site = next(s for pattern, s in ARCHITECTURE if re.search(pattern, path))
    block = re.match(r"blocks\.(\d+)\.", path)
    return Site(site, int(block.group(1)) if block else None, "")


def blind_copy(model):
    """``name_blind`` renames submodules; the root's own parameters (cls_token, pos_embed) are
    renamed here too (p0, p1, ...), the forward pass still finding them as attributes."""
    blind = name_blind(model)
    own = dict(blind._parameters)
    for key, value in own.items():
        object.__setattr__(blind, key, value)
    object.__setattr__(blind, "_parameters", {f"p{i}": value for i, value in enumerate(own.values())})
    return blind


@pytest.fixture(scope="module")
def pair():
    model = vit()
    blind = blind_copy(model)
    assert not set(dict(model.named_parameters())) & set(dict(blind.named_parameters()))
    return model, model_context(model), blind, model_context(blind)


def test_sites_blocks_depth_from_structure_match_the_architecture(pair):
    _, ctx, _, _ = pair
    wrong = {
        p.path: (ctx.sites[p.path], expected_site(p.path))
        for p in ctx.params
        if ctx.sites[p.path] != expected_site(p.path)
    }
    assert not wrong, wrong
    assert all(ctx.source(p.path) == "structure" for p in ctx.params), ctx.summary()
    assert dict(ctx.depths) == {"": DEPTH} and ctx.width == D
    assert [part.name for part in ctx.parts("blocks.0.attn.qkv.weight")] == ["q", "k", "v"]


def test_name_blind_copy_gives_the_same_sites_blocks_and_depth(pair):
    _, ctx, _, blind = pair
    assert [ctx.sites[p.path] for p in ctx.params] == [blind.sites[p.path] for p in blind.params]
    assert dict(ctx.depths) == dict(blind.depths) and ctx.width == blind.width
    assert all(blind.source(p.path) == "structure" for p in blind.params), blind.summary()


@pytest.mark.parametrize("scheme", sorted(set(SCHEMES) - {"t5"}))
def test_every_scheme_places_every_parameter_or_names_the_missing(pair, scheme):
    """With no sites=/depth=: each modern scheme gives every parameter of the ViT a rule, or
    raises a ContextError naming what it cannot place; the name-blind copy gets the same stds
    (t5 needs T5's d_kv)."""
    _, ctx, _, blind = pair
    try:
        rules = SCHEMES[scheme](ctx)
    except ContextError as error:
        assert "cannot place" in str(error) or "found no parameter" in str(error), error
        with pytest.raises(ContextError):
            SCHEMES[scheme](blind)
        return
    stds = promised(ctx, rules)
    missing = [p.path for p, s in zip(ctx.params, stds) if s is None]
    assert not missing, f"{scheme} left {missing} at the framework's default"
    assert promised(blind, SCHEMES[scheme](blind)) == stds


def test_example_input_comes_from_the_model_at_the_size_it_was_built_for():
    """pretrained_cfg says (3, 224, 224); a model built with img_size=32 gets 32x32 pixels (224
    would not run through its patch embedding)."""
    model = vit(img_size=32, patch_size=8)
    assert model.pretrained_cfg["input_size"] == (3, 224, 224)
    ctx = model_context(model)
    assert dict(ctx.depths) == {"": DEPTH}
    assert ctx.site("head.weight") == Site("readout", None, "")
    assert ctx.site("patch_embed.proj.weight") == Site("embedding", None, "")


def timm_specs(ctx, mode: str) -> dict:
    """path -> polyinit spec, by site and role only, written from timm 1.0.29's
    ``VisionTransformer.init_weights(mode)``: pos_embed trunc_normal_(std=.02) (absolute +-2),
    cls_token normal_(std=1e-6); then per module ``init_weights_vit_timm`` ('': every Linear
    trunc_normal_(std=.02), bias 0; others reset_parameters: the patch conv keeps torch's
    default, norms 1, 0), ``init_weights_vit_jax`` ('jax', 'jax_nlhb': head weight 0 and bias
    0 or -log(classes); other Linear xavier_uniform_, bias N(0, 1e-6) in the MLP and 0
    elsewhere; the conv lecun_normal_, truncated at +-2 sigma with the std kept, bias 0) or
    ``init_weights_vit_moco`` (Linear xavier_uniform_ with q, k, v each its own square matrix
    inside qkv, biases 0; conv default)."""
    conv = next(p for p in ctx.params if ctx.sites[p.path].site == "embedding" and len(p.shape) == 4)
    conv_bias = 1 / math.sqrt(math.prod(conv.shape[1:]))  # torch Conv2d's default bias U(+-1/sqrt(fan_in))
    trunc02 = TruncatedNormal(std=0.02, low=-2.0, high=2.0, bounds="absolute")
    specs = {}
    for p in ctx.params:
        site, role = ctx.sites[p.path].site, ctx.role(p)
        if site == "norm":
            spec = polyinit.ones() if role == "scale" else polyinit.zeros()
        elif site == "position":
            spec = trunc02
        elif site == "embedding" and len(p.shape) == 3:  # the class token, (1, 1, d)
            spec = Normal(std=1e-6)
        elif site == "embedding":  # the patch-embedding conv
            if mode.startswith("jax"):
                spec = polyinit.lecun_normal(truncated=True) if role == "weight" else polyinit.zeros()
            else:
                spec = (
                    polyinit.he_uniform(a=math.sqrt(5)) if role == "weight" else Uniform(low=-conv_bias, high=conv_bias)
                )
        elif site == "readout" and mode.startswith("jax"):
            head_bias = -math.log(CLASSES) if mode == "jax_nlhb" else 0.0
            spec = polyinit.zeros() if role == "weight" else polyinit.constant(head_bias)
        elif role == "bias":
            spec = Normal(std=1e-6) if mode.startswith("jax") and site in ("mlp_in", "mlp_out") else polyinit.zeros()
        elif mode == "":
            spec = trunc02
        elif mode == "moco" and site == "qkv":
            spec = Blocks(axis="out", parts=(polyinit.glorot_uniform(),) * 3)
        else:
            spec = polyinit.glorot_uniform()
        specs[p.path] = spec
    return specs


@pytest.mark.parametrize("mode", ["", "jax", "jax_nlhb", "moco"], ids=["timm", "jax", "jax_nlhb", "moco"])
def test_timm_init_modes_follow_polyinit_rules_on_the_name_blind_sites(mode):
    model = vit(weight_init=mode)
    drawn = torch_values(model)  # timm's own init, at construction
    blind = blind_copy(model)
    ctx = model_context(blind)
    specs = timm_specs(ctx, mode)
    rules = Rules(
        [(predicate(lambda p, s=path: p.path == s, path), spec) for path, spec in specs.items()], require_all=True
    )
    paths = [name for name, _ in model.named_parameters()]
    assert len(paths) == len(ctx.params)
    for path, p in zip(paths, ctx.params):
        if mode == "jax_nlhb" and path == "head.bias":
            assert torch.equal(model.head.bias, torch.full((CLASSES,), -math.log(CLASSES)))
            continue
        check_param(path, drawn[path], promised_law(resolve(specs[p.path], p.shape, p.layout).stats))
    # Every parameter of the name-blind copy has its rule. The root's own class token and
    # position table belong to no registered module type: apply says so (and draws them).
    with pytest.warns(UserWarning, match=r"VisionTransformer \(2 parameters\)"):
        apply(blind, rules)
    assert [ctx.sites[p.path] for p in ctx.params] == [expected_site(path) for path in paths]
