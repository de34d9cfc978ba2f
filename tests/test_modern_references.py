"""Modern schemes against the reference codebases that run them (issue 23).

Each test builds the codebase's own model from a config (never downloaded), runs the codebase's
own initialisation, then polyinit's scheme on a fresh copy, and checks **both** against a table of
laws written here from the codebase's source (``reference_tables``): that the reference follows
the table shows the table is the reference's behaviour; that polyinit follows it is the claim.
Every parameter is checked: std (z <= 5), zeros and ones exactly, cuts as hard bounds.

Each codebase is run twice: ``derived``, the scheme called on the model itself with no
``sites=``/``depth=`` (the acceptance: the model context comes from a traced forward pass), and
``marked``, on a context built from the parameter records with ``sites=`` naming the parameters
(no trace), so the scheme's formulas are checked on the reference model even where the trace
cannot run. Where the derived context cannot be built today the derived run is a strict xfail
whose reason says why (a pass turns it into a failure, so the mark is removed then).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from modern_models import small_bart_config
from reference_tables import ONE, ZERO, check_model, normal, torch_values, uniform

from polyinit import modern
from polyinit.context import ContextError
from polyinit.selectors import name

# polyinit's torch registry does not describe olmo-core's, litgpt's and Phi-3's RMSNorm or megatron-core's
# parallel layers, and warns so
# (pytest makes warnings errors); the warning is about the registry, not about these schemes.
UNREGISTERED = pytest.mark.filterwarnings("ignore:polyinit. module types with parameters that no registry entry")


def needs(reason: str):
    """A derived run that cannot pass today, and why; strict, so a pass is noticed."""
    return pytest.mark.xfail(strict=True, raises=(AssertionError, ContextError), reason=reason)


def _target(model, mode: str, sites: dict):
    """The model itself (derived), or its records with ``sites`` marked and no trace (marked)."""
    if mode == "derived":
        return model
    from polyinit.context import context_from_params
    from polyinit.rules import every, select

    with warnings.catch_warnings():  # unregistered third-party layer types: sites= places them
        warnings.simplefilter("ignore", UserWarning)
        return context_from_params(select(model, every()), sites=sites)


def _apply(model, rules) -> dict:
    from polyinit.rules import apply

    apply(model, rules)
    return torch_values(model)


# --- olmo-core 3.0.0: olmo_core/nn/transformer/init.py InitMethod, Transformer.init_weights ---

OLMO_CORE = {"d_model": 256, "vocab_size": 1024, "n_layers": 4, "n_heads": 4}
OLMO_CORE_SITES = {
    "q": name("*.w_q.weight"),
    "k": name("*.w_k.weight"),
    "v": name("*.w_v.weight"),
    "attn_out": name("*.attention.w_out.weight"),
    "readout": name("lm_head.w_out.weight"),
}


def _olmo_core_model(init_method: str, reference: bool):
    import torch

    olmo_core = pytest.importorskip("olmo_core.nn.transformer")
    config = olmo_core.TransformerConfig.llama_like(**OLMO_CORE, init_method=olmo_core.InitMethod(init_method))
    torch.manual_seed(0)
    model = config.build(init_device="cpu")
    if reference:
        model.init_weights(device=torch.device("cpu"))
    return model


def olmo_core_table(model, init_method: str, std: float = 0.02) -> dict:
    """InitMethod's branches, read off olmo-core's init.py and Attention/FeedForward.init_weights:
    every linear through init_linear (trunc_normal_ at +-3 std), embeddings per init_embeddings."""
    d, depth = OLMO_CORE["d_model"], OLMO_CORE["n_layers"]
    table = {}
    for path, p in model.named_parameters():
        tokens = path.split(".")
        block = int(tokens[1]) if tokens[0] == "blocks" else None
        fan_in = p.shape[1] if p.ndim == 2 else None
        scaled = {
            "normal": std,
            "llama": std / math.sqrt(2 * depth),
            "llama_depth": std / math.sqrt(2 * (block + 1)) if block is not None else None,
            "fan_in": fan_in**-0.5 if fan_in else None,
        }[init_method]
        if "norm" in path:
            table[path] = ONE
        elif path == "embeddings.weight":
            table[path] = normal(std, cut=3) if init_method == "normal" else normal(1.0)
        elif path == "lm_head.w_out.weight":
            table[path] = normal(std if init_method == "normal" else d**-0.5, cut=3)
        elif tokens[-2] in ("w_q", "w_k", "w_v", "w1"):
            table[path] = normal(fan_in**-0.5 if init_method == "fan_in" else std, cut=3)
        elif tokens[-2] in ("w_out", "w2", "w3"):
            table[path] = normal(scaled, cut=3)
    return table


@pytest.mark.parametrize("init_method", ["normal", "llama", "llama_depth", "fan_in"])
@pytest.mark.parametrize("mode", ["derived", "marked"])
@UNREGISTERED
def test_olmo_core_init_methods(init_method, mode):
    """olmo(..., generation='olmo_core') on olmo-core's own llama-like Transformer against
    ``Transformer.init_weights``: embeddings, q/k/v, w_out, w1, w2, w3 and the LM head, every one."""
    reference = _olmo_core_model(init_method, reference=True)
    table = olmo_core_table(reference, init_method)
    check_model(torch_values(reference), table)
    model = _olmo_core_model(init_method, reference=False)
    rules = modern.olmo(_target(model, mode, OLMO_CORE_SITES), init_fn=init_method, generation="olmo_core", seed=3)
    check_model(_apply(model, rules), table)


@pytest.mark.parametrize("mode", ["derived", "marked"])
@UNREGISTERED
def test_llama_depth_olmo_core_reference(mode):
    """llama_depth(reference='olmo_core') is olmo-core's InitMethod.llama_depth."""
    model = _olmo_core_model("llama_depth", reference=False)
    check_model(
        _apply(model, modern.llama_depth(_target(model, mode, OLMO_CORE_SITES), reference="olmo_core")),
        olmo_core_table(model, "llama_depth"),
    )


