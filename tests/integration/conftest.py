"""Integration tests of tierckpt: real, unmodified programs run under the shim and compared with
the tmpfs oracle.

What it is for: the product promise (DESIGN.md section 1) is that the prefix behaves exactly as if
a tmpfs were mounted there.  Every comparison test runs one program twice:

  oracle  unshare -m, a real tmpfs mounted at the prefix, the program, then a dump of the prefix
          tree taken inside the same mount namespace;
  shim    `$TIERCKPT_BUILD/tierckpt run -- program` with TIERCKPT_PREFIX at the same path and a
          scratch TIERCKPT_SHM_DIR under /dev/shm, then a dump of the tier directory
          (<shm>/tierckpt-<uid>/<ns>/fs/<prefix>).

and asserts that exit status, stdout and stderr (less the shim's own log lines) are equal, that the
tier holds exactly the tree the tmpfs held, and that nothing was written at the real prefix path.

DESIGN: every test owns a `Scratch` (fixture `sc`): a work dir under pytest's tmp_path holding the
prefix `ckpt` (an empty real dir, as a mount point must be), an `out` dir beside it (outside the
prefix, same file system as the prefix's parent) and `ckpt2` (a sibling whose name starts with the
prefix's text: never redirected).  The work dir is wiped before each run, so both runs start from
the same state and see the same paths; a scratch shm dir per test (wiped before each shim run)
keeps the tier apart and easy to remove.  Programs print listings, sizes, hashes and errno names,
never fd numbers, inode numbers or times that the runs cannot share.

Set TCT_SHOW=1 (with pytest -s) to print the oracle's outputs.  Set TCT_SELFCHECK=1 to run the oracle in place of the shim: it checks that the tests themselves are
deterministic (used while the shim did not build yet).
"""

import difflib
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PROGS = HERE / "progs"
sys.path.insert(0, str(HERE))

import tctlib  # noqa: E402  (helpers shared with the programs)

BUILD = Path(os.environ.get("TIERCKPT_BUILD") or (REPO / "build"))
TIERCKPT = BUILD / "tierckpt"
LIB = BUILD / "libtierckpt.so"
PY = "/usr/bin/python3"  # Debian's interpreter (the one with torch); never the PATH's python3
SELFCHECK = os.environ.get("TCT_SELFCHECK") == "1"
UID = os.getuid()
RUN_TIMEOUT_S = 90

# One log line of the shim: "<time> <LEVEL> tierckpt[pid] rank=R ns=NS: msg" (config/log.h).
SHIM_LOG_RE = re.compile(r"tierckpt\[\d+\]")

ORACLE_SH = (
    'mount -t tmpfs none "$TCT_ORACLE_P" || exit 99\n'
    '"$@"; rc=$?\n'
    'if [ -n "$TCT_DUMP" ]; then "$TCT_PY" "$TCT_DUMP_PY" "$TCT_ORACLE_P" > "$TCT_DUMP" || exit 98; fi\n'
    'exit $rc\n'
)


def base_env():
    """The environment every run starts from: ours less any tierckpt setting or preload, with a
    fixed PATH (Debian's python3 first), locale and hash seed so outputs are reproducible."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TIERCKPT_") and k not in ("LD_PRELOAD", "PYTHONPATH")}
    env.update(PATH="/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL="C", LANG="C",
               PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1", TZ="UTC")
    if os.environ.get("TIERCKPT_TEST_ASAN"):
        env["ASAN_OPTIONS"] = "detect_leaks=0:verify_asan_link_order=0"
        env["TIERCKPT_TEST_ASAN"] = "1"
    return env


class Result:
    """Exit status and decoded output of one run."""

    def __init__(self, rc, out, err, label=""):
        self.rc, self.out, self.err, self.label = rc, out, err, label

    @property
    def err_prog(self):
        """stderr without the shim's own log lines (those are checked by a test of their own)."""
        return "".join(l for l in self.err.splitlines(True) if not SHIM_LOG_RE.search(l))

    @property
    def shim_lines(self):
        return [l for l in self.err.splitlines() if SHIM_LOG_RE.search(l)]

    def __repr__(self):
        return (f"<{self.label} rc={self.rc}\n--- stdout ---\n{self.out}\n--- stderr ---\n"
                f"{self.err}>")


def run(cmd, env, cwd=None, timeout=RUN_TIMEOUT_S, stdin=None, label="run"):
    """Run cmd (list) in its own process group and return a Result; a hang is a test failure
    (the whole group is killed), never a stuck suite."""
    p = subprocess.Popen([str(c) for c in cmd], env=env, cwd=cwd,
                         stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = p.communicate()
        pytest.fail(f"{label}: {cmd!r} did not finish in {timeout}s\nstdout (end): "
                    f"{out[-3000:]!r}\nstderr (end): {err[-3000:]!r}")
    finally:
        if p.poll() is None:
            p.kill()
    # Whatever the program left running in its group (daemons, stuck children) goes too.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return Result(p.returncode, out.decode(errors="replace"), err.decode(errors="replace"), label)


def text_diff(a, b, na, nb):
    return "".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True), na, nb, n=2))


