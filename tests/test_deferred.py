"""materialize: a torch model built on the meta device gets the values apply gives the same
model built normally, module by module, tied weights kept tied; nothing is left uninitialised."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import polyinit as pi
from polyinit.deferred import materialize
from polyinit.params import ModelError
from polyinit.rules import KEEP, Rules, apply, kind, role


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(50, 16)
        self.body = torch.nn.Sequential(
            torch.nn.Linear(16, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 16)
        )
        self.head = torch.nn.Linear(16, 50, bias=False)
        self.head.weight = self.embed.weight  # tied


RULES = Rules(
    [
        (kind("dense") & role("weight"), pi.he_normal()),
        (role("bias"), pi.zeros()),
        (kind("embedding"), pi.Normal(std=0.02)),
        (kind("norm"), KEEP),
    ],
    seed=11,
)


def test_materialize_equals_apply_on_the_eager_model():
    eager = Net()
    apply(eager, RULES)
    with torch.device("meta"):
        lazy = Net()
    report = materialize(lazy, RULES)
    assert all(t.device.type == "cpu" for t in list(lazy.parameters()) + list(lazy.buffers()))
    for (name, a), (_, b) in zip(eager.state_dict().items(), lazy.state_dict().items()):
        assert torch.equal(a, b), name
    assert lazy.head.weight is lazy.embed.weight  # still tied
    assert {r.path for r in report.rows} >= {"embed.weight", "body.0.weight", "body.1.running_var"}
    assert int(lazy.body[1].num_batches_tracked) == 0  # reset by BatchNorm's own reset_parameters


def test_a_tensor_nothing_would_initialise_is_refused_before_anything_is_materialised():
    class Scale(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 4)
            self.gain = torch.nn.Parameter(torch.ones(4))

    with torch.device("meta"):
        model = Scale()
    with (
        pytest.raises(ModelError, match="gain would be left uninitialised"),
        pytest.warns(UserWarning, match="no registry entry describes"),
    ):
        materialize(model, Rules([(kind("dense"), pi.zeros())], seed=0))
    assert all(t.device.type == "meta" for t in model.parameters())
    with pytest.raises(pi.PolyinitError, match="matched no parameter"), pytest.warns(UserWarning):
        materialize(model, Rules([(kind("conv"), pi.zeros()), (role("weight"), pi.zeros())]))
    assert all(t.device.type == "meta" for t in model.parameters())


MEMORY = """
    import json, torch
    import polyinit as pi
    from polyinit.deferred import materialize
    from polyinit.rules import Rules, role

    def peak_mb():
        # VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's peak (kept across fork and exec).
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024

    def now_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    with torch.device("meta"):
        model = torch.nn.Sequential(*(torch.nn.Linear(2048, 2048, bias=False) for _ in range(8)))
    rules = Rules([(role("weight"), pi.he_normal())], seed=0)
    materialize(torch.nn.Sequential(torch.nn.Linear(4, 4, bias=False)).to("meta"), rules)  # warm up
    base, peak_before = now_mb(), peak_mb()
    materialize(model, rules)
    print(json.dumps({"base": base, "peak_before": peak_before, "peak": peak_mb(), "model_mb": 8 * 16.0,
                      "param_mb": 16.0}))
"""


def test_materialize_holds_at_most_one_parameter_beyond_the_model():
    """Peak resident memory while materialising 8 x 16 MB from the meta device stays within the
    model's 128 MB plus one parameter (16 MB) plus 24 MB of allocator and interpreter slack (a
    materialisation that kept a second copy of the model would need 256 MB)."""
    import json
    import os
    import subprocess
    import sys
    import textwrap

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEMORY)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    m = json.loads(done.stdout.strip().splitlines()[-1])
    assert m["peak"] - m["base"] <= m["model_mb"] + m["param_mb"] + 24, m
    assert m["peak"] - m["base"] >= m["model_mb"] - 8, m  # the measurement sees the model itself
