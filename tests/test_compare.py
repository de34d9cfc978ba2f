"""`polyinit compare`: the acceptance numbers for Dense 784 -> 256, the closed form against
independent integrals and against the real layers of every installed framework, the CLI's
formats, picture, cache, progress and edges."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from polyinit import propagation as pg
from polyinit.cli import main
from polyinit.compare import compare
from polyinit.compare_output import render_text

integrate = pytest.importorskip("scipy.integrate")
special = pytest.importorskip("scipy.special")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYINIT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def dense_rows():
    return {r.framework: r for r in compare(depth=6, measure=False)}


def test_acceptance_numbers(dense_rows):
    rows = dense_rows
    assert rows["torch"].weight.bound == pytest.approx(1 / 28) and rows["torch"].bias.bound == pytest.approx(1 / 28)
    assert rows["keras"].weight.bound == pytest.approx(math.sqrt(6 / 1040)) and rows["keras"].bias.words == "0"
    assert rows["flax"].weight.std == pytest.approx(1 / 28) and rows["flax"].weight.truncated_at == pytest.approx(
        2.2736945, rel=1e-6
    )
    assert rows["mxnet"].weight.bound == pytest.approx(0.07) and rows["mxnet"].bias.words == "0"
    text = render_text(list(rows.values()), "dense", "relu", 784, 256, 6)
    for needle in ("U(+-0.03571)", "U(+-0.07596)", "cut at +-2.27 std", "U(+-0.07)", "fan_in*var(w)"):
        assert needle in text


def test_gain_is_fan_in_var_w(dense_rows):
    assert dense_rows["torch"].gain == pytest.approx(1 / 3)
    assert dense_rows["keras"].gain == pytest.approx(784 * 2 / 1040)
    assert dense_rows["flax"].gain == pytest.approx(1.0)
    assert dense_rows["mxnet"].gain == pytest.approx(784 * 0.07**2 / 3)
    (conv,) = compare("conv3d", n_in=8, n_out=16, kernel=3, frameworks=["torch"], measure=False)
    assert conv.gain == pytest.approx(1 / 3)  # kaiming(a=sqrt 5) on fan_in = 8 * 27


# --- the closed form against integrals computed another way (scipy.integrate.quad) ----------------


def _gauss(f, var):
    return integrate.quad(
        lambda z: f(z) * math.exp(-z * z / (2 * var)) / math.sqrt(2 * math.pi * var),
        -np.inf,
        np.inf,
        epsabs=1e-13,
        epsrel=1e-11,
    )[0]


SCALAR = {
    "linear": lambda z: z,
    "relu": lambda z: max(z, 0.0),
    "tanh": math.tanh,
    "gelu": lambda z: 0.5 * z * (1 + math.erf(z / math.sqrt(2))),
    "silu": lambda z: z * special.expit(z),
    "sigmoid": special.expit,
}


@pytest.mark.parametrize("activation", pg.ACTIVATIONS)
def test_dense_recursion_against_quad(activation):
    # Keras dense 256 -> 256: gain exactly 1, zero bias, so Var_2 = E[phi(N(0, 1))^2] and
    # Var_3 = E[phi(N(0, Var_2))^2].
    var = pg.stack("keras", "dense", activation, n_in=256, n_out=256, depth=3)
    second = _gauss(lambda z: SCALAR[activation](z) ** 2, 1.0)
    third = _gauss(lambda z: SCALAR[activation](z) ** 2, second)
    assert var == pytest.approx([1.0, second, third], rel=1e-6)


def test_torch_bias_enters_the_recursion():
    # torch Linear 100 -> 100: Var_1 = 100 * 1/(3*100) + 1/(3*100); ReLU halves what it passes on.
    var = pg.stack("torch", "dense", "relu", n_in=100, n_out=100, depth=2)
    first = 1 / 3 + 1 / 300
    assert var == pytest.approx([first, first / 2 / 3 + 1 / 300], rel=1e-9)


def test_norm_layers_standardise():
    eps = 1e-3  # keras.layers.BatchNormalization's default epsilon (keras/src/layers/normalization)
    relu_var = 0.5 - 1 / (2 * math.pi)  # Var(relu(N(0, 1)))
    var = pg.stack("keras", "batchnorm", "relu", n_in=32, n_out=32, depth=2)
    second = relu_var / (1 + eps)  # Var(relu(y_1)), y_1 = x / sqrt(1 + eps)
    # E[relu(y)] crosses the kink, where Gauss-Hermite converges slowly: the stated error bound, 1e-4.
    assert var == pytest.approx([1 / (1 + eps), second / (second + eps)], rel=1e-4)


def test_softmax_square_sum_against_quad():
    # T = 2: a_1 = sigmoid(s_1 - s_2), s_1 - s_2 ~ N(0, 2 s^2), so E[a_1^2 + a_2^2] is one integral.
    for logit_var in (0.3, 1.0, 4.0):
        expected = _gauss(lambda d: special.expit(d) ** 2 + special.expit(-d) ** 2, 2 * logit_var)
        assert pg.softmax_square_sum(logit_var, 2) == pytest.approx(expected, rel=1e-6)
    assert pg.softmax_square_sum(0.0, 16) == pytest.approx(1 / 16)


@pytest.mark.parametrize(
    "framework,kind", [("torch", "lstm"), ("torch", "gru"), ("keras", "lstm"), ("flax", "mha"), ("haiku", "embedding")]
)
def test_quadrature_error_below_1e_4(framework, kind):
    for activation in ("gelu", "sigmoid"):
        coarse = pg.stack(framework, kind, activation, n_in=64, n_out=64, depth=3)
        with pg.quadrature(2 * pg.HERMITE, 2 * pg.LEGENDRE, 2 * pg.GROUPS):
            fine = pg.stack(framework, kind, activation, n_in=64, n_out=64, depth=3)
        assert np.allclose(coarse, fine, rtol=1e-4, atol=0)


# --- the closed form against the real layers ---------------------------------------------------

MEASURED = [(fw, kind) for fw in ("torch", "keras", "flax", "haiku") for kind in pg.kinds_of(fw)]


@pytest.mark.parametrize("framework,kind", MEASURED, ids=[f"{f}-{k}" for f, k in MEASURED])
def test_measured_follows_closed_form(framework, kind):
    """Each (framework, kind) with one of the six activations in turn, all six over the kinds.
    Mean of 4 networks of width 128 (conv2d/3d: 32 channels), depth 3, fixed seeds: the closed form is the infinite-width
    limit and a finite network's Var wanders about it by ~sqrt(2 / fan) per layer (larger with
    ReLU-like activations), so the tolerance is 20% (mha 25%, its O(1/head_dim) approximation)."""
    pytest.importorskip({"torch": "torch", "keras": "keras", "flax": "flax", "haiku": "haiku"}[framework])
    activation = pg.ACTIVATIONS[pg.KINDS.index(kind) % len(pg.ACTIVATIONS)]
    width = 32 if kind in ("conv2d", "conv3d", "conv_transpose") else 128  # fan_in 288 / 864 / 288
    n_in = 1000 if kind == "embedding" else width
    (row,) = compare(kind, n_in=n_in, n_out=width, depth=3, frameworks=[framework], activation=activation, cache=False)
    assert row.source == "measured on real layers"
    tolerance = 0.25 if kind == "mha" else 0.2
    assert np.allclose(row.measured_linear, row.linear, rtol=tolerance, atol=0), (row.measured_linear, row.linear)
    assert np.allclose(row.measured_activated, row.activated, rtol=tolerance, atol=0), (
        row.measured_activated,
        row.activated,
    )


def test_not_installed_is_said(monkeypatch):
    from polyinit import compare_cache

    monkeypatch.setattr(compare_cache, "installed_version", lambda framework: None)
    (row,) = compare(depth=2, frameworks=["mxnet"])
    assert row.source == "closed form (mxnet not installed)" and row.measured_linear is None


def test_a_framework_without_the_layer():
    (row,) = compare("mha", depth=2, frameworks=["mxnet"], measure=False)
    assert row.source == "mxnet has no mha layer" and math.isnan(row.linear[-1])


def test_global_generators_untouched():
    """Issue 14: measuring leaves the caller's Python, numpy, torch, TensorFlow and Keras generators as they were."""
    import random

    torch = pytest.importorskip("torch")
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    from keras.src.backend.common import global_state

    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    generator = tf.random.get_global_generator()
    before = (
        random.getstate(),
        np.random.get_state()[1].copy(),
        torch.random.get_rng_state().clone(),
        generator.state.numpy().copy(),
        global_state.get_global_attribute("global_random_seed"),
    )
    compare("dense", n_in=32, n_out=32, depth=2, frameworks=["torch", "keras", "flax", "haiku"], cache=False)
    after = (
        random.getstate(),
        np.random.get_state()[1],
        torch.random.get_rng_state(),
        tf.random.get_global_generator().state.numpy(),
        global_state.get_global_attribute("global_random_seed"),
    )
    assert before[0] == after[0], "Python's random moved"
    assert np.array_equal(before[1], after[1]), "numpy's global generator moved"
    assert torch.equal(before[2], after[2]), "torch's global generator moved"
    assert np.array_equal(before[3], after[3]), "TensorFlow's global generator moved"
    assert before[4] == after[4], "Keras's global seed changed"


