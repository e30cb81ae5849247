"""Children of a program under the shim: shells, subprocess (vfork/fork+exec), posix_spawn, fork
without exec, exec replacing the process, threads.  Their file operations under the prefix are
redirected too.  Shim vs tmpfs oracle."""
import os

import pytest

PY = "/usr/bin/python3"


def test_shell_with_python_child_writes_in_prefix(sc):
    sc.compare(["/bin/sh", "-c", f'''
P={sc.P}
mkdir -p $P/sh && echo from-sh > $P/sh/a
{PY} -c "import os; open('$P/sh/b', 'w').write('from-py'); print(sorted(os.listdir('$P/sh')))"
(cd $P/sh && {PY} -c "import os; print(os.getcwd()); open('c', 'w').write('rel')")
sh -c "cat $P/sh/a $P/sh/b $P/sh/c; echo; ls $P/sh"
'''])


def test_subprocess_run_and_popen_children(sc):
    sc.compare(sc.py("subproc.py", r'''
import subprocess
os.mkdir(P + "/s")
r = subprocess.run(["sh", "-c", f"echo child > {P}/s/child; cat {P}/s/child"], capture_output=True)
show("run", r.returncode, r.stdout)
r = subprocess.run(f"ls {P}/s && mkdir {P}/s/shelldir", shell=True, capture_output=True)
show("shell=True", r.returncode, r.stdout)
r = subprocess.run(["cat", "child"], cwd=P + "/s", capture_output=True)
show("cwd= in prefix", r.returncode, r.stdout)
r = subprocess.run(["/usr/bin/python3", "-c", "import os; print(os.getcwd())"], cwd=P + "/s",
                   capture_output=True)
show("child getcwd", r.stdout.decode().strip())
with open(P + "/s/stdout.txt", "wb") as f:
    subprocess.run(["echo", "redirected"], stdout=f)
show("stdout to prefix file", get(P + "/s/stdout.txt"))
procs = [subprocess.Popen(["sh", "-c", f"echo {i} > {P}/s/p{i}"]) for i in range(4)]
show("popen", [p.wait() for p in procs], sorted(os.listdir(P + "/s")))
r = subprocess.run(["cat", P + "/s/nope"], capture_output=True)
show("child error", r.returncode, r.stderr.decode().replace(P, "P"))
tree(P)
'''))


@pytest.mark.skipif(bool(os.environ.get("TIERCKPT_TEST_ASAN")),
                    reason="under make test-asan the sanitizer runtime needs ASAN_OPTIONS, which "
                           "a cleared environment drops (the shim restores only its own settings)")
def test_subprocess_with_cleared_environment_still_redirected(sc):
    sc.compare(sc.py("subproc_env.py", r'''
import subprocess
os.mkdir(P + "/e")
r = subprocess.run(["/bin/sh", "-c", f"echo clean-env > {P}/e/f; ls {P}/e"], env={},
                   capture_output=True)
show("env={}", r.returncode, r.stdout)
r = subprocess.run(["/usr/bin/python3", "-c", f"open('{P}/e/g', 'w').write('x')"],
                   env={"PATH": "/usr/bin:/bin"}, capture_output=True)
show("env=PATH only", r.returncode, r.stderr)
os.execve("/bin/sh", ["sh", "-c", f"ls {P}/e; cat {P}/e/f"], {"PATH": "/usr/bin:/bin"})
'''))


def test_posix_spawn_fork_and_exec(sc):
    sc.compare(sc.py("spawn.py", r'''
import multiprocessing as mp

def work(i):
    put(f"{P}/sp/mp{i}", str(i) * i)
    return os.path.getsize(f"{P}/sp/mp{i}")

def main():
  os.environ["TCT_P"] = P   # the prelude of a spawn child reads it (its argv is not ours)
  os.mkdir(P + "/sp")
  pid = os.posix_spawn("/bin/sh", ["sh", "-c", f"echo spawned > {P}/sp/a"], os.environ)
  show("posix_spawn", os.waitpid(pid, 0)[1])
  pid = os.posix_spawnp("sh", ["sh", "-c", f"cp {P}/sp/a {P}/sp/b"], os.environ)
  show("posix_spawnp", os.waitpid(pid, 0)[1])
  pid = os.fork()
  if pid == 0:
      put(P + "/sp/forked", "from fork child")
      os.chdir(P + "/sp"); put("forked_rel", "rel")
      os._exit(0)
  show("fork", os.waitpid(pid, 0)[1], get(P + "/sp/forked"))
  pid = os.fork()
  if pid == 0:
      os.chdir(P + "/sp")
      os.execv("/bin/sh", ["sh", "-c", "pwd; /bin/pwd; cat forked; echo exec > execd"])
  show("fork+exec", os.waitpid(pid, 0)[1])
  ctx = mp.get_context("fork")
  with ctx.Pool(2) as pool:
      show("mp fork pool", pool.map(work, range(1, 5)))
  ctx = mp.get_context("spawn")
  with ctx.Pool(2) as pool:
      show("mp spawn pool", pool.map(os.path.getsize, [f"{P}/sp/mp{i}" for i in range(1, 5)]))
  tree(P)
if __name__ == "__main__":
    main()
'''))


