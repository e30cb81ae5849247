/*
 * log.h - tierckpt's log: one line per event, "<time> <LEVEL> tierckpt[pid] rank=R ns=NS: msg".
 *
 * DESIGN
 * Logging must be safe from inside interposed libc calls: it formats into a stack buffer and
 * emits the line with one write(2) on a descriptor opened once (TIERCKPT_LOG_FILE, O_APPEND|
 * O_CLOEXEC) or on stderr.  No allocation, no stdio, no lock: concurrent lines never interleave
 * because each is a single write of at most LOG_LINE_MAX bytes.  log_once() keeps a small set of
 * message keys so a repeated failure is reported once per process.
 */
#ifndef TIERCKPT_LOG_H
#define TIERCKPT_LOG_H

#include "cfg.h"

#define LOG_LINE_MAX 2048

/* log_init - set level, destination and the rank/namespace tags from a loaded config.  May be
 * called again (after fork or exec re-init).  Opening the log file may fail: then stderr is used
 * and one warning says why.  Call with the shim's re-entry guard held. */
void log_init(const struct cfg *c);

/* log_msg - format and emit one line if level <= the configured level.  Any thread. */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* log_level_parse - "error"|"warn"|"info"|"debug" (case-insensitive) to enum log_level; -1 if
 * none of these. */
int log_level_parse(const char *s);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
