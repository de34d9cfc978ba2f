"""The suite's schemes: every named scheme and primitive, and the seed's custom rule."""

import math
import os

import polyinit as pi
from polyinit.conformance.selection import backends_for_run

BACKENDS, MISSING = backends_for_run()
BASE_SEED = int(os.environ.get("POLYINIT_SEED", "0"))
SOAK = int(os.environ.get("POLYINIT_SOAK", "1"))
# Seeds are spaced so that one case's draws (seed, seed+1, ...) never overlap the next seed's.
SEEDS = [BASE_SEED + 1000 * i for i in range(SOAK)]

_w = pi.Uniform(low=-10.0, high=10.0)

SCHEMES = {
    "constant": pi.constant(0.25),
    "uniform": pi.Uniform(low=-0.3, high=0.5),
    "normal": pi.Normal(mean=0.1, std=0.2),
    "truncated_normal_std": pi.TruncatedNormal(std=0.5, low=-1.0, high=3.0, bounds="std"),
    "truncated_normal_abs": pi.TruncatedNormal(std=0.02, bounds="absolute"),
    "truncated_normal_preserved": pi.TruncatedNormal(std=0.1, bounds="std", preserve_std=True),
    "glorot_uniform": pi.glorot_uniform(),
    "glorot_normal": pi.glorot_normal(),
    "glorot_normal_truncated": pi.glorot_normal(truncated=True),
    "he_uniform": pi.he_uniform(),
    "he_normal": pi.he_normal(),
    "he_normal_truncated": pi.he_normal(truncated=True),
    "lecun_uniform": pi.lecun_uniform(),
    "lecun_normal_truncated": pi.lecun_normal(truncated=True),
    "torch_linear_default": pi.he_uniform(a=math.sqrt(5)),
    "fan_geo_avg": pi.VarianceScaling(scale=1.0, mode="fan_geo_avg", distribution="normal"),
    "orthogonal": pi.Orthogonal(gain=1.5),
    "identity": pi.Identity(gain=2.0),
    "dirac": pi.Dirac(gain=1.0),
    "delta_orthogonal": pi.DeltaOrthogonal(gain=1.0),
    "bilinear": pi.BilinearUpsampling(),
    "sparse": pi.Sparse(sparsity=0.25, std=0.05),
    "lstm_bias": pi.lstm_bias(1.0),
    # nGPT's projection: unit rows of a centred normal (closed-form direction moments) and unit
    # columns of a cut normal (judged against the numpy reference's draws).
    "normalized_rows": pi.normalized(pi.Normal(std=0.02), axis="in"),
    "normalized_truncated_columns": pi.normalized(
        pi.TruncatedNormal(std=0.0625, low=-3.0, high=3.0, bounds="std"), axis="out"
    ),
    "threshold_rule": _w * (abs(_w) >= 5),
    # Two independent draws: no closed form, so judged against a 4x larger numpy-reference sample.
    "product_of_draws": pi.Uniform(low=-1.0, high=1.0) * pi.Normal(std=0.5, stream=1) + pi.Uniform(low=-1.0, high=1.0),
}

# Shapes on which the half-precision dtypes also run (float32 runs on every shape).
HALF_SHAPES = ("dense_out_in", "conv2d")
