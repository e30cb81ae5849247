/*
 * test_path.c - unit tests of the shim's pure path rules (interpose/ip_path.c) and of step
 * directory recognition (tiering/tier_step.c).
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <string.h>

#include "interpose/ip_path.h"
#include "tiering/tier_step.h"

static const char *norm(const char *in)
{
	static char out[PATH_MAX];

	return ip_path_normalize(in, out, sizeof(out)) < 0 ? "<err>" : out;
}

static const char *join(const char *base, const char *rel)
{
	static char out[PATH_MAX];

	return ip_path_join(base, rel, out, sizeof(out)) < 0 ? "<err>" : out;
}

Test(path, normalize_collapses_slashes_and_dots)
{
	cr_assert_str_eq(norm("/"), "/");
	cr_assert_str_eq(norm("//"), "/");
	cr_assert_str_eq(norm("//ckpt///a//b"), "/ckpt/a/b");
	cr_assert_str_eq(norm("/ckpt/./a/."), "/ckpt/a/");
	cr_assert_str_eq(norm("/./ckpt"), "/ckpt");
}

Test(path, normalize_resolves_dotdot_clamped_at_root)
{
	cr_assert_str_eq(norm("/ckpt/.."), "/");
	cr_assert_str_eq(norm("/ckpt/../.."), "/");
	cr_assert_str_eq(norm("/../../ckpt"), "/ckpt");
	cr_assert_str_eq(norm("/ckpt/a/../../etc/passwd"), "/etc/passwd");
	cr_assert_str_eq(norm("/tmp/../ckpt/x"), "/ckpt/x");
	cr_assert_str_eq(norm("/ckpt/a/b/../c"), "/ckpt/a/c");
}

Test(path, normalize_keeps_a_trailing_slash)
{
	cr_assert_str_eq(norm("/ckpt/file/"), "/ckpt/file/");
	cr_assert_str_eq(norm("/ckpt/dir//"), "/ckpt/dir/");
	cr_assert_str_eq(norm("/ckpt/a/.."), "/ckpt/");
	cr_assert_str_eq(norm("/ckpt/"), "/ckpt/");
}

Test(path, normalize_rejects_relative_and_overlong)
{
	char out[8];
	char big[PATH_MAX + 10];

	cr_assert_eq(ip_path_normalize("ckpt/a", out, sizeof(out)), -1);
	cr_assert_eq(ip_path_normalize("/abcdefghij", out, sizeof(out)), -1);
	memset(big, 'a', sizeof(big) - 1);
	big[0] = '/';
	big[sizeof(big) - 1] = '\0';
	char res[PATH_MAX];
	cr_assert_eq(ip_path_normalize(big, res, sizeof(res)), -1);
	/* ".." storms shrink a long path back into range */
	cr_assert_eq(ip_path_normalize("/a/b/c/../../../../../../x", out, sizeof(out)), 2);
	cr_assert_str_eq(out, "/x");
}

Test(path, join_resolves_relative_against_base)
{
	cr_assert_str_eq(join("/", "ckpt/a"), "/ckpt/a");
	cr_assert_str_eq(join("/ckpt/step_1", "../step_2/x"), "/ckpt/step_2/x");
	cr_assert_str_eq(join("/ckpt", "../../.."), "/");
	cr_assert_str_eq(join("/home/u", "/ckpt/x"), "/ckpt/x");
	cr_assert_str_eq(join("/ckpt/a", "b/"), "/ckpt/a/b/");
	cr_assert_str_eq(join("/ckpt/a", "."), "/ckpt/a/");
}

Test(path, under_is_boundary_safe)
{
	cr_assert(ip_path_under("/ckpt", "/ckpt", 5));
	cr_assert(ip_path_under("/ckpt/", "/ckpt", 5));
	cr_assert(ip_path_under("/ckpt/a/b", "/ckpt", 5));
	cr_assert_not(ip_path_under("/ckpt2", "/ckpt", 5));
	cr_assert_not(ip_path_under("/ckpt2/a", "/ckpt", 5));
	cr_assert_not(ip_path_under("/ck", "/ckpt", 5));
	cr_assert_not(ip_path_under("/", "/ckpt", 5));
}

Test(path, ancestor_detection)
{
	cr_assert(ip_path_is_ancestor("/", "/a/ckpt", 7));
	cr_assert(ip_path_is_ancestor("/a", "/a/ckpt", 7));
	cr_assert(ip_path_is_ancestor("/a/", "/a/ckpt", 7));
	cr_assert_not(ip_path_is_ancestor("/a/ckpt", "/a/ckpt", 7));
	cr_assert_not(ip_path_is_ancestor("/a/ck", "/a/ckpt", 7));
	cr_assert_not(ip_path_is_ancestor("/b", "/a/ckpt", 7));
	cr_assert(ip_path_is_ancestor("/a//", "/a/ckpt", 7));
	cr_assert_not(ip_path_is_ancestor("/a/ckpt/", "/a/ckpt", 7));
	cr_assert_not(ip_path_is_ancestor("/ab", "/a/ckpt", 7));
	cr_assert_not(ip_path_is_ancestor("", "/a/ckpt", 7));
}

