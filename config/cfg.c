/*
 * cfg.c - tierckpt settings: read from the environment and the optional INI file named by
 * TIERCKPT_CONFIG, validated, stored in struct cfg (see cfg.h and DESIGN.md §3); and the safe
 * creation of the tier directory <shm_dir>/tierckpt-<uid>/<namespace>.
 *
 * DESIGN
 * cfg_load() is one pass over a fixed table of settings.  Each value is looked up in the
 * environment first, then in the INI file's [tierckpt] group; the file is read whole with GLib's
 * GKeyFile, the values we know are copied out as strings and the GKeyFile is freed before return,
 * so nothing allocated here outlives the call.  The first invalid value stops the pass and leaves
 * exactly one line in c->err: VAR="value"[ (from FILE)]: rule.  The value is shown escaped (quotes,
 * backslashes and control bytes as \", \\, \xNN) and cut after a bounded length, so an attacker-
 * or accident-sized value can neither overflow nor break the line.  Nothing is ever replaced by
 * its default: an empty value is invalid except where empty has a documented meaning (PREFIX:
 * inactive, S3_BASE_PATH: memory only, LOG_FILE: stderr).
 *
 * Prefix checks are lexical (on normalised text, via interpose/ip_path.h), like the shim's own
 * matching: a prefix must not contain the shm dir or the tier directory (the tier would be
 * redirected into itself) and must not lie inside this user's tier root <shm_dir>/tierckpt-<uid>.
 *
 * cfg_tier_prepare() walks down from an O_NOFOLLOW|O_DIRECTORY descriptor of the shm dir and
 * creates each level with mkdirat() relative to its parent's descriptor, then reopens it with
 * O_NOFOLLOW and checks the fstat() of what it actually opened, so a symlink or a foreign
 * directory planted at any level we create is refused, and a concurrent creator (EEXIST) is
 * simply re-checked like any existing directory.
 */
#include "config/cfg.h"

#include "interpose/ip_path.h"

#include <errno.h>
#include <fcntl.h>
#include <dlfcn.h>
#include <glib.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "config/log.h"

/* How many bytes of a user value an error line shows before cutting it with "...". */
#define CFG_SHOW_MAX 200

/* The settings that may come from the INI file; the key is the variable without TIERCKPT_,
 * lower case.  Indexes are used by cfg_load's steps below. */
enum {
	K_PREFIX,
	K_NAMESPACE,
	K_SHM_DIR,
	K_S3_BASE_PATH,
	K_S3_EVERY_N_STEPS,
	K_MEMORY_PERCENT,
	K_KEEP_STEPS,
	K_COMMIT_MARKER,
	K_COMMIT_IDLE_MS,
	K_LOG_LEVEL,
	K_LOG_FILE,
	K_NODES,
	K_NODE_ID,
	K_S3_CONCURRENCY,
	K_S3_PART_MB,
	K_EXIT_WAIT_S,
	K_S3_RETRY_S,
	K_COUNT
};

static const struct {
	const char *var;
	const char *key;
} cfg_keys[K_COUNT] = {
	[K_PREFIX] = {"TIERCKPT_PREFIX", "prefix"},
	[K_NAMESPACE] = {"TIERCKPT_NAMESPACE", "namespace"},
	[K_SHM_DIR] = {"TIERCKPT_SHM_DIR", "shm_dir"},
	[K_S3_BASE_PATH] = {"TIERCKPT_S3_BASE_PATH", "s3_base_path"},
	[K_S3_EVERY_N_STEPS] = {"TIERCKPT_S3_EVERY_N_STEPS", "s3_every_n_steps"},
	[K_MEMORY_PERCENT] = {"TIERCKPT_MEMORY_PERCENT", "memory_percent"},
	[K_KEEP_STEPS] = {"TIERCKPT_KEEP_STEPS", "keep_steps"},
	[K_COMMIT_MARKER] = {"TIERCKPT_COMMIT_MARKER", "commit_marker"},
	[K_COMMIT_IDLE_MS] = {"TIERCKPT_COMMIT_IDLE_MS", "commit_idle_ms"},
	[K_LOG_LEVEL] = {"TIERCKPT_LOG_LEVEL", "log_level"},
	[K_LOG_FILE] = {"TIERCKPT_LOG_FILE", "log_file"},
	[K_NODES] = {"TIERCKPT_NODES", "nodes"},
	[K_NODE_ID] = {"TIERCKPT_NODE_ID", "node_id"},
	[K_S3_CONCURRENCY] = {"TIERCKPT_S3_CONCURRENCY", "s3_concurrency"},
	[K_S3_PART_MB] = {"TIERCKPT_S3_PART_MB", "s3_part_mb"},
	[K_EXIT_WAIT_S] = {"TIERCKPT_EXIT_WAIT_S", "exit_wait_s"},
	[K_S3_RETRY_S] = {"TIERCKPT_S3_RETRY_S", "s3_retry_s"},
};

#define CFG_INI_GROUP "tierckpt"

/* One cfg_load() call's sources: the INI values (g_malloc'd, freed at the end). */
struct cfg_src {
	char *file_val[K_COUNT];
};

/* The value of setting k: environment first, then the file.  *from_file tells which.  Returns
 * NULL when neither has it.  Any thread. */
