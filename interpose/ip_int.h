/*
 * ip_int.h - internals shared by the shim's wrappers: the table of real libc functions, the
 * process-wide state, the re-entry guard, path resolution and descriptor tracking.
 *
 * DESIGN
 * A wrapper does, in order: (1) ip_on() - one atomic load and one TLS read; false for a program
 * without TIERCKPT_PREFIX, for our own calls (re-entry guard) and before/while init; (2)
 * ip_resolve() - decides from the text of the path (and, for relative paths, from what we know
 * about the directory it is relative to) whether it names something under a prefix, and if so
 * builds the tier path in a stack buffer; (3) the real call with the resolved path; (4) for calls
 * that create or close descriptors or directories, bookkeeping with errno saved and restored.
 * Paths outside every prefix take (1)-(3) only: no allocation, no lock, no system call of ours.
 *
 * What the shim knows about descriptors is one byte per fd (ip_fdclass): whether it refers to
 * something in the tier, or to a directory that is an ancestor of a prefix (so that openat(fd,
 * "ckpt/x") from an fd of "/" is redirected).  Any other fd is treated as "elsewhere"; relative
 * paths without ".." from such a directory cannot reach a prefix, so they pass untouched.
 */
#ifndef TIERCKPT_IP_INT_H
#define TIERCKPT_IP_INT_H

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <limits.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/ipc.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/types.h>
#include <utime.h>

#include "config/cfg.h"
#include "config/log.h"
#include "interpose/ip_path.h"

#define IP_EXPORT __attribute__((visibility("default")))

/* Code that may run in a vfork child: the child runs on the parent's stack and execs without
 * returning, which leaves AddressSanitizer's stack shadow stale (false reports in the parent),
 * so such code is not instrumented by it. */
#define IP_VFORK_SAFE __attribute__((no_sanitize_address))

/* --- the real functions ----------------------------------------------------------------------- */
#define IP_SYM(ret, name, params) typedef ret(*ip_fn_##name) params;
#include "interpose/ip_syms.def"
#undef IP_SYM

struct ip_real {
#define IP_SYM(ret, name, params) ip_fn_##name name;
#include "interpose/ip_syms.def"
#undef IP_SYM
};

extern struct ip_real ip_real;

/* ip_real_load - look up libc's `name` (the next definition after ours), store it in *slot and
 * return it.  Never returns NULL for a symbol glibc 2.36 exports. */
void *ip_real_load(void **slot, const char *name);

