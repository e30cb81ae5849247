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
#include <string.h>
#include <unistd.h>

extern char **environ;

#define ENV_CAP 2048

/* The shared body of execve/execveat: resolves, fixes the environment, execs. */
static int exec_any(int at, int dirfd, const char *path, char *const argv[], char *const envp[],
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

/* The shared body of the PATH-searching execs: a name without '/' is searched by glibc (the
 * search itself is not redirected), with the fixed environment. */
static int execp_any(const char *file, char *const argv[], char *const envp[])
{
	char *env[ENV_CAP];
	char ld[PATH_MAX + 64];

	if (!ip_on())
		return REAL(execvpe)(file, argv, envp);
	if (file && strchr(file, '/'))
		return exec_any(0, AT_FDCWD, file, argv, envp, 0);
	return REAL(execvpe)(file, argv, ip_env_fix(envp, env, ENV_CAP, ld, sizeof(ld)));
}

IP_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	return exec_any(0, AT_FDCWD, path, argv, envp, 0);
}

IP_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[],
		       int flags)
{
	return exec_any(1, dirfd, path, argv, envp, flags);
}

IP_EXPORT int execv(const char *path, char *const argv[])
{
	return exec_any(0, AT_FDCWD, path, argv, environ, 0);
}

IP_EXPORT int execvp(const char *file, char *const argv[])
{
	return execp_any(file, argv, environ);
}

IP_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	return execp_any(file, argv, envp);
}

IP_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	char *env[ENV_CAP];
	char ld[PATH_MAX + 64];

	if (!ip_on())
		return REAL(fexecve)(fd, argv, envp);
	return REAL(fexecve)(fd, argv, ip_env_fix(envp, env, ENV_CAP, ld, sizeof(ld)));
}

/* Counts the variadic arguments of execl* up to the terminating NULL. */
static size_t count_args(const char *arg0, va_list ap)
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
static void fill_args(char **argv, size_t n, const char *arg0, va_list *ap)
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

IP_EXPORT int execl(const char *path, const char *arg0, ...)
{
	va_list ap;

	va_start(ap, arg0);
	size_t n = count_args(arg0, ap);
	if (n >= ARGS_MAX) {
		va_end(ap);
		errno = E2BIG;
		return -1;
	}
	char *argv[n + 1];
	fill_args(argv, n, arg0, &ap);
	va_end(ap);
	return exec_any(0, AT_FDCWD, path, argv, environ, 0);
}

IP_EXPORT int execlp(const char *file, const char *arg0, ...)
{
	va_list ap;

	va_start(ap, arg0);
	size_t n = count_args(arg0, ap);
	if (n >= ARGS_MAX) {
		va_end(ap);
		errno = E2BIG;
		return -1;
	}
	char *argv[n + 1];
	fill_args(argv, n, arg0, &ap);
	va_end(ap);
	return execp_any(file, argv, environ);
}

IP_EXPORT int execle(const char *path, const char *arg0, ...)
{
	va_list ap;

	va_start(ap, arg0);
	size_t n = count_args(arg0, ap);
	if (n >= ARGS_MAX) {
		va_end(ap);
		errno = E2BIG;
		return -1;
	}
	char *argv[n + 1];
	fill_args(argv, n, arg0, &ap);
	char *const *envp = va_arg(ap, char *const *);
	va_end(ap);
	return exec_any(0, AT_FDCWD, path, argv, envp, 0);
}

/* ----------------------------------------------------------------------------------------------
 * posix_spawn: glibc runs the child's exec and file actions internally, so the path, the file
 * action paths and the environment are fixed here, in the parent.
 */

static int spawn_any(int search, pid_t *pid, const char *path,
		     const posix_spawn_file_actions_t *fa, const posix_spawnattr_t *attr,
		     char *const argv[], char *const envp[])
{
	struct ip_rpath r;
	char *env[ENV_CAP];
	char ld[PATH_MAX + 64];

	if (!ip_on())
		return search ? REAL(posix_spawnp)(pid, path, fa, attr, argv, envp)
			      : REAL(posix_spawn)(pid, path, fa, attr, argv, envp);
	if ((!search || strchr(path, '/')) && ip_resolve(AT_FDCWD, path, &r) == 0 && r.mapped)
		path = r.path;
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