static const char *src_get(const struct cfg_src *s, int k, int *from_file)
{
	const char *v = getenv(cfg_keys[k].var);

	*from_file = 0;
	if (v)
		return v;
	if (s->file_val[k]) {
		*from_file = 1;
		return s->file_val[k];
	}
	return NULL;
}

/*
 * show - writes `s` into out (size outsz) escaped for a one-line message: '"' and '\\' are
 * backslash-escaped, control bytes become \xNN, other bytes (UTF-8 included) are kept.  At most
 * CFG_SHOW_MAX input bytes are shown, then "...".  Returns out.  Any thread.
 */
static const char *show(const char *s, char *out, size_t outsz)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	if (outsz == 0)
		return out;
	for (i = 0; s[i] && i < CFG_SHOW_MAX; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[5];
		size_t n = 0;

		if (ch == '"' || ch == '\\') {
			esc[n++] = '\\';
			esc[n++] = (char)ch;
		} else if (ch < 0x20 || ch == 0x7f) {
			esc[n++] = '\\';
			esc[n++] = 'x';
			esc[n++] = hex[ch >> 4];
			esc[n++] = hex[ch & 15];
		} else {
			esc[n++] = (char)ch;
		}
		if (o + n + 4 > outsz) /* keep room for "..." and NUL */
			break;
		memcpy(out + o, esc, n);
		o += n;
	}
	if (s[i] && o + 4 <= outsz) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

/*
 * cfg_fail - sets c->err to `VAR="value"[ (from FILE)]: <rule>` and returns rc.  The rule is a
 * printf format; user-controlled strings in it must have gone through show().  Any thread.
 */
static int cfg_fail(struct cfg *c, int rc, const char *var, const char *val, int from_file,
		    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int cfg_fail(struct cfg *c, int rc, const char *var, const char *val, int from_file,
		    const char *fmt, ...)
{
	char qval[CFG_SHOW_MAX * 4 + 4], qfile[CFG_SHOW_MAX * 4 + 4], rule[700];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(rule, sizeof(rule), fmt, ap);
	va_end(ap);
	if (n < 0)
		rule[0] = '\0';
	show(val, qval, sizeof(qval));
	if (from_file)
		show(c->config_file, qfile, sizeof(qfile));
	n = snprintf(c->err, sizeof(c->err), "%s=\"%s\"%s%s%s: %s", var, qval,
		     from_file ? " (from " : "", from_file ? qfile : "", from_file ? ")" : "", rule);
	if (n < 0)
		c->err[0] = '\0';
	return rc;
}

/*
 * parse_ulong - strict decimal: one or more ASCII digits, nothing else (no sign, no blanks),
 * no overflow, within [lo, hi].  Returns 0 and stores *out, or -1.  Any thread.
 */
static int parse_ulong(const char *s, long lo, long hi, long *out)
{
	long v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		int d = *s - '0';
		if (v > (hi - d) / 10) /* v*10+d > hi, and hi <= LONG_MAX */
			return -1;
		v = v * 10 + d;
	}
	if (v < lo)
		return -1;
	*out = v;
	return 0;
}

/* Copies s into out when it fits (strlen < outsz).  Returns 0 or -1.  Any thread. */
static int copy_str(char *out, size_t outsz, const char *s)
{
	size_t n = strnlen(s, outsz);

	if (n >= outsz)
		return -1;
	memcpy(out, s, n + 1);
	return 0;
}

/* out = a + "/" + b without doubling the '/' when a is "/".  Returns 0 or -1 (too long).
 * Any thread. */
