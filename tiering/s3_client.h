/*
 * s3_client.h - the S3 client of the durable tier: endpoint and credentials from the standard AWS
 * environment and shared files, and the object operations the uploader and recall need (PUT from
 * a file range, GET into a file, HEAD, DELETE, ListObjectsV2, multipart upload), each with
 * retries, on libcurl with our own SigV4 signer (s3_sigv4.h).
 *
 * DESIGN
 * A `struct s3_config` is resolved once (s3_config_load_env) from the environment the way the
 * AWS CLI does it, then any number of `struct s3_client` are made from it.  A client owns one
 * libcurl easy handle, so it keeps its connection alive between requests; it is used by ONE
 * thread at a time (it holds the detail of its last failure).  Parallel transfers use several
 * clients, one per worker thread.
 *
 * Every operation goes through one request engine: sign (fresh X-Amz-Date per attempt), send,
 * classify, and retry with full-jitter exponential backoff (sleep = random(0, min(cap,
 * base * 2^attempt))) while the attempt count and the per-operation time budget last.  Retried:
 * connection failures, timeouts, stalls (no byte moved for stall_timeout_ms), HTTP 429/500/502/
 * 503/504, the XML codes SlowDown/InternalError/RequestTimeout, and a PUT whose returned ETag is
 * not the MD5 we sent (a body damaged on the way).  Never retried: other 4xx (auth, NoSuchBucket,
 * NoSuchKey...): they are reported at once with a message naming the cause.
 *
 * Integrity: bodies are sent with x-amz-content-sha256: UNSIGNED-PAYLOAD plus Content-MD5.  A
 * real SHA-256 would need the whole body hashed before the first byte is signed (a second pass
 * over up to 5 GiB parts on top of MD5) and, on real S3 over TLS, adds nothing that Content-MD5
 * does not already give: S3 verifies Content-MD5 and rejects a damaged body (BadDigest), and we
 * verify the returned ETag equals the MD5 ourselves, which also covers servers that ignore
 * Content-MD5 (the local test server does).  One MD5 pass per byte is the whole integrity cost.
 *
 * Errors: every function returns an `int rc`: S3_OK (0) or a value of enum s3_rc / enum
 * s3_client_rc.  The client keeps the detail of its last failure: HTTP status, S3 error code and
 * one human-readable line (s3_client_errmsg).  No message ever contains the secret key or the
 * session token: the client never formats them, and a server message is scrubbed of both.
 */
#ifndef TIERCKPT_S3_CLIENT_H
#define TIERCKPT_S3_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "tiering/s3_sigv4.h"

/* Result codes of the client; they continue enum s3_rc (S3_OK, S3_EINVAL, S3_ENOMEM, S3_ECRYPTO). */
enum s3_client_rc {
	S3_ECONFIG = S3_ECRYPTO + 1, /* endpoint, region or credentials missing or malformed */
	S3_ENET,       /* connection failed / timed out / stalled, retries exhausted */
	S3_EAUTH,      /* credentials rejected (403: bad key id, bad secret, denied, expired) */
	S3_ENOTFOUND,  /* 404: NoSuchBucket, NoSuchKey, NoSuchUpload */
	S3_EHTTP,      /* another non-retryable HTTP error (4xx) */
	S3_ESERVER,    /* a retryable server error (5xx, SlowDown ...) that outlasted the retries */
	S3_EINTEGRITY, /* the server's ETag is not the checksum of what we sent */
	S3_EIO,        /* reading or writing the local file failed (errno in s3_client_errno) */
	S3_EPROTO,     /* a response we cannot understand (no ETag, malformed XML) */
	S3_ECANCELED,  /* the owner cancelled the operation (s3_config.cancel) */
};

/* Limits of S3 multipart uploads, and our defaults. */
#define S3_PART_BYTES_MIN (5ull << 20)          /* every part but the last */
#define S3_PART_BYTES_MAX (5ull << 30)
#define S3_PART_BYTES_DEFAULT (8ull << 20)
#define S3_PARTS_MAX 10000u
#define S3_PUT_BYTES_MAX (5ull << 30)           /* single PUT */
#define S3_ETAG_MAX 80                          /* "<32 hex>-<up to 5 digits>" with room */
#define S3_MD5_HEX_LEN 32

/*
 * Endpoint, region, credentials and transfer settings.  Strings are malloc'd and owned
 * (s3_config_fini).  Filled by s3_config_load_env(); a caller may change fields afterwards
 * (tests do) as long as strings stay malloc'd.
 */
