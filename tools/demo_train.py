#!/usr/bin/python3
"""tools/demo_train.py - the training job that `make demo` (tools/demo.sh) runs under tierckpt.

A small but real PyTorch job: 2 processes (torch.multiprocessing, forked) over gloo on the CPU train
a 2-layer MLP with DistributedDataParallel on synthetic regression data, and checkpoint with
PyTorch DCP (`save_state_dict` + `FileSystemWriter`) into `<ckpt-root>/step_<N>` every few steps.
Nothing in it knows about tierckpt: run under `tierckpt run`, the checkpoint root is redirected
into the memory tier.

    demo_train.py train  --ckpt-root DIR --ref-dir REF [--steps 30] [--save-every 10]
    demo_train.py resume --ckpt-root DIR --ref-dir REF

`train` prints the stall (time the training loop is blocked) of every save, and writes a plain
copy of each saved state to REF (outside the prefix) so that `resume` can prove what it loads is
bit-identical.  `resume` loads the newest committed step with `FileSystemReader` into a freshly
initialised model, compares every tensor with the reference, and trains one more step from it.
Exit status 0 on success, 1 when the resumed tensors differ, 2 on a usage error.

Needs Debian's torch (/usr/bin/python3); tools/torch_compat.py makes torch 1.13's DCP importable
on Python 3.11.
"""

import argparse
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_compat  # noqa: E402

torch_compat.patch()

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.distributed._shard.checkpoint as dcp  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

NPROC = 2
IN_DIM, HIDDEN, OUT_DIM = 64, 1024, 1
SAMPLES, BATCH = 4096, 128
STEP_RE = re.compile(r"^step_(\d+)$")


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(IN_DIM, HIDDEN), torch.nn.ReLU(),
                               torch.nn.Linear(HIDDEN, OUT_DIM))


def make_data(rank, world):
    """Synthetic regression data (same on every run), split between the ranks."""
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(SAMPLES, IN_DIM, generator=g)
    w = torch.randn(IN_DIM, OUT_DIM, generator=g)
    y = torch.tanh(x @ w) + 0.01 * torch.randn(SAMPLES, OUT_DIM, generator=g)
    return x[rank::world], y[rank::world]


def checkpoint_state(model, optim, step):
    """The flat dict of tensors that is checkpointed: weights, SGD momentum, step number.
    The tensors are the live ones (DCP reads them during a save and fills them during a load)."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, p in enumerate(model.parameters()):
        buf = optim.state[p].get("momentum_buffer")
        if buf is None:  # before the first step: allocate so that a load has a target
            buf = optim.state[p]["momentum_buffer"] = torch.zeros_like(p)
        state[f"optim.{i}.momentum_buffer"] = buf
    state["step"] = torch.tensor(step, dtype=torch.int64)
    return state


def train_one(ddp, optim, x, y, it):
    lo = (it * BATCH) % x.shape[0]
    xb, yb = x[lo:lo + BATCH], y[lo:lo + BATCH]
    optim.zero_grad()
    loss = torch.nn.functional.mse_loss(ddp(xb), yb)
    loss.backward()
    optim.step()
    return loss.item()


def setup(rank, world, port):
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    dist.init_process_group("gloo", rank=rank, world_size=world)


def worker_train(rank, world, port, args):
    setup(rank, world, port)
    model = make_model(seed=0)
    ddp = DDP(model)
    optim = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    x, y = make_data(rank, world)
    for step in range(1, args.steps + 1):
        loss = train_one(ddp, optim, x, y, step)
        if step % args.save_every:
            continue
        path = os.path.join(args.ckpt_root, f"step_{step}")
        state = checkpoint_state(model, optim, step)
        t0 = time.perf_counter()
        dcp.save_state_dict(state, dcp.FileSystemWriter(path))
        stall_ms = (time.perf_counter() - t0) * 1e3
        worst = torch.tensor([stall_ms], dtype=torch.float64)
        dist.all_reduce(worst, op=dist.ReduceOp.MAX)
        if rank == 0:
            torch.save({k: v.clone() for k, v in state.items()},
                       os.path.join(args.ref_dir, f"step_{step}.pt"))
            nbytes = sum(v.numel() * v.element_size() for v in state.values())
            print(f"  step {step:3d}  loss {loss:.4f}  saved step_{step} "
                  f"({len(state)} tensors, {nbytes / 1024:.0f} KiB)  "
                  f"stall {worst.item():.1f} ms (slowest rank)", flush=True)
    dist.barrier()
    dist.destroy_process_group()


def newest_step(root):
    """Name of the newest step directory under root that has DCP's .metadata, or None."""
    best = None
    for name in os.listdir(root):
        m = STEP_RE.match(name)
        if m and os.path.exists(os.path.join(root, name, ".metadata")):
            if best is None or int(m.group(1)) > best[0]:
                best = (int(m.group(1)), name)
    return best[1] if best else None


