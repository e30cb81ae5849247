"""Where the bytes go: after a shim run they are in the tier, nothing is at the real prefix path,
and the kernel never sees a file syscall naming the virtual prefix (strace -f)."""

import os
import re
import subprocess

from conftest import PY, TIERCKPT

WORKLOAD = r'''
import os, shutil, subprocess, tempfile
P = os.environ["TCT_P"]                      # from the environment: no prefix text in argv
os.makedirs(P + "/step_1/sub")
with open(P + "/step_1/a.distcp", "wb") as f:
    f.write(b"x" * 100000)
os.stat(P + "/step_1/a.distcp"); os.lstat(P + "/step_1"); os.access(P + "/step_1", os.R_OK)
os.listdir(P); list(os.scandir(P + "/step_1")); list(os.walk(P))
os.rename(P + "/step_1/a.distcp", P + "/step_1/b.distcp")
os.replace(P + "/step_1/b.distcp", P + "/step_1/c.distcp")
os.symlink("c.distcp", P + "/step_1/link"); os.readlink(P + "/step_1/link")
os.link(P + "/step_1/c.distcp", P + "/step_1/hard"); os.unlink(P + "/step_1/hard")
os.chmod(P + "/step_1/c.distcp", 0o600); os.utime(P + "/step_1/c.distcp", (1, 2))
os.truncate(P + "/step_1/c.distcp", 5000)
os.chdir(P + "/step_1"); open("rel", "w").write("r"); os.getcwd(); os.chdir("/")
fd, t = tempfile.mkstemp(dir=P); os.close(fd); os.unlink(t)
shutil.copytree(P + "/step_1", P + "/step_2"); shutil.rmtree(P + "/step_2")
dfd = os.open(P + "/step_1", os.O_RDONLY | os.O_DIRECTORY)
os.stat("rel", dir_fd=dfd); os.mkdir("d", dir_fd=dfd); os.rmdir("d", dir_fd=dfd); os.close(dfd)
os.readlink("/proc/self/fd/0")
try:
    os.stat(P + "/missing")
except FileNotFoundError:
    pass
with open(P + "/step_1/.metadata.tmp", "w") as f:
    f.write("meta")
os.rename(P + "/step_1/.metadata.tmp", P + "/step_1/.metadata")
subprocess.run(["sh", "-c", 'cat "$TCT_P/step_1/rel" > "$TCT_P/step_1/from_child"; ls "$TCT_P" > /dev/null'], check=True)
print("done")
'''


def test_strace_shows_no_file_syscall_naming_the_virtual_prefix(sc, tmp_path):
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    log = tmp_path / "strace.log"
    env = sc.shim_env(TCT_P=sc.P)
    p = subprocess.run(["strace", "-f", "-qq", "-s", "4096", "-e", "trace=%file,%desc",
                        "-o", str(log), str(TIERCKPT), "run", "--", PY, str(script)],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120,
                       cwd=str(tmp_path))
    assert p.returncode == 0 and p.stdout == b"done\n", p.stderr.decode(errors="replace")
    text = log.read_text(errors="replace")
    # Data moved by read/write may legitimately contain anything: only calls that name paths.
    io = re.compile(r"^\d+\s+(read|write|pread64|pwrite64|readv|writev|sendfile|copy_file_range)\(")
    quoted = re.compile(r'"((?:[^"\\]|\\.)*)"')
    naming, on_tier = [], 0
    for line in text.splitlines():
        if io.match(line):
            continue
        strings = quoted.findall(line)
        if re.match(r"^\d+\s+execve(at)?\(", line):
            strings = strings[:1]  # the program's path; argv and envp are data, not paths
        for s in strings:
            if s == sc.P or s.startswith(sc.P + "/"):
                naming.append(line)
            elif s.startswith(str(sc.tier) + "/"):
                on_tier += 1
    assert not naming, ("file syscalls naming the virtual prefix reached the kernel:\n"
                        + "\n".join(naming[:40]))
    assert on_tier >= 20, \
        "strace saw (almost) no call on the tier path: the workload did not run as expected"
    sc.assert_real_prefix_empty()
    assert (sc.tier_path() / "step_1" / "from_child").read_text() == "r"


