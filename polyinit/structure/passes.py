"""Structure passes: sites, blocks, stacks, depth and packed parts read off a traced :class:`Graph`.

Every pass reads what the model computes, never a name:

* **residual adds**: an ``add`` of a value ``x`` and a branch computed from ``x`` through at least
  one dense use; chains of them (each ``x`` reached from the previous add through norms and
  movement only) are the residual streams, one per stack;
* **attention**: q and k meet in the score product before a ``softmax`` and v after it (or the
  fused ``attention`` op takes them by position); the dense uses that produce each slot are its
  projections, one reached by several slots is packed (its slices found by following its output
  features through the split), the dense uses after the attention in the branch are its output;
* **MLP**: the other dense uses of a branch, the ones reading the branch input are ``mlp_in``,
  the ones whose output is added back are ``mlp_out`` (a fused gate/up split into two parts);
* **embedding**: a table gathered with indices from a model input (that gather starts a stream);
  other gathers are ``position`` (added to the stream) or ``relative_bias`` (added to scores);
* **readout**: a dense use after the last residual add producing vocabulary-sized outputs (tied
  when its weight is the embedding's table); other dense uses outside the blocks are ``other``;
* **norms**: a fused ``norm`` op, or a 1-D parameter multiplying a value normalised by a reduction
  (an RMSNorm class polyinit never saw); inside a branch it belongs to that block, on the stream
  after every add (post-norm) to that add's block, else (final, embedding norms) to no block;
* **blocks**: a new block starts at an attention branch after an MLP, or at an MLP after an MLP;
  the depth of a stack is its number of blocks. With two streams, the one whose output feeds the
  other's attention is the ``encoder``, the other the ``decoder``.

>>> from polyinit.structure.graph import Graph
>>> g = Graph()
>>> x = g.add("input", (), (1, 4), index=0)
>>> w1, w2 = g.add("param", (), (8, 4), path="up.weight"), g.add("param", (), (4, 8), path="down.weight")
>>> h = g.add("contract", (x, w1), (1, 8), contract=((1,), (1,)), batch=((), ()))
>>> h = g.add("unary", (h,), (1, 8), fn="relu")
>>> y = g.add("contract", (h, w2), (1, 4), contract=((1,), (1,)), batch=((), ()))
>>> g.outputs = (g.add("add", (x, y), (1, 4)),)
>>> s = find_structure(g)
>>> s.params["up.weight"].site, s.params["down.weight"].site, s.depths
('mlp_in', 'mlp_out', {'': 1})
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from polyinit.structure._facts import DenseUse, Facts, bits
from polyinit.structure._labels import free_axes, labels_at, ranges
from polyinit.structure.graph import MOVEMENT, Graph, Node

__all__ = ["ParamStructure", "Part", "Structure", "find_structure"]

# Ops a walk along the residual stream may cross (norms, scaling, dropout, dtype, layout).
_STREAM = MOVEMENT + ("norm", "add", "sub", "mul", "div", "unary", "reduce", "max", "min", "slice", "concat", "other")
_SCORE = MOVEMENT + ("add", "sub", "mul", "div", "max", "min", "unary", "other")


@dataclass(frozen=True)
class Part:
    """One logical part of a packed tensor: ``name`` (``q``, ``k``, ``v``, ``gate``, ``up``), the
    weight's ``axes`` it spans (the output axes) and the ``ranges`` of their flat index it owns."""

    name: str
    axes: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ParamStructure:
    """What the trace says one parameter is: site, block (0-based along its stream), stack
    (``""``, ``"encoder"``, ``"decoder"``), role by use (``weight``, ``bias``, ``scale``,
    ``offset``), provenance (``"structure"``) and the parts of a packed tensor."""

    site: str
    block: int | None = None
    stack: str = ""
    role: str = "weight"
    source: str = "structure"
    parts: tuple[Part, ...] = ()


