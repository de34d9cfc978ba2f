"""Write tests/data/portable_golden.json: the bits polyinit's portable generator gives for a fixed
(spec, shape, dtype, seed, key) per distribution, so that a release which changes them fails
``tests/test_portable_golden.py``.

Run once, by hand, when the file is first made (``python tools/make_portable_golden.py``). The
values are a promise to users (``apply(..., portable=True)`` gives the same weights in every
release): never regenerate the file to make a test pass. A change to any value is a change to the
portable stream, which is a major version of polyinit.
"""

from __future__ import annotations

import hashlib
import json
import pathlib

import numpy as np

import polyinit as pi
from polyinit.backends.numpy import draw_portable
from polyinit.serialize import to_dict

SHAPE = (64, 96)
FIRST = 8

# name: (spec, dtype, seed, key). Together they pin: the stream key from seed (both 32-bit halves)
# and a str or int key; the word order within a counter; the leaf number; each float conversion
# (uniform, normal, truncated normal mirrored and not); the affine step; the cast to 16-bit floats.
CASES = {
    "uniform": (pi.Uniform(low=-1.0, high=1.0), "float32", 0, "encoder.0.weight"),
    "normal": (pi.Normal(std=1.0), "float32", 0, "encoder.0.weight"),
    "normal_affine": (pi.Normal(mean=0.5, std=0.02), "float32", 12345, "h.3.mlp.c_proj.weight"),
    "truncated_symmetric": (pi.TruncatedNormal(std=0.02, low=-0.04, high=0.04, bounds="absolute"), "float32", 1, "w"),
    "truncated_mirrored": (pi.TruncatedNormal(std=1.0, low=-1.0, high=3.0, bounds="std"), "float32", 7, 42),
    "two_leaves": (pi.Normal(std=1.0) * 0.5 + pi.Uniform(low=-1.0, high=1.0), "float32", 3, "block.1.ffn"),
    "seed_above_2_32": (pi.Uniform(low=0.0, high=1.0), "float32", (1 << 40) + 3, "w"),
    "normal_bfloat16": (pi.Normal(std=1.0), "bfloat16", 5, "w"),
    "normal_float16": (pi.Normal(std=1.0), "float16", 5, "w"),
}

HEADER = (
    "Golden values of polyinit's portable generator (tests/test_portable_golden.py reads them; "
    "tools/make_portable_golden.py wrote them once). apply(..., portable=True) promises the same "
    "weights in every release: a change to any value here changes the portable stream, and is a "
    "major version. Never regenerate this file to make a test pass. first_bits: the first values' "
    "bit patterns (row-major, hex); sha256: of the whole tensor's little-endian bytes, row-major."
)


def record(spec: pi.Spec, dtype: str, seed: int, key: str | int) -> dict:
    values = draw_portable(pi.resolve(spec, SHAPE, None, dtype), seed, key)
    raw = np.ascontiguousarray(values).view(np.uint16 if values.itemsize == 2 else np.uint32).astype("<u4")
    little = np.ascontiguousarray(values).view(f"<u{values.itemsize}")
    return {
        "spec": to_dict(spec),
        "shape": list(SHAPE),
        "dtype": dtype,
        "seed": seed,
        "key": key,
        "first_bits": [f"{int(w):0{2 * values.itemsize}x}" for w in raw.reshape(-1)[:FIRST]],
        "sha256": hashlib.sha256(little.tobytes()).hexdigest(),
    }


def main() -> None:
    path = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "portable_golden.json"
    path.parent.mkdir(exist_ok=True)
    document = {"_comment": HEADER, "cases": {name: record(*case) for name, case in CASES.items()}}
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
