"""keras-hub backbones from tiny configs and their name-blind copies, shared by the Keras structure
tests on the TensorFlow backend and the subprocesses that run them on the JAX and torch backends
(this module imports keras and keras_hub, not TensorFlow; the backend is the process's)."""

from __future__ import annotations

import contextlib
import itertools

import keras

L = 2  # blocks in every tiny keras-hub model
NAMES = ("bert", "gemma", "gpt2", "llama")


def build(name: str):
    import keras_hub as hub

    m = hub.models
    if name == "gpt2":
        return m.GPT2Backbone(
            vocabulary_size=50, num_layers=L, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=8
        )
    if name == "bert":
        return m.BertBackbone(
            vocabulary_size=50, num_layers=L, num_heads=2, hidden_dim=16, intermediate_dim=32, max_sequence_length=8
        )
    if name == "llama":
        return m.LlamaBackbone(
            vocabulary_size=50,
            num_layers=L,
            num_query_heads=4,
            num_key_value_heads=2,
            hidden_dim=16,
            intermediate_dim=32,
        )
    return m.GemmaBackbone(
        vocabulary_size=50,
        num_layers=L,
        num_query_heads=2,
        num_key_value_heads=1,
        hidden_dim=16,
        intermediate_dim=32,
        head_dim=8,
    )


@contextlib.contextmanager
def meaningless_layer_names():
    """Every layer built inside gets the name n0, n1, ... whatever name its code asks for (same
    classes, same structure): variable paths then carry no meaning at all."""
    original = keras.layers.Layer.__init__
    counter = itertools.count()

    def renamed(self, *args, **kwargs):
        kwargs["name"] = f"n{next(counter)}"
        original(self, *args, **kwargs)

    keras.layers.Layer.__init__ = renamed
    try:
        yield
    finally:
        keras.layers.Layer.__init__ = original
