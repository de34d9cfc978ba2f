"""The fused CPU kernels (``polyinit.portable.fused``, numba) give the reference path's bits.

The reference path evaluates ``polyinit.portable.floats`` over each framework's own ops; the
fused kernels are a second, one-pass implementation of the same float32 steps. Both must give
the same float32 bit patterns (a -0 against a +0 counts as a difference), on whole draws, on spans
that start and stop on odd elements, and on hand-picked words that a draw of modest size would
never reach (the far tails, both ends of each interval)."""

import numpy as np
import pytest

import polyinit as pi
from polyinit.portable import evaluate, floats, fused, stream_key
from polyinit.portable.xp_numpy import Ops as NumpyOps

pytest.importorskip("numba", reason="the fused kernels need numba (pip install polyinit[fast])")
if not fused.available():  # numba imports but does not work with this numpy, or is switched off
    pytest.skip(
        f"fused kernels unavailable: {fused._unavailable or 'POLYINIT_PORTABLE_FUSED=0'}", allow_module_level=True
    )

from test_portable import _plans, _same_bits

LEAVES = {
    "uniform": pi.Uniform(low=-0.3, high=0.7),
    "uniform_unit": pi.Uniform(low=0.0, high=1.0),  # neither shift nor scale applied
    "uniform_negative_zero": pi.Uniform(low=-1.0, high=1.0),  # -1 + 2 * 0.5 = 0 exactly
    "normal": pi.Normal(mean=0.1, std=2.0),
    "normal_standard": pi.Normal(std=1.0),  # +-0 possible, kept as the reference keeps it
    "truncated": pi.TruncatedNormal(std=1.0, low=-2.0, high=2.0, bounds="std"),
    "truncated_mirrored": pi.TruncatedNormal(std=0.5, low=0.5, high=4.0, bounds="std"),
    "truncated_far_tail": pi.TruncatedNormal(std=1.0, low=-4.5, high=-3.5, bounds="std"),
}


def _edge_words() -> np.ndarray:
    """Words at every boundary the float mapping has: 0, 2^31 -+ 1, 2^32 - 1, the top 24 bits'
    ends, the normal's central/tail switch (q = 0.075) and its t = 5 switch, plus 2^20 spread
    evenly over all 2^32 words and 2^16 dense in the far tail (q < 2^-20)."""
    edges = [0, 1, 255, 256, 2**31 - 1, 2**31, 2**31 + 1, 2**32 - 256, 2**32 - 1]
    tail_switch = int(0.075 * 2**32)  # (w & 0x7FFFFFFF) + 1/2 = q 2^32
    far_switch = int(np.exp(-25.0) * 2**32)  # t = sqrt(-log q) = 5: word 59
    for w in (tail_switch, far_switch):
        near = [max(w + d, 0) for d in range(-300, 301)]
        edges += near + [v | 2**31 for v in near]
    spread = np.linspace(0, 2**32 - 1, 2**20).astype(np.uint64)
    far = np.arange(2**16, dtype=np.uint64) * 16  # (w & 0x7FFFFFFF) < 2^20
    return np.concatenate([np.array(edges, np.uint64), spread, far, far + 2**31]).astype(np.uint32)


@pytest.mark.parametrize("name", LEAVES)
def test_words_to_floats_match_the_reference_on_edge_words(name):
    leaf = pi.resolve(LEAVES[name], (4,)).root
    words = _edge_words()
    reference = evaluate.leaf_values(NumpyOps(use_fused=False), leaf, words.copy())
    assert _same_bits(fused.map_words(leaf, words), reference) == 0


@pytest.mark.parametrize("name", LEAVES)
@pytest.mark.parametrize("start,stop", [(0, 10**6), (1, 4098), (2047, 2050), (5, 6), (2**31 - 3, 2**31 + 2048)])
def test_spans_match_the_reference(name, start, stop):
    plan = pi.resolve(LEAVES[name], (4,))
    key = stream_key(11, "layer.weight")
    reference = evaluate.leaf_values(
        NumpyOps(use_fused=False), plan.root, evaluate.words_range(NumpyOps(use_fused=False), key, 3, start, stop)
    )
    assert _same_bits(fused.values(plan.root, key, 3, start, stop), reference) == 0


