"""Fans from shape + layout, recomputed here from the frameworks' documented rules."""

import pytest
from formulas import keras_fans, torch_fans

from polyinit import IN_OUT, OUT_IN, Layout, ShapeError, SpecError, compute_fans, preset

TORCH_SHAPES = [(256, 784), (7, 3), (32, 16, 5), (32, 16, 3, 3), (8, 4, 3, 3, 3), (64, 1, 3, 3), (12, 4, 2, 2)]


@pytest.mark.parametrize("shape", TORCH_SHAPES, ids=str)
def test_out_in_matches_torch(shape):
    fans = compute_fans(shape, OUT_IN)
    assert (fans.fan_in, fans.fan_out) == torch_fans(shape)


@pytest.mark.parametrize("shape", [tuple(reversed(s)) for s in TORCH_SHAPES], ids=str)
def test_in_out_matches_keras(shape):
    fans = compute_fans(shape, IN_OUT)
    assert (fans.fan_in, fans.fan_out) == keras_fans(shape)


def test_same_logical_dense_weight_same_fans_in_both_layouts():
    assert compute_fans((256, 784), OUT_IN) == compute_fans((784, 256), IN_OUT)


def test_attention_kernel_explicit_axes():
    # Keras >= 3.15 MHA query kernel (d_model, heads, head_dim): fan_in = d_model, fan_out = heads*head_dim.
    fans = compute_fans((512, 8, 64), Layout("in out out"))
    assert (fans.fan_in, fans.fan_out) == (512, 8 * 64)
    out = compute_fans((8, 64, 512), Layout("in in out"))
    assert (out.fan_in, out.fan_out) == (8 * 64, 512)


def test_batch_axes_count_in_neither_fan():
    fans = compute_fans((10, 3, 4), Layout("batch in out"))
    assert (fans.fan_in, fans.fan_out) == (3, 4)


def test_transposed_conv_native_and_semantic():
    # torch ConvTranspose2d(in=16, out=32, k=3): weight (16, 32, 3, 3); torch's own fan_in = 32*9.
    shape = (16, 32, 3, 3)
    native = compute_fans(shape, preset("torch", "conv_transpose"))
    semantic = compute_fans(shape, preset("torch", "conv_transpose", native=False))
    assert native.fan_in == torch_fans(shape)[0] == 32 * 9
    assert semantic.fan_in == 16 * 9 and semantic.fan_out == 32 * 9


def test_grouped_and_depthwise_conv():
    # torch Conv2d(16, 32, 3, groups=4): weight (32, 4, 3, 3): fan_in = 4*9.
    assert compute_fans((32, 4, 3, 3), preset("torch", "conv")).fan_in == 36
    # Keras DepthwiseConv2D on 16 channels, multiplier 2: kernel (3, 3, 16, 2).
    keras_native = compute_fans((3, 3, 16, 2), preset("keras", "depthwise_conv"))
    assert (keras_native.fan_in, keras_native.fan_out) == keras_fans((3, 3, 16, 2))
    semantic = compute_fans((3, 3, 16, 2), preset("keras", "depthwise_conv", native=False))
    assert (semantic.fan_in, semantic.fan_out) == (9, 18)


def test_embedding_presets():
    assert compute_fans((1000, 64), preset("keras", "embedding")).fan_in == 1000
    assert compute_fans((1000, 64), preset("torch", "embedding")).fan_in == 64  # torch's own reading


@pytest.mark.parametrize("shape", [(), (5,)], ids=["rank0", "rank1"])
def test_rank_0_and_1_have_no_fans(shape):
    with pytest.raises(ShapeError, match="fans"):
        compute_fans(shape, OUT_IN)


def test_missing_layout_is_named():
    with pytest.raises(ShapeError, match="layout"):
        compute_fans((3, 4), None)


@pytest.mark.parametrize("pattern", ["out in * *", "foo in", "", 3])
def test_bad_layout_patterns(pattern):
    with pytest.raises(SpecError):
        Layout(pattern)


def test_layout_rank_mismatch():
    with pytest.raises(ShapeError, match="rank-2"):
        compute_fans((3, 4), Layout("in out out"))


def test_unknown_preset():
    with pytest.raises(SpecError, match="framework='caffe'"):
        preset("caffe", "dense")
