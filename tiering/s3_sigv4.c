/*
 * s3_sigv4.c - AWS Signature Version 4 signer on OpenSSL (see s3_sigv4.h for the contract).
 *
 * DESIGN
 * One pass builds, in order: the canonical URI (optionally normalised, optionally encoded), the
 * canonical query string (our own encoding, sorted by encoded name then value), the canonical
 * headers (lower-cased names, trimmed/collapsed values, stable-sorted so repeated names join in
 * the caller's order), the canonical request, the string to sign, and finally the HMAC chain
 * AWS4+secret -> date -> region -> service -> "aws4_request" -> signature.  Text is accumulated
 * in a small growable buffer (struct sb) whose allocation failure is sticky and checked once at
 * the end, which keeps the builder free of error plumbing.  Everything lives on the stack or in
 * memory owned by the call; key material is cleansed before it is released.
 */
#include "tiering/s3_sigv4.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- growable string -------------------------------------------------------------------------- */

struct sb {
	char *p;
	size_t len, cap;
	int oom; /* sticky: once an append fails every later one is a no-op */
};

/* sb_grow - make room for `more` bytes plus a NUL.  Returns 0, or -1 (and sets oom). */
static int sb_grow(struct sb *b, size_t more)
{
	size_t need, cap;
	char *p;

	if (b->oom)
		return -1;
	if (more > SIZE_MAX / 2 - b->len - 1) {
		b->oom = 1;
		return -1;
	}
	need = b->len + more + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 128;
	while (cap < need)
		cap *= 2;
	p = realloc(b->p, cap);
	if (!p) {
		b->oom = 1;
		return -1;
	}
	b->p = p;
	b->cap = cap;
	b->p[b->len] = '\0';
	return 0;
}

/* sb_addn / sb_add / sb_addc - append bytes / a C string / one byte; failures are sticky. */
static void sb_addn(struct sb *b, const char *s, size_t n)
{
	if (sb_grow(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_add(struct sb *b, const char *s)
{
	sb_addn(b, s, strlen(s));
}

static void sb_addc(struct sb *b, char c)
{
	sb_addn(b, &c, 1);
}

static int is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '~';
}

/* sb_add_enc - append the SigV4 URI encoding of s[0..n) (see s3_sigv4_uri_encode). */
static void sb_add_enc(struct sb *b, const char *s, size_t n, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (is_unreserved(c) || (keep_slash && c == '/')) {
			sb_addc(b, (char)c);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };

			sb_addn(b, e, 3);
		}
	}
}

/* sb_take - hand the buffer to the caller (never NULL unless oom: an empty buffer gives "").
 * Returns the malloc'd string or NULL on allocation failure; b is emptied either way. */
static char *sb_take(struct sb *b)
{
	char *p;

	if (!b->oom && !b->p)
		sb_grow(b, 0);
	if (b->oom) {
		free(b->p);
		memset(b, 0, sizeof(*b));
		return NULL;
	}
	b->p[b->len] = '\0';
	p = b->p;
	memset(b, 0, sizeof(*b));
	return p;
}

/* --- public helpers ----------------------------------------------------------------------------- */

int s3_sigv4_uri_encode(const char *in, size_t inlen, int keep_slash, char *out, size_t outsz,
			size_t *outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, o = 0;

	if (!out || outsz == 0 || (!in && inlen))
		return S3_EINVAL;
	for (i = 0; i < inlen; i++) {
		unsigned char c = (unsigned char)in[i];
		int keep = is_unreserved(c) || (keep_slash && c == '/');

		if (outsz - o < (keep ? 1u : 3u) + 1u) {
			out[0] = '\0';
			return S3_EINVAL;
		}
		if (keep) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	if (outlen)
		*outlen = o;
	return S3_OK;
}

static void to_hex(const unsigned char *d, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[d[i] >> 4];
		out[2 * i + 1] = hex[d[i] & 15];
	}
	out[2 * n] = '\0';
}

