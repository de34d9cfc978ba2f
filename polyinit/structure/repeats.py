"""Repeated Keras layers built into a TensorFlow graph once (the TensorFlow tracer's speed).

Building a ``tf.function`` graph costs about half a millisecond of Python per op, and a
transformer is the same block L times: keras-hub's GPT-2 124M is 12 identical decoder layers, 90%
of its 2,000 ops. Two layers are the same computation when they have the same class, the same
configuration (``get_config()`` but the name), the same scalar attributes in every sublayer (but
names and paths), the same variables (shapes, dtypes, trainable) and are called on inputs of the
same shapes and dtypes with the same non-tensor arguments. The first such call of a group runs for
real and its ops are remembered (the template); each later one runs a stub that only makes zeros
of the template's output shapes, and the converter replays the template's ops with the stub's
inputs and the later layer's variables (``Call.replay``): the same polyinit graph, with 1/L of
the TensorFlow graph to build. A call whose signature differs runs for real.

>>> sharing = Repeats(model, variable_paths)                             # doctest: +SKIP
>>> with sharing.installed(): concrete = tf.function(f).get_concrete_function(x)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_IDENTITY_ATTRS = ("name", "_name", "_path", "path", "_parent_path")


@dataclass
class Call:
    """One call of a grouped layer in the graph: the ops it created (indices into the graph's
    operations, ``[start, stop)``), the tensors it was given and gave back (flattened), and
    for a stub, its template and the variable paths it reads instead of the template's."""

    start: int
    stop: int
    inputs: list
    outputs: list
    template: Call | None = None
    paths: dict = field(default_factory=dict)  # template variable path -> this layer's path


def signature(layer: Any) -> Any:
    """What decides the computation of ``layer`` but its inputs: class, configuration without
    the name, scalar attributes of every sublayer but names and paths, variable shapes."""
    try:
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
    except Exception:  # a layer without a serialisable config: never shared
        return None
    scalars = []
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        own = sorted(
            (k, v)
            for k, v in vars(sub).items()
            if k not in _IDENTITY_ATTRS and isinstance(v, (int, float, str, bool, type(None)))
        )
        scalars.append((type(sub).__qualname__, tuple(own)))
    variables = tuple((tuple(v.shape), str(v.dtype), bool(v.trainable)) for v in layer.weights)
    return repr((type(layer).__module__, type(layer).__qualname__, sorted(config.items()), scalars, variables))


def _leaves(value: Any) -> list:
    import tensorflow as tf

    return tf.nest.flatten(value, expand_composites=False)


def _blocks(model: Any) -> Iterator[Any]:
    """The layers of ``model`` and of the models nested in it (a task model's backbone), never a
    model itself: a stub never holds another stub."""
    import keras

    for layer in getattr(model, "layers", ()):
        if isinstance(layer, keras.Model):
            yield from _blocks(layer)
        else:
            yield layer


def _call_key(args: tuple, kwargs: dict) -> Any:
    """Shapes and dtypes of the tensor arguments, the values of the others."""
    import tensorflow as tf

    key: list[tuple] = []
    for leaf in _leaves((args, kwargs)):
        if isinstance(leaf, tf.Tensor):
            key.append(("tensor", tuple(leaf.shape.as_list()), leaf.dtype.name))
        else:
            key.append(("value", repr(leaf)))
    return tuple(key)


class Repeats:
    """The groups of identical layers among ``model``'s layers and those of the models nested in
    it (two or more with weights and one signature) and the calls recorded while ``installed``."""

    def __init__(self, model: Any, variable_paths: dict):
        self.paths = variable_paths  # id(variable) -> walker path
        groups: dict = {}
        unique = {id(layer): layer for layer in _blocks(model)}  # a shared layer is one layer
        for layer in unique.values():
            if layer.weights:
                sig = signature(layer)
                if sig is not None:
                    groups.setdefault(sig, []).append(layer)
        self.groups = [layers for layers in groups.values() if len(layers) > 1]
        self.calls: list[Call] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Every grouped layer's ``call`` recorded (the first call per group and input key) or
        stubbed (later ones) while the graph is built; restored after."""
        patched = []
        try:
            for group in self.groups:
                templates: dict = {}  # call key -> (layer, Call, outputs)
                for layer in group:
                    wrapper = self._wrapper(layer, layer.call, templates)
                    object.__setattr__(layer, "call", wrapper)
                    patched.append(layer)
            yield
        finally:
            for layer in patched:
                object.__delattr__(layer, "call")

    def _wrapper(self, layer: Any, call: Any, templates: dict) -> Any:
        import tensorflow as tf

        def run(*args: Any, **kwargs: Any) -> Any:
            graph = tf.compat.v1.get_default_graph()
            key = _call_key(args, kwargs)
            start = len(graph.get_operations())
            tensors = [t for t in _leaves((args, kwargs)) if isinstance(t, tf.Tensor)]
            known = templates.get(key)
            if known is None or not tf.inside_function():
                outputs = call(*args, **kwargs)
                record = Call(start, len(graph.get_operations()), tensors, _tensors(outputs))
                if tf.inside_function() and known is None:
                    templates[key] = (layer, record, outputs)
                    self.calls.append(record)
                return outputs
            template_layer, template, template_outputs = known
            outputs = tf.nest.map_structure(
                lambda t: tf.zeros(t.shape, t.dtype) if isinstance(t, tf.Tensor) else t, template_outputs
            )
            remap = {
                self.paths[id(a)]: self.paths[id(b)]
                for a, b in zip(template_layer.weights, layer.weights)
                if id(a) in self.paths and id(b) in self.paths
            }
            stub = Call(start, len(graph.get_operations()), tensors, _tensors(outputs), template, remap)
            self.calls.append(stub)
            return outputs

        return run

    def stubs(self) -> dict:
        """First op index of each stub -> its Call."""
        return {c.start: c for c in self.calls if c.template is not None}


def _tensors(outputs: Any) -> list:
    import tensorflow as tf

    return [t if isinstance(t, tf.Tensor) else None for t in _leaves(outputs)]
