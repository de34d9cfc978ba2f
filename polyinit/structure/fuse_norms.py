"""Normalisations written out op by op, folded into one ``norm`` node.

JAX (nnx, linen, Keras on JAX) and TensorFlow have no fused layer norm: a trace shows a mean, a
square, an ``rsqrt`` and a handful of ``mul``/``add`` ops, arranged differently by every library
(nnx: ``(x - mean) * (rsqrt(var + eps) * scale) + bias``; TensorFlow's ``batch_normalization``:
``x * (rsqrt * gamma) + (beta - mean * (rsqrt * gamma))``; an RMSNorm: ``x * rsqrt(mean(x^2) + eps)
* w``; Gemma: ``* (1 + w)``). This rewrite finds each one from its statistic, not its layout:

1. an ``rsqrt`` (or ``sqrt``) of ``mean(square(u)) [+ eps]`` over axes ``A``: with ``u = x - mean(x)``
   (or the variance written as ``mean(x^2) - mean(x)^2``) a layer norm of ``x``, else an RMS norm of
   ``u``;
2. the region of elementwise ops computed from it and ``x`` (and from constants and parameters
   seen through movement ops) with exactly one value leaving it: the norm's output;
3. a parameter entering the region through a ``mul`` is the scale, through an ``add`` the offset
   (``1 + w`` is a scale, ``attrs["scale_plus_one"]``).

The region becomes ``norm(x, scale, offset)`` with ``fn`` (``layer``, ``rms``) and ``axes``; a
missing scale is a ``const`` placeholder, so ``inputs[1]`` is always the scale's slot. Anything
that does not match exactly is left as it was.

>>> from polyinit.structure.graph import Graph
>>> g = Graph()
>>> x, w = g.add("input", (), (2, 4), index=0), g.add("param", (), (4,), path="ln.weight")
>>> ms = g.add("reduce", (g.add("unary", (x,), (2, 4), fn="square"),), (2, 1), fn="mean", axes=(1,))
>>> r = g.add("unary", (g.add("add", (ms, g.add("const", (), ())), (2, 1)),), (2, 1), fn="rsqrt")
>>> g.outputs = (g.add("mul", (g.add("mul", (x, r), (2, 4)), w), (2, 4)),)
>>> fused = fuse_norms(g)
>>> out = fused[fused.outputs[0]]
>>> out.op, out.attrs["fn"], out.attrs["axes"], fused[out.inputs[1]].attrs["path"]
('norm', 'rms', (1,), 'ln.weight')
"""

from __future__ import annotations

from polyinit.structure.graph import MOVEMENT, Graph
from polyinit.structure.jaxpr import prune

_ELEMENTWISE = MOVEMENT + ("add", "sub", "mul", "div", "max", "min", "unary")
_SKIP = MOVEMENT + ("add", "max")  # from an rsqrt back to its statistic: + eps, max(0, .), dtype, layout
_SELECTS = ("select_n", "SelectV2", "Select")  # a guard with one computed operand (jnp.var's ddof check)


def fuse_norms(g: Graph) -> Graph:
    """``g`` with every written-out layer/RMS norm replaced by one ``norm`` node (see module doc)."""
    static = _static(g)
    fused: dict[int, tuple] = {}  # exit node id -> (x, scale, offset, fn, axes, plus_one)
    inside: set[int] = set()
    for node in g:
        if node.op == "unary" and node.attrs.get("fn") in ("rsqrt", "sqrt") and node.id not in inside:
            found = _statistic(g, node.inputs[0], static)
            if found is None:
                continue
            region = _region(g, found, node.id, static)
            if region is not None:
                members, exit_id, norm = region
                inside |= members - {exit_id}
                fused[exit_id] = norm
    if not fused:
        return g
    return prune(_rebuild(g, fused, inside))