static int join2(char *out, size_t outsz, const char *a, const char *b)
{
	int n = snprintf(out, outsz, "%s/%s", strcmp(a, "/") == 0 ? "" : a, b);

	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

/* Normalises absolute `in` into out (size PATH_MAX) without a trailing '/' (except "/").
 * Returns the length or -1 when it does not fit.  Any thread. */
static int norm_dir(const char *in, char *out)
{
	int n = ip_path_normalize(in, out, PATH_MAX);

	if (n < 0)
		return -1;
	while (n > 1 && out[n - 1] == '/')
		out[--n] = '\0';
	return n;
}

/* The user's tier root <shm_dir>/tierckpt-<uid>.  Returns 0 or -1 (too long).  Any thread. */
static int tier_root_path(const char *shm_dir, char *out, size_t outsz)
{
	char name[32];

	snprintf(name, sizeof(name), "tierckpt-%u", (unsigned)getuid());
	return join2(out, outsz, shm_dir, name);
}

/* ---------------------------------------------------------------------------------------------
 * The INI file
 */

/*
 * GLib's key-file parser, loaded on first use.  The shim lives in every process of the job and
 * almost none of them reads a settings file, so the library does not link GLib (it would add
 * GLib's and PCRE's loading and relocations to the start of every process, /bin/true included).
 */
struct cfg_glib {
	GKeyFile *(*key_file_new)(void);
	gboolean (*key_file_load_from_file)(GKeyFile *, const gchar *, GKeyFileFlags, GError **);
	gboolean (*key_file_has_group)(GKeyFile *, const gchar *);
	gchar **(*key_file_get_keys)(GKeyFile *, const gchar *, gsize *, GError **);
	gchar *(*key_file_get_string)(GKeyFile *, const gchar *, const gchar *, GError **);
	void (*key_file_free)(GKeyFile *);
	void (*error_free)(GError *);
	void (*strfreev)(gchar **);
	void (*free)(gpointer);
};

static struct cfg_glib glib_fns;
static pthread_once_t glib_once = PTHREAD_ONCE_INIT;
static int glib_ok;

static void glib_load(void)
{
	void *h = dlopen("libglib-2.0.so.0", RTLD_NOW | RTLD_LOCAL);
	struct cfg_glib *g = &glib_fns;

	if (!h)
		return;
#define GLIB_SYM(field, name) (*(void **)&g->field = dlsym(h, name)) != NULL
	glib_ok = GLIB_SYM(key_file_new, "g_key_file_new") &&
		  GLIB_SYM(key_file_load_from_file, "g_key_file_load_from_file") &&
		  GLIB_SYM(key_file_has_group, "g_key_file_has_group") &&
		  GLIB_SYM(key_file_get_keys, "g_key_file_get_keys") &&
		  GLIB_SYM(key_file_get_string, "g_key_file_get_string") &&
		  GLIB_SYM(key_file_free, "g_key_file_free") &&
		  GLIB_SYM(error_free, "g_error_free") && GLIB_SYM(strfreev, "g_strfreev") &&
		  GLIB_SYM(free, "g_free");
#undef GLIB_SYM
}

/*
 * load_file - reads the file named by TIERCKPT_CONFIG (already in c->config_file) into s.
 * Returns CFG_OK, CFG_EIO (missing/unparsable file) or CFG_EINVAL (no [tierckpt] group, an
 * unknown key, a value GKeyFile cannot decode).  Frees its GKeyFile before returning; the caller
 * frees s's strings.  Any thread.
 */
static int load_file(struct cfg *c, struct cfg_src *s)
{
	const struct cfg_glib *g = &glib_fns;
	GError *gerr = NULL;
	gchar **keys = NULL;
	char msg[400];
	int rc = CFG_OK;

	pthread_once(&glib_once, glib_load);
	if (!glib_ok)
		return cfg_fail(c, CFG_EIO, "TIERCKPT_CONFIG", c->config_file, 0,
				"reading a settings file needs GLib (libglib-2.0.so.0), which "
				"cannot be loaded");
	GKeyFile *kf = g->key_file_new();
	if (!g->key_file_load_from_file(kf, c->config_file, G_KEY_FILE_NONE, &gerr)) {
		rc = cfg_fail(c, CFG_EIO, "TIERCKPT_CONFIG", c->config_file, 0,
			      "cannot read the settings file: %s",
			      show(gerr ? gerr->message : "unknown error", msg, sizeof(msg)));
		goto out;
	}
	if (!g->key_file_has_group(kf, CFG_INI_GROUP)) {
		rc = cfg_fail(c, CFG_EINVAL, "TIERCKPT_CONFIG", c->config_file, 0,
			      "the settings file has no [" CFG_INI_GROUP "] group");
		goto out;
	}
	keys = g->key_file_get_keys(kf, CFG_INI_GROUP, NULL, &gerr);
	if (!keys) {
		rc = cfg_fail(c, CFG_EIO, "TIERCKPT_CONFIG", c->config_file, 0,
			      "cannot read the settings file: %s",
			      show(gerr ? gerr->message : "unknown error", msg, sizeof(msg)));
		goto out;
	}
	for (gchar **k = keys; *k; k++) {
		int i;

		for (i = 0; i < K_COUNT; i++)
			if (strcmp(*k, cfg_keys[i].key) == 0)
				break;
		if (i == K_COUNT) {
			/* A misspelt key silently ignored would be a setting silently defaulted. */
			rc = cfg_fail(c, CFG_EINVAL, "TIERCKPT_CONFIG", c->config_file, 0,
				      "unknown key \"%s\" in [" CFG_INI_GROUP "]",
				      show(*k, msg, sizeof(msg)));
			goto out;
		}
		if (s->file_val[i])
			continue; /* a repeated key: GKeyFile already returns the last one */
		s->file_val[i] = g->key_file_get_string(kf, CFG_INI_GROUP, *k, &gerr);
		if (!s->file_val[i]) {
			rc = cfg_fail(c, CFG_EINVAL, "TIERCKPT_CONFIG", c->config_file, 0,
				      "cannot read key \"%s\": %s", *k,
				      show(gerr ? gerr->message : "unknown error", msg,
					   sizeof(msg)));
			goto out;
		}
	}
out:
	if (gerr)
		g->error_free(gerr);
	if (keys)
		g->strfreev(keys);
	g->key_file_free(kf);
	return rc;
}

/* ---------------------------------------------------------------------------------------------
 * One step per setting.  Each returns CFG_OK or fails through cfg_fail(); each touches only *c
 * and the read-only sources, so any thread may run them (through cfg_load).
 */

static int load_node_id(struct cfg *c, const struct cfg_src *s);

/* TIERCKPT_NAMESPACE: [A-Za-z0-9._-]{1,64}, not "." or "..". */
static int load_namespace(struct cfg *c, const struct cfg_src *s)
{
	/* sized like the bound below, so strnlen never looks past it */
	static const char def_ns[CFG_NAMESPACE_MAX + 1] = "default";
	int ff;
	const char *v = src_get(s, K_NAMESPACE, &ff);
	size_t n;

	if (!v)
		v = def_ns;
	n = strnlen(v, CFG_NAMESPACE_MAX + 1);
	int ok = n >= 1 && n <= CFG_NAMESPACE_MAX && strcmp(v, ".") != 0 && strcmp(v, "..") != 0;
	for (size_t i = 0; ok && i < n; i++) {
		char ch = v[i];
		ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		     (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
	}
	if (!ok)
		return cfg_fail(c, CFG_EINVAL, cfg_keys[K_NAMESPACE].var, v, ff,
				"must be 1 to %d characters from A-Z a-z 0-9 . _ - and not \".\" "
				"or \"..\"",
				CFG_NAMESPACE_MAX);
	memcpy(c->namespace_, v, n + 1);
	return CFG_OK;
}

/* TIERCKPT_SHM_DIR: absolute, normalised; also computes c->tier_dir. */
static int load_shm_dir(struct cfg *c, const struct cfg_src *s)
{
	int ff;
	const char *v = src_get(s, K_SHM_DIR, &ff);
	char root[PATH_MAX];

	if (!v)
		v = "/dev/shm";
	if (v[0] != '/')
		return cfg_fail(c, CFG_EINVAL, cfg_keys[K_SHM_DIR].var, v, ff,
				"must be an absolute path");
	if (strnlen(v, PATH_MAX) >= PATH_MAX || norm_dir(v, c->shm_dir) < 0)
		return cfg_fail(c, CFG_EINVAL, cfg_keys[K_SHM_DIR].var, v, ff,
				"is too long (at most %d bytes)", PATH_MAX - 1);
	if (tier_root_path(c->shm_dir, root, sizeof(root)) ||
	    join2(c->tier_dir, sizeof(c->tier_dir), root, c->namespace_))
		return cfg_fail(c, CFG_EINVAL, cfg_keys[K_SHM_DIR].var, v, ff,
				"is too long: the tier directory <shm_dir>/tierckpt-<uid>/<namespace> "
				"must fit in %d bytes",
				PATH_MAX - 1);
	return CFG_OK;
}

/*
 * One prefix element [p, p+n): absolute, not "/", fits, normalised into c->prefixes[i], and not
 * clashing with the tier.  `v` is the whole list for the message.
 */
static int load_one_prefix(struct cfg *c, const char *v, int ff, const char *p, size_t n, int i)
{
	const char *var = cfg_keys[K_PREFIX].var;
	char elem[PATH_MAX], q[CFG_SHOW_MAX * 4 + 4], q2[CFG_SHOW_MAX * 4 + 4], root[PATH_MAX];
	char *out = c->prefixes[i];
	int len;

	if (n >= PATH_MAX)
		return cfg_fail(c, CFG_EINVAL, var, v, ff,
				"element %d is too long (at most %d bytes)", i + 1, PATH_MAX - 1);
	memcpy(elem, p, n);
	elem[n] = '\0';
	if (elem[0] != '/')
		return cfg_fail(c, CFG_EINVAL, var, v, ff,
				"\"%s\" is not an absolute path; must be a ':'-separated list of "
				"absolute paths",
				show(elem, q, sizeof(q)));
	len = norm_dir(elem, out);
	if (len < 0)
		return cfg_fail(c, CFG_EINVAL, var, v, ff,
				"element %d is too long (at most %d bytes)", i + 1, PATH_MAX - 1);
	if (strcmp(out, "/") == 0)
		return cfg_fail(c, CFG_EINVAL, var, v, ff,
				"\"%s\" is the root directory, which cannot be a prefix",
				show(elem, q, sizeof(q)));
	c->prefix_len[i] = (size_t)len;

	if (ip_path_under(c->shm_dir, out, (size_t)len))
		return cfg_fail(c, CFG_EINVAL, var, v, ff,
				"%s contains the shm dir %s (TIERCKPT_SHM_DIR), so the tier would "
				"be redirected into itself",
				show(out, q, sizeof(q)), show(c->shm_dir, q2, sizeof(q2)));
	if (ip_path_under(c->tier_dir, out, (size_t)len))
		return cfg_fail(c, CFG_EINVAL, var, v, ff,
				"%s contains the tier directory %s, so the tier would be "
				"redirected into itself",
				show(out, q, sizeof(q)), show(c->tier_dir, q2, sizeof(q2)));
	if (tier_root_path(c->shm_dir, root, sizeof(root)) == 0 &&
	    ip_path_under(out, root, strlen(root)))
		return cfg_fail(c, CFG_EINVAL, var, v, ff,
				"%s lies inside the tier directory %s; a prefix must be outside it",
				show(out, q, sizeof(q)), show(root, q2, sizeof(q2)));
	for (int j = 0; j < i; j++) {
		if (strcmp(c->prefixes[j], out) == 0)
			return cfg_fail(c, CFG_EINVAL, var, v, ff, "%s is listed twice",
					show(out, q, sizeof(q)));
		if (ip_path_under(out, c->prefixes[j], c->prefix_len[j]) ||
		    ip_path_under(c->prefixes[j], out, (size_t)len))
			return cfg_fail(c, CFG_EINVAL, var, v, ff,
					"%s and %s are nested; prefixes must not lie one under "
					"another",
					show(c->prefixes[j], q2, sizeof(q2)), show(out, q, sizeof(q)));
	}
	return CFG_OK;
}

/* TIERCKPT_PREFIX: sets c->active; called only when the value is set (an empty one is refused:
 * it names no path, and a job that meant to redirect must not write to the real one). */
static int load_prefixes(struct cfg *c, const struct cfg_src *s)
{
	int ff, rc;
	const char *v = src_get(s, K_PREFIX, &ff);
	const char *p;

	if (!v)
		return CFG_OK; /* inactive */
	if (!*v)
		return cfg_fail(c, CFG_EINVAL, cfg_keys[K_PREFIX].var, v, ff,
				"is empty; must be an absolute path (or ':'-separated list), or "
				"unset to turn tierckpt off");
	p = v;
	for (int i = 0;; i++) {
		const char *e = strchr(p, ':');
		size_t n = e ? (size_t)(e - p) : strlen(p);

		if (n == 0)
			return cfg_fail(c, CFG_EINVAL, cfg_keys[K_PREFIX].var, v, ff,
					"element %d is empty; must be a ':'-separated list of "
					"absolute paths",
					i + 1);
		if (i == CFG_MAX_PREFIXES)
			return cfg_fail(c, CFG_EINVAL, cfg_keys[K_PREFIX].var, v, ff,
					"lists more than %d prefixes", CFG_MAX_PREFIXES);
		rc = load_one_prefix(c, v, ff, p, n, i);
		if (rc)
			return rc;
		c->n_prefixes = i + 1;
		if (!e)
			break;
		p = e + 1;
	}
	c->active = 1;
	return CFG_OK;
}

/* A bucket name: 3-63 of [a-z0-9.-], starting and ending with a letter or digit, no "..". */
static int bucket_ok(const char *b, size_t n)
{
	if (n < 3 || n > 63)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char ch = b[i];
		int alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
		if (!alnum && ch != '.' && ch != '-')
			return 0;
		if ((i == 0 || i == n - 1) && !alnum)
			return 0;
		if (ch == '.' && b[i + 1] == '.')
			return 0;
	}
	return 1;
}

/*
 * TIERCKPT_S3_BASE_PATH: "" or s3://bucket[/key/prefix/]; stored as s3://bucket/ or
 * s3://bucket/key/prefix/ (repeated '/' collapsed, one trailing '/').  "." and ".." key
 * components and control bytes are refused: they name nothing sensible in S3.
 */
static int load_s3(struct cfg *c, const struct cfg_src *s)
{
	static const char scheme[] = "s3://";
	const char *var = cfg_keys[K_S3_BASE_PATH].var;
	int ff;
	const char *v = src_get(s, K_S3_BASE_PATH, &ff);
	const char *b, *p;
	size_t bn, o;
	char *out = c->s3_base_path;

	if (!v || !*v)
		return CFG_OK; /* memory only */
	if (strncmp(v, scheme, sizeof(scheme) - 1) != 0)
		return cfg_fail(c, CFG_EINVAL, var, v, ff, "must be s3://bucket/key/prefix/");
	b = v + sizeof(scheme) - 1;
	bn = strcspn(b, "/");
	if (!bucket_ok(b, bn))
		return cfg_fail(c, CFG_EINVAL, var, v, ff,
				"must be s3://bucket/key/prefix/ with a bucket name of 3 to 63 "
				"characters from a-z 0-9 . -, starting and ending with a letter "
				"or digit");
	if (strnlen(v, sizeof(c->s3_base_path)) >= sizeof(c->s3_base_path) - 1)
		return cfg_fail(c, CFG_EINVAL, var, v, ff, "is too long (at most %d bytes)",
				(int)sizeof(c->s3_base_path) - 2);
	o = (size_t)(b - v) + bn;
	memcpy(out, v, o);
	out[o++] = '/';
	for (p = b + bn; *p;) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		size_t n = strcspn(p, "/");
		if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
			return cfg_fail(c, CFG_EINVAL, var, v, ff,
					"the key prefix must not have \".\" or \"..\" components");
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
				return cfg_fail(c, CFG_EINVAL, var, v, ff,
						"the key prefix must not contain control "
						"characters");
		/* fits: the output is never longer than the input plus one '/' */
		memcpy(out + o, p, n);
		o += n;
		out[o++] = '/';
		p += n;
	}
	out[o] = '\0';
	return CFG_OK;
}

