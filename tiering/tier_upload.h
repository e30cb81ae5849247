/*
 * tier_upload.h - the durable tier's uploader: committed steps whose number is a multiple of
 * TIERCKPT_S3_EVERY_N_STEPS go to TIERCKPT_S3_BASE_PATH, file by file, commit marker last.
 *
 * DESIGN
 * One process per node and namespace uploads at a time: the one holding the leader lock
 * (<tier>/meta/leader.lock, an OFD write lock the kernel drops when the holder dies).  In a job
 * that is a background thread of whichever process got the lock first (interpose/ip_core.c
 * loads this code from libtierckpt-upload.so only then, so processes that never lead never load
 * libcurl or OpenSSL); `tierckpt flush` takes the lock itself when nobody holds it.
 *
 * Progress is journalled in the tier, one appended line per finished unit, so a new leader
 * resumes where a dead one stopped:
 *   meta/steps/<prefix>/<step>.journal
 *     M <upload-id> <part-bytes> <relpath>   a multipart upload was created for the file
 *     P <part-index> <etag> <relpath>  one of its parts is in S3 (ETag = the part's MD5)
 *     F <size> <mtime-ns> <etag> <relpath>   the whole file is in S3
 *     N                                this node's report object is in S3 (several nodes)
 *     K                                the marker is in S3
 *     S <ms> / T <ms>                  the upload's first attempt began / the step is PERSISTED
 * Lines are written with one O_APPEND write each, so a reader never sees half a line; a torn
 * last line (no newline) is ignored.  The marker object goes last, and only once every expected
 * node has reported (<base>/<step>/.tierckpt/node-<id>), so S3 never shows a step as complete
 * before all of its bytes are there.  A fresh upload of a step (empty journal) first deletes the
 * step's marker object, so a re-saved step is never shown complete with old and new files mixed.
 */
#ifndef TIERCKPT_TIER_UPLOAD_H
#define TIERCKPT_TIER_UPLOAD_H

#include <stddef.h>
#include <stdint.h>

struct cfg;
struct tier_up;

enum tier_up_rc {
	TIER_UP_OK = 0,
	TIER_UP_ECONFIG, /* S3 settings or credentials unusable (message says which) */
	TIER_UP_EFAIL,   /* some step failed this pass (state FAILED, message in its .error) */
	TIER_UP_ENOMEM,
};

/* What one pass saw. */
struct tier_up_stats {
	int pending; /* S3-bound committed steps not PERSISTED yet (includes failed and waiting) */
	int failed;  /* of which FAILED */
	int waiting; /* of which waiting for other nodes' reports */
};

/* tier_up_new - an uploader for the config c (the S3 client settings come from the AWS
 * environment).  cancel (may be NULL): when *cancel becomes non-zero, transfers in progress stop
 * within ~100 ms and the pass returns, leaving the interrupted step as it was (resumable).
 * Returns TIER_UP_OK, or TIER_UP_ECONFIG with msg (size msgsz) saying why. */
int tier_up_new(const struct cfg *c, const int *cancel, struct tier_up **out, char *msg,
		size_t msgsz);

/* tier_up_free - NULL is fine. */
void tier_up_free(struct tier_up *u);

/* tier_up_pass - one pass over every step of every prefix: applies the commit rules, uploads
 * what is due (FAILED steps only after TIERCKPT_S3_RETRY_S, or at once with force), and fills
 * *st.  Returns TIER_UP_OK or TIER_UP_EFAIL.  Only the leader calls it (one thread). */
int tier_up_pass(struct tier_up *u, int force, struct tier_up_stats *st);

/* tier_up_journal_bytes - bytes of the step already in S3 according to its journal (files done
 * plus parts done); *mb_per_s (may be NULL) gets the upload's throughput, from its first
 * attempt to its end (or to now while it runs).  Any process. */
uint64_t tier_up_journal_bytes(const struct cfg *c, const char *vstep, double *mb_per_s);

/* tier_up_last_error - the step's last upload error line into out ("" when none). */
void tier_up_last_error(const struct cfg *c, const char *vstep, char *out, size_t outsz);

/* tier_up_leader_path - "<tier>/meta/leader.lock" into out; 0 or -1. */
int tier_up_leader_path(const struct cfg *c, char *out, size_t outsz);

/* The entry point libtierckpt-upload.so exports for the shim's leader thread: runs passes until
 * *stop, publishing the last pass's stats in *pending (atomic) and sleeping up to poll_ms
 * between passes (or until woken through the shim's condition variable, see ip_core.c). */
struct tier_up_ctl {
	int stop;            /* atomic: set by the shim at exit (after its bounded wait); also
			      * cancels the transfers in progress */
	int halted;          /* atomic: set by the uploader when it has stopped using S3 */
	void (*before_exit)(void); /* the shim's bounded exit wait; the uploader also runs it
				    * from OpenSSL's own exit hook, so that a host program's
				    * OpenSSL clean-up never runs under a working upload */
	int pending;         /* atomic: steps still in progress after the last pass (pending less
			      * failed), -1 before the first */
	int passes;          /* atomic: passes completed */
	void (*wait)(long ms); /* the shim's sleep, interruptible by its kick */
};

int tierckpt_upload_main(const struct cfg *c, struct tier_up_ctl *ctl);

#endif