def test_bytes_land_in_tier_dir_and_real_prefix_stays_empty(sc):
    sc.reset_tier()
    r = sc.run_shim([PY, "-c", f'''
import os
P = {sc.P!r}
os.makedirs(P + "/step_3/deep")
open(P + "/step_3/deep/blob", "wb").write(b"\\xab" * 123457)
open(P + "/top", "w").write("top")
print(sorted(os.listdir(P)))
'''])
    assert r.rc == 0 and r.out == "['step_3', 'top']\n", r
    sc.assert_real_prefix_empty()
    blob = sc.tier_path() / "step_3" / "deep" / "blob"
    assert blob.read_bytes() == b"\xab" * 123457, f"bytes not in the tier at {blob}"
    assert (sc.tier_path() / "top").read_text() == "top"
    # the tier directory is private to its user
    for d in (sc.shm / f"tierckpt-{os.getuid()}", sc.tier):
        assert os.stat(d).st_mode & 0o077 == 0, f"{d} is open to group/other"


def test_shim_prints_nothing_on_a_normal_run(sc):
    r = sc.run_shim(["/bin/sh", "-c", f'mkdir -p {sc.P}/step_1 && echo x > {sc.P}/step_1/f && '
                     f'cat {sc.P}/step_1/f && {PY} -c "print(1)"'])
    assert r.rc == 0 and r.out == "x\n1\n", r
    assert r.err == "", f"the shim wrote on stderr of a normal run: {r.err!r}"


def test_files_written_before_exit_by_a_killed_process_stay_in_tier(sc):
    """A program killed right after writing leaves its bytes in the tier (no buffering in the
    shim), and the next run under the shim sees them."""
    r = sc.run_shim([PY, "-c", f'''
import os, signal
P = {sc.P!r}
fd = os.open(P + "/crash", os.O_CREAT | os.O_WRONLY, 0o644)
os.write(fd, b"before kill")
os.kill(os.getpid(), signal.SIGKILL)
'''])
    assert r.rc == -9, r
    r = sc.run_shim(["cat", f"{sc.P}/crash"])
    assert (r.rc, r.out) == (0, "before kill"), r
    sc.assert_real_prefix_empty()


def test_program_that_closes_or_reuses_all_fds_keeps_working(sc):
    """Daemons and launchers close every fd above 2 (close_range/closerange) or dup2 onto fixed
    numbers; the shim's own descriptors must not be what breaks (compare with tmpfs), and a step
    committed afterwards is still recorded."""
    sc.compare(sc.py("closeall.py", r'''
os.makedirs(P + "/step_1")
put(P + "/step_1/a", "before")
os.closerange(3, 65536)
put(P + "/step_1/b", "after closerange")
for n in range(3, 40):
    fd = os.open("/dev/null", os.O_RDONLY)
    if fd != n:
        os.dup2(fd, n); os.close(fd)
put(P + "/step_1/c", "after dup2 over low fds")
os.closerange(3, 65536)
put(P + "/step_1/.metadata", "marker")
show("listing", sorted(os.listdir(P + "/step_1")), get(P + "/step_1/b"))
'''))
    r = subprocess.run([str(TIERCKPT), "ls"], env=sc.shim_env(), stdout=subprocess.PIPE,
                       text=True, timeout=60)
    rows = {l.split()[0]: l.split() for l in r.stdout.splitlines()[1:] if l.strip()}
    row = rows.get(f"{sc.P}/step_1")
    assert row and row[1] == "MEMORY-ONLY" and row[2] == "4", f"tierckpt ls:\n{r.stdout}"
