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

Sites come from what the model computes (``polyinit.structure``): one forward pass on an example
input (derived from the model, or ``example_input=``) is traced, and the residual stream,
attention (q.k -> softmax -> .v), MLP in/out, embedding, readout, norms, blocks and stacks are
read off the trace, whatever the modules are called. ``ctx.source(path)`` says where each site
came from (``"structure"``, ``"name"`` or ``"user"``) and ``ctx.summary()`` reports it. Where the
trace is silent (no tracer for the framework, no input could be derived, a parameter the forward
pass never read), a site is found from the names of the owning modules, the way every transformer implementation
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
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from polyinit import _validate
from polyinit.errors import PolyinitError
from polyinit.layout import compute_fans
from polyinit.params import Param

SITES = (
    "embedding",
    "position",
    "readout",
    "q",
    "k",
    "v",
    "qkv",
    "attn_out",
    "mlp_in",
    "mlp_out",
    "norm",
    "relative_bias",
    "other",
)
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
    block: int | None = None
    stack: str = ""


# Module names by site, lower case. A name listed under two sites is decided by its parents.
_ATTENTION_PARENTS = (
    "attn",
    "attention",
    "self_attn",
    "selfattention",
    "self_attention",
    "encdecattention",
    "encoder_attn",
    "crossattention",
    "cross_attn",
    "mha",
    "multi_head_attention",
    "multiheadattention",
)
_MLP_PARENTS = ("mlp", "ffn", "feed_forward", "feedforward", "densereludense", "ff")
_BY_NAME = {
    "qkv": ("c_attn", "qkv", "query_key_value", "att_proj", "in_proj", "wqkv", "qkv_proj"),
    "q": ("q", "query", "q_proj", "wq", "q_lin", "query_proj"),  # query_proj: Equinox
    "k": ("k", "key", "k_proj", "wk", "k_lin", "key_proj"),
    "v": ("v", "value", "v_proj", "wv", "v_lin", "value_proj"),
    "attn_out": ("o", "o_proj", "out_proj", "attn_out", "attention_output", "wo_attn", "out_lin", "output_proj"),
    "mlp_in": (
        "c_fc",
        "fc1",
        "wi",
        "wi_0",
        "wi_1",
        "w1",
        "w3",
        "up_proj",
        "gate_proj",
        "ff_proj",
        "fc_in",
        "dense_h_to_4h",
        "linear1",
        "lin1",
        "intermediate",
        # keras-hub's transformer layers
        "feedforward_intermediate_dense",
        "feedforward_gate_dense",
        "gate_up_proj",
    ),
    "mlp_out": (
        "fc2",
        "w2",
        "down_proj",
        "ff_out",
        "fc_out",
        "dense_4h_to_h",
        "linear2",
        "lin2",
        "feedforward_output_dense",
    ),
    "readout": ("lm_head", "readout", "unembed", "output_projection"),
    "position": (
        "wpe",
        "position_embeddings",
        "pos_emb",
        "pos_embedding",
        "embed_positions",
        "position_embedding",
        "positional_embedding",
    ),
    "relative_bias": ("relative_attention_bias",),
}
_SITE_OF = {module: site for site, modules in _BY_NAME.items() for module in modules}
_TORCH_PACKED = {
    "in_proj_weight": "qkv",
    "in_proj_bias": "qkv",
    "q_proj_weight": "q",
    "k_proj_weight": "k",
    "v_proj_weight": "v",
}


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
    near = list(parents[-3:])
    in_attention = any(t in _ATTENTION_PARENTS or "attention" in t or t.endswith("attn") for t in near)
    if kind == "embedding":
        return "position" if module in _BY_NAME["position"] else "embedding"
    if module in ("c_proj", "proj", "dense", "out", "wo", "linear"):  # linear: Haiku's attention output
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


