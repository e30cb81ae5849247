/*
 * s3_client.c - the S3 client on libcurl and our SigV4 signer (contract: s3_client.h).
 *
 * DESIGN
 * Three layers, bottom up:
 *  1. Configuration: the endpoint URL, region and credentials are resolved once from the
 *     environment and the shared INI files (a small parser of our own: the AWS files allow
 *     indented sub-settings and ';' comments that GKeyFile rejects).
 *  2. The request engine (req_run): one `struct req` describes an S3 request (method, bucket,
 *     key, query, extra headers, where the body comes from: a file range read with pread or a
 *     small memory buffer, and where a 2xx body goes: a file at an offset via pwrite, or the
 *     client's response buffer).  Each attempt re-signs (fresh date), rewinds the body, resets
 *     the easy handle's options (curl_easy_reset keeps the live connection), performs, then
 *     classifies the outcome into OK / retryable / final, with the S3 <Error> parsed from the
 *     body.  Retryable outcomes sleep a full-jitter backoff while attempts and the operation's
 *     time budget last.  Post-checks that belong to one attempt (the PUT's ETag against our MD5,
 *     a 200 Complete that carries an <Error>, a GET's bytes against the ETag) run inside the
 *     loop, so a damaged transfer is simply another retryable outcome.
 *  3. Operations and the upload plan, thin wrappers that fill a struct req.
 * Nothing here logs: failures are described on the client (one line, no secret) and the caller
 * decides where the line goes.  libcurl's verbose mode is never turned on, because it would
 * print the Authorization and x-amz-security-token headers.
 */
#include "tiering/s3_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define RESP_MAX_BYTES (32u << 20) /* in-memory responses (listings, errors) larger than this fail */
#define MD5_BUF_BYTES (1u << 20)

struct s3_client {
	struct s3_config cfg; /* own deep copy */
	CURL *curl;
	char curl_err[CURL_ERROR_SIZE];
	uint64_t rng;         /* jitter PRNG state */

	/* detail of the last operation */
	long http_status;
	char err_code[64];
	char errmsg[768];
	int err_errno;
	int last_rc;          /* rc of the last set_err */
	unsigned attempts;

	/* the running operation's retry budget */
	uint64_t deadline_ms;
	int budget_held;      /* s3_put_file holds one budget across all its requests */

	/* response of the current attempt */
	char *resp;
	size_t resp_len, resp_cap;
	char etag[S3_ETAG_MAX];
	uint64_t content_length;
	int have_content_length;
	uint64_t content_range_start;
	int have_content_range;
};

/* --- small helpers ------------------------------------------------------------------------------ */

/* now_ms - CLOCK_MONOTONIC in milliseconds.  Any thread. */
static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* cancelled - 1 when the owner of cfg asked every operation to stop.  Any thread. */
static int cancelled(const struct s3_config *cfg)
{
	return cfg->cancel && __atomic_load_n(cfg->cancel, __ATOMIC_ACQUIRE);
}

/* sleep_ms - sleep ms milliseconds (in 50 ms steps, ending early on cancellation), restarting
 * after signals.  Any thread. */
static void sleep_ms(const struct s3_config *cfg, uint64_t ms)
{
	while (ms > 0 && !cancelled(cfg)) {
		uint64_t step = ms < 50 ? ms : 50;
		struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)step * 1000000L};
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
		ms -= step;
	}
}

/* xferinfo_cb - libcurl's progress callback: non-zero aborts the transfer when cancelled. */
static int xferinfo_cb(void *p, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return cancelled(p);
}

/* xstrdup0 - strdup of s, NULL for NULL; *oom set on failure. */
static char *xstrdup0(const char *s, int *oom)
{
	char *d;

	if (!s)
		return NULL;
	d = strdup(s);
	if (!d)
		*oom = 1;
	return d;
}

