"""A C++ program (std::ofstream/ifstream/fstream, std::filesystem) compiled with g++ in the test,
writing and reading files under the prefix.  Shim vs tmpfs oracle."""

import subprocess

import pytest

from conftest import PROGS


@pytest.fixture(scope="module")
def fstream_bin(tmp_path_factory):
    out = tmp_path_factory.mktemp("cxx") / "fstream"
    p = subprocess.run(["g++", "-std=c++17", "-O1", "-o", str(out), str(PROGS / "fstream.cpp")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert p.returncode == 0, "g++ failed:\n" + p.stdout.decode(errors="replace")
    return str(out)


def test_cxx_ofstream_ifstream_filesystem_in_prefix(sc, fstream_bin):
    sc.compare([fstream_bin, sc.P, str(sc.out)])
