/*
 * cfg.h - tierckpt settings: read once from the environment (and the optional INI file named by
 * TIERCKPT_CONFIG), validated, and kept in one plain struct.
 *
 * DESIGN
 * The shim and the `tierckpt` command share this module, so both apply the same rules and print
 * the same line for a bad value.  cfg_load() never replaces an invalid value by a default: it
 * returns CFG_EINVAL and leaves one human-readable line in cfg->err naming the variable, the value
 * and the rule.  The shim then runs as pure pass-through; `tierckpt run` exits with status 2.
 *
 * The struct holds fixed-size buffers only, so a loaded config needs no cleanup and can live in
 * static storage inside the shim (no allocation after load).  Precedence: environment, then the
 * INI file's [tierckpt] group (keys are the variable names without the TIERCKPT_ prefix, lower
 * case: prefix, namespace, shm_dir, ...), then the built-in default.
 */
#ifndef TIERCKPT_CFG_H
#define TIERCKPT_CFG_H

#include <limits.h>
#include <stddef.h>

#define CFG_MAX_PREFIXES 8
#define CFG_NAMESPACE_MAX 64

enum cfg_rc {
	CFG_OK = 0,
	CFG_EINVAL, /* a setting is invalid; cfg->err says which and why */
	CFG_EIO,    /* the INI file or the shm dir could not be read/created; cfg->err says why */
};

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

struct cfg {
	int active;                               /* 0: TIERCKPT_PREFIX unset, pure pass-through */
	int n_prefixes;
	char prefixes[CFG_MAX_PREFIXES][PATH_MAX]; /* normalised absolute, no trailing '/' */
	size_t prefix_len[CFG_MAX_PREFIXES];
	char namespace_[CFG_NAMESPACE_MAX + 1];
	char shm_dir[PATH_MAX];                   /* normalised absolute */
	char tier_dir[PATH_MAX];                  /* <shm_dir>/tierckpt-<uid>/<namespace> */
	char s3_base_path[PATH_MAX];              /* "" = memory only */
	long s3_every_n_steps;                    /* >= 1 */
	int memory_percent;                       /* 20..100 */
	long keep_steps;                          /* >= 1 */
	char commit_marker[NAME_MAX + 1];         /* a file name, no '/' */
	long commit_idle_ms;                      /* TIERCKPT_COMMIT_IDLE_MS, default 10000 */
	int log_level;                            /* enum log_level */
	char log_file[PATH_MAX];                  /* "" = stderr */
	int world_size, rank, local_rank, local_world_size; /* -1 when unset */
	char config_file[PATH_MAX];               /* TIERCKPT_CONFIG or "" */
	long nodes;            /* TIERCKPT_NODES, else WORLD_SIZE / LOCAL_WORLD_SIZE, else 1 */
	char node_id[CFG_NAMESPACE_MAX + 1];      /* TIERCKPT_NODE_ID, else the host name */
	long s3_concurrency;   /* parallel part uploads, default 8 */
	long s3_part_mb;       /* multipart part size in MiB, default 8 (raised to fit 10000) */
	long exit_wait_s;      /* a leader's bounded wait for pending uploads at exit, default 600 */
	long s3_retry_s;       /* a FAILED step is tried again after this long, default 30 */
	char err[1024];                           /* the one clear line when cfg_load fails */
};

/*
 * cfg_load - fill *c from the environment (getenv) and the INI file, then validate.
 * Returns CFG_OK, CFG_EINVAL or CFG_EIO; on failure c->err holds one line (no newline) such as
 *   TIERCKPT_MEMORY_PERCENT="15": must be an integer from 20 to 100
 * With TIERCKPT_PREFIX unset returns CFG_OK with c->active = 0.  Does not create anything.
 * Any thread; not async-signal-safe.  Calls only un-intercepted libc (the caller holds the shim's
 * re-entry guard).
 */
int cfg_load(struct cfg *c);

/*
 * cfg_tier_prepare - create <shm_dir>/tierckpt-<uid>/<namespace> (mode 0700) safely: no
 * following of a planted symlink at any level we create, refuse a directory owned by another
 * user or with group/other access, refuse an unwritable shm dir.  Returns CFG_OK or CFG_EIO/
 * CFG_EINVAL with c->err set.  Idempotent; safe when several processes race.
 */
int cfg_tier_prepare(struct cfg *c);

#endif
