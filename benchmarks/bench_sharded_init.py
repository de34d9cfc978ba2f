"""A ~2B-parameter transformer-shaped model built on the meta device, sharded with FSDP2 over 4
gloo ranks on this machine, and initialised shard by shard with polyinit's portable draws
(``apply(model, rules, portable=True)``): each rank allocates and draws only its shard.

Per rank it reports the shard's bytes, the resident-memory baseline before materialising, the
peak resident memory, (peak - baseline) / shard bytes (the target is <= 1.25), and the time per
shard byte against torch's own init of the same shards (``normal_``/``uniform_`` on the local
tensors, the same process). The gathered values equal the unsharded draw with the same seed:
tests/test_sharded_torch.py proves that on small tensors.

    python benchmarks/bench_sharded_init.py [--width 2048] [--layers 40] [--ranks 4]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import textwrap

WORKER = """
    import json, os, time
    import torch
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    import polyinit as pi
    from polyinit.rules import Rules, apply, kind, role

    def rss_peak_mb():
        # VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's peak (kept across fork and exec).
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024

    def rss_now_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    width, layers, vocab = int(os.environ["WIDTH"]), int(os.environ["LAYERS"]), 32000
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
            self.qkv, self.proj = torch.nn.Linear(width, 3 * width), torch.nn.Linear(width, width)
            self.fc, self.out = torch.nn.Linear(width, 4 * width), torch.nn.Linear(4 * width, width)

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, width)
            self.blocks = torch.nn.ModuleList(Block() for _ in range(layers))
            self.norm = torch.nn.LayerNorm(width)

    with torch.device("meta"):
        model = Model()
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    total = sum(p.numel() for p in model.parameters())
    baseline = rss_now_mb()
    model.to_empty(device="cpu")
    shard_bytes = sum(p.to_local().numel() * 4 for p in model.parameters())
    rules = Rules([(kind("dense") & role("weight"), pi.Normal(std=0.02)), (kind("embedding"), pi.Normal(std=0.02)),
                   (role("bias"), pi.zeros()), (kind("norm") & role("scale"), pi.ones()),
                   (kind("norm") & role("offset"), pi.zeros())], seed=0)
    start = time.perf_counter()
    apply(model, rules, portable=True)
    ours = time.perf_counter() - start
    peak = rss_peak_mb()
    start = time.perf_counter()
    with torch.no_grad():
        for p in model.parameters():
            local = p.to_local()
            local.normal_(0, 0.02) if local.dim() == 2 else local.zero_()
    native = time.perf_counter() - start
    dist.barrier()
    print(json.dumps({"rank": rank, "params": total, "shard_mb": shard_bytes / 2**20, "baseline_mb": baseline,
                      "peak_mb": peak, "extra_over_shard": (peak - baseline) / (shard_bytes / 2**20),
                      "polyinit_ns_per_byte": ours / shard_bytes * 1e9, "torch_ns_per_byte": native / shard_bytes * 1e9,
                      "ratio": ours / native}), flush=True)
    dist.destroy_process_group()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=40)
    parser.add_argument("--ranks", type=int, default=4)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(
        os.environ,
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(args.ranks),
        WIDTH=str(args.width),
        LAYERS=str(args.layers),
        PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(WORKER)],
            env=dict(env, RANK=str(r)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(args.ranks)
    ]
    rows = []
    for p in procs:
        out, err = p.communicate()
        if p.returncode:
            sys.exit(err[-3000:])
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"model: {rows[0]['params'] / 1e9:.2f}B parameters, {args.ranks} gloo ranks, FSDP2 from the meta device")
    print(
        f"{'rank':>4} {'shard MB':>9} {'baseline MB':>11} {'peak MB':>8} {'(peak-base)/shard':>18} "
        f"{'polyinit ns/B':>14} {'torch ns/B':>11} {'ratio':>6}"
    )
    for r in sorted(rows, key=lambda r: r["rank"]):
        print(
            f"{r['rank']:>4} {r['shard_mb']:>9.0f} {r['baseline_mb']:>11.0f} {r['peak_mb']:>8.0f} "
            f"{r['extra_over_shard']:>18.3f} {r['polyinit_ns_per_byte']:>14.2f} {r['torch_ns_per_byte']:>11.2f} "
            f"{r['ratio']:>6.2f}"
        )


if __name__ == "__main__":
    main()
