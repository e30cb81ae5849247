/*
 * test_cfg.c - Criterion unit tests of config/: cfg_load's rules for every setting (valid and
 * invalid values, the exact error line, the INI file and its precedence), cfg_tier_prepare's
 * refusals (planted symlinks, foreign owners, group/other permissions, a missing, non-directory
 * or unwritable shm dir) and log.c's line format, level filter, truncation and errno handling.
 *
 * Criterion runs each test in its own process, so the environment and log.c's globals set by one
 * test never leak into another; each test still starts from a cleared environment (the suite's
 * init) and works in its own mkdtemp() scratch directory, removed by the suite's fini.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config/cfg.h"
#include "config/log.h"

static struct cfg C; /* big (~60 KiB): static rather than on each test's stack */
static char g_scratch[64];

static const char *const all_vars[] = {
	"TIERCKPT_PREFIX",	 "TIERCKPT_NAMESPACE",	   "TIERCKPT_SHM_DIR",
	"TIERCKPT_S3_BASE_PATH", "TIERCKPT_S3_EVERY_N_STEPS", "TIERCKPT_MEMORY_PERCENT",
	"TIERCKPT_KEEP_STEPS",	 "TIERCKPT_COMMIT_MARKER",    "TIERCKPT_COMMIT_IDLE_MS",
	"TIERCKPT_LOG_LEVEL",	 "TIERCKPT_LOG_FILE",	      "TIERCKPT_CONFIG",
	"WORLD_SIZE",		 "RANK",		      "LOCAL_RANK",
	"LOCAL_WORLD_SIZE",	 "TIERCKPT_NODES",	      "TIERCKPT_NODE_ID",
	"TIERCKPT_S3_CONCURRENCY", "TIERCKPT_S3_PART_MB",     "TIERCKPT_EXIT_WAIT_S",
	"TIERCKPT_S3_RETRY_S",
};

static void env_clear(void)
{
	for (size_t i = 0; i < sizeof(all_vars) / sizeof(all_vars[0]); i++)
		unsetenv(all_vars[i]);
	g_scratch[0] = '\0';
}

static int rm_chmod(const char *p, const struct stat *st, int type, struct FTW *f)
{
	(void)st, (void)f;
	if (type == FTW_D)
		chmod(p, 0700); /* so that a test's read-only dir can be emptied */
	return 0;
}

static int rm_one(const char *p, const struct stat *st, int type, struct FTW *f)
{
	(void)st, (void)f;
	if (type == FTW_DP)
		rmdir(p);
	else
		unlink(p);
	return 0;
}

static void scratch_remove(void)
{
	if (!g_scratch[0])
		return;
	chmod(g_scratch, 0700);
	nftw(g_scratch, rm_chmod, 16, FTW_PHYS);
	nftw(g_scratch, rm_one, 16, FTW_PHYS | FTW_DEPTH);
	g_scratch[0] = '\0';
}

TestSuite(cfg, .init = env_clear, .fini = scratch_remove);
TestSuite(log, .init = env_clear, .fini = scratch_remove);

/* The test's scratch directory (created on first use). */
static const char *scratch(void)
{
	if (!g_scratch[0]) {
		strcpy(g_scratch, "/tmp/tierckpt-test-XXXXXX");
		cr_assert_not_null(mkdtemp(g_scratch), "mkdtemp: %s", strerror(errno));
	}
	return g_scratch;
}

/* scratch()/name, in a static rotating buffer. */
static const char *sp(const char *name)
{
	static char bufs[4][512];
	static int i;
	char *b = bufs[i++ % 4];

	snprintf(b, sizeof(bufs[0]), "%.100s/%.300s", scratch(), name);
	return b;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
}

/* Reads a whole (small) file into a static buffer. */
static const char *read_file(const char *path)
{
	static char buf[1 << 16];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	n = read(fd, buf, sizeof(buf) - 1);
	cr_assert_geq(n, 0);
	buf[n] = '\0';
	close(fd);
	return buf;
}

static char *repeat(char ch, size_t n)
{
	char *s = malloc(n + 1);

	cr_assert_not_null(s);
	memset(s, ch, n);
	s[n] = '\0';
	return s;
}

static unsigned uid(void)
{
	return (unsigned)getuid();
}

/* Loads with TIERCKPT_PREFIX=/ckpt (unless already set) and expects success. */
static void load_ok(void)
{
	setenv("TIERCKPT_PREFIX", "/ckpt", 0);
	int rc = cfg_load(&C);
	cr_assert_eq(rc, CFG_OK, "rc=%d err=%s", rc, C.err);
	cr_assert_eq(C.active, 1);
}

/* Sets var=val (with a valid prefix) and expects CFG_EINVAL naming var with the value. */
static void expect_bad(const char *var, const char *val)
{
	char head[256];

	setenv("TIERCKPT_PREFIX", "/ckpt", 0);
	setenv(var, val, 1);
	int rc = cfg_load(&C);
	cr_assert_eq(rc, CFG_EINVAL, "%s=\"%s\" was accepted (rc=%d)", var, val, rc);
	cr_assert_eq(C.active, 0, "a failed load must be inactive");
	snprintf(head, sizeof(head), "%s=\"", var);
	cr_assert_eq(strncmp(C.err, head, strlen(head)), 0, "err=%s", C.err);
	cr_assert_null(strchr(C.err, '\n'), "err has a newline: %s", C.err);
	cr_assert_lt(strlen(C.err), sizeof(C.err));
}

static void expect_err(const char *want)
{
	cr_assert_str_eq(C.err, want);
}

/* =============================================================================================
 * cfg_load: activation and defaults
 */

Test(cfg, inactive_when_prefix_unset)
{
	setenv("TIERCKPT_MEMORY_PERCENT", "5", 1); /* not validated when inactive */
	setenv("TIERCKPT_NAMESPACE", "../../etc", 1);
	cr_assert_eq(cfg_load(&C), CFG_OK);
	cr_assert_eq(C.active, 0);
	cr_assert_eq(C.n_prefixes, 0);
	cr_assert_str_eq(C.err, "");
}

Test(cfg, empty_prefix_is_refused)
{
	setenv("TIERCKPT_PREFIX", "", 1);
	cr_assert_eq(cfg_load(&C), CFG_EINVAL);
	cr_assert_eq(C.active, 0);
	expect_err("TIERCKPT_PREFIX=\"\": is empty; must be an absolute path (or ':'-separated "
		   "list), or unset to turn tierckpt off");
}

