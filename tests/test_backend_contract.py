"""The written backend contract (polyinit.backends.contract): every registered backend meets it,
the conformance runner needs nothing else, and a new framework is one module registered from
outside: here a toy backend over ``array_api_strict``, defined in this test, passes the runner."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

import polyinit as pi
from polyinit import nodes as n
from polyinit.backends import Backend, common, missing_members, register, unregister
from polyinit.backends.contract import MEMBERS
from polyinit.conformance import run, run_case
from polyinit.errors import NotExpressibleError


def test_every_registered_backend_meets_the_contract(backend):
    assert missing_members(backend) == []
    assert isinstance(backend, Backend)
    assert backend.NAME and set(backend.DTYPES) <= {"float16", "bfloat16", "float32", "float64"}


def test_the_runner_needs_only_the_contract(backend):
    # A stand-in holding the contract's members and nothing else runs every kind of case.
    only = SimpleNamespace(**{name: getattr(backend, name) for name in MEMBERS})
    for spec, shape, layout in [
        (pi.glorot_uniform(), (64, 32), pi.OUT_IN),
        (pi.Orthogonal(), (16, 32), pi.OUT_IN),
        (pi.Sparse(sparsity=0.25), (64, 32), pi.OUT_IN),
        (pi.Identity(), (4, 6), None),
    ]:
        bad = [str(c) for c in run_case(only, spec, shape, layout) if not c.passed]
        assert not bad, (backend.NAME, spec, bad)


def test_missing_members_are_named():
    assert missing_members(SimpleNamespace()) == list(MEMBERS)
    with pytest.raises(pi.PolyinitError, match="lacks .*sample_plan"):
        register("half_a_backend", SimpleNamespace(NAME="x", DTYPES=("float32",)))


# --- a toy framework, entirely in this test ----------------------------------------------------

xp = pytest.importorskip("array_api_strict")
_NAMES = {"float32": xp.float32, "float64": xp.float64}
_OPS = n.op_table(xp, lambda mask, like: xp.astype(mask, like.dtype))


class _Primitives:
    """Randomness from a numpy Generator (the toy framework has no RNG of its own), everything
    else in the array API."""

    def __init__(self, rng):
        self.rng = rng

    def Fill(self, node):
        return xp.full(node.shape, node.value, dtype=xp.float64)

    def Fixed(self, node):
        return xp.asarray(np.asarray(node.values, dtype=np.float64))

    def Uniform(self, node, index):
        return xp.asarray(self.rng.uniform(node.low, node.high, size=node.shape))

    def Normal(self, node, index):
        return xp.asarray(self.rng.normal(node.mean, node.std, size=node.shape))

    def TruncatedNormal(self, node, index):
        raise NotExpressibleError("toy backend: no erfinv in the array API")

    def OrthogonalMatrix(self, node, index):
        rows, cols = node.shape
        q, r = xp.linalg.qr(xp.asarray(self.rng.standard_normal((max(rows, cols), min(rows, cols)))))
        return node.gain * common.haar_orthogonal(q, r, rows, cols, xp)

    def Reshape(self, node, x):
        return xp.reshape(x, node.shape)

    def Transpose(self, node, x):
        return xp.permute_dims(x, node.perm)

    def Concat(self, node, parts):
        return xp.concat(parts, axis=node.axis)

    def Scatter(self, node, x):
        out = xp.zeros(node.shape, dtype=xp.float64)
        out[tuple(slice(None) if i is None else i for i in node.index)] = x
        return out

    def Op(self, node, args):
        if node.name == "rank":
            return xp.astype(common.rank(args[0], node.axis, xp), xp.float64)
        return _OPS[node.name](*args)


class Toy:
    """The whole backend: the contract's members, as a module would have them."""

    NAME = "toy"
    DTYPES = ("float32", "float64")
    DEFAULT_LAYOUT = pi.OUT_IN
    ANY_LAYOUT = True

    @staticmethod
    def draw(plan, rng):
        if plan.size == 0:
            return xp.zeros(plan.shape, dtype=_NAMES[plan.dtype])
        return xp.astype(n.evaluate(plan.root, _Primitives(rng), plan.leaf_index), _NAMES[plan.dtype])

    @staticmethod
    def initializer(spec, layout=pi.OUT_IN):
        return lambda shape, rng, dtype="float32": Toy.draw(pi.resolve(spec, shape, layout, dtype), rng)

    @staticmethod
    def sample_plan(plan, seed):
        return Toy.initializer(plan.spec, plan.layout or Toy.DEFAULT_LAYOUT)(
            plan.shape, np.random.default_rng(seed), plan.dtype
        )

    @staticmethod
    def draw_plan(plan, seed):
        return Toy.draw(plan, np.random.default_rng(seed))

    @staticmethod
    def to_numpy(array):
        return np.from_dlpack(array).astype(np.float64)

    @staticmethod
    def dtype_of(array):
        return next(name for name, dtype in _NAMES.items() if array.dtype == dtype)

    @staticmethod
    def device_of(array):
        return str(array.device)

    @staticmethod
    def default_device():
        return str(xp.asarray(0.0).device)


@pytest.fixture
def toy():
    register("toy", Toy)
    yield pi.get_backend("toy")
    unregister("toy")


def test_a_toy_framework_registered_from_outside_passes_the_runner(toy):
    w = pi.Uniform(low=-10.0, high=10.0)
    specs = {
        "glorot_uniform": pi.glorot_uniform(),
        "he_normal": pi.he_normal(),
        "orthogonal": pi.Orthogonal(gain=1.5),
        "identity": pi.Identity(gain=2.0),
        "delta_orthogonal": pi.DeltaOrthogonal(),
        "sparse": pi.Sparse(sparsity=0.25),
        "lstm_bias": pi.lstm_bias(1.0),
        "threshold_rule": w * (abs(w) >= 5),
    }
    shapes = {"dense": ((256, 784), pi.OUT_IN), "conv2d": ((32, 16, 3, 3), pi.OUT_IN), "bias": ((256,), pi.OUT_IN)}
    results = run(specs, ["toy"], shapes, dtypes=("float32", "float64"))
    assert len(results) >= 16 and {r.dtype for r in results} == {"float32", "float64"}
    bad = [r.failures_text() for r in results if not r.passed]
    assert not bad, bad


def test_a_broken_toy_is_caught(toy, monkeypatch):
    # The same toy with its uniform bound off by sqrt(3): the runner must see it.
    monkeypatch.setattr(
        _Primitives,
        "Uniform",
        lambda self, node, index: xp.asarray(
            self.rng.uniform(node.low / math.sqrt(3), node.high / math.sqrt(3), size=node.shape)
        ),
    )
    assert "variance" in {c.name for c in run_case(toy, pi.glorot_uniform(), (256, 784), pi.OUT_IN) if not c.passed}
