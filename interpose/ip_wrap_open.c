/*
 * ip_wrap_open.c - wrappers of the calls that create or close descriptors: the open family,
 * fopen/freopen/fclose, close/close_range/closefrom, dup*, fcntl(F_DUPFD*), mkstemp and mkdtemp,
 * inotify_add_watch.
 *
 * Every wrapper calls the same real function the program called (fortified __open_2 keeps its
 * checks), with the path resolved by ip_resolve().  O_DIRECT is dropped for tier files: tmpfs
 * rejects it on older kernels and page-cache semantics are what the tier gives anyway.
 */
#include "interpose/ip_int.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

enum open_kind {
	K_OPEN,
	K_OPEN64,
	K_OPEN_2,
	K_OPEN64_2,
	K_OPENAT,
	K_OPENAT64,
	K_OPENAT_2,
	K_OPENAT64_2,
	K_CREAT,
	K_CREAT64,
};

/* Calls the real function of kind k. */
static int open_real(enum open_kind k, int dirfd, const char *path, int flags, mode_t mode)
{
	switch (k) {
	case K_OPEN:
		return REAL(open)(path, flags, mode);
	case K_OPEN64:
		return REAL(open64)(path, flags, mode);
	case K_OPEN_2:
		return REAL(__open_2)(path, flags);
	case K_OPEN64_2:
		return REAL(__open64_2)(path, flags);
	case K_OPENAT:
		return REAL(openat)(dirfd, path, flags, mode);
	case K_OPENAT64:
		return REAL(openat64)(dirfd, path, flags, mode);
	case K_OPENAT_2:
		return REAL(__openat_2)(dirfd, path, flags);
	case K_OPENAT64_2:
		return REAL(__openat64_2)(dirfd, path, flags);
	case K_CREAT:
		return REAL(creat)(path, mode);
	case K_CREAT64:
		return REAL(creat64)(path, mode);
	}
	errno = ENOSYS;
	return -1;
}

/* The shared body of the open family.  Returns what the real call returned. */
static int open_any(enum open_kind k, int dirfd, const char *path, int flags, mode_t mode)
{
	struct ip_rpath r;

	if (!ip_on())
		return open_real(k, dirfd, path, flags, mode);
	if (ip_resolve(dirfd, path, &r))
		return -1;
	int real_flags = r.mapped || r.tier_rel ? flags & ~O_DIRECT : flags;
	int fd = open_real(k, r.dirfd, r.path, real_flags, mode);
	if (fd >= 0)
		ip_fd_opened(fd, &r, k == K_CREAT || k == K_CREAT64 ? O_WRONLY : flags);
	return fd;
}

#define OPEN_MODE(flags, mode)                                                              \
	do {                                                                               \
		mode = 0;                                                                  \
		if (__OPEN_NEEDS_MODE(flags)) {                                            \
			va_list ap;                                                        \
			va_start(ap, flags);                                               \
			mode = (mode_t)va_arg(ap, int);                                    \
			va_end(ap);                                                        \
		}                                                                          \
	} while (0)

IP_EXPORT int open(const char *path, int flags, ...)
{
	mode_t mode;

	OPEN_MODE(flags, mode);
	return open_any(K_OPEN, AT_FDCWD, path, flags, mode);
}

IP_EXPORT int open64(const char *path, int flags, ...)
{
	mode_t mode;

	OPEN_MODE(flags, mode);
	return open_any(K_OPEN64, AT_FDCWD, path, flags, mode);
}

IP_EXPORT int __open_2(const char *path, int flags)
{
	return open_any(K_OPEN_2, AT_FDCWD, path, flags, 0);
}

IP_EXPORT int __open64_2(const char *path, int flags)
{
	return open_any(K_OPEN64_2, AT_FDCWD, path, flags, 0);
}

IP_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode;

	OPEN_MODE(flags, mode);
	return open_any(K_OPENAT, dirfd, path, flags, mode);
}