Test(cfg, defaults)
{
	char want[PATH_MAX];

	load_ok();
	cr_assert_eq(C.n_prefixes, 1);
	cr_assert_str_eq(C.prefixes[0], "/ckpt");
	cr_assert_eq(C.prefix_len[0], 5);
	cr_assert_str_eq(C.namespace_, "default");
	cr_assert_str_eq(C.shm_dir, "/dev/shm");
	snprintf(want, sizeof(want), "/dev/shm/tierckpt-%u/default", uid());
	cr_assert_str_eq(C.tier_dir, want);
	cr_assert_str_eq(C.s3_base_path, "");
	cr_assert_eq(C.s3_every_n_steps, 1);
	cr_assert_eq(C.memory_percent, 20);
	cr_assert_eq(C.keep_steps, 3);
	cr_assert_str_eq(C.commit_marker, ".metadata");
	cr_assert_eq(C.commit_idle_ms, 10000);
	cr_assert_eq(C.log_level, LOG_WARN);
	cr_assert_str_eq(C.log_file, "");
	cr_assert_eq(C.world_size, -1);
	cr_assert_eq(C.rank, -1);
	cr_assert_eq(C.local_rank, -1);
	cr_assert_eq(C.local_world_size, -1);
	cr_assert_str_eq(C.config_file, "");
}

/* =============================================================================================
 * TIERCKPT_PREFIX
 */

Test(cfg, prefix_is_normalised)
{
	setenv("TIERCKPT_PREFIX", "//ckpt/./a/../b/", 1);
	load_ok();
	cr_assert_str_eq(C.prefixes[0], "/ckpt/b");
	cr_assert_eq(C.prefix_len[0], strlen("/ckpt/b"));
}

Test(cfg, prefix_list)
{
	setenv("TIERCKPT_PREFIX", "/a:/b/c/:/ab", 1);
	load_ok();
	cr_assert_eq(C.n_prefixes, 3);
	cr_assert_str_eq(C.prefixes[0], "/a");
	cr_assert_str_eq(C.prefixes[1], "/b/c");
	cr_assert_eq(C.prefix_len[1], 4);
	cr_assert_str_eq(C.prefixes[2], "/ab"); /* /ab is not under /a */
}

Test(cfg, prefix_at_most_max)
{
	setenv("TIERCKPT_PREFIX", "/p1:/p2:/p3:/p4:/p5:/p6:/p7:/p8", 1);
	load_ok();
	cr_assert_eq(C.n_prefixes, CFG_MAX_PREFIXES);
	cr_assert_str_eq(C.prefixes[7], "/p8");

	expect_bad("TIERCKPT_PREFIX", "/p1:/p2:/p3:/p4:/p5:/p6:/p7:/p8:/p9");
	expect_err("TIERCKPT_PREFIX=\"/p1:/p2:/p3:/p4:/p5:/p6:/p7:/p8:/p9\": lists more than 8 "
		   "prefixes");
}

Test(cfg, prefix_empty_element)
{
	expect_bad("TIERCKPT_PREFIX", "/a::/b");
	expect_err("TIERCKPT_PREFIX=\"/a::/b\": element 2 is empty; must be a ':'-separated list "
		   "of absolute paths");
	expect_bad("TIERCKPT_PREFIX", "/a:");
	expect_bad("TIERCKPT_PREFIX", ":/a");
	expect_bad("TIERCKPT_PREFIX", ":");
}

Test(cfg, prefix_relative)
{
	expect_bad("TIERCKPT_PREFIX", "ckpt");
	expect_err("TIERCKPT_PREFIX=\"ckpt\": \"ckpt\" is not an absolute path; must be a "
		   "':'-separated list of absolute paths");
	expect_bad("TIERCKPT_PREFIX", "/a:./b");
	expect_bad("TIERCKPT_PREFIX", " /a");
}

Test(cfg, prefix_root)
{
	expect_bad("TIERCKPT_PREFIX", "/");
	expect_err("TIERCKPT_PREFIX=\"/\": \"/\" is the root directory, which cannot be a prefix");
	expect_bad("TIERCKPT_PREFIX", "//");
	expect_bad("TIERCKPT_PREFIX", "/a/..");
	expect_bad("TIERCKPT_PREFIX", "/.");
	expect_bad("TIERCKPT_PREFIX", "/ckpt:/");
}

Test(cfg, prefix_duplicate)
{
	expect_bad("TIERCKPT_PREFIX", "/a:/a/");
	expect_err("TIERCKPT_PREFIX=\"/a:/a/\": /a is listed twice");
	expect_bad("TIERCKPT_PREFIX", "/a/b:/a/./b");
}

Test(cfg, prefix_nested)
{
	expect_bad("TIERCKPT_PREFIX", "/a:/a/b");
	expect_err("TIERCKPT_PREFIX=\"/a:/a/b\": /a and /a/b are nested; prefixes must not lie one "
		   "under another");
	expect_bad("TIERCKPT_PREFIX", "/a/b/c:/x:/a");
}

Test(cfg, prefix_containing_shm_dir)
{
	expect_bad("TIERCKPT_PREFIX", "/dev");
	expect_err("TIERCKPT_PREFIX=\"/dev\": /dev contains the shm dir /dev/shm "
		   "(TIERCKPT_SHM_DIR), so the tier would be redirected into itself");
	expect_bad("TIERCKPT_PREFIX", "/dev/shm");
	expect_bad("TIERCKPT_PREFIX", "/dev/shm/");
	setenv("TIERCKPT_SHM_DIR", "/x/shm", 1);
	expect_bad("TIERCKPT_PREFIX", "/x");
	expect_bad("TIERCKPT_PREFIX", "/ok:/x/./");
	setenv("TIERCKPT_PREFIX", "/dev", 1); /* no longer contains the shm dir */
	load_ok();
}

Test(cfg, prefix_containing_tier_dir)
{
	char p[128], want[1024];

	snprintf(p, sizeof(p), "/dev/shm/tierckpt-%u", uid());
	expect_bad("TIERCKPT_PREFIX", p);
	snprintf(want, sizeof(want),
		 "TIERCKPT_PREFIX=\"%s\": %s contains the tier directory %s/default, so the tier "
		 "would be redirected into itself",
		 p, p, p);
	expect_err(want);
	snprintf(p, sizeof(p), "/dev/shm/tierckpt-%u/default", uid());
	expect_bad("TIERCKPT_PREFIX", p);
}

Test(cfg, prefix_inside_tier_dir)
{
	char p[128], want[1024];

	snprintf(p, sizeof(p), "/dev/shm/tierckpt-%u/default/ckpt", uid());
	expect_bad("TIERCKPT_PREFIX", p);
	snprintf(want, sizeof(want),
		 "TIERCKPT_PREFIX=\"%s\": %s lies inside the tier directory /dev/shm/tierckpt-%u; "
		 "a prefix must be outside it",
		 p, p, uid());
	expect_err(want);
	/* another namespace's tier of the same user is tierckpt's too */
	snprintf(p, sizeof(p), "/dev/shm/tierckpt-%u/other", uid());
	expect_bad("TIERCKPT_PREFIX", p);
	/* beside the tier, inside the shm dir, is fine */
	setenv("TIERCKPT_PREFIX", "/dev/shm/ckpt", 1);
	load_ok();
}

