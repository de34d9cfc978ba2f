"""Model context: what depth- and width-aware schemes need to know about a model.

Modern schemes (GPT-2's scaled residual, Megatron, OLMo, muP, T-Fixup, DeepNet, T5, ...) need
more than one parameter's shape: the number of residual blocks L, the width d, and which
parameter is an embedding, a readout, an attention query/key/value/output projection, an MLP
input/output projection, and in which block it sits. ``ModelContext`` derives all of that from
the portable parameter records the walkers give (so it is the same for a torch, Keras, nnx or
linen model of one architecture), and the user can give or correct any of it:

    ctx = model_context(model)                       # derived
    ctx = model_context(model, depth=12, width=768)  # given
    ctx = model_context(model, sites={"mlp_out": name("*.proj.weight")})  # marked by selector

A site is found from the names of the owning modules, the way every transformer implementation
names them (``c_attn``/``qkv``/``in_proj`` fused, ``q``/``query``/``q_proj``, ``c_proj`` under
``attn`` or ``mlp``, BERT's ``attention.output.dense``, T5's ``wi``/``wo``, Keras and nnx
``MultiHeadAttention``'s ``query``/``key``/``value``/``attention_output``/``out``). The block of
a parameter is the numbered container it sits in (``h.3``, ``layer.3``, ``layers/3``, ``h_3``),
counted in declaration order; encoder and decoder stacks are counted separately.

>>> from polyinit.params import Param
>>> from polyinit.layout import OUT_IN
>>> p = lambda path, kind, role, shape: Param(path, kind, role, shape, OUT_IN, 0)
>>> ctx = context_from_params([p("h.0.attn.c_proj.weight", "dense", "weight", (8, 8)),
...                            p("h.1.mlp.c_proj.weight", "dense", "weight", (8, 32))])
>>> ctx.site("h.1.mlp.c_proj.weight"), ctx.depth
(Site(site='mlp_out', block=1, stack=''), 2)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from polyinit.errors import PolyinitError
from polyinit.layout import compute_fans

SITES = ("embedding", "position", "readout", "q", "k", "v", "qkv", "attn_out", "mlp_in", "mlp_out",
         "norm", "relative_bias", "other")
# Sites inside a residual block whose output is added to the residual stream.
RESIDUAL_OUTPUTS = ("attn_out", "mlp_out")
BLOCK_SITES = ("q", "k", "v", "qkv", "attn_out", "mlp_in", "mlp_out")


class ContextError(PolyinitError):
    """A scheme needs something about the model (depth, width, a kind of parameter) that could
    not be derived; the message names it and how to give it."""


@dataclass(frozen=True)
class Site:
    """What one parameter is in a residual model: its site, its block (0-based, declaration
    order, per stack) and its stack (``"encoder"``, ``"decoder"`` or ``""``)."""

    site: str
    block: Optional[int] = None
    stack: str = ""


# Module names by site, lower case. A name listed under two sites is decided by its parents.
_ATTENTION_PARENTS = ("attn", "attention", "self_attn", "selfattention", "self_attention",
                      "encdecattention", "encoder_attn", "crossattention", "cross_attn", "mha",
                      "multi_head_attention", "multiheadattention")
_MLP_PARENTS = ("mlp", "ffn", "feed_forward", "feedforward", "densereludense", "ff")
_BY_NAME = {
    "qkv": ("c_attn", "qkv", "query_key_value", "att_proj", "in_proj", "wqkv", "qkv_proj"),
    "q": ("q", "query", "q_proj", "wq", "q_lin"),
    "k": ("k", "key", "k_proj", "wk", "k_lin"),
    "v": ("v", "value", "v_proj", "wv", "v_lin"),
    "attn_out": ("o", "o_proj", "out_proj", "attn_out", "attention_output", "wo_attn", "out_lin"),
    "mlp_in": ("c_fc", "fc1", "wi", "wi_0", "wi_1", "w1", "w3", "up_proj", "gate_proj", "ff_proj",
               "fc_in", "dense_h_to_4h", "linear1", "lin1", "intermediate",
               # keras-hub's transformer layers
               "feedforward_intermediate_dense", "feedforward_gate_dense", "gate_up_proj"),
    "mlp_out": ("fc2", "w2", "down_proj", "ff_out", "fc_out", "dense_4h_to_h", "linear2", "lin2",
                "feedforward_output_dense"),
    "readout": ("lm_head", "readout", "unembed", "output_projection"),
    "position": ("wpe", "position_embeddings", "pos_emb", "pos_embedding", "embed_positions",
                 "position_embedding", "positional_embedding"),
    "relative_bias": ("relative_attention_bias",),
}
_SITE_OF = {module: site for site, modules in _BY_NAME.items() for module in modules}
_TORCH_PACKED = {"in_proj_weight": "qkv", "in_proj_bias": "qkv", "q_proj_weight": "q",
                 "k_proj_weight": "k", "v_proj_weight": "v"}


def _tokens(path: str) -> list[str]:
    return [t for t in re.split(r"[./]", path) if t]


def infer_site(path: str, kind: str, role: str) -> str:
    """The site of a parameter from its path, kind and role (see the module docstring).

    >>> infer_site("transformer.h.0.attn.c_proj.weight", "dense", "weight")
    'attn_out'
    >>> infer_site("encoder.layer.3.output.dense.weight", "dense", "weight")
    'mlp_out'
    """
    tokens = [t.lower() for t in _tokens(path)]
    if tokens and tokens[-1] in _TORCH_PACKED:
        return _TORCH_PACKED[tokens[-1]]
    modules = tokens[:-1] if len(tokens) > 1 else tokens
    module = modules[-1] if modules else ""
    # Norm layers of third-party classes (T5LayerNorm, LlamaRMSNorm) are kind "other" to the
    # walkers but named for what they are.
    if kind == "norm" or "norm" in module:
        return "norm"
    if module in _BY_NAME["relative_bias"]:
        return "relative_bias"
    parents = modules[:-1]
    near = [t for t in parents[-3:]]
    in_attention = any(t in _ATTENTION_PARENTS or "attention" in t or t.endswith("attn") for t in near)
    if kind == "embedding":
        return "position" if module in _BY_NAME["position"] else "embedding"
    if module in ("c_proj", "proj", "dense", "out", "wo"):
        # BERT: attention.output.dense is the attention output, layer.output.dense the MLP's;
        # GPT-2: attn.c_proj and mlp.c_proj; T5: DenseReluDense.wo; nnx MultiHeadAttention.out.
        if module == "dense" and parents[-1:] == ["output"]:
            return "attn_out" if any("attention" in t for t in parents[-3:-1]) else "mlp_out"
        if module == "dense" and parents[-1:] == ["intermediate"]:
            return "mlp_in"
        if in_attention and module != "wo":
            return "attn_out"
        if any(t in _MLP_PARENTS for t in near) or module == "wo":
            return "mlp_out"
        return "other"
    site = _SITE_OF.get(module)
    if site in ("q", "k", "v") and not in_attention and len(module) == 1:
        return "other"  # a lone "q"/"k"/"v" outside attention is not a projection
    return site or "other"


_INDEX = re.compile(r"^(?:\d+|[a-z_]*?_(\d+))$")


def _block_of(path: str) -> Optional[tuple[str, str]]:
    """(container path, number) of the numbered container a parameter sits in, or None."""
    tokens = _tokens(path)
    for i, token in enumerate(tokens[:-1]):
        if token.isdigit():
            return "/".join(tokens[:i]), token
        # Keras/linen style: h_3, layers_3, block_3 (not an auto-name like dense_2 at the end)
        match = re.fullmatch(r"(h|layers?|blocks?|block|encoder_layer|decoder_layer|transformer_layer)_(\d+)", token)
        if match:
            return "/".join(tokens[:i] + [match.group(1)]), match.group(2)
    return None


def _stack(path: str) -> str:
    lowered = path.lower()
    if "decoder" in lowered:
        return "decoder"
    if "encoder" in lowered:
        return "encoder"
    return ""


@dataclass(frozen=True)
class ModelContext:
    """Sites, blocks, depth and width of a model, from its records (see the module docstring)."""

    params: tuple
    sites: Mapping[str, Site]
    depths: Mapping[str, int]  # stack -> number of blocks
    width: Optional[int]
    config: Mapping[str, Any] = field(default_factory=dict)

    def site(self, path: str) -> Site:
        return self.sites[path]

    def of(self, *sites: str) -> list:
        """The records at these sites."""
        return [p for p in self.params if self.sites[p.path].site in sites]

    @property
    def depth(self) -> int:
        """Number of residual blocks (of the deepest stack)."""
        return max(self.depths.values(), default=0)

    def depth_of(self, stack: str) -> int:
        return self.depths.get(stack, 0)

    def require(self, scheme: str, *sites: str) -> None:
        """Raise a ContextError naming ``scheme`` if none of ``sites`` was found."""
        if not self.of(*sites):
            found = sorted({s.site for s in self.sites.values()})
            raise ContextError(f"{scheme}: found no parameter at site(s) {', '.join(sites)} in this model "
                               f"(found: {', '.join(found)}); mark them with sites={{'{sites[0]}': "
                               "name('...')}} in model_context(...)")

    def need_depth(self, scheme: str, stack: str = "") -> int:
        depth = self.depths.get(stack, 0) if stack else self.depth
        if not depth:
            raise ContextError(f"{scheme}: needs the number of residual blocks{' of the ' + stack if stack else ''}, "
                               "found none in this model; pass depth=L to model_context(...)")
        return depth

    def need_width(self, scheme: str) -> int:
        if not self.width:
            raise ContextError(f"{scheme}: needs the model width d, which could not be derived; "
                               "pass width=d to model_context(...)")
        return self.width

    def fan_in(self, param) -> int:
        return compute_fans(param.shape, param.layout).fan_in

    def need_config(self, scheme: str, key: str) -> Any:
        if key not in self.config:
            raise ContextError(f"{scheme}: needs {key}, which could not be derived; pass {key}=... "
                               "to model_context(...)")
        return self.config[key]


def context_from_params(params: Sequence, *, depth: "int | Mapping[str, int] | None" = None,
                        width: Optional[int] = None, sites: Optional[Mapping[str, Any]] = None,
                        config: Optional[Mapping[str, Any]] = None) -> ModelContext:
    """A ``ModelContext`` from parameter records; ``sites`` maps a site to a selector marking
    its parameters (it wins over the names), ``depth``/``width`` override what is derived."""
    from polyinit.rules import Context as RuleContext

    marked: dict[str, str] = {}
    rule_context = RuleContext(params)
    for site_name, selector in (sites or {}).items():
        if site_name not in SITES:
            raise ContextError(f"model_context: unknown site {site_name!r}; expected one of {', '.join(SITES)}")
        hits = [p.path for p in params if selector.matches(p, rule_context)]
        if not hits:
            raise ContextError(f"model_context: sites[{site_name!r}] = {selector!r} matched no parameter")
        marked.update({path: site_name for path in hits})
    blocks: dict[str, dict[tuple, int]] = {}
    found: dict[str, Site] = {}
    for p in params:
        site = marked.get(p.path) or infer_site(p.path, p.kind, p.role)
        block, stack = None, _stack(p.path)
        where = _block_of(p.path)
        if where is not None and site not in ("embedding", "position", "readout"):
            numbering = blocks.setdefault(stack, {})
            block = numbering.setdefault(where, len(numbering))
        found[p.path] = Site(site, block, stack)
    # Stacks count only containers that hold attention or MLP parameters.
    depths = {stack: len({s.block for s in found.values() if s.stack == stack and s.block is not None
                          and s.site in BLOCK_SITES}) for stack in blocks}
    if depth is not None:
        depths = dict(depth) if isinstance(depth, Mapping) else {stack: depth for stack in (depths or {"": 0})}
    derived_width = width or _width(params, found)
    return ModelContext(tuple(params), found, {k: v for k, v in depths.items() if v}, derived_width,
                        dict(config or {}))


def _width(params: Sequence, sites: Mapping[str, Site]) -> Optional[int]:
    """d_model: the dimension of the token embedding, else the fan-in of a query projection."""
    for p in params:
        if sites[p.path].site == "embedding" and len(p.shape) == 2:
            return int(p.shape[-1])
    for p in params:
        if sites[p.path].site in ("q", "qkv", "mlp_in") and len(p.shape) >= 2:
            try:
                return compute_fans(p.shape, p.layout).fan_in
            except PolyinitError:
                continue
    return None


_CONFIG_KEYS = {"depth": ("n_layer", "num_hidden_layers", "num_layers", "n_layers"),
                "width": ("n_embd", "hidden_size", "d_model"),
                "d_kv": ("d_kv", "head_dim"), "n_heads": ("n_head", "num_attention_heads", "num_heads"),
                "d_ff": ("d_ff", "n_inner", "intermediate_size")}


def _config_of(model: Any) -> dict[str, Any]:
    """Numbers from a transformers-style ``model.config`` where the model has one."""
    config = getattr(model, "config", None)
    found: dict[str, Any] = {}
    if not hasattr(config, "to_dict"):  # transformers' PretrainedConfig; anything else is not a config
        return found
    for key, names in _CONFIG_KEYS.items():
        for name in names:
            value = getattr(config, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                found[key] = value
                break
    return found


def model_context(model: Any, *, depth: "int | Mapping[str, int] | None" = None, width: Optional[int] = None,
                  sites: Optional[Mapping[str, Any]] = None, **config: Any) -> ModelContext:
    """The context of ``model`` (any framework the rules support); see the module docstring.

    Numbers a transformers model's ``config`` holds (``d_kv``, ``num_heads``, ``d_ff``) are read
    from it; keyword arguments give or override any of them.

    >>> # ctx = model_context(GPT2LMHeadModel(GPT2Config())); ctx.depth, ctx.width -> (12, 768)
    """
    from polyinit.rules import every, select

    params = select(model, every())
    from_config = _config_of(model)
    from_config.update(config)
    return context_from_params(params, depth=depth, width=width, sites=sites, config=from_config)


def iter_sites(context: ModelContext, sites: Iterable[str]) -> list[str]:
    """Paths of the parameters at ``sites``, in declaration order."""
    wanted = set(sites)
    return [p.path for p in context.params if context.sites[p.path].site in wanted]