@UNREGISTERED
def test_olmo_normal_differs_between_generations():
    """OLMo-1's normal is uncut, olmo-core's cut at 3 std (z = -6.5 on a 27M model when confused):
    the generation must be named, and each gives its own law."""
    from polyinit.errors import SpecError

    model = _olmo_core_model("normal", reference=False)
    with pytest.raises(SpecError, match="generation='olmo1' or generation='olmo_core'"):
        modern.olmo(model, init_fn="normal")
    rules = modern.olmo(model, init_fn="normal", generation="olmo1")
    values = _apply(model, rules)
    w = values["blocks.0.feed_forward.w1.weight"]
    assert np.max(np.abs(w)) > 3 * 0.02  # 196608 uncut normals: P(none beyond 3 std) = e^-531


# olmo(init_fn="normalized") (nGPT) is checked against olmo-core's NormalizedTransformer in
# tests/test_modern_ngpt.py.


# --- torchtitan 0.3.0: models/llama3/__init__.py _LINEAR_INIT, _depth_init, _output_linear_init ---


def _torchtitan_model(reference: bool):
    """llama3's debug model with SDPA as the inner attention of every layer.

    The debug config's FlexAttention does not run on CPU (its eager path is compiled, which
    breaks under the tracer's TorchFunctionMode); torchtitan 0.3.0's get_attention_config refuses
    "sdpa" for language models only because SDPA cannot take per-document masks, so the layer
    configs are given ScaledDotProductAttention.Config (the inner attention Flux builds) directly.
    The init is unchanged: the inner attention holds no parameters, and every parameter's init is
    the param_init its config carries (models/llama3/__init__.py _build_llama3_layers), applied by
    Module.init_states (protocols/module.py), which BaseModel.init_weights (protocols/model.py) calls."""
    import torch

    llama3 = pytest.importorskip("torchtitan.models.llama3")
    from torchtitan.models.common.attention import ScaledDotProductAttention

    config = llama3._debugmodel("flex")
    for layer in config.layers:
        layer.attention.inner_attention = ScaledDotProductAttention.Config()
    torch.manual_seed(0)
    model = config.build()
    if reference:
        model.init_weights()
    return model


def torchtitan_table(model) -> dict:
    """wqkv, w1: trunc_normal_(std=0.02) (torch's absolute +-2); wo, w2, w3 of layer i:
    depth_scaled_std(0.02, i) = 0.02 / sqrt(2 (i+1)), same cut; tok_embeddings N(0, 1);
    lm_head trunc_normal_(d^-1/2, +-3 d^-1/2); RMSNorm weights 1."""
    table = {}
    for path, p in model.named_parameters():
        tokens = path.split(".")
        if "norm" in path:
            table[path] = ONE
        elif path == "tok_embeddings.weight":
            table[path] = normal(1.0)
        elif path == "lm_head.weight":
            table[path] = normal(p.shape[1] ** -0.5, cut=3)
        elif tokens[-2] in ("wo", "w2", "w3"):
            table[path] = normal(0.02 / math.sqrt(2 * (int(tokens[1]) + 1)), bound=2.0)
        else:
            table[path] = normal(0.02, bound=2.0)
    return table