Test(cfg, prefix_long_values)
{
	char *e = repeat('a', 5000);
	e[0] = '/';
	expect_bad("TIERCKPT_PREFIX", e);
	cr_assert(strstr(C.err, "element 1 is too long"), "err=%s", C.err);
	cr_assert(strstr(C.err, "...\""), "long value not cut: %s", C.err);
	free(e);

	/* one megabyte of ':' and then of '/' */
	e = repeat(':', 1 << 20);
	expect_bad("TIERCKPT_PREFIX", e);
	cr_assert(strstr(C.err, "element 1 is empty"), "err=%s", C.err);
	memset(e, '/', 1 << 20);
	expect_bad("TIERCKPT_PREFIX", e);
	free(e);

	/* a long but fitting prefix is fine */
	e = repeat('b', 4000);
	e[0] = '/';
	setenv("TIERCKPT_PREFIX", e, 1);
	load_ok();
	cr_assert_eq(C.prefix_len[0], 4000);
	free(e);
}

/* =============================================================================================
 * TIERCKPT_NAMESPACE, TIERCKPT_SHM_DIR
 */

Test(cfg, namespace_valid)
{
	char *ns = repeat('n', CFG_NAMESPACE_MAX);
	char want[PATH_MAX];

	setenv("TIERCKPT_NAMESPACE", "Job-1.v2_x", 1);
	load_ok();
	cr_assert_str_eq(C.namespace_, "Job-1.v2_x");
	snprintf(want, sizeof(want), "/dev/shm/tierckpt-%u/Job-1.v2_x", uid());
	cr_assert_str_eq(C.tier_dir, want);

	setenv("TIERCKPT_NAMESPACE", ns, 1);
	load_ok();
	cr_assert_str_eq(C.namespace_, ns);
	free(ns);
	setenv("TIERCKPT_NAMESPACE", "...", 1);
	load_ok();
}

Test(cfg, namespace_invalid)
{
	char *ns = repeat('n', CFG_NAMESPACE_MAX + 1);

	expect_bad("TIERCKPT_NAMESPACE", "a/b");
	expect_err("TIERCKPT_NAMESPACE=\"a/b\": must be 1 to 64 characters from A-Z a-z 0-9 . _ - "
		   "and not \".\" or \"..\"");
	expect_bad("TIERCKPT_NAMESPACE", "");
	expect_bad("TIERCKPT_NAMESPACE", ".");
	expect_bad("TIERCKPT_NAMESPACE", "..");
	expect_bad("TIERCKPT_NAMESPACE", "a b");
	expect_bad("TIERCKPT_NAMESPACE", "caf\xc3\xa9");
	expect_bad("TIERCKPT_NAMESPACE", ns);
	free(ns);
}

Test(cfg, error_value_is_escaped)
{
	expect_bad("TIERCKPT_NAMESPACE", "a\"b\\c\nd");
	static const char want[] = "TIERCKPT_NAMESPACE=\"a\\\"b\\\\c\\x0ad\": must be";
	cr_assert(strncmp(C.err, want, strlen(want)) == 0, "err=%s", C.err);
}

Test(cfg, shm_dir_normalised)
{
	char want[PATH_MAX];

	setenv("TIERCKPT_SHM_DIR", "/tmp//x/./shm/", 1);
	load_ok();
	cr_assert_str_eq(C.shm_dir, "/tmp/x/shm");
	snprintf(want, sizeof(want), "/tmp/x/shm/tierckpt-%u/default", uid());
	cr_assert_str_eq(C.tier_dir, want);
}

Test(cfg, shm_dir_invalid)
{
	expect_bad("TIERCKPT_SHM_DIR", "shm");
	expect_err("TIERCKPT_SHM_DIR=\"shm\": must be an absolute path");
	expect_bad("TIERCKPT_SHM_DIR", "");

	char *e = repeat('s', 5000);
	e[0] = '/';
	expect_bad("TIERCKPT_SHM_DIR", e);
	cr_assert(strstr(C.err, "is too long"), "err=%s", C.err);
	e[4080] = '\0'; /* fits alone, but not with /tierckpt-<uid>/default */
	expect_bad("TIERCKPT_SHM_DIR", e);
	cr_assert(strstr(C.err, "tier directory"), "err=%s", C.err);
	free(e);
}

/* =============================================================================================
 * TIERCKPT_S3_BASE_PATH
 */

Test(cfg, s3_memory_only)
{
	load_ok();
	cr_assert_str_eq(C.s3_base_path, "");
	setenv("TIERCKPT_S3_BASE_PATH", "", 1);
	load_ok();
	cr_assert_str_eq(C.s3_base_path, "");
}

