"""Tables and the readout.

* **embedding**: a table gathered with indices from a model input (that gather starts a stream);
  a table read at indices that do not depend on the input is a ``position`` table (added to the
  stream) or a ``relative_bias`` (added to attention scores), except one with fewer rows than the
  positions it is read at: positions 0..n-1 need n rows, so such a table is indexed by something
  else (BERT's token types read at the default all-zero ids) and is an ``embedding`` too;
* **readout**: a dense use after the last residual add producing vocabulary-sized outputs (tied
  when its weight is the embedding's table); other dense uses outside the blocks are ``other``."""

from __future__ import annotations

from polyinit.structure._records import Attention, State
from polyinit.structure._stream import back_to_adds, stack_of


def embeddings(s: State, streams: list, stacks: list, attentions: list[Attention]) -> None:
    """Place token, segment and position tables and score biases."""
    f, g = s.f, s.g
    tokens: dict[str, set] = {}  # a table gathered by several stacks (T5's shared) is in none
    for node in g:
        table = f.param_of[node.inputs[0]] if node.op == "gather" else None
        if table is not None and f.live[node.inputs[1]]:
            tokens.setdefault(table, set()).add(stack_of(s, node.id, streams, stacks))
    for token_table, where in tokens.items():
        s.place(token_table, "embedding", None, where.pop() if len(where) == 1 else "", "weight")
    for node in g:
        path = f.param_of[node.inputs[0]] if node.op == "gather" else None
        if path is None or f.live[node.inputs[1]]:
            continue
        stack = stack_of(s, node.id, streams, stacks)
        scores = [a for a in attentions if _feeds_scores(s, node.id, a)]
        if scores:
            at = [(a, stacks[c]) for c, chain in enumerate(streams) for a in chain if a.members >> scores[0].out & 1]
            block, stack = (at[0][0].block, at[0][1]) if at else (None, stack)
            s.place(path, "relative_bias", block, stack, "weight")
        else:
            rows = g[node.inputs[0]].shape[node.attrs.get("axis", 0)]
            read_at = g[node.inputs[1]].shape[-1] if g[node.inputs[1]].shape else 1
            s.place(path, "embedding" if rows < read_at else "position", None, stack, "weight")
    first = min((chain[0].node for chain in streams), default=len(g))
    for node in g:  # a learned position table added before the first block (ViT, nanoGPT)
        if node.id < first and node.op == "add" and len(node.inputs) == 2:
            a, b = node.inputs
            for operand, x in ((a, b), (b, a)):
                learned = f.param_of[operand]
                if learned and f.live[x] and len(g[operand].shape) >= 2 and f.strip(x) not in f.dense_at:
                    s.place(learned, "position", None, stack_of(s, node.id, streams, stacks), "weight")
        if node.id < first and node.op == "concat" and any(f.live[i] for i in node.inputs):
            for operand in node.inputs:  # a learned token prepended to the stream (ViT's class token)
                if f.param_of[operand] and not f.live[operand]:
                    s.place(f.param_of[operand], "embedding", None, stack_of(s, node.id, streams, stacks), "weight")


def _feeds_scores(s: State, gather: int, att: Attention) -> bool:
    """A gathered table that reaches the attention without a dense use (a score bias)."""
    f = s.f
    if not f.is_ancestor(gather, att.out):
        return False
    return not any(f.is_ancestor(gather, u.node) and f.is_ancestor(u.node, att.out) for u in f.dense)


def readout(s: State, streams: list, stacks: list) -> dict:
    """Dense uses outside every block: the readout (vocabulary-sized output) or ``other``; returns
    the tied readouts (readout path -> embedding path)."""
    f, tied = s.f, {}
    vocab = {
        s.g[n.inputs[0]].shape[n.attrs.get("axis", 0)]: f.param_of[n.inputs[0]]
        for n in s.g
        if n.op == "gather" and f.param_of[n.inputs[0]] and f.live[n.inputs[1]]
    }
    adds = {a.node for chain in streams for a in chain}
    ends = {chain[-1].node: stacks[c] for c, chain in enumerate(streams)}
    for use in f.dense:
        if use.node in s.claimed:
            continue
        hit = back_to_adds(s, use.x, adds)
        stack = ends.get(max(hit), "") if hit else ""
        after_last = bool(hit) and max(hit) in ends and not any(f.is_ancestor(use.node, a) for a in adds)
        rows = s.g[use.node].shape[-1] if s.g[use.node].shape else 0
        starts = [c for c, chain in enumerate(streams) if f.is_ancestor(use.node, chain[0].x)]
        if not hit and starts and s.g[f.strip(use.x)].op == "input":  # ViT's patch embedding
            s.place_dense(use, "embedding", None, stacks[starts[0]])
            continue
        last = not any(u.node != use.node and f.is_ancestor(use.node, u.node) for u in f.dense)
        if after_last and not vocab and last and any(f.is_ancestor(use.node, o) for o in s.g.outputs):
            s.place_dense(use, "readout", None, stack)  # no vocabulary: the last dense use (a classifier)
            continue
        if after_last and (use.path in vocab.values() or rows in vocab):
            s.claimed.add(use.node)
            if use.path in vocab.values():
                tied[s.alias.get(use.path, use.path)] = use.path
                continue  # the embedding's own table: placed as the embedding
            s.place_dense(use, "readout", None, stack)
        else:
            s.place_dense(use, "other", None, stack)
    return tied
