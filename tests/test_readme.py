"""Every code block of README.md runs as written (python), or names commands, files, extras and
options that exist (bash). A block that needs a framework not installed here is reported as a skip
naming the block and the module (MXNet's runs in tests/real_mxnet); a framework this run requires
(POLYINIT_TEST_BACKENDS) fails instead. Blocks are found when the tests are collected, so a block
added to the README is a new test case, never silently left out."""

import os
import re
import shlex

import pytest

from readme_blocks import ROOT, blocks, missing_module, run_python

BLOCKS = blocks()
# Modules a block may lack, and the backend that, when required for this run, makes it a failure.
OPTIONAL = {"torch": "torch", "keras": "keras", "tensorflow": "keras", "jax": "jax", "flax": "jax",
            "haiku": None, "equinox": None, "mxnet": None, "matplotlib": None, "rich": None, "transformers": None, "mup": None}


def test_the_readme_has_runnable_blocks():
    assert sum(language == "python" for language, _ in BLOCKS) >= 5
    assert {language for language, _ in BLOCKS} <= {"python", "bash", ""}, "a block in a language no test runs"


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i}-{b[0] or 'text'}" for i, b in enumerate(BLOCKS)])
def test_block(index, tmp_path):
    language, code = BLOCKS[index]
    if language == "python":
        result = run_python(code, tmp_path)
        if result.returncode == 0:
            return
        module = missing_module(result.stderr)
        required = set(filter(None, os.environ.get("POLYINIT_TEST_BACKENDS", "").split(",")))
        if module in OPTIONAL and OPTIONAL[module] not in required:
            pytest.skip(f"README block {index} needs {module}, which is not installed here")
        pytest.fail(f"README block {index} failed:\n{code}\n{result.stderr[-3000:]}")
    elif language == "bash":
        _check_commands(code)
    else:  # a diagram: no code hides in an untagged block
        assert "import " not in code and "$ " not in code, f"README block {index} looks like code but has no language"


def _check_commands(code: str) -> None:
    """Files exist, extras exist in pyproject.toml, and every polyinit command line parses."""
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