Test(cfg, s3_normalised)
{
	static const char *const cases[][2] = {
		{"s3://bucket", "s3://bucket/"},
		{"s3://bucket/", "s3://bucket/"},
		{"s3://my-bucket.x1/a//b", "s3://my-bucket.x1/a/b/"},
		{"s3://bkt/ckpt/run-1/", "s3://bkt/ckpt/run-1/"},
		{"s3://123/x///", "s3://123/x/"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		setenv("TIERCKPT_S3_BASE_PATH", cases[i][0], 1);
		load_ok();
		cr_assert_str_eq(C.s3_base_path, cases[i][1], "%s", cases[i][0]);
	}
	char b63[80] = "s3://";
	memset(b63 + 5, 'b', 63);
	b63[68] = '\0';
	setenv("TIERCKPT_S3_BASE_PATH", b63, 1);
	load_ok();
}

Test(cfg, s3_invalid)
{
	static const char *const bad[] = {
		"bucket",     "http://bkt/x", "S3://bkt",  "s3://",    "s3:///x",	"s3://ab",
		"s3://Bucket", "s3://b_c1",   "s3://-abc", "s3://abc-", "s3://a..b",	"s3://bkt/../x",
		"s3://bkt/./x", "s3://bkt/a\nb", "s3://bkt?x=1", " s3://bkt",
	};
	char b64[80] = "s3://";

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_bad("TIERCKPT_S3_BASE_PATH", bad[i]);
	memset(b64 + 5, 'b', 64);
	b64[69] = '\0';
	expect_bad("TIERCKPT_S3_BASE_PATH", b64);
	expect_bad("TIERCKPT_S3_BASE_PATH", "s3://ab/x");
	expect_err("TIERCKPT_S3_BASE_PATH=\"s3://ab/x\": must be s3://bucket/key/prefix/ with a "
		   "bucket name of 3 to 63 characters from a-z 0-9 . -, starting and ending with a "
		   "letter or digit");

	char *e = repeat('k', 5000);
	memcpy(e, "s3://bkt/", 9);
	expect_bad("TIERCKPT_S3_BASE_PATH", e);
	cr_assert(strstr(C.err, "is too long"), "err=%s", C.err);
	free(e);
}

/* =============================================================================================
 * Integers
 */

/* Numbers that no integer setting accepts. */
static const char *const not_numbers[] = {
	"",  "abc", "1x", " 1", "1 ", "+1", "0x10", "1.5", "1e3", "99999999999999999999999",
	"-0",
};

static void check_not_numbers(const char *var)
{
	for (size_t i = 0; i < sizeof(not_numbers) / sizeof(not_numbers[0]); i++)
		expect_bad(var, not_numbers[i]);
}

Test(cfg, s3_every_n_steps)
{
	setenv("TIERCKPT_S3_EVERY_N_STEPS", "10", 1);
	load_ok();
	cr_assert_eq(C.s3_every_n_steps, 10);
	setenv("TIERCKPT_S3_EVERY_N_STEPS", "0001", 1);
	load_ok();
	cr_assert_eq(C.s3_every_n_steps, 1);
	setenv("TIERCKPT_S3_EVERY_N_STEPS", "9223372036854775807", 1);
	load_ok();
	cr_assert_eq(C.s3_every_n_steps, 9223372036854775807L);

	expect_bad("TIERCKPT_S3_EVERY_N_STEPS", "0");
	expect_err("TIERCKPT_S3_EVERY_N_STEPS=\"0\": must be an integer >= 1");
	expect_bad("TIERCKPT_S3_EVERY_N_STEPS", "-1");
	expect_bad("TIERCKPT_S3_EVERY_N_STEPS", "9223372036854775808");
	check_not_numbers("TIERCKPT_S3_EVERY_N_STEPS");
}

Test(cfg, memory_percent)
{
	setenv("TIERCKPT_MEMORY_PERCENT", "20", 1);
	load_ok();
	cr_assert_eq(C.memory_percent, 20);
	setenv("TIERCKPT_MEMORY_PERCENT", "100", 1);
	load_ok();
	cr_assert_eq(C.memory_percent, 100);
	setenv("TIERCKPT_MEMORY_PERCENT", "55", 1);
	load_ok();
	cr_assert_eq(C.memory_percent, 55);

	expect_bad("TIERCKPT_MEMORY_PERCENT", "15");
	expect_err("TIERCKPT_MEMORY_PERCENT=\"15\": must be an integer from 20 to 100");
	expect_bad("TIERCKPT_MEMORY_PERCENT", "19");
	expect_bad("TIERCKPT_MEMORY_PERCENT", "101");
	expect_bad("TIERCKPT_MEMORY_PERCENT", "0");
	expect_bad("TIERCKPT_MEMORY_PERCENT", "20%");
	expect_bad("TIERCKPT_MEMORY_PERCENT", "4294967316"); /* 20 modulo 2^32 */
	check_not_numbers("TIERCKPT_MEMORY_PERCENT");
}

Test(cfg, keep_steps)
{
	setenv("TIERCKPT_KEEP_STEPS", "5", 1);
	load_ok();
	cr_assert_eq(C.keep_steps, 5);
	expect_bad("TIERCKPT_KEEP_STEPS", "0");
	expect_err("TIERCKPT_KEEP_STEPS=\"0\": must be an integer >= 1");
	expect_bad("TIERCKPT_KEEP_STEPS", "-3");
	check_not_numbers("TIERCKPT_KEEP_STEPS");
}

Test(cfg, commit_idle_ms)
{
	setenv("TIERCKPT_COMMIT_IDLE_MS", "0", 1);
	load_ok();
	cr_assert_eq(C.commit_idle_ms, 0);
	setenv("TIERCKPT_COMMIT_IDLE_MS", "2500", 1);
	load_ok();
	cr_assert_eq(C.commit_idle_ms, 2500);
	expect_bad("TIERCKPT_COMMIT_IDLE_MS", "-1");
	expect_err("TIERCKPT_COMMIT_IDLE_MS=\"-1\": must be an integer >= 0 (milliseconds)");
	check_not_numbers("TIERCKPT_COMMIT_IDLE_MS");
}

Test(cfg, rank_variables)
{
	setenv("WORLD_SIZE", "16", 1);
	setenv("RANK", "9", 1);
	setenv("LOCAL_RANK", "1", 1);
	setenv("LOCAL_WORLD_SIZE", "8", 1);
	load_ok();
	cr_assert_eq(C.world_size, 16);
	cr_assert_eq(C.rank, 9);
	cr_assert_eq(C.local_rank, 1);
	cr_assert_eq(C.local_world_size, 8);
	setenv("RANK", "0", 1);
	unsetenv("LOCAL_RANK");
	load_ok();
	cr_assert_eq(C.rank, 0);
	cr_assert_eq(C.local_rank, -1);

	expect_bad("RANK", "-1");
	expect_err("RANK=\"-1\": must be a non-negative integer");
	setenv("RANK", "0", 1);
	expect_bad("WORLD_SIZE", "eight");
	setenv("WORLD_SIZE", "8", 1);
	expect_bad("LOCAL_RANK", "2147483648"); /* INT_MAX + 1 */
	setenv("LOCAL_RANK", "2147483647", 1);
	load_ok();
	cr_assert_eq(C.local_rank, 2147483647);
	expect_bad("LOCAL_WORLD_SIZE", "");
}

/* =============================================================================================
 * TIERCKPT_COMMIT_MARKER, TIERCKPT_LOG_LEVEL, TIERCKPT_LOG_FILE
 */

Test(cfg, commit_marker)
{
	char *n255 = repeat('m', NAME_MAX), *n256 = repeat('m', NAME_MAX + 1);

	setenv("TIERCKPT_COMMIT_MARKER", "DONE", 1);
	load_ok();
	cr_assert_str_eq(C.commit_marker, "DONE");
	setenv("TIERCKPT_COMMIT_MARKER", n255, 1);
	load_ok();
	cr_assert_str_eq(C.commit_marker, n255);

	expect_bad("TIERCKPT_COMMIT_MARKER", "a/b");
	expect_err("TIERCKPT_COMMIT_MARKER=\"a/b\": must be a file name: 1 to 255 bytes, no '/', "
		   "not \".\" or \"..\"");
	expect_bad("TIERCKPT_COMMIT_MARKER", "");
	expect_bad("TIERCKPT_COMMIT_MARKER", "/.metadata");
	expect_bad("TIERCKPT_COMMIT_MARKER", ".metadata/");
	expect_bad("TIERCKPT_COMMIT_MARKER", ".");
	expect_bad("TIERCKPT_COMMIT_MARKER", "..");
	expect_bad("TIERCKPT_COMMIT_MARKER", n256);
	free(n255);
	free(n256);
}

Test(cfg, log_level)
{
	static const struct {
		const char *s;
		int level;
	} ok[] = {{"error", LOG_ERROR}, {"WARN", LOG_WARN}, {"Info", LOG_INFO}, {"dEbUg", LOG_DEBUG}};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		setenv("TIERCKPT_LOG_LEVEL", ok[i].s, 1);
		load_ok();
		cr_assert_eq(C.log_level, ok[i].level, "%s", ok[i].s);
	}
	expect_bad("TIERCKPT_LOG_LEVEL", "verbose");
	expect_err("TIERCKPT_LOG_LEVEL=\"verbose\": must be one of error, warn, info, debug");
	expect_bad("TIERCKPT_LOG_LEVEL", "");
	expect_bad("TIERCKPT_LOG_LEVEL", "warning");
	expect_bad("TIERCKPT_LOG_LEVEL", "3");
}

