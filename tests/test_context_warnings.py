"""The walker's warning about unregistered module types, as ``model_context`` passes it on: it
names only the types whose parameters the traced structure did not type either, and is silent
where the trace typed them all."""

import warnings

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from polyinit.context import model_context


class MyDense(torch.nn.Module):
    """A dense layer no registry entry describes; the trace sees its ``F.linear``."""

    def __init__(self, fan_in: int, fan_out: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(fan_out, fan_in))
        self.bias = torch.nn.Parameter(torch.zeros(fan_out))

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)


class Gate(torch.nn.Module):
    """A scalar gate: nothing in the trace says what it is."""

    def __init__(self):
        super().__init__()
        self.alpha = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * torch.sigmoid(self.alpha)


class Net(torch.nn.Module):
    input_size = (16,)

    def __init__(self, gate: bool):
        super().__init__()
        self.a, self.b = MyDense(16, 32), MyDense(32, 4)
        self.g = Gate() if gate else torch.nn.Identity()

    def forward(self, x):
        return self.b(torch.relu(self.g(self.a(x))))


def _warnings(model) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model_context(model)
    return [str(w.message) for w in caught if "no registry entry describes" in str(w.message)]


def test_only_the_types_the_trace_left_untyped_are_named():
    (message,) = _warnings(Net(gate=True))
    assert "Gate (1 parameters)" in message and "MyDense" not in message


def test_no_warning_where_the_trace_typed_every_parameter():
    assert _warnings(Net(gate=False)) == []
