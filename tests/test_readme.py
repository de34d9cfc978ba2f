"""Every code block of README.md runs as written (python), or names commands, files, extras and
options that exist (bash). A block that needs a framework not installed here is reported as a skip
naming the block and the module (MXNet's runs in tests/real_mxnet); a framework this run requires
(POLYINIT_TEST_BACKENDS) fails instead. Blocks are found when the tests are collected, so a block
added to the README is a new test case, never silently left out."""

import pytest
from readme_blocks import blocks, check_commands, run_python_block

BLOCKS = blocks()


def test_the_readme_has_runnable_blocks():
    assert sum(language == "python" for language, _ in BLOCKS) >= 5
    assert {language for language, _ in BLOCKS} <= {"python", "bash", ""}, "a block in a language no test runs"


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"block{i}-{b[0] or 'text'}" for i, b in enumerate(BLOCKS)])
def test_block(index, tmp_path):
    language, code = BLOCKS[index]
    if language == "python":
        run_python_block(code, tmp_path, f"README block {index}")
    elif language == "bash":
        check_commands(code)
    else:  # a diagram: no code hides in an untagged block
        assert "import " not in code and "$ " not in code, f"README block {index} looks like code but has no language"