Test(cfg, log_file)
{
	setenv("TIERCKPT_LOG_FILE", "/var/log/tierckpt.log", 1);
	load_ok();
	cr_assert_str_eq(C.log_file, "/var/log/tierckpt.log");
	setenv("TIERCKPT_LOG_FILE", "", 1);
	load_ok();
	cr_assert_str_eq(C.log_file, "");

	char *e = repeat('l', PATH_MAX);
	expect_bad("TIERCKPT_LOG_FILE", e);
	free(e);
}

/* =============================================================================================
 * The INI file
 */

Test(cfg, ini_values_are_used)
{
	char want[PATH_MAX];

	write_file(sp("t.ini"), "# settings\n"
				"[tierckpt]\n"
				"prefix=/ini/ckpt:/ini/other\n"
				"namespace=fromini\n"
				"shm_dir=/tmp/shm\n"
				"s3_base_path=s3://ini-bucket/base\n"
				"s3_every_n_steps=4\n"
				"memory_percent=40\n"
				"keep_steps=2\n"
				"commit_marker=COMMIT\n"
				"commit_idle_ms=500\n"
				"log_level=debug\n"
				"log_file=/tmp/ini.log\n"
				"[other]\n"
				"unrelated=1\n");
	setenv("TIERCKPT_CONFIG", sp("t.ini"), 1);
	cr_assert_eq(cfg_load(&C), CFG_OK, "err=%s", C.err);
	cr_assert_eq(C.active, 1);
	cr_assert_str_eq(C.config_file, sp("t.ini"));
	cr_assert_eq(C.n_prefixes, 2);
	cr_assert_str_eq(C.prefixes[0], "/ini/ckpt");
	cr_assert_str_eq(C.prefixes[1], "/ini/other");
	cr_assert_str_eq(C.namespace_, "fromini");
	cr_assert_str_eq(C.shm_dir, "/tmp/shm");
	snprintf(want, sizeof(want), "/tmp/shm/tierckpt-%u/fromini", uid());
	cr_assert_str_eq(C.tier_dir, want);
	cr_assert_str_eq(C.s3_base_path, "s3://ini-bucket/base/");
	cr_assert_eq(C.s3_every_n_steps, 4);
	cr_assert_eq(C.memory_percent, 40);
	cr_assert_eq(C.keep_steps, 2);
	cr_assert_str_eq(C.commit_marker, "COMMIT");
	cr_assert_eq(C.commit_idle_ms, 500);
	cr_assert_eq(C.log_level, LOG_DEBUG);
	cr_assert_str_eq(C.log_file, "/tmp/ini.log");
}

Test(cfg, ini_environment_wins)
{
	write_file(sp("t.ini"), "[tierckpt]\nprefix=/fromfile\nmemory_percent=15\n"
				"namespace=filens\n");
	setenv("TIERCKPT_CONFIG", sp("t.ini"), 1);
	setenv("TIERCKPT_PREFIX", "/fromenv", 1);
	setenv("TIERCKPT_MEMORY_PERCENT", "30", 1); /* the file's 15 is never looked at */
	cr_assert_eq(cfg_load(&C), CFG_OK, "err=%s", C.err);
	cr_assert_str_eq(C.prefixes[0], "/fromenv");
	cr_assert_eq(C.memory_percent, 30);
	cr_assert_str_eq(C.namespace_, "filens");

	/* an empty environment value wins too, and is refused rather than replaced by the file's */
	setenv("TIERCKPT_PREFIX", "", 1);
	cr_assert_eq(cfg_load(&C), CFG_EINVAL);
	cr_assert_eq(C.active, 0);
}

Test(cfg, ini_prefix_only_in_file_activates)
{
	write_file(sp("t.ini"), "[tierckpt]\nprefix=/only/in/file/\n");
	setenv("TIERCKPT_CONFIG", sp("t.ini"), 1);
	cr_assert_eq(cfg_load(&C), CFG_OK, "err=%s", C.err);
	cr_assert_eq(C.active, 1);
	cr_assert_str_eq(C.prefixes[0], "/only/in/file");
}

Test(cfg, ini_origin_in_error)
{
	char want[PATH_MAX + 200];

	write_file(sp("t.ini"), "[tierckpt]\nprefix=/ckpt\nmemory_percent=15\n");
	setenv("TIERCKPT_CONFIG", sp("t.ini"), 1);
	cr_assert_eq(cfg_load(&C), CFG_EINVAL);
	cr_assert_eq(C.active, 0);
	snprintf(want, sizeof(want),
		 "TIERCKPT_MEMORY_PERCENT=\"15\" (from %s): must be an integer from 20 to 100",
		 sp("t.ini"));
	expect_err(want);

	/* the same bad value from the environment does not mention the file */
	write_file(sp("t.ini"), "[tierckpt]\nprefix=/ckpt\nmemory_percent=50\n");
	setenv("TIERCKPT_MEMORY_PERCENT", "15", 1);
	cr_assert_eq(cfg_load(&C), CFG_EINVAL);
	expect_err("TIERCKPT_MEMORY_PERCENT=\"15\": must be an integer from 20 to 100");
}

Test(cfg, ini_missing_file)
{
	char want[PATH_MAX + 100];

	setenv("TIERCKPT_CONFIG", sp("missing.ini"), 1);
	cr_assert_eq(cfg_load(&C), CFG_EIO); /* even without a prefix anywhere */
	snprintf(want, sizeof(want), "TIERCKPT_CONFIG=\"%s\": cannot read the settings file: ",
		 sp("missing.ini"));
	cr_assert_eq(strncmp(C.err, want, strlen(want)), 0, "err=%s", C.err);
	cr_assert_eq(C.active, 0);

	setenv("TIERCKPT_PREFIX", "/ckpt", 1);
	cr_assert_eq(cfg_load(&C), CFG_EIO);
	cr_assert_eq(C.active, 0);

	setenv("TIERCKPT_CONFIG", scratch(), 1); /* a directory */
	cr_assert_eq(cfg_load(&C), CFG_EIO);
}

Test(cfg, ini_unparsable_file)
{
	write_file(sp("t.ini"), "[tierckpt]\nthis line is not a key value pair\n");
	setenv("TIERCKPT_CONFIG", sp("t.ini"), 1);
	setenv("TIERCKPT_PREFIX", "/ckpt", 1);
	cr_assert_eq(cfg_load(&C), CFG_EIO);
	cr_assert(strstr(C.err, "cannot read the settings file"), "err=%s", C.err);
	cr_assert_null(strchr(C.err, '\n'));
}

