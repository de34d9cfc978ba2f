"""The fenced code blocks of README.md and docs/, for the tests that run them (here and in tests/real_mxnet)."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```([A-Za-z]*)\n(.*?)^```", re.S | re.M)


def blocks(path: Path = ROOT / "README.md") -> list[tuple[str, str]]:
    """(language, code) of every fenced block of ``path`` (the README by default), in order."""
    return FENCE.findall(path.read_text())


def run_python(code: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """The block as a script in a fresh interpreter, this checkout's polyinit first on the path."""
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]), TF_CPP_MIN_LOG_LEVEL="2"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def missing_module(stderr: str):
    """The top-level module a failed block could not import, if that is why it failed."""
    found = re.search(r"ModuleNotFoundError: No module named '([\w.]+)'", stderr)
    return found.group(1).split(".")[0] if found else None


def check_commands(code: str) -> None:
    """Files exist, extras exist in pyproject.toml, and every polyinit command line parses."""
    import pytest

    from polyinit.cli import build_parser

    section = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]")[1].split("\n[")[0]
    extras = set(re.findall(r"^([\w-]+) = \[", section, re.M))
    assert {"torch", "keras", "keras-jax", "keras-torch", "jax", "haiku", "all"} <= extras
    for line in code.splitlines():
        line = line.split("  #")[0].strip()
        for command in filter(None, (part.strip() for part in line.split("&&"))):
            words = shlex.split(command)
            if words[:2] == ["bash", "tools/test.sh"]:
                assert (ROOT / "tools" / "test.sh").is_file()
            elif words[0].endswith("pip") and "install" in words:
                if "-c" in words:
                    assert (ROOT / words[words.index("-c") + 1]).is_file()
                for word in words:
                    if word.startswith(".["):
                        assert set(word[2:-1].split(",")) <= extras, word
            elif words[0].endswith("polyinit"):
                args = build_parser().parse_args(words[1:])
                assert args.command
            elif words[:3] == ["python3", "-m", "venv"]:
                continue
            else:
                pytest.fail(f"README command {command!r}: no check knows it")


# Modules a block may lack, and the backend that, when required for this run, makes it a failure.
OPTIONAL = {
    "torch": "torch",
    "keras": "keras",
    "tensorflow": "keras",
    "jax": "jax",
    "flax": "jax",
    "haiku": None,
    "equinox": None,
    "mxnet": None,
    "matplotlib": None,
    "rich": None,
    "transformers": None,
    "mup": None,
}


def run_python_block(code: str, cwd: Path, where: str) -> None:
    """Run one python block; a block that needs an optional framework not installed (and not
    required by POLYINIT_TEST_BACKENDS) is a skip naming ``where``, any other failure fails."""
    import pytest

    result = run_python(code, cwd)
    if result.returncode == 0:
        return
    module = missing_module(result.stderr)
    required = set(filter(None, os.environ.get("POLYINIT_TEST_BACKENDS", "").split(",")))
    if module in OPTIONAL and OPTIONAL[module] not in required:
        pytest.skip(f"{where} needs {module}, which is not installed here")
    pytest.fail(f"{where} failed:\n{code}\n{result.stderr[-3000:]}")
