/*
 * ip_core.c - the shim's core: start-up, the table of real functions, path resolution, and
 * what the shim remembers about descriptors and step writers.
 *
 * DESIGN
 * Start-up is lazy and once: the first wrapper call (or the library constructor, whichever comes
 * first) runs ip_init() under pthread_once with the re-entry guard held, so settings, GLib and
 * the tier preparation can use ordinary libc calls.  Any failure there logs one line and leaves
 * the process in pass-through mode: checkpoints then land on the real path and nothing is lost.
 *
 * Writer tracking: each process keeps, per step it writes, a count of its write descriptors and
 * one descriptor holding a shared OFD lock on the step's lock file in the tier (tier_step.h).
 * The kernel drops that lock when the last copy of the descriptor goes away, kill -9 included, so
 * the "is anyone writing this step" question is always answered truthfully across the node.
 * The registry is guarded by a mutex; it is only touched for files under a prefix.
 */
#include "interpose/ip_int.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tiering/tier_step.h"
#include "tiering/tier_upload.h"

struct ip_real ip_real;
struct ip_global ip_g;
__thread int ip_guard __attribute__((tls_model("initial-exec")));
uint8_t ip_fdclass[IP_FD_MAX];
uint16_t ip_fdstep[IP_FD_MAX];

extern char **environ;

/* In-process registry of steps this process writes (guarded by wstep_lock). */
struct ip_wstep {
	int refs;   /* write descriptors of this process into the step */
	int lockfd; /* holds the shared writer lock while refs > 0 */
	int prefix;
	char vstep[PATH_MAX];
};

static pthread_mutex_t wstep_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ip_wstep wsteps[IP_WSTEP_MAX];
static int fd_hiwater; /* highest fd ever tracked + 1; atomic */
static pthread_once_t init_once = PTHREAD_ONCE_INIT;

void *ip_real_load(void **slot, const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	/* __xstat and friends are compat-only symbols since glibc 2.33 */
	if (!p)
		p = dlvsym(RTLD_NEXT, name, "GLIBC_2.2.5");
	if (!p)
		p = dlsym(RTLD_DEFAULT, name);
	__atomic_store_n(slot, p, __ATOMIC_RELAXED);
	return p;
}

/* ----------------------------------------------------------------------------------------------
 * the leader: the one process of the node (and namespace) that uploads, in a background thread
 *
 * Every process that writes into a step arms a candidate thread once; it blocks on the leader
 * lock, and the one that gets it loads libtierckpt-upload.so (libcurl, OpenSSL: only ever in
 * the leader) and runs the uploader until the process exits.  When the leader dies the kernel
 * drops its lock and a waiting candidate of another process takes over.  The program's own
 * threads never wait for any of it, except at exit (bounded by TIERCKPT_EXIT_WAIT_S).
 */
static struct {
	int exiting; /* atomic: the process is in exit(): a candidate must not start uploading */
	int starting; /* atomic: the lock is ours and the uploader is being loaded */
	int armed;   /* atomic: this process started its candidate thread */
	int leading; /* atomic: it holds the leader lock */
	int lockfd;
	int kicked;  /* guarded by mu */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct tier_up_ctl ctl;
} leader = {.lockfd = -1, .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* The uploader's sleep between passes: ends early when kicked (a step committed here). */
static void leader_wait(long ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&leader.mu);
	if (!leader.kicked)
		pthread_cond_timedwait(&leader.cv, &leader.mu, &ts);
	leader.kicked = 0;
	pthread_mutex_unlock(&leader.mu);
}