Test(cfg, ini_unknown_key_or_group)
{
	char want[PATH_MAX + 100];

	write_file(sp("t.ini"), "[tierckpt]\nprefix=/ckpt\nmemory_precent=50\n");
	setenv("TIERCKPT_CONFIG", sp("t.ini"), 1);
	cr_assert_eq(cfg_load(&C), CFG_EINVAL);
	snprintf(want, sizeof(want),
		 "TIERCKPT_CONFIG=\"%s\": unknown key \"memory_precent\" in [tierckpt]",
		 sp("t.ini"));
	expect_err(want);

	write_file(sp("t.ini"), "[TierCkpt]\nprefix=/ckpt\n");
	cr_assert_eq(cfg_load(&C), CFG_EINVAL);
	cr_assert(strstr(C.err, "has no [tierckpt] group"), "err=%s", C.err);
}

Test(cfg, empty_config_variable_means_no_file)
{
	setenv("TIERCKPT_CONFIG", "", 1);
	load_ok();
	cr_assert_str_eq(C.config_file, "");
}

/* =============================================================================================
 * cfg_tier_prepare
 */

/* Loads with TIERCKPT_SHM_DIR=shm (and a prefix) and returns cfg_tier_prepare's rc. */
static int prepare_in(const char *shm)
{
	setenv("TIERCKPT_SHM_DIR", shm, 1);
	load_ok();
	return cfg_tier_prepare(&C);
}

static const char *rootdir(const char *shm)
{
	static char b[600];

	snprintf(b, sizeof(b), "%.500s/tierckpt-%u", shm, uid());
	return b;
}

static void assert_private_dir(const char *path)
{
	struct stat st;

	cr_assert_eq(lstat(path, &st), 0, "%s: %s", path, strerror(errno));
	cr_assert(S_ISDIR(st.st_mode), "%s is not a directory", path);
	cr_assert_eq(st.st_uid, getuid());
	cr_assert_eq(st.st_mode & 07777, 0700, "%s mode %o", path, st.st_mode & 07777);
}

Test(cfg, tier_prepare_creates_private_dirs)
{
	char ns[700];

	scratch(); /* before the umask below */
	umask(0277); /* even a hostile umask yields usable 0700 directories */
	cr_assert_eq(prepare_in(scratch()), CFG_OK, "err=%s", C.err);
	assert_private_dir(rootdir(scratch()));
	snprintf(ns, sizeof(ns), "%s/default", rootdir(scratch()));
	cr_assert_str_eq(C.tier_dir, ns);
	assert_private_dir(ns);
	/* idempotent */
	cr_assert_eq(cfg_tier_prepare(&C), CFG_OK, "err=%s", C.err);
	umask(022);
	cr_assert_eq(cfg_tier_prepare(&C), CFG_OK, "err=%s", C.err);
}

Test(cfg, tier_prepare_inactive_is_a_no_op)
{
	setenv("TIERCKPT_SHM_DIR", scratch(), 1);
	cr_assert_eq(cfg_load(&C), CFG_OK);
	cr_assert_eq(C.active, 0);
	cr_assert_eq(cfg_tier_prepare(&C), CFG_OK);
	cr_assert_eq(access(rootdir(scratch()), F_OK), -1, "created a tier while inactive");
}

Test(cfg, tier_prepare_refuses_planted_symlink)
{
	cr_assert_eq(mkdir(sp("elsewhere"), 0700), 0);
	cr_assert_eq(symlink(sp("elsewhere"), rootdir(scratch())), 0);
	cr_assert_eq(prepare_in(scratch()), CFG_EINVAL);
	cr_assert(strstr(C.err, "is a symbolic link; refusing"), "err=%s", C.err);
	cr_assert_eq(strncmp(C.err, "TIERCKPT_SHM_DIR=\"", 18), 0, "err=%s", C.err);
	cr_assert_eq(access(sp("elsewhere/default"), F_OK), -1, "followed the symlink");
}

Test(cfg, tier_prepare_refuses_symlink_namespace)
{
	char ns[700];

	cr_assert_eq(mkdir(sp("elsewhere"), 0700), 0);
	cr_assert_eq(mkdir(rootdir(scratch()), 0700), 0);
	snprintf(ns, sizeof(ns), "%s/default", rootdir(scratch()));
	cr_assert_eq(symlink(sp("elsewhere"), ns), 0);
	cr_assert_eq(prepare_in(scratch()), CFG_EINVAL);
	cr_assert(strstr(C.err, "/default is a symbolic link; refusing"), "err=%s", C.err);
}

Test(cfg, tier_prepare_refuses_group_other_access)
{
	char want[3 * PATH_MAX];

	cr_assert_eq(mkdir(rootdir(scratch()), 0700), 0);
	cr_assert_eq(chmod(rootdir(scratch()), 0755), 0);
	cr_assert_eq(prepare_in(scratch()), CFG_EINVAL);
	snprintf(want, sizeof(want),
		 "TIERCKPT_SHM_DIR=\"%s\": %s has mode 0755, which gives group/other access (must "
		 "be 0700); refusing",
		 scratch(), rootdir(scratch()));
	expect_err(want);

	/* the namespace level is checked the same way */
	char ns[700];
	cr_assert_eq(chmod(rootdir(scratch()), 0700), 0);
	snprintf(ns, sizeof(ns), "%s/default", rootdir(scratch()));
	cr_assert_eq(mkdir(ns, 0700), 0);
	cr_assert_eq(chmod(ns, 0710), 0);
	cr_assert_eq(cfg_tier_prepare(&C), CFG_EINVAL);
	cr_assert(strstr(C.err, "has mode 0710"), "err=%s", C.err);
}

Test(cfg, tier_prepare_refuses_foreign_owner)
{
	char want[3 * PATH_MAX];

	if (geteuid() != 0)
		cr_skip_test("needs root to give a directory to another uid");
	cr_assert_eq(mkdir(rootdir(scratch()), 0700), 0);
	cr_assert_eq(chown(rootdir(scratch()), 54321, 54321), 0);
	cr_assert_eq(prepare_in(scratch()), CFG_EINVAL);
	snprintf(want, sizeof(want), "TIERCKPT_SHM_DIR=\"%s\": %s is owned by uid 54321, not %u; "
				     "refusing",
		 scratch(), rootdir(scratch()), uid());
	expect_err(want);
}

Test(cfg, tier_prepare_refuses_non_directory_level)
{
	write_file(rootdir(scratch()), "x");
	cr_assert_eq(prepare_in(scratch()), CFG_EINVAL);
	cr_assert(strstr(C.err, "is not a directory; refusing"), "err=%s", C.err);
}

Test(cfg, tier_prepare_shm_dir_missing)
{
	char want[2 * PATH_MAX];

	cr_assert_eq(prepare_in(sp("nope")), CFG_EINVAL);
	snprintf(want, sizeof(want), "TIERCKPT_SHM_DIR=\"%s\": %s does not exist", sp("nope"),
		 sp("nope"));
	expect_err(want);
}

