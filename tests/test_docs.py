"""Every code block of the documentation site (docs/*.md) runs as written (python), or names commands,
files, extras and options that exist (bash), as the README's do (tests/test_readme.py); and the site
builds with ``mkdocs build --strict`` (a broken reference or any warning fails). Blocks are found
when the tests are collected, so a block added to a page is a new test case."""

import os
import shutil
import subprocess
import sys

import pytest
from readme_blocks import ROOT, blocks, check_commands, run_python_block

PAGES = sorted((ROOT / "docs").rglob("*.md"))
BLOCKS = [(page, index, language, code) for page in PAGES for index, (language, code) in enumerate(blocks(page))]


def test_every_page_is_in_the_nav_and_has_runnable_blocks():
    config = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        assert str(page.relative_to(ROOT / "docs")) in config, f"{page} is not in mkdocs.yml's nav"
    assert sum(language == "python" for _, _, language, _ in BLOCKS) >= 10
    assert {language for _, _, language, _ in BLOCKS} <= {"python", "bash", "text"}, "a block no test runs"


@pytest.mark.parametrize(
    "page, index, language, code", BLOCKS, ids=[f"{p.stem}-block{i}-{lang}" for p, i, lang, _ in BLOCKS]
)
def test_block(page, index, language, code, tmp_path):
    where = f"{page.relative_to(ROOT)} block {index}"
    if language == "python":
        run_python_block(code, tmp_path, where)
    elif language == "bash":
        check_commands(code)
    else:  # output shown to the reader: no code hides in it
        assert "import " not in code, f"{where} looks like code but is tagged {language!r}"


def test_the_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=os.path.dirname(sys.executable)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed here (the test extra installs it)")
    result = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
