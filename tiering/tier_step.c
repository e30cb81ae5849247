/*
 * tier_step.c - step directories and their shared state in the tier (see tier_step.h).
 */
#include "tiering/tier_step.h"

#include <dirent.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/cfg.h"
#include "interpose/ip_path.h"

long long tier_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *tier_state_name(int state)
{
	switch (state) {
	case TIER_STEP_WRITING:
		return "WRITING";
	case TIER_STEP_COMMITTED:
		return "COMMITTED";
	case TIER_STEP_UPLOADING:
		return "UPLOADING";
	case TIER_STEP_PERSISTED:
		return "PERSISTED";
	case TIER_STEP_FAILED:
		return "FAILED";
	default:
		return "-";
	}
}

int tier_step_of(const char *vpath, const char *prefix, size_t plen, char *out, size_t outsz,
		 int *is_dir_itself)
{
	long long n;

	if (!ip_path_under(vpath, prefix, plen) || vpath[plen] != '/')
		return 0;
	const char *name = vpath + plen + 1;
	if (!ip_path_step_number(name, &n))
		return 0;
	const char *end = strchr(name, '/');
	size_t len = end ? (size_t)(end - vpath) : strlen(vpath);
	if (len + 1 > outsz)
		return 0;
	memcpy(out, vpath, len);
	out[len] = '\0';
	*is_dir_itself = !end || end[1] == '\0';
	return 1;
}

int tier_step_meta_path(const char *tier_dir, const char *vstep, const char *suffix, char *out,
			size_t outsz)
{
	int n = snprintf(out, outsz, "%s/meta/steps%s%s", tier_dir, vstep, suffix);

	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

/* Creates the directories above a meta file (they mirror the prefix path).  Returns 0 or -1. */
static int meta_mkdirs(char *path)
{
	for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
		*p = '\0';
		int rc = mkdir(path, 0700);
		*p = '/';
		if (rc && errno != EEXIST)
			return -1;
	}
	return 0;
}

/* Drops the upload journal and last error of a step (it is written anew, or gone). */
static void step_upload_forget(const char *tier_dir, const char *vstep)
{
	char path[PATH_MAX];

	if (tier_step_meta_path(tier_dir, vstep, ".journal", path, sizeof(path)) == 0)
		unlink(path);
	if (tier_step_meta_path(tier_dir, vstep, ".error", path, sizeof(path)) == 0)
		unlink(path);
}

int tier_step_set(const char *tier_dir, const char *vstep, int state, const char *how)
{
	char path[PATH_MAX], tmp[PATH_MAX + 32], line[96];
	int saved = errno, rc = TIER_EIO;

	if (tier_step_meta_path(tier_dir, vstep, ".state", path, sizeof(path)))
		return TIER_ENAMETOOLONG;
	static unsigned int seq;
	snprintf(tmp, sizeof(tmp), "%s.%d.%ld.%u.tmp", path, (int)getpid(), (long)gettid(),
		 __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	int len = snprintf(line, sizeof(line), "%s %lld %s\n", tier_state_name(state),
			   tier_now_ms(), how ? how : "-");
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == ENOENT && meta_mkdirs(tmp) == 0)
		fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		goto out;
	if (state == TIER_STEP_WRITING) {
		step_upload_forget(tier_dir, vstep);
	} else if (state == TIER_STEP_PERSISTED) {
		char err[PATH_MAX];
		if (tier_step_meta_path(tier_dir, vstep, ".error", err, sizeof(err)) == 0)
			unlink(err); /* the last error is history */
	}
	if (write(fd, line, (size_t)len) != len) {
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, path)) {
		unlink(tmp);
		goto out;
	}
	rc = TIER_OK;
out:
	errno = saved;
	return rc;
}

int tier_step_forget(const char *tier_dir, const char *vstep)
{
	char path[PATH_MAX];
	int saved = errno;

	if (tier_step_meta_path(tier_dir, vstep, ".state", path, sizeof(path)) == 0)
		unlink(path);
	if (tier_step_meta_path(tier_dir, vstep, ".lock", path, sizeof(path)) == 0)
		unlink(path);
	step_upload_forget(tier_dir, vstep);
	errno = saved;
	return TIER_OK;
}

int tier_step_lock_open(const char *tier_dir, const char *vstep)
{
	char path[PATH_MAX];
	struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET};
	int saved = errno;

	if (tier_step_meta_path(tier_dir, vstep, ".lock", path, sizeof(path)))
		return -1;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == ENOENT && meta_mkdirs(path) == 0)
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd >= 0 && fcntl(fd, F_OFD_SETLK, &fl)) {
		close(fd);
		fd = -1;
	}
	errno = saved;
	return fd;
}

int tier_step_writers(const char *tier_dir, const char *vstep)
{
	char path[PATH_MAX];
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	int saved = errno, rc = -1;

	if (tier_step_meta_path(tier_dir, vstep, ".lock", path, sizeof(path)))
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		rc = errno == ENOENT ? 0 : -1;
		goto out;
	}
	if (fcntl(fd, F_OFD_GETLK, &fl) == 0)
		rc = fl.l_type != F_UNLCK;
	close(fd);
