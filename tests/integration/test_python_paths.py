"""Path rules seen from a Python program: returned paths are virtual, `..` and the prefix boundary
behave as on a mount point, fd- and cwd-relative calls work.  Shim vs tmpfs oracle."""

import os


def test_realpath_abspath_resolve_show_virtual_paths(sc):
    sc.compare(sc.py("realpath.py", r'''
from pathlib import Path
os.makedirs(P + "/a/b"); put(P + "/a/b/f", "f")
os.symlink("a/b", P + "/lnk"); os.symlink(P + "/a/b/f", P + "/abs")
for p in ("/a/b/f", "/a/./b/../b/f", "/lnk/f", "/abs", "/a/b/missing", "", "/", "/a/.."):
    show("realpath " + repr(p), os.path.realpath(P + p))
show("resolve", str(Path(P + "/lnk/../b").resolve()))
show("abspath", os.path.abspath(P + "/a//b/./../b"))
show("normpath", os.path.normpath(P + "/a/../a/b"))
'''))


def test_getcwd_after_chdir_into_prefix_and_relative_ops(sc):
    sc.compare(sc.py("cwd.py", r'''
os.makedirs(P + "/sub/deep")
os.chdir(P + "/sub")
show("getcwd in sub", os.getcwd())
put("rel.txt", "relative")
os.mkdir("reldir"); os.rename("rel.txt", "reldir/moved.txt")
show("listdir .", sorted(os.listdir(".")), sorted(os.listdir("reldir")))
show("stat rel", os.stat("reldir/moved.txt").st_size, os.path.exists("../sub/reldir/moved.txt"))
show("abspath", os.path.abspath("reldir"))
show("realpath .", os.path.realpath("."))
os.chdir("deep")
show("getcwd deep", os.getcwd())
os.chdir("../..")
show("getcwd after ../..", os.getcwd())
show("listdir at root", sorted(os.listdir(".")))
os.chdir("..")
show("getcwd above prefix", os.getcwd(), os.getcwd() == W)
show("stat ckpt/sub rel", os.path.isdir("ckpt/sub/reldir"))
put("ckpt/from_parent.txt", "made relative to the prefix's parent")
show("listdir ckpt rel", sorted(os.listdir("ckpt")))
os.chdir("ckpt")
show("getcwd back in prefix", os.getcwd())
show("stat .. is real parent", os.stat("..").st_ino == os.stat(W).st_ino,
     sorted(os.listdir("..")))
fd = os.open(P + "/sub/deep", os.O_RDONLY | os.O_DIRECTORY)
os.fchdir(fd); os.close(fd)
show("getcwd after fchdir", os.getcwd())
put("via_fchdir", "x")
show("PWD-free relative listing", sorted(os.listdir(".")))
os.chdir(OUT)
show("getcwd outside", os.getcwd())
tree(P)
'''))


def test_proc_self_fd_and_cwd_links_show_virtual_path(sc):
    sc.compare(sc.py("procfd.py", r'''
os.mkdir(P + "/d"); put(P + "/d/f", "x")
fd = os.open(P + "/d/f", os.O_RDONLY)
show("fd of file", os.readlink(f"/proc/self/fd/{fd}"))
dfd = os.open(P + "/d", os.O_RDONLY | os.O_DIRECTORY)
show("fd of dir", os.readlink(f"/proc/self/fd/{dfd}"))
fd2 = os.dup(fd)
show("dup'ed fd", os.readlink(f"/proc/self/fd/{fd2}"))
with open(P + "/d/g", "w") as f:
    show("python file object fd", os.readlink(f"/proc/self/fd/{f.fileno()}"))
os.unlink(P + "/d/f")
show("deleted file", os.readlink(f"/proc/self/fd/{fd}"))
for x in (fd, fd2, dfd):
    os.close(x)
'''))


def test_proc_self_cwd_shows_virtual_path(sc):
    sc.compare(sc.py("proccwd.py", r'''
os.mkdir(P + "/d")
os.chdir(P + "/d")
show("/proc/self/cwd", os.readlink("/proc/self/cwd"))
show("realpath /proc/self/cwd", os.path.realpath("/proc/self/cwd"))
'''))


