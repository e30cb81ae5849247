/*
 * libc_paths.c - calls glibc's path-taking and path-returning entry points directly (those that
 * Python or coreutils do not reach: realpath, canonicalize_file_name, get_current_dir_name,
 * getwd, nftw, ftw, glob, scandir, mkstemp/mkostemp/mkstemps/mkdtemp, fopen/freopen, creat,
 * euidaccess, statfs/statvfs, pathconf, utimes/lutimes/futimesat, mkfifo/mknod, truncate, remove,
 * *xattr) on paths under argv[1] (the prefix) and prints results and errno names, so that a run
 * under the shim can be compared with a run on a real tmpfs.  Built twice by the test: plain and
 * with -O2 -D_FORTIFY_SOURCE=2 (which routes some calls through __open_2, __realpath_chk,
 * __getcwd_chk ...).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/xattr.h>
#include <unistd.h>

static char P[PATH_MAX];

static const char *ename(int e) {
	const char *n = strerrorname_np(e);
	return n ? n : "E?";
}

/* path relative to the prefix for shorter outputs; "P" for the prefix itself */
static const char *vrel(const char *p) {
	size_t n = strlen(P);
	if (strncmp(p, P, n) == 0 && (p[n] == '/' || p[n] == 0)) return p[n] ? p + n + 1 : "P";
	return p;
}

#define RC(label, call) do { errno = 0; int r_ = (call); \
	printf("%s: %s\n", label, r_ < 0 ? ename(errno) : "OK"); } while (0)

static char *path(const char *rel) {
	static char buf[8][PATH_MAX];
	static int i;
	char *b = buf[i++ % 8];
	snprintf(b, PATH_MAX, "%s/%s", P, rel);
	return b;
}

static int nftw_cb(const char *fpath, const struct stat *sb, int type, struct FTW *ftwbuf) {
	printf("nftw %s type=%d level=%d base=%s size=%lld\n", vrel(fpath), type, ftwbuf->level,
	       fpath + ftwbuf->base, S_ISREG(sb->st_mode) ? (long long)sb->st_size : -1LL);
	return 0;
}

static int ftw_cb(const char *fpath, const struct stat *sb, int type) {
	(void)sb;
	printf("ftw %s type=%d\n", vrel(fpath), type);
	return 0;
}

