"""The S3 client layer (tiering/s3_client.c) end to end, through its test CLI `tierckpt-s3`,
against the local S3 server (tools/s3rver.sh), with Debian's /usr/bin/aws as the independent
client that checks what landed.

What it shows: a small PUT and a 40 MiB multipart upload land byte-identical; ranged GET; a
listing of more than 1000 keys paginates; wrong secret, missing bucket and an unreachable
endpoint fail with one clear line (no secret in it) in bounded time; credentials come from a
shared credentials file with AWS_PROFILE; and through a fault-injecting proxy (503 SlowDown,
connections dropped, a stall, a body damaged on the way, a 200 Complete carrying an <Error>) the
upload still lands byte-identical, while a non-retryable <Error> in a 200 Complete is a failure.

DESIGN: one server per module (fixture `s3`), started on port 0 with a scratch data dir and
bucket; each test uses its own key prefix.  The proxy and the file helpers live in s3lib.py
(shared with test_durable.py).  Every run of the CLI gets a clean environment built
from scratch (no AWS_* of the caller leaks in).  The proxy is a ThreadingHTTPServer on
127.0.0.1 that replays a scripted list of faults, then forwards requests verbatim (Host header
included, so the server's signature check still passes).  The whole module skips when node is
missing; a missing CLI build fails (not skips) its tests.
"""

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from s3lib import FaultProxy, free_port, sha256, start_s3rver, stop_s3rver, write_random

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BUILD = Path(os.environ.get("TIERCKPT_BUILD") or (REPO / "build"))
TOOL = BUILD / "tierckpt-s3"
AWS = "/usr/bin/aws"
BUCKET = "tct-bucket"
MiB = 1 << 20

pytestmark = pytest.mark.skipif(shutil.which("node") is None,
                                reason="node is missing: the local S3 server cannot run")


class S3:
    """A running local S3 server and the environment that reaches it."""

    def __init__(self, proc, port, workdir):
        self.proc, self.port, self.workdir = proc, port, workdir
        self.endpoint = f"http://127.0.0.1:{port}"

    def env(self, **over):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "LANG": "C",
               "HOME": str(self.workdir / "home"),
               "AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "S3RVER",
               "AWS_SECRET_ACCESS_KEY": "S3RVER", "AWS_REGION": "us-east-1",
               # retry quickly in tests; the policy itself is what is tested
               "TIERCKPT_S3_RETRY_BASE_MS": "20"}
        if os.environ.get("TIERCKPT_TEST_ASAN"):
            env["ASAN_OPTIONS"] = "detect_leaks=1"
        for k, v in over.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def tool(self, *args, env=None, timeout=120):
        if not TOOL.exists():
            pytest.fail(f"not built: {TOOL} (build it or set TIERCKPT_BUILD)")
        return subprocess.run([str(TOOL), *map(str, args)], env=env or self.env(),
                              capture_output=True, text=True, timeout=timeout)

    def aws(self, *args, timeout=120, check=True):
        r = subprocess.run([AWS, "--endpoint-url", self.endpoint, *map(str, args)],
                           env=self.env(AWS_DEFAULT_REGION="us-east-1"), capture_output=True,
                           text=True, timeout=timeout)
        assert r.returncode == 0 or not check, f"aws {args} failed: {r.stderr}"
        return r

    def fetch(self, key, dest):
        """Download with the independent client."""
        self.aws("s3", "cp", "--quiet", f"s3://{BUCKET}/{key}", dest)
        return dest


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    work = tmp_path_factory.mktemp("s3client")
    (work / "home").mkdir()
    try:
        proc, port = start_s3rver(work / "data", [BUCKET])
    except RuntimeError as e:
        pytest.fail(str(e))
    yield S3(proc, port, work)
    stop_s3rver(proc)


def one_line(stderr):
    lines = [l for l in stderr.splitlines() if l.strip() and "AddressSanitizer" not in l]
    assert len(lines) == 1, f"expected one error line, got: {stderr!r}"
    assert lines[0].startswith("tierckpt-s3: ")
    return lines[0]


# --- transfers -------------------------------------------------------------------------------------

