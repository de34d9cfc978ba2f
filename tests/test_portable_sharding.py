"""A sharded portable JAX draw equals the unsharded one, for 1, 2, 4 and 8 host devices, and each
device computes only its own shard (no collective in the compiled program)."""

import json
import os
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import json
    import jax, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import polyinit as pi
    from polyinit.backends.jax import draw_portable
    from polyinit.backends.numpy import draw_portable as numpy_portable

    assert jax.device_count() == 8
    plans = {"normal": pi.resolve(pi.he_normal(truncated=True), (64, 96), pi.IN_OUT),
             "uniform": pi.resolve(pi.glorot_uniform(), (64, 96), pi.IN_OUT),
             "expression": pi.resolve(pi.clip(pi.Normal(std=1.0) * 3.0, -2.0, 2.0), (64, 96))}
    report = {}
    for name, plan in plans.items():
        unsharded = numpy_portable(plan, 11, "dense." + name)
        for count in (1, 2, 4, 8):
            mesh = Mesh(np.array(jax.devices()[:count]), ("model",))
            for spec in (P(None, "model"), P("model", None)):
                sharding = NamedSharding(mesh, spec)
                fn = jax.jit(lambda: draw_portable(plan, 11, "dense." + name), out_shardings=sharding)
                out = fn()
                hlo = fn.lower().compile().as_text()
                collectives = [op for op in ("all-gather", "all-to-all", "collective-permute", "all-reduce")
                               if op in hlo]
                report[f"{name} {count} {spec}"] = {
                    "equal": bool(np.array_equal(np.asarray(out).view(np.uint32), unsharded.view(np.uint32))),
                    "sharding": out.sharding == sharding,
                    "shards": len(out.addressable_shards),
                    "collectives": collectives}
    print(json.dumps(report))
""")


def test_sharded_draw_equals_unsharded_for_1_2_4_8_devices():
    import pytest

    pytest.importorskip("jax")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", PROBE], check=True, env=env, capture_output=True, text=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(report) == 24
    for case, result in report.items():
        count = int(case.split()[1])
        assert result == {"equal": True, "sharding": True, "shards": count, "collectives": []}, case