struct s3_config {
	/* endpoint */
	char *scheme;         /* "http" or "https" */
	char *host;           /* host name, IPv4 literal, or "[v6]"; NULL = AWS (virtual-hosted) */
	int port;             /* 0 = the scheme's default */
	int path_style;       /* 1: http://host/bucket/key; 0: http://bucket.host/key */
	char *region;
	char *ca_bundle;      /* AWS_CA_BUNDLE, used for https only; NULL = system store */
	/* credentials */
	char *access_key;
	char *secret_key;
	char *session_token;  /* NULL = none */
	char *cred_source;    /* where they came from, for messages: "environment", "profile 'x'
			       * in /root/.aws/credentials" (never the values) */
	/* transfer and retry policy */
	long connect_timeout_ms;   /* TCP/TLS connect, per attempt (default 5000) */
	long stall_timeout_ms;     /* an attempt that moves no byte this long fails (default 20000;
				    * libcurl counts in whole seconds, rounded up) */
	unsigned max_attempts;     /* per request, first try included (default 6) */
	long retry_base_ms;        /* full jitter backoff base (default 100) */
	long retry_cap_ms;         /* and cap (default 5000) */
	long retry_budget_ms;      /* no retry is started after this long since the operation began
				    * (per object for s3_put_file; default 60000) */
	char err[256];        /* s3_config_load_env's failure detail (no secret) */
	/* cancellation: when non-NULL and *cancel becomes non-zero (any thread, atomically), a
	 * transfer in progress is aborted within ~100 ms, no retry or backoff sleep starts, and the
	 * operation fails with S3_ECANCELED.  Not owned. */
	const int *cancel;
};

/*
 * s3_config_load_env - zero *cfg and fill it from the environment: AWS_ENDPOINT_URL_S3, else
 * AWS_ENDPOINT_URL (http:// or https://host[:port], no path; path-style addressing); without one,
 * AWS itself (https://<bucket>.s3.<region>.amazonaws.com, path-style for bucket names that are not
 * DNS labels).  Region: AWS_REGION, AWS_DEFAULT_REGION, the profile's `region` in the config file,
 * else us-east-1.  Credentials: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN),
 * else profile AWS_PROFILE (default "default") from AWS_SHARED_CREDENTIALS_FILE (default
 * ~/.aws/credentials, section [name]) then AWS_CONFIG_FILE (default ~/.aws/config, section
 * [profile name], or [default]).  Returns S3_OK, S3_ECONFIG (cfg->err says what and which
 * variable or file) or S3_ENOMEM.  Any thread, but it reads the environment (getenv): call it
 * before starting threads that may setenv.
 */
int s3_config_load_env(struct s3_config *cfg);

/* s3_config_fini - free the strings of *cfg (secrets cleansed first) and zero it.  NULL and a
 * zeroed struct are fine.  Any thread. */
void s3_config_fini(struct s3_config *cfg);

/* s3_global_init - initialise libcurl once per process (idempotent, thread-safe by pthread_once).
 * Returns S3_OK or S3_ENOMEM.  s3_client_new calls it; call it yourself before threads exist if
 * your libcurl's global init is not thread-safe. */
int s3_global_init(void);

struct s3_client;

/*
 * s3_client_new - make a client with its own copy of *cfg and its own libcurl handle.  Returns
 * S3_OK with *out set, S3_EINVAL (cfg has no credentials or no region), or S3_ENOMEM.  Any
 * thread; the client is then used by one thread at a time.
 */
int s3_client_new(const struct s3_config *cfg, struct s3_client **out);

/* s3_client_free - close the connection and free the client (secrets cleansed).  NULL is fine. */
void s3_client_free(struct s3_client *c);

/* Detail of the client's last failed operation (valid until its next operation).  errmsg is one
 * line without a trailing newline, "" after success; http_status 0 = no HTTP response;
 * err_code is the S3 XML <Code> ("" = none); errno is the local errno of S3_EIO. */
const char *s3_client_errmsg(const struct s3_client *c);
long s3_client_http_status(const struct s3_client *c);
const char *s3_client_err_code(const struct s3_client *c);
int s3_client_errno(const struct s3_client *c);
/* attempts made by the last operation (1 = no retry); for tests and statistics */
unsigned s3_client_attempts(const struct s3_client *c);

/* s3_rc_str - a static name for an rc ("S3_ENET").  Any thread. */
const char *s3_rc_str(int rc);