/* Wakes this process's uploader, if it leads. */
static void leader_kick(void)
{
	if (!__atomic_load_n(&leader.leading, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&leader.mu);
	leader.kicked = 1;
	pthread_cond_signal(&leader.cv);
	pthread_mutex_unlock(&leader.mu);
}

static void leader_exit_wait(void);
static void leader_atexit(void);

static void *leader_main(void *arg)
{
	char path[PATH_MAX], lib[PATH_MAX];
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	sigset_t all;

	(void)arg;
	ip_guard = 1; /* everything this thread does is the shim's own */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL); /* the program's signals are not ours */
	if (snprintf(path, sizeof(path), "%s/meta/leader.lock", ip_g.cfg.tier_dir) >=
	    (int)sizeof(path))
		return NULL;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_error("uploads disabled in this process: cannot open %s: %s", path,
			  strerror(errno));
		return NULL;
	}
	leader.lockfd = fd; /* known at once: a forked child closes its copy (atfork_child) */
	while (fcntl(fd, F_OFD_SETLKW, &fl) == -1)
		if (errno != EINTR) {
			log_error("uploads disabled in this process: leader lock: %s", strerror(errno));
			leader.lockfd = -1;
			close(fd);
			return NULL;
		}
	__atomic_store_n(&leader.starting, 1, __ATOMIC_RELEASE);
	/* registered now, after whatever the program registered so far (an OpenSSL clean-up
	 * among them): exit handlers run newest first, so ours waits before those run */
	atexit(leader_atexit);
	if (__atomic_load_n(&leader.exiting, __ATOMIC_ACQUIRE))
		goto fail; /* too late: the next process or `tierckpt flush` uploads */
	char *slash = strrchr(ip_g.lib_path, '/');
	if (!slash || snprintf(lib, sizeof(lib), "%.*s/libtierckpt-upload.so",
			       (int)(slash - ip_g.lib_path), ip_g.lib_path) >= (int)sizeof(lib))
		goto fail;
	void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		log_error("uploads disabled: cannot load %s: %s", lib, dlerror());
		goto fail;
	}
	int (*up_main)(const struct cfg *, struct tier_up_ctl *) =
		(int (*)(const struct cfg *, struct tier_up_ctl *))dlsym(h, "tierckpt_upload_main");
	if (!up_main) {
		log_error("uploads disabled: %s has no tierckpt_upload_main", lib);
		goto fail;
	}
	leader.ctl.wait = leader_wait;
	leader.ctl.before_exit = leader_exit_wait;
	__atomic_store_n(&leader.ctl.pending, -1, __ATOMIC_RELEASE);
	__atomic_store_n(&leader.leading, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&leader.starting, 0, __ATOMIC_RELEASE);
	if (__atomic_load_n(&leader.exiting, __ATOMIC_ACQUIRE)) {
		__atomic_store_n(&leader.leading, 0, __ATOMIC_RELEASE);
		goto fail;
	}
	log_info("this process leads the uploads of namespace %s", ip_g.cfg.namespace_);
	up_main(&ip_g.cfg, &leader.ctl);
	return NULL;
fail:
	/* give the lock back: another process may have what this one lacks */
	leader.lockfd = -1;
	close(fd);
	__atomic_store_n(&leader.starting, 0, __ATOMIC_RELEASE);
	return NULL;
}

/* Starts this process's candidate thread, once, when S3 is configured.  Guard held. */
static void leader_arm(void)
{
	pthread_attr_t attr;
	pthread_t t;

	if (!ip_g.cfg.s3_base_path[0] || __atomic_exchange_n(&leader.armed, 1, __ATOMIC_ACQ_REL))
		return;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	int e = pthread_create(&t, &attr, leader_main, NULL);
	if (e)
		log_warn("cannot start the upload thread: %s (steps stay in memory; run "
			 "`tierckpt flush`)", strerror(e));
	pthread_attr_destroy(&attr);
}

/* tier_step_foreach callback: logs a step bound for S3 that is not there yet. */
static int log_one_unfinished(const struct cfg *c, int p, const char *vstep, long long num,
			      void *arg)
{
	struct tier_step_info info;

	(void)p;
	(void)arg;
	if (num % c->s3_every_n_steps == 0 && tier_step_eval(c, vstep, &info) == TIER_OK &&
	    info.state >= TIER_STEP_COMMITTED && info.state != TIER_STEP_PERSISTED)
		log_warn("exiting before %s is in S3 (%s); it stays in the tier for the next "
			 "uploader or `tierckpt flush`", vstep, tier_state_name(info.state));
	return 0;
}

/* Logs, one line each, the steps bound for S3 that are not there yet (at exit). */
static void log_unfinished(void)
{
	tier_step_foreach(&ip_g.cfg, log_one_unfinished, NULL);
}

/* A leader's exit: wait (bounded by TIERCKPT_EXIT_WAIT_S) for one full pass that finds nothing
 * left in progress, then stop the uploader (transfers in flight are cancelled: the journal
 * resumes them) and wait briefly until it no longer uses S3.  Runs once, from our atexit
 * handler or from OpenSSL's clean-up, whichever comes first. */
static void leader_exit_wait(void)
{
	static int done;

	__atomic_store_n(&leader.exiting, 1, __ATOMIC_SEQ_CST);
	/* a candidate that just got the lock finishes starting (or gives up) first */
	for (int i = 0; i < 100 && __atomic_load_n(&leader.starting, __ATOMIC_ACQUIRE); i++)
		usleep(20000);
	if (!__atomic_load_n(&leader.leading, __ATOMIC_SEQ_CST))
		return;
	if (__atomic_exchange_n(&done, 1, __ATOMIC_ACQ_REL)) {
		/* the second caller (OpenSSL's clean-up after our atexit, or the reverse) must not
		 * proceed while the uploader still runs */
		for (int i = 0; i < 100 && !__atomic_load_n(&leader.ctl.halted, __ATOMIC_ACQUIRE);
		     i++)
			usleep(50000);
		return;
	}
	IP_GUARD_ENTER();
	long long deadline = tier_now_ms() + ip_g.cfg.exit_wait_s * 1000;
	int p0 = __atomic_load_n(&leader.ctl.passes, __ATOMIC_ACQUIRE);
	for (;;) {
		int passes = __atomic_load_n(&leader.ctl.passes, __ATOMIC_ACQUIRE);
		int pending = __atomic_load_n(&leader.ctl.pending, __ATOMIC_ACQUIRE);
		if ((passes > p0 + 1 && pending <= 0) ||
		    __atomic_load_n(&leader.ctl.halted, __ATOMIC_ACQUIRE))
			break;
		if (tier_now_ms() >= deadline) {
			log_warn("waited %ld s at exit for uploads (TIERCKPT_EXIT_WAIT_S)",
				 ip_g.cfg.exit_wait_s);
			break;
		}
		leader_kick();
		usleep(50000);
	}
	__atomic_store_n(&leader.ctl.stop, 1, __ATOMIC_RELEASE);
	leader_kick();
	for (int i = 0; i < 60 && !__atomic_load_n(&leader.ctl.halted, __ATOMIC_ACQUIRE); i++)
		usleep(50000);
	log_unfinished();
	IP_GUARD_LEAVE();
}