def _block_of(path: str) -> tuple[str, str] | None:
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
    width: int | None
    config: Mapping[str, Any] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)  # path -> "structure" | "name" | "user"
    structure: Any = None  # the polyinit.structure.Structure the sites were read from, if any
    note: str = ""  # why the trace is silent, when it is
    kept: frozenset = frozenset()  # paths the user keeps at the framework's default (keep=)
    origin: str = ""  # "the <model class> traced on <input>", for messages

    def site(self, path: str) -> Site:
        return self.sites[path]

    def source(self, path: str) -> str:
        """Where the site of ``path`` came from: ``"structure"`` (the traced forward pass),
        ``"tp_plan"`` (the model's tensor-parallel plan, where the trace is silent), ``"name"``
        (a hint from its module names, where both are silent) or ``"user"`` (``sites=``)."""
        return self.sources.get(path, "name")

    def role(self, param: Param) -> str:
        """The parameter's role by use where the trace saw it (a 1-D scale of an RMSNorm class
        no registry knows is a ``scale``), else the walker's role."""
        placed = self.structure.get(param.path) if self.structure is not None else None
        return placed.role if placed is not None and param.role in ("other", "weight") else param.role

    def parts(self, path: str) -> tuple:
        """The logical parts of a packed tensor (q/k/v of a fused qkv, gate/up), from the trace."""
        placed = self.structure.get(path) if self.structure is not None else None
        return placed.parts if placed is not None else ()

    def summary(self) -> str:
        """Where every site came from, by source, and the depth per stack.

        >>> print(context_from_params([]).summary().splitlines()[0])
        sites: 0 from structure, 0 from names, 0 from user (sites=)
        """
        counts = {k: sum(1 for v in self.sources.values() if v == k) for k in ("structure", "name", "user")}
        depths = ", ".join(f"{k or 'stack'} {v}" for k, v in self.depths.items()) or "none found"
        planned = sum(1 for v in self.sources.values() if v == "tp_plan")
        head = (
            f"sites: {counts['structure']} from structure, {counts['name']} from names, "
            f"{counts['user']} from user (sites=)" + (f", {planned} from the TP plan" if planned else "")
        )
        lines = [head, f"depth: {depths}"]
        if self.note:
            lines.append(f"names used because {self.note}")
        for p in self.params:
            site = self.sites[p.path]
            where = "" if site.block is None else f" block {site.block}"
            where += f" ({site.stack})" if site.stack else ""
            parts = "".join(f" {part.name}{list(part.ranges)}" for part in self.parts(p.path))
            lines.append(f"  {p.path}: {site.site}{where} [{self.source(p.path)}]{parts}")
        return "\n".join(lines)

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
            residual = ""
            if self.structure is not None and not any(self.structure.residual.values()):
                residual = (
                    "; its traced forward pass has no residual stream (no add of a value and a branch computed from it)"
                )
            raise ContextError(
                f"{scheme}: found no parameter at site(s) {', '.join(sites)} in {self.origin or 'this model'} "
                f"(found: {', '.join(found)}){residual}; mark them with sites={{'{sites[0]}': "
                "name('...')}} in model_context(...)"
            )

    def need_depth(self, scheme: str, stack: str = "") -> int:
        depth = self.depths.get(stack, 0) if stack else self.depth
        if not depth:
            raise ContextError(
                f"{scheme}: needs the number of residual blocks{' of the ' + stack if stack else ''}, "
                "found none in this model; pass depth=L to model_context(...)"
            )
        return depth

    def need_width(self, scheme: str) -> int:
        if not self.width:
            raise ContextError(
                f"{scheme}: needs the model width d, which could not be derived; pass width=d to model_context(...)"
            )
        return self.width

    def fan_in(self, param: Param) -> int:
        return compute_fans(param.shape, param.layout).fan_in

    def need_config(self, scheme: str, key: str) -> Any:
        if key not in self.config:
            raise ContextError(
                f"{scheme}: needs {key}, which could not be derived; pass {key}=... to model_context(...)"
            )
        return self.config[key]