def test_small_put_lands_identical(s3, tmp_path):
    src = write_random(tmp_path / "small", 123457, 1)
    r = s3.tool("put", src, f"s3://{BUCKET}/small/obj")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == hashlib.md5(src.read_bytes()).hexdigest()
    assert sha256(s3.fetch("small/obj", tmp_path / "back")) == sha256(src)


def test_empty_file_put(s3, tmp_path):
    src = tmp_path / "empty"
    src.write_bytes(b"")
    r = s3.tool("put", src, f"s3://{BUCKET}/small/empty")
    assert r.returncode == 0, r.stderr
    assert (s3.fetch("small/empty", tmp_path / "back")).read_bytes() == b""


def test_multipart_40mib_lands_identical(s3, tmp_path):
    src = write_random(tmp_path / "big", 40 * MiB + 12345, 2)  # 9 parts, the last one short
    r = s3.tool("put-multipart", src, f"s3://{BUCKET}/mp/big", 5 * MiB)
    assert r.returncode == 0, r.stderr
    assert sha256(s3.fetch("mp/big", tmp_path / "back")) == sha256(src)
    # and our own GET reads it back (a multipart object: no whole-object MD5 check applies)
    r = s3.tool("get", f"s3://{BUCKET}/mp/big", tmp_path / "back2")
    assert r.returncode == 0, r.stderr
    assert sha256(tmp_path / "back2") == sha256(src)


def test_put_above_threshold_goes_multipart(s3, tmp_path):
    """`put` of a file over 8 MiB uses multipart on its own: the upload still lands whole."""
    src = write_random(tmp_path / "nine", 9 * MiB, 3)
    r = s3.tool("put", src, f"s3://{BUCKET}/mp/nine")
    assert r.returncode == 0, r.stderr
    assert sha256(s3.fetch("mp/nine", tmp_path / "back")) == sha256(src)


def test_get_whole_and_ranges(s3, tmp_path):
    src = write_random(tmp_path / "r", 1000003, 4)
    s3.aws("s3", "cp", "--quiet", src, f"s3://{BUCKET}/range/obj")  # put by the other client
    data = src.read_bytes()
    r = s3.tool("get", f"s3://{BUCKET}/range/obj", tmp_path / "whole")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "whole").read_bytes() == data
    for off, length in ((0, 1), (4096, 65536), (999000, 1003), (12345, 500000)):
        out = tmp_path / f"part{off}"
        r = s3.tool("get", f"s3://{BUCKET}/range/obj", out, off, length)
        assert r.returncode == 0, r.stderr
        assert out.read_bytes() == data[off:off + length], (off, length)


def test_head_and_rm(s3, tmp_path):
    src = write_random(tmp_path / "h", 4321, 5)
    assert s3.tool("put", src, f"s3://{BUCKET}/rm/obj").returncode == 0
    r = s3.tool("head", f"s3://{BUCKET}/rm/obj")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["4321", hashlib.md5(src.read_bytes()).hexdigest()]
    assert s3.tool("rm", f"s3://{BUCKET}/rm/obj").returncode == 0
    ls = s3.aws("s3", "ls", f"s3://{BUCKET}/rm/", timeout=60, check=False)  # 1: no match
    assert "obj" not in ls.stdout
    r = s3.tool("get", f"s3://{BUCKET}/rm/obj", tmp_path / "gone")
    assert r.returncode == 1
    assert "NoSuchKey" in one_line(r.stderr)


