"""Keep frameworks' C++ start-up log lines out of the command line's output.

TensorFlow 2.21 writes ``I0000 ... port.cc:153] oneDNN custom operations are on ...`` (and
absl's ``WARNING: All log messages before absl::InitializeLog() ...``) straight to file
descriptor 2 while it loads, before ``TF_CPP_MIN_LOG_LEVEL`` is read, so no log level hides them.
``polyinit compare`` imports frameworks in its own process; while it does, :func:`hidden` points
descriptor 2 at a temporary file and afterwards writes back every line that is not such a log
line (a Python warning, an error message). Where the user set ``TF_CPP_MIN_LOG_LEVEL``, the logs
are theirs and pass untouched: the command line calls :func:`hide_unless_user_set` first.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# absl/glog's prefix: severity letter, MMDD, time, thread id, file:line]
_LOG_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] ")
_NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "To enable the following instructions:",
)  # cpu_feature_guard's second line
_LEVELS = {"TF_CPP_MIN_LOG_LEVEL": "2"}

_state = {"hide": False}


def hide_unless_user_set() -> None:
    """Set TensorFlow's log level (2: errors only) where the user did not, and remember that its
    start-up lines are to be hidden; a user who set the level sees them as they asked."""
    user_set = any(name in os.environ for name in _LEVELS)
    for name, value in _LEVELS.items():
        os.environ.setdefault(name, value)
    _state["hide"] = not user_set


def is_log_line(line: str) -> bool:
    """Whether ``line`` is a framework's C++ log line or absl's start-up notice.

    >>> is_log_line("I0000 00:00:1796548163.552970    8476 port.cc:153] oneDNN custom operations are on.")
    True
    >>> is_log_line("UserWarning: something of yours")
    False
    """
    return bool(_LOG_LINE.match(line)) or line.startswith(_NOISE)


@contextlib.contextmanager
def hidden() -> Iterator[None]:
    """Run the block with descriptor 2 captured, then replay the lines that are not log lines.
    Does nothing unless :func:`hide_unless_user_set` asked for it (a library caller's stderr is theirs)."""
    if not _state["hide"]:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                if not is_log_line(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
