"""JAX across processes (issue 24.5): two processes with four CPU devices each, joined by
``jax.distributed.initialize`` through a coordinator on localhost, draw into a global
``NamedSharding`` over all eight devices. Each process computes only its devices' shards (the
compiled per-device program holds no buffer larger than a shard), and the shards of both
processes, put together here, equal the single-process draw bit for bit: native draws
(``initializer(spec)(..., out_sharding=...)``) and portable ones (``draw_portable``).

Only localhost is used; each process is bounded in time and both are killed on failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

WORKER = """
    import json, math, re, sys
    import jax
    process, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=process,
                               initialization_timeout=120)
    import numpy as np, jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec as P
    import polyinit as pi
    from polyinit.backends.jax import draw_portable, initializer

    assert (jax.process_count(), jax.device_count(), jax.local_device_count()) == (2, 8, 4)
    SHAPE = (64, 96)
    key = jax.random.key(3)
    plan = pi.resolve(pi.lecun_normal(truncated=True), SHAPE, pi.IN_OUT)
    threshold = pi.Uniform(low=-1.0, high=1.0) * (abs(pi.Uniform(low=-1.0, high=1.0)) >= 0.5)
    draws = {"native": initializer(pi.he_normal()), "native_expression": initializer(threshold),
             "portable": lambda k, shape, dtype=None, out_sharding=None: draw_portable(plan, 7, "w", out_sharding=out_sharding)}
    meshes = {"2x4": (jax.make_mesh((2, 4), ("data", "model")), P("data", "model")),
              "8": (jax.make_mesh((8,), ("model",)), P(None, "model"))}

    def largest_buffer(hlo):
        shapes = re.findall(r"\\b(?:pred|bf16|[fsu]\\d+)\\[([\\d,]*)\\]", hlo)
        return max(math.prod(int(d) for d in s.split(",") if d) for s in shapes)

    report = {}
    for (mesh_name, (mesh, spec)), (name, draw) in [(m, d) for m in meshes.items() for d in draws.items()]:
        sharding = NamedSharding(mesh, spec)
        eager = draw(key, SHAPE, jnp.float32, out_sharding=sharding)
        with jax.set_mesh(mesh):  # JAX's explicit-sharding mode, a bare PartitionSpec
            jitted = jax.jit(lambda k: draw(k, SHAPE, jnp.float32, out_sharding=spec))
            under_jit = jitted(key)
            hlo = jitted.lower(key).compile().as_text()
        for mode, array in (("eager", eager), ("jit", under_jit)):
            report[f"{mesh_name} {name} {mode}"] = {
                "sharding": bool(array.sharding.is_equivalent_to(sharding, 2)),
                "shards": [{"index": [[s.start, s.stop] for s in shard.index],
                            "bits": np.asarray(shard.data).view(np.uint32).ravel().tolist()}
                           for shard in array.addressable_shards],
                "largest_buffer": largest_buffer(hlo)}
    with open(out, "w") as f:
        json.dump(report, f)
    jax.distributed.shutdown()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def run_two_processes(tmp_path) -> list[dict]:
    environment = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment["PYTHONPATH"] = root + os.pathsep + environment.get("PYTHONPATH", "")
    port, outs = free_port(), [tmp_path / f"process{i}.json" for i in range(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WORKER), str(i), str(port), str(outs[i])],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        logs = [worker.communicate(timeout=480) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    for worker, (_, err) in zip(workers, logs):
        assert worker.returncode == 0, err[-3000:]
    return [json.loads(out.read_text()) for out in outs]


def test_two_processes_draw_their_shards_of_the_single_process_values(tmp_path):
    jax = pytest.importorskip("jax")
    import polyinit as pi
    from polyinit.backends.jax import initializer
    from polyinit.backends.numpy import draw_portable

    shape = (64, 96)
    threshold = pi.Uniform(low=-1.0, high=1.0) * (abs(pi.Uniform(low=-1.0, high=1.0)) >= 0.5)
    single = {
        "native": np.asarray(initializer(pi.he_normal())(jax.random.key(3), shape)),
        "native_expression": np.asarray(initializer(threshold)(jax.random.key(3), shape)),
        "portable": draw_portable(pi.resolve(pi.lecun_normal(truncated=True), shape, pi.IN_OUT), 7, "w"),
    }
    reports = run_two_processes(tmp_path)
    assert reports[0].keys() == reports[1].keys() and len(reports[0]) == 2 * 3 * 2
    for case in reports[0]:
        name = case.split()[1]
        expected = single[name].astype(np.float32).view(np.uint32)
        gathered = np.zeros(shape, np.uint32)
        covered = np.zeros(shape, int)
        for report in reports:
            result = report[case]
            assert result["sharding"], case
            assert result["largest_buffer"] <= np.prod(shape) // 8, case  # one shard's elements
            assert len(result["shards"]) == 4, case  # this process's four devices only
            for shard in result["shards"]:
                index = tuple(slice(*bounds) for bounds in shard["index"])
                gathered[index] = np.asarray(shard["bits"], np.uint32).reshape(gathered[index].shape)
                covered[index] += 1
        assert (covered >= 1).all(), case
        assert np.array_equal(gathered, expected), case
