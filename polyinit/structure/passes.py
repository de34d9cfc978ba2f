"""Structure passes: sites, blocks, stacks, depth and packed parts read off a traced :class:`Graph`.

Every pass reads what the model computes, never a name; each lives in its own module, by what it
reads:

* **residual stream** (``_stream``): an ``add`` of a value ``x`` and a branch computed from ``x``
  through at least one dense use; chains of them (each ``x`` reached from the previous add through
  norms and movement only) are the residual streams, one per stack; in a parallel-residual block
  (``x + attn(ln1 x) + mlp(ln2 x)``) the second branch reads the first add's ``x``;
* **attention** (``_attention``): q and k meet in the score product before a ``softmax`` and v
  after it (or the fused ``attention`` op takes them by position); the dense uses that produce
  each slot are its projections, one reached by several slots is packed (its slices found by
  following its output features through the split), the dense uses after the attention in the
  branch are its output;
* **MLP** (``_mlp``): the other dense uses of a branch, the ones reading the branch input are
  ``mlp_in``, the ones whose output is added back are ``mlp_out``; in a gated MLP the input that
  reaches the product through the activation is the ``gate`` part, the one multiplied directly the
  ``up`` part (two parts of one fused tensor, or one part each of two tensors);
* **blocks** (``_blocks``): a new block starts at an attention branch after an MLP, or at an MLP
  after an MLP; the depth of a stack is its number of blocks. With two streams, the one whose
  output feeds the other's attention is the ``encoder``, the other the ``decoder``;
* **norms** (``_norms``): a fused ``norm`` op, or a 1-D parameter multiplying a value normalised
  by a reduction (an RMSNorm class polyinit never saw); inside a branch it belongs to that block,
  on the stream after every add (post-norm) to that add's block, else to no block;
* **embeddings and readout** (``_embeddings``): a table gathered with indices from a model input
  is an ``embedding`` (that gather starts a stream); other gathers are ``position`` (added to the
  stream; a table with fewer rows than the positions it is read at is an ``embedding``, BERT's
  token types) or ``relative_bias`` (added to scores); a dense use after the last residual add
  producing vocabulary-sized outputs is the ``readout`` (tied when its weight is the embedding's
  table); other dense uses outside the blocks are ``other``.

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

from collections.abc import Iterable
from typing import Any

from polyinit.structure import _attention, _blocks, _embeddings, _norms, _stream
from polyinit.structure._records import ParamStructure, Part, State, Structure
from polyinit.structure.graph import Graph

__all__ = ["ParamStructure", "Part", "Structure", "find_structure"]


def find_structure(graph: Graph, params: Iterable[Any] = ()) -> Structure:
    """Sites, blocks, stacks, depth and packed parts of every parameter ``graph`` uses.

    ``params`` (the walker's records, optional) map tied aliases onto the record's own path.
    See the module docstring for what each pass reads; the first pass to place a parameter
    decides it (blocks, then norms, then tables, then what is left outside the blocks).
    """
    s = State(graph, params)
    attentions = list(_attention.attentions(s))
    streams = _stream.chains(s, _stream.residual_adds(s))
    stacks = _stream.stack_names(s, streams)
    depths = {}
    for chain, stack in zip(streams, stacks):
        depths[stack] = _blocks.blocks(s, chain, attentions, stack)
    _norms.norms(s, streams, stacks)
    _embeddings.embeddings(s, streams, stacks, attentions)
    tied = _embeddings.readout(s, streams, stacks)
    residual = {stack: tuple(a.node for a in chain) for chain, stack in zip(streams, stacks)}
    return Structure(dict(s.found), {k: v for k, v in depths.items() if v}, residual, tied)