def assert_same(oracle, shim, what="run"):
    """Exit status, stdout and stderr (less shim log lines) of the two runs are equal."""
    problems = []
    if oracle.rc != shim.rc:
        problems.append(f"exit status: tmpfs {oracle.rc}, shim {shim.rc}")
    if oracle.out != shim.out:
        problems.append("stdout differs:\n" + text_diff(oracle.out, shim.out, "tmpfs", "shim"))
    if oracle.err_prog != shim.err_prog:
        problems.append("stderr differs:\n" + text_diff(oracle.err_prog, shim.err_prog,
                                                        "tmpfs", "shim"))
    assert not problems, f"{what}: shim differs from the tmpfs oracle\n" + "\n".join(problems)


class Scratch:
    """Per-test scratch: work dir with the prefix, a scratch shm dir, and the two runners."""

    def __init__(self, tmp_path):
        self.root = tmp_path
        self.scripts = tmp_path / "scripts"
        self.scripts.mkdir()
        self.work = tmp_path / "w"
        self.prefix = self.work / "ckpt"
        self.out = self.work / "out"
        self.sibling = self.work / "ckpt2"
        self.shm = Path("/dev/shm") / f"tct-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.shm.mkdir(mode=0o700)
        os.chmod(self.shm, 0o1777)
        self.shm_outside = Path("/dev/shm") / (self.shm.name + "-out")
        self.namespace = "default"
        self.reset_work()

    # --- layout -----------------------------------------------------------------------------
    @property
    def P(self):
        return str(self.prefix)

    @property
    def tier(self):
        """<shm>/tierckpt-<uid>/<namespace>"""
        return self.shm / f"tierckpt-{UID}" / self.namespace

    def tier_path(self, vpath=None):
        """Tier path of a virtual path (default: of the prefix itself)."""
        v = str(vpath or self.prefix)
        return self.tier / "fs" / v.lstrip("/")

    def reset_work(self):
        """Fresh work dir: empty prefix, empty `out`, empty sibling `ckpt2`."""
        if self.work.exists():
            shutil.rmtree(self.work)
        for d in (self.prefix, self.out, self.sibling):
            d.mkdir(parents=True)
        self.prefix_mode = os.stat(self.prefix).st_mode & 0o7777
        shutil.rmtree(self.shm_outside, ignore_errors=True)
        self.shm_outside.mkdir()

    def shm_out(self):
        """A dir outside the prefix on /dev/shm, the tier's own file system (reset per run)."""
        return self.shm_outside

    def reset_tier(self):
        for e in self.shm.iterdir():
            if e.is_dir() and not e.is_symlink():
                shutil.rmtree(e)
            else:
                e.unlink()

    def cleanup(self):
        shutil.rmtree(self.shm, ignore_errors=True)
        shutil.rmtree(self.shm_outside, ignore_errors=True)

    # --- programs -----------------------------------------------------------------------------
    def script(self, name, body, prelude=True):
        """Write a Python script (with tctlib's prelude) outside the prefix; returns its path."""
        path = self.scripts / name
        path.write_text((tctlib.PRELUDE if prelude else "") + body)
        return str(path)

    def py(self, name, body):
        """Command line running a prelude'd Python script with the prefix as argv[1]."""
        return [PY, self.script(name, body), self.P]

    def shell(self, body):
        """Command line running a /bin/sh script with $P, $W, $OUT, $P2 set."""
        path = self.scripts / f"sh-{uuid.uuid4().hex[:6]}.sh"
        path.write_text(f'P="{self.P}"; W="{self.work}"; OUT="{self.out}"; '
                        f'P2="{self.sibling}"; PY={PY}\n' + body)
        return ["/bin/sh", str(path)]

    # --- environments -------------------------------------------------------------------------
    def shim_env(self, **extra):
        env = base_env()
        env.update(TIERCKPT_PREFIX=self.P, TIERCKPT_SHM_DIR=str(self.shm))
        if self.namespace != "default":
            env["TIERCKPT_NAMESPACE"] = self.namespace
        env.update({k: str(v) for k, v in extra.items()})
        return env

    # --- runners ------------------------------------------------------------------------------
    def run_shim(self, cmd, env=None, cwd=None, timeout=RUN_TIMEOUT_S, stdin=None):
        """cmd under `tierckpt run --` with this scratch's settings."""
        if SELFCHECK:
            return self.run_oracle(cmd, env=env, cwd=cwd, timeout=timeout, stdin=stdin)
        e = self.shim_env()
        e.update(env or {})
        return run([TIERCKPT, "run", "--", *cmd], e, cwd=cwd or self.root, timeout=timeout,
                   stdin=stdin, label="shim")

    def run_oracle(self, cmd, env=None, cwd=None, timeout=RUN_TIMEOUT_S, stdin=None, dump=None):
        """cmd in a private mount namespace with a real tmpfs mounted at the prefix; with dump=
        a file, the prefix tree is dumped there before the namespace goes away."""
        e = base_env()
        e.update(env or {})
        e.update(TCT_ORACLE_P=self.P, TCT_PY=PY, TCT_DUMP_PY=str(PROGS / "dump_tree.py"),
                 TCT_DUMP=str(dump or ""))
        return run(["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", ORACLE_SH,
                    "sh", *cmd], e, cwd=cwd or self.root, timeout=timeout, stdin=stdin,
                   label="oracle")

    def run_plain(self, cmd, env=None, cwd=None, timeout=RUN_TIMEOUT_S):
        """cmd without shim and without mount: the reference for paths outside the prefix."""
        e = base_env()
        e.update(env or {})
        return run(cmd, e, cwd=cwd or self.root, timeout=timeout, label="plain")

    # --- checks -------------------------------------------------------------------------------
    def dump_tier(self):
        """The tier's mirror of the prefix in dump_tree's format ("" when it does not exist)."""
        t = self.tier_path()
        if not t.exists():
            return ""
        return tctlib.dump_tree(str(t), unmap_root=str(self.tier / "fs"))

    def assert_real_prefix_empty(self, what="shim run"):
        assert self.prefix.is_dir() and not self.prefix.is_symlink(), \
            f"{what}: the real prefix dir {self.P} is gone or replaced"
        left = sorted(os.listdir(self.P))
        assert left == [], f"{what}: the shim wrote at the real prefix path {self.P}: {left}"
        st = os.stat(self.P)
        assert st.st_mode & 0o7777 == self.prefix_mode, \
            f"{what}: the real prefix dir's mode changed to {oct(st.st_mode & 0o7777)}"

    def assert_tier_holds_only_the_prefix(self, what="shim run"):
        """Below <tier>/fs there is the chain of dirs down to the prefix's mirror and nothing else:
        a write that left the mirror (through `..` or a symlink resolved from a tier path) would
        land beside it."""
        fs, mirror = self.tier / "fs", self.tier_path()
        if not fs.exists():
            return
        chain = [mirror] + list(mirror.parents)
        chain = chain[:chain.index(fs) + 1]
        stray = []
        for d in chain[1:]:
            for e in os.listdir(d):
                if d / e not in chain:
                    stray.append(str(d / e))
        assert not stray, f"{what}: the tier holds files outside the prefix's mirror: {stray}"

    def compare(self, cmd, env=None, cwd=None, timeout=RUN_TIMEOUT_S, stdin=None, check_tree=True,
                expect_rc=0):
        """Run cmd under the oracle, then (from the same fresh state) under the shim; assert equal
        results, equal prefix trees (tmpfs vs tier), an untouched real prefix.  The oracle must
        exit with expect_rc (else the test program itself is wrong).  Returns (oracle, shim)."""
        dump = self.root / "oracle-tree.txt"
        self.reset_work()
        oracle = self.run_oracle(cmd, env=env, cwd=cwd, timeout=timeout, stdin=stdin, dump=dump)
        assert oracle.rc not in (98, 99), f"oracle harness failed: {oracle!r}"
        assert expect_rc is None or oracle.rc == expect_rc, \
            f"the test program failed on the tmpfs oracle itself: {oracle!r}"
        oracle_tree = dump.read_text()
        if os.environ.get("TCT_SHOW"):
            print(f"\n{oracle!r}\n--- tree ---\n{oracle_tree}")
        self.reset_work()
        self.reset_tier()
        shim = self.run_shim(cmd, env=env, cwd=cwd, timeout=timeout, stdin=stdin)
        assert_same(oracle, shim)
        if SELFCHECK:
            return oracle, shim
        self.assert_real_prefix_empty()
        self.assert_tier_holds_only_the_prefix()
        if check_tree:
            tier_tree = self.dump_tier()
            assert oracle_tree == tier_tree, (
                "the tier does not hold what the tmpfs held after the run:\n"
                + text_diff(oracle_tree, tier_tree, "tmpfs", "tier " + str(self.tier_path())))
        return oracle, shim


@pytest.fixture(scope="session")
def shim_built():
    """The build under test; a missing build fails every test that needs it (no silent skip)."""
    if SELFCHECK:
        return
    missing = [str(p) for p in (TIERCKPT, LIB) if not p.exists()]
    if missing:
        pytest.fail(f"not built: {missing} (run `make` in {REPO} or set TIERCKPT_BUILD)")


@pytest.fixture
def sc(tmp_path, shim_built):
    s = Scratch(tmp_path)
    yield s
    s.cleanup()


def preload_value():
    """LD_PRELOAD for tests that preload the library themselves (not through `tierckpt run`):
    under ASan (make test-asan) the sanitizer runtime must come first."""
    if os.environ.get("TIERCKPT_TEST_ASAN"):
        asan = subprocess.run(["gcc", "-print-file-name=libasan.so"], stdout=subprocess.PIPE,
                              text=True).stdout.strip()
        return f"{asan}:{LIB}"
    return str(LIB)