TORCHTITAN_SITES = {"attn_out": name("*.attention.wo.weight")}


@pytest.mark.parametrize("mode", ["derived", "marked"])
def test_llama_depth_torchtitan(mode):
    """llama_depth() on torchtitan's llama3 debug model against its own init_weights."""
    import torch

    reference = _torchtitan_model(reference=True)
    table = torchtitan_table(reference)
    check_model(torch_values(reference), table)
    model = _torchtitan_model(reference=False)
    target = _target(model, mode, TORCHTITAN_SITES)
    if mode == "derived":  # its forward takes (tokens, attention_masks, positions); SDPA is causal without a mask
        tokens = torch.zeros(1, 8, dtype=torch.long)
        rules = modern.llama_depth(model, seed=5, example_input={"tokens": tokens, "attention_masks": None})
    else:
        rules = modern.llama_depth(target, seed=5)
    check_model(_apply(model, rules), table)


# --- litgpt 0.5.13: pretrain.initialize_weights (SmallInit + 1/(L sqrt d) on proj) ---

LITGPT = {"n_layer": 4, "n_embd": 256, "n_head": 4, "vocab_size": 1024, "padded_vocab_size": 1024, "block_size": 64}
LITGPT_MLPS = {
    "neox": {"mlp_class_name": "GptNeoxMLP", "bias": True},
    "llama": {
        "mlp_class_name": "LLaMAMLP",
        "intermediate_size": 688,
        "bias": False,
        "norm_class_name": "RMSNorm",
        "parallel_residual": False,
    },
}


def _litgpt_model(mlp: str, reference: bool):
    import types

    import torch

    litgpt = pytest.importorskip("litgpt")
    torch.manual_seed(0)
    config = litgpt.Config(**LITGPT, **LITGPT_MLPS[mlp])
    model = litgpt.GPT(config)
    if reference:
        from litgpt.pretrain import initialize_weights

        # initialize_weights reads fabric.strategy only to skip FSDP's deferred reset.
        initialize_weights(types.SimpleNamespace(strategy=None), model, n_layer=config.n_layer, n_embd=config.n_embd)
    return model


def litgpt_table(model, mlp_out_scaled: bool) -> dict:
    """Every nn.Embedding and nn.Linear N(0, 2 / (5 d)), biases 0; the proj of every
    CausalSelfAttention and LLaMAMLP N(0, (1 / (L sqrt d))^2); norms their own reset (1, 0)."""
    d, depth = LITGPT["n_embd"], LITGPT["n_layer"]
    table = {}
    for path, _ in model.named_parameters():
        if "norm" in path or "ln_f" in path:
            table[path] = ONE if path.endswith("weight") else ZERO
        elif path.endswith("bias"):
            table[path] = ZERO
        elif path.endswith("attn.proj.weight") or (mlp_out_scaled and path.endswith("mlp.proj.weight")):
            table[path] = normal(1 / (depth * math.sqrt(d)))
        else:
            table[path] = normal(math.sqrt(2 / (5 * d)))
    return table


LITGPT_SITES = {"mlp_in": name("*.mlp.fc*.weight"), "norm": name("transformer.ln_f.*")}


@UNREGISTERED
@pytest.mark.parametrize("mode", ["derived", "marked"])
def test_wang_litgpt_on_llama_mlp(mode):
    """wang(variant='litgpt') on a litgpt LLaMA config against initialize_weights."""
    reference = _litgpt_model("llama", reference=True)
    table = litgpt_table(reference, mlp_out_scaled=True)
    check_model(torch_values(reference), table)
    model = _litgpt_model("llama", reference=False)
    check_model(_apply(model, modern.wang(_target(model, mode, LITGPT_SITES), variant="litgpt")), table)