/* An integer setting k in [lo, hi] (default def) into *out; `rule` completes the message. */
static int load_long(struct cfg *c, const struct cfg_src *s, int k, long lo, long hi, long def,
		     const char *rule, long *out)
{
	int ff;
	const char *v = src_get(s, k, &ff);

	if (!v) {
		*out = def;
		return CFG_OK;
	}
	if (parse_ulong(v, lo, hi, out))
		return cfg_fail(c, CFG_EINVAL, cfg_keys[k].var, v, ff, "%s", rule);
	return CFG_OK;
}

/* TIERCKPT_COMMIT_MARKER: a plain file name. */
static int load_marker(struct cfg *c, const struct cfg_src *s)
{
	int ff;
	const char *v = src_get(s, K_COMMIT_MARKER, &ff);

	if (!v)
		v = ".metadata";
	if (!*v || strchr(v, '/') || strcmp(v, ".") == 0 || strcmp(v, "..") == 0 ||
	    copy_str(c->commit_marker, sizeof(c->commit_marker), v))
		return cfg_fail(c, CFG_EINVAL, cfg_keys[K_COMMIT_MARKER].var, v, ff,
				"must be a file name: 1 to %d bytes, no '/', not \".\" or \"..\"",
				NAME_MAX);
	return CFG_OK;
}

