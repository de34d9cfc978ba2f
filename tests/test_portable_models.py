"""Portable apply (issue 12, point 3): the same rules and seed on the same CNN written in torch,
Keras and nnx give the same float32 weights bit for bit, up to each framework's layout, and so
the same outputs on the same input to float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest

import polyinit as pi
from polyinit.rules import Rules, apply, kind, role

RULES = Rules([(kind("conv") & role("weight"), pi.he_normal()),
               (kind("dense") & role("weight"), pi.glorot_uniform()),
               (role("bias"), pi.Uniform(low=-0.1, high=0.1))], seed=2024)
C_IN, C1, C2, CLASSES, SIDE = 3, 8, 16, 10, 12


def torch_cnn():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(C_IN, C1, 3), nn.ReLU(), nn.Conv2d(C1, C2, 3), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(C2, CLASSES))
    return model, lambda x: model(torch.as_tensor(x).permute(0, 3, 1, 2)).detach().numpy()


def keras_cnn():
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((SIDE, SIDE, C_IN)), keras.layers.Conv2D(C1, 3, activation="relu"),
                              keras.layers.Conv2D(C2, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(CLASSES)])
    return model, lambda x: keras.ops.convert_to_numpy(model(x))


def nnx_cnn():
    nnx = pytest.importorskip("flax.nnx")
    import jax

    class CNN(nnx.Module):
        def __init__(self, rngs):
            self.conv1 = nnx.Conv(C_IN, C1, (3, 3), padding="VALID", rngs=rngs)
            self.conv2 = nnx.Conv(C1, C2, (3, 3), padding="VALID", rngs=rngs)
            self.head = nnx.Linear(C2, CLASSES, rngs=rngs)

        def __call__(self, x):
            x = jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x))))
            return self.head(x.mean(axis=(1, 2)))

    model = CNN(nnx.Rngs(0))
    return model, lambda x: np.asarray(model(x))


def logical(report_model, framework: str) -> list[np.ndarray]:
    """Every parameter as a numpy array in the logical order (out, in, kh, kw)."""
    from polyinit.frameworks import walker_for
    from polyinit.logical import canonical_order

    walker = walker_for(report_model)
    arrays = []
    for param in walker.walk(report_model):
        values = np.asarray(walker.read(report_model, param), dtype=np.float32)
        arrays.append(np.transpose(values, canonical_order(param, param.shape, param.semantic_layout)))
    return arrays


def test_same_weights_and_outputs_in_torch_keras_and_nnx():
    x = np.random.default_rng(0).standard_normal((4, SIDE, SIDE, C_IN)).astype(np.float32)
    weights, outputs = {}, {}
    for name, build in (("torch", torch_cnn), ("keras", keras_cnn), ("nnx", nnx_cnn)):
        model, run = build()
        apply(model, RULES, portable=True)
        weights[name], outputs[name] = logical(model, name), run(x)
    for name in ("keras", "nnx"):
        assert len(weights[name]) == len(weights["torch"])
        for a, b in zip(weights["torch"], weights[name]):
            assert a.shape == b.shape and a.tobytes() == b.tobytes(), name
        np.testing.assert_allclose(outputs[name], outputs["torch"], rtol=1e-4, atol=1e-5)


def test_portable_apply_is_reproducible_and_differs_by_seed():
    model, _ = torch_cnn()
    apply(model, RULES, portable=True)
    first = [p.detach().clone() for p in model.parameters()]
    apply(model, RULES, portable=True)
    assert all(a.equal(b) for a, b in zip(first, model.parameters()))
    other = Rules(RULES.rules, seed=RULES.seed + 1)
    apply(model, other, portable=True)
    assert not any(a.equal(b) for a, b in zip(first, model.parameters()))


def test_orthogonal_is_refused_in_portable_mode_and_nothing_is_written():
    model, _ = torch_cnn()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(pi.NotExpressibleError):
        apply(model, Rules([(role("weight"), pi.Orthogonal()), (role("bias"), pi.zeros())]), portable=True)
    assert all(a.equal(b) for a, b in zip(before, model.parameters()))


def test_the_portable_cnn_example_runs():
    for framework in ("torch", "keras", "flax"):
        pytest.importorskip(framework)
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.path.dirname(here) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "portable_cnn.py"], cwd=os.path.join(here, "..", "examples"),
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "bit-identical (torch vs Keras): True" in out.stdout
