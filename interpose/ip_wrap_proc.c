/*
 * ip_wrap_proc.c - wrappers of exec* and posix_spawn*: a program stored under a prefix runs
 * from the tier, and every child keeps the shim (LD_PRELOAD with this library, the TIERCKPT_
 * settings of our start) even when the parent hands it a trimmed environment.
 *
 * DESIGN
 * These run in vfork children (Python's subprocess, posix_spawn users) that share the parent's
 * memory: no allocation, no lock, nothing written outside this stack frame.  The environment is
 * rebuilt, only when something is missing, in an array on the stack.
 */
#include "interpose/ip_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

#define ENV_CAP 2048

/* The shared body of execve/execveat: resolves, fixes the environment, execs. */
IP_VFORK_SAFE static int exec_any(int at, int dirfd, const char *path, char *const argv[], char *const envp[],
		    int flags)
{
	struct ip_rpath r;
	char *env[ENV_CAP];
	char ld[PATH_MAX + 64];

	if (!ip_on())
		return at ? REAL(execveat)(dirfd, path, argv, envp, flags)
			  : REAL(execve)(path, argv, envp);
	if (ip_resolve(dirfd, path, &r))
		return -1;
	char *const *e = ip_env_fix(envp, env, ENV_CAP, ld, sizeof(ld));
	return at ? REAL(execveat)(r.dirfd, r.path, argv, e, flags) : REAL(execve)(r.path, argv, e);
}

/* 1 when some entry of the PATH list names a directory under a prefix (glibc's own search
 * would then look at the real, empty directory). */
IP_VFORK_SAFE static int path_list_hits_prefix(const char *list)
{
	struct ip_rpath r;
	char dir[PATH_MAX];

	for (const char *p = list; p && *p;) {
		const char *e = strchrnul(p, ':');
		size_t n = (size_t)(e - p);
		if (n > 0 && n < sizeof(dir)) {
			memcpy(dir, p, n);
			dir[n] = '\0';
			if (ip_resolve(AT_FDCWD, dir, &r) == 0 && (r.mapped || r.tier_rel))
				return 1;
		}
		p = *e ? e + 1 : e;
	}
	return 0;
}

/*
 * Searches PATH for `file` as execvp does (empty entries mean the cwd; EACCES remembered, ENOENT
 * and ENOTDIR skipped) with every candidate resolved through the shim.  exec_it != 0: exec the
 * first candidate that runs (a script without "#!" goes to /bin/sh, as glibc does) and return
 * -1 with errno when none does.  exec_it == 0: write the first executable candidate into out and
 * return 0.  Stack only: safe in a vfork child.
 */
IP_VFORK_SAFE static int path_search(const char *file, const char *list, char *out, int exec_it,
		       char *const argv[], char *const envp[])
{
	int eacces = 0;
	size_t flen = strlen(file);

	for (const char *p = list;;) {
		const char *e = strchrnul(p, ':');
		size_t n = (size_t)(e - p);
		char cand[PATH_MAX];
		struct ip_rpath r;
		if (n + 1 + flen + 1 <= sizeof(cand)) {
			memcpy(cand, p, n);
			size_t k = n;
			if (n == 0)
				cand[k++] = '.';
			cand[k++] = '/';
			memcpy(cand + k, file, flen + 1);
			if (ip_resolve(AT_FDCWD, cand, &r) == 0) {
				if (!exec_it) {
					if (REAL(access)(r.path, X_OK) == 0) {
						snprintf(out, PATH_MAX, "%s", r.path);
						return 0;
					}
				} else {
					REAL(execve)(r.path, argv, envp);
					if (errno == ENOEXEC) {
						size_t argc = 0;
						while (argv[argc])
							argc++;
						if (argc < 4096) {
							char *sh[argc + 2];
							sh[0] = (char *)"/bin/sh";
							sh[1] = (char *)r.path;
							for (size_t i = 1; i <= argc; i++)
								sh[i + 1] = argv[i];
							REAL(execve)("/bin/sh", sh, envp);
						}
						errno = ENOEXEC;
					}
				}
				if (errno == EACCES)
					eacces = 1;
				else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE &&
					 errno != ENODEV && errno != ETIMEDOUT)
					return -1;
			}
		}
		if (!*e)
			break;
		p = e + 1;
	}
	errno = eacces ? EACCES : ENOENT;
	return -1;
}

/* The shared body of the PATH-searching execs: a name without '/' is searched by glibc, unless
 * PATH names a directory under a prefix: then the shim searches, through the tier. */
IP_VFORK_SAFE static int execp_any(const char *file, char *const argv[], char *const envp[])
{
	char *env[ENV_CAP];
	char ld[PATH_MAX + 64];

	if (!ip_on())
		return REAL(execvpe)(file, argv, envp);
	if (file && strchr(file, '/'))
		return exec_any(0, AT_FDCWD, file, argv, envp, 0);
	char *const *e = ip_env_fix(envp, env, ENV_CAP, ld, sizeof(ld));
	const char *list = getenv("PATH");
	if (file && *file && list && path_list_hits_prefix(list))
		return path_search(file, list, NULL, 1, argv, e);
	return REAL(execvpe)(file, argv, e);
}

IP_EXPORT IP_VFORK_SAFE int execve(const char *path, char *const argv[], char *const envp[])
{
	return exec_any(0, AT_FDCWD, path, argv, envp, 0);
}

IP_EXPORT IP_VFORK_SAFE int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
		       int flags)
{
	return exec_any(1, dirfd, path, argv, envp, flags);
}