def test_list_paginates_over_1000_keys(s3, tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    names = [f"o{i:04d}" for i in range(1100)]
    for n in names:
        (d / n).write_text(n)
    s3.aws("s3", "cp", "--recursive", "--quiet", d, f"s3://{BUCKET}/many/", timeout=120)
    want = sorted(f"many/{n}" for n in names)
    for extra in ([], ["--max-keys", "300"]):
        r = s3.tool("ls", f"s3://{BUCKET}/many/", *extra)
        assert r.returncode == 0, r.stderr
        rows = [l.split("\t") for l in r.stdout.splitlines()]
        assert [k for _, _, k in rows] == want, extra  # every key once, in order
        assert all(int(size) == 5 for size, _, _ in rows)
    # the delimiter groups: one common prefix
    r = s3.tool("ls", f"s3://{BUCKET}/", "--delimiter", "/")
    assert r.returncode == 0, r.stderr
    assert "PRE\tmany/" in r.stdout.splitlines()


# --- failures: one clear line, no secret, bounded time ---------------------------------------------

def test_wrong_secret_is_reported_without_the_secret(s3, tmp_path):
    secret = "Wr0ngSecretKeyValue1234567890abcdefXYZ"
    src = write_random(tmp_path / "s", 1000, 6)
    t0 = time.monotonic()
    r = s3.tool("put", src, f"s3://{BUCKET}/auth/obj", env=s3.env(AWS_SECRET_ACCESS_KEY=secret))
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert "SignatureDoesNotMatch" in line and "secret access key" in line
    assert secret not in r.stderr and secret not in r.stdout
    assert time.monotonic() - t0 < 5  # not retried


def test_wrong_session_token_never_printed(s3, tmp_path):
    token = "FwoGZXIvYXdzTokenSecretValue0123456789"
    r = s3.tool("ls", f"s3://{BUCKET}/", env=s3.env(AWS_SESSION_TOKEN=token,
                                                       AWS_SECRET_ACCESS_KEY="AlsoWrongSecret99"))
    assert r.returncode == 1
    assert token not in r.stderr and "AlsoWrongSecret99" not in r.stderr
    one_line(r.stderr)


def test_missing_bucket(s3, tmp_path):
    src = write_random(tmp_path / "s", 1000, 7)
    r = s3.tool("put", src, "s3://no-such-bucket-here/obj")
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert "NoSuchBucket" in line and "no-such-bucket-here" in line


def test_unreachable_endpoint_bounded(s3, tmp_path):
    src = write_random(tmp_path / "s", 1000, 8)
    env = s3.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
                 TIERCKPT_S3_RETRY_BASE_MS=None)  # the real default backoff
    t0 = time.monotonic()
    r = s3.tool("put", src, f"s3://{BUCKET}/x", env=env, timeout=30)
    took = time.monotonic() - t0
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert "cannot connect" in line and "attempts" in line
    assert took < 15, took


def test_bad_endpoint_setting(s3, tmp_path):
    r = s3.tool("ls", f"s3://{BUCKET}/", env=s3.env(AWS_ENDPOINT_URL="ftp://127.0.0.1:1"))
    assert r.returncode == 1
    assert "AWS_ENDPOINT_URL" in one_line(r.stderr)


def test_credentials_from_shared_file_with_profile(s3, tmp_path):
    creds = tmp_path / "credentials"
    creds.write_text("[default]\naws_access_key_id = NOTTHIS\naws_secret_access_key = NOTTHIS\n\n"
                     "# the profile the test selects\n[tct]\naws_access_key_id=S3RVER\n"
                     "aws_secret_access_key = S3RVER\n")
    conf = tmp_path / "config"
    conf.write_text("[profile tct]\nregion = us-east-1\ns3 =\n    max_concurrent_requests = 4\n")
    src = write_random(tmp_path / "s", 2048, 9)
    env = s3.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None, AWS_REGION=None,
                 AWS_SHARED_CREDENTIALS_FILE=str(creds), AWS_CONFIG_FILE=str(conf),
                 AWS_PROFILE="tct")
    r = s3.tool("put", src, f"s3://{BUCKET}/prof/obj", env=env)
    assert r.returncode == 0, r.stderr
    assert sha256(s3.fetch("prof/obj", tmp_path / "back")) == sha256(src)
    # the default profile's (wrong) keys are used without AWS_PROFILE, and named in the message
    r = s3.tool("put", src, f"s3://{BUCKET}/prof/obj2", env=dict(env, AWS_PROFILE="default"))
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert "InvalidAccessKeyId" in line and "profile 'default'" in line
    # a profile that exists nowhere
    r = s3.tool("put", src, f"s3://{BUCKET}/prof/obj3", env=dict(env, AWS_PROFILE="nope"))
    assert r.returncode == 1
    assert "AWS_PROFILE=nope" in one_line(r.stderr)


def test_credentials_from_home_config_file(s3, tmp_path):
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "config").write_text("[profile other]\nregion=us-east-1\n"
                                          "aws_access_key_id = S3RVER\n"
                                          "aws_secret_access_key = S3RVER\n")
    src = write_random(tmp_path / "s", 777, 10)
    env = s3.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None, HOME=str(home),
                 AWS_PROFILE="other")
    r = s3.tool("put", src, f"s3://{BUCKET}/prof/home", env=env)
    assert r.returncode == 0, r.stderr


