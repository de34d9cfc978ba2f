"""The fenced code blocks of README.md, for the tests that run them (here and in tests/real_mxnet)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```([A-Za-z]*)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block, in order."""
    return FENCE.findall((ROOT / "README.md").read_text())


def run_python(code: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """The block as a script in a fresh interpreter, this checkout's polyinit first on the path."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def missing_module(stderr: str):
    """The top-level module a failed block could not import, if that is why it failed."""
    found = re.search(r"ModuleNotFoundError: No module named '([\w.]+)'", stderr)
    return found.group(1).split(".")[0] if found else None
