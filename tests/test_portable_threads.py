"""Multi-threaded fused draws (``polyinit.portable.fused``) give the same bits whatever the
thread count: 1, 2 and 7 threads, on spans that start and stop on odd elements, for every
distribution, and the same as the reference ops; the thread count follows ``POLYINIT_NUM_THREADS``
and torch's own ``torch.get_num_threads()``."""

import numpy as np
import pytest

import polyinit as pi
from polyinit.portable import evaluate, fused, stream_key
from polyinit.portable.xp_numpy import Ops as NumpyOps

pytest.importorskip("numba", reason="the fused kernels need numba (pip install polyinit[fast])")
if not fused.available():
    pytest.skip(
        f"fused kernels unavailable: {fused._unavailable or 'POLYINIT_PORTABLE_FUSED=0'}", allow_module_level=True
    )

LEAVES = {
    "uniform": pi.Uniform(low=-0.3, high=0.7),
    "normal": pi.Normal(mean=0.1, std=2.0),
    "truncated_mirrored": pi.TruncatedNormal(std=0.5, low=0.5, high=4.0, bounds="std"),
}
START, SIZE = 12_345, 7 * fused.THREAD_GRAIN + 4_097  # odd start and length: every span edge is odd somewhere


@pytest.fixture
def spans_used(monkeypatch):
    """How many threads each fill used (the executor is asked for one fewer: the caller takes a span)."""
    used = []
    original = fused._executor

    def recording(workers):
        used.append(workers + 1)
        return original(workers)

    monkeypatch.setattr(fused, "_executor", recording)
    return used


def _bits(a):
    return np.ascontiguousarray(a).view(np.uint32)


@pytest.mark.parametrize("name", LEAVES)
def test_one_two_and_seven_threads_give_the_same_bits(name, monkeypatch, spans_used):
    leaf = pi.resolve(LEAVES[name], (4,)).root
    key = stream_key(5, "blocks.3.mlp.weight")
    draws = {}
    for count in (1, 2, 7):
        monkeypatch.setenv("POLYINIT_NUM_THREADS", str(count))
        draws[count] = fused.values(leaf, key, 2, START, START + SIZE)
    assert spans_used == [2, 7]  # one thread needs no pool; 2 and 7 threads ran as 2 and 7 spans
    assert np.array_equal(_bits(draws[1]), _bits(draws[2])) and np.array_equal(_bits(draws[1]), _bits(draws[7]))
    ops = NumpyOps(use_fused=False)
    reference = evaluate.leaf_values(ops, leaf, evaluate.words_range(ops, key, 2, START, START + SIZE))
    assert np.array_equal(_bits(draws[7]), _bits(reference))


@pytest.mark.parametrize("name", LEAVES)
def test_many_small_chunks_taken_in_turn_give_the_same_bits(name, monkeypatch):
    """A fill is cut into ``CHUNKS_PER_THREAD`` chunks per thread, which the threads take in
    turn: with a small grain here, 3 threads share 24 chunks, and which thread writes which
    chunk varies from run to run; the bits must not."""
    leaf = pi.resolve(LEAVES[name], (4,)).root
    key = stream_key(11, "layers.0.attention.wq.weight")
    monkeypatch.setattr(fused, "THREAD_GRAIN", 4 * 2048)
    chunks = []
    original = fused._spans

    def recording(start, size, count):
        chunks.append(count)
        return original(start, size, count)

    monkeypatch.setattr(fused, "_spans", recording)
    monkeypatch.setenv("POLYINIT_NUM_THREADS", "3")
    draws = [fused.values(leaf, key, 0, START, START + SIZE) for _ in range(3)]
    assert chunks == [3 * fused.CHUNKS_PER_THREAD] * 3
    ops = NumpyOps(use_fused=False)
    reference = evaluate.leaf_values(ops, leaf, evaluate.words_range(ops, key, 0, START, START + SIZE))
    assert all(np.array_equal(_bits(draw), _bits(reference)) for draw in draws)


