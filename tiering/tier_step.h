/*
 * tier_step.h - step directories and their state, kept in the memory tier so that every process
 * of the node sees the same thing and a killed process leaves nothing that lies.
 *
 * DESIGN
 * The tier directory <shm>/tierckpt-<uid>/<namespace>/ holds two trees:
 *   fs/<prefix>/...            the files, a mirror of every prefix (what the program sees)
 *   meta/steps/<prefix>/<step>.state   one line: "WRITING <ms>" or "COMMITTED <ms> <how>"
 *   meta/steps/<prefix>/<step>.lock    writer lock: every process holding a file of the step
 *                                      open for writing holds a shared OFD lock on it
 * A state file is replaced atomically (write to a temporary name, rename), so a reader sees the
 * old or the new line, never a torn one.  Writers are detected with OFD locks, which the kernel
 * drops when the holder's descriptor goes away - also on kill -9 - so "nobody writes this step"
 * is always true when the lock is free.  The file system stays the source of truth: a step dir
 * without a state file is WRITING until its marker or the idle rule commits it (tier_step_eval).
 */
#ifndef TIERCKPT_TIER_STEP_H
#define TIERCKPT_TIER_STEP_H

#include <stddef.h>

struct cfg;

enum tier_rc { TIER_OK = 0, TIER_EIO, TIER_ENOENT, TIER_ENAMETOOLONG };

/* Ordered: every state from COMMITTED on is a committed step. */
enum tier_step_state {
	TIER_STEP_NONE = 0,
	TIER_STEP_WRITING,
	TIER_STEP_COMMITTED,
	TIER_STEP_UPLOADING,
	TIER_STEP_PERSISTED,
	TIER_STEP_FAILED,
};

struct tier_step_info {
	int state;              /* enum tier_step_state */
	long long since_ms;     /* wall clock ms of the last state change */
	char how[32];           /* why it committed: "marker", "rename", "idle" */
	long long files;        /* regular files under the step dir */
	long long bytes;        /* their sizes, summed */
	long long newest_mtime_ms;
	int writers;            /* 1 when some process holds a file of the step open for writing */
};

/* tier_step_name - if the virtual path `vpath` (normalised) lies in a step directory of prefix
 * `prefix` (length plen), copy the step's virtual dir path into out and return 1; return 0
 * otherwise.  `is_dir_itself` is set to 1 when vpath is the step dir itself.  Pure. */
int tier_step_of(const char *vpath, const char *prefix, size_t plen, char *out, size_t outsz,
		 int *is_dir_itself);

/* tier_step_meta_path - "<tier>/meta/steps<vstep><suffix>" into out; returns 0 or -1 (too long). */
int tier_step_meta_path(const char *tier_dir, const char *vstep, const char *suffix, char *out,
			size_t outsz);

/* tier_step_set - record `state` for step vstep (how: NULL or a short word).  Atomic replace.
 * Recording WRITING also drops the step's upload journal and error: a step written again is
 * uploaded again from the start.
 * Returns TIER_OK or TIER_EIO (errno kept).  Any thread, any process; call with the shim's
 * re-entry guard held. */
int tier_step_set(const char *tier_dir, const char *vstep, int state, const char *how);

/* tier_step_forget - drop the state, lock, journal and error files of a step that no longer
 * exists. */
int tier_step_forget(const char *tier_dir, const char *vstep);

/* tier_step_lock_open - open (creating) the step's writer lock file and take a shared OFD lock.
 * Returns the descriptor (O_CLOEXEC) or -1.  The caller closes it to release. */
int tier_step_lock_open(const char *tier_dir, const char *vstep);

/* tier_step_writers - 1 when some process holds the step's writer lock, 0 when none, -1 on
 * error. */
int tier_step_writers(const char *tier_dir, const char *vstep);

/*
 * tier_step_eval - read the state of step vstep, walk its files, and apply the commit rules: a
 * WRITING (or unrecorded) step whose marker file exists and that nobody writes, or that nobody
 * has written for commit_idle_ms, becomes COMMITTED (recorded).  Fills *info.  Returns TIER_OK,
 * TIER_ENOENT when the step dir does not exist, or TIER_EIO.
 */
int tier_step_eval(const struct cfg *c, const char *vstep, struct tier_step_info *info);

/* tier_step_read - the recorded state of vstep (state, since_ms, how) into info; state NONE
 * when there is no record.  Other fields untouched. */
void tier_step_read(const char *tier_dir, const char *vstep, struct tier_step_info *info);

/* tier_step_marker_current - 1 when step vstep's marker file exists and belongs to the current
 * save: it is not older than the step's last WRITING record (a marker left by an earlier save of
 * the same step does not commit a new one).  known: the step's state if already read, or NULL. */
int tier_step_marker_current(const struct cfg *c, const char *vstep,
			     const struct tier_step_info *known);

/* tier_step_foreach - calls fn(c, p, vstep, num, arg) for every step directory of every prefix
 * p in the tier (vstep: its virtual path, num: its number), in version order; stops at the first
 * non-zero return of fn and returns it (0 when all ran).  Any thread. */
int tier_step_foreach(const struct cfg *c,
		      int (*fn)(const struct cfg *c, int p, const char *vstep, long long num,
				void *arg),
		      void *arg);

/* tier_state_name - "WRITING", "COMMITTED", "UPLOADING", "PERSISTED", "FAILED" or "-". */
const char *tier_state_name(int state);

/* tier_now_ms - wall clock in ms. */
long long tier_now_ms(void);

#endif
