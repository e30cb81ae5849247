/*
 * tierckpt.c - the `tierckpt` command: run a program under the shim, list steps in the tier.
 *
 *   tierckpt run [--] CMD [ARG...]   check the settings, then exec CMD with LD_PRELOAD set
 *   tierckpt ls                      steps in the memory tier: path, state, files, bytes
 *
 * `run` applies exactly the rules the shim applies (same config module), so a setting the shim
 * would refuse stops the job here, before it starts, with exit status 2.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/cfg.h"
#include "config/log.h"
#include "interpose/ip_path.h"
#include "tiering/tier_step.h"
#include "tiering/tier_upload.h"

#define EXIT_USAGE 2

static const char *const usage_main =
	"Usage: tierckpt COMMAND [ARGS]\n"
	"\n"
	"Memory-speed checkpoints for unmodified training jobs.  Files the job writes under\n"
	"TIERCKPT_PREFIX (e.g. /checkpoints) go to a shared-memory tier on this node instead, as if\n"
	"a tmpfs were mounted there.\n"
	"\n"
	"Commands:\n"
	"  run [--] CMD [ARG...]   run CMD (and its children) with the tier in place\n"
	"  ls                      list the step directories held in memory on this node\n"
	"  flush [--timeout S]     wait until every step bound for S3 is there (uploading\n"
	"                          itself when no process of the job does)\n"
	"  help [COMMAND]          show help for a command\n"
	"\n"
	"Main settings (environment; see README.md for all):\n"
	"  TIERCKPT_PREFIX         absolute path(s) to redirect, ':'-separated (required)\n"
	"  TIERCKPT_NAMESPACE      name of this job's tier (default: default)\n"
	"  TIERCKPT_SHM_DIR        where the tier lives (default: /dev/shm)\n"
	"  TIERCKPT_COMMIT_MARKER  file that commits a step (default: .metadata, as PyTorch DCP)\n"
	"  TIERCKPT_S3_BASE_PATH   s3://bucket/prefix/ to upload steps to (default: memory only)\n"
	"  TIERCKPT_S3_EVERY_N_STEPS  upload steps whose number is a multiple of N (default: 1)\n"
	"  TIERCKPT_LOG_LEVEL      error, warn, info or debug (default: warn)\n"
	"\n"
	"Example:\n"
	"  TIERCKPT_PREFIX=/checkpoints tierckpt run -- torchrun --nproc-per-node 8 train.py\n";

static const char *const usage_run =
	"Usage: tierckpt run [--] CMD [ARG...]\n"
	"\n"
	"Checks the TIERCKPT_* settings, then runs CMD with the tierckpt library preloaded\n"
	"(LD_PRELOAD), so that CMD and every process it starts see TIERCKPT_PREFIX backed by the\n"
	"node's memory tier.  Nothing in CMD needs to change.\n"
	"\n"
	"Exit status: CMD's own; 2 when a setting is invalid (one line on stderr names it and\n"
	"CMD is not started); 127 when CMD is not found, 126 when it cannot be executed.\n"
	"\n"
	"Not intercepted: statically linked programs, raw system calls and io_uring.  Check a\n"
	"program with `ldd PROGRAM` (it must use libc.so.6 dynamically).\n";

static const char *const usage_ls =
	"Usage: tierckpt ls\n"
	"\n"
	"Lists the step directories (step_<N>, checkpoint-<N>, global_step<N>, iter_<N>) in this\n"
	"node's memory tier for the current TIERCKPT_PREFIX and TIERCKPT_NAMESPACE, one per line:\n"
	"  PATH       the step as the job sees it\n"
	"  STATE      WRITING      being saved\n"
	"             COMMITTED    its commit marker appeared, or no file of it was open for\n"
	"                          writing for TIERCKPT_COMMIT_IDLE_MS; bound for S3, not started\n"
	"             MEMORY-ONLY  committed, kept in memory only (its number is not a multiple of\n"
	"                          TIERCKPT_S3_EVERY_N_STEPS, or no S3 base path is set)\n"
	"             UPLOADING    being uploaded to S3\n"
	"             PERSISTED    every file and the marker are in S3\n"
	"             FAILED       the last upload attempt failed (retried every TIERCKPT_S3_RETRY_S)\n"
	"  FILES      regular files in the step\n"
	"  BYTES      their total size\n"
	"  UPLOADED   bytes of the step already in S3\n"
	"  MB/S       upload throughput (MB/s, from its first attempt to its end, or to now)\n"
	"  ERROR      the last upload error, or -\n";

static const char *const usage_flush =
	"Usage: tierckpt flush [--timeout SECONDS]\n"
	"\n"
	"Waits until every committed step bound for S3 (TIERCKPT_S3_BASE_PATH, every\n"
	"TIERCKPT_S3_EVERY_N_STEPS) is PERSISTED.  When no process of the job is uploading (the job\n"
	"has exited, or was killed), flush takes over and uploads them itself, resuming where the\n"
	"last uploader stopped.  Meant for a container's preStop hook or the end of a job script.\n"
	"\n"
	"Exit status: 0 when everything is in S3; 1 on timeout (default 600 s) or when a step\n"
	"failed (one line per unfinished step on stderr); 2 for invalid settings.\n";

/* Loads and checks the settings as the shim will; prints the one line and returns 2 on error. */
static int load_settings(struct cfg *c, int need_prefix, int prepare)
{
	int rc = cfg_load(c);

	if (rc) {
		fprintf(stderr, "tierckpt: %s\n", c->err);
		return EXIT_USAGE;
	}
	if (!c->active && need_prefix) {
		fprintf(stderr, "tierckpt: TIERCKPT_PREFIX is not set: set it to the absolute path "
				"your job writes checkpoints to, e.g. TIERCKPT_PREFIX=/checkpoints\n");
		return EXIT_USAGE;
	}
	log_init(c);
	if (c->active && prepare && cfg_tier_prepare(c)) {
		fprintf(stderr, "tierckpt: %s\n", c->err);
		return EXIT_USAGE;
	}
	return 0;
}

