"""Settings (DESIGN.md section 3): a bad value makes `tierckpt run` refuse with status 2 and one
line naming the variable (the program does not run); the preloaded shim alone prints one line and
passes everything through (writes land at the real prefix path).  Valid settings take effect:
namespace, INI file (environment wins), several prefixes."""

import os

import pytest

from conftest import PY, TIERCKPT, preload_value, run

BAD = [
    ("TIERCKPT_PREFIX", "relative/ckpt"),
    ("TIERCKPT_PREFIX", "/"),
    ("TIERCKPT_PREFIX", ""),
    ("TIERCKPT_PREFIX", "/tmp/a:rel"),
    ("TIERCKPT_NAMESPACE", "a/b"),
    ("TIERCKPT_NAMESPACE", ".."),
    ("TIERCKPT_NAMESPACE", ""),
    ("TIERCKPT_MEMORY_PERCENT", "15"),
    ("TIERCKPT_MEMORY_PERCENT", "101"),
    ("TIERCKPT_MEMORY_PERCENT", "abc"),
    ("TIERCKPT_S3_EVERY_N_STEPS", "abc"),
    ("TIERCKPT_KEEP_STEPS", "x1"),
    ("TIERCKPT_LOG_LEVEL", "loud"),
    ("TIERCKPT_COMMIT_MARKER", "a/b"),
    ("TIERCKPT_SHM_DIR", "relative/shm"),
]
BAD_IDS = [f"{k}={v or 'EMPTY'}".replace("/", "SLASH") for k, v in BAD]


def lines(s):
    return [l for l in s.splitlines() if l.strip()]


def marker_cmd(sc):
    """A program that proves it ran: writes <out>/ran and <prefix>/f."""
    return [PY, "-c", f"open({str(sc.out / 'ran')!r}, 'w').write('ran'); "
                      f"open({sc.P + '/f'!r}, 'w').write('data'); print('ran')"]


@pytest.mark.parametrize("var,value", BAD, ids=BAD_IDS)
def test_tierckpt_run_refuses_bad_setting_exit_2(sc, var, value):
    env = sc.shim_env(**{var: value})
    r = run([TIERCKPT, "run", "--", *marker_cmd(sc)], env, label="tierckpt run")
    assert r.rc == 2, f"{var}={value!r}: expected exit status 2, got {r!r}"
    assert not (sc.out / "ran").exists() and r.out == "", "the program ran despite the bad setting"
    err = lines(r.err)
    assert len(err) == 1, f"expected one line on stderr, got {err}"
    assert var in err[0], f"the line does not name {var}: {err[0]!r}"
    if value:
        assert value in err[0], f"the line does not show the value {value!r}: {err[0]!r}"


@pytest.mark.parametrize("var,value", BAD, ids=BAD_IDS)
def test_preloaded_shim_with_bad_setting_passes_through(sc, var, value):
    env = sc.shim_env(LD_PRELOAD=preload_value(), **{var: value})
    r = run(marker_cmd(sc), env, label="LD_PRELOAD")
    assert (r.rc, r.out) == (0, "ran\n"), f"the program did not run normally: {r!r}"
    assert (sc.prefix / "f").read_text() == "data", "pass-through: the write must land at the real path"
    files = [os.path.join(d, f) for d, _, fs in os.walk(sc.shm) for f in fs]
    assert files == [], f"pass-through, yet files appeared under the shm dir: {files}"
    err = lines(r.err)
    assert len(err) == 1, f"expected exactly one line on stderr, got {err}"
    assert var in err[0], f"the line does not name {var}: {err[0]!r}"


def _shm_is_file(sc):
    f = sc.root / "shm_file"
    f.write_text("")
    return {"TIERCKPT_SHM_DIR": str(f)}


def _tier_foreign_owned(sc):
    d = sc.shm / f"tierckpt-{os.getuid()}"
    d.mkdir(mode=0o700)
    os.chown(d, 4242, 4242)
    return {}


def _tier_open_to_others(sc):
    d = sc.shm / f"tierckpt-{os.getuid()}"
    d.mkdir()
    os.chmod(d, 0o777)
    return {}


def _tier_planted_symlink(sc):
    target = sc.root / "planted"
    target.mkdir()
    os.symlink(target, sc.shm / f"tierckpt-{os.getuid()}")
    return {}


def _prefix_contains_tier(sc):
    inner = sc.shm / "inner"
    inner.mkdir()
    return {"TIERCKPT_PREFIX": str(sc.shm), "TIERCKPT_SHM_DIR": str(inner)}