static void leader_atexit(void)
{
	leader_exit_wait();
}

/* ----------------------------------------------------------------------------------------------
 * start-up
 */

/* Creates dir and its missing parents with mode (the last one gets last_mode).  Returns 0/-1. */
static int mkdirs(char *path, mode_t mode, mode_t last_mode)
{
	struct stat st;

	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 0; /* the common case at every start: one system call */
	for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
		*p = '\0';
		int rc = mkdir(path, mode);
		*p = '/';
		if (rc && errno != EEXIST)
			return -1;
	}
	if (mkdir(path, last_mode) == 0)
		return chmod(path, last_mode); /* umask must not weaken the mount-point mode */
	return errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

/* 1 when the LD_PRELOAD entry `e` ("LD_PRELOAD=...") already names our library. */
IP_VFORK_SAFE static int preload_has_us(const char *e)
{
	const char *v = e + strlen("LD_PRELOAD=");
	size_t n = strlen(ip_g.lib_path);

	for (const char *p = strstr(v, ip_g.lib_path); p; p = strstr(p + 1, ip_g.lib_path))
		if ((p == v || p[-1] == ':' || p[-1] == ' ') &&
		    (p[n] == '\0' || p[n] == ':' || p[n] == ' '))
			return 1;
	return 0;
}

/* Remembers the TIERCKPT_* settings and the LD_PRELOAD of our start so exec'd children keep
 * them. */
static void env_snapshot(void)
{
	ip_g.env_keep_len = 0;
	const char *pre = getenv("LD_PRELOAD");
	/* a child handed no LD_PRELOAD at all gets ours whole (a sanitizer runtime before us too) */
	if (pre && snprintf(ip_g.preload, sizeof(ip_g.preload), "LD_PRELOAD=%s", pre) <
			   (int)sizeof(ip_g.preload) &&
	    !preload_has_us(ip_g.preload))
		ip_g.preload[0] = '\0';
	for (char **e = environ; e && *e; e++) {
		if (strncmp(*e, "TIERCKPT_", 9) != 0)
			continue;
		size_t n = strlen(*e) + 1;
		if (ip_g.env_keep_len + n > sizeof(ip_g.env_keep))
			break;
		memcpy(ip_g.env_keep + ip_g.env_keep_len, *e, n);
		ip_g.env_keep_len += n;
	}
}

/* fork while another thread holds the writer registry: the child must not inherit a locked
 * mutex, so fork waits for it (prepare) and both sides release it. */
static void atfork_prepare(void)
{
	pthread_mutex_lock(&wstep_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&wstep_lock);
}

static void atfork_child(void)
{
	ip_g.pid = getpid();
	pthread_mutex_unlock(&wstep_lock);
	/* the child has no leader thread: its copy of the lock must not keep leadership alive */
	if (leader.lockfd >= 0)
		close(leader.lockfd);
	leader.lockfd = -1;
	leader.armed = leader.leading = leader.kicked = leader.starting = leader.exiting = 0;
	memset(&leader.ctl, 0, sizeof(leader.ctl));
	pthread_mutex_init(&leader.mu, NULL);
	pthread_cond_init(&leader.cv, NULL);
}

