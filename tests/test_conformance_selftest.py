"""The conformance runner must catch deliberately broken backends (issue: conformance suite)."""

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

import polyinit as pi
from polyinit import nodes as n
from polyinit.backends import numpy as reference
from polyinit.backends.contract import MEMBERS
from polyinit.conformance.runner import run_case
from polyinit.moments import truncated_std


def backend(draw):
    """The numpy reference backend with its draws replaced by a broken ``draw(plan, seed) -> ndarray``."""
    members = {name: getattr(reference, name) for name in MEMBERS}
    return SimpleNamespace(**{**members, "sample_plan": draw, "draw_plan": draw})


def with_root(plan, root):
    return dataclasses.replace(plan, root=root, leaves=n.random_leaves(root))


def swapped(layout):
    roles = {"in": "out", "out": "in"}
    return pi.Layout(" ".join(roles.get(t, t) for t in layout.pattern.split()))


def relaid(plan, wrong):
    """The plan a backend with the wrong layout would draw: ``wrong(layout)`` applied to the
    layout of the real shape (a batched top-up keeps its leading batch axis)."""
    roles = plan.layout.roles(len(plan.shape))
    lead = ("batch",) if roles[0] == "batch" else ()
    real = pi.Layout(" ".join(roles[len(lead) :]))
    layout = pi.Layout(" ".join(lead + wrong(real).roles(len(plan.shape) - len(lead))))
    return pi.resolve(plan.spec, plan.shape, layout, plan.dtype)


def fan_swap(plan, seed):
    return reference.draw_plan(relaid(plan, swapped), seed)


def layout_transposed(plan, seed):
    return reference.draw_plan(
        relaid(plan, lambda real: pi.OUT_IN if real.roles(4) == pi.IN_OUT.roles(4) else pi.IN_OUT), seed
    )


def no_truncation_correction(plan, seed):
    root = plan.root
    if isinstance(root, n.TruncatedNormal):  # sigma0 taken as the final std
        root = dataclasses.replace(root, std=root.std * truncated_std(root.a, root.b))
    return reference.draw_plan(with_root(plan, root), seed)


def uniform_bound_off_by_sqrt3(plan, seed):
    root = plan.root
    if isinstance(root, n.Uniform):  # the std used as the bound
        root = dataclasses.replace(root, low=root.low / math.sqrt(3), high=root.high / math.sqrt(3))
    return reference.draw_plan(with_root(plan, root), seed)


def wrong_gain(plan, seed):
    root = plan.root
    if isinstance(root, (n.Uniform, n.Normal)):  # gain 1 where sqrt(2) was due
        scale = 1 / math.sqrt(2)
        root = (
            dataclasses.replace(root, low=root.low * scale, high=root.high * scale)
            if isinstance(root, n.Uniform)
            else dataclasses.replace(root, std=root.std * scale)
        )
    return reference.draw_plan(with_root(plan, root), seed)


def bias_drawn(plan, seed):
    root = plan.root
    if isinstance(root, n.Fill):  # torch's bias habit where zeros are due
        root = n.Uniform(root.shape, -0.05, 0.05)
    return reference.draw_plan(with_root(plan, root), seed)


def sparsity_off_by_one(plan, seed):
    root = plan.root
    if isinstance(root, n.Op) and root.name == "mul":  # one zero too many in every column
        mask = root.args[1]
        threshold = mask.args[1]
        mask = dataclasses.replace(mask, args=(mask.args[0], n.Fill(threshold.shape, threshold.value + 1)))
        root = dataclasses.replace(root, args=(root.args[0], mask))
    return reference.draw_plan(with_root(plan, root), seed)


def unseeded(plan, seed):
    return reference.draw(plan, np.random.default_rng())  # ignores the seed


CASES = [
    ("fan_in and fan_out swapped", fan_swap, pi.he_normal(), (256, 784), pi.OUT_IN, {"variance", "KS p-value"}),
    (
        "kernel layout transposed",
        layout_transposed,
        pi.lecun_normal(truncated=True),
        (3, 3, 16, 32),
        pi.IN_OUT,
        {"variance", "KS p-value"},
    ),
    (
        "truncation variance correction dropped",
        no_truncation_correction,
        pi.he_normal(truncated=True),
        (784, 256),
        pi.IN_OUT,
        {"variance"},
    ),
    (
        "uniform bound off by sqrt(3)",
        uniform_bound_off_by_sqrt3,
        pi.glorot_uniform(),
        (256, 784),
        pi.OUT_IN,
        {"variance"},
    ),
    ("wrong gain", wrong_gain, pi.he_uniform(nonlinearity="relu"), (32, 16, 3, 3), pi.OUT_IN, {"variance"}),
    ("bias drawn where zeros are due", bias_drawn, pi.zeros(), (256,), pi.OUT_IN, {"support"}),
    ("sparsity off by one", sparsity_off_by_one, pi.Sparse(sparsity=0.25), (256, 784), pi.OUT_IN, {"zeros per slice"}),
    ("unseeded draw", unseeded, pi.glorot_uniform(), (256, 784), pi.OUT_IN, {"same seed, same values"}),
]


@pytest.mark.parametrize("name,draw,spec,shape,layout,expected", CASES, ids=[c[0] for c in CASES])
def test_broken_backend_is_caught(name, draw, spec, shape, layout, expected):
    failed = {c.name for c in run_case(backend(draw), spec, shape, layout, seed=0) if not c.passed}
    assert expected <= failed, f"{name}: failed checks {failed}, expected at least {expected}"


@pytest.mark.parametrize("name,draw,spec,shape,layout,expected", CASES, ids=[c[0] for c in CASES])
def test_correct_backend_passes_the_same_cases(name, draw, spec, shape, layout, expected):
    checks = run_case(pi.get_backend("numpy"), spec, shape, layout, seed=0)
    assert all(c.passed for c in checks)