int s3_sigv4_sha256_hex(const void *data, size_t len, char hex[S3_SIGV4_HEX_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!data && len)
		return S3_EINVAL;
	if (!EVP_Digest(data ? data : "", len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return S3_ECRYPTO;
	to_hex(md, 32, hex);
	return S3_OK;
}

int s3_sigv4_amz_date(time_t t, char out[S3_SIGV4_AMZ_DATE_LEN + 1])
{
	struct tm tm;

	if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
		return S3_EINVAL;
	if (strftime(out, S3_SIGV4_AMZ_DATE_LEN + 1, "%Y%m%dT%H%M%SZ", &tm) !=
	    S3_SIGV4_AMZ_DATE_LEN)
		return S3_EINVAL;
	return S3_OK;
}

void s3_sigv4_out_fini(struct s3_sigv4_out *out)
{
	if (!out)
		return;
	free(out->canonical_request);
	free(out->string_to_sign);
	free(out->signed_headers);
	free(out->query);
	free(out->authorization);
	memset(out, 0, sizeof(*out));
}

/* --- validation ------------------------------------------------------------------------------- */

static int valid_amz_date(const char *d)
{
	int i;

	if (!d || strlen(d) != S3_SIGV4_AMZ_DATE_LEN || d[8] != 'T' || d[15] != 'Z')
		return 0;
	for (i = 0; i < 15; i++)
		if (i != 8 && (d[i] < '0' || d[i] > '9'))
			return 0;
	return 1;
}

/* a scope component or access key: non-empty, printable, no '/', ',', '=' or space, which
 * would change how the credential is parsed back */
static int valid_scope_part(const char *s)
{
	if (!s || !*s)
		return 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= 0x20 || c >= 0x7f || c == '/' || c == ',' || c == '=' || c == ';')
			return 0;
	}
	return 1;
}

static int valid_method(const char *m)
{
	if (!m || !*m)
		return 0;
	for (; *m; m++)
		if (!((*m >= 'A' && *m <= 'Z') || (*m >= 'a' && *m <= 'z')))
			return 0;
	return 1;
}

/* RFC 7230 token characters */
static int valid_header_name(const char *n)
{
	if (!n || !*n)
		return 0;
	for (; *n; n++) {
		unsigned char c = (unsigned char)*n;

		if (!(is_unreserved(c) || strchr("!#$%&'*+^`|", c)))
			return 0;
	}
	return 1;
}

/* header values and the session token: no CR/LF or other control bytes except TAB */
static int valid_header_value(const char *v)
{
	for (; *v; v++) {
		unsigned char c = (unsigned char)*v;

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return 0;
	}
	return 1;
}

static int valid_payload_hash(const char *h)
{
	size_t i, n = strlen(h);

	if (n == S3_SIGV4_HEX_LEN) {
		for (i = 0; i < n; i++)
			if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
				break;
		if (i == n)
			return 1;
	}
	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (!((h[i] >= 'A' && h[i] <= 'Z') || (h[i] >= '0' && h[i] <= '9') || h[i] == '-'))
			return 0;
	return 1;
}

/* a path used as given must already be in wire form: printable ASCII, no '?' or '#' */
static int valid_raw_path(const char *p)
{
	for (; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#')
			return 0;
	}
	return 1;
}

/* --- canonical URI ----------------------------------------------------------------------------- */

/*
 * add_canonical_uri - append the canonical URI of `path` to b.  With normalize, empty, "." and
 * ".." segments are resolved (".." clamped at the root) and a trailing '/' of the input is kept
 * unless the result is "/" (the rule of botocore and aws-c-auth).  Returns S3_OK or S3_ENOMEM.
 */