def _static(g: Graph) -> list[bool]:
    """Values computed from constants only (no input, no parameter)."""
    out: list[bool] = []
    for node in g:
        out.append(
            node.op == "const"
            or (node.op not in ("input", "param") and bool(node.inputs) and all(out[i] for i in node.inputs))
        )
    return out


def _strip(g: Graph, value: int, ops: tuple, static: list) -> int:
    """Follow ``value`` back through ``ops`` (and guards that select between it and constants),
    taking the one non-constant operand of each."""
    while g[value].op in ops or (g[value].op == "other" and g[value].attrs.get("name") in _SELECTS):
        live = [i for i in g[value].inputs if not static[i]]
        if len(live) != 1:
            break
        value = live[0]
    return value


def _mean_of(g: Graph, value: int, static: list) -> tuple[int, tuple] | None:
    """(v, axes) where ``value`` is the mean of ``v`` over ``axes``: ``reduce(mean)`` or
    ``reduce(sum) / constant``."""
    node = g[value]
    if node.op == "div" and len(node.inputs) == 2 and static[node.inputs[1]]:
        node = g[_strip(g, node.inputs[0], MOVEMENT, static)]
        if node.op == "reduce" and node.attrs.get("fn") == "sum":
            return node.inputs[0], tuple(node.attrs["axes"])
        return None
    if node.op == "reduce" and node.attrs.get("fn") == "mean":
        return node.inputs[0], tuple(node.attrs["axes"])
    return None


def _mean_chain(g: Graph, value: int, x: int, static: list) -> set:
    """The nodes of ``value`` = a mean of ``x`` (through movement ops), or an empty set."""
    chain, node = set(), value
    while g[node].op in MOVEMENT:
        chain.add(node)
        node = g[node].inputs[0]
    mean = _mean_of(g, node, static)
    if mean is None or mean[0] != x:
        return set()
    chain.add(node)
    while g[node].op != "reduce":
        node = g[node].inputs[0]
        chain.add(node)
    return chain


def _squared(g: Graph, value: int) -> int | None:
    node = g[value]
    if node.op == "unary" and node.attrs.get("fn") == "square":
        return node.inputs[0]
    if node.op == "mul" and len(node.inputs) == 2 and node.inputs[0] == node.inputs[1]:
        return node.inputs[0]
    return None


def _statistic(g: Graph, value: int, static: list) -> tuple | None:
    """(fn, x, axes) of the variance (or mean square) under an rsqrt, or None."""
    value = _strip(g, value, _SKIP, static)
    node = g[value]
    if node.op == "sub" and len(node.inputs) == 2:  # mean(x^2) - mean(x)^2 (nnx, linen LayerNorm)
        first, second = _mean_of(g, node.inputs[0], static), _squared(g, node.inputs[1])
        if first is not None and second is not None:
            x, mean = _squared(g, first[0]), _mean_of(g, second, static)
            if x is not None and mean is not None and mean[0] == x and mean[1] == first[1]:
                return "layer", x, first[1]
        return None
    mean_square = _mean_of(g, value, static)
    if mean_square is None:
        return None
    u = _squared(g, mean_square[0])
    if u is None:
        return None
    centred = g[_strip(g, u, MOVEMENT, static)]
    if centred.op == "sub" and len(centred.inputs) == 2 and not static[centred.inputs[1]]:
        mean = _mean_of(g, _strip(g, centred.inputs[1], MOVEMENT, static), static)
        if mean is not None and mean[0] == centred.inputs[0]:
            return "layer", centred.inputs[0], mean_square[1]
    return "rms", u, mean_square[1]


def _descendants(g: Graph, start: int, stop: int) -> set:
    out = {start}
    for node in g.nodes[start + 1 : stop + 1]:
        if any(i in out for i in node.inputs):
            out.add(node.id)
    return out


def _ancestors(g: Graph, end: int) -> set:
    out, todo = {end}, [end]
    while todo:
        for i in g[todo.pop()].inputs:
            if i not in out:
                out.add(i)
                todo.append(i)
    return out