static void ip_init(void)
{
	struct cfg *c = &ip_g.cfg;
	char path[PATH_MAX];
	Dl_info info;
	int mode = IP_MODE_PASS;

	IP_GUARD_ENTER();
	int saved = errno;
	int rc = cfg_load(c);
	log_init(c);
	if (rc) {
		log_error("%s; running as pure pass-through (checkpoints go to the real path)",
			  c->err);
		goto out;
	}
	if (!c->active)
		goto out;
	rc = cfg_tier_prepare(c);
	if (rc) {
		log_error("%s; running as pure pass-through (checkpoints go to the real path)",
			  c->err);
		goto out;
	}
	/* map and unmap with the tier's physical path: a symlink above the shm dir must not make
	 * the kernel's answers (getcwd, realpath, /proc/self/fd) differ from ours */
	if (realpath(c->tier_dir, path) && strlen(path) < sizeof(c->tier_dir))
		memcpy(c->tier_dir, path, strlen(path) + 1);
	if (snprintf(ip_g.root, sizeof(ip_g.root), "%s/fs", c->tier_dir) >= (int)sizeof(ip_g.root))
		goto toolong;
	ip_g.rootlen = strlen(ip_g.root);
	for (int i = 0; i < c->n_prefixes; i++) {
		if (snprintf(path, sizeof(path), "%s%s", ip_g.root, c->prefixes[i]) >=
		    (int)sizeof(path))
			goto toolong;
		if (mkdirs(path, 0700, 01777)) {
			log_error("cannot create the tier directory %s: %s; running as pure "
				  "pass-through", path, strerror(errno));
			goto out;
		}
		if (snprintf(path, sizeof(path), "%s/meta/steps%s", c->tier_dir,
			     c->prefixes[i]) >= (int)sizeof(path))
			goto toolong;
		if (mkdirs(path, 0700, 0700)) {
			log_error("cannot create %s: %s; running as pure pass-through", path,
				  strerror(errno));
			goto out;
		}
	}
	if (dladdr((void *)ip_init, &info) && info.dli_fname && info.dli_fname[0] == '/')
		snprintf(ip_g.lib_path, sizeof(ip_g.lib_path), "%s", info.dli_fname);
	env_snapshot();
	ip_g.pid = getpid();
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	if (c->s3_base_path[0])
		atexit(leader_atexit); /* and again when this process takes the lead (see there) */
	mode = IP_MODE_ACTIVE;
	__atomic_store_n(&ip_g.mode, mode, __ATOMIC_RELEASE);
	ip_cwd_refresh();
	log_debug("active: %d prefix(es), tier %s", c->n_prefixes, c->tier_dir);
	goto done;
toolong:
	log_error("the tier path under %s is too long; running as pure pass-through", c->shm_dir);
out:
	__atomic_store_n(&ip_g.mode, mode, __ATOMIC_RELEASE);
done:
	errno = saved;
	IP_GUARD_LEAVE();
}

int ip_init_slow(void)
{
	if (ip_guard)
		return 0;
	pthread_once(&init_once, ip_init);
	return __atomic_load_n(&ip_g.mode, __ATOMIC_ACQUIRE) == IP_MODE_ACTIVE && !ip_guard;
}

__attribute__((constructor)) static void ip_ctor(void)
{
	ip_on();
}

/* ----------------------------------------------------------------------------------------------
 * paths
 */

IP_VFORK_SAFE int ip_prefix_of(const char *vpath)
{
	const struct cfg *c = &ip_g.cfg;

	for (int i = 0; i < c->n_prefixes; i++)
		if (ip_path_under(vpath, c->prefixes[i], c->prefix_len[i]))
			return i;
	return -1;
}

int ip_is_prefix_root(const char *vpath)
{
	const struct cfg *c = &ip_g.cfg;

	for (int i = 0; i < c->n_prefixes; i++) {
		size_t n = c->prefix_len[i];
		if (strncmp(vpath, c->prefixes[i], n) == 0 &&
		    (vpath[n] == '\0' || (vpath[n] == '/' && vpath[n + 1] == '\0')))
			return 1;
	}
	return 0;
}

IP_VFORK_SAFE int ip_unmap_inplace(char *buf)
{
	const struct cfg *c = &ip_g.cfg;

	return ip_path_unmap(ip_g.root, ip_g.rootlen, c->prefixes, c->prefix_len, c->n_prefixes,
			     buf, buf, PATH_MAX) > 0;
}

/* 1 when normalised `path` is an ancestor of some prefix. */
static int any_ancestor(const char *path)
{
	const struct cfg *c = &ip_g.cfg;

	for (int i = 0; i < c->n_prefixes; i++)
		if (ip_path_is_ancestor(path, c->prefixes[i], c->prefix_len[i]))
			return 1;
	return 0;
}

/* The virtual path of directory dirfd (AT_FDCWD: the cwd) into out.  Returns 0 or -1. */
IP_VFORK_SAFE static int dir_vpath(int dirfd, char *out)
{
	if (dirfd == AT_FDCWD) {
		if (!REAL(getcwd)(out, PATH_MAX))
			return -1;
	} else {
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", dirfd);
		ssize_t n = REAL(readlink)(proc, out, PATH_MAX - 1);
		if (n <= 0 || out[0] != '/')
			return -1;
		out[n] = '\0';
	}
	ip_unmap_inplace(out);
	return 0;
}

/* Maps normalised virtual path v (already in r->buf + rootlen) under prefix p. */
IP_VFORK_SAFE static void rpath_set_mapped(struct ip_rpath *r, int p)
{
	memcpy(r->buf, ip_g.root, ip_g.rootlen);
	r->path = r->buf;
	r->dirfd = AT_FDCWD;
	r->mapped = 1;
	r->prefix = p;
}

IP_VFORK_SAFE static int cwd_rel_may_hit(const char *path);

