"""No cold start: the fused kernel is compiled once per machine into the user's cache directory,
never next to the package (a read-only install), and later processes load it without numba: as a
shared library with ctypes alone where the machine has a linker (no llvmlite either), else as
object code through llvmlite; leaves under ``fused.MIN_SIZE`` elements load nothing at all.

Fresh processes run a read-only copy of the package (files 0444, folders 0555, no bytecode
written) with ``POLYINIT_CACHE`` set to a temporary folder. What is observed is where files
appear and ``polyinit.portable._native.LOADED`` ("compiled" or "cache"), never a time. A damaged cache
file is compiled again, never handed to the linker (which would crash the process)."""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import polyinit
from polyinit.portable import _native, fused

pytest.importorskip("numba", reason="the fused kernels need numba (pip install polyinit[fast])")
if not fused.available():
    pytest.skip(
        f"fused kernels unavailable: {fused._unavailable or 'POLYINIT_PORTABLE_FUSED=0'}", allow_module_level=True
    )

CHILD = """
import hashlib, json, sys
import polyinit as pi
from polyinit.backends.numpy import draw_portable
from polyinit.portable import _native
out = draw_portable(pi.resolve(pi.Normal(std=0.02), ({rows}, 512)), 3, "embed.weight")
print(json.dumps({{"loaded": _native.LOADED, "numba": "numba" in sys.modules, "llvmlite": "llvmlite" in sys.modules,
                  "package": pi.__file__, "digest": hashlib.sha256(out.tobytes()).hexdigest()}}))
"""


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def read_only_install(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    package = root / "polyinit"
    shutil.copytree(Path(polyinit.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [package, *package.rglob("*")]:
        path.chmod(
            stat.S_IRUSR
            | stat.S_IRGRP
            | stat.S_IROTH
            | (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH if path.is_dir() else 0)
        )
    yield root
    for path in [package, *package.rglob("*")]:
        path.chmod(stat.S_IRWXU)


def _run(root: Path, cache: Path, rows: int, path: str | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(root), "POLYINIT_CACHE": str(cache), "PYTHONDONTWRITEBYTECODE": "1"}
    if path is not None:
        env["PATH"] = path
    env.pop("POLYINIT_PORTABLE_FUSED", None)
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(rows=rows)], env=env, cwd=root, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_read_only_install_compiles_once_into_the_user_cache(read_only_install, tmp_path):
    """The cache starts with a damaged library under the kernel's name (the same sources and CPU
    here as in the children) and its checksum: it is compiled again and replaced, not loaded;
    the next process opens it with ctypes alone."""
    if _native._linker() is None or _native._shared_name() is None:
        pytest.skip("no linker (cc, gcc, clang, ld) or no /proc/cpuinfo: the object-code test covers this machine")
    cache, package = tmp_path / "cache", read_only_install / "polyinit"
    cache.mkdir()
    damaged = cache / _native._shared_name()
    damaged.write_bytes(b"not a library")
    damaged.with_name(damaged.name + ".sha256").write_text(hashlib.sha256(b"a library").hexdigest())
    before = _files(package)
    first = _run(read_only_install, cache, 512)
    assert first["package"].startswith(str(package))
    assert first["loaded"] == "compiled" and list(cache.glob("fused-*.so")) == [damaged]
    assert damaged.read_bytes().startswith(b"\x7fELF")
    second = _run(read_only_install, cache, 512)
    assert second["loaded"] == "cache" and not second["numba"] and not second["llvmlite"]  # ctypes alone
    assert second["digest"] == first["digest"]
    assert _files(package) == before  # nothing written next to the package (numba's cache would be)


def test_without_a_linker_the_object_code_is_cached(read_only_install, tmp_path):
    """With no linker on the PATH the object code is kept, damaged first as above, and loaded by
    llvmlite without numba; the values are those of the shared library's path."""
    cache = tmp_path / "cache"
    cache.mkdir()
    damaged = cache / _native._object_name(*_native._llvm())
    damaged.write_bytes(b"not object code")
    first = _run(read_only_install, cache, 512, path=str(tmp_path / "no-tools"))
    assert first["loaded"] == "compiled" and list(cache.glob("fused-*.o")) == [damaged]
    assert damaged.read_bytes().startswith(_native._MAGIC) and not list(cache.glob("fused-*.so"))
    second = _run(read_only_install, cache, 512, path=str(tmp_path / "no-tools"))
    assert second["loaded"] == "cache" and not second["numba"] and second["llvmlite"]
    assert second["digest"] == first["digest"]
    from polyinit.backends.numpy import draw_portable  # the same values as in this process

    here = draw_portable(polyinit.resolve(polyinit.Normal(std=0.02), (512, 512)), 3, "embed.weight")
    assert hashlib.sha256(here.tobytes()).hexdigest() == first["digest"]


def test_a_small_leaf_loads_no_kernel(read_only_install, tmp_path):
    rows = fused.MIN_SIZE // 512 - 1
    small = _run(read_only_install, tmp_path / "cache", rows)
    assert small == {**small, "loaded": None, "numba": False, "llvmlite": False}
    assert not (tmp_path / "cache").exists()
    from polyinit.backends.numpy import draw_portable  # the reference ops give the same bits here

    here = draw_portable(polyinit.resolve(polyinit.Normal(std=0.02), (rows, 512)), 3, "embed.weight")
    assert hashlib.sha256(here.tobytes()).hexdigest() == small["digest"]


def test_cache_directory_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("POLYINIT_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _native.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("POLYINIT_CACHE")
    assert _native.cache_dir() == tmp_path / "xdg" / "polyinit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _native.cache_dir() == tmp_path / "home" / ".cache" / "polyinit"


def test_an_unwritable_cache_is_not_an_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_bytes(b"")
    _native._store(blocker / "fused-x.o", b"code")  # a folder under a file cannot be made
    assert blocker.read_bytes() == b"" and not list(tmp_path.glob(".tmp-*"))


def test_storing_a_kernel_prunes_all_but_the_newest_other_versions(tmp_path):
    """The cache keeps the new kernel and the KEEP_OTHERS newest other versions (with their
    checksums); older kernels go, and files that are not kernels are never touched."""
    old = [tmp_path / f"fused-{i:024d}.{'so' if i % 2 else 'o'}" for i in range(6)]
    for age, path in enumerate(old):  # fused-0 is the oldest
        path.write_bytes(b"x")
        path.with_name(path.name + ".sha256").write_text("0")
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    stranger = tmp_path / "notes.txt"
    stranger.write_text("mine")
    new = tmp_path / "fused-new.so"
    new.write_bytes(b"y")
    _native.prune(new)
    kept = sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".so", ".o"))
    newest = sorted(p.name for p in old[-_native.KEEP_OTHERS :])
    assert kept == sorted(newest + [new.name])
    assert all(not p.with_name(p.name + ".sha256").exists() for p in old[: -_native.KEEP_OTHERS])
    assert all(p.with_name(p.name + ".sha256").exists() for p in old[-_native.KEEP_OTHERS :])
    assert stranger.read_text() == "mine"
