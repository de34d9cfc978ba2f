"""``out_sharding`` is honoured in every mode JAX's own initializers honour it (issue 26.1): eagerly
and under ``jax.jit``, with and without ``jax.set_mesh`` (a ``NamedSharding`` or a bare
``PartitionSpec``), on 1-D and 2-D meshes of Explicit and Auto axes, for native draws
(``initializer(spec)``) and portable ones (``draw_portable``). Each case checks the result's
``.sharding``, that its values equal the unsharded draw bit for bit, and (under jit) that the
compiled per-device program holds no buffer larger than one shard.

Several host devices need ``XLA_FLAGS`` before JAX is imported, so the cases run in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

PROBE = """
    import itertools, json, math, re, sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
    import polyinit as pi
    from polyinit.backends.jax import draw_portable, initializer

    DEVICES = int(sys.argv[1])
    assert jax.device_count() == DEVICES
    SHAPE = (64, 96)
    key = jax.random.key(3)
    portable_plan = pi.resolve(pi.lecun_normal(truncated=True), SHAPE, pi.IN_OUT)
    threshold = pi.Uniform(low=-1.0, high=1.0) * (abs(pi.Uniform(low=-1.0, high=1.0)) >= 0.5)
    draws = {"native": initializer(pi.he_normal()), "native_expression": initializer(threshold),
             "portable": lambda k, shape, dtype=None, out_sharding=None: draw_portable(
                 portable_plan, 7, "w", out_sharding=out_sharding)}
    reference = {name: np.asarray(draw(key, SHAPE)) for name, draw in draws.items()}

    def largest_buffer(hlo):
        # Every array shape in the per-device compiled program, as an element count.
        shapes = re.findall(r"\\b(?:pred|bf16|[fsu]\\d+)\\[([\\d,]*)\\]", hlo)
        return max(math.prod(int(d) for d in s.split(",") if d) for s in shapes)

    meshes = {"1d": ((DEVICES,), ("model",), P(None, "model")),
              "2d": ((2, DEVICES // 2), ("data", "model"), P("data", "model"))}
    modes = ("eager", "jit", "eager_set_mesh", "jit_set_mesh_named", "jit_set_mesh_pspec")
    report = {}
    for (mesh_name, (dims, names, spec)), axis_type, mode, name in itertools.product(
            meshes.items(), (AxisType.Explicit, AxisType.Auto), modes, draws):
        mesh = jax.make_mesh(dims, names, axis_types=(axis_type,) * len(dims))
        expected = NamedSharding(mesh, spec)
        given = spec if mode.endswith("pspec") or mode == "eager_set_mesh" else expected
        draw = draws[name]
        fn = lambda k: draw(k, SHAPE, jnp.float32, out_sharding=given)
        if mode.startswith("jit"):
            fn = jax.jit(fn)
        case = f"{mesh_name} {axis_type.name} {mode} {name}"
        try:
            if "set_mesh" in mode:
                with jax.set_mesh(mesh):
                    out = fn(key)
                    hlo = fn.lower(key).compile().as_text() if mode.startswith("jit") else None
            else:
                out = fn(key)
                hlo = fn.lower(key).compile().as_text() if mode.startswith("jit") else None
        except Exception as error:
            report[case] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
            continue
        shard = math.prod(SHAPE) // math.prod(dims)
        report[case] = {
            "sharding": bool(out.sharding.is_equivalent_to(expected, 2)),
            "equal": bool(np.array_equal(np.asarray(out).view(np.uint32), reference[name].view(np.uint32))),
            "local": all(np.array_equal(np.asarray(s.data), reference[name][s.index]) for s in out.addressable_shards),
            "shard_sized": hlo is None or largest_buffer(hlo) <= shard}
    print(json.dumps(report))
"""


def run_probe(devices: int) -> dict:
    environment = dict(
        os.environ,
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        TF_CPP_MIN_LOG_LEVEL="2",
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment["PYTHONPATH"] = root + os.pathsep + environment.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE), str(devices)],
        check=False,
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("devices", [2, 8])
def test_out_sharding_is_honoured_in_every_mode(devices):
    pytest.importorskip("jax")
    report = run_probe(devices)
    assert len(report) == 2 * 2 * 5 * 3
    wrong = {
        case: result
        for case, result in report.items()
        if result != {"sharding": True, "equal": True, "local": True, "shard_sized": True}
    }
    assert not wrong, wrong


@pytest.mark.parametrize("out_sharding", ["model", ("model",), 3])
def test_out_sharding_that_is_not_a_sharding_is_refused_by_name(out_sharding):
    jax = pytest.importorskip("jax")
    import polyinit as pi
    from polyinit.backends.jax import draw_portable, initializer
    from polyinit.errors import PolyinitError

    with pytest.raises(PolyinitError, match="out_sharding"):
        initializer(pi.he_normal())(jax.random.key(0), (4, 4), out_sharding=out_sharding)
    with pytest.raises(PolyinitError, match="out_sharding"):
        draw_portable(pi.resolve(pi.Normal(std=1.0), (4, 4)), 0, "w", out_sharding=out_sharding)


def test_partition_spec_without_a_mesh_names_the_remedy():
    jax = pytest.importorskip("jax")
    from jax.sharding import PartitionSpec as P

    import polyinit as pi
    from polyinit.backends.jax import initializer
    from polyinit.errors import PolyinitError

    with pytest.raises(PolyinitError, match=r"PartitionSpec.*jax\.set_mesh"):
        initializer(pi.he_normal())(jax.random.key(0), (4, 4), out_sharding=P(None, "model"))
