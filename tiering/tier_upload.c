/*
 * tier_upload.c - the durable tier's uploader (see tier_upload.h for the design: leader,
 * journal, marker last, several nodes).
 *
 * Threads: tier_up_pass runs on the leader's one thread; a large file's parts are sent by up to
 * TIERCKPT_S3_CONCURRENCY worker threads, each with its own S3 client, that take part indexes
 * from a shared counter and append a journal line per finished part.
 */
#include "tiering/tier_upload.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config/cfg.h"
#include "config/log.h"
#include "interpose/ip_path.h"
#include "tiering/s3_client.h"
#include "tiering/tier_step.h"

#define UP_WORKERS_MAX 256

struct tier_up {
	const struct cfg *c;
	const int *cancel;
	struct s3_config s3;
	char bucket[64];
	char keyprefix[PATH_MAX]; /* "" or "a/b/" */
	struct s3_client *clients[UP_WORKERS_MAX];
	int n_clients;
	uint64_t part_bytes;
};

/* ----------------------------------------------------------------------------------------------
 * the journal
 */

/* What the journal says about one step (parsed in full each time: steps have few files). */
struct jfile {
	char *relpath;
	int done;                /* an F line */
	long long size, mtime_ns;
	char etag[S3_ETAG_MAX];
	char *upload_id;         /* from an M line (the last one) */
	unsigned long long part_bytes; /* the part size that upload was planned with */
	char **part_etags;       /* from P lines, index -> etag (NULL = not done) */
	size_t n_part_etags;
};

struct journal {
	struct jfile *files;
	size_t n, cap;
	int node_reported;       /* N */
	int marker_done;         /* K */
	int marker_deleted;      /* D: an older marker object of the step is gone from S3 */
	long long start_ms;      /* S <ms>: the first attempt of this upload began */
	long long end_ms;        /* T <ms>: the step became PERSISTED */
	int empty;               /* no line at all */
	char path[PATH_MAX];
	pthread_mutex_t lock;    /* appends from part workers */
};

static struct jfile *jfile_get(struct journal *j, const char *relpath, int create)
{
	for (size_t i = 0; i < j->n; i++)
		if (strcmp(j->files[i].relpath, relpath) == 0)
			return &j->files[i];
	if (!create)
		return NULL;
	if (j->n == j->cap) {
		size_t cap = j->cap ? j->cap * 2 : 16;
		struct jfile *f = realloc(j->files, cap * sizeof(*f));
		if (!f)
			return NULL;
		j->files = f;
		j->cap = cap;
	}
	struct jfile *f = &j->files[j->n];
	memset(f, 0, sizeof(*f));
	f->relpath = strdup(relpath);
	if (!f->relpath)
		return NULL;
	j->n++;
	return f;
}

static void jfile_parts_reset(struct jfile *f)
{
	for (size_t i = 0; i < f->n_part_etags; i++)
		free(f->part_etags[i]);
	free(f->part_etags);
	f->part_etags = NULL;
	f->n_part_etags = 0;
}

static void journal_fini(struct journal *j)
{
	for (size_t i = 0; i < j->n; i++) {
		free(j->files[i].relpath);
		free(j->files[i].upload_id);
		jfile_parts_reset(&j->files[i]);
	}
	free(j->files);
	pthread_mutex_destroy(&j->lock);
	memset(j, 0, sizeof(*j));
}