@UNREGISTERED
@pytest.mark.parametrize("mode", ["derived", "marked"])
def test_wang_litgpt_on_pythia_mlp(mode):
    """On a GptNeoxMLP (Pythia) config litgpt leaves the MLP proj at SmallInit (its isinstance
    check names LLaMAMLP only): reproduced with litgpt_neox_mlp=True; without it, polyinit scales
    that projection as the scheme means."""
    reference = _litgpt_model("neox", reference=True)
    check_model(torch_values(reference), litgpt_table(reference, mlp_out_scaled=False))
    model = _litgpt_model("neox", reference=False)
    check_model(
        _apply(model, modern.wang(_target(model, mode, LITGPT_SITES), variant="litgpt", litgpt_neox_mlp=True)),
        litgpt_table(model, mlp_out_scaled=False),
    )
    model = _litgpt_model("neox", reference=False)
    check_model(
        _apply(model, modern.wang(_target(model, mode, LITGPT_SITES), variant="litgpt")),
        litgpt_table(model, mlp_out_scaled=True),
    )


# --- megatron-core 0.16.1: TransformerConfig's init_method / output_layer_init_method ---


@pytest.fixture(scope="module")
def megatron_parallel(tmp_path_factory):
    """A one-process gloo group and megatron-core's model-parallel state (tensor and pipeline 1),
    set up so that GPTModel's forward runs on CPU (the derived run traces it).

    Two CUDA calls stand in the way of a CPU forward in megatron-core 0.16.1, and its own APIs
    avoid both: its DotProductAttention (transformer/dot_product_attention.py:189) takes the score
    buffer from parallel_state's GlobalMemoryBuffer, which allocates on torch.cuda.current_device()
    (core/utils.py:631) only when no buffer of that name and dtype is large enough, so a CPU buffer
    is placed there first (baddbmm overwrites it: beta=0); and it forks the tracker's
    "model-parallel-rng" state around the attention dropout (line 217), which
    model_parallel_cuda_manual_seed would create with torch.cuda.get_rng_state, so megatron's
    inference RNG tracker (initialize_rng_tracker(inference_rng_tracker=True), whose fork is a
    no-op) is used: the trace runs in eval mode, where dropout draws nothing."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("megatron.core")
    import torch.distributed as dist
    from megatron.core import parallel_state
    from megatron.core.tensor_parallel.random import initialize_rng_tracker

    if dist.is_initialized():
        pytest.skip("a torch.distributed group is already initialised in this process")
    store = tmp_path_factory.mktemp("megatron") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    parallel_state.initialize_model_parallel(1, 1)
    initialize_rng_tracker(inference_rng_tracker=True, force_reset=True)
    parallel_state.get_global_memory_buffer().buffer["mpu", torch.float32] = torch.empty(1 << 16)
    yield torch
    initialize_rng_tracker(force_reset=True)
    parallel_state.destroy_model_parallel()
    dist.destroy_process_group()


MEGATRON = {"num_layers": 4, "hidden_size": 128, "num_attention_heads": 4}
MEGATRON_SITES = {
    "qkv": name("*.linear_qkv.weight"),
    "attn_out": name("*.linear_proj.weight"),
    "mlp_in": name("*.linear_fc1.weight"),
    "mlp_out": name("*.linear_fc2.weight"),
    "readout": name("output_layer.weight"),
    "embedding": name("*.word_embeddings.weight"),
    "position": name("*.position_embeddings.weight"),
}


def _megatron_model(torch, config):
    torch.manual_seed(0)
    with warnings.catch_warnings():  # megatron-core warns on import (Apex, deprecated modules)
        warnings.simplefilter("ignore")
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
        from megatron.core.models.gpt.gpt_model import GPTModel

        return GPTModel(
            config,
            get_gpt_layer_local_spec(),
            vocab_size=512,
            max_sequence_length=64,
            share_embeddings_and_output_weights=False,
        )


# megatron-core 0.16.1's own forward calls its collectives without a tp_group and warns that this will be
# mandatory (core/utils.py:501); the warning is about its internal calls, not about this test's setup.
@pytest.mark.filterwarnings("ignore:Warning. tp_group is None:DeprecationWarning")
@UNREGISTERED
@pytest.mark.parametrize("mode", ["derived", "marked"])
def test_megatron_against_megatron_core(megatron_parallel, mode):
    """megatron() on megatron-core's own GPTModel (built on CPU) against what its constructors
    draw with the config's init_method_normal(sigma) and scaled_init_method_normal(sigma, L):
    the stds in the table are read off those functions' partials."""
    torch = megatron_parallel
    from megatron.core.transformer.transformer_config import TransformerConfig

    with warnings.catch_warnings():  # megatron-core 0.16.1 warns about its own default cuda_graph_scope
        warnings.simplefilter("ignore", UserWarning)
        config = TransformerConfig(
            **MEGATRON,
            init_method_std=0.01,
            embedding_init_method_std=0.5,
            use_cpu_initialization=True,
            perform_initialization=True,
        )
    sigma = config.init_method.keywords["std"]
    scaled = config.output_layer_init_method.keywords["std"]
    embedding = config.embedding_init_method.keywords["std"]
    assert (sigma, embedding) == (0.01, 0.5) and math.isclose(scaled, 0.01 / math.sqrt(2 * 4))
    reference = _megatron_model(torch, config)
    table = {}
    for path, _ in reference.named_parameters():
        if "layernorm" in path:
            table[path] = ONE if path.endswith("weight") else ZERO
        elif path.endswith("bias"):
            table[path] = ZERO
        elif "embedding" in path:
            table[path] = normal(embedding)
        elif path.endswith(("linear_proj.weight", "linear_fc2.weight")):
            table[path] = normal(scaled)
        else:
            table[path] = normal(sigma)
    check_model(torch_values(reference), table)
    model = _megatron_model(torch, config)
    given = {}
    if mode == "derived":  # forward(input_ids, position_ids, attention_mask)
        ids = torch.zeros(1, 8, dtype=torch.long)
        given["example_input"] = (ids, torch.arange(8)[None], torch.ones(1, 1, 8, 8, dtype=torch.bool).triu(1))
    rules = modern.megatron(
        _target(model, mode, MEGATRON_SITES), init_method_std=0.01, embedding_init_method_std=0.5, **given
    )
    check_model(_apply(model, rules), table)