def context_from_params(
    params: Sequence,
    *,
    depth: int | Mapping[str, int] | None = None,
    width: int | None = None,
    sites: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    structure: Any = None,
    note: str = "",
    keep: Any = None,
    origin: str = "",
    plan: Mapping[str, str] | None = None,
) -> ModelContext:
    """A ``ModelContext`` from parameter records and, where given, the ``structure`` a trace
    found (``polyinit.structure.find_structure``): each site comes from ``sites`` (a selector
    per site, ``"user"``), else from the structure, else from a tensor-parallel ``plan``
    (``polyinit.structure.tp_plan``: colwise is an input projection, rowwise an output one,
    ``"tp_plan"``), else from the names (``infer_site``); ``depth``/``width`` override what is
    derived."""
    from polyinit.rules import Context as RuleContext
    from polyinit.structure.tp_plan import direction

    marked: dict[str, str] = {}
    rule_context = RuleContext(params)
    for site_name, selector in (sites or {}).items():
        if site_name not in SITES:
            raise ContextError(
                f"model_context: unknown site {site_name!r}; expected one of {', '.join(SITES)}"
                + _close(site_name, SITES)
            )
        if not hasattr(selector, "matches"):
            raise ContextError(
                f"model_context: sites[{site_name!r}] must be a selector such as name('...'), received {selector!r}"
            )
        hits = [p.path for p in params if selector.matches(p, rule_context)]
        if not hits:
            raise ContextError(f"model_context: sites[{site_name!r}] = {selector!r} matched no parameter")
        marked.update(dict.fromkeys(hits, site_name))
    blocks: dict[str, dict[tuple, int]] = {}
    found: dict[str, Site] = {}
    sources: dict[str, str] = {}
    for p in params:
        placed = structure.get(p.path) if structure is not None else None
        if placed is not None:
            found[p.path] = Site(placed.site, placed.block, placed.stack)
            sources[p.path] = "structure"
        else:
            site, block, stack = infer_site(p.path, p.kind, p.role), None, _stack(p.path)
            said = direction(p.path, plan) if plan else None
            if said is not None:
                site = _planned_site(said, site, p.path)
            where = _block_of(p.path)
            if where is not None and site not in ("embedding", "position", "readout"):
                numbering = blocks.setdefault(stack, {})
                block = numbering.setdefault(where, len(numbering))
            found[p.path] = Site(site, block, stack)
            sources[p.path] = "name" if said is None else "tp_plan"
        if p.path in marked:
            found[p.path] = Site(marked[p.path], found[p.path].block, found[p.path].stack)
            sources[p.path] = "user"
    if structure is not None and structure.depths:
        depths = dict(structure.depths)
    else:
        # Stacks count only containers that hold attention or MLP parameters.
        depths = {
            stack: len(
                {s.block for s in found.values() if s.stack == stack and s.block is not None and s.site in BLOCK_SITES}
            )
            for stack in blocks
        }
    depths = {k: v for k, v in depths.items() if v}
    if depth is not None:
        depths = _given_depth(depth, depths)
    derived_width = width or _width(params, found)
    if keep is not None and not hasattr(keep, "matches"):
        raise ContextError(f"model_context: keep must be a selector such as name('...'), received {keep!r}")
    kept = frozenset(p.path for p in params if keep is not None and keep.matches(p, rule_context))
    return ModelContext(
        tuple(params), found, depths, derived_width, dict(config or {}), sources, structure, note, kept, origin
    )


def _planned_site(said: str, by_name: str, path: str) -> str:
    """The site a tensor-parallel plan gives (``"in"``, ``"out"``, ``"embedding"``,
    ``"readout"``): the plan decides input or output projection, the names only which one
    (attention or MLP; the MLP where they say nothing)."""
    if said == "readout":
        return "readout"
    if said == "embedding":
        return by_name if by_name in ("embedding", "position") else "embedding"
    if said == "in":
        return by_name if by_name in ("q", "k", "v", "qkv", "mlp_in") else "mlp_in"
    if by_name in RESIDUAL_OUTPUTS:
        return by_name
    parents = [t.lower() for t in _tokens(path)[:-2][-3:]]
    return (
        "attn_out"
        if any(t in _ATTENTION_PARENTS or "attention" in t or t.endswith("attn") for t in parents)
        else "mlp_out"
    )