IP_VFORK_SAFE int ip_resolve_slow(int dirfd, const char *path, struct ip_rpath *r)
{
	const struct cfg *c = &ip_g.cfg;
	char *v = r->buf + ip_g.rootlen;
	size_t vcap = sizeof(r->buf) - ip_g.rootlen;
	char base[PATH_MAX];
	int cls, p, entered = 0;

	r->path = r->orig = path;
	r->dirfd = r->orig_dirfd = dirfd;
	r->prefix = -1;
	r->mapped = r->tier_rel = r->vknown = 0;
	if (!path || !path[0])
		return 0;
	if (path[0] != '/') {
		if (dirfd == AT_FDCWD)
			cls = __atomic_load_n(&ip_g.cwd_class, __ATOMIC_RELAXED);
		else
			cls = dirfd >= 0 && dirfd < IP_FD_MAX
				      ? __atomic_load_n(&ip_fdclass[dirfd], __ATOMIC_RELAXED) &
						IP_FD_CLASS_MASK
				      : IP_FD_OTHER;
		int dotdot = ip_path_has_dotdot(path);
		if (cls != IP_FD_ANCESTOR && !dotdot) {
			r->tier_rel = cls == IP_FD_TIER;
			return 0;
		}
		/* a cwd above a prefix: most relative paths (python -c from "/") go nowhere near it */
		if (cls == IP_FD_ANCESTOR && dirfd == AT_FDCWD && !dotdot &&
		    !(path[0] == '.' && (path[1] == '/' || path[1] == '\0')) &&
		    !ip_path_has_slash_pair(path) && !cwd_rel_may_hit(path))
			return 0;
		/* slow path: ".." or a directory above a prefix: resolve against its virtual path */
		if (dir_vpath(dirfd, base))
			return 0;
	} else {
		cls = IP_FD_OTHER;
	}
	if (ip_path_join_watch(path[0] == '/' ? NULL : base, path, v, vcap, c->prefixes,
			       c->prefix_len, c->n_prefixes, &entered) < 0) {
		if (cls != IP_FD_TIER && !(path[0] == '/' && ip_prefix_of(path) >= 0))
			return 0;
		errno = ENAMETOOLONG;
		return -1;
	}
	r->vknown = 1;
	p = ip_prefix_of(v);
	if (p >= 0) {
		rpath_set_mapped(r, p);
	} else if (entered || cls == IP_FD_TIER) {
		/* the walk passes through a prefix (or starts in the tier) and ends outside: name the
		 * target by its normal form, as the lexical rule says */
		r->path = v;
		r->dirfd = AT_FDCWD;
	}
	return 0;
}

const char *ip_vpath(struct ip_rpath *r)
{
	if (r->mapped)
		return r->buf + ip_g.rootlen;
	if (!r->tier_rel)
		return NULL;
	char base[PATH_MAX];
	char *v = r->buf + ip_g.rootlen;
	if (dir_vpath(r->orig_dirfd, base) ||
	    ip_path_join(base, r->orig, v, sizeof(r->buf) - ip_g.rootlen) < 0)
		return NULL;
	int p = ip_prefix_of(v);
	if (p < 0)
		return NULL;
	r->tier_rel = 0;
	r->vknown = 1;
	rpath_set_mapped(r, p);
	return v;
}

/* 1 when we are a vfork child sharing the parent's memory: leave the tables alone. */
static int in_vfork_child(void)
{
	return getpid() != ip_g.pid;
}

/*
 * The prefixes as seen from a cwd above them ("/" sees "checkpoints" for /checkpoints), so that a
 * relative path from there is decided by a comparison, without a getcwd per call.  Two copies:
 * a chdir fills the one not in use, then publishes it (readers racing a chdir of their own
 * process were racing the kernel's cwd anyway).  rel_all: the cwd is the real prefix dir itself
 * (a process started there): every relative path must be resolved.
 */
struct cwd_rel {
	int rel_all;
	size_t len[CFG_MAX_PREFIXES]; /* 0: this prefix is not below the cwd */
	char rel[CFG_MAX_PREFIXES][PATH_MAX];
};

static struct cwd_rel cwd_rels[2];
static int cwd_rel_cur; /* atomic: index of the published copy */

/* Publishes the prefixes relative to cwd (an ancestor of some of them, or the real prefix). */
static void cwd_rel_publish(const char *cwd)
{
	const struct cfg *c = &ip_g.cfg;
	int next = !__atomic_load_n(&cwd_rel_cur, __ATOMIC_RELAXED);
	struct cwd_rel *r = &cwd_rels[next];
	size_t cl = strlen(cwd);

	r->rel_all = ip_prefix_of(cwd) >= 0;
	for (int i = 0; i < c->n_prefixes; i++) {
		r->len[i] = 0;
		if (!ip_path_is_ancestor(cwd, c->prefixes[i], c->prefix_len[i]))
			continue;
		const char *rest = c->prefixes[i] + (cl == 1 ? 1 : cl + 1);
		r->len[i] = strlen(rest);
		memcpy(r->rel[i], rest, r->len[i] + 1);
	}
	__atomic_store_n(&cwd_rel_cur, next, __ATOMIC_RELEASE);
}

