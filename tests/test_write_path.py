"""The one write path (issue 22): every writer refuses what it cannot write correctly with a clear
PolyinitError, leaving the model bit-identical; materialize is all or nothing; DTensors with a
Partial placement, or without portable=True, are refused; a Keras model on the torch backend is
walked as Keras."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import polyinit as pi
from polyinit import writing
from polyinit.deferred import materialize
from polyinit.params import ModelError, RuleError
from polyinit.rules import KEEP, Rules, SpecFactory, apply, kind, role

RULES = Rules([role("weight") >> pi.he_normal(), role("bias") >> pi.zeros()], seed=0)


def snapshot(model) -> dict:
    return {
        k: (v.device.type, v.detach().clone() if v.device.type != "meta" else tuple(v.shape))
        for k, v in model.state_dict().items()
    }


def same(before: dict, model) -> bool:
    after = snapshot(model)
    return before.keys() == after.keys() and all(
        before[k][0] == after[k][0]
        and (before[k][1] == after[k][1] if before[k][0] == "meta" else torch.equal(before[k][1], after[k][1]))
        for k in before
    )


# --- value checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, dtype, problem",
    [
        ([1.0, float("nan")], "float32", "not finite"),
        ([float("-inf")], "float64", "not finite"),
        ([1e30], "float16", "outside the float16 range"),
        ([70000.0], "float16", "outside the float16 range"),
        ([1e39], "bfloat16", "outside the bfloat16 range"),
        ([1e39], "float32", "outside the float32 range"),
    ],
)
def test_values_that_cannot_be_written_are_refused(values, dtype, problem):
    with pytest.raises(writing.ValueCheckError, match=f"transfer: .*'w'.*{problem}"):
        writing.check_values(values, dtype, "w", "transfer")


def test_values_at_the_edge_of_the_range_are_accepted():
    writing.check_values([65504.0, -65504.0], "float16", "w", "transfer")  # float16's largest finite
    writing.check_values(torch.tensor([3e38], dtype=torch.bfloat16), "bfloat16", "w", "transfer")
    writing.check_values(np.array([1e300]), "float64", "w", "transfer")


# --- pre-write checks in apply ------------------------------------------------------------


@pytest.mark.parametrize("fans", ["logical", 3, ""])
def test_apply_and_materialize_refuse_the_same_fans(fans):
    model = torch.nn.Linear(3, 2)
    before = snapshot(model)
    with pytest.raises(RuleError, match="apply: fans must be one of"):
        apply(model, RULES, fans=fans)
    assert same(before, model)
    with torch.device("meta"):
        lazy = torch.nn.Linear(3, 2)
    with pytest.raises(RuleError, match="materialize: fans must be one of"):
        materialize(lazy, RULES, fans=fans)
    assert all(t.device.type == "meta" for t in lazy.parameters())


def test_an_inference_tensor_is_refused_with_the_path():
    with torch.inference_mode():
        model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    before = snapshot(model)
    with pytest.raises(ModelError, match="'0.weight' is an inference tensor"):
        apply(model, RULES)
    assert same(before, model)


# --- Rules arguments: one seed range, raising user callables wrapped --------------------------


@pytest.mark.parametrize("seed", [-1, 2**64, True, 1.5, "3"])
def test_rules_seed_outside_the_one_range_is_refused(seed):
    with pytest.raises(RuleError, match="Rules: seed"):
        Rules([], seed=seed)


def test_the_largest_seed_draws_native_and_portable():
    """2**64 - 1 is accepted by Rules and by both draws (the native one used to accept 2**64 too,
    which the portable one then refused at draw time)."""
    rules = Rules([role("weight") >> pi.he_normal(), role("bias") >> pi.zeros()], seed=2**64 - 1)
    for portable in (False, True):
        model = torch.nn.Linear(3, 2)
        apply(model, rules, portable=portable)
        assert torch.isfinite(model.weight).all() and not model.bias.any()


def test_a_raising_key_or_spec_factory_is_wrapped_like_a_raising_selector():
    model = torch.nn.Linear(3, 2)
    before = snapshot(model)
    for portable in (False, True):
        with pytest.raises(RuleError, match=r"Rules.key .* raised ZeroDivisionError: division by zero on parameter"):
            apply(
                model,
                Rules([role("weight") >> pi.zeros(), role("bias") >> pi.zeros()], key=lambda p: 1 / 0),
                portable=portable,
            )
    broken = SpecFactory(lambda param, layer: {}["missing"], "broken")
    with pytest.raises(RuleError, match=r"rule 0 \[.*broken\] raised KeyError: 'missing' on parameter 'weight'"):
        apply(model, Rules([role("weight") >> broken, role("bias") >> pi.zeros()]))
    with pytest.raises(RuleError, match="returned 3 for 'weight'; expected a polyinit Spec"):
        apply(model, Rules([role("weight") >> SpecFactory(lambda p, l: 3, "three"), role("bias") >> pi.zeros()]))
    assert same(before, model)


# --- materialize ----------------------------------------------------------------------------


class Rotary(torch.nn.Module):
    """A buffer computed in __init__ that reset_parameters does not recompute (rotary frequencies)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        self.register_buffer("freq", 1.0 / 10000 ** (torch.arange(0, 4, 2).float() / 4))

    def reset_parameters(self):
        pass


