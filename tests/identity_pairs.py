"""Pairs of implementations of one architecture by different authors (issue 21), built from tiny
configs (never downloaded): transformers' GPT-2, BERT and Llama against keras-hub's GPT2Backbone,
BertBackbone and LlamaBackbone. Each pair computes the same function when the weights are mapped
as keras-hub's own converters (keras_hub/src/utils/transformers/convert_*.py) map HF weights:
c_attn's columns [0:E], [E:2E], [2E:3E] are q, k, v reshaped to (E, heads, head_dim); a Linear's
(out, in) weight transposed and reshaped; norms and embeddings copied.

Run as a script (``python identity_pairs.py``) it checks every pair under the Keras backend of
``KERAS_BACKEND`` and prints one line per check: the JAX-backend test runs it in a subprocess.
"""

from __future__ import annotations

import numpy as np

NAMES = ("gpt2", "bert", "llama")
IDS = np.array([[3, 7, 1, 9, 4, 2], [5, 5, 8, 0, 1, 6]])


def _transformers():
    """transformers with its optional torchvision integration off (as tests/test_rules_real_models
    does): PyPI's torchvision does not load beside this CPU torch and aborts the process."""
    from transformers import utils
    from transformers.utils import import_utils

    for module in (utils, import_utils):
        module.is_torchvision_available = lambda: False
        module.is_torchvision_v2_available = lambda: False
    import transformers

    return transformers


