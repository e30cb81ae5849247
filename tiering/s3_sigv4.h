/*
 * s3_sigv4.h - AWS Signature Version 4 (AWS4-HMAC-SHA256) for the S3 client: canonical request,
 * string to sign, signature, Authorization header, and the presigned-URL (query) form.
 *
 * DESIGN
 * The signer is a pure function of one request description: no global state, no clock, no
 * environment, no I/O, so it is thread-safe and the AWS test vectors pin it down exactly.  The
 * caller says everything (method, path, query parameters, headers, payload hash, X-Amz-Date,
 * region, service, credentials) and gets back the pieces it must send.  Query parameters are
 * given raw (decoded) and are encoded and sorted here, because getting that wrong is what makes
 * libcurl's built-in signer unusable for S3 (unsorted parameters, `?uploads` mis-signed): the
 * canonical query string returned in out->query is also the string to send after '?', so what
 * is signed and what is sent cannot drift apart.
 *
 * Two path conventions exist.  S3 encodes the path once and never normalises it ("a/../b" is a
 * key); the generic AWS suite (service "service") normalises the path and encodes the on-the-wire
 * path again ("double encoding").  Both are flags: S3_SIGV4_ENCODE_PATH encodes req->path (give
 * the raw key path for S3, or the wire path for a double-encoding service), without it the path
 * is used as given (already encoded by the caller); S3_SIGV4_NORMALIZE_PATH removes "."/".."
 * segments and empty segments first.  S3: use S3_SIGV4_ENCODE_PATH with the raw key and send
 * the path that s3_sigv4_uri_encode() gives for it.
 *
 * Secrets: the secret key and the derived signing keys live only in buffers that are cleansed
 * before the call returns; no output contains the secret (the session token does appear in
 * out->query of the presigned form, as it must).
 */
#ifndef TIERCKPT_S3_SIGV4_H
#define TIERCKPT_S3_SIGV4_H

#include <stddef.h>
#include <time.h>

/* Result codes of the s3_ module (the S3 client adds its own after these). */
enum s3_rc {
	S3_OK = 0,
	S3_EINVAL,  /* a request field is missing or malformed, or an output does not fit */
	S3_ENOMEM,  /* allocation failed */
	S3_ECRYPTO, /* OpenSSL failed (SHA-256 / HMAC) */
};

#define S3_SIGV4_ALGORITHM "AWS4-HMAC-SHA256"
/* hex SHA-256 of zero bytes: the payload hash of a request without a body */
#define S3_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define S3_SIGV4_UNSIGNED_PAYLOAD "UNSIGNED-PAYLOAD"
#define S3_SIGV4_HEX_LEN 64          /* hex SHA-256 / signature, without NUL */
#define S3_SIGV4_AMZ_DATE_LEN 16     /* YYYYMMDDTHHMMSSZ, without NUL */
#define S3_SIGV4_EXPIRES_MAX 604800L /* 7 days: the longest presigned URL AWS accepts */

/* req->flags */
enum s3_sigv4_flag {
	/* canonical URI = URI-encode(path) ('/' kept); else the path is used as given */
	S3_SIGV4_ENCODE_PATH = 1u << 0,
	/* drop empty, "." and ".." segments first (generic services; never for S3) */
	S3_SIGV4_NORMALIZE_PATH = 1u << 1,
	/* presigned-URL form: X-Amz-* in the query instead of an Authorization header */
	S3_SIGV4_PRESIGN = 1u << 2,
	/* the session token is added after signing and is not signed (some STS flows) */
	S3_SIGV4_OMIT_TOKEN = 1u << 3,
	/* header form: sign "x-amz-content-sha256: <payload_hash>" (S3 requires it); ignored by
	 * the presigned form, which never carries it */
	S3_SIGV4_CONTENT_SHA256 = 1u << 4,
};

/* One query parameter or header.  Strings are NUL-terminated and borrowed. */
struct s3_sigv4_kv {
	const char *name;
	const char *value; /* NULL means "" (a query "?uploads" is {"uploads", NULL}) */
};

