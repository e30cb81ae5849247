/*
 * ip_path.h - pure path rules of the shim: lexical normalisation, prefix matching, mapping a
 * virtual path (under a prefix) to its tier path and back.
 *
 * DESIGN
 * Everything here is a pure function of its arguments: no system call, no allocation, no global
 * state, so it is safe on the hot path, in a vfork child and in unit tests alike.  Buffers are the
 * caller's; a result that does not fit returns -1 (the caller maps that to ENAMETOOLONG).
 */
#ifndef TIERCKPT_IP_PATH_H
#define TIERCKPT_IP_PATH_H

#include <stddef.h>

/*
 * ip_path_normalize - lexically normalise absolute path `in` into `out` (size outsz): "//" is
 * collapsed, "." removed, ".." removes the previous component and is clamped at "/".  A trailing
 * '/' (or a last component "." or "..") is kept as one trailing '/' unless the result is "/",
 * because it changes what the kernel does (open("f/") is ENOTDIR).  Returns the length of the
 * result, or -1 when `in` is not absolute or the result would not fit.
 */
int ip_path_normalize(const char *in, char *out, size_t outsz);

/*
 * ip_path_join - normalise `base` (absolute) + "/" + `rel` into out.  An absolute `rel` ignores
 * base.  Returns the length or -1 as ip_path_normalize.
 */
int ip_path_join(const char *base, const char *rel, char *out, size_t outsz);

/* ip_path_join_watch - ip_path_join that also reports in *entered whether the walk through
 * `rel`'s components passed through one of the n prefixes on the way (base itself counts):
 * "/ckpt/a/../../x" normalises to "/x" but must still be resolved lexically, since the kernel
 * would look it up through the prefix.  base may be NULL for an absolute rel. */
int ip_path_join_watch(const char *base, const char *rel, char *out, size_t outsz,
		       const char (*prefixes)[4096], const size_t *plens, int n, int *entered);

/* ip_path_last_dot - 1 when the last component of `path` (trailing '/' ignored) is ".", 2 when
 * it is "..", else 0: the kernel refuses rmdir, unlink and rename of such names. */
int ip_path_last_dot(const char *path);

/* ip_path_under - 1 when normalised `path` equals `prefix` (length plen, no trailing '/') or lies
 * below it ("/ckpt/x" is under "/ckpt", "/ckpt2" is not); else 0. */
int ip_path_under(const char *path, const char *prefix, size_t plen);

/* ip_path_is_ancestor - 1 when normalised `path` is a proper ancestor of `prefix` ("/" and "/a"
 * are ancestors of "/a/b"); else 0.  A trailing '/' on path is ignored. */
int ip_path_is_ancestor(const char *path, const char *prefix, size_t plen);

/* ip_path_has_slash_pair - 1 when `path` contains "//" or "/." (so a "." or ".." component, or
 * a dot file), else 0.  The hot-path filter: a path without these is already in normal form but
 * for a trailing '/'.  Vectorised; reads only within the aligned 16-byte blocks of the string. */
int ip_path_has_slash_pair(const char *path);

/* ip_path_needs_norm - 1 when `path` contains "//", a "." or ".." component, or ends in '/',
 * i.e. when its text may differ from its normalised form; else 0.  Cheap: one pass, no writes. */
int ip_path_needs_norm(const char *path);

/* ip_path_has_dotdot - 1 when some component of `path` is exactly ".."; else 0. */
int ip_path_has_dotdot(const char *path);

/*
 * ip_path_map - tier path of a normalised virtual path: `root` (the tier's mirror root, no
 * trailing '/') followed by `vpath`.  Returns the length or -1 when it does not fit.
 */
int ip_path_map(const char *root, size_t rootlen, const char *vpath, char *out, size_t outsz);

/*
 * ip_path_unmap - if `tpath` lies under root + one of the prefixes, write the virtual path (tpath
 * without root) into out and return its length; return 0 when tpath is not a tier path of a
 * prefix (out untouched) and -1 when it does not fit.  out may equal tpath (in-place shortening).
 */
int ip_path_unmap(const char *root, size_t rootlen, const char (*prefixes)[4096],
		  const size_t *plens, int n, const char *tpath, char *out, size_t outsz);

/* ip_path_step_number - if `name` (one path component, NUL- or '/'-terminated) is a step
 * directory name (step_<N>, checkpoint-<N>, global_step<N>, iter_<N>; N decimal digits), store N
 * and return 1; else 0. */
int ip_path_step_number(const char *name, long long *n);

#endif
