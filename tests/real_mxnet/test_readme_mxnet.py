"""The MXNet blocks of the README and the documentation pages, run here where the real MXNet is
installed (the main venv reports them as skipped, naming this file's reason)."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("mxnet")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from readme_blocks import ROOT, blocks, run_python

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MXNET = [code for page in PAGES for language, code in blocks(page) if language == "python" and "import mxnet" in code]


def test_the_documentation_has_an_mxnet_block():
    assert MXNET


@pytest.mark.parametrize("index", range(len(MXNET)))
def test_mxnet_block_runs(index, tmp_path):
    result = run_python(MXNET[index], tmp_path)
    assert result.returncode == 0, MXNET[index] + "\n" + result.stderr[-3000:]