@pytest.mark.parametrize("name", LEAVES)
@pytest.mark.parametrize("misalign", [0, 3])
def test_non_temporal_stores_write_the_same_bits(name, misalign, monkeypatch):
    """Outputs of ``STREAM_BYTES`` or more are written with non-temporal stores past an aligned
    head: here every fill streams, into an output that starts on and off a 64-byte boundary."""
    leaf = pi.resolve(LEAVES[name], (4,)).root
    key = stream_key(7, "h.0.attn.c_attn.weight")
    monkeypatch.setattr(fused, "STREAM_BYTES", 0)
    monkeypatch.setenv("POLYINIT_NUM_THREADS", "2")
    backing = np.full(SIZE + 64, np.nan, np.float32)
    skip = (-backing.ctypes.data // 4) % 16 + misalign  # elements to a 64-byte boundary, then misalign more
    out = backing[skip : skip + SIZE]
    fused.fill(leaf, key, 1, START, out, positive_zero=False)
    ops = NumpyOps(use_fused=False)
    reference = evaluate.leaf_values(ops, leaf, evaluate.words_range(ops, key, 1, START, START + SIZE))
    assert np.array_equal(_bits(out), _bits(reference))
    assert np.isnan(backing[:skip]).all() and np.isnan(backing[skip + SIZE :]).all()  # nothing outside


def test_a_whole_draw_is_the_same_on_one_and_on_every_thread(monkeypatch):
    plan = pi.resolve(pi.TruncatedNormal(std=0.02, low=-2.0, high=2.0, bounds="std"), (1000, 1003))
    monkeypatch.setenv("POLYINIT_NUM_THREADS", "1")
    one = evaluate.draw(NumpyOps(), plan, 0, "w")
    monkeypatch.delenv("POLYINIT_NUM_THREADS")
    assert np.array_equal(_bits(one), _bits(evaluate.draw(NumpyOps(), plan, 0, "w")))


def test_spans_cover_the_fill_and_cut_at_cipher_blocks():
    step = 2 * 1024
    for start, size, count in [(0, 10**6, 2), (12_345, SIZE, 7), (1, 3 * step, 5), (7, 5, 3)]:
        spans = fused._spans(start, size, count)
        assert spans[0][0] == 0 and sum(length for _, length in spans) == size
        assert all(a + la == b for (a, la), (b, _) in zip(spans, spans[1:]))
        assert all((start + offset) % step == 0 for offset, _ in spans[1:])
        assert len(spans) <= count


def test_thread_count_follows_the_environment_and_the_framework(monkeypatch):
    import os

    monkeypatch.delenv("POLYINIT_NUM_THREADS", raising=False)
    assert fused.threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("POLYINIT_NUM_THREADS", "3")
    assert fused.threads() == 3 and fused.threads(limit=2) == 2
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("POLYINIT_NUM_THREADS", bad)
        with pytest.raises(pi.BackendError, match="POLYINIT_NUM_THREADS"):
            fused.threads()


def test_torch_draws_use_at_most_torch_num_threads(monkeypatch, spans_used):
    torch = pytest.importorskip("torch")

    from polyinit.backends.torch import draw_portable

    monkeypatch.setenv("POLYINIT_NUM_THREADS", "4")
    plan = pi.resolve(pi.Normal(std=1.0), (1024, 1024))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = draw_portable(plan, 0, "w", out=torch.empty(1024, 1024))
        torch.set_num_threads(3)
        several = draw_portable(plan, 0, "w", out=torch.empty(1024, 1024))
    finally:
        torch.set_num_threads(before)
    assert spans_used == [3]
    assert torch.equal(single.view(torch.int32), several.view(torch.int32))


@pytest.mark.skipif(not hasattr(__import__("mmap"), "MAP_ANONYMOUS"), reason="needs anonymous mmap")
@pytest.mark.parametrize("read_first", [True, False], ids=["read_before_written", "untouched"])
def test_a_fill_into_fresh_memory_gives_the_same_bits(monkeypatch, read_first):
    """Memory read before it was ever written is the kernel's zero page: the fill makes it the
    process's own first; memory never touched is mapped chunk by chunk by the threads
    (``polyinit._pages``, on Linux). Either way the bits are those written anywhere else."""
    import mmap

    from polyinit import _pages

    leaf = pi.resolve(LEAVES["normal"], (4,)).root
    key = stream_key(3, "model.layers.0.mlp.down_proj.weight")
    monkeypatch.setenv("POLYINIT_NUM_THREADS", "2")
    area = mmap.mmap(-1, 4 * SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    out = np.frombuffer(area, np.float32)
    if read_first:
        assert float(out.sum()) == 0.0  # the read maps the zero page
    fused.fill(leaf, key, 0, START, out, positive_zero=False)
    ops = NumpyOps(use_fused=False)
    reference = evaluate.leaf_values(ops, leaf, evaluate.words_range(ops, key, 0, START, START + SIZE))
    assert np.array_equal(_bits(out), _bits(reference))
    if _pages._pagemap() is not None:
        assert _pages.page_state(out.ctypes.data + out.nbytes // 2) == "own"
    del out
    area.close()