def test_materialize_refuses_a_buffer_reset_parameters_does_not_cover():
    with torch.device("meta"):
        model = Rotary()
    with pytest.raises(ModelError, match="'freq' is not initialised by Rotary.reset_parameters"):
        materialize(model, RULES)
    assert all(t.device.type == "meta" for t in model.state_dict().values())


def test_materialize_refuses_a_drawn_tensor_that_is_not_on_meta():
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model[1].weight = torch.nn.Parameter(torch.ones(4, 4))
    before = snapshot(model)
    with pytest.raises(ModelError, match="'1.weight' is matched by a rule but is on cpu"):
        materialize(model, RULES)
    assert same(before, model)


def test_materialize_refuses_a_module_partly_on_meta_that_reset_would_overwrite():
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    model[0].bias = torch.nn.Parameter(torch.full((4,), 7.0))
    before = snapshot(model)
    with pytest.raises(ModelError, match=r"partly on the meta device \(0.bias are not\)"):
        materialize(model, Rules([role("weight") >> KEEP, role("bias") >> KEEP]))
    assert same(before, model)


class Boom(torch.nn.Linear):
    def reset_parameters(self):
        if self.weight.device.type != "meta":
            raise RuntimeError("disk full")
        super().reset_parameters()


def test_a_reset_parameters_raising_midway_puts_the_whole_model_back_on_meta():
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), Boom(4, 4))
    before = snapshot(model)
    rules = Rules(
        [(kind("dense") & role("weight")) >> pi.he_normal(), kind("norm") >> KEEP, role("bias") >> KEEP], seed=0
    )
    with pytest.raises(ModelError, match=r"Boom '2'.reset_parameters\(\) raised RuntimeError: disk full"):
        materialize(model, rules)
    assert same(before, model)  # the first two modules, materialised before, are back on meta too


def test_materialize_portable_equals_apply_portable_and_the_report_is_what_was_drawn():
    def build():
        return torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4), torch.nn.LSTM(4, 3))

    rules = Rules([kind("dense", "recurrent") >> pi.Uniform(low=-0.2, high=0.2), kind("norm") >> KEEP], seed=9)
    eager = build()
    apply(eager, rules, portable=True)
    with torch.device("meta"):
        lazy = build()
    report = materialize(lazy, rules, portable=True)
    for (name, a), (_, b) in zip(eager.state_dict().items(), lazy.state_dict().items()):
        assert torch.equal(a, b), name
    drawn = {row.path for row in report.rows if row.plan is not None}
    assert drawn == {n for n, _ in eager.named_parameters() if not n.startswith("1.")}
    assert report.fans == "semantic"