def test_whole_draws_match_the_reference_path_in_numpy():
    """Every distribution of the suite (10^6 values each, expressions, blocks, masks)."""
    for name, plan in _plans().items():
        reference = evaluate.draw(NumpyOps(use_fused=False), plan, 2024, f"model.{name}")
        assert _same_bits(evaluate.draw(NumpyOps(), plan, 2024, f"model.{name}"), reference) == 0, name


def test_whole_draws_match_the_reference_path_in_torch():
    """The same in torch, fused (through a numpy view of the tensor) and through torch's own ops."""
    torch = pytest.importorskip("torch")

    from polyinit.portable.xp_torch import Ops as TorchOps

    for name, plan in _plans().items():
        reference = evaluate.draw(NumpyOps(use_fused=False), plan, 2024, f"model.{name}")
        out = torch.empty(plan.shape)
        assert _same_bits(evaluate.draw(TorchOps(), plan, 2024, f"model.{name}", out).numpy(), reference) == 0, name
        unfused = evaluate.draw(TorchOps(use_fused=False), plan, 2024, f"model.{name}").numpy()
        assert _same_bits(unfused, reference) == 0, name


def test_the_fused_path_is_the_one_taken():
    """The speed claims rest on the fused kernels actually running: a draw of fused.MIN_SIZE
    elements or more through numpy and torch ops must call them (and the reference ops must not,
    nor a draw of a smaller leaf, which must not have to load them)."""
    import torch

    from polyinit.portable.xp_torch import Ops as TorchOps

    calls = []
    original = fused.fill
    side = int(fused.MIN_SIZE**0.5)
    plan, small = pi.resolve(pi.Normal(std=1.0), (side, side)), pi.resolve(pi.Normal(std=1.0), (side, side - 1))
    try:
        fused.fill = lambda *a, **k: calls.append(1) or original(*a, **k)
        evaluate.draw(NumpyOps(), plan, 0, "w")
        evaluate.draw(TorchOps(), plan, 0, "w", torch.empty(side, side))
        assert len(calls) == 2
        evaluate.draw(NumpyOps(use_fused=False), plan, 0, "w")
        evaluate.draw(NumpyOps(), small, 0, "w")
        evaluate.draw(TorchOps(), small, 0, "w", torch.empty(side, side - 1))
        assert len(calls) == 2
    finally:
        fused.fill = original


def test_torch_fill_bumps_the_version_counter_and_keeps_autograd_honest():
    torch = pytest.importorskip("torch")

    from polyinit.backends.torch import draw_portable

    weight = torch.nn.Parameter(torch.zeros(512, 128))  # fused.MIN_SIZE elements: the fused path
    before = weight._version
    draw_portable(pi.resolve(pi.Normal(std=1.0), (512, 128)), 0, "w", out=weight)
    assert weight._version > before and weight.abs().sum() > 0


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("POLYINIT_PORTABLE_FUSED", "0")
    assert not fused.available() and not NumpyOps().fused
    monkeypatch.delenv("POLYINIT_PORTABLE_FUSED")
    assert fused.available() and NumpyOps().fused


def test_docstring_example():
    import doctest

    result = doctest.testmod(fused, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_logarithm_branch_free_select_matches_on_both_sides_of_sqrt2():
    """floats.log halves the mantissa above sqrt(2): a select in the kernel, a where in the ops."""
    x = np.float32(np.sqrt(2.0))
    q = np.array([np.nextafter(x, np.float32(0)), x, np.nextafter(x, np.float32(2))], np.float32) / np.float32(32)
    leaf = pi.resolve(pi.Normal(std=1.0), (3,)).root
    words = (q.astype(np.float64) * 2**32 - 0.5).astype(np.uint32)  # q(word) near those points
    reference = evaluate.leaf_values(NumpyOps(use_fused=False), leaf, words.copy())
    assert _same_bits(fused.map_words(leaf, words), reference) == 0
    assert floats.f32(1.0) == 1.0  # floats' constants are plain float32 numbers