/* Applies one journal line. */
static void journal_line(struct journal *j, char *line)
{
	char *rest;
	struct jfile *f;

	j->empty = 0;
	switch (line[0]) {
	case 'N':
		j->node_reported = 1;
		return;
	case 'K':
		j->marker_done = 1;
		return;
	case 'D':
		j->marker_deleted = 1;
		return;
	case 'S':
		if (!j->start_ms)
			sscanf(line, "S %lld", &j->start_ms);
		return;
	case 'T':
		sscanf(line, "T %lld", &j->end_ms);
		return;
	case 'M': {
		char id[1024];
		int off = 0;
		unsigned long long pb = 0;
		if (sscanf(line, "M %1023s %llu %n", id, &pb, &off) < 2 || !off)
			return;
		f = jfile_get(j, line + off, 1);
		if (!f)
			return;
		free(f->upload_id);
		f->upload_id = strcmp(id, "-") ? strdup(id) : NULL; /* "-": start afresh */
		f->part_bytes = pb;
		jfile_parts_reset(f);
		f->done = 0;
		return;
	}
	case 'P': {
		size_t idx;
		char etag[S3_ETAG_MAX];
		int off = 0;
		if (sscanf(line, "P %zu %79s %n", &idx, etag, &off) < 2 || !off || idx >= 100000)
			return;
		f = jfile_get(j, line + off, 1);
		if (!f)
			return;
		if (idx >= f->n_part_etags) {
			char **p = realloc(f->part_etags, (idx + 1) * sizeof(*p));
			if (!p)
				return;
			memset(p + f->n_part_etags, 0, (idx + 1 - f->n_part_etags) * sizeof(*p));
			f->part_etags = p;
			f->n_part_etags = idx + 1;
		}
		free(f->part_etags[idx]);
		f->part_etags[idx] = strdup(etag);
		return;
	}
	case 'F': {
		long long size, mt;
		char etag[S3_ETAG_MAX];
		int off = 0;
		if (sscanf(line, "F %lld %lld %79s %n", &size, &mt, etag, &off) < 3 || !off)
			return;
		rest = line + off;
		f = jfile_get(j, rest, 1);
		if (!f)
			return;
		f->done = 1;
		f->size = size;
		f->mtime_ns = mt;
		snprintf(f->etag, sizeof(f->etag), "%s", etag);
		return;
	}
	default:
		return;
	}
}

/* Reads the step's journal (missing = empty).  Returns 0 or -1 (no memory). */
static int journal_load(const struct cfg *c, const char *vstep, struct journal *j)
{
	memset(j, 0, sizeof(*j));
	pthread_mutex_init(&j->lock, NULL);
	j->empty = 1;
	if (tier_step_meta_path(c->tier_dir, vstep, ".journal", j->path, sizeof(j->path)))
		return -1;
	FILE *fp = fopen(j->path, "re");
	if (!fp)
		return 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, fp)) > 0) {
		if (line[n - 1] != '\n')
			break; /* a torn last line: never written whole */
		line[n - 1] = '\0';
		journal_line(j, line);
	}
	free(line);
	fclose(fp);
	return 0;
}

/* Appends one line (printf format) with a single O_APPEND write.  Returns 0 or -1. */
static int journal_add(struct journal *j, const char *fmt, ...)
{
	char line[PATH_MAX + 256];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int)sizeof(line) - 1)
		return -1;
	line[n++] = '\n';
	pthread_mutex_lock(&j->lock);
	int fd = open(j->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
	int rc = fd >= 0 && write(fd, line, (size_t)n) == n ? 0 : -1;
	if (fd >= 0)
		close(fd);
	j->empty = 0;
	pthread_mutex_unlock(&j->lock);
	return rc;
}

uint64_t tier_up_journal_bytes(const struct cfg *c, const char *vstep, double *mb_per_s)
{
	struct journal j;
	uint64_t total = 0;
	char path[PATH_MAX];
	struct stat st;

	if (mb_per_s)
		*mb_per_s = 0;
	if (journal_load(c, vstep, &j))
		return 0;
	for (size_t i = 0; i < j.n; i++) {
		struct jfile *f = &j.files[i];
		if (f->done) {
			total += (uint64_t)f->size;
			continue;
		}
		/* parts done of a file in flight: count them at the upload's part size */
		size_t parts = 0;
		for (size_t k = 0; k < f->n_part_etags; k++)
			parts += f->part_etags[k] != NULL;
		uint64_t b = (uint64_t)parts * f->part_bytes;
		if (parts && snprintf(path, sizeof(path), "%s/fs%s/%s", c->tier_dir, vstep,
				      f->relpath) < (int)sizeof(path) &&
		    stat(path, &st) == 0 && b > (uint64_t)st.st_size)
			b = (uint64_t)st.st_size;
		total += b;
	}
	long long end = j.end_ms ? j.end_ms : tier_now_ms();
	if (mb_per_s && j.start_ms && end > j.start_ms)
		*mb_per_s = (double)total / 1e6 / ((double)(end - j.start_ms) / 1000.0);
	journal_fini(&j);
	return total;
}