/* free_secret - cleanse and free a NUL-terminated secret.  NULL is fine. */
static void free_secret(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* env - getenv that treats "" as unset. */
static const char *env(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

/* to_hex - lower-case hex of n bytes into out (2n+1 bytes). */
static void to_hex(const unsigned char *d, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hx[d[i] >> 4];
		out[2 * i + 1] = hx[d[i] & 15];
	}
	out[2 * n] = '\0';
}

const char *s3_rc_str(int rc)
{
	switch (rc) {
	case S3_OK: return "S3_OK";
	case S3_EINVAL: return "S3_EINVAL";
	case S3_ENOMEM: return "S3_ENOMEM";
	case S3_ECRYPTO: return "S3_ECRYPTO";
	case S3_ECONFIG: return "S3_ECONFIG";
	case S3_ENET: return "S3_ENET";
	case S3_EAUTH: return "S3_EAUTH";
	case S3_ENOTFOUND: return "S3_ENOTFOUND";
	case S3_EHTTP: return "S3_EHTTP";
	case S3_ESERVER: return "S3_ESERVER";
	case S3_EINTEGRITY: return "S3_EINTEGRITY";
	case S3_EIO: return "S3_EIO";
	case S3_EPROTO: return "S3_EPROTO";
	case S3_ECANCELED: return "S3_ECANCELED";
	}
	return "S3_E?";
}

/* --- configuration ------------------------------------------------------------------------------ */

/* cfg_fail - format cfg->err and return S3_ECONFIG. */
static int cfg_fail(struct s3_config *cfg, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int cfg_fail(struct s3_config *cfg, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cfg->err, sizeof(cfg->err), fmt, ap);
	va_end(ap);
	return S3_ECONFIG;
}

/*
 * parse_endpoint - split "http[s]://host[:port][/]" into cfg->scheme/host/port.  IPv6 literals
 * keep their brackets.  Returns S3_OK, S3_ECONFIG (cfg->err names var) or S3_ENOMEM.
 */
static int parse_endpoint(struct s3_config *cfg, const char *var, const char *url)
{
	const char *p, *auth, *auth_end, *host_end, *colon = NULL;
	long port = 0;

	if (!strncasecmp(url, "http://", 7)) {
		cfg->scheme = strdup("http");
		p = url + 7;
	} else if (!strncasecmp(url, "https://", 8)) {
		cfg->scheme = strdup("https");
		p = url + 8;
	} else {
		return cfg_fail(cfg, "%s=%s: the endpoint must start with http:// or https://", var,
				url);
	}
	if (!cfg->scheme)
		return S3_ENOMEM;
	auth = p;
	auth_end = auth + strcspn(auth, "/?#");
	if (strchr(auth, '@')) /* before any message shows the URL: it may hold a secret */
		return cfg_fail(cfg, "%s: user information in the endpoint URL is not supported", var);
	if (*auth_end && strcmp(auth_end, "/"))
		return cfg_fail(cfg, "%s=%s: an endpoint with a path, query or fragment is not "
				"supported (give scheme://host[:port])", var, url);
	if (memchr(auth, '@', (size_t)(auth_end - auth)))
		return cfg_fail(cfg, "%s: user information in the endpoint URL is not supported", var);
	if (*auth == '[') {
		const char *rb = memchr(auth, ']', (size_t)(auth_end - auth));

		if (!rb)
			return cfg_fail(cfg, "%s=%s: unterminated IPv6 literal", var, url);
		host_end = rb + 1;
		if (host_end < auth_end) {
			if (*host_end != ':')
				return cfg_fail(cfg, "%s=%s: junk after the IPv6 literal", var, url);
			colon = host_end;
		}
	} else {
		colon = memchr(auth, ':', (size_t)(auth_end - auth));
		host_end = colon ? colon : auth_end;
	}
	if (host_end == auth)
		return cfg_fail(cfg, "%s=%s: no host in the endpoint", var, url);
	if (colon) {
		char *e;

		errno = 0;
		port = strtol(colon + 1, &e, 10);
		if (e != auth_end || colon + 1 == auth_end || errno || port < 1 || port > 65535)
			return cfg_fail(cfg, "%s=%s: the port must be 1..65535", var, url);
	}
	cfg->host = strndup(auth, (size_t)(host_end - auth));
	if (!cfg->host)
		return S3_ENOMEM;
	cfg->port = (int)port;
	cfg->path_style = 1; /* IPs, localhost and custom endpoints: always path-style */
	return S3_OK;
}

/* trim - strip leading/trailing blanks of s[0..*n) in place; returns the new start. */
static char *trim(char *s, size_t *n)
{
	while (*n && (*s == ' ' || *s == '\t' || *s == '\r'))
		s++, (*n)--;
	while (*n && (s[*n - 1] == ' ' || s[*n - 1] == '\t' || s[*n - 1] == '\r'))
		(*n)--;
	return s;
}

/*
 * ini_lookup - read INI file `path`, find the first section whose name is one of sections[] (up
 * to 2, trimmed, inner blanks collapsed to one), and copy the values of keys[0..nkeys) in it into
 * vals[] (malloc'd; left NULL when absent; earlier values are kept).  Indented lines (AWS nested
 * sub-settings) and '#'/';' comments are skipped.  Returns 1 when the section exists, 0 when it
 * or the file does not (ENOENT), -1 when the file cannot be read (errno kept), -2 on ENOMEM.
 */
static int ini_lookup(const char *path, const char *const *sections, size_t nsect,
		      const char *const *keys, size_t nkeys, char **vals)
{
	FILE *f;
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	int in = 0, found = 0, rc = 0;

	f = fopen(path, "re");
	if (!f)
		return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
	while ((got = getline(&line, &cap, f)) != -1) {
		size_t n = (size_t)got;
		char *s;

		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			n--;
		line[n] = '\0';
		if (n && (line[0] == ' ' || line[0] == '\t')) /* nested sub-setting */
			continue;
		s = trim(line, &n);
		s[n] = '\0';
		if (!n || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char name[256];
			size_t k = 0;
			char *e = strchr(s, ']');

			in = 0;
			if (!e)
				continue;
			for (char *q = s + 1; q < e && k + 1 < sizeof(name); q++) {
				if (*q == ' ' || *q == '\t') {
					if (k && name[k - 1] != ' ')
						name[k++] = ' ';
				} else {
					name[k++] = *q;
				}
			}
			while (k && name[k - 1] == ' ')
				k--;
			name[k] = '\0';
			if (found) /* only the first matching section counts */
				break;
			for (size_t i = 0; i < nsect; i++)
				if (sections[i] && !strcmp(name, sections[i]))
					in = found = 1;
			continue;
		}
		if (!in)
			continue;
		char *eq = strchr(s, '=');
		if (!eq)
			continue;
		size_t kn = (size_t)(eq - s), vn = strlen(eq + 1);
		char *k = trim(s, &kn), *v = trim(eq + 1, &vn);

		for (size_t i = 0; i < nkeys; i++) {
			if (strlen(keys[i]) == kn && !strncmp(k, keys[i], kn) && !vals[i] && vn) {
				vals[i] = strndup(v, vn);
				if (!vals[i])
					rc = -2;
			}
		}
	}
	if (line) {
		OPENSSL_cleanse(line, cap);
		free(line);
	}
	fclose(f);
	return rc ? rc : found;
}

/* home_path - "$HOME/<rel>" malloc'd, or NULL (no HOME or ENOMEM). */
static char *home_path(const char *rel)
{
	const char *home = env("HOME");
	char *p;

	if (!home || asprintf(&p, "%s/%s", home, rel) < 0)
		return NULL;
	return p;
}

int s3_config_load_env(struct s3_config *cfg)
{
	static const char *const cred_keys[] = { "aws_access_key_id", "aws_secret_access_key",
						 "aws_session_token", "region" };
	char *vals[4] = { 0 }, *cred_file = NULL, *conf_file = NULL, *sect2 = NULL;
	const char *ep_var = "AWS_ENDPOINT_URL_S3", *ep, *profile, *v;
	int rc = S3_OK, oom = 0, r;

	memset(cfg, 0, sizeof(*cfg));
	cfg->connect_timeout_ms = 5000;
	cfg->stall_timeout_ms = 20000;
	cfg->max_attempts = 6;
	cfg->retry_base_ms = 100;
	cfg->retry_cap_ms = 5000;
	cfg->retry_budget_ms = 60000;

	ep = env(ep_var);
	if (!ep) {
		ep_var = "AWS_ENDPOINT_URL";
		ep = env(ep_var);
	}
	if (ep) {
		rc = parse_endpoint(cfg, ep_var, ep);
		if (rc)
			goto out;
	} else {
		cfg->scheme = strdup("https");
		if (!cfg->scheme) {
			rc = S3_ENOMEM;
			goto out;
		}
	}
	if ((v = env("AWS_CA_BUNDLE")))
		cfg->ca_bundle = xstrdup0(v, &oom);

	/* the shared files: needed for credentials when the environment has none, and for the
	 * region when AWS_REGION/AWS_DEFAULT_REGION are unset */
	profile = env("AWS_PROFILE");
	if (!profile)
		profile = "default";
	cred_file = env("AWS_SHARED_CREDENTIALS_FILE") ? strdup(env("AWS_SHARED_CREDENTIALS_FILE"))
						       : home_path(".aws/credentials");
	conf_file = env("AWS_CONFIG_FILE") ? strdup(env("AWS_CONFIG_FILE"))
					   : home_path(".aws/config");
	if (asprintf(&sect2, "profile %s", profile) < 0) {
		sect2 = NULL;
		rc = S3_ENOMEM;
		goto out;
	}

	int env_id = env("AWS_ACCESS_KEY_ID") != NULL, env_secret = env("AWS_SECRET_ACCESS_KEY") != NULL;
	int found_cred = 0, found_conf = 0;

	if (env_id != env_secret) {
		rc = cfg_fail(cfg, "%s is set but %s is not: set both or neither",
			      env_id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
			      env_id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
		goto out;
	}
	if (env_id) {
		cfg->access_key = xstrdup0(env("AWS_ACCESS_KEY_ID"), &oom);
		cfg->secret_key = xstrdup0(env("AWS_SECRET_ACCESS_KEY"), &oom);
		cfg->session_token = xstrdup0(env("AWS_SESSION_TOKEN"), &oom);
		cfg->cred_source = xstrdup0("environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
					    &oom);
	} else {
		const char *s1[] = { profile };

		if (cred_file) {
			r = ini_lookup(cred_file, s1, 1, cred_keys, 3, vals);
			if (r == -2) {
				rc = S3_ENOMEM;
				goto out;
			}
			if (r == -1) {
				rc = cfg_fail(cfg, "cannot read the credentials file %s: %s",
					      cred_file, strerror(errno));
				goto out;
			}
			found_cred = r == 1 && vals[0] && vals[1];
		}
		if (found_cred) {
			if (asprintf(&cfg->cred_source, "profile '%s' in %s", profile, cred_file) < 0)
				cfg->cred_source = NULL, oom = 1;
		}
	}
	/* the config file: credentials (when still missing) and the region */
	if (conf_file) {
		const char *s2[] = { sect2, !strcmp(profile, "default") ? "default" : NULL };

		r = ini_lookup(conf_file, s2, 2, cred_keys, 4, vals);
		if (r == -2) {
			rc = S3_ENOMEM;
			goto out;
		}
		if (r == -1) {
			rc = cfg_fail(cfg, "cannot read the config file %s: %s", conf_file,
				      strerror(errno));
			goto out;
		}
		found_conf = r == 1;
	}
	if (!cfg->access_key) {
		if (!vals[0] || !vals[1]) {
			if (env("AWS_PROFILE") && !found_cred && !found_conf)
				rc = cfg_fail(cfg, "AWS_PROFILE=%s: no such profile in %s or %s",
					      profile, cred_file ? cred_file : "(no HOME)",
					      conf_file ? conf_file : "(no HOME)");
			else
				rc = cfg_fail(cfg, "no S3 credentials: set AWS_ACCESS_KEY_ID and "
					      "AWS_SECRET_ACCESS_KEY, or aws_access_key_id and "
					      "aws_secret_access_key for profile '%s' in %s",
					      profile, cred_file ? cred_file : "~/.aws/credentials");
			goto out;
		}
		cfg->access_key = vals[0];
		cfg->secret_key = vals[1];
		cfg->session_token = vals[2];
		vals[0] = vals[1] = vals[2] = NULL;
		if (!cfg->cred_source &&
		    asprintf(&cfg->cred_source, "profile '%s' in %s", profile, conf_file) < 0)
			cfg->cred_source = NULL, oom = 1;
	}
	v = env("AWS_REGION");
	if (!v)
		v = env("AWS_DEFAULT_REGION");
	if (!v)
		v = vals[3];
	if (!v)
		v = "us-east-1";
	cfg->region = xstrdup0(v, &oom);
	if (oom)
		rc = S3_ENOMEM;
out:
	for (size_t i = 0; i < 4; i++)
		free_secret(vals[i]);
	free(cred_file);
	free(conf_file);
	free(sect2);
	if (rc) {
		char keep[sizeof(cfg->err)];

		memcpy(keep, cfg->err, sizeof(keep));
		s3_config_fini(cfg);
		memcpy(cfg->err, keep, sizeof(keep));
		if (rc == S3_ENOMEM && !cfg->err[0])
			snprintf(cfg->err, sizeof(cfg->err), "out of memory loading the S3 settings");
	}
	return rc;
}

void s3_config_fini(struct s3_config *cfg)
{
	if (!cfg)
		return;
	free(cfg->scheme);
	free(cfg->host);
	free(cfg->region);
	free(cfg->ca_bundle);
	free(cfg->access_key);
	free_secret(cfg->secret_key);
	free_secret(cfg->session_token);
	free(cfg->cred_source);
	memset(cfg, 0, sizeof(*cfg));
}

/* cfg_copy - deep copy of src into dst (zeroed first).  Returns S3_OK or S3_ENOMEM. */
static int cfg_copy(struct s3_config *dst, const struct s3_config *src)
{
	int oom = 0;

	*dst = *src;
	dst->scheme = xstrdup0(src->scheme ? src->scheme : "https", &oom);
	dst->host = xstrdup0(src->host, &oom);
	dst->region = xstrdup0(src->region, &oom);
	dst->ca_bundle = xstrdup0(src->ca_bundle, &oom);
	dst->access_key = xstrdup0(src->access_key, &oom);
	dst->secret_key = xstrdup0(src->secret_key, &oom);
	dst->session_token = xstrdup0(src->session_token, &oom);
	dst->cred_source = xstrdup0(src->cred_source ? src->cred_source : "the caller", &oom);
	if (oom) {
		s3_config_fini(dst);
		return S3_ENOMEM;
	}
	return S3_OK;
}

/* --- client ------------------------------------------------------------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_rc;

static void global_init_once(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? S3_OK : S3_ENOMEM;
}

int s3_global_init(void)
{
	pthread_once(&global_once, global_init_once);
	return global_rc;
}

int s3_client_new(const struct s3_config *cfg, struct s3_client **out)
{
	struct s3_client *c = NULL;
	struct timespec ts;
	int rc;

	*out = NULL;
	if (!cfg || !cfg->access_key || !cfg->secret_key || !cfg->region || !*cfg->region)
		return S3_EINVAL;
	rc = s3_global_init();
	if (rc)
		return rc;
	c = calloc(1, sizeof(*c));
	if (!c)
		return S3_ENOMEM;
	rc = cfg_copy(&c->cfg, cfg);
	if (rc)
		goto fail;
	if (!c->cfg.max_attempts)
		c->cfg.max_attempts = 1;
	c->curl = curl_easy_init();
	if (!c->curl) {
		rc = S3_ENOMEM;
		goto fail;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	c->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)c ^
		 ((uint64_t)getpid() << 40);
	if (!c->rng)
		c->rng = 0x9e3779b97f4a7c15ull;
	*out = c;
	return S3_OK;
fail:
	s3_client_free(c);
	return rc;
}

void s3_client_free(struct s3_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	s3_config_fini(&c->cfg);
	free(c->resp);
	free(c);
}

const char *s3_client_errmsg(const struct s3_client *c) { return c->errmsg; }
long s3_client_http_status(const struct s3_client *c) { return c->http_status; }
const char *s3_client_err_code(const struct s3_client *c) { return c->err_code; }
int s3_client_errno(const struct s3_client *c) { return c->err_errno; }
unsigned s3_client_attempts(const struct s3_client *c) { return c->attempts; }

/* rand_below - uniform-ish random number in [0, n] (xorshift64*).  Owning thread. */
static uint64_t rand_below(struct s3_client *c, uint64_t n)
{
	uint64_t x = c->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	c->rng = x;
	return n ? (x * 0x2545F4914F6CDD1Dull) % (n + 1) : 0;
}

/* scrub - replace every occurrence of secret (when >= 4 chars) in msg with "****". */
static void scrub(char *msg, const char *secret)
{
	size_t sl, ml;
	char *p;

	if (!secret || (sl = strlen(secret)) < 4)
		return;
	while ((p = strstr(msg, secret))) {
		ml = strlen(p);
		memcpy(p, "****", 4);
		memmove(p + 4, p + sl, ml - sl + 1);
	}
}

/* set_err - format the client's error line (scrubbed of secrets); returns rc. */
static int set_err(struct s3_client *c, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int set_err(struct s3_client *c, int rc, const char *fmt, ...)
{
	va_list ap;

	c->last_rc = rc;
	va_start(ap, fmt);
	vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
	va_end(ap);
	for (char *p = c->errmsg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	scrub(c->errmsg, c->cfg.secret_key);
	scrub(c->errmsg, c->cfg.session_token);
	return rc;
}

/* op_begin - start a public operation: clear the last error, start the retry budget (unless
 * s3_put_file holds one). */
static void op_begin(struct s3_client *c)
{
	c->http_status = 0;
	c->err_code[0] = '\0';
	c->errmsg[0] = '\0';
	c->err_errno = 0;
	c->attempts = 0;
	if (!c->budget_held)
		c->deadline_ms = now_ms() + (uint64_t)(c->cfg.retry_budget_ms > 0 ? c->cfg.retry_budget_ms : 0);
}

/* --- XML (minimal: S3's responses are flat and machine-written) -------------------------------- */

/*
 * xml_find - find the element <tag>...</tag> (or <tag attr...>, or the empty <tag/>) in
 * [s, end).  On success sets *vs and *ve to its content and returns the position after its end tag;
 * returns NULL when absent.  Does not understand CDATA or comments (S3 sends neither).
 */
static const char *xml_find(const char *s, const char *end, const char *tag, const char **vs,
			    const char **ve)
{
	size_t tl = strlen(tag);

	while (s < end) {
		const char *lt = memchr(s, '<', (size_t)(end - s));

		if (!lt || (size_t)(end - lt) < tl + 2)
			return NULL;
		if (!memcmp(lt + 1, tag, tl)) {
			const char *p = lt + 1 + tl;

			if (*p == '>' || *p == ' ' || *p == '/' || *p == '\t' || *p == '\n' ||
			    *p == '\r') {
				const char *gt = memchr(p, '>', (size_t)(end - p));

				if (!gt)
					return NULL;
				if (gt[-1] == '/') { /* <tag/> */
					*vs = *ve = gt;
					return gt + 1;
				}
				/* the end tag: content of S3 elements we read never nests the
				 * same name */
				for (const char *q = gt + 1; q < end;) {
					const char *c2 = memchr(q, '<', (size_t)(end - q));

					if (!c2 || (size_t)(end - c2) < tl + 3)
						return NULL;
					if (c2[1] == '/' && !memcmp(c2 + 2, tag, tl) &&
					    c2[2 + tl] == '>') {
						*vs = gt + 1;
						*ve = c2;
						return c2 + 3 + tl;
					}
					q = c2 + 1;
				}
				return NULL;
			}
		}
		s = lt + 1;
	}
	return NULL;
}

/* xml_text - unescape [s, e) (the five entities and &#N; / &#xN; as UTF-8) into a malloc'd
 * string, or NULL on ENOMEM. */
static char *xml_text(const char *s, const char *e)
{
	char *out = malloc((size_t)(e - s) + 1), *o = out;

	if (!out)
		return NULL;
	while (s < e) {
		if (*s != '&') {
			*o++ = *s++;
			continue;
		}
		const char *semi = memchr(s, ';', (size_t)(e - s));
		size_t n = semi ? (size_t)(semi - s) + 1 : 0;

		if (n == 5 && !memcmp(s, "&amp;", 5)) *o++ = '&';
		else if (n == 4 && !memcmp(s, "&lt;", 4)) *o++ = '<';
		else if (n == 4 && !memcmp(s, "&gt;", 4)) *o++ = '>';
		else if (n == 6 && !memcmp(s, "&quot;", 6)) *o++ = '"';
		else if (n == 6 && !memcmp(s, "&apos;", 6)) *o++ = '\'';
		else if (n > 3 && s[1] == '#') {
			unsigned long cp = s[2] == 'x' || s[2] == 'X' ? strtoul(s + 3, NULL, 16)
								     : strtoul(s + 2, NULL, 10);
			if (cp == 0 || cp > 0x10FFFF) {
				*o++ = '?';
			} else if (cp < 0x80) {
				*o++ = (char)cp;
			} else if (cp < 0x800) {
				*o++ = (char)(0xC0 | (cp >> 6));
				*o++ = (char)(0x80 | (cp & 0x3F));
			} else if (cp < 0x10000) {
				*o++ = (char)(0xE0 | (cp >> 12));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
				*o++ = (char)(0x80 | (cp & 0x3F));
			} else {
				*o++ = (char)(0xF0 | (cp >> 18));
				*o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
				*o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
				*o++ = (char)(0x80 | (cp & 0x3F));
			}
		} else {
			*o++ = '&';
			s++;
			continue;
		}
		s += n;
	}
	*o = '\0';
	return out;
}

/* xml_copy - the unescaped text of <tag> in [s,end) into buf (truncated), "" when absent. */
static void xml_copy(const char *s, const char *end, const char *tag, char *buf, size_t bufsz)
{
	const char *vs, *ve;
	char *t;

	buf[0] = '\0';
	if (!xml_find(s, end, tag, &vs, &ve) || !(t = xml_text(vs, ve)))
		return;
	snprintf(buf, bufsz, "%s", t);
	free(t);
}

/* xml_root_is - whether the document's first element is <name> (after the declaration). */
static int xml_root_is(const char *s, size_t n, const char *name)
{
	const char *end = s + n;
	size_t nl = strlen(name);

	while (s < end) {
		while (s < end && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
			s++;
		if (s + 1 < end && s[0] == '<' && (s[1] == '?' || s[1] == '!')) {
			const char *gt = memchr(s, '>', (size_t)(end - s));

			if (!gt)
				return 0;
			s = gt + 1;
			continue;
		}
		return s < end && *s == '<' && (size_t)(end - s) > nl + 1 &&
		       !memcmp(s + 1, name, nl) && (s[1 + nl] == '>' || s[1 + nl] == ' ');
	}
	return 0;
}

/* etag_clean - copy an ETag without quotes or blanks (and &quot;), lower-cased, into out. */
static void etag_clean(const char *in, size_t n, char out[S3_ETAG_MAX])
{
	size_t k = 0;

	for (size_t i = 0; i < n && k + 1 < S3_ETAG_MAX; i++) {
		if (in[i] == '&' && n - i >= 6 && !memcmp(in + i, "&quot;", 6)) {
			i += 5;
			continue;
		}
		if (in[i] == '"' || in[i] == ' ' || in[i] == '\t' || in[i] == '\r' || in[i] == '\n')
			continue;
		out[k++] = (char)(in[i] >= 'A' && in[i] <= 'F' ? in[i] + 32 : in[i]);
	}
	out[k] = '\0';
}

/* --- the request engine ------------------------------------------------------------------------- */

struct req {
	const char *op;                  /* "PUT", "UploadPart" ... for messages */
	const char *method;
	const char *bucket, *key;        /* key NULL: a bucket-level request */
	const char *label_key;           /* shown in messages when key is NULL (a list prefix) */
	struct s3_sigv4_kv query[6];
	size_t n_query;
	const char *content_md5;         /* base64, or NULL */
	const char *range;               /* "bytes=a-b", or NULL */
	const char *content_type;        /* POST: NULL sends none */
	/* body: a file range, or memory (mem != NULL), or none */
	int body_fd;
	off_t body_off;
	uint64_t body_len;
	const char *mem;
	size_t mem_len;
	/* 2xx body: into sink_fd at sink_off, else into c->resp */
	int sink_fd;
	off_t sink_off;
	int sink_verify_md5;             /* check the received bytes against a plain-MD5 ETag */
	uint64_t range_off, range_len;   /* the range again, for a 200 that ignored it */
	/* post-checks */
	const char *expect_md5_hex;      /* the ETag must equal this */
	int error_in_200;                /* a 2xx body that is an <Error> is a failure */
	int ok_404, ok_405_501;          /* statuses that count as success */
	/* results */
	uint64_t sink_bytes;
};

/* per-attempt transfer state */
struct xfer {
	struct s3_client *c;
	struct req *r;
	uint64_t body_pos;
	int io_errno;
	int short_file;
	uint64_t whole_pos;  /* bytes seen of a 200 body sent in reply to a ranged GET */
	int range_done;      /* ... and our range is complete: the abort is a success */
	int proto_err;       /* a 206 whose Content-Range starts after the range asked for */
	EVP_MD_CTX *md5;
	int resp_overflow;
};

/* read_cb - CURLOPT_READFUNCTION: the next body bytes by pread (or from memory). */
static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct xfer *x = arg;
	struct req *r = x->r;
	size_t want = size * nitems;
	uint64_t left = r->mem ? r->mem_len - x->body_pos : r->body_len - x->body_pos;
	ssize_t got;

	if (want > left)
		want = (size_t)left;
	if (!want)
		return 0;
	if (r->mem) {
		memcpy(buf, r->mem + x->body_pos, want);
		x->body_pos += want;
		return want;
	}
	do
		got = pread(r->body_fd, buf, want, r->body_off + (off_t)x->body_pos);
	while (got < 0 && errno == EINTR);
	if (got <= 0) {
		x->io_errno = got < 0 ? errno : EIO;
		x->short_file = got == 0;
		return CURL_READFUNC_ABORT;
	}
	x->body_pos += (uint64_t)got;
	return (size_t)got;
}

/* seek_cb - CURLOPT_SEEKFUNCTION: libcurl rewinds the body (a re-sent request). */
static int seek_cb(void *arg, curl_off_t offset, int origin)
{
	struct xfer *x = arg;
	uint64_t len = x->r->mem ? x->r->mem_len : x->r->body_len;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > len)
		return CURL_SEEKFUNC_FAIL;
	x->body_pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

/* resp_add - append to the client's response buffer (capped).  Returns 0 or -1. */
static int resp_add(struct s3_client *c, const char *p, size_t n)
{
	if (c->resp_len + n + 1 > c->resp_cap) {
		size_t cap = c->resp_cap ? c->resp_cap : 4096;
		char *q;

		if (c->resp_len + n + 1 > RESP_MAX_BYTES)
			return -1;
		while (cap < c->resp_len + n + 1)
			cap *= 2;
		q = realloc(c->resp, cap);
		if (!q)
			return -1;
		c->resp = q;
		c->resp_cap = cap;
	}
	memcpy(c->resp + c->resp_len, p, n);
	c->resp_len += n;
	c->resp[c->resp_len] = '\0';
	return 0;
}

/* sink_write - pwrite p[0..n) at the sink's next offset.  Returns 0, or -1 (x->io_errno set). */
static int sink_write(struct xfer *x, const char *p, size_t n)
{
	struct req *r = x->r;
	size_t done = 0;

	while (done < n) {
		ssize_t w = pwrite(r->sink_fd, p + done, n - done,
				   r->sink_off + (off_t)(r->sink_bytes + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			x->io_errno = w < 0 ? errno : EIO;
			return -1;
		}
		done += (size_t)w;
	}
	r->sink_bytes += n;
	return 0;
}

/* write_cb - CURLOPT_WRITEFUNCTION: a 2xx body into the sink file, anything else into memory. */
static size_t write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	struct req *r = x->r;
	size_t n = size * nmemb;
	long status = 0;

	curl_easy_getinfo(x->c->curl, CURLINFO_RESPONSE_CODE, &status);
	if (r->sink_fd >= 0 && status >= 200 && status < 300) {
		if (r->range) {
			/* the body starts at the Content-Range start (206) or at 0 (200: Range
			 * ignored); a server may send more than asked (the local test server
			 * answers "bytes=0-0" with the whole object as a 206): keep only our range,
			 * and stop once it is complete */
			uint64_t base = status == 206 ? (x->c->have_content_range ?
							 x->c->content_range_start : r->range_off) : 0;
			uint64_t pos = base + x->whole_pos, lo = r->range_off;
			uint64_t hi = r->range_off + r->range_len;

			if (base > lo) { /* bytes before the ones sent would be missing */
				x->proto_err = 1;
				return 0;
			}

			x->whole_pos += n;
			if (pos + n <= lo)
				return n;
			if (pos < lo) {
				p += lo - pos;
				n -= (size_t)(lo - pos);
				pos = lo;
			}
			if (pos + n > hi)
				n = (size_t)(hi - pos);
			if (sink_write(x, p, n))
				return 0;
			if (pos + n >= hi) {
				x->range_done = 1; /* enough: abort the rest of the body */
				return 0;
			}
			return size * nmemb;
		}
		if (x->md5)
			EVP_DigestUpdate(x->md5, p, n);
		if (sink_write(x, p, n))
			return 0;
		return n;
	}
	if (resp_add(x->c, p, n)) {
		x->resp_overflow = 1;
		return 0;
	}
	return n;
}

/* header_cb - CURLOPT_HEADERFUNCTION: note ETag and Content-Length of the final response. */
static size_t header_cb(char *p, size_t size, size_t nitems, void *arg)
{
	struct xfer *x = arg;
	struct s3_client *c = x->c;
	size_t n = size * nitems;

	if (n >= 5 && !memcmp(p, "HTTP/", 5)) { /* a new response (after 100 Continue) */
		c->etag[0] = '\0';
		c->have_content_length = 0;
		c->have_content_range = 0;
	} else if (n > 20 && !strncasecmp(p, "content-range:", 14)) {
		const char *q = p + 14;

		while (*q == ' ')
			q++;
		if (!strncasecmp(q, "bytes ", 6) && q[6] >= '0' && q[6] <= '9') {
			c->content_range_start = strtoull(q + 6, NULL, 10);
			c->have_content_range = 1;
		}
	} else if (n > 5 && !strncasecmp(p, "etag:", 5)) {
		etag_clean(p + 5, n - 5, c->etag);
	} else if (n > 15 && !strncasecmp(p, "content-length:", 15)) {
		c->content_length = strtoull(p + 15, NULL, 10);
		c->have_content_length = 1;
	}
	return n;
}

/* host_for - the Host header value and the URL path prefix for bucket.  Fills host (size hsz);
 * *bucket_in_path says whether the path starts with /bucket. */
static void host_for(const struct s3_client *c, const char *bucket, char *host, size_t hsz,
		     int *bucket_in_path)
{
	const struct s3_config *g = &c->cfg;
	int dflt = !strcmp(g->scheme, "https") ? 443 : 80;
	int dns_ok = 1;

	for (const char *b = bucket; *b; b++)
		if (!((*b >= 'a' && *b <= 'z') || (*b >= '0' && *b <= '9') || *b == '-'))
			dns_ok = 0; /* dots break the TLS wildcard; uppercase/_ are not DNS */
	if (g->host) {
		char port[16] = "";

		if (g->port && g->port != dflt)
			snprintf(port, sizeof(port), ":%d", g->port);
		*bucket_in_path = g->path_style || !dns_ok;
		snprintf(host, hsz, "%s%s%s%s", *bucket_in_path ? "" : bucket,
			 *bucket_in_path ? "" : ".", g->host, port);
	} else if (g->path_style || !dns_ok) {
		snprintf(host, hsz, "s3.%s.amazonaws.com", g->region);
		*bucket_in_path = 1;
	} else {
		snprintf(host, hsz, "%s.s3.%s.amazonaws.com", bucket, g->region);
		*bucket_in_path = 0;
	}
}

/* what_str - "s3://bucket/key" for messages. */
static void what_str(const struct req *r, char *buf, size_t sz)
{
	snprintf(buf, sz, "s3://%s/%s", r->bucket, r->key ? r->key : r->label_key ? r->label_key : "");
}

/* code_hint - a sentence naming the likely cause of an S3 error code (no secrets). */
static const char *code_hint(const struct s3_client *c, const char *code, char *buf, size_t sz,
			     const struct req *r)
{
	const char *src = c->cfg.cred_source;

	if (!strcmp(code, "SignatureDoesNotMatch"))
		snprintf(buf, sz, "the secret access key does not match the access key id "
			 "(credentials from %s)", src);
	else if (!strcmp(code, "InvalidAccessKeyId"))
		snprintf(buf, sz, "the server does not know this access key id (credentials from %s)",
			 src);
	else if (!strcmp(code, "AccessDenied") || !strcmp(code, "AllAccessDisabled"))
		snprintf(buf, sz, "access denied to these credentials (from %s)", src);
	else if (!strcmp(code, "ExpiredToken") || !strcmp(code, "InvalidToken") ||
		 !strcmp(code, "TokenRefreshRequired"))
		snprintf(buf, sz, "the session token is expired or invalid (credentials from %s)", src);
	else if (!strcmp(code, "RequestTimeTooSkewed"))
		snprintf(buf, sz, "this machine's clock is too far from the server's");
	else if (!strcmp(code, "NoSuchBucket"))
		snprintf(buf, sz, "bucket '%s' does not exist at this endpoint", r->bucket);
	else if (!strcmp(code, "NoSuchKey"))
		snprintf(buf, sz, "no object with this key");
	else if (!strcmp(code, "NoSuchUpload"))
		snprintf(buf, sz, "the multipart upload does not exist (aborted or completed)");
	else if (!strcmp(code, "AuthorizationHeaderMalformed") ||
		 !strcmp(code, "PermanentRedirect") || !strcmp(code, "IllegalLocationConstraintException"))
		snprintf(buf, sz, "the bucket is not in region '%s' (set AWS_REGION)", c->cfg.region);
	else if (!strcmp(code, "BadDigest") || !strcmp(code, "InvalidDigest"))
		snprintf(buf, sz, "the body was damaged on the way (Content-MD5 mismatch)");
	else
		return NULL;
	return buf;
}

/* retryable_code - S3 error codes worth another attempt. */
static int retryable_code(const char *code)
{
	return !strcmp(code, "SlowDown") || !strcmp(code, "InternalError") ||
	       !strcmp(code, "RequestTimeout") || !strcmp(code, "ServiceUnavailable") ||
	       !strcmp(code, "Throttling") || !strcmp(code, "ThrottlingException") ||
	       !strcmp(code, "RequestTimeTooSkewed") /* our clock may have just been fixed */ ? 1 : 0;
}

/* retryable_curl - libcurl results that are a network failure worth another attempt. */
static int retryable_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_WEIRD_SERVER_REPLY:
		return 1;
	default:
		return 0;
	}
}

/* attempt outcome */
enum outcome { OUT_OK, OUT_RETRY, OUT_FAIL };

/*
 * parse_error_body - fill c->err_code and msg (size msz) from an <Error> body in c->resp.
 */
static void parse_error_body(struct s3_client *c, char *msg, size_t msz)
{
	msg[0] = '\0';
	if (!c->resp_len)
		return;
	xml_copy(c->resp, c->resp + c->resp_len, "Code", c->err_code, sizeof(c->err_code));
	xml_copy(c->resp, c->resp + c->resp_len, "Message", msg, msz);
}

/*
 * classify - judge one finished attempt: sets rc/err on c.  Returns the outcome.
 */
static enum outcome classify(struct s3_client *c, struct req *r, struct xfer *x, CURLcode cc)
{
	char what[512], msg[300], hint[300];
	long st = 0;

	what_str(r, what, sizeof(what));
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &st);
	c->http_status = st;
	c->err_code[0] = '\0';

	if (x->io_errno) {
		c->err_errno = x->io_errno;
		set_err(c, S3_EIO, "%s %s: %s the local file: %s", r->op, what,
			r->sink_fd >= 0 ? "cannot write" : "cannot read",
			x->short_file ? "it is shorter than the size given" : strerror(x->io_errno));
		return OUT_FAIL;
	}
	if (x->proto_err) {
		set_err(c, S3_EPROTO, "%s %s: the server sent a range that starts after the one "
			"asked for (%s)", r->op, what, r->range);
		return OUT_FAIL;
	}
	if (x->range_done && cc == CURLE_WRITE_ERROR)
		cc = CURLE_OK;
	if (x->resp_overflow) {
		set_err(c, S3_EPROTO, "%s %s: response body larger than %u bytes", r->op, what,
			RESP_MAX_BYTES);
		return OUT_FAIL;
	}
	if (cc != CURLE_OK) {
		char ep[300];

		if (c->cfg.host)
			snprintf(ep, sizeof(ep), "%s://%s%s%.0d", c->cfg.scheme, c->cfg.host,
				 c->cfg.port ? ":" : "", c->cfg.port);
		else
			snprintf(ep, sizeof(ep), "AWS S3 (%s)", c->cfg.region);
		if (cc == CURLE_OPERATION_TIMEDOUT)
			set_err(c, S3_ENET, "%s %s: timed out or stalled (no progress for %ld ms) "
				"talking to %s: %s", r->op, what, c->cfg.stall_timeout_ms, ep,
				c->curl_err[0] ? c->curl_err : curl_easy_strerror(cc));
		else if (cc == CURLE_COULDNT_CONNECT)
			set_err(c, S3_ENET, "%s %s: cannot connect to the endpoint %s: %s", r->op,
				what, ep, c->curl_err[0] ? c->curl_err : curl_easy_strerror(cc));
		else
			set_err(c, S3_ENET, "%s %s: network error talking to %s: %s", r->op, what, ep,
				c->curl_err[0] ? c->curl_err : curl_easy_strerror(cc));
		if (cc == CURLE_SSL_CACERT_BADFILE || cc == CURLE_PEER_FAILED_VERIFICATION)
			snprintf(c->errmsg + strlen(c->errmsg), sizeof(c->errmsg) - strlen(c->errmsg),
				 " (check AWS_CA_BUNDLE)");
		return retryable_curl(cc) ? OUT_RETRY : OUT_FAIL;
	}
	if (st >= 200 && st < 300) {
		if (r->error_in_200 && xml_root_is(c->resp, c->resp_len, "Error")) {
			parse_error_body(c, msg, sizeof(msg));
			set_err(c, retryable_code(c->err_code) ? S3_ESERVER : S3_EHTTP,
				"%s %s: HTTP %ld with an error in the body: %s: %s", r->op, what, st,
				c->err_code[0] ? c->err_code : "(no code)", msg);
			return retryable_code(c->err_code) ? OUT_RETRY : OUT_FAIL;
		}
		if (r->expect_md5_hex) {
			if (!c->etag[0]) {
				set_err(c, S3_EPROTO, "%s %s: the server sent no ETag", r->op, what);
				return OUT_FAIL;
			}
			if (strcmp(c->etag, r->expect_md5_hex)) {
				set_err(c, S3_EINTEGRITY, "%s %s: the server's ETag %s is not the MD5 "
					"%s of what we sent (body damaged on the way)", r->op, what,
					c->etag, r->expect_md5_hex);
				return OUT_RETRY;
			}
		}
		if (x->md5) {
			unsigned char d[16];
			char hex[S3_MD5_HEX_LEN + 1];

			EVP_DigestFinal_ex(x->md5, d, NULL);
			to_hex(d, 16, hex);
			if (strlen(c->etag) == S3_MD5_HEX_LEN && strcmp(hex, c->etag)) {
				set_err(c, S3_EINTEGRITY, "%s %s: the bytes received hash to %s, not "
					"the ETag %s", r->op, what, hex, c->etag);
				return OUT_RETRY;
			}
		}
		return OUT_OK;
	}
	if ((st == 404 && r->ok_404) || ((st == 405 || st == 501) && r->ok_405_501))
		return OUT_OK;

	parse_error_body(c, msg, sizeof(msg));
	const char *h = c->err_code[0] ? code_hint(c, c->err_code, hint, sizeof(hint), r) : NULL;
	const char *code = c->err_code[0] ? c->err_code : "";
	int retry = st == 429 || st == 500 || st == 502 || st == 503 || st == 504 ||
		    retryable_code(code);
	int rc;

	if (!h && !code[0]) { /* no body (HEAD) or not S3 XML */
		if (st == 403)
			h = "access denied or bad credentials (no error body; check the access key, "
			    "secret and region)";
		else if (st == 404)
			h = "no such key or bucket";
		else if (st == 301 || st == 307)
			h = "the bucket is in another region (set AWS_REGION)";
	}
	if (retry)
		rc = S3_ESERVER;
	else if (st == 403 || st == 401 || !strcmp(code, "InvalidAccessKeyId") ||
		 !strcmp(code, "SignatureDoesNotMatch"))
		rc = S3_EAUTH;
	else if (st == 404)
		rc = S3_ENOTFOUND;
	else
		rc = S3_EHTTP;
	set_err(c, rc, "%s %s: HTTP %ld%s%s%s%s%s%s", r->op, what, st, code[0] ? " " : "", code,
		msg[0] ? ": " : "", msg, h ? "; cause: " : "", h ? h : "");
	return retry ? OUT_RETRY : OUT_FAIL;
}

/* attempt - build, sign and perform one attempt of *r; returns its outcome (detail on c). */
static enum outcome attempt(struct s3_client *c, struct req *r)
{
	char host[600], amz_date[S3_SIGV4_AMZ_DATE_LEN + 1], body_hash[S3_SIGV4_HEX_LEN + 1];
	char *path = NULL, *epath = NULL, *url = NULL, *hdr = NULL;
	struct s3_sigv4_out so = { 0 };
	struct curl_slist *hl = NULL, *t;
	struct s3_sigv4_kv hv[1];
	struct xfer x = { .c = c, .r = r };
	enum outcome oc = OUT_FAIL;
	int bucket_in_path, rc, oom = 0;
	size_t elen;
	CURLcode cc;

	c->resp_len = 0;
	if (c->resp)
		c->resp[0] = '\0';
	c->etag[0] = '\0';
	c->have_content_length = 0;
	c->have_content_range = 0;
	c->curl_err[0] = '\0';
	r->sink_bytes = 0;

	host_for(c, r->bucket, host, sizeof(host), &bucket_in_path);
	if (asprintf(&path, "%s%s%s%s", bucket_in_path ? "/" : "", bucket_in_path ? r->bucket : "",
		     r->key ? "/" : (bucket_in_path ? "" : "/"), r->key ? r->key : "") < 0) {
		path = NULL;
		set_err(c, S3_ENOMEM, "%s: out of memory", r->op);
		goto out;
	}
	elen = 3 * strlen(path) + 1;
	epath = malloc(elen);
	if (!epath || s3_sigv4_uri_encode(path, strlen(path), 1, epath, elen, NULL)) {
		set_err(c, S3_ENOMEM, "%s: out of memory", r->op);
		goto out;
	}
	if (s3_sigv4_amz_date(time(NULL), amz_date)) {
		set_err(c, S3_EINVAL, "%s: cannot format the date", r->op);
		goto out;
	}
	/* a file body is UNSIGNED-PAYLOAD + Content-MD5 (see the header); small memory bodies
	 * get their real SHA-256 since it costs nothing */
	if (r->mem) {
		if (s3_sigv4_sha256_hex(r->mem, r->mem_len, body_hash)) {
			set_err(c, S3_ECRYPTO, "%s: SHA-256 failed", r->op);
			goto out;
		}
	} else if (r->body_fd >= 0) {
		snprintf(body_hash, sizeof(body_hash), "%s", S3_SIGV4_UNSIGNED_PAYLOAD);
	} else {
		snprintf(body_hash, sizeof(body_hash), "%s", S3_SIGV4_EMPTY_SHA256);
	}
	hv[0] = (struct s3_sigv4_kv){ "host", host };
	struct s3_sigv4_req sr = {
		.method = r->method, .path = path, .query = r->query, .n_query = r->n_query,
		.headers = hv, .n_headers = 1, .payload_hash = body_hash, .amz_date = amz_date,
		.region = c->cfg.region, .service = "s3", .access_key = c->cfg.access_key,
		.secret_key = c->cfg.secret_key, .session_token = c->cfg.session_token,
		.flags = S3_SIGV4_ENCODE_PATH | S3_SIGV4_CONTENT_SHA256,
	};
	rc = s3_sigv4_sign(&sr, &so);
	if (rc) {
		set_err(c, rc, "%s: signing the request failed (%s)", r->op, s3_rc_str(rc));
		goto out;
	}
	if (asprintf(&url, "%s://%s%s%s%s", c->cfg.scheme, host, epath, so.query[0] ? "?" : "",
		     so.query) < 0) {
		url = NULL;
		set_err(c, S3_ENOMEM, "%s: out of memory", r->op);
		goto out;
	}

#define ADDH(...)                                                              \
	do {                                                                   \
		if (asprintf(&hdr, __VA_ARGS__) < 0) {                         \
			hdr = NULL;                                            \
			oom = 1;                                               \
		} else {                                                       \
			t = curl_slist_append(hl, hdr);                        \
			if (!t)                                                \
				oom = 1;                                       \
			else                                                   \
				hl = t;                                        \
			free(hdr);                                             \
			hdr = NULL;                                            \
		}                                                              \
	} while (0)
	ADDH("Host: %s", host);
	ADDH("x-amz-date: %s", amz_date);
	ADDH("x-amz-content-sha256: %s", body_hash);
	if (c->cfg.session_token && *c->cfg.session_token)
		ADDH("x-amz-security-token: %s", c->cfg.session_token);
	ADDH("Authorization: %s", so.authorization);
	if (r->content_md5)
		ADDH("Content-MD5: %s", r->content_md5);
	if (r->range)
		ADDH("Range: %s", r->range);
	if (!strcmp(r->method, "POST"))
		ADDH("Content-Type:%s%s", r->content_type ? " " : "",
		     r->content_type ? r->content_type : "");
	/* no 100-continue round trip: it costs a wait with servers that ignore it, and an early
	 * error only saves bandwidth we would spend anyway on the (rare) failure */
	ADDH("Expect:");
#undef ADDH
	if (oom) {
		set_err(c, S3_ENOMEM, "%s: out of memory", r->op);
		goto out;
	}

	if (r->sink_verify_md5 && !r->range) {
		x.md5 = EVP_MD_CTX_new();
		if (!x.md5 || !EVP_DigestInit_ex(x.md5, EVP_md5(), NULL)) {
			set_err(c, S3_ECRYPTO, "%s: MD5 init failed", r->op);
			goto out;
		}
	}

	CURL *h = c->curl;
	long stall_s = (c->cfg.stall_timeout_ms + 999) / 1000;

	curl_easy_reset(h);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_err);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->cfg.connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, stall_s > 0 ? stall_s : 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)&c->cfg);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
	curl_easy_setopt(h, CURLOPT_SEEKDATA, &x);
	if (!strcmp(c->cfg.scheme, "https") && c->cfg.ca_bundle)
		curl_easy_setopt(h, CURLOPT_CAINFO, c->cfg.ca_bundle);
	if (!strcmp(r->method, "PUT")) {
		curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(h, CURLOPT_READDATA, &x);
		curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE,
				 (curl_off_t)(r->mem ? r->mem_len : r->body_fd >= 0 ? r->body_len : 0));
	} else if (!strcmp(r->method, "POST")) {
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(h, CURLOPT_READDATA, &x);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(r->mem ? r->mem_len : 0));
	} else if (!strcmp(r->method, "HEAD")) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "GET")) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, r->method);
	}

	cc = curl_easy_perform(h);
	oc = classify(c, r, &x, cc);
