"""Load the fused kernel as native code, compiling it at most once per machine.

numba's own cache does not serve here: it is written next to the package source (so a read-only
install, a system site-packages or a container image, compiles again in every process), and even
a cache hit costs about a second and a half, because numba imports itself, scipy and cffi and
builds its typing and target contexts before it looks at the cache. So the kernel is compiled by
numba once, its optimised LLVM IR turned into object code for this CPU, and the result kept in
the user's cache directory (``cache_dir``):

* where the machine has a linker (``cc``, ``gcc``, ``clang`` or ``ld``), as a shared library,
  which later processes open with ``ctypes`` alone: no numba, no llvmlite (whose import alone
  costs 0.2 s, most of what a torch process paid beyond the draw);
* else as object code that later processes hand to llvmlite's in-process linker (MCJIT).

The file name is a hash of everything the code depends on: the kernel's sources and the CPU
(for the shared library, read from ``/proc/cpuinfo`` without llvmlite: the processor's identity
and feature flags; for the object code, llvmlite's own view of them, and its version). A file is
written under a temporary name and renamed into place, so ranks or processes starting together
never read half a file, and its SHA-256 is checked before loading (inside the object file; in a
``.sha256`` file beside the library): a damaged file is compiled again rather than handed to the
loader, which would crash the process. Where the cache directory cannot be written, the kernel
is compiled in memory instead.

``LOADED`` says where this process's kernel came from: ``"cache"`` (no compilation) or
``"compiled"``; ``None`` before the first use. The tests read it; nothing else should.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENTRY = "polyinit_fused_kernel"  # the C entry point's symbol; _fused_kernels renames it so
BLOCK_PAIRS = 1024  # counter pairs per block: 8 KB of words, encrypted and converted while in L1
SCRATCH_WORDS = 5 * 2 * BLOCK_PAIRS  # the kernel's per-thread scratch: words, q, g, tail q, tail index
# Bits of the kernel's ``flags`` argument (booleans travel as one int through the C ABI).
POSITIVE_ZERO, HAS_SHIFT, HAS_SCALE, MIRROR, MAP_WORDS, STREAM = 1, 2, 4, 8, 16, 32
_SOURCES = ("_fused_kernels.py", "floats.py", "threefry.py", "_native.py")
_F = ctypes.c_float
# out, size, start, words (MAP_WORDS), scratch, k0, k1, leaf, flags, kind, shift, scale, a, b, p_span, p_low
_PROTOTYPE = ctypes.CFUNCTYPE(
    None,
    ctypes.c_void_p,
    ctypes.c_int64,
    ctypes.c_int64,
    ctypes.c_void_p,
    ctypes.c_void_p,
    ctypes.c_uint32,
    ctypes.c_uint32,
    ctypes.c_uint32,
    ctypes.c_int32,
    ctypes.c_int32,
    _F,
    _F,
    _F,
    _F,
    _F,
    _F,
)

LOADED: str | None = None
_lock = threading.Lock()
_kernel: Callable[..., None] | None = None
_engine: Any = None  # an MCJIT engine owns the code it loaded: it lives as long as the process


def cache_dir() -> Path:
    """``$POLYINIT_CACHE``, else ``$XDG_CACHE_HOME/polyinit``, else ``~/.cache/polyinit``: the
    folder ``polyinit.compare_cache.folder`` uses too (not imported from there: that module loads
    json and importlib.metadata, which a draw does not need)."""
    if os.environ.get("POLYINIT_CACHE"):
        return Path(os.environ["POLYINIT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "polyinit"


def _llvm() -> Any:
    import llvmlite
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    return llvm, llvmlite.__version__


def _object_name(llvm: Any, llvmlite_version: str) -> str:
    digest = _sources_digest()
    for part in (
        llvmlite_version,
        llvm.get_default_triple(),
        llvm.get_host_cpu_name(),
        llvm.get_host_cpu_features().flatten(),
    ):
        digest.update(b"\0" + part.encode())
    return f"fused-{digest.hexdigest()[:24]}.o"


def _compile(llvm: Any, shared: bool = False) -> bytes:
    """Object code for this CPU; position-independent for a shared library (``shared``)."""
    from polyinit.portable._fused_kernels import native_ir  # imports numba, compiles the cfunc

    module = llvm.parse_assembly(native_ir())
    module.verify()
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(),
        features=llvm.get_host_cpu_features().flatten(),
        opt=3,
        reloc="pic" if shared else "default",
        jit=not shared,
    )
    return machine.emit_object(module)


def _cpu_identity() -> str | None:
    """The first processor's identity and feature flags from ``/proc/cpuinfo`` (None where there
    is none: then the object code and llvmlite serve)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    first = text.split("\n\n", 1)[0].splitlines()
    wanted = ("vendor_id", "cpu family", "model", "model name", "flags", "Features", "CPU implementer", "CPU part")
    lines = [line for line in first if line.split(":", 1)[0].strip() in wanted]
    return "\n".join(lines) or None


def _sources_digest() -> Any:
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in _SOURCES:
        digest.update((here / name).read_bytes())
    return digest


