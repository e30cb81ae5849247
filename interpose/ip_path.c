/*
 * ip_path.c - pure path rules of the shim (see ip_path.h).
 *
 * DESIGN
 * The shim decides everything lexically, as the issue and DESIGN.md §1 ask: a path is under a
 * prefix when its normalised text is.  Normalisation never consults the file system, so it can
 * run on the hot path, in a vfork child and in unit tests with the same result.  ".." is resolved
 * textually and clamped at "/", so no virtual path can climb out of a prefix into the tier's own
 * parent directories: the tier path is always root + a normalised absolute path.
 */
#include "interpose/ip_path.h"

#include <emmintrin.h>
#include <stdint.h>
#include <string.h>

/* Appends component [c, c+n) to out (length *len); returns -1 when it does not fit. */
static int path_push(char *out, size_t outsz, size_t *len, const char *c, size_t n)
{
	if (*len + 1 + n + 1 > outsz)
		return -1;
	out[(*len)++] = '/';
	memcpy(out + *len, c, n);
	*len += n;
	out[*len] = '\0';
	return 0;
}

/* Removes the last component of out (clamped at "/"). */
static void path_pop(char *out, size_t *len)
{
	while (*len > 0 && out[*len - 1] != '/')
		(*len)--;
	if (*len > 0)
		(*len)--; /* the '/' itself */
	out[*len] = '\0';
}

/* What a walk watches for: does any intermediate path lie under one of these prefixes? */
struct path_watch {
	const char (*prefixes)[4096];
	const size_t *plens;
	int n;
	int entered;
};

static void watch_check(struct path_watch *w, const char *out)
{
	for (int i = 0; w && !w->entered && i < w->n; i++)
		if (ip_path_under(out, w->prefixes[i], w->plens[i]))
			w->entered = 1;
}

/* Normalises the components of `in` onto out (which holds an absolute prefix of length *len,
 * "" meaning "/").  Sets *trail when the text ends in '/', "." or "..".  With a watch, notes
 * whether the walk passes through a prefix.  Returns 0 or -1. */
static int path_feed(const char *in, char *out, size_t outsz, size_t *len, int *trail,
		     struct path_watch *w)
{
	const char *p = in;

	*trail = 0;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p) {
			*trail = p > in;
			break;
		}
		const char *c = p;
		while (*p && *p != '/')
			p++;
		size_t n = (size_t)(p - c);
		if (n == 1 && c[0] == '.') {
			if (!*p)
				*trail = 1;
			continue;
		}
		if (n == 2 && c[0] == '.' && c[1] == '.') {
			path_pop(out, len);
			if (!*p)
				*trail = 1;
			continue;
		}
		if (path_push(out, outsz, len, c, n))
			return -1;
		watch_check(w, out);
		*trail = 0;
	}
	return 0;
}

/* Finishes a normalised path: "" becomes "/", a trailing '/' is added when asked. */
static int path_finish(char *out, size_t outsz, size_t len, int trail)
{
	if (len == 0) {
		if (outsz < 2)
			return -1;
		out[0] = '/';
		out[1] = '\0';
		return 1;
	}
	if (trail) {
		if (len + 2 > outsz)
			return -1;
		out[len++] = '/';
		out[len] = '\0';
	}
	return (int)len;
}

int ip_path_normalize(const char *in, char *out, size_t outsz)
{
	return ip_path_join_watch(NULL, in, out, outsz, NULL, NULL, 0, NULL);
}

int ip_path_join(const char *base, const char *rel, char *out, size_t outsz)
{
	return ip_path_join_watch(base, rel, out, outsz, NULL, NULL, 0, NULL);
}

int ip_path_join_watch(const char *base, const char *rel, char *out, size_t outsz,
		       const char (*prefixes)[4096], const size_t *plens, int n, int *entered)
{
	struct path_watch w = {prefixes, plens, n, 0};
	struct path_watch *wp = n > 0 ? &w : NULL;
	size_t len = 0;
	int trail;

	if (!rel || outsz < 2)
		return -1;
	if (rel[0] != '/' && (!base || base[0] != '/'))
		return -1;
	out[0] = '\0';
	if (rel[0] != '/') {
		if (path_feed(base, out, outsz, &len, &trail, NULL))
			return -1;
		watch_check(wp, len ? out : "/");
	}
	if (path_feed(rel, out, outsz, &len, &trail, wp))
		return -1;
	if (entered)
		*entered = w.entered;
	return path_finish(out, outsz, len, trail);
}

int ip_path_last_dot(const char *path)
{
	size_t n = strlen(path);

	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n >= 1 && path[n - 1] == '.' && (n == 1 || path[n - 2] == '/'))
		return 1;
	if (n >= 2 && path[n - 1] == '.' && path[n - 2] == '.' && (n == 2 || path[n - 3] == '/'))
		return 2;
	return 0;
}

