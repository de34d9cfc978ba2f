"""An example input for a Keras model, from what the model declares (shared by the TF and JAX
tracers): a functional model's (or keras-hub backbone's) ``inputs``, with each unknown axis set to
1 for the batch and ``LENGTH`` (at most a keras-hub backbone's ``max_sequence_length``) for every
other one, filled with ones (a valid token id and an all-true padding mask). A subclassed model
declares no inputs: None.

>>> import keras                                                        # doctest: +SKIP
>>> x = keras.Input((None,), dtype="int32", name="tokens")              # doctest: +SKIP
>>> example_input(keras.Model(x, keras.layers.Embedding(10, 4)(x))).shape  # doctest: +SKIP
(1, 8)
"""

from __future__ import annotations

from typing import Any

LENGTH = 8


def example_input(model: Any) -> Any | None:
    """Numpy arrays in the structure of the model's declared inputs, or None where it declares none."""
    import numpy as np

    try:
        declared = model.input  # functional models: the structure they were built with (a dict for keras-hub)
    except (AttributeError, ValueError):
        return None
    if declared is None:
        return None

    length = min(LENGTH, getattr(model, "max_sequence_length", None) or LENGTH)  # keras-hub position tables

    def array(spec: Any) -> Any:
        shape = tuple(d if d is not None else (1 if axis == 0 else length) for axis, d in enumerate(spec.shape))
        return np.ones(shape, dtype=str(spec.dtype))

    import keras

    return keras.tree.map_structure(array, declared)


def array_leaves(example_input: Any) -> bool:
    """True when ``example_input`` is an array or a (nested) tuple, list or dict whose leaves all are."""
    if isinstance(example_input, dict):
        return bool(example_input) and all(array_leaves(v) for v in example_input.values())
    if isinstance(example_input, (tuple, list)):
        return bool(example_input) and all(array_leaves(v) for v in example_input)
    return hasattr(example_input, "shape") and hasattr(example_input, "dtype")