out:
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hl); /* holds the Authorization/token headers: freed at once */
	EVP_MD_CTX_free(x.md5);
	s3_sigv4_out_fini(&so);
	free(url);
	free(epath);
	free(path);
	return oc;
}

/*
 * req_run - run *r with retries (full jitter, attempts and budget on c).  Returns S3_OK or the
 * rc of the last attempt; c->errmsg says why, with the attempt count when retries ran out.
 */
static int req_run(struct s3_client *c, struct req *r)
{
	uint64_t t0 = now_ms();

	for (unsigned a = 1;; a++) {
		enum outcome oc;
		uint64_t ceil_ms, sleep_for;

		c->attempts = a;
		c->errmsg[0] = '\0';
		c->last_rc = S3_OK;
		oc = attempt(c, r);
		if (oc == OUT_OK) {
			c->errmsg[0] = '\0';
			c->err_code[0] = '\0';
			return S3_OK;
		}
		if (oc == OUT_FAIL)
			break;
		ceil_ms = (uint64_t)c->cfg.retry_base_ms << (a - 1 < 20 ? a - 1 : 20);
		if (ceil_ms > (uint64_t)c->cfg.retry_cap_ms)
			ceil_ms = (uint64_t)c->cfg.retry_cap_ms;
		sleep_for = rand_below(c, ceil_ms);
		if (a >= c->cfg.max_attempts || now_ms() + sleep_for > c->deadline_ms) {
			size_t l = strlen(c->errmsg);

			snprintf(c->errmsg + l, sizeof(c->errmsg) - l,
				 " (gave up after %u attempt%s in %.1f s)", a, a == 1 ? "" : "s",
				 (double)(now_ms() - t0) / 1000.0);
			break;
		}
		if (cancelled(&c->cfg))
			break;
		sleep_ms(&c->cfg, sleep_for);
	}
	if (cancelled(&c->cfg)) {
		snprintf(c->errmsg, sizeof(c->errmsg), "%s: cancelled (the process is exiting or its "
			 "deadline passed)", r->op);
		return c->last_rc = S3_ECANCELED;
	}
	return c->last_rc ? c->last_rc : S3_EPROTO;
}