/* 1 when relative `path` (no "..", no "//" or "/.", not starting with "./") may lie under a
 * prefix, or above one, given the published cwd. */
IP_VFORK_SAFE static int cwd_rel_may_hit(const char *path)
{
	const struct cfg *c = &ip_g.cfg;
	const struct cwd_rel *r = &cwd_rels[__atomic_load_n(&cwd_rel_cur, __ATOMIC_ACQUIRE)];

	if (r->rel_all)
		return 1;
	for (int i = 0; i < c->n_prefixes; i++)
		if (r->len[i] && (ip_path_under(path, r->rel[i], r->len[i]) ||
				  ip_path_is_ancestor(path, r->rel[i], r->len[i])))
			return 1; /* under it, or above it (an fd of that dir must be known) */
	return 0;
}

void ip_cwd_refresh(void)
{
	char cwd[PATH_MAX];
	int cls = IP_FD_OTHER;

	if (in_vfork_child())
		return; /* the parent's cwd is the parent's */

	if (REAL(getcwd)(cwd, sizeof(cwd))) {
		if (ip_unmap_inplace(cwd)) {
			cls = IP_FD_TIER;
		} else if (any_ancestor(cwd) || ip_prefix_of(cwd) >= 0) {
			cls = IP_FD_ANCESTOR; /* also the real prefix dir: resolve everything */
			cwd_rel_publish(cwd);
		}
	}
	__atomic_store_n(&ip_g.cwd_class, cls, __ATOMIC_RELAXED);
}

/* ----------------------------------------------------------------------------------------------
 * descriptors and step writers
 */

/* Takes a writer reference on vstep; returns the registry slot + 1, or 0. */
static int wstep_acquire(const char *vstep, int prefix)
{
	int slot = -1, freeslot = -1;

	IP_GUARD_ENTER();
	pthread_mutex_lock(&wstep_lock);
	for (int i = 0; i < IP_WSTEP_MAX; i++) {
		if (wsteps[i].refs > 0 && strcmp(wsteps[i].vstep, vstep) == 0) {
			slot = i;
			break;
		}
		if (wsteps[i].refs == 0 && freeslot < 0)
			freeslot = i;
	}
	if (slot < 0 && freeslot >= 0) {
		struct ip_wstep *w = &wsteps[freeslot];
		w->lockfd = tier_step_lock_open(ip_g.cfg.tier_dir, vstep);
		if (w->lockfd >= 0) {
			snprintf(w->vstep, sizeof(w->vstep), "%s", vstep);
			w->prefix = prefix;
			slot = freeslot;
			/* a write into a step makes it WRITING again, whatever it was */
			tier_step_set(ip_g.cfg.tier_dir, vstep, TIER_STEP_WRITING, NULL);
			leader_arm();
		} else {
			log_warn("cannot take the writer lock of %s: %s (its state may commit "
				 "early)", vstep, strerror(errno));
		}
	}
	if (slot >= 0)
		wsteps[slot].refs++;
	pthread_mutex_unlock(&wstep_lock);
	IP_GUARD_LEAVE();
	return slot + 1;
}

/* Commits step vstep if its marker is in place and no process of the node writes it (our own
 * lock already dropped).  A marker closed or renamed while other files of the step are still
 * open for writing commits later, when the last of them closes (here, or by tier_step_eval). */
static void step_commit_if_done(const char *vstep, const char *how)
{
	const struct cfg *c = &ip_g.cfg;

	if (tier_step_marker_current(c, vstep, NULL) && tier_step_writers(c->tier_dir, vstep) == 0 &&
	    tier_step_set(c->tier_dir, vstep, TIER_STEP_COMMITTED, how) == TIER_OK)
		leader_kick();
}

/* Drops a writer reference; when it was this process's last on the step, releases the lock and
 * commits the step if its marker is there and nobody else writes (marker: this descriptor was
 * the marker itself). */
static void wstep_release(int slot1, int marker)
{
	struct ip_wstep *w = &wsteps[slot1 - 1];
	char vstep[PATH_MAX];
	int last = 0;

	IP_GUARD_ENTER();
	pthread_mutex_lock(&wstep_lock);
	if (w->refs > 0 && --w->refs == 0) {
		futimens(w->lockfd, NULL); /* last write activity, for the idle rule */
		close(w->lockfd);
		w->lockfd = -1;
		last = 1;
		memcpy(vstep, w->vstep, sizeof(vstep));
	}
	pthread_mutex_unlock(&wstep_lock);
	if (last)
		step_commit_if_done(vstep, marker ? "marker" : "marker-last-writer");
	IP_GUARD_LEAVE();
}

/* 1 when this process still holds write descriptors into vstep. */
static int wstep_held(const char *vstep)
{
	int held = 0;

	pthread_mutex_lock(&wstep_lock);
	for (int i = 0; i < IP_WSTEP_MAX && !held; i++)
		held = wsteps[i].refs > 0 && strcmp(wsteps[i].vstep, vstep) == 0;
	pthread_mutex_unlock(&wstep_lock);
	return held;
}