def _shared_name() -> str | None:
    """The shared library's file name, computed without llvmlite; None where the CPU is unknown."""
    identity = _cpu_identity()
    if identity is None:
        return None
    digest = _sources_digest()
    for part in (platform.machine(), identity):
        digest.update(b"\0" + part.encode())
    return f"fused-{digest.hexdigest()[:24]}.so"


def _linker() -> str | None:
    return next((tool for tool in map(shutil.which, ("cc", "gcc", "clang", "ld")) if tool), None)


def _open_shared(path: Path) -> Callable[..., None] | None:
    """The entry point of the library at ``path``; None where the loader refuses it (then the
    object code serves)."""
    try:
        return _PROTOTYPE((ENTRY, ctypes.CDLL(str(path))))
    except (OSError, AttributeError):
        return None


def _load_shared() -> tuple[Callable[..., None], str] | None:
    """The kernel from the cached shared library, else compiled and linked into one; None where
    there is no CPU identity or no linker (or linking failed)."""
    name = _shared_name()
    if name is None:
        return None
    path = cache_dir() / name
    checksum = path.with_name(name + ".sha256")
    try:
        intact = hashlib.sha256(path.read_bytes()).hexdigest() == checksum.read_text().strip()
    except OSError:
        intact = False
    opened = _open_shared(path) if intact else None
    if opened is not None:
        return opened, "cache"
    linker = _linker()
    if linker is None:
        return None
    llvm, _ = _llvm()
    code = _compile(llvm, shared=True)
    with tempfile.TemporaryDirectory(prefix="polyinit-") as folder:
        source, library = Path(folder) / "fused.o", Path(folder) / "fused.so"
        source.write_bytes(code)
        try:
            linked = subprocess.run(
                [linker, "-shared", "-o", str(library), str(source)], capture_output=True, check=False, timeout=120
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if linked.returncode or not library.exists():
            return None
        data = library.read_bytes()
        opened = _open_shared(library)  # the loader keeps the file mapped once loaded
        if opened is None:
            return None
        _store(checksum, hashlib.sha256(data).hexdigest().encode(), raw=True)
        _store(path, data, raw=True)
        prune(path)
        return opened, "compiled"


KEEP_OTHERS = 3  # other kernel versions kept: another install, venv or CPU may share the folder


def prune(kept: Path) -> None:
    """After a kernel is stored at ``kept``, delete all but the ``KEEP_OTHERS`` newest other kernels
    (``fused-*.so`` with their ``.sha256``, ``fused-*.o``) in its folder, so the cache does not grow
    by one file per kernel version. Not all: the name hashes the CPU and the sources, so a home
    folder shared by two CPUs or two installs would otherwise delete each other's kernels and
    compile again. A file another process removed first is no error."""
    try:
        others = [p for p in kept.parent.iterdir() if p.name.startswith("fused-") and p.suffix in (".so", ".o")]
        others = sorted((p for p in others if p.name != kept.name), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in others[KEEP_OTHERS:]:
            old.unlink(missing_ok=True)
            old.with_name(old.name + ".sha256").unlink(missing_ok=True)
    except OSError:
        pass


_MAGIC = b"polyinit fused kernel 1\n"  # then the SHA-256 of the object code, then the code


def _read(path: Path) -> bytes | None:
    """The cached object code, or None where there is none or it is not intact: the linker would
    crash the process on a damaged object, so a file whose checksum fails is compiled again."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    start = len(_MAGIC) + 32
    code = data[start:]
    if data[: len(_MAGIC)] != _MAGIC or hashlib.sha256(code).digest() != data[len(_MAGIC) : start]:
        return None
    return code


def _store(path: Path, code: bytes, raw: bool = False) -> None:
    """Write atomically (with ``_MAGIC`` and the checksum first unless ``raw``); a cache that
    cannot be written is not an error (the code is in memory)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        with os.fdopen(handle, "wb") as file:
            file.write(code if raw else _MAGIC + hashlib.sha256(code).digest() + code)
        os.replace(temporary, path)
    except OSError:
        pass


def _load_object() -> tuple[Callable[..., None], str]:
    """The kernel from cached object code through llvmlite's MCJIT, compiled where not cached."""
    global _engine
    llvm, version = _llvm()
    path = cache_dir() / _object_name(llvm, version)
    code, source = _read(path), "cache"
    if code is None:
        code, source = _compile(llvm), "compiled"
        _store(path, code)
        prune(path)
    machine = llvm.Target.from_default_triple().create_target_machine(jit=True)
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), machine)
    engine.add_object_file(llvm.ObjectFileRef.from_data(code))
    engine.finalize_object()
    address = engine.get_function_address(ENTRY)
    if not address:
        raise ImportError(f"{path} has no {ENTRY}: delete it to compile the kernel again")
    _engine = engine
    return _PROTOTYPE(address), source


def kernel() -> Callable[..., None]:
    """The fused kernel as a ctypes function (the GIL is released while it runs)."""
    global _kernel, LOADED
    with _lock:
        if _kernel is None:
            _kernel, LOADED = _load_shared() or _load_object()
    return _kernel