/* TIERCKPT_LOG_LEVEL and TIERCKPT_LOG_FILE. */
static int load_log(struct cfg *c, const struct cfg_src *s)
{
	int ff, lvl;
	const char *v = src_get(s, K_LOG_LEVEL, &ff);

	if (v) {
		lvl = log_level_parse(v);
		if (lvl < 0)
			return cfg_fail(c, CFG_EINVAL, cfg_keys[K_LOG_LEVEL].var, v, ff,
					"must be one of error, warn, info, debug");
		c->log_level = lvl;
	}
	v = src_get(s, K_LOG_FILE, &ff);
	if (v && copy_str(c->log_file, sizeof(c->log_file), v))
		return cfg_fail(c, CFG_EINVAL, cfg_keys[K_LOG_FILE].var, v, ff,
				"is too long (at most %d bytes)", PATH_MAX - 1);
	return CFG_OK;
}

/* torchrun's WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE (environment only): -1 when absent. */
static int load_ranks(struct cfg *c)
{
	static const char *const vars[] = {"WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"};
	int *dst[] = {&c->world_size, &c->rank, &c->local_rank, &c->local_world_size};

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);
		long n;

		*dst[i] = -1;
		if (!v)
			continue;
		if (parse_ulong(v, 0, INT_MAX, &n))
			return cfg_fail(c, CFG_EINVAL, vars[i], v, 0,
					"must be a non-negative integer");
		*dst[i] = (int)n;
	}
	return CFG_OK;
}