static void fd_hiwater_raise(int fd)
{
	int h = __atomic_load_n(&fd_hiwater, __ATOMIC_RELAXED);

	while (fd + 1 > h &&
	       !__atomic_compare_exchange_n(&fd_hiwater, &h, fd + 1, 0, __ATOMIC_RELAXED,
					    __ATOMIC_RELAXED))
		;
}

void ip_fd_opened(int fd, struct ip_rpath *r, int flags)
{
	uint8_t cls = IP_FD_OTHER;
	uint16_t step = 0;

	if (fd < 0 || fd >= IP_FD_MAX)
		return;
	if (r->mapped || r->tier_rel)
		cls = IP_FD_TIER;
	else if (r->vknown ? any_ancestor(r->buf + ip_g.rootlen)
			   : (r->path && r->path[0] == '/' && any_ancestor(r->path)))
		cls = IP_FD_ANCESTOR;
	if (cls == IP_FD_OTHER && !__atomic_load_n(&ip_fdclass[fd], __ATOMIC_RELAXED) &&
	    !__atomic_load_n(&ip_fdstep[fd], __ATOMIC_RELAXED))
		return; /* the common case: nothing known, nothing to forget */
	int saved = errno;
	if (in_vfork_child())
		goto out;
	if (cls == IP_FD_TIER && (flags & O_ACCMODE) != O_RDONLY) {
		const char *v = ip_vpath(r);
		char vstep[PATH_MAX];
		int itself;
		if (v && tier_step_of(v, ip_g.cfg.prefixes[r->prefix], ip_g.cfg.prefix_len[r->prefix],
				      vstep, sizeof(vstep), &itself) &&
		    !itself) {
			step = (uint16_t)wstep_acquire(vstep, r->prefix);
			const char *base = strrchr(v, '/') + 1;
			if (step && (size_t)(base - v) == strlen(vstep) + 1 &&
			    strcmp(base, ip_g.cfg.commit_marker) == 0)
				cls |= IP_FD_MARKER;
		}
	}
	fd_hiwater_raise(fd);
	__atomic_store_n(&ip_fdclass[fd], cls, __ATOMIC_RELAXED);
	__atomic_store_n(&ip_fdstep[fd], step, __ATOMIC_RELAXED);
out:
	errno = saved;
}

struct ip_fdtok ip_fd_take(int fd)
{
	struct ip_fdtok t = {0, 0};

	if (fd < 0 || fd >= IP_FD_MAX)
		return t;
	if (!__atomic_load_n(&ip_fdclass[fd], __ATOMIC_RELAXED) &&
	    !__atomic_load_n(&ip_fdstep[fd], __ATOMIC_RELAXED))
		return t;
	int saved = errno;
	if (!in_vfork_child()) {
		t.cls = __atomic_exchange_n(&ip_fdclass[fd], 0, __ATOMIC_RELAXED);
		t.step = __atomic_exchange_n(&ip_fdstep[fd], 0, __ATOMIC_RELAXED);
	}
	errno = saved;
	return t;
}

void ip_fd_untake(int fd, struct ip_fdtok t)
{
	if (fd < 0 || fd >= IP_FD_MAX || (!t.cls && !t.step))
		return;
	__atomic_store_n(&ip_fdclass[fd], t.cls, __ATOMIC_RELAXED);
	__atomic_store_n(&ip_fdstep[fd], t.step, __ATOMIC_RELAXED);
}

void ip_fd_release(struct ip_fdtok t)
{
	if (!t.step)
		return;
	int saved = errno;
	wstep_release(t.step, (t.cls & IP_FD_MARKER) != 0);
	errno = saved;
}

void ip_fd_closed_range(unsigned int lo, unsigned int hi)
{
	unsigned int h = (unsigned int)__atomic_load_n(&fd_hiwater, __ATOMIC_RELAXED);

	for (unsigned int fd = lo; fd < h && fd <= hi; fd++)
		ip_fd_release(ip_fd_take((int)fd));
}

void ip_fd_dup(int oldfd, int newfd)
{
	if (newfd < 0 || newfd >= IP_FD_MAX || oldfd == newfd)
		return;
	if (oldfd < 0 || oldfd >= IP_FD_MAX)
		return;
	uint8_t cls = __atomic_load_n(&ip_fdclass[oldfd], __ATOMIC_RELAXED);
	uint16_t step = __atomic_load_n(&ip_fdstep[oldfd], __ATOMIC_RELAXED);
	if (!cls && !step)
		return;
	int saved = errno;
	if (in_vfork_child())
		goto out;
	if (step) {
		IP_GUARD_ENTER();
		pthread_mutex_lock(&wstep_lock);
		wsteps[step - 1].refs++;
		pthread_mutex_unlock(&wstep_lock);
		IP_GUARD_LEAVE();
	}
	fd_hiwater_raise(newfd);
	/* only the original descriptor commits the marker */
	__atomic_store_n(&ip_fdclass[newfd], cls & IP_FD_CLASS_MASK, __ATOMIC_RELAXED);
	__atomic_store_n(&ip_fdstep[newfd], step, __ATOMIC_RELAXED);
out:
	errno = saved;
}