def test_posix_spawn_file_actions_open_and_chdir_in_prefix(sc):
    sc.compare(sc.py("spawn_fa.py", r'''
os.mkdir(P + "/sp")
pid = os.posix_spawn("/bin/sh", ["sh", "-c", "echo to-stdout"], os.environ,
                     file_actions=[(os.POSIX_SPAWN_OPEN, 1, P + "/sp/spawn_out",
                                    os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)])
show("file_actions open", os.waitpid(pid, 0)[1], get(P + "/sp/spawn_out"))
r = os.posix_spawn("/bin/sh", ["sh", "-c", "tr a-z A-Z"], os.environ,
                   file_actions=[(os.POSIX_SPAWN_OPEN, 0, P + "/sp/spawn_out", os.O_RDONLY, 0)])
show("file_actions stdin from prefix", os.waitpid(r, 0)[1])
tree(P)
'''))


def test_threads_write_concurrently_in_prefix(sc):
    sc.compare(sc.py("threads.py", r'''
import threading
os.mkdir(P + "/t")
def worker(i):
    d = f"{P}/t/w{i}"
    os.mkdir(d)
    for j in range(50):
        put(f"{d}/f{j}.tmp", bytes([i]) * (j * 10))
        os.rename(f"{d}/f{j}.tmp", f"{d}/f{j}")
        os.stat(f"{d}/f{j}")
    os.chdir(P)  # process-wide cwd: every thread ends here
ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
show("dirs", sorted(os.listdir(P + "/t")))
show("files per dir", sorted({len(os.listdir(f"{P}/t/w{i}")) for i in range(8)}))
show("bytes", sum(os.path.getsize(f"{P}/t/w{i}/f{j}") for i in range(8) for j in range(50)))
show("cwd", os.getcwd())
'''))


def test_exec_programs_and_scripts_stored_in_prefix(sc):
    sc.compare(sc.shell(r'''
mkdir $P/bin
cp /bin/echo $P/bin/myecho
printf '#!/bin/sh\necho "script $*"; /bin/pwd\n' > $P/bin/s.sh
printf '#!/usr/bin/python3\nimport sys; print("py script", sys.argv[1:])\n' > $P/bin/p.py
chmod +x $P/bin/s.sh $P/bin/p.py
$P/bin/myecho absolute
$P/bin/s.sh absolute
$P/bin/p.py absolute
cd $P/bin && ./myecho relative && ./s.sh relative && cd /
PATH=$P/bin:$PATH; export PATH
myecho via-PATH; s.sh via-PATH; p.py via-PATH
env myecho via-env-execvp
$PY -c "import os, sys; os.execv(sys.argv[1], ['myecho', 'via-execv'])" $P/bin/myecho
$PY -c "import subprocess, sys; subprocess.run([sys.argv[1], 'via-subprocess'])" $P/bin/s.sh
$PY -c "import os, sys; os.waitpid(os.posix_spawn(sys.argv[1], ['e', 'via-posix_spawn'], os.environ), 0)" $P/bin/myecho
$PY -c "import os; os.waitpid(os.posix_spawnp('s.sh', ['s.sh', 'via-posix_spawnp'], os.environ), 0)"
chmod -x $P/bin/myecho; $P/bin/myecho not-executable 2>&1 | sed 's/^.*: //'
'''))


def test_python_imports_module_stored_in_prefix(sc):
    sc.compare(sc.py("imports.py", r'''
import importlib, sys
os.makedirs(P + "/pkg")
put(P + "/pkg/__init__.py", "VALUE = 'pkg init'\n")
put(P + "/pkg/mod.py", "def f():\n    return __file__\n")
put(P + "/top_mod.py", "import os\nHERE = os.path.dirname(os.path.abspath(__file__))\n")
sys.path.insert(0, P)
import pkg, pkg.mod, top_mod
show("pkg", pkg.VALUE, pkg.mod.f())
show("top_mod", top_mod.HERE)
os.chdir(P); sys.path.insert(0, "")
put("rel_mod.py", "X = 42\n")
importlib.invalidate_caches()
import rel_mod
show("rel_mod", rel_mod.X, rel_mod.__file__)
'''))