void tier_up_last_error(const struct cfg *c, const char *vstep, char *out, size_t outsz)
{
	char path[PATH_MAX];

	out[0] = '\0';
	if (tier_step_meta_path(c->tier_dir, vstep, ".error", path, sizeof(path)))
		return;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	ssize_t n = read(fd, out, outsz - 1);
	close(fd);
	out[n > 0 ? n : 0] = '\0';
	char *nl = strchr(out, '\n');
	if (nl)
		*nl = '\0';
}

int tier_up_leader_path(const struct cfg *c, char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "%s/meta/leader.lock", c->tier_dir);

	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

/* Records the step's last error (one line, no secret: messages come from the S3 client, which
 * scrubs them) and logs it. */
static void step_error(const struct cfg *c, const char *vstep, const char *fmt, ...)
{
	char msg[1024], path[PATH_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg) - 1, fmt, ap);
	va_end(ap);
	log_error("upload of %s failed: %s", vstep, msg);
	if (tier_step_meta_path(c->tier_dir, vstep, ".error", path, sizeof(path)))
		return;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return;
	size_t n = strlen(msg);
	msg[n++] = '\n';
	if (write(fd, msg, n) < 0) {
		/* the log line above already says it */
	}
	close(fd);
}

/* ----------------------------------------------------------------------------------------------
 * set-up
 */

/* Splits "s3://bucket/key/prefix/" into bucket and "key/prefix/".  Returns 0 or -1. */
static int base_split(const char *base, char *bucket, size_t bsz, char *prefix, size_t psz)
{
	if (strncmp(base, "s3://", 5) != 0)
		return -1;
	const char *b = base + 5, *slash = strchr(b, '/');
	size_t bl = slash ? (size_t)(slash - b) : strlen(b);
	if (bl == 0 || bl >= bsz)
		return -1;
	memcpy(bucket, b, bl);
	bucket[bl] = '\0';
	const char *k = slash ? slash + 1 : "";
	if (strlen(k) >= psz)
		return -1;
	snprintf(prefix, psz, "%s", k);
	return 0;
}

int tier_up_new(const struct cfg *c, const int *cancel, struct tier_up **out, char *msg,
		size_t msgsz)
{
	struct tier_up *u = calloc(1, sizeof(*u));
	int rc = TIER_UP_ECONFIG;

	*out = NULL;
	msg[0] = '\0';
	if (!u)
		return TIER_UP_ENOMEM;
	u->c = c;
	u->cancel = cancel;
	if (base_split(c->s3_base_path, u->bucket, sizeof(u->bucket), u->keyprefix,
		       sizeof(u->keyprefix))) {
		snprintf(msg, msgsz, "TIERCKPT_S3_BASE_PATH=\"%s\" is not s3://bucket/prefix/",
			 c->s3_base_path);
		goto fail;
	}
	if (s3_config_load_env(&u->s3)) {
		snprintf(msg, msgsz, "S3 settings: %s", u->s3.err);
		goto fail;
	}
	u->s3.cancel = cancel;
	u->n_clients = (int)(c->s3_concurrency > 0 ? c->s3_concurrency : 8);
	if (u->n_clients > UP_WORKERS_MAX)
		u->n_clients = UP_WORKERS_MAX;
	for (int i = 0; i < u->n_clients; i++) {
		if (s3_client_new(&u->s3, &u->clients[i])) {
			snprintf(msg, msgsz, "S3 client: cannot start (credentials or region missing: "
					     "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE)");
			goto fail;
		}
	}
	u->part_bytes = (uint64_t)(c->s3_part_mb > 0 ? c->s3_part_mb : 8) << 20;
	*out = u;
	return TIER_UP_OK;
fail:
	tier_up_free(u);
	return rc;
}

void tier_up_free(struct tier_up *u)
{
	if (!u)
		return;
	for (int i = 0; i < u->n_clients; i++)
		s3_client_free(u->clients[i]);
	s3_config_fini(&u->s3);
	free(u);
}

