"""What tests/test_equinox_models.py and tests/test_haiku_models.py share: the torch twins their
models are checked against (test_portable_models' CNN, test_transfer's LSTM, an attention block),
the rules and inputs of those checks, and the checks themselves (transfer both ways keeps the
function; portable values equal per identity; refusals and a failed write leave the model as it
was). Each JAX library's test file builds its own models and passes them here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from test_portable_models import (  # noqa: F401  (re-exported: the JAX model tests' shared names)
    C1,
    C2,
    C_IN,
    CLASSES,
    LSTM_RULES,
    RULES,
    SIDE,
    _logical_values,
    _values_by_identity,
    torch_cnn,
)
from test_rules_contract import LSTM_RECORDS, _records, _torch_models  # noqa: F401
from test_transfer import SEQ, X, _torch_lstm  # noqa: F401

import polyinit as pi
from polyinit import rules as R

D, HEADS = 8, 2
ATTENTION_X = np.random.default_rng(3).standard_normal((2, 5, D)).astype(np.float32)  # (batch, seq, D)
ATTENTION_RULES = R.Rules(
    [(R.role("weight", "scale"), pi.Normal(std=0.2)), (R.role("bias", "offset"), pi.Uniform(low=-0.1, high=0.1))],
    seed=11,
)


class TorchAttention(torch.nn.Module):
    """MultiheadAttention (packed in_proj, biases), a layer norm, an MLP on (batch, seq, D)."""

    def __init__(self):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.norm = torch.nn.LayerNorm(D)
        self.up, self.down = torch.nn.Linear(D, 2 * D), torch.nn.Linear(2 * D, D)

    def forward(self, x):
        y = self.norm(self.attn(x, x, x, need_weights=False)[0])
        return self.down(torch.relu(self.up(y)))


def torch_attention() -> tuple[Any, Callable]:
    model = TorchAttention()
    return model, lambda data: model(torch.as_tensor(data)).detach().numpy()


def diverging_torch_cnn() -> Any:
    """Another architecture than the CNN twin (a 5x5 second conv, no pooling): transfer refuses it."""
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 16, 5), torch.nn.Linear(16, 10))


def assert_attention_records(records: list) -> None:
    """q, k and v are one logical parameter each (torch's packed in_proj blocks); torch lists the
    three weights before the three biases, the JAX libraries each projection's weight and bias
    together, so the records are compared as a multiset (identities pair them)."""
    assert sorted(records) == sorted(_records(torch_attention()[0]))
    assert records[:2] == [(0, "attention", "weight", (D, D)), (0, "attention", "bias", (D,))]


def assert_transfer_round_trip(torch_build: Callable, target: Any, run: Callable, data: np.ndarray, rows: int) -> None:
    """torch twin -> ``target`` -> a fresh torch twin: both copies compute the twin's function.
    The twin's parameters are moved away from their defaults (biases included) first, so a wrong
    gate, head or transpose would show in the outputs."""
    source, run_source = torch_build()
    with torch.no_grad():
        for p in source.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.3)
    expected = run_source(data)
    new, report = pi.transfer(source, target)
    assert len(report.rows) == rows
    np.testing.assert_allclose(run(new, data), expected, rtol=1e-4, atol=1e-5)
    back, run_back = torch_build()
    pi.transfer(new, back)
    np.testing.assert_allclose(run_back(data), expected, rtol=1e-4, atol=1e-5)


def assert_portable_attention_matches_torch(target: Any, run: Callable) -> None:
    """``target`` (an attention block twin) drawn with ATTENTION_RULES portably: q, k and v each
    under its identity, bit for bit the blocks of torch's packed in_proj_weight, and the same
    function as the torch twin drawn the same way."""
    data = np.random.default_rng(4).standard_normal((2, 5, D)).astype(np.float32)
    model, run_torch = torch_attention()
    R.apply(model, ATTENTION_RULES, portable=True)
    new, _ = R.apply(target, ATTENTION_RULES, portable=True)
    expected, found = _values_by_identity(model), _values_by_identity(new)
    assert sorted(found) == sorted(expected) and len(found) == 14
    for identity, values in expected.items():
        assert values.shape == found[identity].shape and values.tobytes() == found[identity].tobytes(), identity
    np.testing.assert_allclose(run(new, data), run_torch(data), rtol=1e-4, atol=1e-5)


def assert_refusals_write_nothing(model: Any, snapshot: Callable[[Any], list]) -> None:
    """A spec with no portable draw and a transfer from another architecture are both refused,
    and ``snapshot(model)`` (every array, copied) is the same after them."""
    before = snapshot(model)
    with pytest.raises(pi.NotExpressibleError):  # orthogonal has no portable draw
        R.apply(model, R.Rules([(R.role("weight"), pi.Orthogonal()), (R.role("bias"), pi.zeros())]), portable=True)
    with pytest.raises(pi.TransferError, match="diverge"):
        pi.transfer(diverging_torch_cnn(), model)
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(model), strict=True))


def assert_failed_write_changes_nothing(monkeypatch, walker: type, model: Any, snapshot: Callable[[Any], list]) -> None:
    """``walker``'s third draw returns the wrong shape: apply raises before writing anything, and
    ``snapshot(model)`` is the same after it."""
    before = snapshot(model)
    real = walker.draw
    count = []

    def draw(self, param, plan, seed):
        count.append(1)
        return real(self, param, plan, seed) if len(count) < 3 else np.ones((7, 7))

    monkeypatch.setattr(walker, "draw", draw)
    with pytest.raises(R.ModelError, match="nothing was written"):
        R.apply(model, R.Rules([(R.every(), pi.ones())]))
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(model), strict=True))
