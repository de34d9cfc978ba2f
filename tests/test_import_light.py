"""`import polyinit` must import no framework, and stay cheap (array-api-compat's rule)."""

import json
import subprocess
import sys

# numba too: it is only the fused portable kernels' compiler, loaded on the first portable draw.
FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "flax", "mxnet", "numba", "llvmlite")

PROBE = """
import json, sys, time
import numpy
start = time.perf_counter()
import polyinit
from polyinit import resolve, OUT_IN, glorot_uniform
resolve(glorot_uniform(), (4, 4), OUT_IN)
elapsed = time.perf_counter() - start
print(json.dumps({"loaded": [m for m in %r if m in sys.modules], "seconds": elapsed}))
""" % (FRAMEWORKS,)


def test_import_polyinit_loads_no_framework():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [], f"import polyinit loaded {result['loaded']}"


def test_backend_for_imports_nothing_new():
    probe = (
        "import sys, numpy, polyinit; polyinit.backend_for(numpy.zeros(2));"
        f"print([m for m in {FRAMEWORKS!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