/* Fills the defaults, so that even an inactive or failed config is a sane struct.  Returns
 * nothing.  Any thread. */
static void cfg_defaults(struct cfg *c)
{
	/* Field by field, not memset: the struct is ~57 KB of mostly unused path buffers, and
	 * touching every page costs each process under the shim a dozen page faults at start.
	 * Every field is set; a string buffer by its first byte (prefixes[i] are read only below
	 * n_prefixes). */
	c->active = c->n_prefixes = 0;
	memset(c->prefix_len, 0, sizeof(c->prefix_len));
	c->tier_dir[0] = c->s3_base_path[0] = c->log_file[0] = c->config_file[0] = '\0';
	c->node_id[0] = c->err[0] = '\0';
	c->nodes = 0;
	c->s3_concurrency = 8;
	c->s3_part_mb = 8;
	c->exit_wait_s = 600;
	c->s3_retry_s = 30;
	strcpy(c->namespace_, "default");
	strcpy(c->shm_dir, "/dev/shm");
	c->s3_every_n_steps = 1;
	c->memory_percent = 20;
	c->keep_steps = 3;
	strcpy(c->commit_marker, ".metadata");
	c->commit_idle_ms = 10000;
	c->log_level = LOG_WARN;
	c->world_size = c->rank = c->local_rank = c->local_world_size = -1;
}