int ip_path_under(const char *path, const char *prefix, size_t plen)
{
	return strncmp(path, prefix, plen) == 0 && (path[plen] == '/' || path[plen] == '\0');
}

int ip_path_is_ancestor(const char *path, const char *prefix, size_t plen)
{
	size_t i = 0;

	/* walk both while they agree: most paths differ from the prefix within a few bytes */
	while (i < plen && path[i] && path[i] == prefix[i])
		i++;
	if (i == 0 || i == plen)
		return 0;
	/* path[0..i) is a proper start of the prefix; only trailing slashes may remain of path */
	size_t j = i;
	while (path[j] == '/')
		j++;
	if (path[j] != '\0')
		return 0;
	/* it ends on a component boundary of the prefix: "/" or "/a/" or "/a" before "/a/ckpt" */
	return path[i - 1] == '/' || prefix[i] == '/';
}

/*
 * The hot-path scan: 16 bytes per step with SSE2.  Aligned loads never cross a page, so reading
 * the bytes around the string inside its aligned blocks is safe (they are masked off); the
 * address sanitizer, which does not know that, is told to look away.
 */
__attribute__((no_sanitize_address)) int ip_path_has_slash_pair(const char *path)
{
	const __m128i slash = _mm_set1_epi8('/'), dot = _mm_set1_epi8('.');
	const __m128i zero = _mm_setzero_si128();
	unsigned int off = (unsigned int)((uintptr_t)path & 15), carry = 0;
	const char *p = path - off;

	for (;;) {
		__m128i v = _mm_load_si128((const __m128i *)(const void *)p);
		__m128i is_slash = _mm_cmpeq_epi8(v, slash);
		unsigned int ms = (unsigned int)_mm_movemask_epi8(is_slash);
		unsigned int md = (unsigned int)_mm_movemask_epi8(
			_mm_or_si128(is_slash, _mm_cmpeq_epi8(v, dot)));
		unsigned int mz = (unsigned int)_mm_movemask_epi8(_mm_cmpeq_epi8(v, zero));
		if (off) {
			ms &= ~0u << off;
			mz &= ~0u << off;
			off = 0;
		}
		/* bit i: byte i is '/' or '.' and byte i-1 is '/' */
		unsigned int hit = ((ms << 1) | carry) & md & 0xffff;
		if (mz)
			return (hit & ((mz & -mz) - 1)) != 0;
		if (hit)
			return 1;
		carry = (ms >> 15) & 1;
		p += 16;
	}
}

int ip_path_needs_norm(const char *path)
{
	const char *p = path;

	for (; *p; p++) {
		if (*p != '/')
			continue;
		if (p[1] == '/' || p[1] == '\0')
			return 1;
		if (p[1] == '.' && (p[2] == '/' || p[2] == '\0' ||
				    (p[2] == '.' && (p[3] == '/' || p[3] == '\0'))))
			return 1;
	}
	return 0;
}

int ip_path_has_dotdot(const char *path)
{
	const char *p = path;

	while (*p) {
		if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == '\0'))
			return 1;
		while (*p && *p != '/')
			p++;
		while (*p == '/')
			p++;
	}
	return 0;
}

int ip_path_map(const char *root, size_t rootlen, const char *vpath, char *out, size_t outsz)
{
	size_t n = strlen(vpath);

	if (rootlen + n + 1 > outsz)
		return -1;
	memmove(out + rootlen, vpath, n + 1); /* vpath may live in out */
	memcpy(out, root, rootlen);
	return (int)(rootlen + n);
}

int ip_path_unmap(const char *root, size_t rootlen, const char (*prefixes)[4096],
		  const size_t *plens, int n, const char *tpath, char *out, size_t outsz)
{
	if (strncmp(tpath, root, rootlen) != 0 || tpath[rootlen] != '/')
		return 0;
	const char *v = tpath + rootlen;
	for (int i = 0; i < n; i++) {
		if (!ip_path_under(v, prefixes[i], plens[i]))
			continue;
		size_t len = strlen(v);
		if (len + 1 > outsz)
			return -1;
		memmove(out, v, len + 1);
		return (int)len;
	}
	return 0;
}

int ip_path_step_number(const char *name, long long *n)
{
	static const char *const forms[] = {"step_", "checkpoint-", "global_step", "iter_"};

	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		size_t fl = strlen(forms[i]);
		if (strncmp(name, forms[i], fl) != 0)
			continue;
		const char *d = name + fl;
		long long v = 0;
		int digits = 0;
		for (; *d >= '0' && *d <= '9'; d++, digits++) {
			if (v > (__LONG_LONG_MAX__ - 9) / 10)
				return 0;
			v = v * 10 + (*d - '0');
		}
		if (digits == 0 || (*d != '\0' && *d != '/'))
			return 0;
		*n = v;
		return 1;
	}
	return 0;
}
