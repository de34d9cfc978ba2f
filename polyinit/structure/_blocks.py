"""Blocks: the repeated units along a residual stream. A new block starts at an attention branch
after an MLP, or at an MLP after an MLP; an MLP after an attention (and a second attention, cross
after self) stays in the block. The depth of a stack is its number of blocks."""

from __future__ import annotations

from polyinit.structure import _attention, _mlp
from polyinit.structure._records import Add, Attention, State


def blocks(s: State, chain: list[Add], attentions: list[Attention], stack: str) -> int:
    """Number the blocks of one stream, placing each branch's attention and MLP; the depth."""
    f, block, previous = s.f, -1, None
    for add in chain:
        inside = [a for a in attentions if add.members >> a.out & 1]
        attention_dense: set[int] = set()
        for att in inside:
            attention_dense |= _attention.claim(s, att, add)
        rest = [
            u
            for u in f.dense
            if add.members >> u.node & 1 and u.node not in attention_dense and u.node not in s.claimed
        ]
        kind = ("attention" if inside else "") + ("mlp" if rest else "")
        if previous is None or not (previous == "attention" and kind in ("mlp", "attention")):
            block += 1
        previous, add.block = kind, block
        for att in inside:
            _attention.place(s, att, stack, block)
        _mlp.place(s, rest, add, stack, block)
    return block + 1
