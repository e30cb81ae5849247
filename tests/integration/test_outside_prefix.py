"""Paths outside the prefix behave exactly as without the shim: the same program, run plainly and
under the shim (prefix set), prints the same and leaves the same tree on disk; the tier gets
nothing."""

import os

from conftest import tctlib

OUTSIDE_PY = r'''
import shutil, tempfile, subprocess
D = OUT + "/work"
os.makedirs(D + "/a/b")
put(D + "/a/f", "outside file")
os.rename(D + "/a/f", D + "/a/g"); os.replace(D + "/a/g", D + "/a/b/h")
os.symlink("b/h", D + "/a/l"); os.link(D + "/a/b/h", D + "/a/hard")
show("readlink", os.readlink(D + "/a/l"), "realpath", rel(os.path.realpath(D + "/a/l")))
os.truncate(D + "/a/b/h", 4); os.chmod(D + "/a/b/h", 0o600); os.utime(D + "/a/b/h", (5, 6))
shutil.copytree(D + "/a", D + "/copy", symlinks=True); shutil.move(D + "/copy", D + "/moved")
fd, t = tempfile.mkstemp(dir=D); os.close(fd)
show("mkstemp outside", os.path.dirname(t) == D); os.unlink(t)
with tempfile.TemporaryDirectory(dir=D) as td:
    show("tempdir outside", td.startswith(D + "/"))
os.chdir(D + "/a"); show("cwd", rel(os.getcwd())); put("rel", "r"); os.chdir(W)
show("cwd W", os.getcwd() == W, sorted(os.listdir(".")))
fd = os.open(D + "/a/rel", os.O_RDONLY); show("proc fd", rel(os.readlink(f"/proc/self/fd/{fd}"))); os.close(fd)
attempt("rename missing", os.rename, D + "/nope", D + "/x")
attempt("rmdir non-empty", os.rmdir, D + "/a")
attempt("mkdir existing", os.mkdir, D + "/a")
attempt("open dir for write", open, D + "/a", "w")
put(P2 + "/sibling", "sibling of the prefix")
os.makedirs(W + "/ckpt_other/x"); put(W + "/ckpt_other/x/y", "y")
attempt("rename outside->sibling", os.rename, D + "/a/rel", P2 + "/rel")
show("dev same as parent", os.stat(D).st_dev == os.stat(W).st_dev, os.stat(P2).st_dev == os.stat(W).st_dev)
r = subprocess.run(["sh", "-c", f"cd {D} && ls -R . | sort | tr '\\n' ' ' && cp -r a c && rm -rf c"], capture_output=True)
show("child", r.returncode, r.stdout.decode())
tree(D)
tree(P2)
show("prefix itself", sorted(os.listdir(P)))
'''


def test_python_file_ops_outside_prefix_unchanged_by_shim(sc):
    cmd = sc.py("outside.py", OUTSIDE_PY)
    sc.reset_work()
    plain = sc.run_plain(cmd)
    assert plain.rc == 0, f"the program fails without the shim: {plain!r}"
    plain_tree = tctlib.dump_tree(str(sc.work))
    sc.reset_work()
    sc.reset_tier()
    shim = sc.run_shim(cmd)
    assert (shim.rc, shim.out, shim.err) == (plain.rc, plain.out, plain.err), \
        f"outside the prefix the shim changed the program's results:\nplain {plain!r}\nshim {shim!r}"
    assert tctlib.dump_tree(str(sc.work)) == plain_tree, "the tree on disk differs"
    # nothing of it went to the tier (the tier may exist, but holds no file)
    files = [os.path.join(d, f) for d, _, fs in os.walk(sc.tier / "fs") for f in fs]
    assert files == [], f"files outside the prefix were redirected into the tier: {files}"


def test_coreutils_outside_prefix_unchanged_by_shim(sc):
    cmd = sc.shell('''
D=$OUT/cu
mkdir -p $D/a/b && echo x > $D/a/f && cp -r $D/a $D/c && mv $D/c $D/d && ln -s a $D/l
dd if=/dev/zero of=$D/z bs=1k count=8 status=none
tar -C $D --sort=name --mtime=@0 -cf $D/t.tar a && mkdir $D/x && tar -C $D/x -xf $D/t.tar
find $D -printf '%P %y %s %m\\n' | sort
du -ab $D | sort -k2 | sed "s|$W||"
stat -c '%n %s %F %a' $D/z $D/a | sed "s|$W||"
cd $D/a && /bin/pwd | sed "s|$W||" && cd /
rm -rf $D/d; ls $D
rmdir $D/a 2>&1; mv $D/nope $D/x 2>&1; echo done
''')
    sc.reset_work()
    plain = sc.run_plain(cmd)
    assert plain.rc == 0, f"the script fails without the shim: {plain!r}"
    plain_tree = tctlib.dump_tree(str(sc.work))
    sc.reset_work()
    sc.reset_tier()
    shim = sc.run_shim(cmd)
    assert (shim.rc, shim.out, shim.err) == (plain.rc, plain.out, plain.err), \
        f"outside the prefix the shim changed the results:\nplain {plain!r}\nshim {shim!r}"
    assert tctlib.dump_tree(str(sc.work)) == plain_tree


def test_preloaded_shim_without_prefix_is_silent_pure_pass_through(sc):
    """LD_PRELOAD of the library with TIERCKPT_PREFIX unset (DESIGN.md section 3: shim inactive):
    writes at the would-be prefix land on the real path, nothing is created under the shm dir,
    nothing is printed, the exit status is the program's."""
    from conftest import preload_value, run
    env = sc.shim_env(LD_PRELOAD=preload_value())
    del env["TIERCKPT_PREFIX"]
    r = run(["/bin/sh", "-c", f"echo real > {sc.P}/f; cat {sc.P}/f; exit 7"], env,
            label="preload without prefix")
    assert (r.rc, r.out, r.err) == (7, "real\n", ""), r
    assert (sc.prefix / "f").read_text() == "real\n"
    assert list(sc.shm.iterdir()) == [], "an inactive shim created something in the shm dir"
