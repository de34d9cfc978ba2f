"""Small models in each framework for the examples: the same two-layer MLP (20 -> 30 -> 5)."""

import numpy as np


def models():
    """(framework, model) pairs for every framework installed here."""
    out = []
    try:
        import torch

        torch.manual_seed(0)
        out.append(("torch", torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 5))))
    except ImportError:
        pass
    try:
        import keras

        out.append(("keras", keras.Sequential([keras.Input((20,)), keras.layers.Dense(30), keras.layers.Dense(5)])))
    except ImportError:
        pass
    try:
        from flax import nnx

        class MLP(nnx.Module):
            def __init__(self, rngs):
                self.Dense_0 = nnx.Linear(20, 30, rngs=rngs)
                self.Dense_1 = nnx.Linear(30, 5, rngs=rngs)

        out.append(("flax", MLP(nnx.Rngs(0))))
    except ImportError:
        pass
    try:
        import mxnet as mx

        net = mx.gluon.nn.HybridSequential()
        net.add(mx.gluon.nn.Dense(30, in_units=20), mx.gluon.nn.Dense(5, in_units=30))
        net.initialize()
        out.append(("mxnet", net))
    except (ImportError, AttributeError):
        # Without the real mxnet, MXNet-style parameters are a name -> array dict.
        out.append(
            (
                "mxnet",
                {
                    "dense0_weight": np.zeros((30, 20), np.float32),
                    "dense0_bias": np.zeros(30, np.float32),
                    "dense1_weight": np.zeros((5, 30), np.float32),
                    "dense1_bias": np.zeros(5, np.float32),
                },
            )
        )
    return out