/* --- operations ------------------------------------------------------------------------------- */

/* req_init - a request with no body and no sink. */
static void req_init(struct req *r, const char *op, const char *method, const char *bucket,
		     const char *key)
{
	memset(r, 0, sizeof(*r));
	r->op = op;
	r->method = method;
	r->bucket = bucket;
	r->key = key;
	r->body_fd = -1;
	r->sink_fd = -1;
}

/* check_names - bucket and key present (key may be optional). */
static int check_names(struct s3_client *c, const char *op, const char *bucket, const char *key,
		       int need_key)
{
	if (!bucket || !*bucket || (need_key && (!key || !*key)))
		return set_err(c, S3_EINVAL, "%s: %s", op,
			       !bucket || !*bucket ? "no bucket given" : "no key given");
	return S3_OK;
}

/*
 * md5_range - MD5 of bytes [off, off+len) of fd (pread) into d.  Returns S3_OK, S3_EIO (detail
 * on c) or S3_ECRYPTO.  Owning thread of c.
 */
static int md5_range(struct s3_client *c, const char *op, int fd, off_t off, uint64_t len,
		     unsigned char d[16])
{
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	char *buf = malloc(MD5_BUF_BYTES);
	uint64_t done = 0;
	int rc = S3_OK;

	if (!m || !buf) {
		rc = set_err(c, S3_ENOMEM, "%s: out of memory", op);
		goto out;
	}
	if (!EVP_DigestInit_ex(m, EVP_md5(), NULL)) {
		rc = set_err(c, S3_ECRYPTO, "%s: MD5 unavailable in OpenSSL", op);
		goto out;
	}
	while (done < len) {
		size_t want = len - done < MD5_BUF_BYTES ? (size_t)(len - done) : MD5_BUF_BYTES;
		ssize_t got = pread(fd, buf, want, off + (off_t)done);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			c->err_errno = got < 0 ? errno : EIO;
			rc = set_err(c, S3_EIO, "%s: cannot read the local file: %s", op,
				     got < 0 ? strerror(errno) : "it is shorter than the size given");
			goto out;
		}
		EVP_DigestUpdate(m, buf, (size_t)got);
		done += (uint64_t)got;
	}
	if (!EVP_DigestFinal_ex(m, d, NULL))
		rc = set_err(c, S3_ECRYPTO, "%s: MD5 failed", op);
