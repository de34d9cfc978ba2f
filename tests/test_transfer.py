"""transfer (issue 12, point 4): weights copied between frameworks through the portable records,
layouts converted; a torch CNN round-trips through Keras and nnx with identical outputs; every
mismatch is an error that writes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from polyinit.transfer import TransferError, transfer

from test_portable_models import keras_cnn, nnx_cnn, torch_cnn

X = np.random.default_rng(1).standard_normal((3, 12, 12, 3)).astype(np.float32)


def _outputs(run) -> np.ndarray:
    return np.asarray(run(X), dtype=np.float32)


def test_torch_to_keras_and_nnx_and_back_gives_identical_outputs():
    source, run_source = torch_cnn()
    expected = _outputs(run_source)
    for build in (keras_cnn, nnx_cnn):
        middle, run_middle = build()
        report = transfer(source, middle)
        assert len(report.rows) == 6
        np.testing.assert_allclose(_outputs(run_middle), expected, rtol=1e-4, atol=1e-5)
        back, run_back = torch_cnn()
        transfer(middle, back)
        for a, b in zip(source.parameters(), back.parameters()):
            assert a.detach().numpy().tobytes() == b.detach().numpy().tobytes()
        assert _outputs(run_back).tobytes() == expected.tobytes()


def test_sources_state_dict_and_keras_weights_file(tmp_path):
    source, run_source = torch_cnn()
    target, run_target = nnx_cnn()
    transfer(source.state_dict(), target)
    np.testing.assert_allclose(_outputs(run_target), _outputs(run_source), rtol=1e-4, atol=1e-5)
    keras_model, _ = keras_cnn()
    transfer(source, keras_model)
    path = tmp_path / "cnn.weights.h5"
    keras_model.save_weights(path)
    fresh, _ = torch_cnn()
    with pytest.raises(TransferError, match="source_model="):
        transfer(path, fresh)
    template, _ = keras_cnn()
    transfer(path, fresh, source_model=template)
    for a, b in zip(source.parameters(), fresh.parameters()):
        assert a.detach().numpy().tobytes() == b.detach().numpy().tobytes()


def test_mismatches_are_errors_and_write_nothing():
    torch = pytest.importorskip("torch")
    source, _ = torch_cnn()
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 5),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
    before = [p.detach().clone() for p in other.parameters()]
    with pytest.raises(TransferError, match="does not match target '2.weight'"):
        transfer(source, other)
    shorter = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3))
    with pytest.raises(TransferError, match="unpaired in the source"):
        transfer(source, shorter)
    assert all(a.equal(b) for a, b in zip(before, other.parameters()))
