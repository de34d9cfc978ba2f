"""olmo(init_fn="normalized") against olmo-core 3.0.0's own nGPT model (issue 23).

olmo-core's ``TransformerConfig.ngpt_like`` builds a ``NormalizedTransformer``; its
``init_weights`` draws every matrix through ``InitMethod.normalized`` (olmo_core/nn/transformer/
init.py) and then ``normalize_matrices`` divides each by its L2 norm along the model axis
(model.py, block.py, attention/__init__.py, feed_forward.py, lm_head.py): ``dim=-1`` (each row of
torch's (out, in) weight) for the embedding, w_q, w_k, w_v, w1, w3 and the LM head; ``dim=0``
(each column) for the attention's w_out and the MLP's w2. The scaling vectors keep the values
their ``reset_parameters`` give: sq, sk, sz, attn_alpha, mlp_alpha at 1/sqrt(d); sw1, sw3 at 1.

The table below is written from that source, and both the reference model and polyinit's scheme
on a fresh copy are checked against it, for every parameter:

* unit norms along the stated axis, every slice, to float32 rounding (a wrong axis gives norms
  near sqrt(256/768) or sqrt(1024/256), far outside);
* the draw before the projection: cut at 3 std (every matrix) or not (the embedding). With y the
  value times sqrt(m), a uniformly random direction (uncut normal) has P(|y| > 3.5) = 4.65e-4;
  a direction of a 3-std cut draw exceeds 3.5 only where the slice's norm is 14% below its mean,
  a 2.8 sd event at m = 256 (P 2.3e-3 per slice) needing an element near the cut besides: its
  expected count is below 1 per matrix. The checks: at most 5 such values for a cut matrix
  (Poisson(1) exceeds 5 with P 6e-4, the bound being loose), at least 30 for the embedding's
  262,144 (Poisson(122) falls to 30 with P < 1e-25);
* scaling vectors exactly equal to their float32 values.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from polyinit import modern
from polyinit.selectors import name

UNREGISTERED = pytest.mark.filterwarnings("ignore:polyinit. module types with parameters that no registry entry")
NGPT = {"d_model": 256, "vocab_size": 1024, "n_layers": 2, "n_heads": 4}
SITES = {
    "embedding": name("embeddings.weight"),
    "q": name("*.w_q.weight"),
    "k": name("*.w_k.weight"),
    "v": name("*.w_v.weight"),
    "attn_out": name("*.attention.w_out.weight"),
    "mlp_in": name("*.feed_forward.w1.weight") | name("*.feed_forward.w3.weight"),
    "mlp_out": name("*.feed_forward.w2.weight"),
    "readout": name("lm_head.w_out.weight"),
}


def _ngpt_model(reference: bool):
    import torch

    transformer = pytest.importorskip("olmo_core.nn.transformer")
    config = transformer.TransformerConfig.ngpt_like(**NGPT)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # olmo-core's own deprecation notes
        model = config.build(init_device="cpu")
    if reference:
        model.init_weights(device=torch.device("cpu"))
    return model


def ngpt_table() -> dict:
    """path -> ("unit", torch dim, cut) or ("constant", value), from olmo-core's source."""
    d = NGPT["d_model"]
    table = {"embeddings.weight": ("unit", -1, None), "lm_head.w_out.weight": ("unit", -1, 3.0)}
    table["lm_head.sz"] = ("constant", d**-0.5)
    for i in range(NGPT["n_layers"]):
        block = f"blocks.{i}"
        for w in ("w_q", "w_k", "w_v"):
            table[f"{block}.attention.{w}.weight"] = ("unit", -1, 3.0)
        table[f"{block}.attention.w_out.weight"] = ("unit", 0, 3.0)
        table[f"{block}.feed_forward.w1.weight"] = ("unit", -1, 3.0)
        table[f"{block}.feed_forward.w3.weight"] = ("unit", -1, 3.0)
        table[f"{block}.feed_forward.w2.weight"] = ("unit", 0, 3.0)
        for scale in ("attention.sq", "attention.sk", "attn_alpha", "mlp_alpha"):
            table[f"{block}.{scale}"] = ("constant", d**-0.5)
        for scale in ("feed_forward.sw1", "feed_forward.sw3"):
            table[f"{block}.{scale}"] = ("constant", 1.0)
    return table


def check_ngpt(model) -> None:
    values = {path: p.detach().numpy() for path, p in model.named_parameters()}
    table = ngpt_table()
    assert set(values) == set(table), sorted(set(values) ^ set(table))
    for path, law in table.items():
        w = values[path]
        if law[0] == "constant":
            assert np.all(w == np.float32(law[1])), (path, w[:3], law[1])
            continue
        _, dim, cut = law
        norms = np.linalg.norm(w.astype(np.float64), axis=dim)
        assert np.max(np.abs(norms - 1.0)) <= 1e-5, (path, "norms", float(np.max(np.abs(norms - 1.0))))
        y = np.abs(w.astype(np.float64)) * math.sqrt(w.shape[dim])
        beyond = int(np.sum(y > 3.5))
        if cut is not None:
            assert beyond <= 5, (path, "a 3-std cut leaves almost no |y| > 3.5", beyond)
        else:
            assert beyond >= 30, (path, "an uncut draw has about 4.65e-4 of |y| > 3.5", beyond, y.size)


@UNREGISTERED
def test_the_table_is_olmo_cores_ngpt():
    check_ngpt(_ngpt_model(reference=True))


@UNREGISTERED
def test_olmo_normalized_matches_olmo_cores_ngpt():
    from polyinit.context import context_from_params
    from polyinit.rules import apply, every, select

    model = _ngpt_model(reference=False)
    with warnings.catch_warnings():  # unregistered third-party layer types: sites= places them
        warnings.simplefilter("ignore", UserWarning)
        ctx = context_from_params(select(model, every()), sites=SITES)
    apply(model, modern.olmo(ctx, init_fn="normalized", seed=3))
    check_ngpt(model)


@UNREGISTERED
def test_olmo_normalized_portable_is_the_same_law():
    """The portable draw (float32 sums by halves) keeps every promise too."""
    from polyinit.context import context_from_params
    from polyinit.rules import apply, every, select

    model = _ngpt_model(reference=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ctx = context_from_params(select(model, every()), sites=SITES)
    apply(model, modern.olmo(ctx, init_fn="normalized", seed=3), portable=True)
    check_ngpt(model)


@UNREGISTERED
def test_olmo_normalized_derived_from_the_trace():
    """No sites=: the trace reads each block's update lerp(h, norm(f(h)), alpha) as a residual add, so
    q/k/v, the outputs, the MLP and the readout come from structure; nGPT's scales from names."""
    model = _ngpt_model(reference=False)
    from polyinit.rules import apply

    apply(model, modern.olmo(model, init_fn="normalized", seed=3))
    check_ngpt(model)


@UNREGISTERED
def test_a_wrong_axis_fails_the_table():
    """The table's checks can fail: w2 normalised along its rows instead of its columns."""
    import torch

    model = _ngpt_model(reference=True)
    with torch.no_grad():
        w2 = model.blocks["0"].feed_forward.w2.weight
        w2.copy_(w2 / torch.linalg.vector_norm(w2, dim=1, keepdim=True))
    with pytest.raises(AssertionError, match="norms"):
        check_ngpt(model)


def test_unknown_init_fn_lists_the_valid_ones():
    from polyinit.errors import SpecError

    model = _ngpt_model(reference=False)
    with pytest.raises(SpecError, match="normalized"):
        modern.olmo(model, init_fn="ngpt")