Test(path, slash_pair_scan_matches_a_plain_scan)
{
	/* every position and alignment: the vector scan must agree with the obvious loop */
	char buf[96];
	const char *pieces[] = {"/", "//", "/.", "/..", "a", "bc", ".", "/x.y", "..", "/.z"};
	unsigned int seed = 1;

	for (int n = 0; n < 20000; n++) {
		size_t off = (size_t)(n % 17), len = 0;
		int k = (int)(seed % 9);
		for (int i = 0; i < k; i++) {
			seed = seed * 1103515245u + 12345u;
			const char *pc = pieces[(seed >> 8) % 10];
			if (off + len + strlen(pc) + 1 >= sizeof(buf))
				break;
			memcpy(buf + off + len, pc, strlen(pc));
			len += strlen(pc);
		}
		seed = seed * 1103515245u + 12345u;
		buf[off + len] = '\0';
		const char *s = buf + off;
		int want = strstr(s, "//") != NULL || strstr(s, "/.") != NULL;
		cr_assert_eq(ip_path_has_slash_pair(s), want, "\"%s\"", s);
	}
	cr_assert_not(ip_path_has_slash_pair("/usr/lib/x86_64-linux-gnu/libc.so.6"));
	cr_assert(ip_path_has_slash_pair("/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p//q"));
	cr_assert(ip_path_has_slash_pair("/aaaaaaaaaaaaaaa/.x"));
	cr_assert_not(ip_path_has_slash_pair(""));
}

Test(path, needs_norm_and_dotdot_detection)
{
	cr_assert_not(ip_path_needs_norm("/usr/lib/x.so"));
	cr_assert_not(ip_path_needs_norm("/a/.hidden/..x"));
	cr_assert(ip_path_needs_norm("/a//b"));
	cr_assert(ip_path_needs_norm("/a/./b"));
	cr_assert(ip_path_needs_norm("/a/../b"));
	cr_assert(ip_path_needs_norm("/a/.."));
	cr_assert(ip_path_needs_norm("/a/"));
	cr_assert(ip_path_has_dotdot("../x"));
	cr_assert(ip_path_has_dotdot("a/../x"));
	cr_assert(ip_path_has_dotdot("a/.."));
	cr_assert_not(ip_path_has_dotdot("a/..b/c"));
	cr_assert_not(ip_path_has_dotdot("...x"));
}

Test(path, map_and_unmap_round_trip)
{
	const char prefixes[2][4096] = {"/ckpt", "/data/run"};
	const size_t plens[2] = {5, 9};
	const char *root = "/dev/shm/tierckpt-0/default/fs";
	size_t rl = strlen(root);
	char out[PATH_MAX];

	cr_assert_eq(ip_path_map(root, rl, "/ckpt/step_1/x", out, sizeof(out)), (int)rl + 14);
	cr_assert_str_eq(out, "/dev/shm/tierckpt-0/default/fs/ckpt/step_1/x");
	cr_assert_eq(ip_path_unmap(root, rl, prefixes, plens, 2, out, out, sizeof(out)), 14);
	cr_assert_str_eq(out, "/ckpt/step_1/x");
	/* the tier's own directories above a prefix are not virtual paths */
	cr_assert_eq(ip_path_unmap(root, rl, prefixes, plens, 2, "/dev/shm/tierckpt-0/default/fs/data",
				   out, sizeof(out)), 0);
	cr_assert_eq(ip_path_unmap(root, rl, prefixes, plens, 2, "/dev/shm/tierckpt-0/default/fsx/ckpt",
				   out, sizeof(out)), 0);
	cr_assert_eq(ip_path_unmap(root, rl, prefixes, plens, 2,
				   "/dev/shm/tierckpt-0/default/fs/data/run (deleted)", out,
				   sizeof(out)), 0);
	cr_assert_eq(ip_path_unmap(root, rl, prefixes, plens, 2,
				   "/dev/shm/tierckpt-0/default/fs/data/run/f (deleted)", out,
				   sizeof(out)), 21);
	cr_assert_str_eq(out, "/data/run/f (deleted)");
}

Test(path, map_reports_overflow)
{
	char out[16];

	cr_assert_eq(ip_path_map("/dev/shm/t", 10, "/ckpt/step_1", out, sizeof(out)), -1);
}

Test(path, step_names)
{
	long long n;

	cr_assert(ip_path_step_number("step_100", &n));
	cr_assert_eq(n, 100);
	cr_assert(ip_path_step_number("checkpoint-7/x", &n));
	cr_assert_eq(n, 7);
	cr_assert(ip_path_step_number("global_step12", &n));
	cr_assert_eq(n, 12);
	cr_assert(ip_path_step_number("iter_0", &n));
	cr_assert_eq(n, 0);
	cr_assert_not(ip_path_step_number("step_", &n));
	cr_assert_not(ip_path_step_number("step_1a", &n));
	cr_assert_not(ip_path_step_number("step-1", &n));
	cr_assert_not(ip_path_step_number("xstep_1", &n));
	cr_assert_not(ip_path_step_number("step_99999999999999999999999", &n));
}

Test(step, step_of_virtual_paths)
{
	char out[PATH_MAX];
	int itself = -1;

	cr_assert(tier_step_of("/ckpt/step_3/__0_0.distcp", "/ckpt", 5, out, sizeof(out), &itself));
	cr_assert_str_eq(out, "/ckpt/step_3");
	cr_assert_eq(itself, 0);
	cr_assert(tier_step_of("/ckpt/step_3", "/ckpt", 5, out, sizeof(out), &itself));
	cr_assert_eq(itself, 1);
	cr_assert(tier_step_of("/ckpt/step_3/", "/ckpt", 5, out, sizeof(out), &itself));
	cr_assert_eq(itself, 1);
	cr_assert_not(tier_step_of("/ckpt/other/step_3/x", "/ckpt", 5, out, sizeof(out), &itself));
	cr_assert_not(tier_step_of("/ckpt", "/ckpt", 5, out, sizeof(out), &itself));
	cr_assert_not(tier_step_of("/ckpt2/step_3", "/ckpt", 5, out, sizeof(out), &itself));
}
