"""Every registered scheme x every installed backend x shape x dtype against the plan's promise.

Select one case with -k, e.g. ``-k "torch and glorot_uniform and conv2d"``.
"""

import pytest
from conformance_cases import BACKENDS, HALF_SHAPES, SCHEMES, SEEDS

from polyinit.backends import get_backend
from polyinit.conformance.runner import STANDARD_SHAPES, applicable, run_case


def _cases():
    for backend in BACKENDS:
        dtypes = get_backend(backend).DTYPES
        for scheme, spec in SCHEMES.items():
            for shape_name, (shape, layout) in STANDARD_SHAPES.items():
                if not applicable(spec, shape, layout):
                    continue  # e.g. Identity on a conv kernel: the spec refuses, by design
                for dtype in ("float32", "float16", "bfloat16"):
                    if dtype != "float32" and (shape_name not in HALF_SHAPES or dtype not in dtypes):
                        continue
                    for seed in SEEDS:
                        yield pytest.param(
                            backend,
                            spec,
                            shape,
                            layout,
                            dtype,
                            seed,
                            id=f"{backend}-{scheme}-{shape_name}-{dtype}-seed{seed}",
                        )


@pytest.mark.parametrize("backend,spec,shape,layout,dtype,seed", list(_cases()))
def test_case(backend, spec, shape, layout, dtype, seed):
    checks = run_case(get_backend(backend), spec, shape, layout, dtype, seed)
    bad = [c for c in checks if not c.passed]
    assert checks and not bad, "\n".join(f"{backend} {shape} {dtype} seed {seed}: {c}" for c in bad)
