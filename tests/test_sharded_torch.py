"""torch DTensor / FSDP2: each rank draws its own shard with the portable generator, and the
gathered tensor equals the unsharded draw with the same seed (gloo on localhost, world sizes 2
and 4, processes spawned by the test)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from polyinit.sharded import local_runs

WORKER = """
    import json, os, sys
    import numpy as np
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor
    import polyinit as pi
    from polyinit.sharded import draw_dtensor

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    results = {}
    meshes = {"1d": init_device_mesh("cpu", (world,))}
    if world == 4:
        meshes["2d"] = init_device_mesh("cpu", (2, 2))
    specs = {"he_normal": (pi.he_normal(), pi.OUT_IN), "glorot_uniform": (pi.glorot_uniform(), pi.OUT_IN),
             "trunc": (pi.TruncatedNormal(std=0.02, bounds="absolute"), None),
             "threshold": (pi.Uniform(low=-1.0, high=1.0) * (abs(pi.Uniform(low=-1.0, high=1.0)) >= 0.5), None)}
    for name, (spec, layout) in specs.items():
        plan = pi.resolve(spec, (37, 20), layout)
        for mesh_name, mesh in meshes.items():
            for placement in ([Shard(0)], [Shard(1)]) if mesh_name == "1d" else ([Shard(0), Shard(1)],):
                w = distribute_tensor(torch.empty(37, 20), mesh, placement)
                draw_dtensor(w, plan, seed=5, key="layer.weight")
                full = w.full_tensor()
                results[f"{name} {mesh_name} {placement}"] = full.numpy().tobytes().hex()
    # FSDP2: fully_shard turns the parameters into Shard(0) DTensors; each rank draws its shard.
    from torch.distributed.fsdp import fully_shard

    model = torch.nn.Sequential(torch.nn.Linear(20, 37), torch.nn.Linear(37, 11))
    fully_shard(model, mesh=meshes["1d"])
    for path, p in model.named_parameters():
        spec = pi.he_normal() if p.dim() == 2 else pi.Uniform(low=-0.1, high=0.1)
        draw_dtensor(p, pi.resolve(spec, tuple(p.shape), pi.OUT_IN), seed=5, key=path)
        results[f"fsdp2 {path}"] = p.full_tensor().detach().numpy().tobytes().hex()
        results[f"local {path}"] = f"{p.to_local().shape[0]} of {p.shape[0]}"  # proof that it is sharded
    # Parameters whose portable draw is not in torch's storage order (packed q/k/v and LSTM gates
    # under fans="semantic") or spans several tensors (b_ih + b_hh): drawn whole, local block kept.
    from polyinit.rules import apply
    sys.path.insert(0, os.environ["POLYINIT_TESTS"])
    from test_sharded_torch import MIXED_RULES, mixed_model

    sharded = mixed_model()
    fully_shard(sharded, mesh=meshes["1d"])
    apply(sharded, MIXED_RULES, portable=True)
    for path, p in sharded.named_parameters():
        results[f"mixed {path}"] = p.full_tensor().detach().numpy().tobytes().hex()
    if rank == 0:
        print(json.dumps(results))
    dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(world: int) -> dict:
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(world))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["POLYINIT_TESTS"] = os.path.join(root, "tests")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WORKER)],
            env=dict(env, RANK=str(r)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(world)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    return json.loads(outputs[0][0].strip().splitlines()[-1])


@pytest.mark.parametrize("world", [2, 4])
def test_dtensor_shards_gather_to_the_unsharded_draw(world):
    import polyinit as pi
    from polyinit.backends.torch import draw_portable

    results = run_ranks(world)
    specs = {
        "he_normal": (pi.he_normal(), pi.OUT_IN),
        "glorot_uniform": (pi.glorot_uniform(), pi.OUT_IN),
        "trunc": (pi.TruncatedNormal(std=0.02, bounds="absolute"), None),
        "threshold": (pi.Uniform(low=-1.0, high=1.0) * (abs(pi.Uniform(low=-1.0, high=1.0)) >= 0.5), None),
    }
    mixed = {tag.split()[1]: hexed for tag, hexed in results.items() if tag.startswith("mixed")}
    local = {tag.split()[1]: text for tag, text in results.items() if tag.startswith("local")}
    results = {tag: hexed for tag, hexed in results.items() if not tag.startswith(("mixed", "local"))}
    # fully_shard really sharded every parameter: rank 0 holds ceil(rows / world) of the rows.
    assert local == {
        path: f"{-(-rows // world)} of {rows}"
        for path, rows in {"0.weight": 37, "0.bias": 37, "1.weight": 11, "1.bias": 11}.items()
    }, local
    fsdp = {tag: hexed for tag, hexed in results.items() if tag.startswith("fsdp2")}
    assert len(fsdp) == 4 and len(results) - 4 == len(specs) * (2 if world == 2 else 3)
    _check_mixed(mixed)
    shapes = {"0.weight": (37, 20), "0.bias": (37,), "1.weight": (11, 37), "1.bias": (11,)}
    for tag, hexed in fsdp.items():
        path = tag.split()[1]
        spec = pi.he_normal() if len(shapes[path]) == 2 else pi.Uniform(low=-0.1, high=0.1)
        expected = draw_portable(pi.resolve(spec, shapes[path], pi.OUT_IN), seed=5, key=path).numpy()
        assert bytes.fromhex(hexed) == expected.tobytes(), tag
    for tag, hexed in results.items():
        if tag in fsdp:
            continue
        spec, layout = specs[tag.split()[0]]
        expected = draw_portable(pi.resolve(spec, (37, 20), layout), seed=5, key="layer.weight").numpy()
        assert bytes.fromhex(hexed) == expected.tobytes(), tag


def test_local_runs_cover_the_block_in_order():
    shape = (5, 4, 6)
    flat = np.arange(np.prod(shape)).reshape(shape)
    for local, offset in (
        ((2, 4, 6), (3, 0, 0)),
        ((5, 2, 6), (0, 2, 0)),
        ((5, 4, 3), (0, 0, 3)),
        ((2, 2, 3), (1, 1, 3)),
        ((0, 4, 6), (5, 0, 0)),
    ):
        block = flat[tuple(slice(o, o + n) for o, n in zip(offset, local))].ravel()
        runs = np.concatenate([np.arange(a, b) for a, b in local_runs(shape, local, offset)] or [np.array([], int)])
        assert np.array_equal(runs, block), (local, offset)


def test_a_plain_tensor_is_refused():
    import polyinit as pi
    from polyinit.errors import PolyinitError
    from polyinit.sharded import draw_dtensor

    with pytest.raises(PolyinitError, match="expected a DTensor"):
        draw_dtensor(torch.empty(4, 4), pi.resolve(pi.he_normal(), (4, 4), pi.OUT_IN), 0, "w")


class _Mixed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.lstm, self.attn = torch.nn.Linear(6, 6), torch.nn.LSTM(6, 8), torch.nn.MultiheadAttention(8, 2)

    def forward(self, x):  # fully_shard wants a module with a forward
        return self.attn(*(self.lstm(self.fc(x))[0],) * 3)[0]


def mixed_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return _Mixed()


def _mixed_rules():
    import polyinit as pi
    from polyinit.rules import Rules, every

    return Rules([(every(), pi.Uniform(low=-0.3, high=0.3))], seed=3)


MIXED_RULES = _mixed_rules()


def _check_mixed(gathered: dict) -> None:
    """The FSDP2 model of the worker, gathered, equals the same model initialised unsharded."""
    from polyinit.rules import apply

    model = mixed_model()
    apply(model, MIXED_RULES, portable=True)
    expected = {path: p.detach().numpy().tobytes().hex() for path, p in model.named_parameters()}
    assert sorted(gathered) == sorted(expected) and len(expected) == 10
    assert not model.lstm.bias_hh_l0.any()  # the summed bias drawn whole: b_hh zero
    for path in expected:
        assert gathered[path] == expected[path], path