# --- mup 1.0.0: mup.init under set_base_shapes ---


def _mup_mlp(width: int, base: int | None = None):
    """mup's MLP example (microsoft/mup examples/MLP): CIFAR-10 input, no biases, a MuReadout,
    relu between (input_mult and output_mult 1). ``base``: set_base_shapes against the model at
    that width, as mup's users do before initialising (MuReadout's forward needs it); None: its own
    shapes are the base."""
    import torch
    from torch import nn

    mup = pytest.importorskip("mup")

    class MLP(nn.Module):
        def __init__(self, width: int):
            super().__init__()
            self.fc_1 = nn.Linear(3072, width, bias=False)
            self.fc_2 = nn.Linear(width, width, bias=False)
            self.fc_3 = mup.MuReadout(width, 10, bias=False)

        def forward(self, x):
            return self.fc_3(torch.relu(self.fc_2(torch.relu(self.fc_1(x)))))

    model = MLP(width)
    mup.set_base_shapes(model, MLP(base) if base is not None else None)
    return model


def _cifar():
    import torch

    return torch.zeros(1, 3072)


@pytest.mark.parametrize("width", [256, 512])
def test_mup_per_site_initializers_on_mups_mlp_example(width):
    """The example's recipe: kaiming_normal_(a=1, fan_in) for fc_1 and fc_2 through mup.init,
    a zero readout. mup.init keeps fc_1 (one width axis, on the output) at 1/sqrt(3072) and gives
    the hidden fc_2 1/sqrt(base) / sqrt(width / base) = 1/sqrt(width)."""
    import torch

    import polyinit

    mup = pytest.importorskip("mup")
    base = 64
    torch.manual_seed(0)
    reference = _mup_mlp(width, base)
    mup.init.kaiming_normal_(reference.fc_1.weight, a=1, mode="fan_in")
    mup.init.kaiming_normal_(reference.fc_2.weight, a=1, mode="fan_in")
    torch.nn.init.zeros_(reference.fc_3.weight)
    table = {"fc_1.weight": normal(3072**-0.5), "fc_2.weight": normal(width**-0.5), "fc_3.weight": ZERO}
    check_model(torch_values(reference), table)
    model = _mup_mlp(width, base)
    kaiming_a1 = polyinit.VarianceScaling(scale=1.0, mode="fan_in", distribution="normal")  # gain sqrt(2/(1+1))
    init = {"input": kaiming_a1, "hidden": kaiming_a1, "output": polyinit.zeros()}
    rules = modern.mup(model, _mup_mlp(base), init=init, example_input=_cifar())
    check_model(_apply(model, rules), table)