out:
	EVP_MD_CTX_free(m);
	free(buf);
	return rc;
}

/*
 * put_body - PUT bytes [off, off+len) of fd with Content-MD5 and the ETag check; the query
 * (UploadPart) is given by the caller.  md5 (may be NULL) gets the binary MD5, md5_hex the hex.
 */
static int put_body(struct s3_client *c, struct req *r, int fd, off_t off, uint64_t len,
		    unsigned char md5[16], char md5_hex[S3_MD5_HEX_LEN + 1])
{
	unsigned char d[16];
	char hex[S3_MD5_HEX_LEN + 1], b64[32];
	int rc;

	rc = md5_range(c, r->op, fd, off, len, d);
	if (rc)
		return rc;
	to_hex(d, 16, hex);
	EVP_EncodeBlock((unsigned char *)b64, d, 16);
	r->body_fd = fd;
	r->body_off = off;
	r->body_len = len;
	r->content_md5 = b64;
	r->expect_md5_hex = hex;
	rc = req_run(c, r);
	if (rc)
		return rc;
	if (md5)
		memcpy(md5, d, 16);
	if (md5_hex)
		memcpy(md5_hex, hex, sizeof(hex));
	return S3_OK;
}

int s3_object_put(struct s3_client *c, const char *bucket, const char *key, int fd, off_t off,
		  uint64_t len, char md5_hex[S3_MD5_HEX_LEN + 1])
{
	struct req r;
	int rc;

	op_begin(c);
	rc = check_names(c, "PUT", bucket, key, 1);
	if (rc)
		return rc;
	if (len > S3_PUT_BYTES_MAX)
		return set_err(c, S3_EINVAL, "PUT s3://%s/%s: %" PRIu64 " bytes is more than a "
			       "single PUT may carry (5 GiB): use multipart", bucket, key, len);
	req_init(&r, "PUT", "PUT", bucket, key);
	return put_body(c, &r, fd, off, len, NULL, md5_hex);
}

