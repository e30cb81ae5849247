"""Helpers shared by the integration tests and the programs they run.

What it is for: one tree-dump format used both for the tmpfs (inside the oracle's mount namespace,
through progs/dump_tree.py) and for the tier directory (from the test process), and the prelude
prepended to every Python test program so that all of them print results the same way: errno
names, sizes, hashes, sorted listings -- never fd numbers, inode numbers or times that two runs
cannot share.
"""

import hashlib
import os
import stat


def _kind(mode):
    if stat.S_ISDIR(mode):
        return "d"
    if stat.S_ISREG(mode):
        return "f"
    if stat.S_ISLNK(mode):
        return "l"
    if stat.S_ISFIFO(mode):
        return "p"
    return "o"


def dump_tree(root, unmap_root=None):
    """One line per entry below root (root itself excluded), sorted by relative path:
    `rel kind mode size nlink extra` with the sha256 of a file's content as extra, a symlink's
    target (with a leading unmap_root removed, so a tier path reads as its virtual path) or
    nothing.  Returns "" when root does not exist."""
    lines = []
    if not os.path.isdir(root):
        return ""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            k = _kind(st.st_mode)
            extra = ""
            if k == "f":
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                extra = h.hexdigest()[:16]
            size = st.st_size
            if k == "l":
                # The tier may store a target rewritten to a tier path: compare the target the
                # program reads back (its length too); what lstat shows the program is checked by
                # the programs themselves.
                extra = os.readlink(p)
                if unmap_root and extra.startswith(unmap_root + "/"):
                    extra = extra[len(unmap_root):]
                size = len(os.fsencode(extra))
            rel = os.path.relpath(p, root)
            lines.append(f"{rel} {k} {st.st_mode & 0o7777:04o} {size} {st.st_nlink} {extra}"
                         .rstrip())
    lines.sort()
    return "".join(l + "\n" for l in lines)


# Prepended to every Python program of the tests.  P is the prefix (argv[1], or $TCT_P), W the
# work dir holding it, OUT a dir outside the prefix on the prefix's parent file system, P2 the
# sibling whose name starts with the prefix's text.
PRELUDE = r'''
import errno, hashlib, os, stat, sys
P = sys.argv[1] if len(sys.argv) > 1 else os.environ["TCT_P"]
W = os.path.dirname(P)
OUT = os.path.join(W, "out")
P2 = P + "2"

def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno))

def show(label, *vals):
    print(label + ":", *vals, flush=True)

def attempt(label, fn, *a, **kw):
    """Call fn; print `label: OK` or `label: <ERRNO>`; return fn's result (None on error)."""
    try:
        r = fn(*a, **kw)
    except OSError as e:
        show(label, ename(e))
        return None
    show(label, "OK")
    return r

def val(label, fn, *a, **kw):
    """Call fn; print `label: <result>` or `label: <ERRNO>`; return the result (None on error)."""
    try:
        r = fn(*a, **kw)
    except OSError as e:
        show(label, ename(e))
        return None
    show(label, r)
    return r

def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]

def put(path, data, mode="wb"):
    if isinstance(data, str):
        data = data.encode()
    with open(path, mode) as f:
        f.write(data)

def get(path):
    with open(path, "rb") as f:
        return f.read()

def kind(mode):
    return ("d" if stat.S_ISDIR(mode) else "f" if stat.S_ISREG(mode) else
            "l" if stat.S_ISLNK(mode) else "p" if stat.S_ISFIFO(mode) else "o")

def rel(path):
    """path relative to W (the work dir) when inside it, for shorter outputs."""
    return os.path.relpath(path, W) if path.startswith(W + "/") or path == W else path

def tree(root, label="tree"):
    """Sorted listing below root: rel kind mode size nlink (sha | link target)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            k = kind(st.st_mode)
            extra = sha(p) if k == "f" else os.readlink(p) if k == "l" else ""
            out.append(f"  {os.path.relpath(p, root)} {k} {st.st_mode & 0o7777:04o} "
                       f"{st.st_size} {st.st_nlink} {extra}".rstrip())
    print(f"{label} {rel(root)}:")
    for l in sorted(out):
        print(l)
    sys.stdout.flush()
'''
