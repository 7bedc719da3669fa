#include "log.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

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

/* ---- Buffering ------------------------------------------------------------ */

/* Lines of the loop thread collect here while a loop is attached; other
 * threads, and every thread before that, write each line as it comes. */
#define LOG_BUFFER (64 * 1024)
#define LOG_LINE_MAX 2048
#define LOG_FLUSH_MS 5

static char buffer[LOG_BUFFER];
static size_t used;
static bool buffering, flush_armed, hooks_installed;
static pthread_t loop_thread;
static struct event *flush_timer;

/* Sanitizer runtimes call this back before they end the process; absent
 * (NULL) in other builds. */
extern void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

/* write() until done; a non-blocking stderr that is full is waited for,
 * up to a second per chunk. Async-signal-safe. */
static void write_all(const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = STDERR_FILENO, .events = POLLOUT};
            if (poll(&pfd, 1, 1000) <= 0)
                return;
        } else if (!(w < 0 && errno == EINTR)) {
            return;
        }
    }
}

void log_flush(void)
{
    size_t n = used;
    used = 0;
    if (n)
        write_all(buffer, n);
}

static void on_flush_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    flush_armed = false;
    log_flush();
}

/* A fatal signal (outside sanitizer builds): write what is buffered, then
 * die of the signal as if we had not been here. */
static void on_fatal_signal(int sig)
{
    int saved = errno;
    if (used)
        write_all(buffer, used);
    used = 0;
    errno = saved;
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_hooks(void)
{
    if (hooks_installed)
        return;
    hooks_installed = true;
    atexit(log_flush);
    if (__sanitizer_set_death_callback) {
        __sanitizer_set_death_callback(log_flush);
        return;
    }
    static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fatal / sizeof *fatal; i++)
        sigaction(fatal[i], &sa, NULL);
}

int log_attach_loop(struct event_base *base)
{
    log_detach_loop();
    flush_timer = evtimer_new(base, on_flush_timer, NULL);
    if (!flush_timer)
        return -ENOMEM;
    install_hooks();
    loop_thread = pthread_self();
    buffering = true;
    return 0;
}

void log_detach_loop(void)
{
    buffering = false;
    log_flush();
    if (flush_timer)
        event_free(flush_timer);
    flush_timer = NULL;
    flush_armed = false;
}

/* ---- Lines -------------------------------------------------------------------- */

/* "HH:MM:SS" of the current second, rebuilt when the second changes. */
static const char *clock_text(time_t sec)
{
    static __thread time_t cached_sec = -1;
    static __thread char text[16];
    if (sec != cached_sec) {
        struct tm tm;
        localtime_r(&sec, &tm);
        snprintf(text, sizeof text, "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_sec = sec;
    }
    return text;
}

void log_vwrite(enum log_level level, const char *module, const char *fmt, va_list ap)
{
    if (level > current_level)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    bool buffered = buffering && pthread_equal(pthread_self(), loop_thread);
    if (buffered && sizeof buffer - used < LOG_LINE_MAX)
        log_flush();
    /* The line is formatted in place: in the buffer, or on the stack when
     * it goes out at once (one write(), so pipes never see half lines). */
    char local[LOG_LINE_MAX];
    char *line = buffered ? buffer + used : local;
    int n =
        snprintf(line, LOG_LINE_MAX, "%s.%03ld %-5s %-8s ", clock_text(tv.tv_sec),
                 (long)(tv.tv_usec / 1000), level_names[level], module ? module : "-");
    if (n < 0)
        return;
    int m = vsnprintf(line + n, LOG_LINE_MAX - (size_t)n, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > LOG_LINE_MAX - 2)
        len = LOG_LINE_MAX - 2;
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    line[len++] = '\n';
    if (!buffered) {
        write_all(line, len);
        return;
    }
    used += len;
    if (level == LOG_ERROR) {
        log_flush();
    } else if (!flush_armed) {
        struct timeval delay = {0, LOG_FLUSH_MS * 1000};
        flush_armed = evtimer_add(flush_timer, &delay) == 0;
        if (!flush_armed)
            log_flush();
    }
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
