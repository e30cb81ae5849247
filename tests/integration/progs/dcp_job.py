"""A small PyTorch DCP job (torch 1.13, Debian's python3-torch): 2 processes over gloo on CPU.

    dcp_job.py save|load|both PREFIX [STEPS]

The launcher (this file without "worker") starts 2 worker processes of itself with RANK,
WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT, prints rank 0's then rank 1's output
and exits with the worst status.  `save` writes step_<N> (N = 1..STEPS) with
torch.distributed._shard.checkpoint.save_state_dict and FileSystemWriter; `load` reads each back
with load_state_dict and FileSystemReader into zeroed tensors and checks them against the values
it would have saved.  The state has a replicated tensor and object (saved by the coordinator)
and a ShardedTensor split by rows over the 2 ranks, so both ranks write data files.  The tools/torch_compat.py patch (Python 3.11 vs torch
1.13 dataclasses) is applied first; TCT_TOOLS names the tools dir.

Optional (test_durable.py): TCT_DCP_STEPS="2,4,6" saves/loads those steps instead of 1..STEPS;
TCT_DCP_HASHES=1 makes rank 0 print `sha step_<N> <file> <sha256>` for every file of a step it
saved, read back through the same paths (what the job itself wrote).
"""

import hashlib
import os
import socket
import subprocess
import sys


def launcher(mode, prefix, steps):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                   WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2")
        procs.append(subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker", mode,
                                       prefix, str(steps)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = [p.communicate(timeout=240) for p in procs]
    rc = 0
    for p, (out, err) in zip(procs, results):
        sys.stdout.write(out.decode(errors="replace"))
        if p.returncode:
            sys.stderr.write(err.decode(errors="replace"))
            rc = max(rc, p.returncode if p.returncode > 0 else 128 - p.returncode)
    sys.stdout.flush()
    return rc


def full_sharded_value(torch, step):
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(16, 16, generator=g)


def make_state(torch, step, rank, zero=False):
    """The state dict of `rank` at `step` (zeroed tensors, None objects when zero=True): a
    replicated tensor and object, and a ShardedTensor whose rows 8*rank..8*rank+7 live here."""
    from torch.distributed._shard import sharded_tensor
    from torch.distributed._shard.sharding_spec import ChunkShardingSpec
    spec = ChunkShardingSpec(dim=0, placements=["rank:0/cpu", "rank:1/cpu"])
    st = sharded_tensor.zeros(spec, 16, 16)
    if not zero:
        st.local_shards()[0].tensor.copy_(full_sharded_value(torch, step)[8 * rank:8 * rank + 8])
    shared = torch.arange(64, dtype=torch.float32).reshape(8, 8) * step
    return {
        "shared.weight": torch.zeros_like(shared) if zero else shared,
        "sharded.weight": st,
        "extra": None if zero else {"step": step, "name": f"step_{step}"},
    }


def same(torch, a, b):
    from torch.distributed._shard.sharded_tensor import ShardedTensor
    if isinstance(a, ShardedTensor):
        return torch.equal(a.local_shards()[0].tensor, b.local_shards()[0].tensor)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def worker(mode, prefix, steps):
    sys.path.insert(0, os.environ["TCT_TOOLS"])
    import torch_compat
    torch_compat.patch()
    import torch
    import torch.distributed as dist
    import torch.distributed._shard.checkpoint as dcp

    dist.init_process_group("gloo", init_method="env://")
    rank = dist.get_rank()
    only = os.environ.get("TCT_DCP_STEPS")
    step_list = [int(x) for x in only.split(",")] if only else list(range(1, steps + 1))
    for step in step_list:
        path = os.path.join(prefix, f"step_{step}")
        if mode in ("save", "both"):
            dcp.save_state_dict(make_state(torch, step, rank),
                                dcp.FileSystemWriter(path, single_file_per_rank=True))
            dist.barrier()
            if rank == 0:
                files = sorted((f, os.path.getsize(os.path.join(path, f))) for f in os.listdir(path))
                print(f"saved step_{step}: {files}", flush=True)
                if os.environ.get("TCT_DCP_HASHES") == "1":
                    for f, _ in files:
                        with open(os.path.join(path, f), "rb") as fh:
                            print(f"sha step_{step} {f} {hashlib.sha256(fh.read()).hexdigest()}",
                                  flush=True)
    dist.barrier()
    if mode in ("load", "both"):
        for step in step_list:
            path = os.path.join(prefix, f"step_{step}")
            want = make_state(torch, step, rank)
            got = make_state(torch, step, rank, zero=True)
            dcp.load_state_dict(got, dcp.FileSystemReader(path))
            ok = all(same(torch, got[k], v) for k, v in want.items())
            print(f"rank {rank} loaded step_{step}: {'equal' if ok else 'DIFFERENT'}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(launcher(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3))
