"""Model structure from what the model computes: a traced graph and the passes that read sites,
blocks, stacks and logical parameters off it (see ``polyinit.structure.graph``).

``trace(model, example_input=None)`` runs one forward pass of ``model`` through its framework's
tracer and returns a :class:`Graph`; ``find_structure(graph, params)`` reads sites off it.
A tracer module exposes ``example_input(model) -> Optional[Any]`` (an input derived from the
model itself, None when it cannot be) and ``trace(model, example_input) -> Graph``, and may expose
``silent(model) -> Optional[str]`` (why the model cannot be traced: torch's sharded DTensor
parameters, so names are used instead of an error); importing
this package imports no framework (the tracers are imported on first use).

>>> sorted(TRACERS)
['flax', 'keras', 'linen', 'torch']
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from polyinit.structure.graph import Graph
from polyinit.structure.passes import ParamStructure, Part, Structure, find_structure

__all__ = [
    "TRACERS",
    "Graph",
    "ParamStructure",
    "Part",
    "Structure",
    "StructureUnavailable",
    "derive_input",
    "find_structure",
    "trace",
    "tracer_for",
]

# framework name (``polyinit.frameworks.framework_for(model).name``) -> tracer module
# (Keras dispatches on its backend inside trace_tf: TensorFlow there, JAX to trace_jax, torch to
# trace_keras_torch; a Keras model on torch is a Keras model. A (linen module, variables) pair or a
# bound linen module goes to trace_jax, see tracer_for.)
TRACERS = {
    "torch": "polyinit.structure.trace_torch",
    "flax": "polyinit.structure.trace_jax",
    "linen": "polyinit.structure.trace_jax",
    "keras": "polyinit.structure.trace_tf",
}


class StructureUnavailable(Exception):
    """No tracer for this framework (an internal signal: callers fall back to name hints)."""


def tracer_for(model: Any) -> ModuleType:
    """The tracer module of ``model``'s framework; raises ``StructureUnavailable`` when none."""
    from polyinit.frameworks import framework_for
    from polyinit.structure.trace_jax import linen_pair

    if linen_pair(model) is not None:  # (linen module, variables) or a bound module: its forward pass
        return importlib.import_module(TRACERS["linen"])
    name = framework_for(model).name
    module = TRACERS.get(name)
    if module is None:
        raise StructureUnavailable(f"no structure tracer for {name} models")
    try:
        return importlib.import_module(module)
    except ImportError as problem:  # a tracer not written yet, or its framework missing
        raise StructureUnavailable(f"the {name} tracer cannot be imported: {problem}") from None


def derive_input(model: Any) -> Any | None:
    """An example input derived from ``model`` (its config, input shape...), or None."""
    return tracer_for(model).example_input(model)


def trace(model: Any, example_input: Any | None = None) -> Graph:
    """One forward pass of ``model`` on ``example_input`` (derived from the model when None),
    recorded as a :class:`Graph` whose parameter nodes carry the walker's ``Param.path``."""
    tracer = tracer_for(model)
    if example_input is None:
        example_input = tracer.example_input(model)
    return tracer.trace(model, example_input)
