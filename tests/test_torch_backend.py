"""torch specifics: in place under no_grad, views, meta tensors, dtypes, the framework's RNG."""

import pytest

torch = pytest.importorskip("torch") if False else __import__("torch")  # torch is required in CI

import polyinit as pi
from polyinit.backends.torch import init_, initializer
from polyinit.conformance import check, failures


def test_in_place_returns_the_tensor_and_keeps_grad_flag():
    w = torch.empty(64, 32, requires_grad=True)
    out = initializer(pi.glorot_uniform())(w)
    assert out is w and w.requires_grad and w.grad_fn is None


def test_non_contiguous_view_is_filled_where_it_lies():
    base = torch.zeros(64, 64)
    view = base.t()[:, :32]  # non-contiguous
    assert not view.is_contiguous()
    init_(view, pi.Orthogonal(gain=1.0), generator=torch.Generator().manual_seed(0))
    assert base[32:].abs().sum() == 0  # untouched outside the view
    plan = pi.resolve(pi.Orthogonal(gain=1.0), tuple(view.shape), pi.OUT_IN)
    assert not failures(check(view.double().numpy(), plan))


def test_meta_tensor_draws_nothing():
    w = torch.empty(1024, 1024, device="meta")
    assert initializer(pi.glorot_uniform())(w) is w


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_orthogonal_via_float32(dtype):
    w = init_(torch.empty(128, 64, dtype=dtype), pi.Orthogonal(), generator=torch.Generator().manual_seed(1))
    assert w.dtype == dtype
    plan = pi.resolve(
        pi.Orthogonal(), (128, 64), pi.OUT_IN, pi.plan.DTYPES[0] if dtype == torch.float16 else "bfloat16"
    )
    assert not failures(check(w.float().double().numpy(), plan))


def test_global_generator_when_none_is_given():
    torch.manual_seed(5)
    a = init_(torch.empty(8, 8), pi.Normal())
    torch.manual_seed(5)
    b = init_(torch.empty(8, 8), pi.Normal())
    assert torch.equal(a, b)


def test_integer_tensor_is_refused():
    with pytest.raises(pi.PolyinitError, match="torch.int64"):
        init_(torch.empty(3, 3, dtype=torch.long), pi.zeros())


def test_shape_errors_name_the_spec_problem():
    with pytest.raises(pi.ShapeError, match="fans"):
        init_(torch.empty(10), pi.he_uniform())


def test_tiny_std_trunc_normal_has_no_clamped_outliers():
    # torch's own trunc_normal_ clamps rare float32 values to +-2 (1000 sigma) at std 0.002
    # (pytorch/pytorch#155588); polyinit keeps u off the ends instead.
    w = init_(
        torch.empty(4096, 1024),
        pi.TruncatedNormal(std=0.002, bounds="absolute"),
        generator=torch.Generator().manual_seed(0),
    )
    assert w.abs().max().item() < 0.002 * 7
