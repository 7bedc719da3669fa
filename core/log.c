#include "log.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <time.h>

#include <event2/event.h>
#include <sofia-sip/su_log.h>

static enum log_level current_level = LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, level_names[i]) == 0)
            return i;
    return -1;
}

void log_set_level(enum log_level level)
{
    current_level = level;
}

enum log_level log_get_level(void)
{
    return current_level;
}

void log_vwrite(enum log_level level, const char *module, const char *fmt, va_list ap)
{
    if (level > current_level)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    localtime_r(&tv.tv_sec, &tm);
    /* One fprintf-sized buffer so concurrent writers (there are none today)
     * and pipes never see half lines. */
    char line[2048];
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %-5s %-8s ", tm.tm_hour,
                     tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000), level_names[level],
                     module ? module : "-");
    if (n < 0)
        return;
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
}

void log_write(enum log_level level, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, module, fmt, ap);
    va_end(ap);
}

/* ---- Rate-limited lines ---------------------------------------------------- */

static struct log_limit *limits; /* chain of every limit used */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double limit_interval(const struct log_limit *lim)
{
    return lim->interval > 0 ? lim->interval : LOG_LIMIT_INTERVAL;
}

static void limit_write_count(struct log_limit *lim)
{
    log_write(lim->level, lim->module, "%lu more like this in the last %g s: %s",
              lim->suppressed, limit_interval(lim), lim->last);
    lim->suppressed = 0;
}

int log_limited(struct log_limit *lim, enum log_level level, const char *module,
                const char *fmt, ...)
{
    if (level > current_level)
        return 0;
    if (!lim->registered) {
        lim->registered = 1;
        lim->chain = limits;
        limits = lim;
    }
    double now = mono_now();
    if (now < lim->next) {
        lim->suppressed++;
        return 0;
    }
    if (lim->suppressed)
        limit_write_count(lim);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(lim->last, sizeof lim->last, fmt, ap);
    va_end(ap);
    lim->level = level;
    lim->module = module;
    lim->next = now + limit_interval(lim);
    log_write(level, module, "%s", lim->last);
    return 1;
}

void log_limits_flush(void)
{
    double now = 0;
    for (struct log_limit *lim = limits; lim; lim = lim->chain) {
        if (!lim->suppressed)
            continue;
        if (now == 0)
            now = mono_now();
        if (now < lim->next)
            continue;
        limit_write_count(lim);
        lim->next = now + limit_interval(lim);
    }
}

/* sofia's ICMP reports (an unreachable port answered a datagram of ours):
 * one line and a "reported by" line per error, as many as we send. */
static struct log_limit icmp_limit;

/* sofia's levels: 0 fatal .. 3 errors/warnings .. 5 info .. 9 debug.
 * sofia calls the logger with fragments of lines; we collect them until a
 * newline so each sofia message stays one line of ours. */
static void sofia_logger(void *stream, char const *fmt, va_list ap)
{
    static char pending[2048];
    static size_t used;
    (void)stream;
    int n = vsnprintf(pending + used, sizeof pending - used, fmt, ap);
    if (n < 0)
        return;
    used += (size_t)n;
    if (used >= sizeof pending - 1)
        used = sizeof pending - 1;
    if (used == 0 || (pending[used - 1] != '\n' && used < sizeof pending - 1))
        return;
    pending[used] = '\0';
    /* The level of the fragment is not passed to the redirect; sofia only
     * emits what its own level allows, which we set from ours. */
    enum log_level lvl = LOG_DEBUG;
    if (strstr(pending, "error") || strstr(pending, "ERROR"))
        lvl = LOG_WARN;
    static int icmp_suppressed; /* the last ICMP line was only counted */
    if (strncmp(pending, "tport_udp_error", 15) == 0)
        icmp_suppressed = !log_limited(&icmp_limit, lvl, "sofia", "%s", pending);
    else if (strncmp(pending, "\treported by", 12) == 0 && icmp_suppressed)
        ; /* belongs to a line that was counted */
    else
        log_write(lvl, "sofia", "%s", pending);
    used = 0;
}

extern su_log_t tport_log[];
extern su_log_t nta_log[];
extern su_log_t su_log_default[];

/* libevent's own warnings (a bad descriptor, a reentrant loop) would go
 * to stderr unformatted and unleveled; here they are ours. */
static void libevent_logger(int severity, const char *msg)
{
    enum log_level lvl = severity >= EVENT_LOG_ERR    ? LOG_ERROR
                         : severity == EVENT_LOG_WARN ? LOG_WARN
                         : severity == EVENT_LOG_MSG  ? LOG_INFO
                                                      : LOG_DEBUG;
    log_write(lvl, "libevent", "%s", msg);
}

void log_attach_libraries(void)
{
    event_set_log_callback(libevent_logger);
    /* error -> 1, warn -> 3, info -> 3, debug -> 5 on sofia's scale. */
    static const unsigned sofia_level[] = {1, 3, 3, 5};
    unsigned lvl = sofia_level[current_level];
    su_log_redirect(su_log_default, sofia_logger, NULL);
    su_log_redirect(tport_log, sofia_logger, NULL);
    su_log_redirect(nta_log, sofia_logger, NULL);
    su_log_set_level(su_log_default, lvl);
    su_log_set_level(tport_log, lvl);
    su_log_set_level(nta_log, lvl);
}