IP_EXPORT IP_VFORK_SAFE int execv(const char *path, char *const argv[])
{
	return exec_any(0, AT_FDCWD, path, argv, environ, 0);
}

IP_EXPORT IP_VFORK_SAFE int execvp(const char *file, char *const argv[])
{
	return execp_any(file, argv, environ);
}

IP_EXPORT IP_VFORK_SAFE int execvpe(const char *file, char *const argv[], char *const envp[])
{
	return execp_any(file, argv, envp);
}

IP_EXPORT IP_VFORK_SAFE int fexecve(int fd, char *const argv[], char *const envp[])
{
	char *env[ENV_CAP];
	char ld[PATH_MAX + 64];

	if (!ip_on())
		return REAL(fexecve)(fd, argv, envp);
	return REAL(fexecve)(fd, argv, ip_env_fix(envp, env, ENV_CAP, ld, sizeof(ld)));
}

/* Counts the variadic arguments of execl* up to the terminating NULL. */
IP_VFORK_SAFE static size_t count_args(const char *arg0, va_list ap)
{
	size_t n = 1;
	va_list aq;

	if (!arg0)
		return 0;
	va_copy(aq, ap);
	while (va_arg(aq, const char *))
		n++;
	va_end(aq);
	return n;
}

/* Fills argv (n + 1 slots) from arg0 and the va_list; leaves ap after the NULL. */
IP_VFORK_SAFE static void fill_args(char **argv, size_t n, const char *arg0, va_list *ap)
{
	if (n) {
		argv[0] = (char *)arg0;
		for (size_t i = 1; i < n; i++)
			argv[i] = va_arg(*ap, char *);
		(void)va_arg(*ap, char *); /* the NULL */
	}
	argv[n] = NULL;
}

#define ARGS_MAX 65536

/* The argument vector of an execl*: counted, then built on the stack (no allocation: vfork
 * children call these).  Declares `argv`; returns E2BIG past ARGS_MAX.  Leaves `ap` just after
 * the terminating NULL, where execle's envp follows. */
#define EXECL_ARGV(arg0, ap)                                                                  \
	size_t n_ = count_args(arg0, ap);                                                    \
	if (n_ >= ARGS_MAX) {                                                                \
		va_end(ap);                                                                  \
		errno = E2BIG;                                                               \
		return -1;                                                                   \
	}                                                                                    \
	char *argv[n_ + 1];                                                                  \
	fill_args(argv, n_, arg0, &ap)

IP_EXPORT IP_VFORK_SAFE int execl(const char *path, const char *arg0, ...)
{
	va_list ap;

	va_start(ap, arg0);
	EXECL_ARGV(arg0, ap);
	va_end(ap);
	return exec_any(0, AT_FDCWD, path, argv, environ, 0);
}

IP_EXPORT IP_VFORK_SAFE int execlp(const char *file, const char *arg0, ...)
{
	va_list ap;

	va_start(ap, arg0);
	EXECL_ARGV(arg0, ap);
	va_end(ap);
	return execp_any(file, argv, environ);
}

IP_EXPORT IP_VFORK_SAFE int execle(const char *path, const char *arg0, ...)
{
	va_list ap;

	va_start(ap, arg0);
	EXECL_ARGV(arg0, ap);
	char *const *envp = va_arg(ap, char *const *);
	va_end(ap);
	return exec_any(0, AT_FDCWD, path, argv, envp, 0);
}

/* ----------------------------------------------------------------------------------------------
 * posix_spawn: glibc runs the child's exec and file actions internally, so the path, the file
 * action paths and the environment are fixed here, in the parent.
 */

IP_VFORK_SAFE static int spawn_any(int search, pid_t *pid, const char *path,
		     const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
		     char *const argv[], char *const envp[])
{
	struct ip_rpath r;
	char *env[ENV_CAP];
	char ld[PATH_MAX + 64];

	if (!ip_on())
		return search ? REAL(posix_spawnp)(pid, path, fa, attr, argv, envp)
			      : REAL(posix_spawn)(pid, path, fa, attr, argv, envp);
	char found[PATH_MAX];
	const char *list = getenv("PATH");
	if ((!search || strchr(path, '/')) && ip_resolve(AT_FDCWD, path, &r) == 0 && r.mapped) {
		path = r.path;
	} else if (search && *path && !strchr(path, '/') && list && path_list_hits_prefix(list)) {
		if (path_search(path, list, found, 0, NULL, NULL))
			return errno;
		path = found;
		search = 0;
	}
	char *const *e = ip_env_fix(envp, env, ENV_CAP, ld, sizeof(ld));
	return search ? REAL(posix_spawnp)(pid, path, fa, attr, argv, e)
		      : REAL(posix_spawn)(pid, path, fa, attr, argv, e);
}

IP_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			  const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return spawn_any(0, pid, path, fa, attr, argv, envp);
}

IP_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			   const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	return spawn_any(1, pid, file, fa, attr, argv, envp);
}

IP_EXPORT int posix_spawn_file_actions_addopen(posix_spawn_file_actions_t *fa, int fd,
					       const char *path, int oflag, mode_t mode)
{
	struct ip_rpath r;

	if (ip_on()) {
		if (ip_resolve(AT_FDCWD, path, &r))
			return errno;
		path = r.path;
	}
	return REAL(posix_spawn_file_actions_addopen)(fa, fd, path, oflag, mode);
}

IP_EXPORT int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *fa,
						   const char *path)
{
	struct ip_rpath r;

	if (ip_on()) {
		if (ip_resolve(AT_FDCWD, path, &r))
			return errno;
		path = r.path;
	}
	return REAL(posix_spawn_file_actions_addchdir_np)(fa, path);
}
