/* The switch's log: one line per event on stderr, with a level.
 *
 * Every module logs through here, and so do sofia-sip and libevent
 * (log_attach_libraries() redirects their logs into it), so an operator
 * reads one stream.
 *
 * Cost: a line is formatted in place (snprintf; the clock text is rebuilt
 * once a second). Once log_attach_loop() has run, the loop thread's lines
 * go into a 64 KiB buffer, written with one write() when it is nearly full,
 * 5 ms after the first line not yet written (a timer on the loop), at
 * once for an error line, at exit (atexit), and when the process dies of
 * SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT or a sanitizer report. So a busy
 * loop turn's lines cost one system call, and a reader of the log sees a
 * line at most a few milliseconds late. A SIGKILL loses at most those few
 * milliseconds of lines. Other threads, and every line before the loop is
 * attached, are written at once, one write() per line. */
#ifndef MOON_LOG_H
#define MOON_LOG_H

#include <stdarg.h>

struct event_base;

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Parse "error", "warn", "info" or "debug". Returns -1 for anything else. */
int log_level_parse(const char *name);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

void log_write(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vwrite(enum log_level level, const char *module, const char *fmt, va_list ap);

/* Buffer the loop thread's lines on `base` (see above). Call from the
 * thread that runs the loop. Returns 0 or -ENOMEM (lines then keep going
 * out one by one). */
int log_attach_loop(struct event_base *base);

/* Write what is buffered and go back to one write() per line; frees the
 * flush timer, so call it before freeing the loop's event_base. */
void log_detach_loop(void);

/* Write what is buffered now. Async-signal-safe. */
void log_flush(void);

/* Route sofia-sip's su_log, tport_log and nta_log into this log, at levels
 * mapped from sofia's 0..9 scale, and libevent's warnings too. Call once at
 * start-up. */
void log_attach_libraries(void);

/* A warning that can repeat many times a second (ICMP errors, bans,
 * refused connections): the first occurrence is logged at once, later ones
 * within `interval` seconds are only counted, and the count is logged with
 * the next line let through or by log_limits_flush(). Declare one per kind
 * of message, static and zero-initialised (interval 0 means
 * LOG_LIMIT_INTERVAL). A suppressed call costs a clock read and an
 * increment: the message is not formatted. Not thread-safe (one loop). */
#define LOG_LIMIT_INTERVAL 5.0
struct log_limit {
    double interval;         /* seconds; 0: LOG_LIMIT_INTERVAL */
    double next;             /* monotonic seconds when a line may go again */
    unsigned long suppressed; /* occurrences counted since the last line */
    enum log_level level;
    const char *module;
    char last[160];           /* the last line let through, for the count */
    struct log_limit *chain;  /* every limit used so far, for the flush */
    int registered;
};

/* Log through `lim`. Returns 1 when the line was written, 0 when it was
 * only counted (or the level hides it). */
int log_limited(struct log_limit *lim, enum log_level level, const char *module,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Write the pending counts of every limit whose interval is over ("N more
 * like: ..."). Cheap when nothing is pending; call it every few seconds. */
void log_limits_flush(void);

#define log_enabled(level) ((level) <= log_get_level())
#define log_error(mod, ...) log_write(LOG_ERROR, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_write(LOG_WARN, mod, __VA_ARGS__)
#define log_info(mod, ...)                                                            \
    do {                                                                              \
        if (log_enabled(LOG_INFO))                                                    \
            log_write(LOG_INFO, mod, __VA_ARGS__);                                    \
    } while (0)
#define log_debug(mod, ...)                                                           \
    do {                                                                              \
        if (log_enabled(LOG_DEBUG))                                                   \
            log_write(LOG_DEBUG, mod, __VA_ARGS__);                                   \
    } while (0)

#endif
