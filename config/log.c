/*
 * log.c - tierckpt's log (see log.h): one line per event,
 *   2026-11-27T14:30:00.123Z WARN tierckpt[1234] rank=0 ns=default: message
 *
 * DESIGN
 * log_msg() runs inside interposed libc calls, on any thread, possibly while the host holds its
 * own locks, so it must not allocate, lock, use stdio or touch the time-zone machinery:
 * the line is formatted into a stack buffer (the UTC timestamp is computed by hand from
 * clock_gettime, because gmtime_r may take glibc's tz lock and load zone files on first use),
 * control characters in the message are blanked so one event is one line, and the line goes out
 * with a single write(2).  On an O_APPEND file or a pipe a write of at most LOG_LINE_MAX bytes is
 * not interleaved with other writers', so no lock is needed.  errno is saved and restored, so a
 * wrapper can log between the libc call and its return without disturbing what the host sees.
 *
 * State set by log_init() (level, fd, tags) is read with relaxed atomics; log_init() runs
 * at start-up or in a freshly forked child, while the process is effectively single-threaded.
 * The log file's descriptor is moved to 3 or above so it never occupies the host's 0/1/2.
 */
#include "config/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_level = LOG_WARN;  /* enum log_level; relaxed atomic */
static int g_fd = STDERR_FILENO; /* where lines go; relaxed atomic */
static int g_fd_owned;          /* 1 when g_fd is a log file we opened (log_init only) */
static char g_rank[16] = "-";   /* "-" or the decimal RANK */
static char g_ns[CFG_NAMESPACE_MAX + 1] = "-";

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

/* ASCII-only case-insensitive equality (strcasecmp depends on the locale).  Returns 1 if equal. */
static int ascii_ieq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++) {
		char x = *a, y = *b;
		if (x >= 'A' && x <= 'Z')
			x = (char)(x - 'A' + 'a');
		if (y >= 'A' && y <= 'Z')
			y = (char)(y - 'A' + 'a');
		if (x != y)
			return 0;
	}
	return *a == *b;
}

/* log_level_parse - see log.h: the enum log_level, or -1.  Any thread. */
int log_level_parse(const char *s)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	if (!s)
		return -1;
	for (int i = 0; i < 4; i++)
		if (ascii_ieq(s, names[i]))
			return i;
	return -1;
}

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's civil_from_days).  Pure:
 * any thread. */
static void civil_from_days(long long z, long long *y, unsigned *m, unsigned *d)
{
	z += 719468;
	long long era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;

	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (long long)yoe + era * 400 + (*m <= 2);
}

/*
 * log_emit - formats and writes one line regardless of the level.  Returns nothing; errno is
 * the caller's business (log_msg saves it).  Any thread; no allocation, no lock.
 */
static void log_emit(int level, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	struct timespec ts;
	long long y, secs, days;
	unsigned mo, d;
	int n, m, fd;
	size_t len;

	if (clock_gettime(CLOCK_REALTIME, &ts))
		ts.tv_sec = 0, ts.tv_nsec = 0;
	secs = (long long)ts.tv_sec;
	days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
	secs -= days * 86400;
	civil_from_days(days, &y, &mo, &d);

	n = snprintf(line, sizeof(line), "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ %s tierckpt[%d] "
		     "rank=%s ns=%s: ",
		     y, mo, d, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60),
		     (int)(ts.tv_nsec / 1000000), level_names[level], (int)getpid(), g_rank,
		     g_ns);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	if (m < 0)
		m = 0;
	len = (size_t)n + (size_t)m;
	if (len > sizeof(line) - 1) {
		len = sizeof(line) - 1; /* the newline takes the last byte */
		memcpy(line + len - 3, "...", 3);
	}
	/* One event, one line: a newline or other control byte in the message becomes a blank. */
	for (size_t i = (size_t)n; i < len; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = ' ';
	line[len++] = '\n';

	fd = __atomic_load_n(&g_fd, __ATOMIC_RELAXED);
	while (write(fd, line, len) < 0 && errno == EINTR)
		;
}

/* Calls log_emit with a variable argument list.  Any thread. */
static void log_emit_f(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_emit_f(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(level, fmt, ap);
	va_end(ap);
}

/* log_msg - see log.h.  Returns nothing and leaves errno as it found it.  Any thread. */
void log_msg(int level, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	if (level < LOG_ERROR || level > LOG_DEBUG ||
	    level > __atomic_load_n(&g_level, __ATOMIC_RELAXED))
		return;
	va_start(ap, fmt);
	log_emit(level, fmt, ap);
	va_end(ap);
	errno = saved;
}

/*
 * Opens the log file, moved to a descriptor >= 3.  Returns the fd, or -1 with errno set.
 * Called by log_init only.
 */
static int log_open(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

	if (fd >= 0 && fd <= STDERR_FILENO) {
		int hi = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
		int e = errno;
		close(fd);
		errno = e;
		fd = hi;
	}
	return fd;
}

/* log_init - see log.h.  Returns nothing; errno is preserved.  Start-up or a fresh fork child
 * (effectively single-threaded), with the shim's re-entry guard held.  c may be NULL: defaults. */
void log_init(const struct cfg *c)
{
	int saved = errno;
	int level = c ? c->log_level : LOG_WARN;
	int old = g_fd, old_owned = g_fd_owned, fd = STDERR_FILENO, open_errno = 0;

	if (level < LOG_ERROR || level > LOG_DEBUG)
		level = LOG_WARN;
	__atomic_store_n(&g_level, level, __ATOMIC_RELAXED);

	if (c && c->rank >= 0)
		snprintf(g_rank, sizeof(g_rank), "%d", c->rank);
	else
		strcpy(g_rank, "-");
	if (c && c->namespace_[0])
		snprintf(g_ns, sizeof(g_ns), "%s", c->namespace_);
	else
		strcpy(g_ns, "-");

	if (c && c->log_file[0]) {
		fd = log_open(c->log_file);
		if (fd < 0) {
			open_errno = errno;
			fd = STDERR_FILENO;
		}
	}
	if (old_owned && fd != STDERR_FILENO) {
		/* Keep the descriptor number: a thread still holding the old number writes to
		 * the new file instead of to whatever the number might be reused for. */
		if (dup3(fd, old, O_CLOEXEC) >= 0) {
			close(fd);
			fd = old;
			old_owned = 0;
		}
	}
	__atomic_store_n(&g_fd, fd, __ATOMIC_RELAXED);
	g_fd_owned = fd != STDERR_FILENO;
	if (old_owned && old != fd)
		close(old);

	if (open_errno) {
		const char *e = strerrordesc_np(open_errno);
		/* Said whatever the level: the user asked for a file and is not getting it. */
		log_emit_f(LOG_WARN, "TIERCKPT_LOG_FILE=\"%s\": cannot open: %s; logging to stderr",
			   c->log_file, e ? e : "unknown error");
	}
	errno = saved;
}