def _param_chain(g: Graph, value: int) -> tuple[int, bool] | None:
    """(param node, plus_one) where ``value`` is a parameter through movement ops, or ``1 + w``."""
    plus_one = False
    node = g[value]
    while True:
        if node.op == "param":
            return node.id, plus_one
        if node.op in MOVEMENT and node.inputs:
            node = g[node.inputs[0]]
        elif node.op == "add" and not plus_one and any(g[i].op == "const" for i in node.inputs):
            plus_one = True
            node = g[next(i for i in node.inputs if g[i].op != "const")]
        else:
            return None


def _region(g: Graph, found: tuple, root: int, static: list) -> tuple | None:
    fn, x, axes = found
    members = (_descendants(g, x, root) & _ancestors(g, root)) - {x}
    params: dict[int, tuple] = {}  # region node id -> (param node, plus_one) for parameter operands
    for node in g.nodes[x + 1 :]:
        if node.id in members or node.op not in _ELEMENTWISE:
            continue
        operands, stats, linked = {}, set(), False
        for i in node.inputs:
            if i in members or i == x:
                linked = True
            elif static[i]:
                continue
            elif _mean_chain(g, i, x, static):
                stats |= _mean_chain(g, i, x, static)  # another mean of x (TF's -mean * rsqrt)
                linked = True
            else:
                chain = _param_chain(g, i)
                if chain is None:
                    break
                operands[node.id] = chain
        else:
            if linked:
                members |= stats | {node.id}
                params.update(operands)
    # The output: the last op that combines two computed values (x and the rsqrt, or a parameter)
    # and reads both x itself (not only through a reduction) and the rsqrt; an output's Identity or
    # the next layer's ``x - 0`` / ``x ** 2`` after it take one value and are not the norm.
    direct, scaled = {x}, {root}
    for m in sorted(members):
        ins = g[m].inputs
        if g[m].op != "reduce" and any(i in direct for i in ins):
            direct.add(m)
        if any(i in scaled for i in ins):
            scaled.add(m)
    ends = [m for m in direct & scaled if sum(not static[i] for i in g[m].inputs) >= 2]
    if not ends:
        return None
    region = (_ancestors(g, max(ends)) & members) | {max(ends)}
    exits = [m for m in region if m in g.outputs or any(u.id not in region for u in g.users(m))]
    if len(exits) != 1 or g[exits[0]].shape != g[x].shape:
        return None
    params = {k: v for k, v in params.items() if k in region}
    scale = offset = None
    plus_one = False
    for node_id, (param, one) in params.items():
        role = g[node_id].op
        if role == "mul" and scale is None:
            scale, plus_one = param, one
        elif role in ("add", "sub") and offset is None and not one:
            offset = param
        elif param not in (scale, offset):
            return None  # a second parameter of one role: not a norm we can name
    if any(len(g[p].shape) != len(axes) for p in (scale, offset) if p is not None):
        return None
    return region, exits[0], (x, scale, offset, fn, axes, plus_one)


def _rebuild(g: Graph, fused: dict, inside: set) -> Graph:
    out, remap = Graph(), dict[int, int]()
    for node in g:
        if node.id in inside:
            continue
        if node.id in fused:
            x, scale, offset, fn, axes, plus_one = fused[node.id]
            ins = [remap[x], remap[scale] if scale is not None else out.add("const", (), ())]
            if offset is not None:
                ins.append(remap[offset])
            attrs = {"fn": fn, "axes": axes, **({"scale_plus_one": True} if plus_one else {})}
            remap[node.id] = out.add("norm", tuple(ins), node.shape, **attrs)
            continue
        remap[node.id] = out.add(node.op, tuple(remap[i] for i in node.inputs), node.shape, **dict(node.attrs))
    out.outputs = tuple(remap[i] for i in g.outputs)
    return out