/* ----------------------------------------------------------------------------------------------
 * step directories
 */

/* 1 when vpath is itself a step directory of prefix; its virtual path goes to vstep. */
static int is_step_dir(const char *vpath, int prefix, char *vstep)
{
	int itself;

	return tier_step_of(vpath, ip_g.cfg.prefixes[prefix], ip_g.cfg.prefix_len[prefix], vstep,
			    PATH_MAX, &itself) &&
	       itself;
}

void ip_step_dir_made(const char *vpath, int prefix)
{
	char vstep[PATH_MAX];
	int saved = errno;

	if (is_step_dir(vpath, prefix, vstep) && !in_vfork_child()) {
		IP_GUARD_ENTER();
		tier_step_set(ip_g.cfg.tier_dir, vstep, TIER_STEP_WRITING, NULL);
		IP_GUARD_LEAVE();
	}
	errno = saved;
}

void ip_step_removed(const char *vpath, int prefix)
{
	char vstep[PATH_MAX];
	int saved = errno;

	if (is_step_dir(vpath, prefix, vstep) && !in_vfork_child()) {
		IP_GUARD_ENTER();
		tier_step_forget(ip_g.cfg.tier_dir, vstep);
		IP_GUARD_LEAVE();
	}
	errno = saved;
}

void ip_step_renamed_into(const char *vpath, int prefix)
{
	char vstep[PATH_MAX];
	int itself, saved = errno;
	const struct cfg *c = &ip_g.cfg;

	if (!tier_step_of(vpath, c->prefixes[prefix], c->prefix_len[prefix], vstep, sizeof(vstep),
			  &itself))
		goto out;
	IP_GUARD_ENTER();
	if (itself) {
		struct tier_step_info info;
		tier_step_set(c->tier_dir, vstep, TIER_STEP_WRITING, NULL);
		tier_step_eval(c, vstep, &info); /* commits it if its marker came along */
	} else {
		const char *base = strrchr(vpath, '/') + 1;
		if ((size_t)(base - vpath) == strlen(vstep) + 1 &&
		    strcmp(base, c->commit_marker) == 0 && !wstep_held(vstep))
			step_commit_if_done(vstep, "rename");
	}
	IP_GUARD_LEAVE();
out:
	errno = saved;
}

/* ----------------------------------------------------------------------------------------------
 * environment of exec'd children
 */

IP_VFORK_SAFE char *const *ip_env_fix(char *const *envp, char **out, size_t cap, char *ldbuf, size_t ldcap)
{
	size_t n = 0, k = 0;
	int ld_idx = -1, need_ld;

	if (!envp || !ip_g.lib_path[0])
		return envp;
	for (; envp[n]; n++)
		if (strncmp(envp[n], "LD_PRELOAD=", 11) == 0)
			ld_idx = (int)n;
	need_ld = ld_idx < 0 || !preload_has_us(envp[ld_idx]);
	/* which of our settings are missing? */
	int missing = 0;
	for (size_t off = 0; off < ip_g.env_keep_len; off += strlen(ip_g.env_keep + off) + 1) {
		const char *kv = ip_g.env_keep + off;
		size_t klen = (size_t)(strchr(kv, '=') - kv) + 1;
		size_t i;
		for (i = 0; i < n && strncmp(envp[i], kv, klen) != 0; i++)
			;
		missing += i == n;
	}
	if (!need_ld && !missing)
		return envp;
	if (n + (size_t)missing + 2 > cap)
		return envp;
	for (size_t i = 0; i < n; i++)
		out[k++] = envp[i];
	if (need_ld) {
		int w = ld_idx < 0 && ip_g.preload[0] ? snprintf(ldbuf, ldcap, "%s", ip_g.preload)
			: ld_idx < 0 ? snprintf(ldbuf, ldcap, "LD_PRELOAD=%s", ip_g.lib_path)
				   : snprintf(ldbuf, ldcap, "LD_PRELOAD=%s:%s", envp[ld_idx] + 11,
					      ip_g.lib_path);
		if (w < 0 || (size_t)w >= ldcap)
			return envp;
		if (ld_idx < 0)
			out[k++] = ldbuf;
		else
			out[ld_idx] = ldbuf;
	}
	for (size_t off = 0; off < ip_g.env_keep_len; off += strlen(ip_g.env_keep + off) + 1) {
		char *kv = ip_g.env_keep + off;
		size_t klen = (size_t)(strchr(kv, '=') - kv) + 1;
		size_t i;
		for (i = 0; i < n && strncmp(envp[i], kv, klen) != 0; i++)
			;
		if (i == n)
			out[k++] = kv;
	}
	out[k] = NULL;
	return out;
}