# --- the command line ------------------------------------------------------------------------


def test_cli_json_carries_every_input(capsys):
    assert (
        main(
            [
                "compare",
                "--json",
                "--layer",
                "conv2d",
                "--activation",
                "tanh",
                "--depth",
                "3",
                "--kernel",
                "5",
                "--no-measure",
                "--seed",
                "7",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["inputs"] == {
        "layer": "conv2d",
        "activation": "tanh",
        "n_in": 32,
        "n_out": 32,
        "depth": 3,
        "kernel": 5,
        "heads": 4,
        "tokens": 16,
        "seed": 7,
        "frameworks": ["torch", "keras", "flax", "mxnet", "equinox", "haiku"],
        "measure": False,
        "repeats": 4,
    }
    assert set(data["installed"]) == {"torch", "keras", "flax", "mxnet", "equinox", "haiku"} and data["polyinit"]
    assert [r["framework"] for r in data["rows"]] == ["torch", "keras", "flax", "mxnet", "equinox", "haiku"]
    assert data["rows"][0]["params"]["weight"]["shape"] == [32, 32, 5, 5]


def test_cli_markdown_and_csv(capsys):
    assert main(["compare", "--format", "markdown", "--depth", "2", "--no-measure", "--frameworks", "torch,keras"]) == 0
    markdown = capsys.readouterr().out
    assert "| framework | weight | bias |" in markdown and "| keras 3.15.1 | U(+-0.07596) | 0 |" in markdown
    assert main(["compare", "--format", "csv", "--depth", "2", "--no-measure", "--frameworks", "torch,keras"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("framework,version,weight,bias") and len(lines) == 1 + 2 * 2
    assert lines[3].split(",")[6] == "1" and float(lines[3].split(",")[7]) == pytest.approx(784 * 2 / 1040)


def test_cli_plot_shows_biases_and_says_closed_form(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")  # the compare extra
    from polyinit import plot as plotting

    titles = []
    original = plotting.plot
    monkeypatch.setattr(plotting, "plot", lambda *a, **k: titles.append(original(*a, **k)))
    picture = tmp_path / "compare.png"
    assert main(["compare", "--depth", "3", "--no-measure", "--plot", str(picture)]) == 0
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 50_000
    assert titles[0].endswith("(closed form)")
    assert main(["compare", "--depth", "2", "--frameworks", "torch", "--plot", str(picture)]) == 0
    assert not titles[1].endswith("(closed form)")


def test_cli_plot_path_checked_before_measuring(capsys, monkeypatch):
    from polyinit import compare as comparing

    monkeypatch.setattr(comparing, "_measure_into", lambda *a: pytest.fail("measured before checking --plot"))
    assert main(["compare", "--plot", "/no/such/folder/x.png"]) == 2
    assert "does not exist or is not writable" in capsys.readouterr().err
    assert main(["compare", "--plot", "picture.jpg"]) == 2
    assert "must name a .png file" in capsys.readouterr().err


def test_cli_errors_are_clear(capsys):
    assert main(["compare", "--in", "0", "--no-measure"]) == 2
    assert "n_in must be a positive integer" in capsys.readouterr().err
    assert main(["compare", "--frameworks", "caffe", "--no-measure"]) == 2
    assert "unknown framework 'caffe'" in capsys.readouterr().err
    assert main(["compare", "--frameworks", ",", "--no-measure"]) == 2
    assert "no framework given" in capsys.readouterr().err


def test_cli_help_lists_every_choice(capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in pg.KINDS + pg.ACTIVATIONS + ("torch", "keras", "flax", "mxnet", "haiku", "markdown", "csv"):
        assert name in text, name


def test_cli_table_honours_the_terminal_width(capsys, monkeypatch):
    pytest.importorskip("rich")
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert main(["compare", "--no-measure", "--depth", "2"]) == 0
    import re

    lines = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out).splitlines()  # without colour codes
    assert lines and max(len(line) for line in lines) <= 100


def test_cli_closed_pipe_is_quiet(tmp_path):
    env = dict(os.environ, POLYINIT_CACHE=str(tmp_path))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "polyinit",
            "compare",
            "--no-measure",
            "--format",
            "csv",
            "--depth",
            "4000",
            "--frameworks",
            "keras",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    process.stdout.readline()
    process.stdout.close()  # what `| head -1` does
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait() == 0 and "Traceback" not in stderr, stderr


PROBE = (
    "import sys, time; from polyinit.cli import main; started = time.perf_counter();"
    "main(sys.argv[1:]); print(round(time.perf_counter() - started, 2), file=sys.stderr);"
    "print([m for m in ('torch', 'tensorflow', 'keras', 'jax', 'flax', 'haiku', 'mxnet') if m in sys.modules], file=sys.stderr)"
)


def _probe(args, env):
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True, env=env)


def test_second_run_comes_from_the_cache_and_imports_no_framework(tmp_path):
    for framework in ("torch", "flax"):  # measured on the first run
        pytest.importorskip(framework)
    env = dict(os.environ, POLYINIT_CACHE=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="2")
    args = [
        "compare",
        "--layer",
        "gru",
        "--activation",
        "silu",
        "--in",
        "32",
        "--out",
        "32",
        "--depth",
        "2",
        "--frameworks",
        "torch,flax",
        "--progress",
    ]
    first, second = _probe(args, env), _probe(args, env)
    assert "torch: measured" in first.stderr and "flax: measured" in first.stderr
    assert first.stdout == second.stdout and "measured on real layers" in second.stdout
    assert "from the cache" in second.stderr and second.stderr.strip().splitlines()[-1] == "[]"
    assert list(tmp_path.glob("compare-*.json"))


def test_progress_only_on_a_terminal_or_when_asked(tmp_path):
    env = dict(os.environ, POLYINIT_CACHE=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="2")
    quiet = _probe(["compare", "--in", "16", "--out", "16", "--depth", "2", "--frameworks", "torch"], env)
    assert "polyinit:" not in quiet.stderr


def test_no_measure_imports_no_framework():
    out = _probe(["compare", "--no-measure", "--json", "--layer", "lstm"], dict(os.environ))
    assert out.stderr.strip().splitlines()[-1] == "[]"


def test_xdg_cache_home_is_honoured(tmp_path, monkeypatch):
    from polyinit import compare_cache

    monkeypatch.delenv("POLYINIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compare_cache.folder() == tmp_path / "polyinit"


@pytest.mark.parametrize(
    "name",
    [
        "polyinit.propagation",
        "polyinit.compare",
        "polyinit.compare_cache",
        "polyinit.compare_model",
        "polyinit.defaults",
    ],
)
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted and result.failed == 0