/* Finds libtierckpt.so next to this executable (build tree) or in ../lib/tierckpt (installed).
 * Returns 0 and the absolute path in out, or -1. */
static int find_library(char *out, size_t outsz)
{
	char exe[PATH_MAX];
	static const char *const rel[] = {"libtierckpt.so", "../lib/tierckpt/libtierckpt.so"};
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return -1;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (!slash)
		return -1;
	slash[1] = '\0';
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		char cand[PATH_MAX + 64], norm[PATH_MAX];
		snprintf(cand, sizeof(cand), "%s%s", exe, rel[i]);
		if (ip_path_normalize(cand, norm, sizeof(norm)) < 0 || access(norm, R_OK))
			continue;
		snprintf(out, outsz, "%s", norm);
		return 0;
	}
	return -1;
}

static int cmd_run(int argc, char **argv)
{
	struct cfg c;
	char lib[PATH_MAX];
	int i = 0;

	if (argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
		fputs(usage_run, stdout);
		return 0;
	}
	if (argc > 0 && !strcmp(argv[0], "--"))
		i = 1;
	if (i >= argc) {
		fputs(usage_run, stderr);
		return EXIT_USAGE;
	}
	int rc = load_settings(&c, 1, 1);
	if (rc)
		return rc;
	if (find_library(lib, sizeof(lib))) {
		fprintf(stderr, "tierckpt: cannot find libtierckpt.so next to this program or in "
				"../lib/tierckpt/; reinstall with `make install`\n");
		return EXIT_USAGE;
	}
	const char *old = getenv("LD_PRELOAD");
	char *pre;
	if (old && *old) {
		size_t n = strlen(lib) + strlen(old) + 2;
		pre = malloc(n);
		if (!pre)
			return EXIT_USAGE;
		snprintf(pre, n, "%s:%s", old, lib); /* earlier preloads (sanitizers) stay first */
	} else {
		pre = lib;
	}
	if (setenv("LD_PRELOAD", pre, 1)) {
		perror("tierckpt: setenv");
		return EXIT_USAGE;
	}
	execvp(argv[i], argv + i);
	int e = errno;
	fprintf(stderr, "tierckpt: cannot run %s: %s\n", argv[i], strerror(e));
	return e == ENOENT ? 127 : 126;
}

/* The state to show: committed steps that will never go to S3 are MEMORY-ONLY. */
static const char *shown_state(const struct cfg *c, const struct tier_step_info *info,
			       long long num)
{
	if (info->state == TIER_STEP_COMMITTED &&
	    (!c->s3_base_path[0] || num % c->s3_every_n_steps != 0))
		return "MEMORY-ONLY";
	return tier_state_name(info->state);
}

/* tier_step_foreach callback: one `ls` row. */
static int ls_one(const struct cfg *c, int p, const char *vstep, long long num, void *arg)
{
	struct tier_step_info info;
	char err[512], rate[32] = "-";
	double mbs;

	(void)p;
	(void)arg;
	if (tier_step_eval(c, vstep, &info) != TIER_OK)
		return 0;
	unsigned long long up = tier_up_journal_bytes(c, vstep, &mbs);
	if (mbs > 0)
		snprintf(rate, sizeof(rate), "%.1f", mbs);
	tier_up_last_error(c, vstep, err, sizeof(err));
	printf("%-40s %-11s %7lld %14lld %14llu %8s %s\n", vstep, shown_state(c, &info, num),
	       info.files, info.bytes, up, rate, err[0] ? err : "-");
	return 0;
}

static int cmd_ls(int argc, char **argv)
{
	struct cfg c;

	if (argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
		fputs(usage_ls, stdout);
		return 0;
	}
	int rc = load_settings(&c, 1, 0);
	if (rc)
		return rc;
	printf("%-40s %-11s %7s %14s %14s %8s %s\n", "PATH", "STATE", "FILES", "BYTES", "UPLOADED",
	       "MB/S", "ERROR");
	tier_step_foreach(&c, ls_one, NULL);
	return 0;
}

/* What flush_pending counts. */
struct pending_count {
	int pending, failed, report;
};