def test_materialize_leaves_no_uninitialised_memory_in_undrawn_buffers():
    """BatchNorm's running statistics and counter come from its reset_parameters; nothing is NaN."""
    with torch.device("meta"):
        model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    materialize(model, Rules([kind("dense") >> pi.zeros(), kind("norm") >> KEEP]))
    bn = model[1]
    assert torch.equal(bn.running_mean, torch.zeros(4)) and torch.equal(bn.running_var, torch.ones(4))
    assert int(bn.num_batches_tracked) == 0 and torch.equal(bn.weight, torch.ones(4))


# --- DTensor: Partial refused, portable required -----------------------------------------


@pytest.fixture(scope="module")
def mesh():
    """A 2-rank mesh in this one process (torch's fake process group: rank 0 of 2, no peers)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=2)
    yield init_device_mesh("cpu", (2,))
    dist.destroy_process_group()


def dtensor(mesh, placement, shape=(4, 3)):
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(torch.zeros(shape), mesh, [placement], run_check=False)


def test_draw_dtensor_refuses_a_partial_placement(mesh):
    from torch.distributed.tensor import Partial

    from polyinit.sharded import draw_dtensor

    for reduce in ("sum", "avg"):
        w = dtensor(mesh, Partial(reduce))
        with pytest.raises(ModelError, match=rf"draw_dtensor: .* pending reduction Partial\({reduce}\)"):
            draw_dtensor(w, pi.resolve(pi.he_normal(), (4, 3), pi.OUT_IN), seed=0, key="w")
        assert not w.to_local().any()


def test_sharded_apply_refuses_partial_and_native_draws(mesh):
    from torch.distributed.tensor import Partial, Shard

    model = torch.nn.Linear(3, 4, bias=False)
    model.weight = torch.nn.Parameter(dtensor(mesh, Shard(0), (2, 3)).redistribute(mesh, [Shard(0)]))
    with pytest.raises(ModelError, match="'weight' is a DTensor .*pass portable=True"):
        apply(model, Rules([role("weight") >> pi.he_normal()]))
    assert not model.weight.to_local().any()
    apply(model, Rules([role("weight") >> pi.he_normal()]), portable=True)
    assert model.weight.to_local().abs().sum() > 0
    partial = torch.nn.Linear(3, 4, bias=False)
    partial.weight = torch.nn.Parameter(dtensor(mesh, Partial("sum")))
    with pytest.raises(ModelError, match=r"'weight' is a DTensor with a pending reduction Partial\(sum\)"):
        apply(partial, Rules([role("weight") >> pi.he_normal()]), portable=True)
    assert not partial.weight.to_local().any()


# --- Keras on the torch backend --------------------------------------------------------------

KERAS_ON_TORCH = """
    import json
    import keras, numpy as np, torch
    import polyinit as pi
    from polyinit.rules import Rules, apply, kind, role

    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, name="d1"), keras.layers.Dense(2, name="d2")])
    assert isinstance(model, torch.nn.Module)  # every Keras layer is an nn.Module on this backend
    report = apply(model, Rules([(kind("dense") & role("weight")) >> pi.constant(0.5),
                                 (kind("dense") & role("bias")) >> pi.constant(-1.0)], require_all=True))
    print(json.dumps({"rows": [[r.path, r.kind, r.role] for r in report.rows],
                      "kernel": np.asarray(model.layers[0].kernel.numpy()).tolist(),
                      "bias": np.asarray(model.layers[1].bias.numpy()).tolist()}))
"""


def test_a_keras_model_on_the_torch_backend_is_walked_as_keras():
    pytest.importorskip("keras")
    env = dict(os.environ, KERAS_BACKEND="torch")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KERAS_ON_TORCH)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert [row[1:] for row in out["rows"]] == [["dense", "weight"], ["dense", "bias"]] * 2, out["rows"]
    assert np.array_equal(out["kernel"], np.full((5, 4), 0.5)) and out["bias"] == [-1.0, -1.0]