static int add_canonical_uri(struct sb *b, const char *path, unsigned flags)
{
	int encode = !!(flags & S3_SIGV4_ENCODE_PATH);
	size_t plen = strlen(path);
	const char **seg;
	size_t *seglen, nseg = 0, i;
	const char *p, *end = path + plen;

	if (!(flags & S3_SIGV4_NORMALIZE_PATH)) {
		if (encode)
			sb_add_enc(b, path, plen, 1);
		else
			sb_addn(b, path, plen);
		return S3_OK;
	}
	/* at most plen/2+1 segments survive; allocate for the worst case */
	seg = malloc((plen / 2 + 1) * sizeof(*seg));
	seglen = malloc((plen / 2 + 1) * sizeof(*seglen));
	if (!seg || !seglen) {
		free(seg);
		free(seglen);
		return S3_ENOMEM;
	}
	for (p = path; p < end;) {
		const char *s = p;
		size_t n;

		while (p < end && *p != '/')
			p++;
		n = (size_t)(p - s);
		if (p < end)
			p++; /* skip the '/' */
		if (n == 0 || (n == 1 && s[0] == '.'))
			continue;
		if (n == 2 && s[0] == '.' && s[1] == '.') {
			if (nseg)
				nseg--;
			continue;
		}
		seg[nseg] = s;
		seglen[nseg++] = n;
	}
	for (i = 0; i < nseg; i++) {
		sb_addc(b, '/');
		if (encode)
			sb_add_enc(b, seg[i], seglen[i], 1);
		else
			sb_addn(b, seg[i], seglen[i]);
	}
	if (nseg == 0 || (plen && path[plen - 1] == '/'))
		sb_addc(b, '/');
	free(seg);
	free(seglen);
	return S3_OK;
}

/* --- query parameters -------------------------------------------------------------------------- */

struct qparam {
	char *name;  /* encoded */
	char *value; /* encoded */
};