/* ----------------------------------------------------------------------------------------------
 * one step
 */

struct upfile {
	char relpath[PATH_MAX];
	long long size, mtime_ns;
};

/* A growing list of the step's files. */
struct upfiles {
	struct upfile *v;
	size_t n, cap;
};

/* Lists the regular files below dir (relative paths) into fl.  Anything it cannot take as it is
 * (an unreadable directory, a symlink or special file, a name with a newline, too deep, too
 * long) fails the listing: a step is uploaded whole or not at all.  Returns 0, or -1 with err. */
static int list_files(const char *dir, const char *rel, struct upfiles *fl, int depth, char *err,
		      size_t errsz)
{
	char path[PATH_MAX];
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (snprintf(path, sizeof(path), "%s%s%s", dir, rel[0] ? "/" : "", rel) >=
	    (int)sizeof(path)) {
		snprintf(err, errsz, "path too long in the step: %.300s", rel);
		return -1;
	}
	d = opendir(path);
	if (!d) {
		snprintf(err, errsz, "cannot list %.300s in the tier: %s", rel[0] ? rel : ".",
			 strerror(errno));
		return -1;
	}
	while (!rc && (e = readdir(d))) {
		struct stat st;
		char sub[PATH_MAX], full[PATH_MAX];
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (snprintf(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", e->d_name) >=
			    (int)sizeof(sub) ||
		    snprintf(full, sizeof(full), "%s/%s", dir, sub) >= (int)sizeof(full)) {
			snprintf(err, errsz, "path too long in the step: %.300s", e->d_name);
			rc = -1;
		} else if (strchr(sub, '\n')) {
			snprintf(err, errsz, "a file name with a newline cannot be uploaded: %.300s",
				 sub);
			rc = -1;
		} else if (lstat(full, &st)) {
			snprintf(err, errsz, "cannot stat %.300s: %s", sub, strerror(errno));
			rc = -1;
		} else if (S_ISDIR(st.st_mode)) {
			if (depth >= 32) {
				snprintf(err, errsz, "directories nested too deep: %.300s", sub);
				rc = -1;
			} else {
				rc = list_files(dir, sub, fl, depth + 1, err, errsz);
			}
		} else if (S_ISREG(st.st_mode)) {
			if (fl->n == fl->cap) {
				size_t cap = fl->cap ? fl->cap * 2 : 64;
				struct upfile *v = realloc(fl->v, cap * sizeof(*v));
				if (!v) {
					snprintf(err, errsz, "out of memory listing the step");
					rc = -1;
					break;
				}
				fl->v = v;
				fl->cap = cap;
			}
			struct upfile *f = &fl->v[fl->n++];
			snprintf(f->relpath, sizeof(f->relpath), "%s", sub);
			f->size = st.st_size;
			f->mtime_ns = (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
		} else {
			snprintf(err, errsz, "%.300s is not a regular file or directory (S3 holds "
					     "files only)", sub);
			rc = -1;
		}
	}
	closedir(d);
	return rc;
}

/* The S3 key of relpath in step vstep of prefix p: <keyprefix><step path below the prefix>/rel. */
static int object_key(const struct tier_up *u, const char *vstep, size_t plen, const char *rel,
		      char *out, size_t outsz)
{
	int n = snprintf(out, outsz, "%s%s%s%s", u->keyprefix, vstep + plen + 1, rel[0] ? "/" : "",
			 rel);

	return n < 0 || (size_t)n >= outsz ? -1 : 0;
}

struct part_job {
	struct tier_up *u;
	struct s3_upload *up;
	struct journal *j;
	const char *relpath;
	size_t next;             /* atomic: next part index to take */
	int failed;              /* atomic */
	int upload_gone;         /* atomic: a part got 404 NoSuchUpload */
	int worker;
	char err[512];
	pthread_mutex_t lock;
};

struct part_worker {
	struct part_job *job;
	int idx;
};

static void *part_worker_main(void *arg)
{
	struct part_worker *w = arg;
	struct part_job *job = w->job;
	struct s3_client *cl = job->u->clients[w->idx];

	for (;;) {
		if (__atomic_load_n(&job->failed, __ATOMIC_RELAXED))
			break;
		size_t i = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
		if (i >= job->up->n_parts)
			break;
		if (job->up->parts[i].etag[0])
			continue; /* done before (journal) */
		int rc = s3_upload_part(cl, job->up, i);
		if (rc) {
			if (s3_client_http_status(cl) == 404)
				__atomic_store_n(&job->upload_gone, 1, __ATOMIC_RELAXED);
			pthread_mutex_lock(&job->lock);
			if (!job->failed)
				snprintf(job->err, sizeof(job->err), "part %zu of %.200s: %.200s", i + 1,
					 job->relpath, s3_client_errmsg(cl));
			__atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
			pthread_mutex_unlock(&job->lock);
			break;
		}
		journal_add(job->j, "P %zu %s %s", i, job->up->parts[i].etag, job->relpath);
	}
	return NULL;
}

/* Uploads one file of the step (single PUT or parallel multipart, resuming from the journal).
 * Returns 0, or -1 with err set. */
static int upload_file(struct tier_up *u, struct journal *j, const char *tpath,
		       const struct upfile *uf, const char *key, char *err, size_t errsz)
{
	struct s3_client *cl = u->clients[0];
	struct s3_upload *up = NULL;
	int rc = -1, fd = open(tpath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0) {
		snprintf(err, errsz, "cannot open %.300s in the tier: %s", uf->relpath, strerror(errno));
		return -1;
	}
	if (s3_upload_plan(fd, (uint64_t)uf->size, u->bucket, key, u->part_bytes, 0, &up)) {
		snprintf(err, errsz, "cannot plan the upload of %.300s", uf->relpath);
		goto out;
	}
	struct jfile *jf = jfile_get(j, uf->relpath, 0);
	/* resume only the very same plan: parts are byte ranges, and a leader with another
	 * TIERCKPT_S3_PART_MB would cut the file differently */
	if (up->multipart && jf && jf->upload_id && jf->part_bytes == up->part_bytes &&
	    jf->n_part_etags <= up->n_parts) {
		/* resume: the same upload, the parts already sent */
		up->upload_id = strdup(jf->upload_id);
		for (size_t i = 0; i < jf->n_part_etags; i++) {
			if (!jf->part_etags[i])
				continue;
			snprintf(up->parts[i].etag, sizeof(up->parts[i].etag), "%s",
				 jf->part_etags[i]);
			/* the part's MD5 is its ETag: needed for the composite ETag check */
			for (int k = 0; k < 16 && jf->part_etags[i][2 * k]; k++)
				sscanf(jf->part_etags[i] + 2 * k, "%2hhx", &up->parts[i].md5[k]);
		}
		log_info("resuming %s: upload %s", uf->relpath, up->upload_id);
	} else if (up->multipart) {
		if (s3_upload_begin(cl, up)) {
			snprintf(err, errsz, "%.300s: %.600s", uf->relpath, s3_client_errmsg(cl));
			goto out;
		}
		journal_add(j, "M %s %llu %s", up->upload_id, (unsigned long long)up->part_bytes,
			    uf->relpath);
	}
	if (!up->multipart) {
		if (s3_upload_part(cl, up, 0)) {
			snprintf(err, errsz, "%.300s: %.600s", uf->relpath, s3_client_errmsg(cl));
			goto out;
		}
	} else {
		struct part_job job = {.u = u, .up = up, .j = j, .relpath = uf->relpath};
		struct part_worker ws[UP_WORKERS_MAX];
		pthread_t th[UP_WORKERS_MAX];
		int nw = u->n_clients < (int)up->n_parts ? u->n_clients : (int)up->n_parts, started = 0;
		pthread_mutex_init(&job.lock, NULL);
		for (int i = 1; i < nw; i++) {
			ws[i] = (struct part_worker){&job, i};
			if (pthread_create(&th[i], NULL, part_worker_main, &ws[i]) == 0)
				started = i;
			else
				break;
		}
		ws[0] = (struct part_worker){&job, 0};
		part_worker_main(&ws[0]);
		for (int i = 1; i <= started; i++)
			pthread_join(th[i], NULL);
		pthread_mutex_destroy(&job.lock);
		if (job.failed) {
			snprintf(err, errsz, "%s", job.err);
			if (job.upload_gone) /* aborted behind our back: start afresh next time */
				journal_add(j, "M - 0 %s", uf->relpath);
			goto out; /* the upload id and finished parts stay journalled: resumed later */
		}
		if (s3_upload_finish(cl, up)) {
			snprintf(err, errsz, "%.300s: %.600s", uf->relpath, s3_client_errmsg(cl));
			if (s3_client_http_status(cl) == 404) /* the upload is gone: start afresh */
				journal_add(j, "M - 0 %s", uf->relpath);
			goto out;
		}
	}
	const char *etag = up->multipart ? up->etag : up->parts[0].etag;
	journal_add(j, "F %lld %lld %s %s", uf->size, uf->mtime_ns, etag[0] ? etag : "-",
		    uf->relpath);
	rc = 0;
out:
	s3_upload_free(up);
	close(fd);
	return rc;
}

/* Number of distinct node reports under <step>/.tierckpt/ in S3, or -1 with err set. */
static int count_node_reports(struct tier_up *u, const char *vstep, size_t plen, char *err,
			      size_t errsz)
{
	char key[PATH_MAX];
	struct s3_list_page page;
	int n = 0;

	if (object_key(u, vstep, plen, ".tierckpt/node-", key, sizeof(key)))
		return -1;
	memset(&page, 0, sizeof(page));
	if (s3_objects_list(u->clients[0], u->bucket, key, NULL, NULL, 1000, &page)) {
		snprintf(err, errsz, "listing node reports: %s", s3_client_errmsg(u->clients[0]));
		return -1;
	}
	n = (int)page.n_entries;
	s3_list_page_fini(&page);
	return n;
}

enum { STEP_DONE, STEP_WAITING, STEP_FAILED, STEP_CANCELLED };

static int is_cancelled(const struct tier_up *u)
{
	return u->cancel && __atomic_load_n(u->cancel, __ATOMIC_ACQUIRE);
}

/* Uploads step vstep (under prefix index p): files, node report, marker last. */
/* 1 when step vstep was written again since this upload began (it went back to WRITING, or
 * someone holds a file of it open for writing): the upload must stop before the marker. */
static int step_rewritten(const struct cfg *c, const char *vstep)
{
	struct tier_step_info info;

	memset(&info, 0, sizeof(info));
	tier_step_read(c->tier_dir, vstep, &info);
	return info.state == TIER_STEP_WRITING || tier_step_writers(c->tier_dir, vstep) != 0;
}

static int upload_step(struct tier_up *u, int p, const char *vstep)
{
	const struct cfg *c = u->c;
	size_t plen = c->prefix_len[p];
	char dir[PATH_MAX], key[PATH_MAX], tpath[PATH_MAX], err[1024] = "", how[32] = "-";
	struct journal j;
	struct upfiles fl = {NULL, 0, 0};
	int rc = STEP_FAILED;
	struct upfile *marker = NULL;
	long long t0 = tier_now_ms();
	uint64_t bytes = 0;

	if (journal_load(c, vstep, &j)) {
		snprintf(err, sizeof(err), "out of memory reading the journal");
		goto out;
	}
	if (snprintf(dir, sizeof(dir), "%s/fs%s", c->tier_dir, vstep) >= (int)sizeof(dir) ||
	    list_files(dir, "", &fl, 0, err, sizeof(err)))
		goto out;
	/* how the step committed travels with it through UPLOADING and FAILED: a step that
	 * committed by the idle rule has no marker of its own (one in its directory is left from
	 * an earlier save of the same step) */
	struct tier_step_info before;
	memset(&before, 0, sizeof(before));
	tier_step_read(c->tier_dir, vstep, &before);
	snprintf(how, sizeof(how), "%s", before.how[0] ? before.how : "-");
	tier_step_set(c->tier_dir, vstep, TIER_STEP_UPLOADING, how);
	if (!j.start_ms)
		journal_add(&j, "S %lld", t0);
	if (!j.marker_deleted) {
		/* before any file: an older marker of the same step must not stay visible above
		 * new files (a re-saved step, or the first attempt of this one failed) */
		if (object_key(u, vstep, plen, c->commit_marker, key, sizeof(key)) == 0 &&
		    s3_object_delete(u->clients[0], u->bucket, key) &&
		    s3_client_http_status(u->clients[0]) != 404) {
			snprintf(err, sizeof(err), "%s", s3_client_errmsg(u->clients[0]));
			goto out;
		}
		journal_add(&j, "D");
	}
	for (size_t i = 0; i < fl.n; i++) {
		struct upfile *f = &fl.v[i];
		if (!strcmp(f->relpath, c->commit_marker)) {
			marker = f;
			continue;
		}
		struct jfile *jf = jfile_get(&j, f->relpath, 0);
		if (jf && jf->done && jf->size == f->size && jf->mtime_ns == f->mtime_ns)
			continue;
		if (object_key(u, vstep, plen, f->relpath, key, sizeof(key)) ||
		    snprintf(tpath, sizeof(tpath), "%s/%s", dir, f->relpath) >= (int)sizeof(tpath)) {
			snprintf(err, sizeof(err), "path too long: %.300s", f->relpath);
			goto out;
		}
		if (upload_file(u, &j, tpath, f, key, err, sizeof(err)))
			goto out;
		bytes += (uint64_t)f->size;
	}
	/* a marker left by an earlier save of the step does not commit this one */
	if (marker && !strcmp(how, "idle"))
		marker = NULL;
	if (step_rewritten(c, vstep))
		goto rewritten;
	if (c->nodes > 1 && !j.node_reported) {
		char rkey[PATH_MAX + 80];
		snprintf(rkey, sizeof(rkey), ".tierckpt/node-%s", c->node_id);
		if (object_key(u, vstep, plen, rkey, key, sizeof(key)) ||
		    s3_object_put(u->clients[0], u->bucket, key, -1, 0, 0, NULL)) {
			snprintf(err, sizeof(err), "node report: %s", s3_client_errmsg(u->clients[0]));
			goto out;
		}
		journal_add(&j, "N");
	}
	if (marker && !j.marker_done) {
		if (c->nodes > 1) {
			int got = count_node_reports(u, vstep, plen, err, sizeof(err));
			if (got < 0)
				goto out;
			if (got < c->nodes) {
				log_info("%s: %d of %ld nodes have reported; the marker waits", vstep,
					 got, c->nodes);
				rc = STEP_WAITING;
				goto out;
			}
		}
		if (step_rewritten(c, vstep))
			goto rewritten;
		if (object_key(u, vstep, plen, marker->relpath, key, sizeof(key)) ||
		    snprintf(tpath, sizeof(tpath), "%s/%s", dir, marker->relpath) >=
			    (int)sizeof(tpath) ||
		    upload_file(u, &j, tpath, marker, key, err, sizeof(err)))
			goto out;
		journal_add(&j, "K");
	}
	journal_add(&j, "T %lld", tier_now_ms());
	tier_step_set(c->tier_dir, vstep, TIER_STEP_PERSISTED, marker ? "marker" : "files");
	log_info("%s persisted: %llu bytes sent in %lld ms", vstep, (unsigned long long)bytes,
		 tier_now_ms() - t0);
	rc = STEP_DONE;
	goto out;
rewritten:
	/* the program saves this step again: its next commit starts a fresh upload (the journal
	 * the writer dropped may have been appended to since) */
	log_info("%s is being written again; its upload starts over at its next commit", vstep);
	if (tier_step_meta_path(c->tier_dir, vstep, ".journal", tpath, sizeof(tpath)) == 0)
		unlink(tpath);
	rc = STEP_CANCELLED;
out:
	if (rc == STEP_FAILED && is_cancelled(u))
		rc = STEP_CANCELLED; /* not a failure: resumed from the journal next time */
	if (rc == STEP_FAILED) {
		step_error(c, vstep, "%s", err[0] ? err : "unknown error");
		tier_step_set(c->tier_dir, vstep, TIER_STEP_FAILED, how);
	}
	free(fl.v);
	journal_fini(&j);
	return rc;
}

/* One pass's context for the tier_step_foreach callback. */
struct pass_ctx {
	struct tier_up *u;
	int force;
	struct tier_up_stats *st;
	int rc;
};

/* tier_step_foreach callback: uploads step vstep if it is due. */
static int pass_one(const struct cfg *c, int p, const char *vstep, long long num, void *arg)
{
	struct pass_ctx *x = arg;
	struct tier_step_info info;

	if (num % c->s3_every_n_steps != 0 || tier_step_eval(c, vstep, &info) != TIER_OK ||
	    info.state < TIER_STEP_COMMITTED || info.state == TIER_STEP_PERSISTED)
		return 0;
	x->st->pending++;
	if (info.state == TIER_STEP_FAILED && !x->force &&
	    tier_now_ms() - info.since_ms < c->s3_retry_s * 1000) {
		x->st->failed++;
		return 0;
	}
	if (is_cancelled(x->u))
		return 0;
	int r = upload_step(x->u, p, vstep);
	if (r == STEP_DONE) {
		x->st->pending--;
	} else if (r == STEP_WAITING || r == STEP_CANCELLED) {
		x->st->waiting++;
	} else {
		x->st->failed++;
		x->rc = TIER_UP_EFAIL;
	}
	return 0;
}

int tier_up_pass(struct tier_up *u, int force, struct tier_up_stats *st)
{
	struct pass_ctx x = {u, force, st, TIER_UP_OK};

	memset(st, 0, sizeof(*st));
	tier_step_foreach(u->c, pass_one, &x);
	return x.rc;
}

/* ----------------------------------------------------------------------------------------------
 * the shim's entry point (libtierckpt-upload.so)
 */

static struct tier_up_ctl *exit_ctl;

/* OpenSSL's exit hook: runs inside OPENSSL_cleanup() before OpenSSL tears itself down, whoever
 * triggers it (the host program's own OpenSSL use registers that atexit, maybe before ours). */
static void crypto_exit_hook(void)
{
	if (exit_ctl && exit_ctl->before_exit)
		exit_ctl->before_exit();
}

__attribute__((visibility("default"))) int tierckpt_upload_main(const struct cfg *c,
								  struct tier_up_ctl *ctl)
{
	struct tier_up *u = NULL;
	char msg[512];
	long long last_config_try = 0;

	log_init(c); /* this library's own log state: same destination, level and tags */
	/* OpenSSL must not tear itself down in an atexit handler while this thread still works:
	 * initialise it without one, and have any clean-up first run the shim's exit wait */
	if (!OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL)) {
		/* the host program's OpenSSL has been cleaned up: it is exiting */
		__atomic_store_n(&ctl->halted, 1, __ATOMIC_RELEASE);
		return 0;
	}
	exit_ctl = ctl;
	OPENSSL_atexit(crypto_exit_hook);
	while (!__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE)) {
		if (!u && tier_now_ms() - last_config_try >= c->s3_retry_s * 1000) {
			last_config_try = tier_now_ms();
			if (tier_up_new(c, &ctl->stop, &u, msg, sizeof(msg)))
				log_error("uploader cannot start: %s; committed steps stay in memory "
					  "and are retried in %ld s", msg, c->s3_retry_s);
		}
		if (u) {
			struct tier_up_stats st;
			tier_up_pass(u, 0, &st);
			/* failed steps wait for their retry: an exiting leader does not wait for them */
			__atomic_store_n(&ctl->pending, st.pending - st.failed, __ATOMIC_RELEASE);
		} else {
			__atomic_store_n(&ctl->pending, 0, __ATOMIC_RELEASE);
		}
		__atomic_add_fetch(&ctl->passes, 1, __ATOMIC_RELEASE);
		if (!__atomic_load_n(&ctl->stop, __ATOMIC_ACQUIRE))
			ctl->wait(500);
	}
	tier_up_free(u);
	__atomic_store_n(&ctl->halted, 1, __ATOMIC_RELEASE);
	return 0;
}
