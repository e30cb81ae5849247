/*
 * ip_wrap_dir.c - wrappers of directory walks, the current directory and every call that hands
 * a path back to the program: opendir/closedir, scandir*, nftw/ftw, glob, chdir/fchdir,
 * getcwd and friends, realpath and canonicalize_file_name.
 *
 * DESIGN
 * A path handed back never shows the tier: the real call runs on the tier path and its result
 * is turned back into the virtual path in place (the virtual path is always the shorter, a
 * suffix of the tier path).  nftw/ftw call the program's function with paths built inside
 * glibc from the tier path we passed, so a thread-local trampoline shows the program the
 * virtual suffix of each path (and FTW.base moved by the same amount).
 */
#include "interpose/ip_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

IP_EXPORT DIR *opendir(const char *path)
{
	struct ip_rpath r;

	if (!ip_on())
		return REAL(opendir)(path);
	if (ip_resolve(AT_FDCWD, path, &r))
		return NULL;
	DIR *d = REAL(opendir)(r.path);
	if (d)
		ip_fd_opened(dirfd(d), &r, O_RDONLY);
	return d;
}

IP_EXPORT int closedir(DIR *d)
{
	if (!ip_on())
		return REAL(closedir)(d);
	struct ip_fdtok t = ip_fd_take(dirfd(d));
	int rc = REAL(closedir)(d);
	ip_fd_release(t);
	return rc;
}

W1(int, scandir, -1,
   (const char *path, struct dirent ***list, int (*sel)(const struct dirent *),
    int (*cmp)(const struct dirent **, const struct dirent **)),
   (path, list, sel, cmp))
W1(int, scandir64, -1,
   (const char *path, struct dirent64 ***list, int (*sel)(const struct dirent64 *),
    int (*cmp)(const struct dirent64 **, const struct dirent64 **)),
   (path, list, sel, cmp))
WAT(int, scandirat, -1,
    (int dirfd, const char *path, struct dirent ***list, int (*sel)(const struct dirent *),
     int (*cmp)(const struct dirent **, const struct dirent **)),
    (dirfd, path, list, sel, cmp))
WAT(int, scandirat64, -1,
    (int dirfd, const char *path, struct dirent64 ***list, int (*sel)(const struct dirent64 *),
     int (*cmp)(const struct dirent64 **, const struct dirent64 **)),
    (dirfd, path, list, sel, cmp))

/* ----------------------------------------------------------------------------------------------
 * nftw / ftw trampolines: the program's callback and how many leading bytes of each path to
 * hide, per thread (saved and restored around each walk, so nested walks work).
 */
struct walk_ctx {
	void *fn;
	size_t skip;
};

static __thread struct walk_ctx walk __attribute__((tls_model("initial-exec")));

static int tramp_nftw(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	struct FTW vf = {.base = f->base - (int)walk.skip, .level = f->level};

	return ((int (*)(const char *, const struct stat *, int, struct FTW *))walk.fn)(
		p + walk.skip, st, flag, &vf);
}

static int tramp_nftw64(const char *p, const struct stat64 *st, int flag, struct FTW *f)
{
	struct FTW vf = {.base = f->base - (int)walk.skip, .level = f->level};

	return ((int (*)(const char *, const struct stat64 *, int, struct FTW *))walk.fn)(
		p + walk.skip, st, flag, &vf);
}

static int tramp_ftw(const char *p, const struct stat *st, int flag)
{
	return ((int (*)(const char *, const struct stat *, int))walk.fn)(p + walk.skip, st, flag);
}

static int tramp_ftw64(const char *p, const struct stat64 *st, int flag)
{
	return ((int (*)(const char *, const struct stat64 *, int))walk.fn)(p + walk.skip, st,
									     flag);
}

/* Runs a walk with the trampoline when the start path was mapped.  `call` makes the real call
 * with the path and callback given. */
#define WALK_BODY(realname, tramp, ...)                                                        \
	do {                                                                                  \
		struct ip_rpath r;                                                            \
		if (!ip_on())                                                                 \
			return REAL(realname)(path, fn, __VA_ARGS__);                         \
		if (ip_resolve(AT_FDCWD, path, &r))                                           \
			return -1;                                                            \
		if (!r.mapped)                                                                \
			return REAL(realname)(r.path, fn, __VA_ARGS__);                       \
		struct walk_ctx saved = walk;                                                 \
		walk.fn = (void *)fn;                                                         \
		walk.skip = ip_g.rootlen;                                                     \
		int rc = REAL(realname)(r.path, tramp, __VA_ARGS__);                          \
		walk = saved;                                                                 \
		return rc;                                                                    \
	} while (0)

IP_EXPORT int nftw(const char *path, int (*fn)(const char *, const struct stat *, int, struct FTW *),
		   int nfd, int flags)
{
	WALK_BODY(nftw, tramp_nftw, nfd, flags);
}

IP_EXPORT int nftw64(const char *path,
		     int (*fn)(const char *, const struct stat64 *, int, struct FTW *), int nfd,
		     int flags)
{
	WALK_BODY(nftw64, tramp_nftw64, nfd, flags);
}

IP_EXPORT int ftw(const char *path, int (*fn)(const char *, const struct stat *, int), int nfd)
{
	WALK_BODY(ftw, tramp_ftw, nfd);
}