UNSAFE_SHM = {
    "shm_dir_is_a_file": _shm_is_file,
    "tier_dir_owned_by_another_user": _tier_foreign_owned,
    "tier_dir_open_to_group_and_other": _tier_open_to_others,
    "tier_dir_is_a_planted_symlink": _tier_planted_symlink,
    "prefix_contains_the_tier_dir": _prefix_contains_tier,
}


@pytest.mark.parametrize("case", sorted(UNSAFE_SHM))
def test_tierckpt_run_refuses_unsafe_tier_location(sc, case):
    extra = UNSAFE_SHM[case](sc)
    env = sc.shim_env(**extra)
    r = run([TIERCKPT, "run", "--", *marker_cmd(sc)], env, label="tierckpt run")
    assert r.rc == 2, f"{case}: expected exit status 2, got {r!r}"
    assert not (sc.out / "ran").exists(), "the program ran"
    err = lines(r.err)
    assert len(err) == 1 and "TIERCKPT_" in err[0], f"expected one line naming the variable: {err}"
    if case == "tier_dir_is_a_planted_symlink":
        assert os.listdir(sc.root / "planted") == [], "the shim wrote through a planted symlink"


@pytest.mark.parametrize("case", sorted(UNSAFE_SHM))
def test_preloaded_shim_with_unsafe_tier_location_passes_through(sc, case):
    extra = UNSAFE_SHM[case](sc)
    env = sc.shim_env(LD_PRELOAD=preload_value(), **extra)
    r = run(marker_cmd(sc), env, label="LD_PRELOAD")
    assert (r.rc, r.out) == (0, "ran\n"), f"the program did not run normally: {r!r}"
    assert (sc.prefix / "f").read_text() == "data", "pass-through: the write must land at the real path"
    assert len(lines(r.err)) == 1, f"expected one line on stderr: {r.err!r}"
    if case == "tier_dir_is_a_planted_symlink":
        assert os.listdir(sc.root / "planted") == [], "the shim wrote through a planted symlink"


def test_tierckpt_run_refuses_read_only_shm_dir(sc):
    """An unwritable shm dir (a read-only tmpfs mounted over the scratch shm, in a private mount
    namespace) is refused with exit status 2."""
    script = (f'mount -t tmpfs -o ro none "{sc.shm}" || exit 99; '
              f'exec "{TIERCKPT}" run -- "$@"')
    r = run(["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", script, "sh",
             *marker_cmd(sc)], sc.shim_env(), label="tierckpt run, read-only shm")
    assert r.rc == 2, f"expected exit status 2, got {r!r}"
    assert not (sc.out / "ran").exists(), "the program ran"
    assert len(lines(r.err)) == 1 and "TIERCKPT_SHM_DIR" in r.err, r.err


def test_tierckpt_run_passes_exit_status_and_args_through(sc):
    r = sc.run_shim(["/bin/sh", "-c", 'printf "%s|" "$@"; exit 42', "sh", "a b", "", "--", "-x"])
    assert (r.rc, r.out) == (42, "a b||--|-x|"), r
    r = run([TIERCKPT, "run", "/bin/sh", "-c", "exit 3"], sc.shim_env(), label="run without --")
    assert r.rc == 3, r
    r = run([TIERCKPT, "run", "--", "/nonexistent/program"], sc.shim_env(), label="missing program")
    assert r.rc in (126, 127) and lines(r.err), f"a missing program must fail visibly: {r!r}"


def test_tierckpt_help_for_newcomers(sc):
    for args in (["--help"], ["run", "--help"], ["ls", "--help"]):
        r = run([TIERCKPT, *args], sc.shim_env(), label=" ".join(args))
        text = r.out + r.err
        assert r.rc == 0 and "TIERCKPT_PREFIX" in text or "step" in text, (args, r)
    r = run([TIERCKPT, "no-such-command"], sc.shim_env(), label="bad command")
    assert r.rc != 0 and lines(r.err), r


def test_namespace_selects_tier_directory(sc):
    sc.namespace = "job.A-1_x"
    r = sc.run_shim(["/bin/sh", "-c", f"mkdir {sc.P}/d && echo ns > {sc.P}/d/f"])
    assert r.rc == 0, r
    assert (sc.shm / f"tierckpt-{os.getuid()}" / "job.A-1_x" / "fs" / sc.P.lstrip("/") / "d" / "f") \
        .read_text() == "ns\n"
    assert not (sc.shm / f"tierckpt-{os.getuid()}" / "default").exists()
    sc.assert_real_prefix_empty()
    # another namespace does not see it
    sc.namespace = "other"
    r = sc.run_shim(["ls", "-A", sc.P])
    assert (r.rc, r.out) == (0, ""), r