def test_dotdot_leaves_prefix_and_sibling_is_not_redirected(sc):
    sc.compare(sc.py("dotdot.py", r'''
os.makedirs(P + "/a/b")
val("stat P/.. is parent", lambda: os.stat(P + "/..").st_ino == os.stat(W).st_ino)
val("listdir P/..", lambda: sorted(os.listdir(P + "/..")))
val("listdir P/a/../..", lambda: sorted(os.listdir(P + "/a/../..")))
val("listdir P/a/b/../../..", lambda: sorted(os.listdir(P + "/a/b/../../..")))
val("realpath P/..", lambda: rel(os.path.realpath(P + "/..")))
attempt("write P/a/../../out/escaped", put, P + "/a/../../out/escaped", "written through ..")
val("escaped is outside", lambda: sorted(os.listdir(OUT)))
attempt("write P/a/b/../../../ckpt2/sib", put, P + "/a/b/../../../ckpt2/sib", "sibling through ..")
attempt("write P2/direct", put, P2 + "/direct", "sibling direct")
val("sibling", lambda: sorted(os.listdir(P2)))
attempt("write P/../ckpt/back_in", put, P + "/../ckpt/back_in", "back in through ..")
attempt("write far up and back", put, P + "/a/b/../../../../" + os.path.basename(W) + "/ckpt/a/deep_back", "x")
val("prefix", lambda: sorted(os.listdir(P)))
val("prefix/a", lambda: sorted(os.listdir(P + "/a")))
attempt("mkdir P/../out/newdir", os.mkdir, P + "/../out/newdir")
val("mkdir through ..", os.path.isdir, OUT + "/newdir")
val("P2 prefix text", lambda: (os.path.isdir(P + "2"), os.path.isdir(P + "2/"), os.path.exists(P + "2/sib")))
val("stat P2 on parent fs", lambda: os.stat(P2).st_dev == os.stat(W).st_dev)
tree(P)
tree(P2)
tree(OUT)
'''))
    # On the real file system after the shim run: the sibling and `out` got the files (they are
    # outside the prefix), the tier did not.
    assert sorted(os.listdir(sc.sibling)) == ["direct", "sib"]
    assert sorted(os.listdir(sc.out)) == ["escaped", "newdir"]
    assert not (sc.tier / "fs" / str(sc.sibling).lstrip("/")).exists(), \
        "a path of the sibling ckpt2 (same text start as the prefix) was redirected into the tier"


def test_prefix_root_is_a_mount_point_rmdir_rename_ebusy(sc):
    sc.compare(sc.py("root_ops.py", r'''
import shutil
put(P + "/f", "f"); os.mkdir(P + "/d")
attempt("rmdir prefix", os.rmdir, P)
attempt("rmdir prefix/", os.rmdir, P + "/")
attempt("rename prefix away", os.rename, P, OUT + "/moved")
attempt("rename prefix to sibling name", os.rename, P, W + "/renamed")
attempt("rename dir onto prefix", os.rename, OUT, P)
attempt("rename inner dir onto prefix", os.rename, P + "/d", P)
attempt("unlink prefix", os.unlink, P)
attempt("mkdir prefix", os.mkdir, P)
attempt("symlink at prefix", os.symlink, "x", P)
attempt("rmdir P/d/..", os.rmdir, P + "/d/..")
show("prefix", sorted(os.listdir(P)))
try:
    shutil.rmtree(P)
    show("rmtree prefix", "OK")
except OSError as e:
    show("rmtree prefix", ename(e))
show("prefix after rmtree", os.path.isdir(P), sorted(os.listdir(P)))
'''))


def test_prefix_root_stat_like_fresh_tmpfs_mount(sc):
    sc.compare(sc.py("root_stat.py", r'''
st = os.stat(P)
show("empty root", kind(st.st_mode), oct(st.st_mode & 0o7777), st.st_size, st.st_nlink, st.st_uid)
os.mkdir(P + "/d"); put(P + "/f", "x")
st = os.stat(P)
show("root with 2 entries", oct(st.st_mode & 0o7777), st.st_size, st.st_nlink)
show("root != parent dev", os.stat(P).st_dev != os.stat(W).st_dev)
os.chmod(P, 0o750)
show("chmod root", oct(os.stat(P).st_mode & 0o7777))
'''))