IP_EXPORT int ftw64(const char *path, int (*fn)(const char *, const struct stat64 *, int), int nfd)
{
	WALK_BODY(ftw64, tramp_ftw64, nfd);
}

/* ----------------------------------------------------------------------------------------------
 * glob: the results of a mapped pattern are tier paths; shown virtual, in place.
 */

static void unmap_vector(char **v, size_t from, size_t n)
{
	for (size_t i = from; i < from + n; i++)
		if (v[i] && v[i][0] == '/')
			ip_unmap_inplace(v[i]);
}

IP_EXPORT int glob(const char *pattern, int flags, int (*errfn)(const char *, int), glob_t *g)
{
	struct ip_rpath r;

	if (!ip_on())
		return REAL(glob)(pattern, flags, errfn, g);
	if (ip_resolve(AT_FDCWD, pattern, &r))
		return GLOB_NOSPACE;
	size_t before = (flags & GLOB_APPEND) ? g->gl_pathc : 0;
	int rc = REAL(glob)(r.path, flags, errfn, g);
	if (r.mapped && g->gl_pathv && g->gl_pathc > before)
		unmap_vector(g->gl_pathv, g->gl_offs + before, g->gl_pathc - before);
	return rc;
}

IP_EXPORT int glob64(const char *pattern, int flags, int (*errfn)(const char *, int), glob64_t *g)
{
	struct ip_rpath r;

	if (!ip_on())
		return REAL(glob64)(pattern, flags, errfn, g);
	if (ip_resolve(AT_FDCWD, pattern, &r))
		return GLOB_NOSPACE;
	size_t before = (flags & GLOB_APPEND) ? g->gl_pathc : 0;
	int rc = REAL(glob64)(r.path, flags, errfn, g);
	if (r.mapped && g->gl_pathv && g->gl_pathc > before)
		unmap_vector(g->gl_pathv, g->gl_offs + before, g->gl_pathc - before);
	return rc;
}

/* ----------------------------------------------------------------------------------------------
 * the current directory
 */

IP_EXPORT int chdir(const char *path)
{
	struct ip_rpath r;

	if (!ip_on())
		return REAL(chdir)(path);
	if (ip_resolve(AT_FDCWD, path, &r))
		return -1;
	int rc = REAL(chdir)(r.path);
	if (rc == 0) {
		int saved = errno;
		ip_cwd_refresh();
		errno = saved;
	}
	return rc;
}

IP_EXPORT int fchdir(int fd)
{
	int rc = REAL(fchdir)(fd);

	if (rc == 0 && ip_on()) {
		int saved = errno;
		ip_cwd_refresh();
		errno = saved;
	}
	return rc;
}

/* getcwd: a tier cwd is shown virtual.  A buffer too small for the tier path may still hold
 * the virtual one, as it would on a real tmpfs. */
IP_EXPORT char *getcwd(char *buf, size_t size)
{
	char tmp[PATH_MAX];

	if (!ip_on())
		return REAL(getcwd)(buf, size);
	char *res = REAL(getcwd)(buf, size);
	if (res) {
		ip_unmap_inplace(res);
		return res;
	}
	if (errno != ERANGE || !buf || size == 0)
		return NULL; /* libc's own errno (ENOENT for a removed cwd, EINVAL, ...) */
	if (!REAL(getcwd)(tmp, sizeof(tmp)) || !ip_unmap_inplace(tmp) || strlen(tmp) + 1 > size) {
		errno = ERANGE;
		return NULL;
	}
	memcpy(buf, tmp, strlen(tmp) + 1);
	return buf;
}

IP_EXPORT char *__getcwd_chk(char *buf, size_t size, size_t buflen)
{
	char *res = REAL(__getcwd_chk)(buf, size, buflen);

	if (res && ip_on())
		ip_unmap_inplace(res);
	return res;
}

IP_EXPORT char *get_current_dir_name(void)
{
	char *res = REAL(get_current_dir_name)();

	if (res && ip_on())
		ip_unmap_inplace(res);
	return res;
}

IP_EXPORT char *getwd(char *buf)
{
	char *res = REAL(getwd)(buf);

	if (res && ip_on())
		ip_unmap_inplace(res);
	return res;
}

/* ----------------------------------------------------------------------------------------------
 * realpath and canonicalize_file_name
 */

IP_EXPORT char *realpath(const char *path, char *resolved)
{
	struct ip_rpath r;

	if (!ip_on())
		return REAL(realpath)(path, resolved);
	if (ip_resolve(AT_FDCWD, path, &r))
		return NULL;
	char *res = REAL(realpath)(r.path, resolved);
	if (res)
		ip_unmap_inplace(res);
	return res;
}

IP_EXPORT char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen)
{
	struct ip_rpath r;

	if (!ip_on())
		return REAL(__realpath_chk)(path, resolved, resolvedlen);
	if (ip_resolve(AT_FDCWD, path, &r))
		return NULL;
	char *res = REAL(__realpath_chk)(r.path, resolved, resolvedlen);
	if (res)
		ip_unmap_inplace(res);
	return res;
}

IP_EXPORT char *canonicalize_file_name(const char *path)
{
	struct ip_rpath r;

	if (!ip_on())
		return REAL(canonicalize_file_name)(path);
	if (ip_resolve(AT_FDCWD, path, &r))
		return NULL;
	char *res = REAL(canonicalize_file_name)(r.path);
	if (res)
		ip_unmap_inplace(res);
	return res;
}
