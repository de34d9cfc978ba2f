"""The command line's conventions: --version, conformance's help and progress, and compare's
output free of TensorFlow's C++ start-up lines (issue 25, point 5)."""

import os
import subprocess
import sys

import pytest

import polyinit
from polyinit import native_logs
from polyinit.backends import REGISTRY
from polyinit.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = "import polyinit as pi\nSPECS = {'glorot': pi.glorot_uniform(), 'he': pi.he_normal()}\n"


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # conftest sets it
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    return dict(env, **extra)


def test_version_prints_the_package_version():
    out = subprocess.run(
        [sys.executable, "-m", "polyinit", "--version"], capture_output=True, text=True, env=_env(), check=True
    )
    assert out.stdout.strip() == f"polyinit {polyinit.__version__}"


def test_conformance_help_lists_backends_and_the_pair_form(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["conformance", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for name in REGISTRY:
        assert name in text, name
    assert "(spec, fn)" in text and "fn(shape, seed)" in text


def test_conformance_refuses_an_unknown_backend_naming_the_valid_ones(tmp_path, monkeypatch, capsys):
    (tmp_path / "userspecs.py").write_text(SPECS)
    monkeypatch.chdir(tmp_path)
    assert main(["conformance", "userspecs:SPECS", "--backends", "numpy,caffe"]) == 2
    err = capsys.readouterr().err
    assert "caffe" in err and "numpy, torch, keras, jax" in err


def test_conformance_reports_progress_per_backend_and_spec(tmp_path, monkeypatch, capsys):
    (tmp_path / "userspecs.py").write_text(SPECS)
    monkeypatch.chdir(tmp_path)
    assert main(["conformance", "userspecs:SPECS", "--backends", "numpy", "--progress"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0] == "polyinit: numpy: glorot: checking"
    assert lines[1].startswith("polyinit: numpy: glorot: ") and " cases passed, 0 failed in " in lines[1]
    assert lines[2] == "polyinit: numpy: he: checking"
    assert "progress" not in captured.out and captured.out.strip().endswith("0 failed")


def test_conformance_is_quiet_on_a_pipe_without_progress(tmp_path):
    (tmp_path / "userspecs.py").write_text(SPECS)
    out = subprocess.run(
        [sys.executable, "-m", "polyinit", "conformance", "userspecs:SPECS", "--backends", "numpy"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=_env(),
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


def test_log_lines_are_recognised():
    assert native_logs.is_log_line(
        "I0000 00:00:1796548163.552970    8476 port.cc:153] oneDNN custom operations are on."
    )
    assert native_logs.is_log_line("W0000 00:00:1.5   12 cpu_feature_guard.cc:227] This TensorFlow binary")
    assert native_logs.is_log_line(
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
    )
    assert not native_logs.is_log_line("Info: 2 frameworks measured")
    assert not native_logs.is_log_line("UserWarning: I0000 in a message")


def test_hidden_drops_log_lines_written_to_descriptor_2_and_keeps_the_rest(monkeypatch, capfd):
    monkeypatch.setitem(native_logs._state, "hide", True)
    with native_logs.hidden():
        os.write(
            2,
            b"I0000 00:00:1796548163.552970    8476 port.cc:153] oneDNN custom operations are on.\n"
            b"a line of the user's\n",
        )
    assert capfd.readouterr().err == "a line of the user's\n"
    monkeypatch.setitem(native_logs._state, "hide", False)  # a library caller: stderr untouched
    with native_logs.hidden():
        os.write(2, b"I0000 00:00:1.0    1 port.cc:153] kept\n")
    assert "port.cc:153] kept" in capfd.readouterr().err


def test_hide_unless_user_set(monkeypatch):
    monkeypatch.setitem(native_logs._state, "hide", False)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    native_logs.hide_unless_user_set()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2" and native_logs._state["hide"]
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    native_logs.hide_unless_user_set()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" and not native_logs._state["hide"]


def test_compare_output_starts_with_polyinits_own_lines(tmp_path):
    """Keras on TensorFlow: without the user's TF_CPP_MIN_LOG_LEVEL, every stderr line is
    polyinit's; with TF_CPP_MIN_LOG_LEVEL=0 set by the user, what TensorFlow writes stays."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")
    command = [
        sys.executable,
        "-m",
        "polyinit",
        "compare",
        "--frameworks",
        "keras",
        "--depth",
        "2",
        "--no-cache",
        "--progress",
    ]
    env = _env(KERAS_BACKEND="tensorflow", POLYINIT_CACHE=str(tmp_path))
    loud = subprocess.run(command, capture_output=True, text=True, check=False, env=dict(env, TF_CPP_MIN_LOG_LEVEL="0"))
    assert loud.returncode == 0, loud.stderr
    if not any(native_logs.is_log_line(line) for line in loud.stderr.splitlines()):
        pytest.skip("this TensorFlow writes no start-up log lines: nothing to hide")
    quiet = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert all(line.startswith("polyinit: ") for line in quiet.stderr.splitlines()), quiet.stderr
    assert quiet.stdout.startswith("polyinit compare: dense")