Test(cfg, tier_prepare_shm_dir_is_a_file)
{
	char want[2 * PATH_MAX];

	write_file(sp("file"), "x");
	cr_assert_eq(prepare_in(sp("file")), CFG_EINVAL);
	snprintf(want, sizeof(want), "TIERCKPT_SHM_DIR=\"%s\": %s is not a directory; refusing",
		 sp("file"), sp("file"));
	expect_err(want);
}

Test(cfg, tier_prepare_shm_dir_is_a_symlink)
{
	cr_assert_eq(mkdir(sp("real"), 0700), 0);
	cr_assert_eq(symlink(sp("real"), sp("link")), 0);
	cr_assert_eq(prepare_in(sp("link")), CFG_EINVAL);
	cr_assert(strstr(C.err, "link is a symbolic link; refusing"), "err=%s", C.err);
	cr_assert_eq(access(rootdir(sp("real")), F_OK), -1, "followed the symlink");
}

Test(cfg, tier_prepare_shm_dir_unwritable)
{
	if (geteuid() == 0)
		cr_skip_test("root can write any directory (covered: missing, file, symlink)");
	cr_assert_eq(mkdir(sp("ro"), 0500), 0);
	cr_assert_eq(prepare_in(sp("ro")), CFG_EINVAL);
	cr_assert(strstr(C.err, "is not writable by uid"), "err=%s", C.err);
}

Test(cfg, tier_prepare_shared_shm_dir_must_be_sticky)
{
	if (geteuid() == 0) {
		/* another user's world-writable dir: only safe when sticky */
		cr_assert_eq(mkdir(sp("shared"), 0777), 0);
		cr_assert_eq(chmod(sp("shared"), 0777), 0);
		cr_assert_eq(chown(sp("shared"), 54321, 54321), 0);
		cr_assert_eq(prepare_in(sp("shared")), CFG_EINVAL);
		cr_assert(strstr(C.err, "is owned by uid 54321, not 0, and is not sticky"),
			  "err=%s", C.err);
		cr_assert_eq(chmod(sp("shared"), 01777), 0);
		cr_assert_eq(cfg_tier_prepare(&C), CFG_OK, "err=%s", C.err);
		assert_private_dir(rootdir(sp("shared")));
	} else {
		/* /dev/shm-like: sticky and root-owned is accepted; our own dir is too */
		cr_assert_eq(prepare_in(scratch()), CFG_OK, "err=%s", C.err);
	}
}

Test(cfg, tier_prepare_concurrent)
{
	enum { N = 16 };
	int go[2];
	pid_t pids[N];

	setenv("TIERCKPT_SHM_DIR", scratch(), 1);
	load_ok();
	cr_assert_eq(pipe(go), 0);
	for (int i = 0; i < N; i++) {
		pids[i] = fork();
		cr_assert_geq(pids[i], 0);
		if (pids[i] == 0) {
			char b;
			close(go[1]);
			(void)read(go[0], &b, 1); /* all start together at EOF */
			_exit(cfg_tier_prepare(&C) == CFG_OK ? 0 : 1);
		}
	}
	close(go[0]);
	close(go[1]);
	for (int i = 0; i < N; i++) {
		int st;
		cr_assert_eq(waitpid(pids[i], &st, 0), pids[i]);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d failed", i);
	}
	assert_private_dir(C.tier_dir);
}

/* =============================================================================================
 * log
 */

Test(log, level_parse)
{
	cr_assert_eq(log_level_parse("error"), LOG_ERROR);
	cr_assert_eq(log_level_parse("WARN"), LOG_WARN);
	cr_assert_eq(log_level_parse("iNfO"), LOG_INFO);
	cr_assert_eq(log_level_parse("Debug"), LOG_DEBUG);
	cr_assert_eq(log_level_parse("warning"), -1);
	cr_assert_eq(log_level_parse("war"), -1);
	cr_assert_eq(log_level_parse(""), -1);
	cr_assert_eq(log_level_parse(NULL), -1);
}

/* Loads a config logging to scratch/log with the given level and RANK (NULL: unset). */
static const char *log_setup(const char *level, const char *rank)
{
	setenv("TIERCKPT_PREFIX", "/ckpt", 1);
	setenv("TIERCKPT_NAMESPACE", "myns", 1);
	setenv("TIERCKPT_LOG_LEVEL", level, 1);
	setenv("TIERCKPT_LOG_FILE", sp("log"), 1);
	if (rank)
		setenv("RANK", rank, 1);
	cr_assert_eq(cfg_load(&C), CFG_OK, "err=%s", C.err);
	log_init(&C);
	return sp("log");
}

static void assert_matches(const char *text, const char *pattern)
{
	regex_t re;

	cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0, "bad regex %s", pattern);
	int rc = regexec(&re, text, 0, NULL, 0);
	regfree(&re);
	cr_assert_eq(rc, 0, "\"%s\" does not match %s", text, pattern);
}

Test(log, line_format)
{
	const char *path = log_setup("info", "3");
	char pat[512];

	log_warn("hello %d", 42);
	snprintf(pat, sizeof(pat),
		 "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z WARN "
		 "tierckpt\\[%d\\] rank=3 ns=myns: hello 42\n$",
		 (int)getpid());
	assert_matches(read_file(path), pat);
}

Test(log, level_names_and_unknown_rank)
{
	const char *path = log_setup("debug", NULL);
	char pat[512];

	log_error("e");
	log_info("i");
	log_debug("d");
	snprintf(pat, sizeof(pat),
		 "^[^ ]+Z ERROR tierckpt\\[%d\\] rank=- ns=myns: e\n"
		 "[^ ]+Z INFO tierckpt\\[%d\\] rank=- ns=myns: i\n"
		 "[^ ]+Z DEBUG tierckpt\\[%d\\] rank=- ns=myns: d\n$",
		 (int)getpid(), (int)getpid(), (int)getpid());
	assert_matches(read_file(path), pat);
}

Test(log, timestamp_is_utc_now)
{
	const char *path = log_setup("warn", "0");
	struct tm tm = {0};
	int ms;
	struct timespec before, after;
	time_t t;

	/* CLOCK_REALTIME, not time(2): glibc's time() is the coarse clock and may lag a tick */
	clock_gettime(CLOCK_REALTIME, &before);
	log_warn("now");
	clock_gettime(CLOCK_REALTIME, &after);
	const char *line = read_file(path);
	cr_assert_eq(sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon,
			    &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms),
		     7, "line=%s", line);
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	t = timegm(&tm);
	long long got = (long long)t * 1000 + ms;
	long long lo = (long long)before.tv_sec * 1000 + before.tv_nsec / 1000000;
	long long hi = (long long)after.tv_sec * 1000 + after.tv_nsec / 1000000;
	cr_assert(got >= lo && got <= hi, "timestamp %lld ms not in [%lld, %lld]", got, lo, hi);
	cr_assert(ms >= 0 && ms <= 999);
}