/* tier_step_foreach callback: counts (and with report, prints) a step bound for S3 that is not
 * PERSISTED yet. */
static int pending_one(const struct cfg *c, int p, const char *vstep, long long num, void *arg)
{
	struct pending_count *pc = arg;
	struct tier_step_info info;
	char err[512];

	(void)p;
	if (num % c->s3_every_n_steps != 0 || tier_step_eval(c, vstep, &info) != TIER_OK ||
	    info.state < TIER_STEP_COMMITTED || info.state == TIER_STEP_PERSISTED)
		return 0;
	pc->pending++;
	pc->failed += info.state == TIER_STEP_FAILED;
	if (pc->report) {
		tier_up_last_error(c, vstep, err, sizeof(err));
		fprintf(stderr, "tierckpt: %s not in S3: %s%s%s\n", vstep, tier_state_name(info.state),
			err[0] ? ": " : "", err);
	}
	return 0;
}

/* Counts the S3-bound committed steps not yet PERSISTED (and FAILED ones) from the tier's state;
 * with report, prints one line per such step to stderr. */
static int flush_pending(const struct cfg *c, int *failed, int report)
{
	struct pending_count pc = {0, 0, report};

	tier_step_foreach(c, pending_one, &pc);
	*failed = pc.failed;
	return pc.pending;
}

/* flush's deadline: cancels the uploads in flight when it passes. */
struct flush_watch {
	long long deadline_ms;
	int *cancel;
};

static void *flush_watchdog(void *arg)
{
	struct flush_watch *w = arg;

	while (tier_now_ms() < w->deadline_ms)
		usleep(50000);
	__atomic_store_n(w->cancel, 1, __ATOMIC_RELEASE);
	return NULL;
}

static int cmd_flush(int argc, char **argv)
{
	static int cancel;
	static struct flush_watch watch;
	pthread_t wt;
	struct cfg c;
	long timeout_s = 600;
	char path[PATH_MAX], msg[512];
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	struct tier_up *u = NULL;
	int failed = 0, rc;

	for (int i = 0; i < argc; i++) {
		char *end;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage_flush, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
			timeout_s = strtol(argv[++i], &end, 10);
			if (*end || timeout_s < 0) {
				fprintf(stderr, "tierckpt: --timeout \"%s\": must be seconds >= 0\n",
					argv[i]);
				return EXIT_USAGE;
			}
			continue;
		}
		fputs(usage_flush, stderr);
		return EXIT_USAGE;
	}
	rc = load_settings(&c, 1, 1);
	if (rc)
		return rc;
	if (!c.s3_base_path[0]) {
		printf("tierckpt: no TIERCKPT_S3_BASE_PATH: nothing to flush (memory only)\n");
		return 0;
	}
	long long deadline = tier_now_ms() + timeout_s * 1000;
	if (tier_up_leader_path(&c, path, sizeof(path)))
		return EXIT_USAGE;
	watch = (struct flush_watch){deadline, &cancel};
	if (pthread_create(&wt, NULL, flush_watchdog, &watch) == 0)
		pthread_detach(wt);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	int leading = fd >= 0 && fcntl(fd, F_OFD_SETLK, &fl) == 0;
	for (int first = 1;; first = 0) {
		if (!leading && fd >= 0 && fcntl(fd, F_OFD_SETLK, &fl) == 0)
			leading = 1; /* the job's uploader is gone: take over */
		if (leading && !u) {
			if (tier_up_new(&c, &cancel, &u, msg, sizeof(msg))) {
				fprintf(stderr, "tierckpt: cannot upload: %s\n", msg);
				rc = 1;
				break;
			}
		}
		int pending;
		if (leading) {
			struct tier_up_stats st;
			/* retry FAILED steps at once on the first pass: flush is asked for now */
			tier_up_pass(u, first, &st);
			pending = st.pending;
			failed = st.failed;
		} else {
			pending = flush_pending(&c, &failed, 0);
		}
		if (pending == 0) {
			rc = 0;
			break;
		}
		if ((leading && failed) || tier_now_ms() >= deadline) {
			flush_pending(&c, &failed, 1);
			rc = 1;
			break;
		}
		usleep(leading ? 500000 : 200000);
	}
	tier_up_free(u);
	if (fd >= 0)
		close(fd);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(usage_main, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 2, argv + 2);
	if (!strcmp(argv[1], "ls"))
		return cmd_ls(argc - 2, argv + 2);
	if (!strcmp(argv[1], "flush"))
		return cmd_flush(argc - 2, argv + 2);
	if (!strcmp(argv[1], "help")) {
		const char *u = argc > 2 && !strcmp(argv[2], "run")	? usage_run
				: argc > 2 && !strcmp(argv[2], "ls")	? usage_ls
				: argc > 2 && !strcmp(argv[2], "flush") ? usage_flush
									: usage_main;
		fputs(u, stdout);
		return 0;
	}
	fprintf(stderr, "tierckpt: unknown command '%s' (try tierckpt --help)\n", argv[1]);
	return EXIT_USAGE;
}