/* cfg_load - see cfg.h: CFG_OK / CFG_EINVAL / CFG_EIO, any thread. */
int cfg_load(struct cfg *c)
{
	struct cfg_src s;
	const char *conf;
	int ff, rc = CFG_OK;
	long n;

	memset(&s, 0, sizeof(s));
	cfg_defaults(c);

	conf = getenv("TIERCKPT_CONFIG");
	if (conf && *conf) {
		if (copy_str(c->config_file, sizeof(c->config_file), conf)) {
			rc = cfg_fail(c, CFG_EIO, "TIERCKPT_CONFIG", conf, 0,
				      "is too long (at most %d bytes)", PATH_MAX - 1);
			goto out;
		}
		rc = load_file(c, &s);
		if (rc)
			goto out;
	}

	/* Inactive: pass-through, nothing else is looked at (DESIGN.md §3: unset = pure
	 * pass-through).  An empty TIERCKPT_PREFIX is set, and refused by load_prefixes. */
	if (!src_get(&s, K_PREFIX, &ff))
		goto out;

	if ((rc = load_namespace(c, &s)) || (rc = load_shm_dir(c, &s)) ||
	    (rc = load_prefixes(c, &s)) || (rc = load_s3(c, &s)))
		goto out;
	if ((rc = load_long(c, &s, K_S3_EVERY_N_STEPS, 1, LONG_MAX, 1,
			    "must be an integer >= 1", &c->s3_every_n_steps)))
		goto out;
	if ((rc = load_long(c, &s, K_MEMORY_PERCENT, 20, 100, 20,
			    "must be an integer from 20 to 100", &n)))
		goto out;
	c->memory_percent = (int)n;
	if ((rc = load_long(c, &s, K_KEEP_STEPS, 1, LONG_MAX, 3, "must be an integer >= 1",
			    &c->keep_steps)) ||
	    (rc = load_marker(c, &s)) ||
	    (rc = load_long(c, &s, K_COMMIT_IDLE_MS, 0, LONG_MAX, 10000,
			    "must be an integer >= 0 (milliseconds)", &c->commit_idle_ms)) ||
	    (rc = load_log(c, &s)) || (rc = load_ranks(c)))
		goto out;
	if ((rc = load_long(c, &s, K_NODES, 0, 1000000, 0, "must be an integer >= 1 (or unset)",
			    &c->nodes)) ||
	    (rc = load_node_id(c, &s)) ||
	    (rc = load_long(c, &s, K_S3_CONCURRENCY, 1, 256, 8, "must be an integer from 1 to 256",
			    &c->s3_concurrency)) ||
	    (rc = load_long(c, &s, K_S3_PART_MB, 5, 5120, 8, "must be an integer from 5 to 5120",
			    &c->s3_part_mb)) ||
	    (rc = load_long(c, &s, K_EXIT_WAIT_S, 0, 86400, 600,
			    "must be an integer from 0 to 86400 (seconds)", &c->exit_wait_s)) ||
	    (rc = load_long(c, &s, K_S3_RETRY_S, 1, 86400, 30,
			    "must be an integer from 1 to 86400 (seconds)", &c->s3_retry_s)))
		goto out;
	if (c->nodes == 0 && src_get(&s, K_NODES, &ff)) {
		rc = cfg_fail(c, CFG_EINVAL, cfg_keys[K_NODES].var, "0", ff, "must be an integer >= 1");
		goto out;
	}
	if (c->nodes == 0)
		c->nodes = c->world_size > 0 && c->local_world_size > 0 &&
				   c->world_size % c->local_world_size == 0
			   ? c->world_size / c->local_world_size
			   : 1;
out:
	if (rc)
		c->active = 0; /* a failed config never redirects anything */
	for (int i = 0; i < K_COUNT; i++)
		if (s.file_val[i])
			glib_fns.free(s.file_val[i]);
	return rc;
}

/* TIERCKPT_NODE_ID: [A-Za-z0-9._-]{1,64}; default: the host name (pods have unique ones). */
static int load_node_id(struct cfg *c, const struct cfg_src *s)
{
	int ff;
	const char *v = src_get(s, K_NODE_ID, &ff);
	char host[256] = "";

	if (!v) {
		if (gethostname(host, sizeof(host) - 1) || !host[0])
			snprintf(host, sizeof(host), "node");
		for (char *p = host; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
				*p = '_';
		host[CFG_NAMESPACE_MAX] = '\0';
		snprintf(c->node_id, sizeof(c->node_id), "%.64s", host);
		return CFG_OK;
	}
	size_t n = strnlen(v, CFG_NAMESPACE_MAX + 1);
	int ok = n >= 1 && n <= CFG_NAMESPACE_MAX;
	for (size_t i = 0; ok && i < n; i++) {
		char ch = v[i];
		ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		     (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
	}
	if (!ok || !strcmp(v, ".") || !strcmp(v, ".."))
		return cfg_fail(c, CFG_EINVAL, cfg_keys[K_NODE_ID].var, v, ff,
				"must be 1 to %d characters of A-Z a-z 0-9 . _ -", CFG_NAMESPACE_MAX);
	memcpy(c->node_id, v, n + 1);
	return CFG_OK;
}

/* ---------------------------------------------------------------------------------------------
 * cfg_tier_prepare
 */

/* Fails tier preparation: TIERCKPT_SHM_DIR="<shm_dir>": <rule>.  Returns rc.  The helpers below
 * work only on their arguments and descriptors: any thread (through cfg_tier_prepare). */
#define tier_fail(c, rc, ...) cfg_fail((c), (rc), "TIERCKPT_SHM_DIR", (c)->shm_dir, 0, __VA_ARGS__)

/* Errors of mkdir/open that come from the setup (CFG_EINVAL) rather than the system (CFG_EIO). */
static int setup_errno(int e)
{
	return e == EACCES || e == EPERM || e == EROFS || e == ENOENT || e == ENOTDIR ||
	       e == ELOOP || e == EEXIST;
}

/* The text of errno e, without strerror's locale machinery or allocation. */
static const char *errstr(int e)
{
	const char *s = strerrordesc_np(e);

	return s ? s : "unknown error";
}

/*
 * Explains why opening `name` under dirfd (path `path` for the message) as a directory failed
 * with errno e: a symlink, not a directory, missing, or another error.  Returns the rc.
 */
static int open_fail(struct cfg *c, int dirfd, const char *name, const char *path, int e)
{
	char q[CFG_SHOW_MAX * 4 + 4];
	struct stat st;

	show(path, q, sizeof(q));
	if ((e == ENOTDIR || e == ELOOP) && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISLNK(st.st_mode))
			return tier_fail(c, CFG_EINVAL, "%s is a symbolic link; refusing", q);
		if (!S_ISDIR(st.st_mode))
			return tier_fail(c, CFG_EINVAL, "%s is not a directory; refusing", q);
	}
	if (e == ENOENT)
		return tier_fail(c, CFG_EINVAL, "%s does not exist", q);
	return tier_fail(c, setup_errno(e) ? CFG_EINVAL : CFG_EIO, "cannot open %s: %s", q,
			 errstr(e));
}

/*
 * Checks a tier level we own: a directory (fd from an O_NOFOLLOW open) owned by uid with no
 * group/other permission bits.  Returns CFG_OK or the failure.
 */
static int check_own_dir(struct cfg *c, int fd, const char *path, uid_t uid)
{
	char q[CFG_SHOW_MAX * 4 + 4];
	struct stat st;

	show(path, q, sizeof(q));
	if (fstat(fd, &st))
		return tier_fail(c, CFG_EIO, "cannot stat %s: %s", q, errstr(errno));
	if (!S_ISDIR(st.st_mode))
		return tier_fail(c, CFG_EINVAL, "%s is not a directory; refusing", q);
	if (st.st_uid != uid)
		return tier_fail(c, CFG_EINVAL, "%s is owned by uid %u, not %u; refusing", q,
				 (unsigned)st.st_uid, (unsigned)uid);
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		return tier_fail(c, CFG_EINVAL,
				 "%s has mode %04o, which gives group/other access (must be "
				 "0700); refusing",
				 q, (unsigned)(st.st_mode & 07777));
	return CFG_OK;
}

/*
 * Creates (or finds) directory `name` under parent fd `pfd` with mode 0700 and opens it with
 * O_NOFOLLOW; `path` is its full path for messages.  On CFG_OK *fd is the open directory.
 */
static int make_level(struct cfg *c, int pfd, const char *name, const char *path, uid_t uid,
		      int *fd)
{
	char q[CFG_SHOW_MAX * 4 + 4];
	int created = 0, rc;

	*fd = -1;
	if (mkdirat(pfd, name, 0700) == 0) {
		created = 1;
	} else if (errno != EEXIST) {
		int e = errno;
		return tier_fail(c, setup_errno(e) ? CFG_EINVAL : CFG_EIO, "cannot create %s: %s",
				 show(path, q, sizeof(q)), errstr(e));
	}
	/* EEXIST (ours from an earlier run, a concurrent process's, or planted): check what is
	 * actually there through a descriptor that cannot follow a symlink. */
	*fd = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0)
		return open_fail(c, pfd, name, path, errno);
	/* A umask that strips owner bits from our fresh directory would make it useless. */
	if (created)
		(void)fchmod(*fd, 0700);
	rc = check_own_dir(c, *fd, path, uid);
	if (rc) {
		close(*fd);
		*fd = -1;
	}
	return rc;
}