def test_ini_config_file_and_environment_precedence(sc):
    ini = sc.root / "tierckpt.ini"
    ini.write_text(f"[tierckpt]\nprefix = {sc.P}\nnamespace = fromini\nshm_dir = {sc.shm}\n")
    env = sc.shim_env(TIERCKPT_CONFIG=str(ini))
    for k in ("TIERCKPT_PREFIX", "TIERCKPT_SHM_DIR", "TIERCKPT_NAMESPACE"):
        env.pop(k, None)
    r = run([TIERCKPT, "run", "--", "/bin/sh", "-c", f"echo ini > {sc.P}/f"], env, label="ini")
    assert r.rc == 0, r
    tier_fs = sc.shm / f"tierckpt-{os.getuid()}"
    assert (tier_fs / "fromini" / "fs" / sc.P.lstrip("/") / "f").read_text() == "ini\n"
    env["TIERCKPT_NAMESPACE"] = "fromenv"
    r = run([TIERCKPT, "run", "--", "/bin/sh", "-c", f"echo env > {sc.P}/g"], env, label="env wins")
    assert r.rc == 0, r
    assert (tier_fs / "fromenv" / "fs" / sc.P.lstrip("/") / "g").read_text() == "env\n"
    assert not (tier_fs / "fromini" / "fs" / sc.P.lstrip("/") / "g").exists()
    sc.assert_real_prefix_empty()
    ini.write_text("[tierckpt]\nmemory_percent = 5\n")
    r = run([TIERCKPT, "run", "--", "true"], env, label="bad ini value")
    assert r.rc == 2 and len(lines(r.err)) == 1, r


def test_several_prefixes_colon_separated(sc):
    second = sc.work / "second"
    env = sc.shim_env(TIERCKPT_PREFIX=f"{sc.P}:{second}")
    sc.reset_work()
    second.mkdir()
    r = run([TIERCKPT, "run", "--", "/bin/sh", "-c",
             f"echo 1 > {sc.P}/one && echo 2 > {second}/two && mv {sc.P}/one {second}/x && "
             f"ls {sc.P} {second}"], env, label="two prefixes")
    assert r.rc == 0, r
    assert os.listdir(sc.P) == [] and os.listdir(second) == [], "writes reached the real paths"
    assert (sc.tier / "fs" / str(second).lstrip("/") / "two").read_text() == "2\n"
    assert (sc.tier / "fs" / str(second).lstrip("/") / "x").read_text() == "1\n"
    assert not (sc.tier_path() / "one").exists()


def test_rename_and_link_between_two_prefixes_is_exdev(sc):
    """Each prefix behaves as its own tmpfs mount, so rename/link between two of them fail with
    EXDEV as between two mounts."""
    second = sc.work / "second"
    env = sc.shim_env(TIERCKPT_PREFIX=f"{sc.P}:{second}")
    sc.reset_work()
    second.mkdir()
    r = run([TIERCKPT, "run", "--", PY, "-c", f"""
import errno, os
open({sc.P!r} + "/a", "w").write("a")
for name, fn in (("rename", os.rename), ("link", os.link)):
    try:
        fn({sc.P!r} + "/a", {str(second)!r} + "/b")
        print(name, "OK")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
"""], env, label="two prefixes")
    assert (r.rc, r.out) == (0, "rename EXDEV\nlink EXDEV\n"), r


@pytest.mark.parametrize("form", ["trailing_slash", "double_slash", "dot_component"])
def test_prefix_setting_is_normalised(sc, form):
    value = {"trailing_slash": sc.P + "/",
             "double_slash": str(sc.work) + "//" + sc.prefix.name,
             "dot_component": str(sc.work) + "/./" + sc.prefix.name}[form]
    sc.reset_work()
    r = run([TIERCKPT, "run", "--", "/bin/sh", "-c", f"echo n > {sc.P}/f && cat {value}/f"],
            sc.shim_env(TIERCKPT_PREFIX=value), label=f"prefix {value}")
    assert (r.rc, r.out) == (0, "n\n"), r
    sc.assert_real_prefix_empty()
    assert (sc.tier_path() / "f").read_text() == "n\n", \
        f"TIERCKPT_PREFIX={value!r}: the file is not at the normalised prefix's tier path"
