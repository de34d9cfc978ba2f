"""The JAX tracer: one forward pass of an nnx module, a linen module with its variables, or a Keras
model on the JAX backend, as a :class:`~polyinit.structure.graph.Graph` read off its jaxpr.

A parameter is identified by the jaxpr invar it arrives through: the forward pass is written as a
pure function of the model's arrays (``nnx.split``/``merge``, ``module.apply(variables, ...)``,
Keras' ``stateless_call``), so every read of a weight in the jaxpr is a read of that invar, and the
invar is named by the polyinit walker's ``Param.path`` for the variable (tied weights: the first
path the walker gives, the one its record carries). Arrays the walker does not record (integer
counters, RNG keys, Keras' seed states) are ``const`` nodes.

A linen "model" is the pair its forward pass needs: a bound module (``module.bind(variables)``)
or a ``(module, variables)`` tuple; the paths are those of the walker on ``variables``.

>>> from flax import nnx                                               # doctest: +SKIP
>>> g = trace(nnx.Linear(4, 8, rngs=nnx.Rngs(0)), jnp.ones((2, 4)))   # doctest: +SKIP
>>> [n.op for n in g.users(g.params()["kernel"])]                      # doctest: +SKIP
['contract']
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from polyinit.structure.fuse_norms import fuse_norms
from polyinit.structure.graph import Graph
from polyinit.structure.jaxpr import to_graph


def is_nnx(model: Any) -> bool:
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and isinstance(model, nnx.Module)


def linen_pair(model: Any) -> tuple[Any, Any] | None:
    """(module, variables) for a bound linen module or a ``(module, variables)`` tuple, else None."""
    linen = sys.modules.get("flax.linen")
    if linen is None:
        return None
    if isinstance(model, linen.Module) and model.scope is not None:
        return model.unbind()
    if isinstance(model, tuple) and len(model) == 2 and isinstance(model[0], linen.Module):
        return model
    return None


def is_keras_jax(model: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.layers.Layer) and keras.backend.backend() == "jax"


def example_input(model: Any) -> Any | None:
    """An input one forward pass can run on, where the model says what it takes: a Keras model's
    declared inputs (``polyinit.structure.keras_input``); for nnx and linen, what the first layer
    reads (``first_layer_input``); else None."""
    if is_keras_jax(model):
        from polyinit.structure.keras_input import example_input as keras_example

        return keras_example(model)
    if is_nnx(model):
        from polyinit.frameworks.flax import NnxWalker

        if not callable(model):  # a container of parameters with no forward pass of its own
            return None
        walker: Any = NnxWalker()
    else:
        pair = linen_pair(model)
        if pair is None or not callable(pair[0]):
            return None
        from polyinit.frameworks.flax import LinenWalker

        walker, model = LinenWalker(), pair[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unregistered module types: reported by model_context, not here
        return first_layer_input(walker.walk(model))


def silent(model: Any) -> str | None:
    """Why ``model`` has no forward pass to trace: a linen variables tree alone (its module holds
    the computation), or None."""
    if is_nnx(model) or is_keras_jax(model) or linen_pair(model) is not None:
        return None
    return (
        "a linen variables tree has no forward pass; pass model_context((module, variables)) or "
        "model_context(module.bind(variables)) to read sites from its structure"
    )


TOKENS = 8  # a short input: structure does not depend on the sequence length


def first_layer_input(params: Sequence) -> Any | None:
    """An input for a module whose first parameter (nnx: definition order; linen: creation order,
    the order its call made them) is an embedding table, integer tokens ``arange(n) % vocab`` of
    shape (1, n), n = 8 or the fewest rows of any table (a learned position table); or a 2-D dense
    kernel, zeros of shape (1, in_features); else None.

    >>> from polyinit.params import Param
    >>> from polyinit.layout import IN_OUT
    >>> first_layer_input([Param("fc/kernel", "dense", "weight", (5, 3), IN_OUT, 0)]).shape
    (1, 5)
    """
    import jax.numpy as jnp

    from polyinit.layout import compute_fans

    first = next((p for p in params if p.role in ("weight", "embedding") and len(p.shape) >= 2), None)
    if first is None:
        return None
    tables = [p for p in params if "embedding" in (p.kind, p.role) and len(p.shape) == 2]
    if any(first is t for t in tables):
        length = min([TOKENS] + [int(t.shape[0]) for t in tables])
        return jnp.arange(length, dtype=jnp.int32)[None] % int(first.shape[0])
    if len(first.shape) == 2 and first.kind in ("dense", "other"):
        return jnp.zeros((1, compute_fans(first.shape, first.layout).fan_in), jnp.float32)
    return None


def trace(model: Any, example_input: Any) -> Graph:
    """The graph of ``model`` run on ``example_input`` (an array, a tuple of positional inputs, or
    a dict of named inputs for a Keras model). ``input`` nodes are numbered in the order of
    ``jax.tree_util.tree_leaves(example_input)``.

    >>> g = trace(model, jnp.zeros((1, 8), jnp.int32))                    # doctest: +SKIP
    """
    from polyinit.structure.keras_input import array_leaves

    if not array_leaves(example_input):
        raise TypeError(
            "expected a jax or numpy array, or a tuple, list or dict of them, "
            f"received a {type(example_input).__name__}"
        )
    if is_nnx(model):
        return _trace_nnx(model, example_input)
    pair = linen_pair(model)
    if pair is not None:
        return _trace_linen(*pair, example_input)
    if is_keras_jax(model):
        return _trace_keras(model, example_input)
    raise TypeError(
        f"trace_jax: {type(model).__name__} is not an nnx module, a bound linen module, a "
        "(linen module, variables) pair or a Keras model on the JAX backend"
    )


def _positional(example_input: Any) -> tuple:
    return tuple(example_input) if isinstance(example_input, (tuple, list)) else (example_input,)


def _jaxpr(forward: Callable, arrays: list, example_input: Any, roles: list) -> Graph:
    import jax

    inputs, treedef = jax.tree_util.tree_flatten(example_input)
    n = len(arrays)

    def flat(*leaves):
        return forward(list(leaves[:n]), jax.tree_util.tree_unflatten(treedef, leaves[n:]))

    closed = jax.make_jaxpr(flat)(*arrays, *inputs)
    return fuse_norms(to_graph(closed, roles + [("input", i) for i in range(len(inputs))]))


def _roles(identities: Sequence[int], paths: dict) -> list:
    return [("param", paths[i]) if i in paths else ("const",) for i in identities]


def _walked(walker: Any, model: Any) -> dict:
    """Walker path of each variable, by the identity of the walker's handle."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unregistered module types: reported by model_context, not here
        walker.walk(model)
    handles = getattr(walker, "variables", None) or getattr(walker, "leaves", {})
    return {id(handle): path for path, handle in handles.items()}