@dataclass(frozen=True)
class Structure:
    """Per parameter path what the trace placed, the depth per stack, the residual adds per
    stack (node ids) and tied readouts (readout path -> embedding path)."""

    params: Mapping[str, ParamStructure]
    depths: Mapping[str, int]
    residual: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    tied: Mapping[str, str] = field(default_factory=dict)

    def get(self, path: str) -> ParamStructure | None:
        return self.params.get(path)


@dataclass
class _Attention:
    q: int
    k: int
    v: int
    out: int
    slots: dict = field(default_factory=dict)  # "q"/"k"/"v" -> the dense uses producing it
    outs: list = field(default_factory=list)  # the dense uses after the attention in its branch


@dataclass
class _Add:
    node: int
    x: int
    branch: int
    members: int = 0  # bitset of the branch's nodes
    block: int = 0


def find_structure(graph: Graph, params: Iterable[Any] = ()) -> Structure:
    """Sites, blocks, stacks, depth and packed parts of every parameter ``graph`` uses.

    ``params`` (the walker's records, optional) map tied aliases onto the record's own path.
    See the module docstring for what each pass reads.
    """
    return _Passes(graph, params).run()


class _Passes:
    def __init__(self, graph: Graph, params: Iterable[Any]):
        self.g, self.f = graph, Facts(graph)
        self.alias = {a: p.path for p in params for a in getattr(p, "aliases", ())}
        self.found: dict[str, ParamStructure] = {}
        self.claimed: set[int] = set()  # dense-use nodes already placed

    # -- placing ---------------------------------------------------------------------------
    def place(self, path: str | None, site: str, block: int | None, stack: str, role: str, parts: tuple = ()) -> None:
        if path is None:
            return
        path = self.alias.get(path, path)
        if path not in self.found:
            self.found[path] = ParamStructure(site, block, stack, role, "structure", parts)

    def place_dense(self, use: DenseUse, site: str, block: int | None, stack: str, parts: tuple = ()) -> None:
        self.claimed.add(use.node)
        self.place(use.path, site, block, stack, "weight", parts)
        for user in self.f.users_through(use.node, MOVEMENT):
            if user.op == "add" and len(user.inputs) == 2:
                other = [i for i in user.inputs if self.f.strip(i) != use.node and self.f.param_of[i]]
                if other:
                    bias_parts = tuple(Part(p.name, (0,), p.ranges) for p in parts)
                    self.place(self.f.param_of[other[0]], site, block, stack, "bias", bias_parts)

    # -- passes ----------------------------------------------------------------------------
    def run(self) -> Structure:
        attentions = list(self.attentions())
        adds = list(self.residual_adds())
        chains = self.chains(adds)
        stacks = self.stack_names(chains)
        depths: dict[str, int] = {}
        for chain, stack in zip(chains, stacks):
            depths[stack] = self.blocks(chain, attentions, stack)
        self.norms(chains, stacks)
        self.embeddings(chains, stacks, attentions)
        tied = self.outside(chains, stacks)
        residual = {stack: tuple(a.node for a in chain) for chain, stack in zip(chains, stacks)}
        return Structure(dict(self.found), {k: v for k, v in depths.items() if v}, residual, tied)

    def attentions(self):
        f = self.f
        for node in self.g:
            if node.op == "attention" and len(node.inputs) >= 3:
                yield _Attention(*node.inputs[:3], out=node.id)
            elif node.op == "softmax" and f.live[node.id]:
                score = self.search(
                    node.id,
                    _SCORE,
                    backward=True,
                    found=lambda n: (
                        n.op == "contract" and n.id not in f.dense_at and all(f.live[i] for i in n.inputs[:2])
                    ),
                )
                mix = self.search(
                    node.id,
                    _SCORE,
                    backward=False,
                    found=lambda n: n.op == "contract" and n.id not in f.dense_at and len(n.inputs) >= 2,
                )
                if score is not None and mix is not None:
                    a, b = self.g[mix].inputs[:2]
                    v = b if f.is_ancestor(node.id, a) else a
                    q, k = self.query_key(score, node.id)
                    yield _Attention(q, k, v, out=mix)

    def query_key(self, score: int, softmax: int) -> tuple[int, int]:
        """(q, k) of a score product: k is the operand whose free axis the softmax normalises over
        (Keras computes ``einsum(key, query)``, torch ``q @ k.T``); operand order where the axis
        cannot be followed back (a reshape on the way)."""
        g, a, b = self.g, *self.g[score].inputs[:2]
        axis, value = g[softmax].attrs.get("axis", -1) % max(len(g[softmax].shape), 1), g[softmax].inputs[0]
        while value != score:
            node = g[value]
            if node.op == "transpose":
                axis, value = node.attrs["perm"][axis], node.inputs[0]
                continue
            same = [i for i in node.inputs if g[i].shape == node.shape and self.f.is_ancestor(score, i)]
            if node.op == "reshape" or not same:
                return a, b
            value = same[0]
        node = g[score]
        batch = len(node.attrs.get("batch", ((), ()))[0])
        a_free = len(g[a].shape) - batch - len(node.attrs.get("contract", ((), ()))[0])
        return (b, a) if batch <= axis < batch + a_free else (a, b)

    def search(self, start: int, through: tuple, *, backward: bool, found: Callable[[Node], bool]) -> int | None:
        """The nearest node satisfying ``found`` from ``start``, crossing only ``through`` ops."""
        todo, seen = [start], {start}
        while todo:
            node = self.g[todo.pop(0)]
            if node.id != start and found(node):
                return node.id
            if node.id != start and node.op not in through:
                continue
            nxt = node.inputs if backward else [u.id for u in self.g.users(node.id)]
            for i in nxt:
                if i not in seen and (not backward or self.f.live[i]):
                    seen.add(i)
                    todo.append(i)
        return None

    def residual_adds(self):
        f = self.f
        for node in self.g:
            if node.op != "add" or len(node.inputs) != 2 or not all(f.live[i] for i in node.inputs):
                continue
            for x, r in (node.inputs, node.inputs[::-1]):
                while self.g[x].op == "mul" and sum(f.live[i] for i in self.g[x].inputs) == 1:
                    x = next(i for i in self.g[x].inputs if f.live[i])  # DeepNorm's alpha * x + branch
                if x == r or not f.is_ancestor(x, r):
                    continue
                dense = (f.anc[r] | (1 << r)) & f.dense_bits
                if any(f.anc[d] >> x & 1 for d in bits(dense)):
                    members = 0
                    for n in bits((f.anc[r] | (1 << r)) >> (x + 1)):
                        if f.anc[n + x + 1] >> x & 1:
                            members |= 1 << (n + x + 1)
                    yield _Add(node.id, x, r, members)
                    break

    def back_to_adds(self, value: int, adds: set) -> set:
        """Residual adds reached backwards from ``value`` crossing only stream ops (no dense use)."""
        todo, seen, hit = [value], {value}, set()
        while todo:
            node = self.g[todo.pop()]
            if node.id in adds:
                hit.add(node.id)
                continue
            if node.id != value and node.op not in _STREAM:
                continue
            for i in node.inputs:
                if i not in seen and self.f.live[i]:
                    seen.add(i)
                    todo.append(i)
        return hit

    def chains(self, adds: list) -> list:
        ids = {a.node for a in adds}
        chains: list[list[_Add]] = []
        where: dict[int, int] = {}
        for add in adds:
            before = self.back_to_adds(add.x, ids)
            if before:
                index = where[max(before)]
                chains[index].append(add)
            else:
                index = len(chains)
                chains.append([add])
            where[add.node] = index
        return chains

    def stack_names(self, chains: list) -> list[str]:
        if len(chains) != 2:
            return [""] * len(chains)
        first_end = chains[0][-1].node
        feeds_second = any(self.f.is_ancestor(first_end, a.branch) for a in chains[1])
        return ["encoder", "decoder"] if feeds_second else ["decoder", "encoder"]

    def blocks(self, chain: list, attentions: list, stack: str) -> int:
        f, block, previous = self.f, -1, None
        for add in chain:
            inside = [a for a in attentions if add.members >> a.out & 1]
            attention_dense: set[int] = set()
            for att in inside:
                attention_dense |= self.attention(att, add, stack)
            rest = [
                u
                for u in f.dense
                if add.members >> u.node & 1 and u.node not in attention_dense and u.node not in self.claimed
            ]
            kind = ("attention" if inside else "") + ("mlp" if rest else "")
            # an MLP after an attention, or a second attention (cross after self), stays in the block
            if previous is None or not (previous == "attention" and kind in ("mlp", "attention")):
                block += 1
            previous, add.block = kind, block
            for att in inside:
                self.place_attention(att, add, stack, block)
            self.mlp(rest, add, stack, block)
        return block + 1

    def attention(self, att: _Attention, add: _Add, stack: str) -> set:
        att.slots = {slot: self.producers(getattr(att, slot)) for slot in ("q", "k", "v")}
        att.outs = [
            u
            for u in self.f.dense
            if add.members >> u.node & 1
            and self.f.is_ancestor(att.out, u.node)
            and not any(
                self.f.is_ancestor(att.out, o.node) and self.f.is_ancestor(o.node, u.x)
                for o in self.f.dense
                if o.node != u.node and add.members >> o.node & 1
            )
        ]
        return {u.node for uses in att.slots.values() for u in uses} | {u.node for u in att.outs}

    def place_attention(self, att: _Attention, add: _Add, stack: str, block: int) -> None:
        """q, k, v projections and the output; a parameter feeding several slots is packed: its
        parts are the slices its weight is read through, else where its output features go."""
        by_path: dict[str, list[tuple[str, DenseUse]]] = {}
        for slot, found in att.slots.items():
            for use in found:
                by_path.setdefault(use.path, []).append((slot, use))
        for entries in by_path.values():
            names = [slot for slot, _ in entries]
            if len(names) == 1:
                self.place_dense(entries[0][1], names[0], block, stack)
                continue
            nodes = {use.node for _, use in entries}
            if len(nodes) == 1:
                use = entries[0][1]
                seen = labels_at(self.f, use, [getattr(att, n) for n in names])
                axes = free_axes(self.f, use)
                parts = tuple(Part(n, axes, ranges(seen.get(getattr(att, n), set()))) for n in names)
            else:
                parts = tuple(self.sliced(slot, use) for slot, use in entries)
            for _, use in entries:
                self.place_dense(use, "qkv", block, stack, parts)
        for use in att.outs:
            self.place_dense(use, "attn_out", block, stack)

    def sliced(self, name: str, use: DenseUse) -> Part:
        """The part of a packed weight one dense use reads through a slice."""
        node = self.g[use.weight]
        while node.op in MOVEMENT and node.op != "slice" and node.inputs:
            node = self.g[node.inputs[0]]
        if node.op != "slice":
            return Part(name, (), ())
        return Part(name, (node.attrs["axis"],), ((node.attrs["start"], node.attrs["stop"]),))

    def producers(self, slot: int) -> list:
        """The dense uses nearest before ``slot`` (crossing rotary, norms, reshapes)."""
        f, todo, seen, out = self.f, [slot], {slot}, []
        while todo:
            node = self.g[todo.pop()]
            if node.id in f.dense_at:
                out.append(f.dense_at[node.id])
                continue
            if node.op in ("contract", "conv", "gather", "softmax", "attention", "input"):
                continue
            if node.op == "add" and any(f.is_ancestor(i, j) for i in node.inputs for j in node.inputs if i != j):
                continue  # a residual add: the stream, not this slot's computation
            for i in node.inputs:
                if i not in seen and f.live[i]:
                    seen.add(i)
                    todo.append(i)
        return sorted(out, key=lambda u: u.node)

    def mlp(self, uses: list, add: _Add, stack: str, block: int) -> None:
        f = self.f
        for use in uses:
            # an input feeds another dense use of the branch; the one whose output is added back is the output
            site = "mlp_in" if any(o.node != use.node and f.is_ancestor(use.node, o.x) for o in uses) else "mlp_out"
            self.place_dense(use, site, block, stack, self.gate_parts(use) if site == "mlp_in" else ())

    def gate_parts(self, use: DenseUse) -> tuple:
        """Parts of a fused gate/up input: the half that passes an activation is the gate."""
        f = self.f
        for user in self.g:
            if user.op != "mul" or user.id <= use.node or len(user.inputs) != 2:
                continue
            a, b = user.inputs
            if not (f.is_ancestor(use.node, a) and f.is_ancestor(use.node, b)):
                continue
            seen = labels_at(f, use, [a, b])
            if len(seen) != 2 or seen[a] & seen[b]:
                return ()
            gate = a if self.activated(use.node, a) else b
            up = b if gate == a else a
            axes = free_axes(f, use)
            return (Part("gate", axes, ranges(seen[gate])), Part("up", axes, ranges(seen[up])))
        return ()

    def activated(self, start: int, value: int) -> bool:
        node = self.g[value]
        while node.id != start and node.inputs:
            if node.op == "unary":
                return True
            node = self.g[node.inputs[0]]
        return False

    def norm_sites(self):
        """(location node, scale path, offset path) of every norm."""
        f = self.f
        for node in self.g:
            if node.op == "norm":
                ins = list(node.inputs[1:3]) + [None, None]
                yield node.id, *(f.param_of[i] if i is not None else None for i in ins[:2])
            elif node.op == "mul" and len(node.inputs) == 2:
                for scale, x in (node.inputs, node.inputs[::-1]):
                    path = f.param_of[scale] or self.one_plus(scale)
                    if path and f.live[x] and len(self.g[scale].shape) <= 1 and self.normalised(x):
                        offset = None
                        for user in self.g.users(node.id):
                            if user.op == "add":
                                offset = next((f.param_of[i] for i in user.inputs if f.param_of[i]), None)
                        yield node.id, path, offset
                        break

    def one_plus(self, value: int) -> str | None:
        node = self.g[value]
        if node.op == "add" and not self.f.live[value]:
            return next((self.f.param_of[i] for i in node.inputs if self.f.param_of[i]), None)
        return None

    def normalised(self, value: int) -> bool:
        todo = [(value, 0)]
        while todo:
            i, d = todo.pop()
            node = self.g[i]
            if node.op == "reduce":
                return True
            if d >= 6 or node.op in ("contract", "conv", "gather", "param", "input"):
                continue
            todo.extend((j, d + 1) for j in node.inputs)
        return False

    def norms(self, chains: list, stacks: list) -> None:
        adds = {a.node: (a, stacks[c]) for c, chain in enumerate(chains) for a in chain}
        last = {chain[-1].node for chain in chains}
        found = list(self.norm_sites())
        on_stream = []
        for node, scale, offset in found:
            inside = [(a, s) for a, s in adds.values() if a.members >> node & 1]
            if inside:
                add, stack = inside[0]
                self.place(scale, "norm", add.block, stack, "scale")
                self.place(offset, "norm", add.block, stack, "offset")
            else:
                on_stream.append((node, scale, offset, self.back_to_adds(node, set(adds))))
        post = any(hit and max(hit) not in last for *_, hit in on_stream)
        first: dict[int, int] = {}  # add -> the nearest norm after it (post-norm: that block's)
        for node, _, _, hit in sorted(on_stream):
            if hit:
                first.setdefault(max(hit), node)
        for node, scale, offset, hit in on_stream:
            add, stack = adds[max(hit)] if hit else (None, self.stack_of(node, chains, stacks))
            block = add.block if add is not None and post and first[max(hit)] == node else None
            self.place(scale, "norm", block, stack, "scale")
            self.place(offset, "norm", block, stack, "offset")

    def stack_of(self, node: int, chains: list, stacks: list) -> str:
        hits = {stacks[c] for c, chain in enumerate(chains) if self.f.is_ancestor(node, chain[0].x)}
        return hits.pop() if len(hits) == 1 else ""

    def embeddings(self, chains: list, stacks: list, attentions: list) -> None:
        f = self.f
        tokens: dict[str, set] = {}  # a table gathered by several stacks (T5's shared) is in none
        for node in self.g:
            table = f.param_of[node.inputs[0]] if node.op == "gather" else None
            if table is not None and f.live[node.inputs[1]]:
                tokens.setdefault(table, set()).add(self.stack_of(node.id, chains, stacks))
        for token_table, where in tokens.items():
            self.place(token_table, "embedding", None, where.pop() if len(where) == 1 else "", "weight")
        for node in self.g:
            path = f.param_of[node.inputs[0]] if node.op == "gather" else None
            if path is None or f.live[node.inputs[1]]:
                continue
            stack = self.stack_of(node.id, chains, stacks)
            scores = [a for a in attentions if self.feeds_scores(node.id, a)]
            if scores:
                at = [(a, stacks[c]) for c, chain in enumerate(chains) for a in chain if a.members >> scores[0].out & 1]
                block, stack = (at[0][0].block, at[0][1]) if at else (None, stack)
                self.place(path, "relative_bias", block, stack, "weight")
            else:
                self.place(path, "position", None, stack, "weight")
        first = min((chain[0].node for chain in chains), default=len(self.g))
        for node in self.g:  # a learned position table added before the first block (ViT, nanoGPT)
            if node.id < first and node.op == "add" and len(node.inputs) == 2:
                a, b = node.inputs
                for operand, x in ((a, b), (b, a)):
                    learned = f.param_of[operand]
                    if learned and f.live[x] and len(self.g[operand].shape) >= 2 and f.strip(x) not in f.dense_at:
                        self.place(learned, "position", None, self.stack_of(node.id, chains, stacks), "weight")
            if node.id < first and node.op == "concat" and any(f.live[i] for i in node.inputs):
                for operand in node.inputs:  # a learned token prepended to the stream (ViT's class token)
                    if f.param_of[operand] and not f.live[operand]:
                        self.place(
                            f.param_of[operand], "embedding", None, self.stack_of(node.id, chains, stacks), "weight"
                        )

    def feeds_scores(self, gather: int, att: _Attention) -> bool:
        """A gathered table that reaches the attention without a dense use (a score bias)."""
        f = self.f
        if not f.is_ancestor(gather, att.out):
            return False
        return not any(f.is_ancestor(gather, u.node) and f.is_ancestor(u.node, att.out) for u in f.dense)

    def outside(self, chains: list, stacks: list) -> dict:
        """Dense uses outside every block: the readout (vocabulary-sized output) or ``other``."""
        f, tied = self.f, {}
        vocab = {
            self.g[n.inputs[0]].shape[n.attrs.get("axis", 0)]: f.param_of[n.inputs[0]]
            for n in self.g
            if n.op == "gather" and f.param_of[n.inputs[0]] and f.live[n.inputs[1]]
        }
        adds = {a.node for chain in chains for a in chain}
        ends = {chain[-1].node: stacks[c] for c, chain in enumerate(chains)}
        for use in f.dense:
            if use.node in self.claimed:
                continue
            hit = self.back_to_adds(use.x, adds)
            stack = ends.get(max(hit), "") if hit else ""
            after_last = bool(hit) and max(hit) in ends and not any(f.is_ancestor(use.node, a) for a in adds)
            rows = self.g[use.node].shape[-1] if self.g[use.node].shape else 0
            starts = [c for c, chain in enumerate(chains) if f.is_ancestor(use.node, chain[0].x)]
            if not hit and starts and self.g[f.strip(use.x)].op == "input":  # ViT's patch embedding
                self.place_dense(use, "embedding", None, stacks[starts[0]])
                continue
            last = not any(u.node != use.node and f.is_ancestor(use.node, u.node) for u in f.dense)
            if after_last and not vocab and last and any(f.is_ancestor(use.node, o) for o in self.g.outputs):
                self.place_dense(use, "readout", None, stack)  # no vocabulary: the last dense use (a classifier)
                continue
            if after_last and (use.path in vocab.values() or rows in vocab):
                self.claimed.add(use.node)
                if use.path in vocab.values():
                    tied[self.alias.get(use.path, use.path)] = use.path
                    continue  # the embedding's own table: placed as the embedding
                self.place_dense(use, "readout", None, stack)
            else:
                self.place_dense(use, "other", None, stack)
        return tied
