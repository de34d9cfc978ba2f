"""Push a standard-normal batch through a stack of a framework's real layers, built with the
framework's own defaults, and record Var of each layer's output (for ``polyinit compare``).

The stacks are the ones ``polyinit.propagation`` describes: layer 1 n_in -> n_out, later layers
n_out -> n_out, the activation between layers; conv layers use 'valid' padding on an input large
enough that the last layer still has 4 outputs per axis, and a transposed conv's output is cropped
to the positions that see a full kernel, so borders never enter; recurrent layers run one time step
from the zero state; batchnorm uses batch statistics (training mode); an embedding is followed by
the framework's dense layers.

Randomness is explicit and the caller's global generators are left as they were: torch and MXNet
layers are built inside a saved-and-restored global state, Keras layers take their seeds from
Python's ``random`` (saved and restored), Flax from ``nnx.Rngs(seed)``, Haiku from a key.
MXNet has no way to read its global generator's state back, so an MXNet measurement reseeds it.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

REPEATS = 4
TOKENS = 16


@dataclass
class Measured:
    linear: list[float]  # Var after each layer, linear stack, mean over REPEATS networks
    activated: list[float]  # the same with the activation between layers
    weight: list[float]  # first layer's first weight (<= 20000 values) and bias, for the picture
    bias: list[float]


@dataclass(frozen=True)
class Setup:
    kind: str
    n_in: int
    n_out: int
    depth: int
    kernel: int
    heads: int
    activation: str

    @property
    def rank(self) -> int:
        return {"conv1d": 1, "conv2d": 2, "conv3d": 3, "conv_transpose": 2}.get(self.kind, 0)


def inputs(setup: Setup, seed: int) -> np.ndarray:
    """float32 standard normals shaped for the stack (channels last), or int indices for embedding."""
    rng = np.random.default_rng(seed)
    if setup.kind == "embedding":
        return rng.integers(0, setup.n_in, size=1024)
    if setup.kind == "mha":
        return rng.standard_normal((64, TOKENS, setup.n_in)).astype(np.float32)
    if setup.kind in ("lstm", "gru"):
        return rng.standard_normal((1024, 1, setup.n_in)).astype(np.float32)
    if setup.rank:
        side = 4 + setup.depth * (setup.kernel - 1)
        batch = max(1, min(16, (1 << 21) // (side**setup.rank * setup.n_in)))
        return rng.standard_normal((batch,) + (side,) * setup.rank + (setup.n_in,)).astype(np.float32)
    return rng.standard_normal((1024, setup.n_in)).astype(np.float32)


def _widths(setup: Setup, index: int) -> tuple[int, int]:
    if setup.kind in ("batchnorm", "layernorm", "mha"):
        return setup.n_in, setup.n_in
    return (setup.n_in if index == 0 else setup.n_out), setup.n_out


def _crop(k: int, rank: int) -> tuple:
    """Channels-last slices keeping the positions a stride-1 transposed conv fed a full kernel."""
    return (slice(None),) + (slice(k - 1, -(k - 1) if k > 1 else None),) * rank + (slice(None),)


def _first_arrays(arrays: list[np.ndarray]) -> tuple[list[float], list[float]]:
    weight = next((a for a in arrays if a.ndim >= 2), np.zeros(0))
    bias = next((a for a in arrays if a.ndim == 1), np.zeros(0))
    return [float(v) for v in weight.ravel()[:20000]], [float(v) for v in bias.ravel()[:20000]]


def _stack(layers: list[Callable], x: Any, phi: Callable, to_numpy: Callable) -> list[float]:
    out, y = [], x
    for index, call in enumerate(layers):
        y = call(y if index == 0 else phi(y))
        out.append(float(np.var(to_numpy(y).astype(np.float64))))
    return out


def jax_activations() -> dict[str, Callable]:
    """The activations compare puts between layers, as JAX functions, for the three JAX measurers
    (Flax nnx, Haiku, Equinox): name -> elementwise function. GELU is the exact (erf) form, as
    torch's ``F.gelu`` default, so every framework's stack sees the same phi. JAX is imported here,
    not at module import, so ``import polyinit`` stays framework-free.

    Example: ``jax_activations()["relu"](jnp.array([-1.0, 2.0]))`` is ``[0.0, 2.0]``.
    """
    import jax
    import jax.numpy as jnp

    return {
        "linear": lambda t: t,
        "relu": jax.nn.relu,
        "tanh": jnp.tanh,
        "gelu": lambda t: jax.nn.gelu(t, approximate=False),
        "silu": jax.nn.silu,
        "sigmoid": jax.nn.sigmoid,
    }


@contextlib.contextmanager
def python_random(seed: int) -> Iterator[None]:
    """Python's global ``random`` seeded for the block and restored after it."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def _measured() -> dict:
    """name -> framework record, for the records that carry a measurer (``polyinit/frameworks``)."""
    from polyinit.frameworks import frameworks

    return {f.name: f for f in frameworks() if f.measurer is not None}


def __getattr__(name: str) -> Any:
    # MEASURERS and MODULES (the module a measurer imports) are derived from the framework records.
    if name == "MEASURERS":
        return {key: f.measurer for key, f in _measured().items()}
    if name == "MODULES":
        return {key: f.module for key, f in _measured().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def measure(framework: str, setup: Setup, seed: int = 0) -> Optional[Measured]:
    """Var per layer (linear and activated stacks, mean over REPEATS networks from seeds seed,
    seed + 1, ...) and the first network's first weight and bias; None without a measurer."""
    record = _measured().get(framework)
    if record is None:
        return None
    runs = [record.measurer(setup, seed + r, inputs(setup, seed + r)) for r in range(REPEATS)]
    weight, bias = _first_arrays(runs[0][2])
    return Measured(
        np.mean([r[0] for r in runs], axis=0).tolist(), np.mean([r[1] for r in runs], axis=0).tolist(), weight, bias
    )