/* --- objects (all: the owning thread of c only) ------------------------------------------------ */

/*
 * s3_object_put - PUT bytes [off, off+len) of fd as bucket/key (single request, len <=
 * S3_PUT_BYTES_MAX), read with pread (the fd's offset is not used or moved).  Sends Content-MD5
 * and checks the returned ETag equals it.  md5_hex (may be NULL) receives the lower-case hex MD5
 * of the body (= the object's ETag).  Returns S3_OK or an error (detail on c).
 */
int s3_object_put(struct s3_client *c, const char *bucket, const char *key, int fd, off_t off,
		  uint64_t len, char md5_hex[S3_MD5_HEX_LEN + 1]);

/*
 * s3_object_get - GET bucket/key, or only bytes [range_off, range_off+range_len) when range_len
 * is not 0, and pwrite the body into fd at file offset fd_off.  A retry rewrites from fd_off.
 * When the whole object was asked for and its ETag is a plain MD5 (single-PUT object), the
 * received bytes are checked against it (S3_EINTEGRITY).  *got_bytes (may be NULL) = bytes
 * written.  Returns S3_OK or an error (S3_ENOTFOUND for a missing key or bucket).
 */
int s3_object_get(struct s3_client *c, const char *bucket, const char *key, uint64_t range_off,
		  uint64_t range_len, int fd, off_t fd_off, uint64_t *got_bytes);

/* What HEAD tells. */
struct s3_object_info {
	uint64_t size_bytes;
	char etag[S3_ETAG_MAX]; /* without quotes */
};

/* s3_object_head - HEAD bucket/key into *info.  Returns S3_OK, S3_ENOTFOUND (no such key or
 * bucket: a HEAD has no body, so the two are told apart only by a follow-up request, not made
 * here) or another error. */
int s3_object_head(struct s3_client *c, const char *bucket, const char *key,
		   struct s3_object_info *info);

/* s3_object_delete - DELETE bucket/key.  Deleting a missing key is S3_OK (S3's rule). */
int s3_object_delete(struct s3_client *c, const char *bucket, const char *key);

/* --- listing ------------------------------------------------------------------------------------ */

struct s3_list_entry {
	char *key;
	uint64_t size_bytes;
	char etag[S3_ETAG_MAX]; /* without quotes */
};

/* One page of ListObjectsV2.  Owned arrays; s3_list_page_fini frees them. */
struct s3_list_page {
	struct s3_list_entry *entries;
	size_t n_entries;
	char **prefixes;        /* CommonPrefixes/Prefix when a delimiter was given */
	size_t n_prefixes;
	int is_truncated;
	char *next_token;       /* NextContinuationToken when is_truncated, else NULL */
};

/*
 * s3_objects_list - one ListObjectsV2 page of bucket: keys starting with prefix (NULL = all),
 * grouped by delimiter (NULL = none), after continuation_token (NULL = from the start), at most
 * max_keys (0 = the server's default, 1000).  *page is zeroed first and filled.  Returns S3_OK,
 * S3_EPROTO (a body we cannot parse) or a request error.  Loop while page->is_truncated passing
 * page->next_token.
 */
int s3_objects_list(struct s3_client *c, const char *bucket, const char *prefix,
		    const char *delimiter, const char *continuation_token, unsigned max_keys,
		    struct s3_list_page *page);

/* s3_list_page_fini - free what a page owns and zero it.  NULL and a zeroed page are fine. */
void s3_list_page_fini(struct s3_list_page *page);

/* --- multipart ---------------------------------------------------------------------------------- */

/* One part as recorded by the uploader: the server cannot be asked (no ListParts everywhere). */
struct s3_part {
	unsigned number;          /* 1..10000 */
	uint64_t off, len;        /* the bytes of the file */
	char etag[S3_ETAG_MAX];   /* "" until uploaded; then the hex MD5 the server confirmed */
	unsigned char md5[16];    /* binary MD5 of the part (for the composite ETag) */
};

/* s3_multipart_create - CreateMultipartUpload; *upload_id (malloc'd, caller frees) on S3_OK. */
int s3_multipart_create(struct s3_client *c, const char *bucket, const char *key,
			char **upload_id);

/*
 * s3_multipart_part_put - UploadPart part->number with bytes [part->off, part->off+part->len) of
 * fd; fills part->etag and part->md5 (Content-MD5 sent, returned ETag checked).  Touches only
 * *part, so workers may upload different parts of one upload with different clients at once.
 */