def test_fd_relative_calls_dir_fd_inside_and_above_prefix(sc):
    sc.compare(sc.py("dirfd.py", r'''
os.mkdir(P + "/d")
dfd = os.open(P + "/d", os.O_RDONLY | os.O_DIRECTORY)
fd = os.open("x", os.O_CREAT | os.O_WRONLY, 0o640, dir_fd=dfd); os.write(fd, b"xyz"); os.close(fd)
os.mkdir("sub", dir_fd=dfd)
os.rename("x", "sub/y", src_dir_fd=dfd, dst_dir_fd=dfd)
show("stat dir_fd", os.stat("sub/y", dir_fd=dfd).st_size)
os.symlink("sub/y", "ln", dir_fd=dfd)
show("readlink dir_fd", os.readlink("ln", dir_fd=dfd))
os.link("sub/y", "hard", src_dir_fd=dfd, dst_dir_fd=dfd)
os.chmod("hard", 0o600, dir_fd=dfd)
os.utime("hard", (10, 20), dir_fd=dfd)
show("after meta", oct(os.stat(P + "/d/sub/y").st_mode & 0o777), int(os.stat(P + "/d/sub/y").st_mtime))
show("access dir_fd", os.access("hard", os.R_OK, dir_fd=dfd))
os.unlink("ln", dir_fd=dfd)
attempt("unlink missing dir_fd", os.unlink, "nope", dir_fd=dfd)
attempt("rmdir non-empty dir_fd", os.rmdir, "sub", dir_fd=dfd)
# dir fd of the prefix root: ".." leaves the prefix
rfd = os.open(P, os.O_RDONLY | os.O_DIRECTORY)
show("root fd .. is parent", os.stat("..", dir_fd=rfd).st_ino == os.stat(W).st_ino)
fd = os.open("../out/via_root_fd", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=rfd); os.close(fd)
show("escape via root fd", sorted(os.listdir(OUT)))
show("listdir d/.. via root fd", sorted(os.listdir(os.open("d/..", os.O_RDONLY, dir_fd=rfd))))
attempt("rename root-fd file to outside", os.rename, "d/hard", "../out/h", src_dir_fd=rfd, dst_dir_fd=rfd)
# dir fd of the prefix's parent (outside): relative paths into the prefix are redirected
wfd = os.open(W, os.O_RDONLY | os.O_DIRECTORY)
fd = os.open("ckpt/d/from_parent_fd", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=wfd); os.close(fd)
os.mkdir("ckpt/made_from_parent", dir_fd=wfd)
show("parent fd sees prefix", sorted(os.listdir(P)), sorted(os.listdir(P + "/d")))
show("parent fd stat", os.stat("ckpt/d/sub/y", dir_fd=wfd).st_size)
attempt("parent fd rename into prefix", os.rename, "out/via_root_fd", "ckpt/x", src_dir_fd=wfd, dst_dir_fd=wfd)
attempt("parent fd rename inside prefix", os.rename, "ckpt/d/from_parent_fd", "ckpt/renamed", src_dir_fd=wfd, dst_dir_fd=wfd)
attempt("parent fd rmdir prefix", os.rmdir, "ckpt", dir_fd=wfd)
os.close(dfd); os.close(rfd); os.close(wfd)
tree(P)
'''))


def test_glob_and_fnmatch_results_show_virtual_paths(sc):
    sc.compare(sc.py("globbing.py", r'''
import glob
os.makedirs(P + "/step_1/sub"); os.makedirs(P + "/step_2")
for f in ("step_1/a.distcp", "step_1/sub/b.distcp", "step_2/c.distcp", "step_2/.metadata"):
    put(P + "/" + f, f)
show("glob *", sorted(glob.glob(P + "/*")))
show("glob **", sorted(glob.glob(P + "/**", recursive=True)))
show("glob hidden", sorted(glob.glob(P + "/step_2/.*")))
show("glob rel", sorted(glob.glob("step_*/*.distcp", root_dir=P)))
os.chdir(P)
show("glob from cwd", sorted(glob.glob("*/*")))
show("glob ../ckpt", sorted(glob.glob("../ckpt/step_?")))
'''))


def test_relative_paths_from_a_directory_above_the_prefix(sc):
    """A cwd above the prefix (a container's "/", a job's work dir): relative paths into the
    prefix, to the prefix's parent dirs (then used as dir_fd), and elsewhere, as on a tmpfs."""
    sc.compare(sc.py("cwd_above.py", r'''
os.chdir(W)
name = os.path.basename(P)
os.makedirs(name + "/d/e")
put(name + "/d/f", "via relative")
show("listdir rel", sorted(os.listdir(name + "/d")))
show("read rel", get(name + "/d/f"))
show("stat ./rel", os.stat("./" + name + "/d/f").st_size)
show("walk", [(rel(os.path.join(W, r)), sorted(ds), sorted(fs)) for r, ds, fs in os.walk(name)])
fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
show("dir_fd of the parent", sorted(os.listdir(os.open(name + "/d", os.O_RDONLY, dir_fd=fd))))
os.close(fd)
put("out/plain", "elsewhere")
show("elsewhere", get("out/plain"))
show("sibling not redirected", os.path.exists(name + "2"))
os.chdir(os.path.dirname(W))
show("two levels up", get(os.path.basename(W) + "/" + name + "/d/f"))
tree(P)
'''))
