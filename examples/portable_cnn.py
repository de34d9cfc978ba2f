"""The same CNN written in torch, Keras and Flax (nnx), initialised portably: the same rules and
seed give the same float32 weights bit for bit in all three, so the same input gives the same
outputs to float32 rounding. Then the torch weights are transferred into a fresh Keras model.

    python examples/portable_cnn.py
"""

import jax
import keras
import numpy as np
import torch
from flax import nnx

import polyinit as pi
from polyinit.rules import Rules, apply, kind, role
from polyinit.transferring import transfer

RULES = Rules(
    [
        (kind("conv") & role("weight"), pi.he_normal()),
        (kind("dense") & role("weight"), pi.glorot_uniform()),
        (role("bias"), pi.Uniform(low=-0.1, high=0.1)),
    ],
    seed=2024,
)

torch_cnn = torch.nn.Sequential(
    torch.nn.Conv2d(3, 8, 3),
    torch.nn.ReLU(),
    torch.nn.Conv2d(8, 16, 3),
    torch.nn.ReLU(),
    torch.nn.AdaptiveAvgPool2d(1),
    torch.nn.Flatten(),
    torch.nn.Linear(16, 10),
)
keras_cnn = keras.Sequential(
    [
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ]
)


class FlaxCNN(nnx.Module):
    def __init__(self, rngs):
        self.conv1 = nnx.Conv(3, 8, (3, 3), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(8, 16, (3, 3), padding="VALID", rngs=rngs)
        self.head = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        return self.head(jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(x)))).mean(axis=(1, 2)))


flax_cnn = FlaxCNN(nnx.Rngs(0))
for model in (torch_cnn, keras_cnn, flax_cnn):
    apply(model, RULES, portable=True)

x = np.random.default_rng(0).standard_normal((4, 12, 12, 3)).astype(np.float32)  # NHWC
outputs = {
    "torch": torch_cnn(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy(),
    "keras": keras.ops.convert_to_numpy(keras_cnn(x)),
    "flax": np.asarray(flax_cnn(x)),
}
w_torch = torch_cnn[0].weight.detach().numpy()  # (out, in, kh, kw)
w_keras = np.transpose(keras.ops.convert_to_numpy(keras_cnn.layers[0].kernel), (3, 2, 0, 1))
print("first conv weights bit-identical (torch vs Keras):", w_torch.tobytes() == w_keras.tobytes())
for name in ("keras", "flax"):
    print(f"max |{name} - torch| output difference: {np.abs(outputs[name] - outputs['torch']).max():.2e}")
    assert np.allclose(outputs[name], outputs["torch"], rtol=1e-4, atol=1e-5)

fresh = keras.Sequential(
    [
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ]
)
print(transfer(torch_cnn, fresh))
print(
    "after transfer, max |Keras - torch|:",
    f"{np.abs(keras.ops.convert_to_numpy(fresh(x)) - outputs['torch']).max():.2e}",
)