# --- fault injection -------------------------------------------------------------------------------

@pytest.fixture
def proxy(s3):
    made = []

    def make(faults, tls=None):
        p = FaultProxy(s3.port, faults, tls)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


def test_faults_upload_still_lands_identical(s3, proxy, tmp_path):
    p = proxy([("any", "503"), ("any", "503"), ("any", "drop"),          # Create: 3 failures
               ("part", "503"), ("part", "corrupt"), ("part", "drop"),   # parts
               ("part", "stall"), ("part", "500"),
               ("complete", "complete-error:InternalError"),             # 200 + <Error>
               ("complete", "503")])
    src = write_random(tmp_path / "f", 17 * MiB + 3, 11)  # 4 parts of 5 MiB
    env = s3.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{p.port}", TIERCKPT_S3_STALL_MS="1000",
                 TIERCKPT_S3_MAX_ATTEMPTS="8")
    r = s3.tool("put-multipart", src, f"s3://{BUCKET}/fault/obj", 5 * MiB, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not p.faults, f"faults not consumed: {p.faults}"
    assert sha256(s3.fetch("fault/obj", tmp_path / "back")) == sha256(src)


def test_faults_single_put_retried(s3, proxy, tmp_path):
    p = proxy([("any", "503"), ("any", "corrupt"), ("any", "drop")])
    src = write_random(tmp_path / "f", 300000, 12)
    env = s3.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{p.port}")
    r = s3.tool("put", src, f"s3://{BUCKET}/fault/single", env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sha256(s3.fetch("fault/single", tmp_path / "back")) == sha256(src)


def test_complete_200_with_error_is_a_failure(s3, proxy, tmp_path):
    p = proxy([("complete", "complete-error:InvalidPart")])
    src = write_random(tmp_path / "f", 6 * MiB, 13)
    env = s3.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{p.port}")
    r = s3.tool("put-multipart", src, f"s3://{BUCKET}/fault/bad", 5 * MiB, env=env, timeout=60)
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert "InvalidPart" in line and "CompleteMultipartUpload" in line


def test_slowdown_forever_gives_up_bounded(s3, proxy, tmp_path):
    p = proxy([("any", "503")] * 100)
    src = write_random(tmp_path / "f", 1000, 14)
    env = s3.env(AWS_ENDPOINT_URL=f"http://127.0.0.1:{p.port}", TIERCKPT_S3_MAX_ATTEMPTS="4")
    t0 = time.monotonic()
    r = s3.tool("put", src, f"s3://{BUCKET}/fault/never", env=env, timeout=60)
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert "SlowDown" in line and "4 attempts" in line
    assert len(p.log) == 4
    assert time.monotonic() - t0 < 10


def test_https_with_ca_bundle(s3, proxy, tmp_path):
    """https endpoint: AWS_CA_BUNDLE names the CA that signed the server's certificate; without
    it the self-signed certificate is refused with a line that points at AWS_CA_BUNDLE."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", cert], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"openssl cannot make a test certificate: {r.stderr[-300:]}")
    p = proxy([], tls=(str(cert), str(key)))
    src = write_random(tmp_path / "f", 50000, 15)
    ep = f"https://127.0.0.1:{p.port}"
    r = s3.tool("put", src, f"s3://{BUCKET}/tls/obj",
                env=s3.env(AWS_ENDPOINT_URL=ep, AWS_CA_BUNDLE=str(cert)))
    assert r.returncode == 0, r.stderr
    assert sha256(s3.fetch("tls/obj", tmp_path / "back")) == sha256(src)
    r = s3.tool("put", src, f"s3://{BUCKET}/tls/obj2",
                env=s3.env(AWS_ENDPOINT_URL=ep, AWS_CA_BUNDLE=str(tmp_path / "missing.pem")))
    assert r.returncode == 1
    assert "AWS_CA_BUNDLE" in one_line(r.stderr)
    # AWS_CA_BUNDLE is ignored for http
    r = s3.tool("ls", f"s3://{BUCKET}/tls/", env=s3.env(AWS_CA_BUNDLE=str(tmp_path / "nope.pem")))
    assert r.returncode == 0, r.stderr