IP_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t mode;

	OPEN_MODE(flags, mode);
	return open_any(K_OPENAT64, dirfd, path, flags, mode);
}

IP_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	return open_any(K_OPENAT_2, dirfd, path, flags, 0);
}

IP_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	return open_any(K_OPENAT64_2, dirfd, path, flags, 0);
}

IP_EXPORT int creat(const char *path, mode_t mode)
{
	return open_any(K_CREAT, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

IP_EXPORT int creat64(const char *path, mode_t mode)
{
	return open_any(K_CREAT64, AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

/* ----------------------------------------------------------------------------------------------
 * stdio
 */

/* fileno() without its errno: it sets EBADF for streams without a descriptor (fmemopen,
 * open_memstream, fopencookie), which the program must not see after a successful call. */
static int stream_fd(FILE *f)
{
	int saved = errno, fd = fileno(f);

	errno = saved;
	return fd;
}

/* open(2) access flags of an fopen mode string. */
static int fmode_flags(const char *mode)
{
	int plus = mode && strchr(mode, '+') != NULL;

	if (!mode || mode[0] == 'r')
		return plus ? O_RDWR : O_RDONLY;
	return plus ? O_RDWR : O_WRONLY;
}

/* The shared body of fopen/fopen64 (is64 selects the real function). */
static FILE *fopen_any(int is64, const char *path, const char *mode)
{
	struct ip_rpath r;

	if (!ip_on())
		return is64 ? REAL(fopen64)(path, mode) : REAL(fopen)(path, mode);
	if (ip_resolve(AT_FDCWD, path, &r))
		return NULL;
	FILE *f = is64 ? REAL(fopen64)(r.path, mode) : REAL(fopen)(r.path, mode);
	if (f)
		ip_fd_opened(stream_fd(f), &r, fmode_flags(mode));
	return f;
}

IP_EXPORT FILE *fopen(const char *path, const char *mode)
{
	return fopen_any(0, path, mode);
}

IP_EXPORT FILE *fopen64(const char *path, const char *mode)
{
	return fopen_any(1, path, mode);
}

/* The shared body of freopen/freopen64.  A NULL path reopens the same file: nothing to map. */
static FILE *freopen_any(int is64, const char *path, const char *mode, FILE *stream)
{
	struct ip_rpath r;

	if (!ip_on() || !path)
		return is64 ? REAL(freopen64)(path, mode, stream) : REAL(freopen)(path, mode, stream);
	if (ip_resolve(AT_FDCWD, path, &r))
		return NULL;
	struct ip_fdtok t = ip_fd_take(stream_fd(stream));
	FILE *f = is64 ? REAL(freopen64)(r.path, mode, stream) : REAL(freopen)(r.path, mode, stream);
	ip_fd_release(t);
	if (f)
		ip_fd_opened(stream_fd(f), &r, fmode_flags(mode));
	return f;
}

IP_EXPORT FILE *freopen(const char *path, const char *mode, FILE *stream)
{
	return freopen_any(0, path, mode, stream);
}

IP_EXPORT FILE *freopen64(const char *path, const char *mode, FILE *stream)
{
	return freopen_any(1, path, mode, stream);
}

IP_EXPORT int fclose(FILE *stream)
{
	if (!ip_on())
		return REAL(fclose)(stream);
	struct ip_fdtok t = ip_fd_take(stream_fd(stream));
	int rc = REAL(fclose)(stream);
	ip_fd_release(t);
	return rc;
}

/* ----------------------------------------------------------------------------------------------
 * close and dup
 */

IP_EXPORT int close(int fd)
{
	if (!ip_on())
		return REAL(close)(fd);
	struct ip_fdtok t = ip_fd_take(fd);
	int rc = REAL(close)(fd);
	ip_fd_release(t);
	return rc;
}

IP_EXPORT int close_range(unsigned int lo, unsigned int hi, int flags)
{
	int rc = REAL(close_range)(lo, hi, flags);

	if (rc == 0 && ip_on() && !(flags & CLOSE_RANGE_CLOEXEC))
		ip_fd_closed_range(lo, hi);
	return rc;
}

IP_EXPORT void closefrom(int lo)
{
	REAL(closefrom)(lo);
	if (lo >= 0 && ip_on())
		ip_fd_closed_range((unsigned int)lo, ~0U);
}

IP_EXPORT int dup(int fd)
{
	int nfd = REAL(dup)(fd);

	if (nfd >= 0 && ip_on())
		ip_fd_dup(fd, nfd);
	return nfd;
}

/* The shared body of dup2 (flags < 0) and dup3. */
static int dup23(int oldfd, int newfd, int flags)
{
	if (!ip_on())
		return flags < 0 ? REAL(dup2)(oldfd, newfd) : REAL(dup3)(oldfd, newfd, flags);
	struct ip_fdtok t = oldfd != newfd ? ip_fd_take(newfd) : (struct ip_fdtok){0, 0};
	int rc = flags < 0 ? REAL(dup2)(oldfd, newfd) : REAL(dup3)(oldfd, newfd, flags);
	if (rc < 0) {
		ip_fd_untake(newfd, t); /* nothing was closed: newfd keeps its meaning */
		return rc;
	}
	ip_fd_release(t);
	ip_fd_dup(oldfd, rc);
	return rc;
}

IP_EXPORT int dup2(int oldfd, int newfd)
{
	return dup23(oldfd, newfd, -1);
}

IP_EXPORT int dup3(int oldfd, int newfd, int flags)
{
	return dup23(oldfd, newfd, flags);
}

/* The shared body of fcntl/fcntl64: the argument is passed on as a machine word, as glibc's own
 * fcntl does; F_DUPFD* results inherit what the shim knows of the old descriptor. */
static int fcntl_any(int is64, int fd, int cmd, void *arg)
{
	int rc = is64 ? REAL(fcntl64)(fd, cmd, arg) : REAL(fcntl)(fd, cmd, arg);

	if (rc >= 0 && (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) && ip_on())
		ip_fd_dup(fd, rc);
	return rc;
}

/* The third argument of fcntl, read only for the commands that take one (reading an absent
 * variadic argument is undefined, and the sanitizers say so). */
#define FCNTL_ARG(cmd, arg)                                                                   \
	do {                                                                               \
		arg = NULL;                                                                \
		if (cmd != F_GETFD && cmd != F_GETFL && cmd != F_GETOWN && cmd != F_GETSIG &&  \
		    cmd != F_GETLEASE && cmd != F_GETPIPE_SZ && cmd != F_GET_SEALS) {          \
			va_list ap;                                                        \
			va_start(ap, cmd);                                                 \
			arg = va_arg(ap, void *);                                          \
			va_end(ap);                                                        \
		}                                                                          \
	} while (0)

IP_EXPORT int fcntl(int fd, int cmd, ...)
{
	void *arg;

	FCNTL_ARG(cmd, arg);
	return fcntl_any(0, fd, cmd, arg);
}

IP_EXPORT int fcntl64(int fd, int cmd, ...)
{
	void *arg;

	FCNTL_ARG(cmd, arg);
	return fcntl_any(1, fd, cmd, arg);
}

/* ----------------------------------------------------------------------------------------------
 * temporary files: the template is the program's buffer, so the random part the real call
 * chose in the tier path is copied back into it.
 */

enum mkstemp_kind { M_STEMP, M_STEMP64, M_OSTEMP, M_OSTEMP64, M_STEMPS, M_STEMPS64, M_OSTEMPS,
		    M_OSTEMPS64 };

static int mkstemp_real(enum mkstemp_kind k, char *t, int suffixlen, int flags)
{
	switch (k) {
	case M_STEMP:
		return REAL(mkstemp)(t);
	case M_STEMP64:
		return REAL(mkstemp64)(t);
	case M_OSTEMP:
		return REAL(mkostemp)(t, flags);
	case M_OSTEMP64:
		return REAL(mkostemp64)(t, flags);
	case M_STEMPS:
		return REAL(mkstemps)(t, suffixlen);
	case M_STEMPS64:
		return REAL(mkstemps64)(t, suffixlen);
	case M_OSTEMPS:
		return REAL(mkostemps)(t, suffixlen, flags);
	case M_OSTEMPS64:
		return REAL(mkostemps64)(t, suffixlen, flags);
	}
	errno = ENOSYS;
	return -1;
}

/* Copies the last `tail` bytes of the mapped template back into the program's template. */
static void template_copy_back(char *tmpl, const char *mapped, size_t tail)
{
	size_t tl = strlen(tmpl), ml = strlen(mapped);

	if (tail <= tl && tail <= ml)
		memcpy(tmpl + tl - tail, mapped + ml - tail, tail);
}

static int mkstemp_any(enum mkstemp_kind k, char *tmpl, int suffixlen, int flags)
{
	struct ip_rpath r;

	if (!ip_on())
		return mkstemp_real(k, tmpl, suffixlen, flags);
	if (ip_resolve(AT_FDCWD, tmpl, &r))
		return -1;
	if (!r.mapped) {
		int fd = mkstemp_real(k, tmpl, suffixlen, flags);
		if (fd >= 0)
			ip_fd_opened(fd, &r, O_RDWR);
		return fd;
	}
	int fd = mkstemp_real(k, r.buf, suffixlen, flags);
	if (fd >= 0) {
		template_copy_back(tmpl, r.buf, (size_t)(suffixlen > 0 ? suffixlen : 0) + 6);
		ip_fd_opened(fd, &r, O_RDWR);
	}
	return fd;
}

IP_EXPORT int mkstemp(char *t)
{
	return mkstemp_any(M_STEMP, t, 0, 0);
}

IP_EXPORT int mkstemp64(char *t)
{
	return mkstemp_any(M_STEMP64, t, 0, 0);
}

IP_EXPORT int mkostemp(char *t, int flags)
{
	return mkstemp_any(M_OSTEMP, t, 0, flags);
}

IP_EXPORT int mkostemp64(char *t, int flags)
{
	return mkstemp_any(M_OSTEMP64, t, 0, flags);
}

IP_EXPORT int mkstemps(char *t, int suffixlen)
{
	return mkstemp_any(M_STEMPS, t, suffixlen, 0);
}

IP_EXPORT int mkstemps64(char *t, int suffixlen)
{
	return mkstemp_any(M_STEMPS64, t, suffixlen, 0);
}

IP_EXPORT int mkostemps(char *t, int suffixlen, int flags)
{
	return mkstemp_any(M_OSTEMPS, t, suffixlen, flags);
}

IP_EXPORT int mkostemps64(char *t, int suffixlen, int flags)
{
	return mkstemp_any(M_OSTEMPS64, t, suffixlen, flags);
}

IP_EXPORT char *mkdtemp(char *tmpl)
{
	struct ip_rpath r;

	if (!ip_on())
		return REAL(mkdtemp)(tmpl);
	if (ip_resolve(AT_FDCWD, tmpl, &r))
		return NULL;
	if (!r.mapped)
		return REAL(mkdtemp)(tmpl);
	if (!REAL(mkdtemp)(r.buf))
		return NULL;
	template_copy_back(tmpl, r.buf, 6);
	return tmpl;
}

IP_EXPORT int inotify_add_watch(int fd, const char *path, uint32_t mask)
{
	struct ip_rpath r;

	if (!ip_on())
		return REAL(inotify_add_watch)(fd, path, mask);
	if (ip_resolve(AT_FDCWD, path, &r))
		return -1;
	return REAL(inotify_add_watch)(fd, r.path, mask);
}
