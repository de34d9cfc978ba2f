"""Fixup for residual convolutional networks."""

from __future__ import annotations

from typing import Any

from polyinit import schemes
from polyinit.context import ContextError, ModelContext
from polyinit.modern import _args
from polyinit.modern._base import _context, _RuleSet
from polyinit.rules import Rules
from polyinit.spec import VarianceScaling


def fixup(model: Any, *, seed: int = 0, **context: Any) -> Rules:
    """Fixup (Zhang et al. 2019; hongyi-zhang/Fixup): in each of the L residual branches of m
    convolutions, every conv but the last He-normal with **fan_out**, times L^(-1/(2m-2)); the
    last conv of each branch 0; shortcut (downsample) convs He fan_out unscaled; the final dense
    layer's weight and bias 0. Fixup's scalar biases and multiplier are the model's.

    A branch is the numbered block a conv sits in (torchvision ``layer1.0.conv2``, Keras
    ``conv2_block1_2_conv``); shortcut convs are named ``downsample``/``shortcut``/``_0_conv``.
    """
    seed = _args.seed("fixup", seed)
    ctx = _context("fixup", model, context)
    branches = _conv_branches(ctx)
    if not branches:
        raise ContextError("fixup: found no residual branches of convolutions in this model")
    depth = len(branches)
    he_out = schemes.he_normal(mode="fan_out")
    out = _RuleSet(ctx, "fixup")
    for convs, shortcut in branches.values():
        m = len(convs)
        if m < 2:
            raise ContextError(f"fixup: a branch has {m} convolution ({convs}); Fixup needs m >= 2")
        scale = depth ** (-1.0 / (2 * m - 2))
        out.add(convs[-1:], schemes.zeros(), "last conv of a branch (zero)")
        # He fan_out times a multiplier s is variance 2 s^2 / fan_out.
        out.add(
            convs[:-1],
            VarianceScaling(scale=2 * scale**2, mode="fan_out", distribution="normal"),
            f"branch convs x L^(-1/(2m-2)), m={m}",
        )
        out.add(shortcut, he_out, "shortcut convs")
    dense = [p for p in ctx.params if p.kind == "dense"]
    if dense:
        final = max(p.layer for p in dense)
        out.add([p.path for p in dense if p.layer == final], schemes.zeros(), "final dense (zero)")
    out.rest(None)
    return out.rules(seed)


def _conv_branches(ctx: ModelContext) -> dict:
    """block key -> ([branch conv weight paths in order], [shortcut conv weight paths])."""
    import re

    branches: dict = {}
    for p in ctx.params:
        if p.kind != "conv" or p.role != "weight":
            continue
        keras = re.search(r"(conv\d+_block\d+)_(\d+)_conv", p.path)
        if keras:
            key, shortcut = keras.group(1), keras.group(2) == "0"
        else:
            tokens = [t for t in re.split(r"[./]", p.path) if t]
            numbered = [i for i, t in enumerate(tokens[:-1]) if t.isdigit()]
            if not numbered:
                continue
            key = "/".join(tokens[: numbered[-1] + 1])
            shortcut = any(t in ("downsample", "shortcut", "proj") for t in tokens[numbered[-1] + 1 :])
        convs, shortcuts = branches.setdefault(key, ([], []))
        (shortcuts if shortcut else convs).append(p.path)
    return {k: v for k, v in branches.items() if v[0]}
