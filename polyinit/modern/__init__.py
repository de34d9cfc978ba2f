"""Depth- and width-aware schemes of modern transformers and residual nets, as portable rule sets.

Each function takes a ``ModelContext`` (``polyinit.context.model_context(model)``, or a model,
from which the context is derived) and returns a ``Rules`` set made of plain specs: no backend
code, so the same call works on a torch, Keras, nnx or linen model of the same architecture.

    from polyinit import modern
    from polyinit.rules import apply
    report = apply(model, modern.gpt2(model, seed=0))

Notation: d the width (d_model), L the number of residual blocks, sigma the base std; N(0, s^2)
has std s. Parameters a scheme does not speak about (pooler, classifier heads, ...) are left as
the framework made them and reported as unmatched. Several schemes also change the forward pass
(muP's 1/d attention and readout multipliers, DeepNet's alpha, u-muP's op scales, T-Fixup's
removed LayerNorm): those are not initialisation, so they are named in the docstrings but not
applied. Every argument is checked first (``polyinit.modern._args``): a misspelt keyword, a
float or bool depth, a depth mapping naming a stack the model lacks is a ``PolyinitError``.

| scheme | formula (std) | reference |
|---|---|---|
| ``gpt2`` | all weights sigma = 0.02; residual outputs 0.02 / sqrt(2 L) | nanoGPT ``model.py``; transformers ``GPT2PreTrainedModel._init_weights`` |
| ``megatron`` | sigma; output layers sigma / sqrt(m L), m = 2 | megatron-core ``init_method_normal`` / ``scaled_init_method_normal`` |
| ``olmo`` | OLMo-1 ``mitchell``/``full_megatron``/``normal``; olmo-core ``normal``/``llama``/``llama_depth``/``fan_in`` | OLMo ``olmo/initialization.py``; olmo-core ``InitMethod`` |
| ``llama_depth`` | sigma; wo, w2, w3 of block i sigma / sqrt(2 (i+1)); embeddings 1; head d^-1/2 | torchtitan llama3 ``_depth_init``; olmo-core ``llama_depth`` |
| ``mup`` | base initializer on the base shape; hidden / sqrt(width_mult) | microsoft/mup ``mup/init.py`` |
| ``u_mup`` | every weight N(0, 1) (scales live in the ops) | graphcore-research/unit-scaling |
| ``fixup`` | branch convs He(fan_out) * L^(-1/(2m-2)); last conv of each branch 0; final fc 0 | hongyi-zhang/Fixup |
| ``t_fixup`` | xavier (q/k/v gain 1/sqrt 2), then enc 0.67 N^(-1/4), dec (9M)^(-1/4), v x sqrt 2 | layer6ai-labs/T-Fixup |
| ``deepnet`` | ``paper``: xavier_normal, ffn, v, out x beta; ``torchscale``: its reset, then / init_scale | arXiv:2203.00555; microsoft/torchscale |
| ``t5`` | emb f; q f/sqrt(d d_kv); k, v f/sqrt(d); o f/sqrt(h d_kv); wi f/sqrt(d); wo f/sqrt(d_ff) | transformers ``T5PreTrainedModel._init_weights`` |
| ``small_init`` / ``wang`` | sqrt(2 / (5 d)); outputs 2 / (L sqrt(d)) (``neox``), 1 / (L sqrt(d)) (``litgpt``) | gpt-neox ``init_functions.py``; litgpt ``pretrain.initialize_weights`` |
| ``small_init_emb`` | embedding U(+-1e-4) | BlinkDL/SmallInitEmb |
| ``modded_nanogpt`` | hidden U(+-sqrt(3) 0.5/sqrt(d)); MLP out 0; readout 0.005 | KellerJordan/modded-nanogpt |
"""  # noqa: E501  # the reference table's Markdown rows cannot wrap

from __future__ import annotations

from polyinit.modern.deepnet import (
    DEEPNET_ARCHITECTURES,
    DEEPNET_REFERENCES,
    deepnet,
    deepnet_coefficients,
)
from polyinit.modern.encdec import t5, t_fixup
from polyinit.modern.fixup import fixup
from polyinit.modern.gpt import (
    WANG_VARIANTS,
    gpt2,
    megatron,
    modded_nanogpt,
    small_init,
    small_init_emb,
    u_mup,
    wang,
)
from polyinit.modern.mup import MUP_CLASSES, mup
from polyinit.modern.olmo import (
    GENERATIONS,
    INIT_FNS,
    LLAMA_REFERENCES,
    llama_depth,
    olmo,
)

__all__ = [
    "DEEPNET_ARCHITECTURES",
    "DEEPNET_REFERENCES",
    "GENERATIONS",
    "INIT_FNS",
    "LLAMA_REFERENCES",
    "MUP_CLASSES",
    "WANG_VARIANTS",
    "deepnet",
    "deepnet_coefficients",
    "fixup",
    "gpt2",
    "llama_depth",
    "megatron",
    "modded_nanogpt",
    "mup",
    "olmo",
    "small_init",
    "small_init_emb",
    "t5",
    "t_fixup",
    "u_mup",
    "wang",
]