int s3_object_get(struct s3_client *c, const char *bucket, const char *key, uint64_t range_off,
		  uint64_t range_len, int fd, off_t fd_off, uint64_t *got_bytes)
{
	char range[64];
	struct req r;
	int rc;

	if (got_bytes)
		*got_bytes = 0;
	op_begin(c);
	rc = check_names(c, "GET", bucket, key, 1);
	if (rc)
		return rc;
	req_init(&r, "GET", "GET", bucket, key);
	if (range_len) {
		snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, range_off,
			 range_off + range_len - 1);
		r.range = range;
		r.range_off = range_off;
		r.range_len = range_len;
	}
	r.sink_fd = fd;
	r.sink_off = fd_off;
	r.sink_verify_md5 = 1;
	rc = req_run(c, &r);
	if (!rc && got_bytes)
		*got_bytes = r.sink_bytes;
	return rc;
}

int s3_object_head(struct s3_client *c, const char *bucket, const char *key,
		   struct s3_object_info *info)
{
	struct req r;
	int rc;

	memset(info, 0, sizeof(*info));
	op_begin(c);
	rc = check_names(c, "HEAD", bucket, key, 1);
	if (rc)
		return rc;
	req_init(&r, "HEAD", "HEAD", bucket, key);
	rc = req_run(c, &r);
	if (rc)
		return rc;
	info->size_bytes = c->have_content_length ? c->content_length : 0;
	snprintf(info->etag, sizeof(info->etag), "%s", c->etag);
	return S3_OK;
}