int s3_multipart_part_put(struct s3_client *c, const char *bucket, const char *key,
			  const char *upload_id, int fd, struct s3_part *part);

/*
 * s3_multipart_complete - CompleteMultipartUpload with parts[0..n) (in part-number order, each
 * with its etag).  A 200 whose body is an <Error> is a failure (retried when its code is
 * retryable).  When the server answers with a multipart ETag ("<hex>-<n>") it must equal the one
 * computed from the parts' MD5s (S3_EINTEGRITY otherwise).  etag_out (may be NULL) gets the
 * server's ETag without quotes.
 */
int s3_multipart_complete(struct s3_client *c, const char *bucket, const char *key,
			  const char *upload_id, const struct s3_part *parts, size_t n,
			  char etag_out[S3_ETAG_MAX]);

/* s3_multipart_abort - AbortMultipartUpload, best effort: S3_OK also when the server does not
 * implement it (405/501) or the upload is already gone (404).  Not retried beyond max_attempts. */
int s3_multipart_abort(struct s3_client *c, const char *bucket, const char *key,
		       const char *upload_id);

/* s3_multipart_etag - the ETag S3 gives a multipart object: hex MD5 of the concatenated binary
 * part MD5s, "-", the part count.  Returns S3_OK or S3_ECRYPTO.  Any thread. */
int s3_multipart_etag(const struct s3_part *parts, size_t n, char out[S3_ETAG_MAX]);

/* --- whole-file upload ---------------------------------------------------------------------------- */

/*
 * The plan and record of one file's upload.  Made by s3_upload_plan; parts[i] is written only by
 * the one caller of s3_upload_part(.., i) (so N workers may each take different i with their
 * own client); the rest is written by the planning/finishing thread only.
 */
struct s3_upload {
	char *bucket, *key;
	int fd;                 /* borrowed; must stay open until the upload ends */
	uint64_t size_bytes;
	uint64_t part_bytes;    /* after raising to fit S3_PARTS_MAX */
	int multipart;          /* 0: one PUT (parts[0] covers the file) */
	char *upload_id;        /* multipart only, after s3_upload_begin */
	struct s3_part *parts;
	size_t n_parts;
	char etag[S3_ETAG_MAX]; /* the object's ETag once finished (recorded checksum) */
};

/*
 * s3_upload_plan - plan the upload of fd (size_bytes) to bucket/key: multipart when size_bytes
 * >= multipart_threshold_bytes (0 = part_bytes) and size_bytes > 0; part_bytes 0 = 8 MiB, raised
 * to S3_PART_BYTES_MIN and then (in MiB steps) until no more than 10000 parts are needed.
 * Returns S3_OK with *out, S3_EINVAL (object too big for S3) or S3_ENOMEM.  Any thread.
 */
int s3_upload_plan(int fd, uint64_t size_bytes, const char *bucket, const char *key,
		   uint64_t part_bytes, uint64_t multipart_threshold_bytes, struct s3_upload **out);

/* s3_upload_begin - CreateMultipartUpload when u->multipart (else nothing).  Planning thread. */
int s3_upload_begin(struct s3_client *c, struct s3_upload *u);

/* s3_upload_part - send part i (0-based) of u: an UploadPart, or the single PUT.  The caller of
 * each i owns u->parts[i] during the call. */
int s3_upload_part(struct s3_client *c, struct s3_upload *u, size_t i);

/* s3_upload_finish - CompleteMultipartUpload (multipart) after every part succeeded; sets u->etag.
 * Planning thread. */
int s3_upload_finish(struct s3_client *c, struct s3_upload *u);

/* s3_upload_abort - best-effort AbortMultipartUpload of a failed multipart upload (keeps c's
 * error detail of the failure that led here).  Planning thread. */
void s3_upload_abort(struct s3_client *c, struct s3_upload *u);

/* s3_upload_free - free the plan.  NULL is fine. */
void s3_upload_free(struct s3_upload *u);

/*
 * s3_put_file - upload the whole of fd (size_bytes) as bucket/key, sequentially with one client:
 * plan, begin, every part, finish; abort on failure.  etag_out (may be NULL) receives the object's
 * ETag.  The retry budget (cfg retry_budget_ms) runs per object.  Returns S3_OK or the first
 * failure's rc (detail on c).
 */
int s3_put_file(struct s3_client *c, int fd, uint64_t size_bytes, const char *bucket,
		const char *key, uint64_t part_bytes, uint64_t multipart_threshold_bytes,
		char etag_out[S3_ETAG_MAX]);

#endif
