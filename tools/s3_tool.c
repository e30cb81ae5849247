/*
 * s3_tool.c - `tierckpt-s3`, a tiny command line over the S3 client (tiering/s3_client.h), used
 * by the integration tests only (not installed):
 *
 *   tierckpt-s3 put FILE s3://bucket/key                    single PUT or multipart (8 MiB parts)
 *   tierckpt-s3 put-multipart FILE s3://bucket/key PART_BYTES   always multipart
 *   tierckpt-s3 get s3://bucket/key FILE [OFFSET LENGTH]    whole object or a byte range
 *   tierckpt-s3 head s3://bucket/key                        prints "SIZE<TAB>ETAG"
 *   tierckpt-s3 ls s3://bucket/prefix [--max-keys N] [--delimiter D]
 *                                                           "SIZE<TAB>ETAG<TAB>KEY" / "PRE<TAB>P"
 *   tierckpt-s3 rm s3://bucket/key
 *
 * put/put-multipart print the object's ETag.  Settings come from the standard AWS environment
 * (s3_config_load_env); TIERCKPT_S3_MAX_ATTEMPTS, TIERCKPT_S3_RETRY_BASE_MS and
 * TIERCKPT_S3_STALL_MS override the retry policy for tests.  Exit status 0, or 1 with exactly
 * one line "tierckpt-s3: <cause>" on stderr (2 for usage errors).  Single-threaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tiering/s3_client.h"

/* die - print one error line and exit 1. */
static void die(const char *fmt, const char *a, const char *b)
{
	fprintf(stderr, "tierckpt-s3: ");
	fprintf(stderr, fmt, a, b);
	fputc('\n', stderr);
	exit(1);
}

/* usage - the synopsis on stderr, exit 2. */
static void usage(void)
{
	fprintf(stderr, "usage: tierckpt-s3 put FILE s3://B/K | put-multipart FILE s3://B/K "
		"PART_BYTES | get s3://B/K FILE [OFF LEN] | head s3://B/K | ls s3://B/PREFIX "
		"[--max-keys N] [--delimiter D] | rm s3://B/K\n");
	exit(2);
}

/* split_url - "s3://bucket/key" into malloc'd bucket and key ("" when absent). */
static void split_url(const char *url, char **bucket, char **key)
{
	const char *p, *slash;

	if (strncmp(url, "s3://", 5))
		die("not an s3:// URL: %s%s", url, "");
	p = url + 5;
	slash = strchr(p, '/');
	*bucket = slash ? strndup(p, (size_t)(slash - p)) : strdup(p);
	*key = strdup(slash ? slash + 1 : "");
	if (!*bucket || !*key)
		die("out of memory%s%s", "", "");
	if (!**bucket)
		die("no bucket in %s%s", url, "");
}

/* num - parse a non-negative decimal number or die naming what. */
static uint64_t num(const char *s, const char *what)
{
	char *e;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &e, 10);
	if (!*s || *e || errno || *s == '-')
		die("%s must be a non-negative number: %s", what, s);
	return v;
}

/* env_long - an integer override from the environment, or dflt. */
static long env_long(const char *name, long dflt)
{
	const char *v = getenv(name);

	return v && *v ? (long)num(v, name) : dflt;
}

/* fail - print the client's error line and exit 1. */
static void fail(struct s3_client *c, int rc)
{
	const char *m = s3_client_errmsg(c);

	fprintf(stderr, "tierckpt-s3: %s\n", m && *m ? m : s3_rc_str(rc));
	exit(1);
}

