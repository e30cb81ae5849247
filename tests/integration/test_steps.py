"""Step directories and `tierckpt ls` (DESIGN.md section 4): which dirs are steps, WRITING until
the commit marker is created+closed or renamed into place, committed after (MEMORY-ONLY in `tierckpt ls`: these runs have no S3); FILES and BYTES are
what the tier holds; without a marker a step commits after an idle period with no file of it open
for writing, also when its writer was killed."""

import os
import time

from conftest import PY, TIERCKPT, run

NO_IDLE = {"TIERCKPT_COMMIT_IDLE_MS": "3600000"}  # idle commit out of the way


def ls(sc, **env):
    r = run([TIERCKPT, "ls"], sc.shim_env(**env), label="tierckpt ls")
    assert r.rc == 0, r
    rows = [l.split() for l in r.out.splitlines()[1:] if l.strip()]
    return {row[0]: row for row in rows}, r.out


def tier_stats(sc, vpath):
    d = sc.tier_path(vpath)
    files = [os.path.join(p, f) for p, _, fs in os.walk(d) for f in fs]
    return len(files), sum(os.path.getsize(f) for f in files)


def test_ls_recognises_step_names_and_commit_by_marker(sc):
    P = sc.P
    r = sc.run_shim([PY, "-c", f'''
import os, subprocess
P = {P!r}
def mk(d, files):
    os.makedirs(P + "/" + d, exist_ok=True)
    for name, size in files:
        os.makedirs(os.path.dirname(P + "/" + d + "/" + name), exist_ok=True)
        with open(P + "/" + d + "/" + name, "wb") as f:
            f.write(b"z" * size)
mk("step_1", [("__0_0.distcp", 1000), ("__1_0.distcp", 2000), (".metadata", 10)])
mk("checkpoint-2", [("model.safetensors", 4096), ("sub/opt.pt", 100)])
mk("checkpoint-2", [(".metadata.tmp", 7)])
os.rename(P + "/checkpoint-2/.metadata.tmp", P + "/checkpoint-2/.metadata")
mk("global_step3", [("a", 5)])
mk("iter_4", [("a", 1)])
for d in ("step_x", "steps_5", "other", "a/step_6", "step_", "step_7a"):
    mk(d, [("f", 1), (".metadata", 1)])
f = open(P + "/iter_4/.metadata", "wb"); f.write(b"open")
f.flush()
print(subprocess.run([{str(TIERCKPT)!r}, "ls"], capture_output=True, text=True).stdout, end="")
f.close()
'''], env=NO_IDLE)
    assert r.rc == 0, r
    lines = r.out.splitlines()
    while_open = {l.split()[0]: l.split() for l in lines[1:] if l.strip()}
    assert while_open.get(f"{P}/iter_4", [None, None])[1] == "WRITING", \
        f"a step whose marker is still open must be WRITING:\n{r.out}"
    rows, raw = ls(sc, **NO_IDLE)
    want = {f"{P}/step_1": "MEMORY-ONLY", f"{P}/checkpoint-2": "MEMORY-ONLY",
            f"{P}/global_step3": "WRITING", f"{P}/iter_4": "MEMORY-ONLY"}
    assert {k: v[1] for k, v in rows.items()} == want, f"tierckpt ls:\n{raw}"
    for vpath in want:
        nfiles, nbytes = tier_stats(sc, vpath)
        assert (int(rows[vpath][2]), int(rows[vpath][3])) == (nfiles, nbytes), \
            f"{vpath}: FILES/BYTES {rows[vpath][2:4]}, tier holds {nfiles} files {nbytes} bytes"
    sc.assert_real_prefix_empty()


def test_custom_commit_marker(sc):
    r = sc.run_shim(["/bin/sh", "-c", f"mkdir {sc.P}/step_1 {sc.P}/step_2 && "
                     f"echo x > {sc.P}/step_1/.metadata && echo y > {sc.P}/step_2/DONE"],
                    env={**NO_IDLE, "TIERCKPT_COMMIT_MARKER": "DONE"})
    assert r.rc == 0, r
    rows, raw = ls(sc, TIERCKPT_COMMIT_MARKER="DONE", **NO_IDLE)
    assert rows[f"{sc.P}/step_1"][1] == "WRITING" and rows[f"{sc.P}/step_2"][1] == "MEMORY-ONLY", raw


def _wait_state(sc, vpath, state, env, timeout_s=15):
    deadline = time.monotonic() + timeout_s
    while True:
        rows, raw = ls(sc, **env)
        if vpath in rows and rows[vpath][1] == state:
            return raw
        if time.monotonic() > deadline:
            return raw
        time.sleep(0.2)


def test_step_without_marker_commits_after_idle_period(sc):
    env = {"TIERCKPT_COMMIT_IDLE_MS": "300"}
    r = sc.run_shim(["/bin/sh", "-c", f"mkdir {sc.P}/step_5 && echo data > {sc.P}/step_5/f"],
                    env=env)
    assert r.rc == 0, r
    vpath = f"{sc.P}/step_5"
    _wait_state(sc, vpath, "MEMORY-ONLY", env)
    rows, raw = ls(sc, **env)
    assert rows.get(vpath, [None, None])[1] == "MEMORY-ONLY", f"no idle commit within 15s:\n{raw}"


def test_step_with_file_open_for_writing_stays_writing(sc):
    env = {"TIERCKPT_COMMIT_IDLE_MS": "200"}
    r = sc.run_shim([PY, "-c", f'''
import os, subprocess, time
os.mkdir({sc.P!r} + "/step_6")
f = open({sc.P!r} + "/step_6/shard", "wb"); f.write(b"x" * 100); f.flush()
time.sleep(1.5)
print(subprocess.run([{str(TIERCKPT)!r}, "ls"], capture_output=True, text=True).stdout, end="")
f.close()
'''], env=env)  # `tierckpt ls` runs inside, with the same settings
    assert r.rc == 0, r
    rows = {l.split()[0]: l.split() for l in r.out.splitlines()[1:] if l.strip()}
    assert rows.get(f"{sc.P}/step_6", [None, None])[1] == "WRITING", \
        f"a step with a file open for writing must not commit:\n{r.out}"


def test_step_commits_after_its_writer_was_killed(sc):
    env = {"TIERCKPT_COMMIT_IDLE_MS": "300"}
    r = sc.run_shim([PY, "-c", f'''
import os, signal
os.mkdir({sc.P!r} + "/step_8")
fd = os.open({sc.P!r} + "/step_8/shard", os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b"partial")
os.kill(os.getpid(), signal.SIGKILL)
'''], env=env)
    assert r.rc == -9, r
    vpath = f"{sc.P}/step_8"
    _wait_state(sc, vpath, "MEMORY-ONLY", env)
    rows, raw = ls(sc, **env)
    assert rows.get(vpath, [None, None])[1] == "MEMORY-ONLY", \
        f"a killed writer must not keep its step WRITING forever:\n{raw}"
    assert (int(rows[vpath][2]), int(rows[vpath][3])) == (1, 7), raw