def hf_model(name: str, layers: int = 2):
    import torch

    T = _transformers()

    torch.manual_seed(0)
    if name == "gpt2":
        config = T.GPT2Config(
            n_layer=layers,
            n_head=4,
            n_embd=16,
            vocab_size=50,
            n_positions=16,
            bos_token_id=0,
            eos_token_id=0,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
        return T.GPT2Model(config).eval()
    if name == "bert":  # keras-hub's BERT uses the tanh GELU: "gelu_new" is the same function
        config = T.BertConfig(
            num_hidden_layers=layers,
            num_attention_heads=4,
            hidden_size=16,
            intermediate_size=32,
            vocab_size=50,
            max_position_embeddings=16,
            type_vocab_size=2,
            hidden_act="gelu_new",
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        return T.BertModel(config).eval()
    config = T.LlamaConfig(
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_size=16,
        intermediate_size=32,
        vocab_size=50,
        max_position_embeddings=16,
        rms_norm_eps=1e-6,
        bos_token_id=0,
        eos_token_id=0,
    )
    return T.LlamaModel(config).eval()


def keras_hub_model(name: str, layers: int = 2):
    import keras_hub

    models = keras_hub.models
    if name == "gpt2":
        return models.GPT2Backbone(
            vocabulary_size=50,
            num_layers=layers,
            num_heads=4,
            hidden_dim=16,
            intermediate_dim=64,
            max_sequence_length=16,
            dropout=0.0,
        )
    if name == "bert":
        return models.BertBackbone(
            vocabulary_size=50,
            num_layers=layers,
            num_heads=4,
            hidden_dim=16,
            intermediate_dim=32,
            max_sequence_length=16,
            num_segments=2,
            dropout=0.0,
        )
    # tied: LlamaModel (no LM head) has no readout, so neither may the backbone
    return models.LlamaBackbone(
        vocabulary_size=50,
        num_layers=layers,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        layer_norm_epsilon=1e-6,
        tie_word_embeddings=True,
    )


def run_hf(name: str, model) -> np.ndarray:
    import torch

    ids = torch.as_tensor(IDS)
    extra = {"token_type_ids": torch.as_tensor(IDS % 2)} if name == "bert" else {}
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).last_hidden_state.numpy()


def run_keras_hub(name: str, model) -> np.ndarray:
    import keras

    inputs = {"token_ids": IDS, "padding_mask": np.ones_like(IDS)}
    if name == "bert":
        inputs["segment_ids"] = IDS % 2
        return keras.ops.convert_to_numpy(model(inputs)["sequence_output"])
    return keras.ops.convert_to_numpy(model(inputs))


def logical_values(model) -> dict[str, np.ndarray]:
    """{identity: value in the canonical order, out and in axes merged} of every logical parameter."""
    from polyinit.frameworks import walker_for
    from polyinit.transfer_values import flat_shape, read_logical
    from polyinit.transferring import _identified

    walker = walker_for(model)
    return {
        lp.identity: read_logical(lp, lambda p: walker.read(model, p)).astype(np.float32).reshape(flat_shape(lp))
        for lp in _identified(walker.walk(model))
    }


def portable_rules():
    """The same rules for both sides: fan-dependent weights, random biases, norms and embeddings."""
    import polyinit as pi
    from polyinit.rules import Rules
    from polyinit.selectors import every, kind, role

    return Rules(
        [
            (kind("dense", "attention") & role("weight"), pi.glorot_uniform()),
            (role("bias", "offset"), pi.Uniform(low=-0.1, high=0.1)),
            (role("scale"), pi.Normal(mean=1.0, std=0.1)),
            (every(), pi.Normal(std=0.1)),
        ],
        seed=11,
        strict=False,
    )


def check_transfer(name: str) -> tuple[float, float]:
    """(max |difference| after HF -> keras-hub, after keras-hub -> HF) of the two outputs."""
    import torch

    from polyinit import transfer

    source, target = hf_model(name), keras_hub_model(name)
    transfer(source, target)
    forward = float(np.abs(run_hf(name, source) - run_keras_hub(name, target)).max())
    back = hf_model(name)
    with torch.no_grad():
        for p in back.parameters():
            p.mul_(0.5)  # so that nothing passes by staying as it was built
    transfer(target, back)
    return forward, float(np.abs(run_hf(name, back) - run_keras_hub(name, target)).max())


def check_portable(name: str) -> tuple[list[str], float]:
    """(identities whose values differ, max |output difference|) after the same portable rules."""
    from polyinit.rules import apply

    a, b = hf_model(name), keras_hub_model(name)
    apply(a, portable_rules(), portable=True)
    apply(b, portable_rules(), portable=True)
    va, vb = logical_values(a), logical_values(b)
    differ = sorted(k for k in set(va) | set(vb) if k not in va or k not in vb or va[k].tobytes() != vb[k].tobytes())
    return differ, float(np.abs(run_hf(name, a) - run_keras_hub(name, b)).max())


def check_identities(name: str) -> dict:
    """The identities of both sides, and of a name-blind copy of the transformers model (every
    submodule renamed m0, m1, ...: tests/test_structure_torch.py's copy)."""
    from test_structure_torch import name_blind

    from polyinit.identity import identities_of

    model = hf_model(name)
    return {
        "hf": identities_of(model),
        "keras_hub": identities_of(keras_hub_model(name)),
        "hf_name_blind": identities_of(name_blind(model)),
    }


def check_fused_mlp() -> dict:
    """Phi-3's fused MLP (``gate_up_proj``, the gate first) against Llama's separate gate and up
    projections, built from one config: identities, transfer both ways, portable draws."""
    import torch

    from polyinit import transfer
    from polyinit.identity import identities_of
    from polyinit.rules import apply

    T = _transformers()
    from transformers.models.llama.modeling_llama import LlamaMLP
    from transformers.models.phi3.modeling_phi3 import Phi3MLP

    sizes = {
        "hidden_size": 8,
        "intermediate_size": 12,
        "hidden_act": "silu",
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
    }
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    fused, split = Phi3MLP(T.Phi3Config(**sizes)), LlamaMLP(T.LlamaConfig(**sizes))

    def gap(a, b) -> float:
        with torch.no_grad():
            return float((a(x) - b(x)).abs().max())

    result = {"fused": identities_of(fused), "split": identities_of(split)}
    transfer(fused, split)
    result["transfer_forward"] = gap(fused, split)
    torch.nn.init.normal_(fused.gate_up_proj.weight)
    transfer(split, fused)
    result["transfer_back"] = gap(fused, split)
    apply(fused, portable_rules(), portable=True)
    apply(split, portable_rules(), portable=True)
    va, vb = logical_values(fused), logical_values(split)
    result["portable_differ"] = sorted(
        k for k in set(va) | set(vb) if k not in va or k not in vb or va[k].tobytes() != vb[k].tobytes()
    )
    result["portable_output"] = gap(fused, split)
    return result


def main() -> None:
    """One JSON line: for every pair, the identities of both sides, the transfer and the portable
    results. torch and transformers are imported before Keras: triton (which transformers loads)
    aborts the process when TensorFlow's LLVM was loaded first."""
    import json

    _transformers()
    results = {}
    for name in NAMES:
        differ, output = check_portable(name)
        results[name] = {
            "identities": check_identities(name),
            "transfer": check_transfer(name),
            "portable_differ": differ,
            "portable_output": output,
        }
    results["fused_mlp"] = check_fused_mlp()
    print("RESULTS " + json.dumps(results))


if __name__ == "__main__":
    main()
