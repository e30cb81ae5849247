"""A C program calling glibc's path-taking and path-returning functions directly (realpath,
getcwd, get_current_dir_name, nftw, ftw, glob, scandir, mkstemp family, fopen/freopen, creat,
*at calls, statfs, xattrs ...), built plain and with _FORTIFY_SOURCE (the __*_chk/__open_2
entry points).  Shim vs tmpfs oracle."""

import subprocess

import pytest

from conftest import PROGS

BUILDS = {
    "plain_O0": ["-O0"],
    "fortify_O2": ["-O2", "-D_FORTIFY_SOURCE=2"],
}


@pytest.fixture(scope="module")
def libc_bins(tmp_path_factory):
    d = tmp_path_factory.mktemp("libc")
    out = {}
    for name, flags in BUILDS.items():
        exe = d / f"libc_paths_{name}"
        p = subprocess.run(["gcc", "-std=gnu11", "-Wall", *flags, "-o", str(exe),
                            str(PROGS / "libc_paths.c")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
        assert p.returncode == 0, "gcc failed:\n" + p.stdout.decode(errors="replace")
        out[name] = str(exe)
    return out


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_libc_path_functions_match_tmpfs(sc, libc_bins, build):
    sc.compare([libc_bins[build], sc.P])