/* cfg_tier_prepare - see cfg.h: CFG_OK, or CFG_EINVAL (refused setup) / CFG_EIO (system
 * error) with c->err; a no-op returning CFG_OK when c is inactive.  Any thread or process. */
int cfg_tier_prepare(struct cfg *c)
{
	uid_t uid = getuid();
	char root[PATH_MAX], rname[32], q[CFG_SHOW_MAX * 4 + 4];
	struct stat st;
	int sfd = -1, rfd = -1, nfd = -1, rc = CFG_OK;

	if (!c->active)
		return CFG_OK; /* pass-through: there is no tier */
	c->err[0] = '\0';
	show(c->shm_dir, q, sizeof(q));
	snprintf(rname, sizeof(rname), "tierckpt-%u", (unsigned)uid);
	if (join2(root, sizeof(root), c->shm_dir, rname))
		return tier_fail(c, CFG_EINVAL, "is too long");

	/* The shm dir: a real directory (a symlink is refused, not followed), writable by us, and
	 * either ours or safe to share (sticky, like /dev/shm's 1777, or root-owned). */
	sfd = open(c->shm_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd < 0) {
		rc = open_fail(c, AT_FDCWD, c->shm_dir, c->shm_dir, errno);
		goto out;
	}
	if (fstat(sfd, &st)) {
		rc = tier_fail(c, CFG_EIO, "cannot stat %s: %s", q, errstr(errno));
		goto out;
	}
	if (st.st_uid != uid && st.st_uid != 0 && !(st.st_mode & S_ISVTX)) {
		rc = tier_fail(c, CFG_EINVAL,
			       "%s is owned by uid %u, not %u, and is not sticky; refusing", q,
			       (unsigned)st.st_uid, (unsigned)uid);
		goto out;
	}
	/* The faccessat syscall itself, not glibc's faccessat(), which tries faccessat2 first:
	 * container seccomp profiles that predate faccessat2 answer it with EPERM. */
	if (syscall(SYS_faccessat, sfd, ".", W_OK | X_OK)) {
		int e = errno;
		if (e == EACCES || e == EPERM || e == EROFS)
			rc = tier_fail(c, CFG_EINVAL, "%s is not writable by uid %u: %s", q,
				       (unsigned)uid, errstr(e));
		else
			rc = tier_fail(c, CFG_EIO, "cannot check access to %s: %s", q, errstr(e));
		goto out;
	}

	rc = make_level(c, sfd, rname, root, uid, &rfd);
	if (rc)
		goto out;
	rc = make_level(c, rfd, c->namespace_, c->tier_dir, uid, &nfd);
out:
	if (nfd >= 0)
		close(nfd);
	if (rfd >= 0)
		close(rfd);
	if (sfd >= 0)
		close(sfd);
	return rc;
}