#define REAL(name)                                                                       \
	((ip_fn_##name)(__atomic_load_n((void **)&ip_real.name, __ATOMIC_RELAXED)        \
				?: ip_real_load((void **)&ip_real.name, #name)))

/* --- process-wide state ----------------------------------------------------------------------- */
enum ip_mode { IP_MODE_UNINIT = 0, IP_MODE_ACTIVE, IP_MODE_PASS };

/* fd and cwd classes (low bits of ip_fdclass) and flags */
enum {
	IP_FD_OTHER = 0,
	IP_FD_TIER = 1,     /* refers to a file or directory in the tier */
	IP_FD_ANCESTOR = 2, /* a directory that is an ancestor of a prefix (or the real prefix) */
	IP_FD_CLASS_MASK = 3,
	IP_FD_MARKER = 0x10, /* opened for writing as a step's commit marker */
};

#define IP_FD_MAX 65536
#define IP_WSTEP_MAX 64

struct ip_global {
	int mode;              /* enum ip_mode; atomic */
	int cwd_class;         /* IP_FD_*; atomic */
	pid_t pid;             /* this process (updated after fork): detects a vfork child */
	struct cfg cfg;        /* read-only after init */
	char root[PATH_MAX];   /* <tier>/fs: the tier path of virtual "/x" is root + "/x" */
	size_t rootlen;
	char lib_path[PATH_MAX]; /* this library, for LD_PRELOAD of exec'd children */
	char preload[PATH_MAX];  /* "LD_PRELOAD=..." of our start, when it names us */
	char env_keep[8192];   /* "TIERCKPT_...=..." strings of our start, NUL-separated */
	size_t env_keep_len;
};

extern struct ip_global ip_g;
extern __thread int ip_guard __attribute__((tls_model("initial-exec")));
extern uint8_t ip_fdclass[IP_FD_MAX];
extern uint16_t ip_fdstep[IP_FD_MAX];

/* ip_init_slow - first use: load settings, prepare the tier, decide the mode.  Returns 1 when
 * the shim is active for this call. */
int ip_init_slow(void);

/* ip_on - 1 when this call must be examined (shim active, not our own call).  Hot path. */
static inline int ip_on(void)
{
	int m = __atomic_load_n(&ip_g.mode, __ATOMIC_ACQUIRE);

	if (__builtin_expect(m == IP_MODE_ACTIVE, 1))
		return !ip_guard;
	if (m == IP_MODE_PASS)
		return 0;
	return ip_init_slow();
}

/* --- path resolution -------------------------------------------------------------------------- */
struct ip_rpath {
	const char *path; /* hand this to libc ... */
	int dirfd;        /* ... relative to this */
	int prefix;       /* index of the prefix when mapped, else -1 */
	int mapped;       /* buf holds root + virtual path; path == buf */
	int tier_rel;     /* relative to a tier directory, left to the kernel; vpath not known */
	int vknown;       /* buf + rootlen holds the normalised virtual path (mapped or not) */
	int orig_dirfd;
	const char *orig;
	char buf[PATH_MAX];
};

/* 1 when absolute `path` may name something under a prefix once normalised.  Hot path: one
 * vector scan for "//" and "/." (such paths take the full normalisation), then a plain
 * boundary-safe comparison with each prefix. */
static inline IP_VFORK_SAFE int ip_abs_candidate(const char *path)
{
	const struct cfg *c = &ip_g.cfg;

	if (ip_path_has_slash_pair(path))
		return 1;
	for (int i = 0; i < c->n_prefixes; i++)
		if (ip_path_under(path, c->prefixes[i], c->prefix_len[i]))
			return 1;
	return 0;
}

IP_VFORK_SAFE int ip_resolve_slow(int dirfd, const char *path, struct ip_rpath *r);

/* ip_resolve - fill *r for the (dirfd, path) pair a program passed.  Returns 0, or -1 with
 * errno = ENAMETOOLONG when a path under a prefix has no room for its tier form.  Pure apart
 * from getcwd/readlink of /proc/self/fd on the slow paths.  The common case - an absolute path
 * far from every prefix - is decided inline. */
static inline IP_VFORK_SAFE int ip_resolve(int dirfd, const char *path, struct ip_rpath *r)
{
	if (__builtin_expect(path && path[0] == '/' && !ip_abs_candidate(path), 1)) {
		r->path = path;
		r->dirfd = dirfd;
		r->prefix = -1;
		r->mapped = r->tier_rel = r->vknown = 0;
		return 0;
	}
	return ip_resolve_slow(dirfd, path, r);
}

/* ip_vpath - the normalised virtual path of a resolved pair when it lies under a prefix (also
 * for tier_rel pairs, computed on demand), else NULL.  May convert r to an absolute mapping. */
const char *ip_vpath(struct ip_rpath *r);

/* ip_prefix_of - index of the prefix a normalised virtual path lies under, or -1. */
int ip_prefix_of(const char *vpath);

/* ip_unmap_inplace - turn a tier path in buf (NUL-terminated) into its virtual path, in place.
 * Returns 1 when it changed, 0 when buf is not a tier path of a prefix. */
int ip_unmap_inplace(char *buf);

/* ip_is_prefix_root - 1 when the normalised virtual path is exactly a prefix (a mount point in
 * the oracle: rmdir and rename of it fail with EBUSY). */
int ip_is_prefix_root(const char *vpath);

/* Wrapper generators for calls that only take a path: W1 (one path, relative to the cwd) and
 * WAT (dirfd + path) rebind the `path`/`dirfd` parameters to their resolved values and make the
 * real call with the very argument list the program passed. */
#define W1(ret, name, failv, params, args)                                                    \
	IP_EXPORT ret name params                                                            \
	{                                                                                    \
		struct ip_rpath r;                                                           \
		if (ip_on()) {                                                               \
			if (ip_resolve(AT_FDCWD, path, &r))                                  \
				return failv;                                                \
			path = r.path;                                                       \
		}                                                                            \
		return REAL(name) args;                                                      \
	}

#define WAT(ret, name, failv, params, args)                                                   \
	IP_EXPORT ret name params                                                            \
	{                                                                                    \
		struct ip_rpath r;                                                           \
		if (ip_on()) {                                                               \
			if (ip_resolve(dirfd, path, &r))                                     \
				return failv;                                                \
			path = r.path;                                                       \
			dirfd = r.dirfd;                                                     \
		}                                                                            \
		return REAL(name) args;                                                      \
	}

/* --- descriptors and steps -------------------------------------------------------------------- */

/* ip_fd_opened - record what a new fd refers to, after a successful open-like call with the
 * resolved pair r and open flags.  Starts writer tracking for files in a step.  Keeps errno. */
void ip_fd_opened(int fd, struct ip_rpath *r, int flags);

/* ip_fd_take / ip_fd_release - the program closes fd: take() forgets it (call before the real
 * close, so a concurrent open reusing the number is not clobbered), release() ends its writer
 * tracking after the real close (closing a step's marker commits the step: its bytes are in).
 * Keep errno.  Cheap when fd was never tracked. */
struct ip_fdtok {
	uint8_t cls;
	uint16_t step;
};
struct ip_fdtok ip_fd_take(int fd);
void ip_fd_release(struct ip_fdtok t);
/* ip_fd_untake - the close did not happen after all (dup2 failed): give fd its token back. */
void ip_fd_untake(int fd, struct ip_fdtok t);

/* ip_fd_closed_range - take and release every tracked fd in [lo, hi]. */
void ip_fd_closed_range(unsigned int lo, unsigned int hi);

/* ip_fd_dup - newfd now refers to what oldfd refers to (newfd's old meaning already taken).
 * Keeps errno. */
void ip_fd_dup(int oldfd, int newfd);

/* ip_step_dir_made / ip_step_removed / ip_step_renamed_into - step bookkeeping after mkdir,
 * rmdir and rename of paths under a prefix (vpath normalised).  Keep errno. */
void ip_step_dir_made(const char *vpath, int prefix);
void ip_step_removed(const char *vpath, int prefix);
void ip_step_renamed_into(const char *vpath, int prefix);

/* ip_cwd_refresh - recompute the class of the current directory after chdir/fchdir. */
void ip_cwd_refresh(void);

/* ip_env_fix - build in `out` (capacity cap entries) an environment = envp plus whatever the
 * shim needs to follow the program into a child (LD_PRELOAD with our library, our TIERCKPT_
 * settings).  Returns envp itself when nothing is missing, `out` when it added, or envp when
 * out is too small.  No allocation: safe in a vfork child. */
IP_VFORK_SAFE char *const *ip_env_fix(char *const *envp, char **out, size_t cap, char *ldbuf, size_t ldcap);

/* Guard helpers: our own work inside a wrapper must not come back into the wrappers. */
#define IP_GUARD_ENTER() (ip_guard++)
#define IP_GUARD_LEAVE() (ip_guard--)

#endif