static int cmpstr(const void *a, const void *b) {
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
	if (argc < 2) return 2;
	snprintf(P, sizeof P, "%s", argv[1]);
	char buf[PATH_MAX];

	RC("mkdir d", mkdir(path("d"), 0755));
	RC("mkdir d/e", mkdir(path("d/e"), 0750));
	FILE *f = fopen(path("d/f.txt"), "w");
	printf("fopen w: %s\n", f ? "OK" : ename(errno));
	if (f) { fputs("hello from stdio\n", f); fclose(f); }
	f = fopen(path("d/f.txt"), "a+");
	if (f) { fputs("more\n", f); fseek(f, 0, SEEK_SET); fgets(buf, sizeof buf, f); printf("a+ read: %s", buf); }
	f = freopen(path("d/e/re.txt"), "w", f);
	printf("freopen: %s\n", f ? "OK" : ename(errno));
	if (f) { fputs("reopened", f); fclose(f); }
	errno = 0;
	printf("fopen missing: %s\n", fopen(path("nope/x"), "r") ? "OK" : ename(errno));
	printf("fopen dir for w: %s\n", fopen(path("d"), "w") ? "OK" : ename(errno));
	int fd = creat(path("d/creat"), 0600);
	printf("creat: %s\n", fd >= 0 ? "OK" : ename(errno));
	if (fd >= 0) { (void)!write(fd, "12345", 5); close(fd); }
	fd = open(path("d/open"), O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd >= 0) { (void)!write(fd, "abc", 3); close(fd); }
	int flags = O_RDONLY;
	fd = open(path("d/open"), flags);
	printf("open var flags: %s\n", fd >= 0 ? "OK" : ename(errno));
	if (fd >= 0) close(fd);
	int dfd = open(path("d"), O_RDONLY | O_DIRECTORY);
	fd = openat(dfd, "at", O_CREAT | O_WRONLY, 0640);
	printf("openat: %s\n", fd >= 0 ? "OK" : ename(errno));
	if (fd >= 0) close(fd);
	RC("faccessat", faccessat(dfd, "at", R_OK, 0));
	RC("fchmodat", fchmodat(dfd, "at", 0604, 0));
	RC("mkdirat", mkdirat(dfd, "sub", 0700));
	RC("renameat", renameat(dfd, "at", dfd, "sub/at2"));
	RC("linkat", linkat(dfd, "sub/at2", dfd, "at_link", 0));
	RC("symlinkat", symlinkat("sub/at2", dfd, "at_sym"));
	ssize_t n = readlinkat(dfd, "at_sym", buf, sizeof buf - 1);
	printf("readlinkat: %.*s\n", n > 0 ? (int)n : 0, buf);
	RC("unlinkat", unlinkat(dfd, "at_link", 0));
	RC("unlinkat dir non-empty", unlinkat(dfd, "sub", AT_REMOVEDIR));
	struct stat st;
	RC("fstatat", fstatat(dfd, "sub/at2", &st, 0));
	printf("fstatat mode %o\n", st.st_mode & 07777);
	close(dfd);

	RC("access", access(path("d/f.txt"), W_OK));
	RC("euidaccess", euidaccess(path("d/f.txt"), R_OK));
	RC("access missing", access(path("nope"), F_OK));
	RC("truncate", truncate(path("d/creat"), 2));
	RC("stat", stat(path("d/creat"), &st));
	printf("size after truncate %lld\n", (long long)st.st_size);
	RC("lstat", lstat(path("d/at_sym"), &st));
	printf("lstat symlink size %lld\n", (long long)st.st_size);
	RC("chmod", chmod(path("d/creat"), 0640));
	RC("chown", chown(path("d/creat"), 1000, 1000));
	RC("lchown", lchown(path("d/at_sym"), 1001, 1001));
	struct timeval tv[2] = {{100, 0}, {200, 0}};
	RC("utimes", utimes(path("d/creat"), tv));
	RC("lutimes", lutimes(path("d/at_sym"), tv));
	RC("futimesat", futimesat(AT_FDCWD, path("d/open"), tv));
	RC("stat after utimes", stat(path("d/creat"), &st));
	printf("mtime %lld uid %u mode %o\n", (long long)st.st_mtime, st.st_uid, st.st_mode & 07777);
	RC("mkfifo", mkfifo(path("d/fifo"), 0600));
	RC("mknod regular", mknod(path("d/node"), S_IFREG | 0600, 0));
	RC("link", link(path("d/open"), path("d/open.hard")));
	RC("symlink", symlink("open", path("d/open.sym")));
	n = readlink(path("d/open.sym"), buf, sizeof buf - 1);
	printf("readlink: %.*s\n", n > 0 ? (int)n : 0, buf);
	RC("rename", rename(path("d/open.hard"), path("d/open.renamed")));
	RC("renameat2 noreplace", renameat2(AT_FDCWD, path("d/open.renamed"), AT_FDCWD, path("d/open"), RENAME_NOREPLACE));
	RC("renameat2 exchange", renameat2(AT_FDCWD, path("d/open.renamed"), AT_FDCWD, path("d/creat"), RENAME_EXCHANGE));
	RC("remove file", remove(path("d/node")));
	RC("remove empty dir", remove(path("d/sub/../sub2") ) );
	RC("setxattr", setxattr(path("d/open"), "user.k", "v", 1, 0));
	n = getxattr(path("d/open"), "user.k", buf, sizeof buf);
	printf("getxattr: %zd\n", n);
	n = listxattr(path("d/open"), buf, sizeof buf);
	printf("listxattr: %zd\n", n);
	RC("lsetxattr on symlink (user.* not allowed)", lsetxattr(path("d/open.sym"), "user.k", "v", 1, 0));

	struct statfs sfs;
	RC("statfs", statfs(P, &sfs));
	printf("statfs type %lx\n", (unsigned long)sfs.f_type);
	struct statvfs svfs;
	RC("statvfs", statvfs(path("d"), &svfs));
	printf("statvfs namemax %lu\n", (unsigned long)svfs.f_namemax);
	printf("pathconf NAME_MAX %ld\n", pathconf(path("d"), _PC_NAME_MAX));

	char *rp = realpath(path("d/e/../open.sym"), buf);
	printf("realpath: %s\n", rp ? vrel(rp) : ename(errno));
	rp = realpath(path("d/missing"), NULL);
	printf("realpath missing: %s\n", rp ? vrel(rp) : ename(errno));
	rp = canonicalize_file_name(path("d/./e"));
	printf("canonicalize_file_name: %s\n", rp ? vrel(rp) : ename(errno));
	free(rp);

	RC("chdir", chdir(path("d/e")));
	printf("getcwd: %s\n", getcwd(buf, sizeof buf) ? vrel(buf) : ename(errno));
	char small[8];
	printf("getcwd small buffer: %s\n", getcwd(small, sizeof small) ? "OK" : ename(errno));
	char *cd = get_current_dir_name();
	printf("get_current_dir_name: %s\n", cd ? vrel(cd) : ename(errno));
	free(cd);
	setenv("PWD", "/somewhere/else", 1);
	cd = get_current_dir_name();
	printf("get_current_dir_name with stale PWD: %s\n", cd ? vrel(cd) : ename(errno));
	free(cd);
	f = fopen("rel.txt", "w");
	printf("relative fopen: %s\n", f ? "OK" : ename(errno));
	if (f) fclose(f);
	RC("chdir ..", chdir(".."));
	printf("getcwd after ..: %s\n", getcwd(buf, sizeof buf) ? vrel(buf) : ename(errno));
	int cwdfd = open(".", O_RDONLY | O_DIRECTORY);
	RC("chdir /", chdir("/"));
	RC("fchdir", fchdir(cwdfd));
	close(cwdfd);
	printf("getcwd after fchdir: %s\n", getcwd(buf, sizeof buf) ? vrel(buf) : ename(errno));
	RC("chdir prefix", chdir(P));
	printf("getcwd at prefix: %s\n", getcwd(buf, sizeof buf) ? vrel(buf) : ename(errno));
	RC("chdir prefix/..", chdir(".."));
	printf("getcwd above: %s\n", strcmp(getcwd(buf, sizeof buf), P) ? "not the prefix" : "prefix");

	char tmpl[PATH_MAX];
	snprintf(tmpl, sizeof tmpl, "%s/tmpXXXXXX", P);
	fd = mkstemp(tmpl);
	printf("mkstemp: %s %s %s\n", fd >= 0 ? "OK" : ename(errno),
	       strncmp(tmpl, P, strlen(P)) == 0 ? "virtual" : tmpl, strlen(tmpl) == strlen(P) + 10 ? "len-ok" : "len-bad");
	if (fd >= 0) { close(fd); unlink(tmpl); }
	snprintf(tmpl, sizeof tmpl, "%s/tmpXXXXXX.sfx", P);
	fd = mkstemps(tmpl, 4);
	printf("mkstemps: %s %s\n", fd >= 0 ? "OK" : ename(errno), strncmp(tmpl, P, strlen(P)) == 0 ? "virtual" : tmpl);
	if (fd >= 0) { close(fd); unlink(tmpl); }
	snprintf(tmpl, sizeof tmpl, "%s/tmpXXXXXX", P);
	fd = mkostemp(tmpl, O_CLOEXEC);
	printf("mkostemp: %s %s\n", fd >= 0 ? "OK" : ename(errno), strncmp(tmpl, P, strlen(P)) == 0 ? "virtual" : tmpl);
	if (fd >= 0) { close(fd); unlink(tmpl); }
	snprintf(tmpl, sizeof tmpl, "%s/dirXXXXXX", P);
	char *dt = mkdtemp(tmpl);
	printf("mkdtemp: %s\n", dt ? (strncmp(dt, P, strlen(P)) == 0 ? "virtual" : dt) : ename(errno));
	if (dt) rmdir(dt);
	snprintf(tmpl, sizeof tmpl, "%s/nodir/tmpXXXXXX", P);
	printf("mkstemp in missing dir: %s\n", mkstemp(tmpl) >= 0 ? "OK" : ename(errno));

	RC("nftw", nftw(P, nftw_cb, 8, FTW_PHYS));
	RC("ftw", ftw(path("d/e"), ftw_cb, 8));
	glob_t g;
	snprintf(buf, sizeof buf, "%s/d/*", P);
	int gr = glob(buf, GLOB_MARK, NULL, &g);
	printf("glob rc=%d n=%zu\n", gr, gr ? 0 : g.gl_pathc);
	for (size_t i = 0; !gr && i < g.gl_pathc; i++) printf("glob %s\n", vrel(g.gl_pathv[i]));
	if (!gr) globfree(&g);
	struct dirent **nl;
	int nn = scandir(path("d"), &nl, NULL, alphasort);
	printf("scandir n=%d\n", nn);
	for (int i = 0; i < nn; i++) { printf("scandir %s\n", nl[i]->d_name); free(nl[i]); }
	if (nn >= 0) free(nl);
	DIR *dir = opendir(path("d/e"));
	printf("opendir: %s\n", dir ? "OK" : ename(errno));
	if (dir) {
		char *names[64]; int k = 0; struct dirent *de;
		while ((de = readdir(dir)) && k < 64) names[k++] = strdup(de->d_name);
		qsort(names, k, sizeof *names, cmpstr);
		for (int i = 0; i < k; i++) { printf("readdir %s\n", names[i]); free(names[i]); }
		closedir(dir);
	}
	errno = 0;
	printf("opendir missing: %s\n", opendir(path("nope")) ? "OK" : ename(errno));
	RC("rmdir non-empty", rmdir(path("d")));
	RC("unlink", unlink(path("d/open.sym")));
	return 0;
}
