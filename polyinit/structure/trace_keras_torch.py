"""Keras 3 on the torch backend, traced by the torch tracer.

On this backend a Keras layer is a ``torch.nn.Module`` and a Keras variable holds a
``torch.nn.Parameter`` (``variable.value``); every op a layer calls reaches torch through that
parameter, so one forward pass under the torch recorder (``polyinit.structure.trace_torch``)
sees the same graph as on TensorFlow or JAX. Its parameter nodes are named by the Keras walker's
``Param.path`` of the variable that holds the tensor (tied weights: the walker's first path), not
by ``named_parameters()``, whose names Keras builds from its own ``ParameterDict`` keys.

The example input is the model's declared inputs (``polyinit.structure.keras_input``), as torch
tensors on the device of the model's variables.

>>> g = trace(keras_model, example_input(keras_model))                 # doctest: +SKIP
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from polyinit.structure.fuse_norms import fuse_norms
from polyinit.structure.graph import Graph


def is_keras_torch(model: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.layers.Layer) and keras.backend.backend() == "torch"


def example_input(model: Any) -> Any | None:
    """The model's declared inputs as numpy arrays (converted to tensors when traced), or None."""
    from polyinit.structure.keras_input import example_input as keras_example

    return keras_example(model)


def _paths(model: Any) -> dict:
    """id(torch tensor of a variable) -> the Keras walker's path of that variable."""
    from polyinit.frameworks.keras import KerasWalker

    walker = KerasWalker()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unregistered layer types: reported by model_context, not here
        walker.walk(model)
    paths: dict = {}
    for path, variable in walker.variables.items():
        paths.setdefault(id(variable.value), path)
    return paths


def _device(model: Any) -> Any:
    import torch

    for variable in model.weights:
        return variable.value.device
    return torch.device("cpu")


def trace(model: Any, example_input: Any) -> Graph:
    """The graph of the Keras ``model`` called on ``example_input`` (an array, a tuple of
    positional inputs, or a dict of named inputs; numpy or torch) with ``training=False``.
    ``input`` nodes are numbered in ``keras.tree.flatten(example_input)`` order."""
    import keras
    import torch

    from polyinit.structure.keras_input import array_leaves
    from polyinit.structure.trace_torch import record

    if not array_leaves(example_input):
        raise TypeError(
            f"expected an array, or a tuple, list or dict of arrays, received a {type(example_input).__name__}"
        )
    device = _device(model)
    inputs = keras.tree.map_structure(lambda x: torch.as_tensor(x, device=device), example_input)
    positional = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    # Keras and keras-hub write some norms out op by op (an RMSNorm's mean of squares): fused as
    # on the other backends
    variable = keras.Variable

    def unwrap(value: Any) -> Any:  # ``x * layer.scale``: the variable reaches torch as itself
        return value.value if isinstance(value, variable) else value

    forward = lambda: model(*positional, training=False)
    return fuse_norms(record(_paths(model), keras.tree.flatten(inputs), forward, unwrap))
