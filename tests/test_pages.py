"""``polyinit._pages``: memory read before it was written (the kernel's zero page) or shared with
a file is made the process's own before a multi-threaded fill, keeping its values; memory never
touched is reported so that each thread maps its own chunk; memory already written is left alone."""

import mmap
import sys

import numpy as np
import pytest

from polyinit import _pages

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or _pages._pagemap() is None, reason="needs Linux's /proc/self/pagemap"
)
SIZE = 64 * mmap.PAGESIZE


def _anonymous() -> tuple[mmap.mmap, np.ndarray]:
    """Fresh anonymous memory (no transparent huge pages asked for, unlike numpy's allocator)."""
    area = mmap.mmap(-1, SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    return area, np.frombuffer(area, np.float32)


def test_a_read_page_is_shared_until_populated_and_keeps_its_values():
    area, values = _anonymous()
    address = values.ctypes.data
    assert _pages.page_state(address) == "untouched"
    assert float(values.sum()) == 0.0  # the read maps the zero page
    assert _pages.page_state(address) == "shared" and _pages.page_state(address + SIZE - 1) == "shared"
    assert _pages.prepare_for_write(address, values.nbytes) == "shared"
    assert _pages.page_state(address) == "own" and _pages.page_state(address + SIZE - 1) == "own"
    assert not values.any()
    del values
    area.close()


def test_untouched_memory_is_reported_and_populated_on_request_and_written_memory_left_alone():
    area, values = _anonymous()
    address = values.ctypes.data
    assert _pages.prepare_for_write(address, values.nbytes) == "untouched"
    assert _pages.page_state(address) == "untouched"  # reported, not populated: the threads do that
    assert _pages.populate(address, values.nbytes // 2)
    assert _pages.page_state(address) == "own" and _pages.page_state(address + SIZE - 1) == "untouched"
    values[:] = 1.0
    assert _pages.prepare_for_write(address, values.nbytes) == "own"
    assert (values == 1.0).all()
    del values
    area.close()


def test_a_private_file_mapping_is_copied_with_its_contents(tmp_path):
    path = tmp_path / "weights.bin"
    expected = np.arange(SIZE // 4, dtype=np.float32)
    expected.tofile(path)
    with open(path, "r+b") as f:
        area = mmap.mmap(f.fileno(), SIZE, flags=mmap.MAP_PRIVATE)
    values = np.frombuffer(area, np.float32)
    assert float(values[:: mmap.PAGESIZE // 4].sum()) > 0  # read: file pages, shared with the page cache
    assert _pages.page_state(values.ctypes.data) == "shared"
    assert _pages.prepare_for_write(values.ctypes.data, values.nbytes) == "shared"
    assert _pages.page_state(values.ctypes.data) == "own"
    assert np.array_equal(values, expected)
    assert np.array_equal(np.fromfile(path, np.float32), expected)  # the file is untouched
    del values
    area.close()


def test_a_range_without_a_whole_page_is_left_alone():
    area, values = _anonymous()
    float(values.sum())
    assert _pages.prepare_for_write(values.ctypes.data + 8, mmap.PAGESIZE - 16) == "unknown"
    assert _pages.page_state(values.ctypes.data) == "shared"
    del values
    area.close()