/* main - parse the command, run it; exit status as in the file header. */
int main(int argc, char **argv)
{
	struct s3_config cfg;
	struct s3_client *c = NULL;
	char *bucket = NULL, *key = NULL, etag[S3_ETAG_MAX];
	const char *cmd;
	int rc, fd;

	if (argc < 3)
		usage();
	cmd = argv[1];
	rc = s3_config_load_env(&cfg);
	if (rc)
		die("%s%s", cfg.err[0] ? cfg.err : s3_rc_str(rc), "");
	cfg.max_attempts = (unsigned)env_long("TIERCKPT_S3_MAX_ATTEMPTS", (long)cfg.max_attempts);
	cfg.retry_base_ms = env_long("TIERCKPT_S3_RETRY_BASE_MS", cfg.retry_base_ms);
	cfg.stall_timeout_ms = env_long("TIERCKPT_S3_STALL_MS", cfg.stall_timeout_ms);
	rc = s3_client_new(&cfg, &c);
	s3_config_fini(&cfg);
	if (rc)
		die("cannot make the S3 client: %s%s", s3_rc_str(rc), "");

	if (!strcmp(cmd, "put") || !strcmp(cmd, "put-multipart")) {
		int multi = !strcmp(cmd, "put-multipart");
		struct stat st;

		if (argc != (multi ? 5 : 4))
			usage();
		split_url(argv[3], &bucket, &key);
		fd = open(argv[2], O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st))
			die("cannot open %s: %s", argv[2], strerror(errno));
		rc = s3_put_file(c, fd, (uint64_t)st.st_size, bucket, key,
				 multi ? num(argv[4], "PART_BYTES") : 0, multi ? 1 : 0, etag);
		close(fd);
		if (rc)
			fail(c, rc);
		printf("%s\n", etag);
	} else if (!strcmp(cmd, "get")) {
		uint64_t off = 0, len = 0, got = 0;

		if (argc != 4 && argc != 6)
			usage();
		if (argc == 6) {
			off = num(argv[4], "OFFSET");
			len = num(argv[5], "LENGTH");
			if (!len)
				die("LENGTH must be at least 1%s%s", "", "");
		}
		split_url(argv[2], &bucket, &key);
		fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			die("cannot create %s: %s", argv[3], strerror(errno));
		rc = s3_object_get(c, bucket, key, off, len, fd, 0, &got);
		if (rc)
			fail(c, rc);
		if (ftruncate(fd, (off_t)got) || close(fd))
			die("cannot write %s: %s", argv[3], strerror(errno));
	} else if (!strcmp(cmd, "head")) {
		struct s3_object_info info;

		if (argc != 3)
			usage();
		split_url(argv[2], &bucket, &key);
		rc = s3_object_head(c, bucket, key, &info);
		if (rc)
			fail(c, rc);
		printf("%" PRIu64 "\t%s\n", info.size_bytes, info.etag);
	} else if (!strcmp(cmd, "ls")) {
		struct s3_list_page pg = { 0 };
		const char *delim = NULL;
		char *token = NULL;
		unsigned max_keys = 0;

		split_url(argv[2], &bucket, &key);
		for (int i = 3; i < argc; i++) {
			if (!strcmp(argv[i], "--max-keys") && i + 1 < argc)
				max_keys = (unsigned)num(argv[++i], "--max-keys");
			else if (!strcmp(argv[i], "--delimiter") && i + 1 < argc)
				delim = argv[++i];
			else
				usage();
		}
		do {
			rc = s3_objects_list(c, bucket, key, delim, token, max_keys, &pg);
			free(token);
			token = NULL;
			if (rc)
				fail(c, rc);
			for (size_t i = 0; i < pg.n_prefixes; i++)
				printf("PRE\t%s\n", pg.prefixes[i]);
			for (size_t i = 0; i < pg.n_entries; i++)
				printf("%" PRIu64 "\t%s\t%s\n", pg.entries[i].size_bytes,
				       pg.entries[i].etag, pg.entries[i].key);
			if (pg.is_truncated) {
				token = pg.next_token;
				pg.next_token = NULL;
			}
			s3_list_page_fini(&pg);
		} while (token);
	} else if (!strcmp(cmd, "rm")) {
		if (argc != 3)
			usage();
		split_url(argv[2], &bucket, &key);
		rc = s3_object_delete(c, bucket, key);
		if (rc)
			fail(c, rc);
	} else {
		usage();
	}
	free(bucket);
	free(key);
	s3_client_free(c);
	return 0;
}