def test_mup_xavier_rescales_from_the_base_fans():
    """mup.init.xavier_uniform_ resolves xavier on the base fans (_inf_fan_adjust_xavier) and
    divides the hidden weight by sqrt(width_mult): U(+-sqrt(6 / (2 base)) / sqrt(width / base))."""
    import torch

    import polyinit

    mup = pytest.importorskip("mup")
    base, width = 64, 512
    torch.manual_seed(0)
    reference = _mup_mlp(width, base)
    for p in reference.parameters():
        mup.init.xavier_uniform_(p)
    bounds = {
        "fc_1.weight": math.sqrt(6 / (3072 + base)),
        "fc_2.weight": math.sqrt(6 / (2 * base)) / math.sqrt(width / base),
        "fc_3.weight": math.sqrt(6 / (base + 10)),
    }
    table = {path: uniform(bound) for path, bound in bounds.items()}
    check_model(torch_values(reference), table)
    model = _mup_mlp(width, base)
    rules = modern.mup(
        model,
        _mup_mlp(base),
        init={
            "input": polyinit.glorot_uniform(),
            "hidden": polyinit.glorot_uniform(),
            "output": polyinit.glorot_uniform(),
        },
        example_input=_cifar(),
    )
    check_model(_apply(model, rules), table)


# --- torchscale 0.3.0: formula table from its source (it cannot be imported here: it imports
# timm, which imports torchvision, whose PyPI build does not load beside this CPU torch) ---


@pytest.fixture(scope="module")
def bart_config():
    return small_bart_config(pytest.importorskip("transformers"))


def torchscale_table(model, config, unreset: bool) -> dict:
    """torchscale 0.3.0 with deepnorm=True on an encoder-decoder (fairseq names, as BART's):
    MultiheadAttention.reset_parameters (q, k, v xavier_uniform gain 1/sqrt 2, out_proj xavier
    gain 1, out_proj.bias 0) unless ``unreset``; fc1, fc2 and every bias nn.Linear's default
    U(+-1/sqrt(fan_in)); then every parameter named fc1, fc2, out_proj or v_proj divided by
    init_scale: encoder (N^4 M)^(1/16) / 1.15, decoder (12 M)^(1/4); TextEmbedding and the
    output projection N(0, 1/d); nn.Embedding positions N(0, 1); LayerNorm 1, 0."""
    n, m, d = config.encoder_layers, config.decoder_layers, config.d_model
    beta = {"encoder": 1.15 * (n**4 * m) ** (-1 / 16), "decoder": (12 * m) ** -0.25}
    shapes = dict(model.named_parameters())
    table = {}
    for path in shapes:
        tokens = path.split(".")
        if "layer_norm" in path or "layernorm" in path:
            table[path] = ONE if path.endswith("weight") else ZERO
        elif "embed_positions" in path:
            table[path] = normal(1.0)
        elif path.endswith(("shared.weight", "embed_tokens.weight")):
            table[path] = normal(d**-0.5)
        else:
            module, stack = tokens[-2], tokens[0]
            scale = beta[stack] if module in ("fc1", "fc2", "out_proj", "v_proj") else 1.0
            weight = shapes[".".join(tokens[:-1] + ["weight"])]
            fan_in, fan_out = weight.shape[1], weight.shape[0]
            default = 1 / math.sqrt(fan_in)
            if module in ("fc1", "fc2") or unreset:
                table[path] = uniform(scale * default)
            elif path.endswith("bias"):
                table[path] = ZERO if module == "out_proj" else uniform(scale * default)
            else:
                gain = (1 / math.sqrt(2) if module != "out_proj" else 1.0) * scale
                table[path] = uniform(gain * math.sqrt(6 / (fan_in + fan_out)))
    return table


@pytest.mark.parametrize("unreset", [False, True], ids=["reset", "as_constructed"])
def test_deepnet_torchscale_reference(bart_config, unreset):
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.BartModel(bart_config)
    rules = modern.deepnet(model, reference="torchscale", torchscale_unreset_attention=unreset, seed=2)
    values = _apply(model, rules)
    table = torchscale_table(model, bart_config, unreset)
    values.pop("encoder.embed_tokens.weight", None), values.pop("decoder.embed_tokens.weight", None)
    check_model(values, {k: v for k, v in table.items() if k in values})
    assert set(values) == {k for k in table if k in values} and len(values) > 60


def test_deepnet_coefficients_per_reference():
    """torchscale's encoder-decoder encoder beta is 1.15 (N^4 M)^(-1/16), the paper's 0.87 (...)."""
    n, m = 6, 6
    paper = modern.deepnet_coefficients("encoder_decoder", n, m)
    torchscale = modern.deepnet_coefficients("encoder_decoder", n, m, reference="torchscale")
    assert math.isclose(paper["encoder"][1], 0.87 * (n**4 * m) ** (-1 / 16))
    assert math.isclose(torchscale["encoder"][1], 1.15 * (n**4 * m) ** (-1 / 16))
    assert paper["decoder"] == torchscale["decoder"] == ((3 * m) ** 0.25, (12 * m) ** -0.25)