Test(log, level_filter)
{
	const char *path = log_setup("warn", "1");

	log_info("not shown");
	log_debug("not shown");
	cr_assert_str_eq(read_file(path), "");
	log_error("shown");
	cr_assert(strstr(read_file(path), "ERROR"), "error line missing");
	cr_assert_null(strstr(read_file(path), "not shown"));
}

Test(log, errno_is_preserved)
{
	log_setup("debug", "0");
	errno = EXDEV;
	log_warn("x %s", "y");
	cr_assert_eq(errno, EXDEV);
	errno = ENAMETOOLONG;
	log_debug("filtered or not, errno stays");
	cr_assert_eq(errno, ENAMETOOLONG);

	/* a failing write(2) (stderr closed) must not leak its EBADF either */
	setenv("TIERCKPT_LOG_FILE", "", 1);
	cr_assert_eq(cfg_load(&C), CFG_OK);
	log_init(&C);
	int saved = dup(2);
	close(2);
	errno = ENOENT;
	log_error("into a closed stderr");
	int e = errno;
	dup2(saved, 2);
	close(saved);
	cr_assert_eq(e, ENOENT);

	errno = EAGAIN;
	log_init(&C);
	cr_assert_eq(errno, EAGAIN);
}

Test(log, long_message_is_truncated_to_one_line)
{
	const char *path = log_setup("warn", "0");
	char *m = repeat('x', 3 * LOG_LINE_MAX);

	log_warn("%s", m);
	log_warn("next");
	free(m);
	const char *text = read_file(path);
	const char *nl = strchr(text, '\n');
	cr_assert_not_null(nl);
	cr_assert_eq((size_t)(nl - text) + 1, (size_t)LOG_LINE_MAX);
	cr_assert_eq(strncmp(nl - 3, "...", 3), 0);
	cr_assert(strstr(nl + 1, ": next\n"), "second line missing");
}

Test(log, message_newlines_do_not_split_lines)
{
	const char *path = log_setup("warn", "0");

	log_warn("a\nb\rc");
	const char *text = read_file(path);
	cr_assert(strstr(text, ": a b c\n"), "text=%s", text);
	cr_assert_eq(strchr(text, '\n'), text + strlen(text) - 1);
}

Test(log, file_is_0600_and_appended)
{
	umask(0);
	write_file(sp("log"), "earlier\n");
	chmod(sp("log"), 0600);
	char path[512];
	snprintf(path, sizeof(path), "%s", log_setup("warn", "0"));
	log_warn("one");
	log_init(&C); /* re-init (as after fork) keeps appending */
	log_warn("two");
	const char *text = read_file(path);
	cr_assert_eq(strncmp(text, "earlier\n", 8), 0, "text=%s", text);
	cr_assert(strstr(text, ": one\n") && strstr(text, ": two\n"), "text=%s", text);

	struct stat st;
	cr_assert_eq(stat(sp("fresh.log"), &st), -1);
	setenv("TIERCKPT_LOG_FILE", sp("fresh.log"), 1);
	cr_assert_eq(cfg_load(&C), CFG_OK);
	log_init(&C);
	log_warn("three");
	cr_assert_eq(stat(sp("fresh.log"), &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert(strstr(read_file(sp("fresh.log")), ": three\n"));
	cr_assert_null(strstr(read_file(path), "three"), "re-init kept the old file");
}

Test(log, unopenable_file_falls_back_to_stderr)
{
	int saved = dup(2);
	int fd = open(sp("stderr"), O_WRONLY | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0);
	dup2(fd, 2);
	close(fd);
	setenv("TIERCKPT_PREFIX", "/ckpt", 1);
	setenv("TIERCKPT_LOG_LEVEL", "error", 1); /* the warning is said even so */
	setenv("TIERCKPT_LOG_FILE", "/nonexistent-dir/x.log", 1);
	cr_assert_eq(cfg_load(&C), CFG_OK, "err=%s", C.err);
	log_init(&C);
	log_error("after");
	dup2(saved, 2);
	close(saved);
	const char *text = read_file(sp("stderr"));
	cr_assert(strstr(text, " WARN tierckpt[") &&
			  strstr(text, ": TIERCKPT_LOG_FILE=\"/nonexistent-dir/x.log\": cannot "
				       "open: No such file or directory; logging to stderr\n"),
		  "text=%s", text);
	cr_assert(strstr(text, " ERROR tierckpt["), "text=%s", text);
	cr_assert(strstr(text, ": after\n"), "text=%s", text);
}

Test(log, before_init_goes_to_stderr)
{
	int saved = dup(2);
	int fd = open(sp("stderr"), O_WRONLY | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0);
	dup2(fd, 2);
	close(fd);
	log_warn("early");
	log_info("filtered at the default level");
	dup2(saved, 2);
	close(saved);
	const char *text = read_file(sp("stderr"));
	cr_assert(strstr(text, " WARN tierckpt[") && strstr(text, " rank=- ns=-: early\n"),
		  "text=%s", text);
	cr_assert_null(strstr(text, "filtered"));
}

/* =============================================================================================
 * the durable tier's settings
 */

Test(cfg, upload_defaults)
{
	load_ok();
	cr_assert_eq(C.nodes, 1);
	cr_assert_eq(C.s3_concurrency, 8);
	cr_assert_eq(C.s3_part_mb, 8);
	cr_assert_eq(C.exit_wait_s, 600);
	cr_assert_eq(C.s3_retry_s, 30);
	cr_assert_neq(C.node_id[0], '\0');
}

Test(cfg, nodes_from_torchrun_sizes)
{
	setenv("WORLD_SIZE", "16", 1);
	setenv("LOCAL_WORLD_SIZE", "8", 1);
	load_ok();
	cr_assert_eq(C.nodes, 2);
	setenv("TIERCKPT_NODES", "3", 1); /* the explicit setting wins */
	load_ok();
	cr_assert_eq(C.nodes, 3);
}

Test(cfg, upload_settings_refused)
{
	expect_bad("TIERCKPT_NODES", "0");
	env_clear();
	expect_bad("TIERCKPT_NODES", "two");
	env_clear();
	expect_bad("TIERCKPT_NODE_ID", "a/b");
	env_clear();
	expect_bad("TIERCKPT_NODE_ID", "..");
	env_clear();
	expect_bad("TIERCKPT_S3_CONCURRENCY", "0");
	env_clear();
	expect_bad("TIERCKPT_S3_CONCURRENCY", "257");
	env_clear();
	expect_bad("TIERCKPT_S3_PART_MB", "4");
	env_clear();
	expect_bad("TIERCKPT_EXIT_WAIT_S", "-1");
	env_clear();
	expect_bad("TIERCKPT_S3_RETRY_S", "0");
}

Test(cfg, node_id_accepted)
{
	setenv("TIERCKPT_NODE_ID", "node-7.a_b", 1);
	load_ok();
	cr_assert_str_eq(C.node_id, "node-7.a_b");
}