int s3_object_delete(struct s3_client *c, const char *bucket, const char *key)
{
	struct req r;
	int rc;

	op_begin(c);
	rc = check_names(c, "DELETE", bucket, key, 1);
	if (rc)
		return rc;
	req_init(&r, "DELETE", "DELETE", bucket, key);
	return req_run(c, &r);
}

void s3_list_page_fini(struct s3_list_page *page)
{
	if (!page)
		return;
	for (size_t i = 0; i < page->n_entries; i++)
		free(page->entries[i].key);
	free(page->entries);
	for (size_t i = 0; i < page->n_prefixes; i++)
		free(page->prefixes[i]);
	free(page->prefixes);
	free(page->next_token);
	memset(page, 0, sizeof(*page));
}

/* parse_list - fill *pg from a ListBucketResult body.  Returns S3_OK, S3_EPROTO or S3_ENOMEM. */
static int parse_list(struct s3_client *c, struct s3_list_page *pg, const char *what)
{
	const char *s = c->resp, *end = c->resp + c->resp_len, *vs, *ve, *p;
	size_t cap = 0, pcap = 0;
	char tmp[32];

	if (!s || !xml_root_is(s, c->resp_len, "ListBucketResult"))
		return set_err(c, S3_EPROTO, "LIST %s: the response is not a ListBucketResult", what);
	for (p = s; (p = xml_find(p, end, "Contents", &vs, &ve));) {
		struct s3_list_entry *e;
		const char *ks, *ke;

		if (pg->n_entries == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			void *q = realloc(pg->entries, ncap * sizeof(*pg->entries));

			if (!q)
				return set_err(c, S3_ENOMEM, "LIST %s: out of memory", what);
			pg->entries = q;
			cap = ncap;
		}
		e = &pg->entries[pg->n_entries];
		memset(e, 0, sizeof(*e));
		if (!xml_find(vs, ve, "Key", &ks, &ke))
			return set_err(c, S3_EPROTO, "LIST %s: an entry without <Key>", what);
		e->key = xml_text(ks, ke);
		if (!e->key)
			return set_err(c, S3_ENOMEM, "LIST %s: out of memory", what);
		pg->n_entries++;
		xml_copy(vs, ve, "Size", tmp, sizeof(tmp));
		e->size_bytes = strtoull(tmp, NULL, 10);
		if (xml_find(vs, ve, "ETag", &ks, &ke))
			etag_clean(ks, (size_t)(ke - ks), e->etag);
	}
	for (p = s; (p = xml_find(p, end, "CommonPrefixes", &vs, &ve));) {
		const char *ks, *ke;

		if (!xml_find(vs, ve, "Prefix", &ks, &ke))
			continue;
		if (pg->n_prefixes == pcap) {
			size_t ncap = pcap ? pcap * 2 : 16;
			void *q = realloc(pg->prefixes, ncap * sizeof(*pg->prefixes));

			if (!q)
				return set_err(c, S3_ENOMEM, "LIST %s: out of memory", what);
			pg->prefixes = q;
			pcap = ncap;
		}
		pg->prefixes[pg->n_prefixes] = xml_text(ks, ke);
		if (!pg->prefixes[pg->n_prefixes])
			return set_err(c, S3_ENOMEM, "LIST %s: out of memory", what);
		pg->n_prefixes++;
	}
	/* top-level fields: search outside the entries (a key cannot contain a raw '<') */
	xml_copy(s, end, "IsTruncated", tmp, sizeof(tmp));
	pg->is_truncated = !strcmp(tmp, "true");
	if (pg->is_truncated) {
		if (!xml_find(s, end, "NextContinuationToken", &vs, &ve) || vs == ve)
			return set_err(c, S3_EPROTO, "LIST %s: truncated listing without "
				       "NextContinuationToken", what);
		pg->next_token = xml_text(vs, ve);
		if (!pg->next_token)
			return set_err(c, S3_ENOMEM, "LIST %s: out of memory", what);
	}
	return S3_OK;
}

int s3_objects_list(struct s3_client *c, const char *bucket, const char *prefix,
		    const char *delimiter, const char *continuation_token, unsigned max_keys,
		    struct s3_list_page *page)
{
	char mk[16], what[512];
	struct req r;
	int rc;

	memset(page, 0, sizeof(*page));
	op_begin(c);
	rc = check_names(c, "LIST", bucket, NULL, 0);
	if (rc)
		return rc;
	req_init(&r, "LIST", "GET", bucket, NULL);
	r.label_key = prefix;
	r.query[r.n_query++] = (struct s3_sigv4_kv){ "list-type", "2" };
	if (prefix && *prefix)
		r.query[r.n_query++] = (struct s3_sigv4_kv){ "prefix", prefix };
	if (delimiter && *delimiter)
		r.query[r.n_query++] = (struct s3_sigv4_kv){ "delimiter", delimiter };
	if (continuation_token && *continuation_token)
		r.query[r.n_query++] = (struct s3_sigv4_kv){ "continuation-token",
							     continuation_token };
	if (max_keys) {
		snprintf(mk, sizeof(mk), "%u", max_keys);
		r.query[r.n_query++] = (struct s3_sigv4_kv){ "max-keys", mk };
	}
	r.error_in_200 = 1;
	rc = req_run(c, &r);
	if (rc)
		return rc;
	snprintf(what, sizeof(what), "s3://%s/%s", bucket, prefix ? prefix : "");
	rc = parse_list(c, page, what);
	if (rc)
		s3_list_page_fini(page);
	return rc;
}

int s3_multipart_create(struct s3_client *c, const char *bucket, const char *key,
			char **upload_id)
{
	const char *vs, *ve;
	struct req r;
	int rc;

	*upload_id = NULL;
	op_begin(c);
	rc = check_names(c, "CreateMultipartUpload", bucket, key, 1);
	if (rc)
		return rc;
	req_init(&r, "CreateMultipartUpload", "POST", bucket, key);
	r.query[r.n_query++] = (struct s3_sigv4_kv){ "uploads", NULL };
	r.error_in_200 = 1;
	rc = req_run(c, &r);
	if (rc)
		return rc;
	if (!c->resp || !xml_find(c->resp, c->resp + c->resp_len, "UploadId", &vs, &ve) || vs == ve)
		return set_err(c, S3_EPROTO, "CreateMultipartUpload s3://%s/%s: no UploadId in the "
			       "response", bucket, key);
	*upload_id = xml_text(vs, ve);
	if (!*upload_id)
		return set_err(c, S3_ENOMEM, "CreateMultipartUpload: out of memory");
	return S3_OK;
}

int s3_multipart_part_put(struct s3_client *c, const char *bucket, const char *key,
			  const char *upload_id, int fd, struct s3_part *part)
{
	char num[16];
	struct req r;
	int rc;

	op_begin(c);
	part->etag[0] = '\0';
	rc = check_names(c, "UploadPart", bucket, key, 1);
	if (rc)
		return rc;
	if (!upload_id || !part->number || part->number > S3_PARTS_MAX || part->len > S3_PART_BYTES_MAX)
		return set_err(c, S3_EINVAL, "UploadPart s3://%s/%s: bad part %u (%" PRIu64
			       " bytes) or no upload id", bucket, key, part->number, part->len);
	snprintf(num, sizeof(num), "%u", part->number);
	req_init(&r, "UploadPart", "PUT", bucket, key);
	r.query[r.n_query++] = (struct s3_sigv4_kv){ "partNumber", num };
	r.query[r.n_query++] = (struct s3_sigv4_kv){ "uploadId", upload_id };
	return put_body(c, &r, fd, (off_t)part->off, part->len, part->md5, part->etag);
}

int s3_multipart_etag(const struct s3_part *parts, size_t n, char out[S3_ETAG_MAX])
{
	unsigned char d[16];
	char hex[S3_MD5_HEX_LEN + 1];
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	int ok = m && EVP_DigestInit_ex(m, EVP_md5(), NULL);

	for (size_t i = 0; ok && i < n; i++)
		ok = EVP_DigestUpdate(m, parts[i].md5, 16);
	ok = ok && EVP_DigestFinal_ex(m, d, NULL);
	EVP_MD_CTX_free(m);
	out[0] = '\0';
	if (!ok)
		return S3_ECRYPTO;
	to_hex(d, 16, hex);
	snprintf(out, S3_ETAG_MAX, "%s-%zu", hex, n);
	return S3_OK;
}

