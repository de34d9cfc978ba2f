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
        self.body = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(),
                                        torch.nn.Linear(32, 16))
        self.head = torch.nn.Linear(16, 50, bias=False)
        self.head.weight = self.embed.weight  # tied


RULES = Rules([(kind("dense") & role("weight"), pi.he_normal()), (role("bias"), pi.zeros()),
               (kind("embedding"), pi.Normal(std=0.02)), (kind("norm"), KEEP)], seed=11)


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
    with pytest.raises(ModelError, match="gain would be left uninitialised"), \
            pytest.warns(UserWarning, match="no registry entry describes"):
        materialize(model, Rules([(kind("dense"), pi.zeros())], seed=0))
    assert all(t.device.type == "meta" for t in model.parameters())
    with pytest.raises(pi.PolyinitError, match="matched no parameter"), pytest.warns(UserWarning):
        materialize(model, Rules([(kind("conv"), pi.zeros()), (role("weight"), pi.zeros())]))
    assert all(t.device.type == "meta" for t in model.parameters())