static int qparam_cmp(const void *a, const void *b)
{
	const struct qparam *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

/* qparam_set - encode name/value into *q.  Returns S3_OK or S3_ENOMEM. */
static int qparam_set(struct qparam *q, const char *name, const char *value)
{
	struct sb n = { 0 }, v = { 0 };

	sb_add_enc(&n, name, strlen(name), 0);
	sb_add_enc(&v, value ? value : "", value ? strlen(value) : 0, 0);
	q->name = sb_take(&n);
	q->value = sb_take(&v);
	return q->name && q->value ? S3_OK : S3_ENOMEM;
}

static const char *const presign_names[] = {
	"X-Amz-Algorithm", "X-Amz-Credential",	   "X-Amz-Date",      "X-Amz-Expires",
	"X-Amz-SignedHeaders", "X-Amz-Security-Token", "X-Amz-Signature",
};

static int is_presign_name(const char *n)
{
	size_t i;

	for (i = 0; i < sizeof(presign_names) / sizeof(presign_names[0]); i++)
		if (!strcasecmp(n, presign_names[i]))
			return 1;
	return 0;
}

/* --- headers ----------------------------------------------------------------------------------- */

struct hdr {
	char *name;  /* lower-cased */
	char *value; /* trimmed, whitespace runs collapsed to one space */
	size_t order; /* position in the input: keeps the sort stable */
};

static int hdr_cmp(const void *a, const void *b)
{
	const struct hdr *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* hdr_set - fill *h with the canonical forms of name/value.  Returns S3_OK or S3_ENOMEM. */
static int hdr_set(struct hdr *h, const char *name, const char *value, size_t order)
{
	struct sb n = { 0 }, v = { 0 };
	const char *s = value ? value : "";
	int pending_space = 0;

	for (; *name; name++) {
		char c = *name;

		sb_addc(&n, (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c);
	}
	for (; *s; s++) {
		if (*s == ' ' || *s == '\t') {
			pending_space = v.len > 0;
			continue;
		}
		if (pending_space)
			sb_addc(&v, ' ');
		pending_space = 0;
		sb_addc(&v, *s);
	}
	h->name = sb_take(&n);
	h->value = sb_take(&v);
	h->order = order;
	return h->name && h->value ? S3_OK : S3_ENOMEM;
}

/*
 * check_auto_header - the signer adds header `name` with `value`: if the caller lists it too,
 * it must be listed once with the same (canonical) value.  Returns 1 when the caller already has
 * it, 0 when it must be added, -1 on a conflict.
 */
static int check_auto_header(const struct hdr *h, size_t n, const char *name, const char *value)
{
	size_t i;
	int found = 0;

	for (i = 0; i < n; i++) {
		if (strcmp(h[i].name, name))
			continue;
		if (found || strcmp(h[i].value, value))
			return -1;
		found = 1;
	}
	return found;
}

/* --- signing ----------------------------------------------------------------------------------- */

/* hmac - out = HMAC-SHA256(key, msg).  Returns S3_OK or S3_ECRYPTO. */
static int hmac(const void *key, size_t keylen, const void *msg, size_t msglen,
		unsigned char out[32])
{
	unsigned int len = 0;

	if (keylen > INT32_MAX)
		return S3_ECRYPTO;
	if (!HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &len) || len != 32)
		return S3_ECRYPTO;
	return S3_OK;
}

/*
 * compute_signature - the SigV4 key derivation and final HMAC over sts; hex result into sig.
 * Returns S3_OK, S3_ENOMEM or S3_ECRYPTO.  Key material is cleansed before return.
 */
static int compute_signature(const char *secret, const char *date8, const char *region,
			     const char *service, const char *sts, char sig[S3_SIGV4_HEX_LEN + 1])
{
	size_t slen = strlen(secret);
	unsigned char k1[32], k2[32];
	char *ksecret;
	int rc;

	ksecret = malloc(slen + 5);
	if (!ksecret)
		return S3_ENOMEM;
	memcpy(ksecret, "AWS4", 4);
	memcpy(ksecret + 4, secret, slen + 1);
	rc = hmac(ksecret, slen + 4, date8, 8, k1);
	if (!rc)
		rc = hmac(k1, 32, region, strlen(region), k2);
	if (!rc)
		rc = hmac(k2, 32, service, strlen(service), k1);
	if (!rc)
		rc = hmac(k1, 32, "aws4_request", 12, k2);
	if (!rc)
		rc = hmac(k2, 32, sts, strlen(sts), k1);
	if (!rc)
		to_hex(k1, 32, sig);
	OPENSSL_cleanse(ksecret, slen + 4);
	OPENSSL_cleanse(k1, sizeof(k1));
	OPENSSL_cleanse(k2, sizeof(k2));
	free(ksecret);
	return rc;
}

/* validate - S3_OK when *r can be signed, else S3_EINVAL. */
static int validate(const struct s3_sigv4_req *r)
{
	int presign = !!(r->flags & S3_SIGV4_PRESIGN);
	size_t i;

	if (!valid_method(r->method) || !r->path || r->path[0] != '/' ||
	    !valid_amz_date(r->amz_date) || !valid_scope_part(r->region) ||
	    !valid_scope_part(r->service) || !valid_scope_part(r->access_key) || !r->secret_key ||
	    !r->secret_key[0])
		return S3_EINVAL;
	if (!(r->flags & S3_SIGV4_ENCODE_PATH) && !valid_raw_path(r->path))
		return S3_EINVAL;
	if (r->payload_hash && !valid_payload_hash(r->payload_hash))
		return S3_EINVAL;
	if (r->session_token && !valid_header_value(r->session_token))
		return S3_EINVAL;
	if (presign && (r->expires_s < 1 || r->expires_s > S3_SIGV4_EXPIRES_MAX))
		return S3_EINVAL;
	if ((r->n_query && !r->query) || (r->n_headers && !r->headers))
		return S3_EINVAL;
	if (r->n_query > SIZE_MAX / 4 / sizeof(struct qparam) ||
	    r->n_headers > SIZE_MAX / 4 / sizeof(struct hdr))
		return S3_EINVAL;
	for (i = 0; i < r->n_query; i++)
		if (!r->query[i].name || (presign && is_presign_name(r->query[i].name)))
			return S3_EINVAL;
	for (i = 0; i < r->n_headers; i++)
		if (!valid_header_name(r->headers[i].name) ||
		    (r->headers[i].value && !valid_header_value(r->headers[i].value)))
			return S3_EINVAL;
	return S3_OK;
}

int s3_sigv4_sign(const struct s3_sigv4_req *r, struct s3_sigv4_out *out)
{
	int presign, has_token, sign_token, rc = S3_OK, add;
	struct qparam *q = NULL;
	struct hdr *h = NULL;
	size_t nq = 0, nh = 0, i;
	struct sb scope = { 0 }, cred = { 0 }, sh = { 0 }, cr = { 0 }, sts = { 0 }, qs = { 0 },
		  auth = { 0 };
	const char *payload;
	char date8[9], expires[24], crhash[S3_SIGV4_HEX_LEN + 1];

	if (!out)
		return S3_EINVAL;
	memset(out, 0, sizeof(*out));
	if (!r)
		return S3_EINVAL;
	rc = validate(r);
	if (rc)
		return rc;
	presign = !!(r->flags & S3_SIGV4_PRESIGN);
	has_token = r->session_token && r->session_token[0];
	sign_token = has_token && !(r->flags & S3_SIGV4_OMIT_TOKEN);
	payload = r->payload_hash ? r->payload_hash : S3_SIGV4_EMPTY_SHA256;
	memcpy(date8, r->amz_date, 8);
	date8[8] = '\0';

	/* credential scope and the access key's credential string */
	sb_add(&scope, date8);
	sb_addc(&scope, '/');
	sb_add(&scope, r->region);
	sb_addc(&scope, '/');
	sb_add(&scope, r->service);
	sb_add(&scope, "/aws4_request");
	sb_add(&cred, r->access_key);
	sb_addc(&cred, '/');
	if (scope.p)
		sb_add(&cred, scope.p);

	/* headers: the caller's plus the ones the header form adds */
	h = calloc(r->n_headers + 3, sizeof(*h));
	if (!h) {
		rc = S3_ENOMEM;
		goto out;
	}
	for (i = 0; i < r->n_headers; i++) {
		rc = hdr_set(&h[nh], r->headers[i].name, r->headers[i].value, nh);
		nh++;
		if (rc)
			goto out;
	}
	for (i = 0; i < nh && strcmp(h[i].name, "host"); i++)
		;
	if (i == nh) {
		rc = S3_EINVAL; /* SigV4 always signs host */
		goto out;
	}
	if (!presign) {
		const char *an[3] = { "x-amz-date", "x-amz-security-token", "x-amz-content-sha256" };
		const char *av[3] = { r->amz_date, r->session_token, payload };
		int want[3] = { 1, sign_token, !!(r->flags & S3_SIGV4_CONTENT_SHA256) };
		struct hdr tmp;

		for (i = 0; i < 3; i++) {
			if (!want[i])
				continue;
			/* compare against the canonical form of the value we would add */
			rc = hdr_set(&tmp, an[i], av[i], nh);
			if (rc) {
				free(tmp.name);
				free(tmp.value);
				goto out;
			}
			add = check_auto_header(h, nh, tmp.name, tmp.value);
			if (add < 0) {
				free(tmp.name);
				free(tmp.value);
				rc = S3_EINVAL;
				goto out;
			}
			if (add == 0) {
				h[nh++] = tmp;
			} else {
				free(tmp.name);
				free(tmp.value);
			}
		}
	}
	qsort(h, nh, sizeof(*h), hdr_cmp);
	for (i = 0; i < nh; i++) {
		if (i && !strcmp(h[i].name, h[i - 1].name))
			continue;
		if (sh.len)
			sb_addc(&sh, ';');
		sb_add(&sh, h[i].name);
	}
	if (sh.oom) {
		rc = S3_ENOMEM;
		goto out;
	}

	/* query: the caller's plus, in the presigned form, the X-Amz-* parameters */
	q = calloc(r->n_query + 6, sizeof(*q));
	if (!q) {
		rc = S3_ENOMEM;
		goto out;
	}
	for (i = 0; i < r->n_query; i++) {
		rc = qparam_set(&q[nq++], r->query[i].name, r->query[i].value);
		if (rc)
			goto out;
	}
	if (presign) {
		snprintf(expires, sizeof(expires), "%ld", r->expires_s);
		if ((rc = qparam_set(&q[nq++], "X-Amz-Algorithm", S3_SIGV4_ALGORITHM)) ||
		    (rc = qparam_set(&q[nq++], "X-Amz-Credential", cred.p ? cred.p : "")) ||
		    (rc = qparam_set(&q[nq++], "X-Amz-Date", r->amz_date)) ||
		    (rc = qparam_set(&q[nq++], "X-Amz-Expires", expires)) ||
		    (rc = qparam_set(&q[nq++], "X-Amz-SignedHeaders", sh.p)))
			goto out;
		if (sign_token &&
		    (rc = qparam_set(&q[nq++], "X-Amz-Security-Token", r->session_token)))
			goto out;
	}
	qsort(q, nq, sizeof(*q), qparam_cmp);
	for (i = 0; i < nq; i++) {
		if (i)
			sb_addc(&qs, '&');
		sb_add(&qs, q[i].name);
		sb_addc(&qs, '=');
		sb_add(&qs, q[i].value);
	}
	if (!qs.p)
		sb_grow(&qs, 0);
	if (scope.oom || cred.oom || qs.oom) {
		rc = S3_ENOMEM;
		goto out;
	}

	/* canonical request */
	sb_add(&cr, r->method);
	sb_addc(&cr, '\n');
	rc = add_canonical_uri(&cr, r->path, r->flags);
	if (rc)
		goto out;
	sb_addc(&cr, '\n');
	sb_add(&cr, qs.p);
	sb_addc(&cr, '\n');
	for (i = 0; i < nh; i++) {
		if (i && !strcmp(h[i].name, h[i - 1].name)) {
			sb_addc(&cr, ',');
		} else {
			if (i)
				sb_addc(&cr, '\n');
			sb_add(&cr, h[i].name);
			sb_addc(&cr, ':');
		}
		sb_add(&cr, h[i].value);
	}
	sb_add(&cr, "\n\n");
	sb_add(&cr, sh.p);
	sb_addc(&cr, '\n');
	sb_add(&cr, payload);
	if (cr.oom) {
		rc = S3_ENOMEM;
		goto out;
	}

	/* string to sign and signature */
	rc = s3_sigv4_sha256_hex(cr.p, cr.len, crhash);
	if (rc)
		goto out;
	sb_add(&sts, S3_SIGV4_ALGORITHM "\n");
	sb_add(&sts, r->amz_date);
	sb_addc(&sts, '\n');
	sb_add(&sts, scope.p);
	sb_addc(&sts, '\n');
	sb_add(&sts, crhash);
	if (sts.oom) {
		rc = S3_ENOMEM;
		goto out;
	}
	rc = compute_signature(r->secret_key, date8, r->region, r->service, sts.p,
			       out->signature);
	if (rc)
		goto out;

	if (presign) {
		if (qs.len)
			sb_addc(&qs, '&');
		sb_add(&qs, "X-Amz-Signature=");
		sb_add(&qs, out->signature);
		if (has_token && !sign_token) {
			sb_add(&qs, "&X-Amz-Security-Token=");
			sb_add_enc(&qs, r->session_token, strlen(r->session_token), 0);
		}
	} else {
		sb_add(&auth, S3_SIGV4_ALGORITHM " Credential=");
		sb_add(&auth, cred.p);
		sb_add(&auth, ", SignedHeaders=");
		sb_add(&auth, sh.p);
		sb_add(&auth, ", Signature=");
		sb_add(&auth, out->signature);
		out->authorization = sb_take(&auth);
		if (!out->authorization) {
			rc = S3_ENOMEM;
			goto out;
		}
	}
	out->canonical_request = sb_take(&cr);
	out->string_to_sign = sb_take(&sts);
	out->signed_headers = sb_take(&sh);
	out->query = sb_take(&qs);
	if (!out->canonical_request || !out->string_to_sign || !out->signed_headers ||
	    !out->query)
		rc = S3_ENOMEM;

out:
	if (rc)
		s3_sigv4_out_fini(out);
	for (i = 0; h && i < nh; i++) {
		free(h[i].name);
		free(h[i].value);
	}
	for (i = 0; q && i < nq; i++) {
		free(q[i].name);
		free(q[i].value);
	}
	free(h);
	free(q);
	free(scope.p);
	free(cred.p);
	free(sh.p);
	free(cr.p);
	free(sts.p);
	free(qs.p);
	free(auth.p);
	return rc;
}