int s3_multipart_complete(struct s3_client *c, const char *bucket, const char *key,
			  const char *upload_id, const struct s3_part *parts, size_t n,
			  char etag_out[S3_ETAG_MAX])
{
	char *xml = NULL, want[S3_ETAG_MAX], got[S3_ETAG_MAX] = "";
	size_t len = 0, cap;
	const char *vs, *ve;
	struct req r;
	int rc;

	if (etag_out)
		etag_out[0] = '\0';
	op_begin(c);
	rc = check_names(c, "CompleteMultipartUpload", bucket, key, 1);
	if (rc)
		return rc;
	if (!upload_id || !n || n > S3_PARTS_MAX)
		return set_err(c, S3_EINVAL, "CompleteMultipartUpload s3://%s/%s: no upload id or "
			       "%zu parts", bucket, key, n);
	for (size_t i = 0; i < n; i++)
		if (strlen(parts[i].etag) != S3_MD5_HEX_LEN || (i && parts[i].number <= parts[i - 1].number))
			return set_err(c, S3_EINVAL, "CompleteMultipartUpload s3://%s/%s: part %u "
				       "not uploaded or out of order", bucket, key, parts[i].number);
	cap = 128 + n * 96;
	xml = malloc(cap);
	if (!xml)
		return set_err(c, S3_ENOMEM, "CompleteMultipartUpload: out of memory");
	len += (size_t)snprintf(xml + len, cap - len, "<CompleteMultipartUpload xmlns=\"http://s3."
				"amazonaws.com/doc/2006-03-01/\">");
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(xml + len, cap - len, "<Part><PartNumber>%u</PartNumber>"
					"<ETag>\"%s\"</ETag></Part>", parts[i].number, parts[i].etag);
	len += (size_t)snprintf(xml + len, cap - len, "</CompleteMultipartUpload>");
	req_init(&r, "CompleteMultipartUpload", "POST", bucket, key);
	r.query[r.n_query++] = (struct s3_sigv4_kv){ "uploadId", upload_id };
	r.mem = xml;
	r.mem_len = len;
	r.content_type = "application/xml";
	r.error_in_200 = 1; /* S3 may answer 200 and then fail in the body */
	rc = req_run(c, &r);
	free(xml);
	if (rc)
		return rc;
	if (!xml_root_is(c->resp, c->resp_len, "CompleteMultipartUploadResult"))
		return set_err(c, S3_EPROTO, "CompleteMultipartUpload s3://%s/%s: the response is "
			       "not a CompleteMultipartUploadResult", bucket, key);
	if (xml_find(c->resp, c->resp + c->resp_len, "ETag", &vs, &ve))
		etag_clean(vs, (size_t)(ve - vs), got);
	rc = s3_multipart_etag(parts, n, want);
	if (rc)
		return set_err(c, rc, "CompleteMultipartUpload: MD5 failed");
	/* a server that gives the S3 form must give exactly ours; the local test server answers
	 * the MD5 of the whole object instead, which the parts' checks already covered */
	if (strchr(got, '-') && strcmp(got, want))
		return set_err(c, S3_EINTEGRITY, "CompleteMultipartUpload s3://%s/%s: the object's "
			       "ETag %s is not %s computed from the parts we sent", bucket, key, got,
			       want);
	if (etag_out)
		snprintf(etag_out, S3_ETAG_MAX, "%s", got[0] ? got : want);
	return S3_OK;
}

int s3_multipart_abort(struct s3_client *c, const char *bucket, const char *key,
		       const char *upload_id)
{
	struct req r;
	int rc;

	op_begin(c);
	rc = check_names(c, "AbortMultipartUpload", bucket, key, 1);
	if (rc)
		return rc;
	if (!upload_id)
		return set_err(c, S3_EINVAL, "AbortMultipartUpload: no upload id");
	req_init(&r, "AbortMultipartUpload", "DELETE", bucket, key);
	r.query[r.n_query++] = (struct s3_sigv4_kv){ "uploadId", upload_id };
	r.ok_404 = 1;
	r.ok_405_501 = 1;
	return req_run(c, &r);
}

/* --- whole-file upload -------------------------------------------------------------------------- */

int s3_upload_plan(int fd, uint64_t size_bytes, const char *bucket, const char *key,
		   uint64_t part_bytes, uint64_t multipart_threshold_bytes, struct s3_upload **out)
{
	struct s3_upload *u;
	size_t n;

	*out = NULL;
	if (!bucket || !*bucket || !key || !*key || fd < 0)
		return S3_EINVAL;
	if (!part_bytes)
		part_bytes = S3_PART_BYTES_DEFAULT;
	if (part_bytes < S3_PART_BYTES_MIN)
		part_bytes = S3_PART_BYTES_MIN;
	while (size_bytes / part_bytes + (size_bytes % part_bytes != 0) > S3_PARTS_MAX)
		part_bytes += 1u << 20;
	if (part_bytes > S3_PART_BYTES_MAX)
		return S3_EINVAL; /* more than 10000 * 5 GiB */
	if (!multipart_threshold_bytes)
		multipart_threshold_bytes = part_bytes;
	u = calloc(1, sizeof(*u));
	if (!u)
		return S3_ENOMEM;
	u->fd = fd;
	u->size_bytes = size_bytes;
	u->part_bytes = part_bytes;
	u->multipart = size_bytes > 0 && size_bytes >= multipart_threshold_bytes;
	if (!u->multipart && size_bytes > S3_PUT_BYTES_MAX)
		u->multipart = 1;
	n = u->multipart ? (size_t)(size_bytes / part_bytes + (size_bytes % part_bytes != 0)) : 1;
	u->bucket = strdup(bucket);
	u->key = strdup(key);
	u->parts = calloc(n, sizeof(*u->parts));
	if (!u->bucket || !u->key || !u->parts) {
		s3_upload_free(u);
		return S3_ENOMEM;
	}
	u->n_parts = n;
	for (size_t i = 0; i < n; i++) {
		u->parts[i].number = (unsigned)i + 1;
		u->parts[i].off = u->multipart ? i * part_bytes : 0;
		u->parts[i].len = u->multipart ? (i + 1 < n ? part_bytes : size_bytes - i * part_bytes)
					       : size_bytes;
	}
	*out = u;
	return S3_OK;
}

int s3_upload_begin(struct s3_client *c, struct s3_upload *u)
{
	if (!u->multipart)
		return S3_OK;
	free(u->upload_id);
	u->upload_id = NULL;
	return s3_multipart_create(c, u->bucket, u->key, &u->upload_id);
}

int s3_upload_part(struct s3_client *c, struct s3_upload *u, size_t i)
{
	struct s3_part *p;
	int rc;

	if (i >= u->n_parts) {
		op_begin(c);
		return set_err(c, S3_EINVAL, "upload s3://%s/%s: no part index %zu", u->bucket,
			       u->key, i);
	}
	p = &u->parts[i];
	if (u->multipart)
		return s3_multipart_part_put(c, u->bucket, u->key, u->upload_id, u->fd, p);
	rc = s3_object_put(c, u->bucket, u->key, u->fd, 0, u->size_bytes, p->etag);
	if (!rc)
		snprintf(u->etag, sizeof(u->etag), "%s", p->etag);
	return rc;
}

int s3_upload_finish(struct s3_client *c, struct s3_upload *u)
{
	if (!u->multipart) {
		if (!u->parts[0].etag[0]) {
			op_begin(c);
			return set_err(c, S3_EINVAL, "upload s3://%s/%s: finished before its PUT",
				       u->bucket, u->key);
		}
		snprintf(u->etag, sizeof(u->etag), "%s", u->parts[0].etag);
		return S3_OK;
	}
	return s3_multipart_complete(c, u->bucket, u->key, u->upload_id, u->parts, u->n_parts,
				     u->etag);
}

void s3_upload_abort(struct s3_client *c, struct s3_upload *u)
{
	char msg[sizeof(c->errmsg)], code[sizeof(c->err_code)];
	long st = c->http_status;
	int rc = c->last_rc, en = c->err_errno;
	unsigned att = c->attempts;

	if (!u->multipart || !u->upload_id)
		return;
	memcpy(msg, c->errmsg, sizeof(msg));
	memcpy(code, c->err_code, sizeof(code));
	(void)s3_multipart_abort(c, u->bucket, u->key, u->upload_id);
	memcpy(c->errmsg, msg, sizeof(msg));
	memcpy(c->err_code, code, sizeof(code));
	c->http_status = st;
	c->last_rc = rc;
	c->err_errno = en;
	c->attempts = att;
}

void s3_upload_free(struct s3_upload *u)
{
	if (!u)
		return;
	free(u->bucket);
	free(u->key);
	free(u->upload_id);
	free(u->parts);
	free(u);
}

int s3_put_file(struct s3_client *c, int fd, uint64_t size_bytes, const char *bucket,
		const char *key, uint64_t part_bytes, uint64_t multipart_threshold_bytes,
		char etag_out[S3_ETAG_MAX])
{
	struct s3_upload *u = NULL;
	int rc;

	if (etag_out)
		etag_out[0] = '\0';
	op_begin(c);
	rc = s3_upload_plan(fd, size_bytes, bucket, key, part_bytes, multipart_threshold_bytes, &u);
	if (rc)
		return set_err(c, rc, "upload s3://%s/%s: %s", bucket ? bucket : "",
			       key ? key : "", rc == S3_ENOMEM ? "out of memory"
			       : "bad arguments or an object larger than S3 allows");
	c->budget_held = 1; /* one retry budget for the whole object */
	rc = s3_upload_begin(c, u);
	for (size_t i = 0; !rc && i < u->n_parts; i++)
		rc = s3_upload_part(c, u, i);
	if (!rc)
		rc = s3_upload_finish(c, u);
	if (rc)
		s3_upload_abort(c, u);
	else if (etag_out)
		snprintf(etag_out, S3_ETAG_MAX, "%s", u->etag);
	c->budget_held = 0;
	s3_upload_free(u);
	return rc;
}