# --- a packed gate/up weight (transformers' Phi-3 gate_up_proj): the trace's parts split it ---


def _phi3_model():
    transformers = pytest.importorskip("transformers")
    import torch

    config = transformers.Phi3Config(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    torch.manual_seed(0)
    return transformers.Phi3ForCausalLM(config)


@UNREGISTERED
def test_llama_depth_splits_a_packed_gate_up_weight():
    """Phi-3 packs the MLP's gate and up projections in one gate_up_proj (gate rows first, then
    up, read off its forward's chunk): llama_depth scales only the up half, with w2 and w3 of
    torchtitan's formula; the gate half stays at 0.02. Sites, blocks and parts come from the trace."""
    model = _phi3_model()
    values = _apply(model, modern.llama_depth(model, seed=7))
    table = {}
    for path, p in model.named_parameters():
        tokens = path.split(".")
        depth_std = 0.02 / math.sqrt(2 * (int(tokens[2]) + 1)) if tokens[1] == "layers" else None
        if "norm" in path:
            table[path] = ONE
        elif path == "model.embed_tokens.weight":
            table[path] = normal(1.0)
        elif path == "lm_head.weight":
            table[path] = normal(64**-0.5, cut=3)
        elif tokens[-2] in ("o_proj", "down_proj"):
            table[path] = normal(depth_std, bound=2.0)
        elif tokens[-2] == "gate_up_proj":
            half = p.shape[0] // 2
            values[path + "[gate]"], values[path + "[up]"] = values[path][:half], values.pop(path)[half:]
            table[path + "[gate]"], table[path + "[up]"] = normal(0.02, bound=2.0), normal(depth_std, bound=2.0)
        else:
            table[path] = normal(0.02, bound=2.0)
    check_model(values, table)


# --- issue 20's coverage on every reference model above: each modern scheme, derived (no sites=,
# no depth=), gives every trainable parameter a rule, or raises a ContextError naming what is missing ---

WHOLE_MODEL_SCHEMES = {
    "gpt2": lambda m, **k: modern.gpt2(m, **k),
    "megatron": lambda m, **k: modern.megatron(m, **k),
    "olmo1 mitchell": lambda m, **k: modern.olmo(m, init_fn="mitchell", **k),
    "olmo1 full_megatron": lambda m, **k: modern.olmo(m, init_fn="full_megatron", **k),
    "olmo1 normal": lambda m, **k: modern.olmo(m, init_fn="normal", generation="olmo1", **k),
    "olmo_core normal": lambda m, **k: modern.olmo(m, init_fn="normal", generation="olmo_core", **k),
    "olmo_core llama": lambda m, **k: modern.olmo(m, init_fn="llama", **k),
    "olmo_core llama_depth": lambda m, **k: modern.olmo(m, init_fn="llama_depth", **k),
    "olmo_core fan_in": lambda m, **k: modern.olmo(m, init_fn="fan_in", **k),
    "olmo_core normalized": lambda m, **k: modern.olmo(m, init_fn="normalized", **k),
    "llama_depth torchtitan": lambda m, **k: modern.llama_depth(m, **k),
    "llama_depth olmo_core": lambda m, **k: modern.llama_depth(m, reference="olmo_core", **k),
    "mup": None,  # needs a base: the same model built again (width_mult 1)
    "u_mup": lambda m, **k: modern.u_mup(m, **k),
    "small_init": lambda m, **k: modern.small_init(m, **k),
    "wang neox": lambda m, **k: modern.wang(m, **k),
    "wang litgpt": lambda m, **k: modern.wang(m, variant="litgpt", **k),
    "modded_nanogpt": lambda m, **k: modern.modded_nanogpt(m, **k),
    "deepnet": lambda m, **k: modern.deepnet(m, **k),
    "t_fixup": lambda m, **k: modern.t_fixup(m, **k),
    "t5": lambda m, **k: modern.t5(m, **k),
}

# (model, scheme) -> what the ContextError must name. t5 is T5's scheme: it needs T5's d_kv.
REFUSALS = {
    **{
        (model, "t5"): "d_kv"
        for model in ("olmo_core", "torchtitan", "litgpt_llama", "litgpt_pythia", "megatron", "bart", "phi3")
    },
    # BART's learned positions: modded_nanogpt has no law for them (the speedrun uses rotary).
    ("bart", "modded_nanogpt"): "encoder.embed_positions.weight",
}


def _reference_model(which: str, request):
    """A reference model of this file, built fresh, and the keywords its derived run needs."""
    import torch

    if which == "olmo_core":
        return _olmo_core_model("llama", reference=False), {}
    if which == "torchtitan":
        return _torchtitan_model(reference=False), {
            "example_input": {"tokens": torch.zeros(1, 8, dtype=torch.long), "attention_masks": None}
        }
    if which in ("litgpt_llama", "litgpt_pythia"):
        return _litgpt_model("llama" if which == "litgpt_llama" else "neox", reference=False), {}
    if which == "megatron":
        request.getfixturevalue("megatron_parallel")
        from megatron.core.transformer.transformer_config import TransformerConfig

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            config = TransformerConfig(**MEGATRON, use_cpu_initialization=True, perform_initialization=True)
        ids = torch.zeros(1, 8, dtype=torch.long)
        mask = torch.ones(1, 1, 8, 8, dtype=torch.bool).triu(1)
        return _megatron_model(torch, config), {"example_input": (ids, torch.arange(8)[None], mask)}
    if which == "bart":
        transformers = pytest.importorskip("transformers")
        torch.manual_seed(0)
        return transformers.BartModel(request.getfixturevalue("bart_config")), {}
    return _phi3_model(), {}


@pytest.mark.filterwarnings("ignore:Warning. tp_group is None:DeprecationWarning")
@UNREGISTERED
@pytest.mark.parametrize(
    "which", ["olmo_core", "torchtitan", "litgpt_llama", "litgpt_pythia", "megatron", "bart", "phi3"]
)
def test_every_scheme_covers_every_reference_model_or_names_what_is_missing(which, request):
    """Issue 20's coverage guarantee on the reference codebases' own models: no parameter is left
    at the framework's default (no unmatched row, no KEEP the user did not ask for), or the scheme
    raises a ContextError naming the site, keyword or parameters it is missing.

    The context is derived once per model with no sites= and no depth= (what each scheme derives
    when called on the model itself, as the runs above do), so the model is traced once."""
    from polyinit.context import model_context
    from polyinit.rules import apply

    model, given = _reference_model(which, request)
    context = model_context(model, **given)
    trainable = {path for path, p in model.named_parameters() if p.requires_grad}
    outcomes = {}
    for scheme, build in WHOLE_MODEL_SCHEMES.items():
        try:
            if build is None:
                base = model_context(_reference_model(which, request)[0], **given)
                rules = modern.mup(context, base, seed=1)
            else:
                rules = build(context, seed=1)
        except ContextError as error:
            outcomes[scheme] = f"refused: {error}"
            continue
        rows = [r for r in apply(model, rules).rows if r.path in trainable]
        assert {r.path for r in rows} == trainable
        left = [r.path for r in rows if r.rule_index is None or r.spec == "KEEP"]
        outcomes[scheme] = "covered" if not left else f"left at the default: {left}"
    for scheme, outcome in outcomes.items():
        refusal = REFUSALS.get((which, scheme))
        if refusal is not None:
            assert outcome.startswith("refused") and refusal in outcome, (scheme, outcome)
        else:
            assert outcome == "covered", (scheme, outcome)


@UNREGISTERED
def test_olmo_core_fan_in_draws_every_matrix_even_unplaced():
    """olmo-core's fan_in is 1/sqrt(fan_in) for every linear whatever it is: on litgpt's Pythia
    block (parallel residual) the MLP's fc and proj get it, cut at 3 std, as every other matrix."""
    model = _litgpt_model("neox", reference=False)
    values = _apply(model, modern.olmo(model, init_fn="fan_in", seed=4))
    d = LITGPT["n_embd"]
    table = {}
    for path, p in model.named_parameters():
        if "norm" in path or "ln_f" in path:
            table[path] = ONE if path.endswith("weight") else ZERO
        elif path.endswith("bias"):
            table[path] = ZERO
        elif path == "transformer.wte.weight":
            table[path] = normal(1.0)
        else:
            table[path] = normal(p.shape[1] ** -0.5, cut=3)
    assert table["transformer.h.0.mlp.proj.weight"] == normal((4 * d) ** -0.5, cut=3)
    check_model(values, table)