def _trace_nnx(model: Any, example_input: Any) -> Graph:
    import jax
    from flax import nnx

    from polyinit.frameworks.flax import NnxWalker

    paths = _walked(NnxWalker(), model)
    graphdef, state = nnx.split(model)
    variables = jax.tree_util.tree_leaves(state, is_leaf=lambda v: isinstance(v, nnx.Variable))
    leaves, treedef = jax.tree_util.tree_flatten(state)
    if len(leaves) != len(variables):
        raise TypeError("trace_jax: an nnx Variable holds more than one array; cannot name its parameters")

    def forward(arrays, inputs):
        return nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, arrays))(*_positional(inputs))

    return _jaxpr(forward, leaves, example_input, _roles([id(v) for v in variables], paths))


def _trace_linen(module: Any, variables: Any, example_input: Any) -> Graph:
    from polyinit.frameworks.flax import _has_collections, flatten, rebuild

    paths = [path for path, _ in flatten(variables)]
    floating = {path for path, leaf in flatten(variables) if "float" in str(leaf.dtype)}
    arrays = [leaf for _, leaf in flatten(variables)]
    wrapped = _has_collections(variables)

    def forward(values, inputs):
        tree = rebuild(variables, dict(zip(paths, values)))
        return module.apply(tree if wrapped else {"params": tree}, *_positional(inputs))

    roles = [("param", p) if p in floating else ("const",) for p in paths]
    return _jaxpr(forward, arrays, example_input, roles)


def _trace_keras(model: Any, example_input: Any) -> Graph:
    from polyinit.frameworks.keras import KerasWalker

    paths = _walked(KerasWalker(), model)
    trainable, fixed = list(model.trainable_variables), list(model.non_trainable_variables)

    def forward(values, inputs):
        out, _ = model.stateless_call(
            values[: len(trainable)], values[len(trainable) :], *_positional(inputs), training=False
        )
        return out

    arrays = [v.value for v in trainable + fixed]
    return _jaxpr(forward, arrays, example_input, _roles([id(v) for v in trainable + fixed], paths))
