"""`polyinit compare`: the acceptance numbers for Dense 784 -> 256, closed form against measured,
the CLI's table, JSON and picture."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from polyinit.cli import main
from polyinit.compare import closed_form, compare, render_text


@pytest.fixture(scope="module")
def rows():
    return {r.framework: r for r in compare(depth=6)}


def test_acceptance_numbers(rows):
    torch_row, keras_row, flax_row, mx_row = rows["torch"], rows["keras"], rows["flax"], rows["mxnet"]
    assert torch_row.weight.bound == pytest.approx(1 / math.sqrt(784)) and torch_row.bias.bound == pytest.approx(1 / math.sqrt(784))
    assert keras_row.weight.bound == pytest.approx(math.sqrt(6 / 1040)) and keras_row.bias.words == "0"
    assert flax_row.weight.std == pytest.approx(1 / math.sqrt(784)) and flax_row.weight.truncated_at == pytest.approx(2.2736945, rel=1e-6)
    assert mx_row.weight.bound == pytest.approx(0.07) and mx_row.bias.words == "0"
    text = render_text(list(rows.values()), "dense", 784, 256, 6)
    for needle in ("U(+-0.03571)", "U(+-0.07596)", "cut at +-2.27 std", "U(+-0.07)"):
        assert needle in text


def test_gain_is_n_in_var_w(rows):
    assert rows["torch"].gain == pytest.approx(1 / 3)
    assert rows["keras"].gain == pytest.approx(784 * 2 / 1040)
    assert rows["flax"].gain == pytest.approx(1.0)
    assert rows["mxnet"].gain == pytest.approx(784 * 0.07**2 / 3)


def test_closed_form_is_the_variance_recursion():
    linear, relu, gain = closed_form("keras", "dense", 784, 256, 4)
    # Keras: layer 1 gain 784 * 2/1040, then 256 * 2/512 = 1; zero biases.
    assert linear == pytest.approx([gain] * 4)
    assert relu == pytest.approx([gain, gain / 2, gain / 4, gain / 8])


@pytest.mark.parametrize("framework", ["torch", "keras", "flax"])
def test_measured_follows_closed_form(rows, framework):
    row = rows[framework]
    assert row.measured == "measured on real layers"
    # Averaged over 4 networks of width 256: within 10% (linear) and 35% (ReLU) at depth 6.
    assert np.allclose(row.measured_linear, row.linear, rtol=0.10)
    assert np.allclose(row.measured_relu, row.relu, rtol=0.35)


def test_conv2d_measured():
    (torch_row,) = compare(layer="conv2d", n_in=16, n_out=32, depth=3, frameworks=["torch"])
    assert np.allclose(torch_row.measured_linear, torch_row.linear, rtol=0.2)


def test_only_closed_form_is_said(rows):
    assert rows["haiku"].measured.startswith("closed form only")


def test_cli_json_and_plot(tmp_path, capsys):
    picture = tmp_path / "compare.png"
    assert main(["compare", "--json", "--depth", "3", "--no-measure", "--plot", str(picture)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["framework"] for r in data["rows"]] == ["torch", "keras", "flax", "mxnet", "haiku"]
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 50_000


def test_cli_errors_are_clear(capsys):
    assert main(["compare", "--in", "0", "--no-measure"]) == 2
    assert "n_in must be a positive integer" in capsys.readouterr().err
    assert main(["compare", "--frameworks", "caffe", "--no-measure"]) == 2
    assert "unknown framework 'caffe'" in capsys.readouterr().err


def test_no_measure_imports_no_framework():
    probe = ("import sys; from polyinit.cli import main; main(['compare', '--no-measure', '--json']);"
             "print([m for m in ('torch', 'tensorflow', 'keras', 'jax', 'flax', 'mxnet') if m in sys.modules], file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stderr.strip().splitlines()[-1] == "[]"