out:
	errno = saved;
	return rc;
}

/* Reads "<STATE> <ms> <how>" from the step's state file into info. */
void tier_step_read(const char *tier_dir, const char *vstep, struct tier_step_info *info)
{
	char path[PATH_MAX], line[96] = "", st[16] = "";
	long long ms = 0;

	info->state = TIER_STEP_NONE;
	if (tier_step_meta_path(tier_dir, vstep, ".state", path, sizeof(path)))
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	ssize_t n = read(fd, line, sizeof(line) - 1);
	close(fd);
	if (n <= 0)
		return;
	line[n] = '\0';
	if (sscanf(line, "%15s %lld %31s", st, &ms, info->how) < 2)
		return;
	info->since_ms = ms;
	for (int i = TIER_STEP_WRITING; i <= TIER_STEP_FAILED; i++)
		if (strcmp(st, tier_state_name(i)) == 0)
			info->state = i;
}

/* Adds the regular files below dirfd (recursively, not following symlinks) to info. */
static void tree_sum(int dirfd, struct tier_step_info *info, int depth)
{
	DIR *d = fdopendir(dirfd);
	struct dirent *e;

	if (!d) {
		close(dirfd);
		return;
	}
	while ((e = readdir(d))) {
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW))
			continue;
		long long mt = (long long)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
		if (mt > info->newest_mtime_ms)
			info->newest_mtime_ms = mt;
		if (S_ISREG(st.st_mode)) {
			info->files++;
			info->bytes += st.st_size;
		} else if (S_ISDIR(st.st_mode) && depth < 64) {
			int sub = openat(dirfd, e->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				tree_sum(sub, info, depth + 1);
		}
	}
	closedir(d);
}

/* Kernel file times come from a coarse clock, a few ms behind CLOCK_REALTIME. */
#define MTIME_SLACK_MS 50

int tier_step_marker_current(const struct cfg *c, const char *vstep,
			     const struct tier_step_info *known)
{
	char marker[PATH_MAX];
	struct stat st;
	struct tier_step_info info;

	if (snprintf(marker, sizeof(marker), "%s/fs%s/%s", c->tier_dir, vstep, c->commit_marker) >=
		    (int)sizeof(marker) ||
	    lstat(marker, &st) || !S_ISREG(st.st_mode))
		return 0;
	if (!known) {
		memset(&info, 0, sizeof(info));
		tier_step_read(c->tier_dir, vstep, &info);
		known = &info;
	}
	long long mt = (long long)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
	return known->state != TIER_STEP_WRITING || mt + MTIME_SLACK_MS >= known->since_ms;
}

int tier_step_eval(const struct cfg *c, const char *vstep, struct tier_step_info *info)
{
	char dir[PATH_MAX];
	struct stat st;

	memset(info, 0, sizeof(*info));
	if (snprintf(dir, sizeof(dir), "%s/fs%s", c->tier_dir, vstep) >= (int)sizeof(dir))
		return TIER_ENAMETOOLONG;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ? TIER_ENOENT : TIER_EIO;
	if (fstat(fd, &st) == 0)
		info->newest_mtime_ms =
			(long long)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
	tree_sum(fd, info, 0);
	tier_step_read(c->tier_dir, vstep, info);
	info->writers = tier_step_writers(c->tier_dir, vstep) == 1;
	if (info->state >= TIER_STEP_COMMITTED || info->writers)
		return TIER_OK;

	int has_marker = tier_step_marker_current(c, vstep, info);
	long long idle = tier_now_ms() - info->newest_mtime_ms;
	const char *how = has_marker ? "marker" : idle >= c->commit_idle_ms ? "idle" : NULL;
	if (how && tier_step_set(c->tier_dir, vstep, TIER_STEP_COMMITTED, how) == TIER_OK) {
		info->state = TIER_STEP_COMMITTED;
		info->since_ms = tier_now_ms();
		snprintf(info->how, sizeof(info->how), "%s", how);
	} else if (info->state == TIER_STEP_NONE) {
		info->state = TIER_STEP_WRITING;
	}
	return TIER_OK;
}

int tier_step_foreach(const struct cfg *c,
		      int (*fn)(const struct cfg *c, int p, const char *vstep, long long num,
				void *arg),
		      void *arg)
{
	int rc = 0;

	for (int p = 0; p < c->n_prefixes && !rc; p++) {
		char dir[PATH_MAX + 8], vstep[PATH_MAX];
		struct dirent **names;
		long long num;
		snprintf(dir, sizeof(dir), "%s/fs%s", c->tier_dir, c->prefixes[p]);
		int n = scandir(dir, &names, NULL, versionsort);
		for (int i = 0; i < n; i++) {
			if (!rc && ip_path_step_number(names[i]->d_name, &num) &&
			    snprintf(vstep, sizeof(vstep), "%s/%s", c->prefixes[p],
				     names[i]->d_name) < (int)sizeof(vstep))
				rc = fn(c, p, vstep, num, arg);
			free(names[i]);
		}
		if (n >= 0)
			free(names);
	}
	return rc;
}
