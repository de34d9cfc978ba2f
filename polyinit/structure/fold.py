"""A ``contract`` read through the movement ops in front of it: the kernel's own axes.

TensorFlow lowers ``einsum`` (``EinsumDense``, Keras' attention) to transpose + reshape + matmul:
Gemma's (heads, d, head_dim) query kernel reaches the matmul as a (d, heads*head_dim) matrix. A
contract on that matrix says "axis 0 contracted" of a value that is not the parameter. Folding the
transposes and merging reshapes back into the contract gives a node that reads the parameter
itself along its own axes (d contracted; heads, head_dim free), as the jaxpr of the same layer
does; a ``transpose`` and a ``reshape`` after it give the value the graph continued with.

>>> from polyinit.structure.graph import Graph
>>> g = Graph()
>>> x = g.add("input", (), (1, 8, 16), index=0)
>>> w = g.add("param", (), (2, 16, 4), path="query/kernel")
>>> flat = g.add("reshape", (g.add("transpose", (w,), (16, 2, 4), perm=(1, 0, 2)),), (16, 8))
>>> out = fold_contract(g, x, flat, ((2,), (0,)), ((), ()))
>>> node = next(n for n in g if n.op == "contract")
>>> node.inputs == (x, w), node.attrs["contract"], g[out].shape
(True, ((2,), (1,)), (1, 8, 8))
"""

from __future__ import annotations

from polyinit.structure.graph import Graph


def merge_groups(source: tuple, target: tuple) -> list | None:
    """For a reshape that only merges adjacent axes: the source axes each target axis is made of.

    >>> merge_groups((16, 2, 8), (16, 16))
    [(0,), (1, 2)]
    >>> merge_groups((4, 6), (6, 4)) is None
    True
    """
    groups: list[tuple[int, ...]] = []
    i = 0
    for size in target:
        group: list[int] = []
        product = 1
        while i < len(source) and (not group or product < size):
            group.append(i)
            product *= source[i]
            i += 1
        if product != size:
            return None
        groups.append(tuple(group))
    if any(source[j] != 1 for j in range(i, len(source))) or not groups:
        return None
    groups[-1] += tuple(range(i, len(source)))  # trailing unit axes
    return groups


def view(g: Graph, node_id: int) -> tuple[int, list]:
    """(source, groups): ``node_id`` is ``source`` seen through transposes, dtype casts and merging
    reshapes; ``groups[i]`` are the source axes (in C order) that make axis ``i``."""
    groups = [(i,) for i in range(len(g[node_id].shape))]
    node = g[node_id]
    while node.inputs:
        if node.op == "transpose":
            perm = node.attrs["perm"]
            groups = [tuple(perm[j] for j in group) for group in groups]
        elif node.op == "reshape":
            merged = merge_groups(g[node.inputs[0]].shape, node.shape)
            if merged is None:
                break
            groups = [tuple(k for j in group for k in merged[j]) for group in groups]
        elif node.op != "convert":
            break
        node = g[node.inputs[0]]
    return node.id, groups


def contract_shape(a: tuple, b: tuple, contract: tuple, batch: tuple) -> tuple:
    """dot_general's output shape: batch axes, then a's free axes, then b's."""
    (ca, cb), (ba, bb) = contract, batch
    return (
        tuple(a[i] for i in ba)
        + tuple(d for i, d in enumerate(a) if i not in ca and i not in ba)
        + tuple(d for i, d in enumerate(b) if i not in cb and i not in bb)
    )


def fold_contract(g: Graph, a: int, b: int, contract: tuple, batch: tuple) -> int:
    """A contract of ``a`` and ``b`` (dot_general's ``contract``/``batch`` axes of ``a`` and ``b``),
    recorded on what each operand views (see ``view``) wherever the paired axes agree; returns
    the node that holds the value of the contract of ``a`` and ``b`` themselves."""
    identity = lambda n: (n, [(i,) for i in range(len(g[n].shape))])
    for fold_a, fold_b in ((True, True), (False, True), (True, False), (False, False)):
        (na, ga), (nb, gb) = (view(g, a) if fold_a else identity(a)), (view(g, b) if fold_b else identity(b))
        if _paired(g[na].shape, ga, g[nb].shape, gb, contract, batch):
            break
    expand = lambda groups, axes: tuple(k for i in axes for k in groups[i])
    folded_contract = (expand(ga, contract[0]), expand(gb, contract[1]))
    folded_batch = (expand(ga, batch[0]), expand(gb, batch[1]))
    own = contract_shape(g[na].shape, g[nb].shape, folded_contract, folded_batch)
    out = g.add("contract", (na, nb), own, contract=folded_contract, batch=folded_batch)
    # the contract of the operands as given lists free axes in operand order, each as its group
    natural = [("batch", k) for k in folded_batch[0]]
    natural += [("a", k) for k in range(len(g[na].shape)) if k not in folded_contract[0] and k not in folded_batch[0]]
    natural += [("b", k) for k in range(len(g[nb].shape)) if k not in folded_contract[1] and k not in folded_batch[1]]
    wanted = [("batch", k) for k in folded_batch[0]]
    wanted += [("a", k) for i in range(len(ga)) if i not in contract[0] and i not in batch[0] for k in ga[i]]
    wanted += [("b", k) for i in range(len(gb)) if i not in contract[1] and i not in batch[1] for k in gb[i]]
    perm = tuple(natural.index(axis) for axis in wanted)
    if perm != tuple(range(len(perm))):
        out = g.add("transpose", (out,), tuple(own[p] for p in perm), perm=perm)
    target = contract_shape(g[a].shape, g[b].shape, contract, batch)
    return out if g[out].shape == target else g.add("reshape", (out,), target)


def _paired(sa: tuple, ga: list, sb: tuple, gb: list, contract: tuple, batch: tuple) -> bool:
    """Each contracted (and batch) pair of axes is made of source axes of the same sizes."""
    for axes_a, axes_b in (contract, batch):
        for i, j in zip(axes_a, axes_b):
            if [sa[k] for k in ga[i]] != [sb[k] for k in gb[j]]:
                return False
    return True