def _close(value: str, choices: Sequence[str]) -> str:
    import difflib

    near = difflib.get_close_matches(str(value), list(choices), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


def _given_depth(depth: Any, derived: Mapping[str, int]) -> dict[str, int]:
    """``depth=L`` for every stack found (or the one unnamed stack), or a stack -> L mapping that
    names stacks the model has."""
    if isinstance(depth, Mapping):
        known = tuple(derived) or ("", "encoder", "decoder")
        out = {}
        for stack, value in depth.items():
            if stack not in known:
                raise ContextError(
                    f"model_context: depth names stack {stack!r}, which this model does not have; "
                    f"its stacks: {', '.join(map(repr, known))}" + _close(stack, known)
                )
            out[stack] = _validate.integer("model_context", f"depth[{stack!r}]", value, minimum=1, error=ContextError)
        return out
    value = _validate.integer("model_context", "depth", depth, minimum=1, error=ContextError)
    return dict.fromkeys(derived or {"": 0}, value)


def _width(params: Sequence, sites: Mapping[str, Site]) -> int | None:
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


_CONFIG_KEYS = {
    "depth": ("n_layer", "num_hidden_layers", "num_layers", "n_layers"),
    "width": ("n_embd", "hidden_size", "d_model"),
    "d_kv": ("d_kv", "head_dim"),
    "n_heads": ("n_head", "num_attention_heads", "num_heads"),
    "d_ff": ("d_ff", "n_inner", "intermediate_size"),
}


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


# Numbers a scheme may ask the context for (``ctx.need_config``), given as keywords.
CONFIG_KEYS = ("d_kv", "n_heads", "d_ff", "head_dim", "n_kv_heads", "vocab_size")


def model_context(
    model: Any,
    *,
    depth: int | Mapping[str, int] | None = None,
    width: int | None = None,
    sites: Mapping[str, Any] | None = None,
    example_input: Any = None,
    keep: Any = None,
    **config: Any,
) -> ModelContext:
    """The context of ``model`` (any framework the rules support); see the module docstring.

    The sites come from one traced forward pass on ``example_input`` (derived from the model when
    None: token ids from a transformers/litgpt config or a ``vocab_size``, a Keras input shape,
    ``input_size``, an nnx/linen first layer); where no input can be derived or the framework has
    no tracer, from the model's tensor-parallel plan and names. A linen model is given with its
    forward pass: ``model_context((module, variables))`` or ``model_context(module.bind(variables))``
    (the records are those of ``variables``, which ``apply`` takes).
    Numbers a transformers model's ``config`` holds (``d_kv``, ``num_heads``, ``d_ff``) are read
    from it; keyword arguments give or override any of them (``CONFIG_KEYS``).

    ``keep`` (a selector) marks parameters every scheme leaves at the framework's default (KEEP).

    Raises ``ContextError`` naming the model, the input and what to pass when the forward pass
    fails on the input (the model is left as it was), and for arguments of the wrong type.

    >>> # ctx = model_context(GPT2LMHeadModel(GPT2Config())); ctx.depth, ctx.width -> (12, 768)
    >>> # print(ctx.summary())  # "sites: 148 from structure, 0 from names, ..."
    """
    from collections import Counter

    from polyinit.frameworks._walk import UnregisteredTypesWarning, unregistered_types_message
    from polyinit.rules import every, select

    for key, value in config.items():
        if key not in CONFIG_KEYS:
            raise ContextError(
                f"model_context: unknown keyword {key}=; expected depth, width, sites, example_input, keep "
                f"or one of {', '.join(CONFIG_KEYS)}"
                + _close(key, ("depth", "width", "sites", "keep", "example_input") + CONFIG_KEYS)
            )
        config[key] = _validate.integer("model_context", key, value, minimum=1, error=ContextError)
    if width is not None:
        width = _validate.integer("model_context", "width", width, minimum=1, error=ContextError)
    if depth is not None and not isinstance(depth, Mapping):
        _validate.integer("model_context", "depth", depth, minimum=1, error=ContextError)
    if sites is not None and not isinstance(sites, Mapping):
        raise ContextError(f"model_context: sites must be a mapping site -> selector, received {sites!r}")
    with warnings.catch_warnings(record=True) as caught:  # unregistered layer types: the trace may type them
        warnings.simplefilter("always")
        params = select(_walked(model), every())
    structure, note, origin = _structure_of(model, params, example_input)
    untyped = [p for p in params if p.kind == "other" and (structure is None or structure.get(p.path) is None)]
    for warning in caught:
        if issubclass(warning.category, UnregisteredTypesWarning):
            if untyped:  # name only the types whose parameters the trace left untyped too
                counts = Counter(p.module_type or "?" for p in untyped)
                message = unregistered_types_message(counts, nor="the traced structure")
                warnings.warn(message, UnregisteredTypesWarning, stacklevel=2)
        elif untyped or not issubclass(warning.category, UserWarning):
            warnings.warn(warning.message, warning.category, stacklevel=2)
    from_config = _config_of(model)
    from_config.update(config)
    from polyinit.structure.tp_plan import plan_of

    return context_from_params(
        params,
        depth=depth,
        width=width,
        sites=sites,
        config=from_config,
        structure=structure,
        note=note,
        keep=keep,
        origin=origin,
        plan=plan_of(model),
    )


def _walked(model: Any) -> Any:
    """What the rules walk: a linen model given with its forward pass (``(module, variables)``
    or ``module.bind(variables)``) is walked as its variables tree, which ``apply`` takes."""
    import sys

    if "flax.linen" in sys.modules:
        from polyinit.structure.trace_jax import linen_pair

        pair = linen_pair(model)
        if pair is not None:
            return pair[1]
    return model


def _structure_of(model: Any, params: Sequence, example_input: Any) -> tuple[Any, str, str]:
    """(structure, "", origin) from one traced forward pass, or (None, why the trace is silent,
    origin)."""
    from polyinit import structure as st

    try:
        tracer = st.tracer_for(model)
    except st.StructureUnavailable as why:
        if example_input is not None:
            raise ContextError(f"model_context: example_input given, but {why}") from None
        return None, str(why), f"the {_model_name(model)}"
    derived = example_input is None
    why_not = getattr(tracer, "silent", lambda model: None)(model)
    if why_not and derived:  # e.g. FSDP2 shards: a forward pass would gather them
        return None, why_not, f"the {_model_name(model)}"
    given = tracer.example_input(model) if derived else example_input
    what = _model_name(model)
    guess = getattr(tracer, "guessed_input", lambda model: None)(model) if given is None else None
    if guess is not None:  # read off the first layer: where the forward pass refuses it, names
        try:
            graph = tracer.trace(model, guess)
        except Exception as problem:
            return (
                None,
                (
                    f"no example input could be derived for the {what} (its first layer's input, "
                    f"{_describe(guess)}, did not run: {type(problem).__name__}); pass "
                    "model_context(model, example_input=...) to read sites from its structure"
                ),
                f"the {what}",
            )
        return (
            st.find_structure(graph, params),
            "",
            f"the {what} traced on {_describe(guess)} (its first layer's input)",
        )
    if given is None:
        return (
            None,
            (
                f"no example input could be derived for the {what}; pass "
                "model_context(model, example_input=...) to read sites from its structure"
            ),
            f"the {what}",
        )
    try:
        graph = tracer.trace(model, given)
    except st.StructureUnavailable as why:  # a meta-device model whose forward pass needs values
        if derived:
            return None, str(why), f"the {what}"
        raise ContextError(f"model_context: example_input given, but {why}") from None
    except Exception as problem:  # the model's own forward pass failed: say what to pass
        origin = "the example input derived from the model" if derived else "example_input"
        raise ContextError(
            f"model_context: the forward pass of the {what} on {origin} ({_describe(given)}) failed: "
            f"{type(problem).__name__}: {problem}. Pass model_context(model, example_input=...) with an input "
            "its forward accepts (a tensor, or a tuple/dict of them), or give the sites by hand "
            "(sites={...}, depth=...)"
        ) from problem
    return st.find_structure(graph, params), "", f"the {what} traced on {_describe(given)}"


def _model_name(model: Any) -> str:
    if isinstance(model, tuple) and model:  # (linen module, variables): name the module
        return f"{_model_name(model[0])} with its variables"
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _describe(value: Any) -> str:
    """A short description of an input: shapes of arrays, keys of dicts, type otherwise."""
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__}(" + ", ".join(_describe(v) for v in value) + ")"
    return f"{type(value).__name__} {value!r}"[:80]


def iter_sites(context: ModelContext, sites: Iterable[str]) -> list[str]:
    """Paths of the parameters at ``sites``, in declaration order."""
    wanted = set(sites)
    return [p.path for p in context.params if context.sites[p.path].site in wanted]
