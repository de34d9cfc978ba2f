"""A two-operand einsum equation read as a ``contract`` node (shared by the TensorFlow and torch
tracers): which axes are summed, which are batch, and how the contract's output is permuted into
the equation's output.

>>> parse_einsum("btd,ndh->btnh")
(((2,), (1,)), ((), ()), (0, 1, 2, 3))
"""

from __future__ import annotations

import string


def parse_einsum(equation: str) -> tuple | None:
    """(contract, batch, perm) of a two-operand einsum as a ``contract`` node: axes summed away
    are contracted, axes in both operands and the output are batch; ``perm`` takes the contract's
    output (batch, a free, b free) to the equation's output order. None where an operand has an
    ellipsis, a repeated letter or a letter summed within itself.

    >>> parse_einsum("abc,cde->abde")
    (((2,), (0,)), ((), ()), (0, 1, 2, 3))
    >>> parse_einsum("aecd,abcd->acbe")
    (((3,), (3,)), ((0, 2), (0, 2)), (0, 1, 3, 2))
    """
    if "..." in equation or "->" not in equation:
        return None
    lhs, out = equation.replace(" ", "").split("->")
    if lhs.count(",") != 1:
        return None
    a, b = lhs.split(",")
    if any(len(set(s)) != len(s) or not set(s) <= set(string.ascii_letters) for s in (a, b, out)):
        return None
    if (set(a) - set(b) - set(out)) or (set(b) - set(a) - set(out)):
        return None
    summed = [c for c in a if c in b and c not in out]
    batch = [c for c in a if c in b and c in out]
    order = batch + [c for c in a if c not in b] + [c for c in b if c not in a]
    contract = (tuple(a.index(c) for c in summed), tuple(b.index(c) for c in summed))
    return (
        contract,
        (tuple(a.index(c) for c in batch), tuple(b.index(c) for c in batch)),
        tuple(order.index(c) for c in out),
    )