/* What to sign.  Every pointer is borrowed for the duration of s3_sigv4_sign() only. */
struct s3_sigv4_req {
	const char *method;                 /* "GET", "PUT", ... (sent as is) */
	const char *path;                   /* absolute, '/'-first; see the flags */
	const struct s3_sigv4_kv *query;    /* raw (decoded) names/values; encoded and sorted here */
	size_t n_query;
	const struct s3_sigv4_kv *headers;  /* must include "host"; names in any case; values are
					     * trimmed and inner whitespace runs collapsed; a name
					     * given several times is joined with ',' in order */
	size_t n_headers;
	const char *payload_hash;           /* 64 lower-case hex, "UNSIGNED-PAYLOAD", or another
					     * [A-Z0-9-] token; NULL = S3_SIGV4_EMPTY_SHA256 */
	const char *amz_date;               /* YYYYMMDDTHHMMSSZ (UTC), see s3_sigv4_amz_date() */
	const char *region;                 /* "us-east-1" */
	const char *service;                /* "s3" */
	const char *access_key;
	const char *secret_key;
	const char *session_token;          /* NULL or "" = none */
	long expires_s;                     /* presigned form: 1..S3_SIGV4_EXPIRES_MAX */
	unsigned flags;                     /* enum s3_sigv4_flag */
};

/*
 * The result.  Strings are malloc'd, owned by the struct and released by s3_sigv4_out_fini().
 *
 * In the header form the signer adds the headers "x-amz-date: <amz_date>", and when there is a
 * session token (and no S3_SIGV4_OMIT_TOKEN) "x-amz-security-token: <token>", and with
 * S3_SIGV4_CONTENT_SHA256 "x-amz-content-sha256: <payload_hash>" to the signed headers: the
 * caller must send them with exactly these values, plus "Authorization: <authorization>" (and
 * the token header even when it is omitted from signing).  A caller may list these headers itself;
 * then the value must be the same or signing fails with S3_EINVAL.
 */
struct s3_sigv4_out {
	char *canonical_request;          /* the SigV4 canonical request (for debugging/tests) */
	char *string_to_sign;
	char *signed_headers;             /* "host;x-amz-date" */
	char *query;                      /* encoded query to send after '?' ("" = send none):
					   * header form: the canonical query string; presigned
					   * form: it plus X-Amz-Signature (and the token when
					   * S3_SIGV4_OMIT_TOKEN) */
	char *authorization;              /* header form: the Authorization value; else NULL */
	char signature[S3_SIGV4_HEX_LEN + 1]; /* lower-case hex */
};

/*
 * s3_sigv4_sign - sign *req; fill *out (zeroed first, so s3_sigv4_out_fini() is always safe
 * afterwards).  Returns S3_OK, S3_EINVAL (req incomplete or malformed: missing host header,
 * bad amz_date, a CR/LF in a header value, a reserved X-Amz-* query name in the presigned form,
 * expires_s out of range ...), S3_ENOMEM or S3_ECRYPTO; on failure every field of *out is
 * NULL/empty.  Any thread; no global state; does not log.
 */
int s3_sigv4_sign(const struct s3_sigv4_req *req, struct s3_sigv4_out *out);

/* s3_sigv4_out_fini - free the strings of *out and zero it.  NULL and a zeroed or already
 * finished struct are fine.  Any thread. */
void s3_sigv4_out_fini(struct s3_sigv4_out *out);

/*
 * s3_sigv4_uri_encode - SigV4 URI encoding of in[0..inlen): A-Z a-z 0-9 - _ . ~ kept, every other
 * byte as %XX (upper-case hex); '/' is kept when keep_slash (object key paths) and encoded
 * otherwise (query names and values).  Writes a NUL-terminated result into out (size outsz) and
 * its length into *outlen (may be NULL).  Returns S3_OK, or S3_EINVAL when it does not fit
 * (out then holds ""; outsz of 3*inlen+1 always fits).  Pure; any thread.
 */
int s3_sigv4_uri_encode(const char *in, size_t inlen, int keep_slash, char *out, size_t outsz,
			size_t *outlen);

/* s3_sigv4_sha256_hex - lower-case hex SHA-256 of data[0..len) into hex (NUL-terminated).
 * Returns S3_OK or S3_ECRYPTO.  Any thread. */
int s3_sigv4_sha256_hex(const void *data, size_t len, char hex[S3_SIGV4_HEX_LEN + 1]);

/* s3_sigv4_amz_date - format time t (seconds since the epoch) as YYYYMMDDTHHMMSSZ in UTC into
 * out (NUL-terminated).  Returns S3_OK, or S3_EINVAL when t is not representable.  Any thread. */
int s3_sigv4_amz_date(time_t t, char out[S3_SIGV4_AMZ_DATE_LEN + 1]);

#endif
