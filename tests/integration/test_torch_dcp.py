"""PyTorch DCP (Debian's torch 1.13 under /usr/bin/python3): 2 processes over gloo on CPU save
step_1..3 with FileSystemWriter under the prefix, then a second run loads them back with
FileSystemReader.  Compared with the tmpfs oracle (where save and load share one mount namespace,
since the tmpfs dies with it); `tierckpt ls` then shows the 3 steps committed (MEMORY-ONLY: no S3 here) with their files."""

import os
import subprocess

import pytest

from conftest import (PROGS, PY, REPO, TIERCKPT, Result, assert_same, base_env, run,
                      text_diff)


def _torch_importable():
    try:
        return subprocess.run([PY, "-c", "import importlib.util, sys; "
                               "sys.exit(importlib.util.find_spec('torch') is None)"],
                              env=base_env(), timeout=60).returncode == 0
    except Exception:
        return False


pytestmark = pytest.mark.skipif(not _torch_importable(),
                                reason=f"{PY} cannot import torch (python3-torch missing)")

JOB = [PY, str(PROGS / "dcp_job.py")]
STEPS = 3
TIMEOUT_S = 240


def dcp_env():
    return {"TCT_TOOLS": str(REPO / "tools"), "OMP_NUM_THREADS": "1"}


def ls_rows(sc):
    r = run([TIERCKPT, "ls"], sc.shim_env(), label="tierckpt ls")
    assert r.rc == 0, r
    out = [l.split() for l in r.out.splitlines() if l.strip()]
    assert out, f"tierckpt ls printed nothing: {r!r}"
    return out[0], out[1:], r


def test_dcp_save_load_two_ranks_gloo_matches_tmpfs_and_ls_shows_committed_steps(sc):
    env = dcp_env()
    dump = sc.root / "oracle-tree.txt"
    sc.reset_work()
    oracle = sc.run_oracle(["/bin/sh", "-c", '"$0" "$1" save "$2" "$3" && "$0" "$1" load "$2" "$3"',
                            *JOB, sc.P, str(STEPS)], env=env, dump=dump, timeout=TIMEOUT_S)
    assert oracle.rc == 0, f"the DCP job fails on the tmpfs oracle itself: {oracle!r}"
    assert oracle.out.count(": equal") == 2 * STEPS, oracle
    sc.reset_work()
    sc.reset_tier()
    save = sc.run_shim([*JOB, "save", sc.P, str(STEPS)], env=env, timeout=TIMEOUT_S)
    assert save.rc == 0, f"DCP save under the shim failed: {save!r}"
    sc.assert_real_prefix_empty("DCP save")
    load = sc.run_shim([*JOB, "load", sc.P, str(STEPS)], env=env, timeout=TIMEOUT_S)
    both = Result(max(save.rc, load.rc), save.out + load.out, save.err + load.err, "shim")
    assert_same(oracle, both, "DCP save then load")
    sc.assert_real_prefix_empty("DCP load")
    tier_tree = sc.dump_tier()
    assert dump.read_text() == tier_tree, \
        "tier differs from tmpfs:\n" + text_diff(dump.read_text(), tier_tree, "tmpfs", "tier")

    header, rows, raw = ls_rows(sc)
    assert [h.upper() for h in header[:4]] == ["PATH", "STATE", "FILES", "BYTES"], raw
    by_path = {row[0]: row for row in rows}
    for n in range(1, STEPS + 1):
        vpath = f"{sc.P}/step_{n}"
        tdir = sc.tier_path(vpath)
        files = [f for f in os.listdir(tdir) if os.path.isfile(os.path.join(tdir, f))]
        assert ".metadata" in files and ".metadata.tmp" not in files, files
        assert vpath in by_path, f"tierckpt ls does not list {vpath}:\n{raw.out}"
        row = by_path[vpath]
        assert row[1] == "MEMORY-ONLY", f"step_{n} is {row[1]}, not MEMORY-ONLY (committed, no S3):\n{raw.out}"
        assert int(row[2]) == len(files), f"step_{n}: FILES {row[2]}, tier holds {files}"
        assert int(row[3]) == sum(os.path.getsize(os.path.join(tdir, f)) for f in files), \
            f"step_{n}: BYTES {row[3]} is not the sum of the file sizes:\n{raw.out}"
    assert len(rows) == STEPS, f"unexpected rows in tierckpt ls:\n{raw.out}"