def worker_resume(rank, world, port, args, name):
    setup(rank, world, port)
    model = make_model(seed=99)  # deliberately not the trained weights
    optim = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    state = checkpoint_state(model, optim, 0)
    dcp.load_state_dict(state, dcp.FileSystemReader(os.path.join(args.ckpt_root, name)))
    ref = torch.load(os.path.join(args.ref_dir, f"{name}.pt"))
    bad = sorted(k for k in ref if k not in state or not torch.equal(ref[k], state[k]))
    bad += sorted(k for k in state if k not in ref)
    ok = torch.tensor([0 if bad else 1])
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    if bad:
        sys.stderr.write(f"  rank {rank}: {name}: tensors differ from what was saved: "
                         f"{', '.join(bad)}\n")  # one write: the ranks share stderr
    if ok.item() and rank == 0:
        print(f"  resume from {name}: tensors identical "
              f"({len(state)} tensors, step {int(state['step'])}, both ranks)", flush=True)
    if ok.item():
        x, y = make_data(rank, world)
        loss = train_one(DDP(model), optim, x, y, int(state["step"]) + 1)
        if rank == 0:
            print(f"  step {int(state['step']) + 1:3d}  loss {loss:.4f}  (training goes on)",
                  flush=True)
    dist.barrier()
    dist.destroy_process_group()
    if not ok.item():
        sys.exit(1)


def start(fn, args):
    """Run fn(rank, *args) in NPROC processes and wait; raises when one fails.  Forked, not
    spawned: the children inherit the imported torch (an import costs seconds; the demo should
    take well under a minute), and the shim must follow a fork as it follows an exec."""
    mp.start_processes(fn, args=args, nprocs=NPROC, join=True, start_method="fork")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["train", "resume"])
    ap.add_argument("--ckpt-root", required=True, help="checkpoint directory (the prefix)")
    ap.add_argument("--ref-dir", required=True, help="where plain reference copies go")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--save-every", type=int, default=10)
    args = ap.parse_args()
    if args.steps < 1 or args.save_every < 1:
        ap.error("--steps and --save-every must be >= 1")

    port = free_port()
    if args.mode == "train":
        print(f"train: {NPROC} processes over gloo, MLP {IN_DIM}-{HIDDEN}-{OUT_DIM}, "
              f"{args.steps} steps, DCP save every {args.save_every} into {args.ckpt_root}",
              flush=True)
        start(worker_train, (NPROC, port, args))
        return 0
    name = newest_step(args.ckpt_root)
    if name is None:
        print(f"resume: no committed step_<N> under {args.ckpt_root}", file=sys.stderr)
        return 1
    print(f"resume: {NPROC} processes load {os.path.join(args.ckpt_root, name)}", flush=True)
    try:
        start(worker_resume, (NPROC, port, args, name))
    except mp.ProcessExitedException:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
