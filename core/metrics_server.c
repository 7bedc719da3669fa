/* The metrics HTTP listener, the loop-lag timer and the process figures.
 * See metrics_server.h. */
#include "metrics_server.h"
#include "log.h"
#include "metrics.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define LAG_TICK_MS 250
#define LAG_WINDOW_TICKS 40 /* 10 s */

struct metrics_server {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    char *address;
    struct event *lag_timer;
    double lag_due; /* monotonic seconds */
    double lag_max_prev, lag_max_cur;
    unsigned lag_ticks;
    struct metrics_series *lag_hist, *lag_max;
    double started; /* unix seconds */
};

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int metrics_parse_address(const char *address, char *host, size_t hostlen, int *port)
{
    const char *h = address, *colon;
    size_t hlen;
    int family = AF_INET;
    if (!address)
        return -1;
    if (*h == '[') {
        const char *close = strchr(h, ']');
        if (!close || close[1] != ':')
            return -1;
        h++;
        hlen = (size_t)(close - h);
        colon = close + 1;
        family = AF_INET6;
    } else {
        colon = strrchr(h, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - h);
    }
    if (hlen == 0 || hlen >= hostlen)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    unsigned char addr[16];
    if (inet_pton(family, host, addr) != 1)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end || p < 1 || p > 65535)
        return -1;
    *port = (int)p;
    return 0;
}

/* ---- HTTP ------------------------------------------------------------------------ */

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    if (!path || strcmp(path, "/metrics") != 0) {
        evhttp_send_error(req, HTTP_NOTFOUND, "Not Found");
        return;
    }
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        evhttp_add_header(headers, "Allow", "GET, HEAD");
        evhttp_send_error(req, HTTP_BADMETHOD, "Method Not Allowed");
        return;
    }
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        evhttp_send_error(req, HTTP_INTERNAL, "Out of memory");
        return;
    }
    metrics_render(body);
    evhttp_add_header(headers, "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
}

/* ---- Loop lag ---------------------------------------------------------------------- */

static void lag_arm(struct metrics_server *s)
{
    struct timeval tv = {0, LAG_TICK_MS * 1000};
    s->lag_due = monotonic_s() + LAG_TICK_MS / 1000.0;
    evtimer_add(s->lag_timer, &tv);
}

static void on_lag_tick(evutil_socket_t fd, short what, void *arg)
{
    struct metrics_server *s = arg;
    (void)fd;
    (void)what;
    double lag = monotonic_s() - s->lag_due;
    if (lag < 0)
        lag = 0;
    metrics_observe(s->lag_hist, lag);
    if (lag > s->lag_max_cur)
        s->lag_max_cur = lag;
    if (++s->lag_ticks >= LAG_WINDOW_TICKS) {
        s->lag_ticks = 0;
        s->lag_max_prev = s->lag_max_cur;
        s->lag_max_cur = 0;
    }
    metrics_set(s->lag_max,
                s->lag_max_cur > s->lag_max_prev ? s->lag_max_cur : s->lag_max_prev);
    lag_arm(s);
}

/* ---- The process ----------------------------------------------------------------------
 */

static double open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    double n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static void collect_process(struct metrics_out *out, void *arg)
{
    struct metrics_server *s = arg;
    struct mallinfo2 mi = mallinfo2();
    metrics_out_family(out, "moonswitch_heap_in_use_bytes",
                       "Bytes of heap allocated and not freed (malloc's count).",
                       METRICS_GAUGE);
    metrics_out_sample(out, "moonswitch_heap_in_use_bytes",
                       (double)mi.uordblks + (double)mi.hblkhd, NULL);
    metrics_out_family(out, "moonswitch_heap_mapped_bytes",
                       "Bytes of heap mapped, freed memory not yet returned included.",
                       METRICS_GAUGE);
    metrics_out_sample(out, "moonswitch_heap_mapped_bytes",
                       (double)mi.arena + (double)mi.hblkhd, NULL);

    long page = sysconf(_SC_PAGESIZE);
    unsigned long vsize = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%lu %lu", &vsize, &rss) != 2)
            vsize = rss = 0;
        fclose(f);
    }
    metrics_out_family(out, "process_resident_memory_bytes",
                       "Resident memory size in bytes.", METRICS_GAUGE);
    metrics_out_sample(out, "process_resident_memory_bytes", (double)rss * (double)page,
                       NULL);
    metrics_out_family(out, "process_virtual_memory_bytes",
                       "Virtual memory size in bytes.", METRICS_GAUGE);
    metrics_out_sample(out, "process_virtual_memory_bytes", (double)vsize * (double)page,
                       NULL);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    metrics_out_family(out, "process_cpu_seconds_total",
                       "User and system CPU time in seconds.", METRICS_COUNTER);
    metrics_out_sample(out, "process_cpu_seconds_total", cpu, NULL);

    metrics_out_family(out, "process_open_fds", "Open file descriptors.", METRICS_GAUGE);
    metrics_out_sample(out, "process_open_fds", open_fds(), NULL);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        metrics_out_family(out, "process_max_fds", "Maximum open file descriptors.",
                           METRICS_GAUGE);
        metrics_out_sample(out, "process_max_fds", (double)rl.rlim_cur, NULL);
    }
    metrics_out_family(out, "process_start_time_seconds",
                       "When the switch started, in unix seconds.", METRICS_GAUGE);
    metrics_out_sample(out, "process_start_time_seconds", s->started, NULL);
}

/* ---- The server
 * ------------------------------------------------------------------------- */

struct metrics_server *metrics_server_create(struct event_base *base)
{
    static const double lag_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,   0.25,   0.5,   1,    2.5};
    struct metrics_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base = base;
    s->started = (double)time(NULL);
    s->lag_timer = evtimer_new(base, on_lag_tick, s);
    s->lag_hist = metrics_series(
        metrics_family("moonswitch_event_loop_lag_seconds",
                       "How late a timer due every 250 ms fires: time the loop spent on "
                       "other work.",
                       METRICS_HISTOGRAM, NULL, lag_bounds,
                       sizeof lag_bounds / sizeof *lag_bounds),
        NULL);
    s->lag_max = metrics_series(
        metrics_family("moonswitch_event_loop_lag_max_seconds",
                       "The largest event loop lag of the last 10 to 20 seconds.",
                       METRICS_GAUGE, NULL, NULL, 0),
        NULL);
    if (!s->lag_timer || !s->lag_hist || !s->lag_max ||
        metrics_collector_add(collect_process, s) < 0) {
        metrics_server_destroy(s);
        return NULL;
    }
    return s;
}

static struct evhttp_bound_socket *bind_address(struct metrics_server *s,
                                                const char *address)
{
    char host[64];
    int port;
    if (metrics_parse_address(address, host, sizeof host, &port) < 0) {
        log_error("metrics", "'%s' is not IP:PORT", address);
        return NULL;
    }
    struct evhttp_bound_socket *b =
        evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port);
    if (!b)
        log_error("metrics", "cannot listen on %s: %s", address,
                  evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    return b;
}

static void unbind(struct metrics_server *s)
{
    if (s->bound)
        evhttp_del_accept_socket(s->http, s->bound);
    s->bound = NULL;
    free(s->address);
    s->address = NULL;
}

int metrics_server_apply(struct metrics_server *s, const char *address)
{
    if (s->address && address && strcmp(s->address, address) == 0)
        return 0;
    if (!address) {
        if (s->address)
            log_info("metrics", "no longer listening on %s", s->address);
        unbind(s);
        evtimer_del(s->lag_timer);
        return 0;
    }
    char *copy = strdup(address);
    if (!copy)
        return -1;
    if (!s->http) {
        if (!(s->http = evhttp_new(s->base))) {
            free(copy);
            return -1;
        }
        evhttp_set_gencb(s->http, on_request, s);
        evhttp_set_timeout(s->http, 10);
        evhttp_set_max_headers_size(s->http, 8192);
        evhttp_set_max_body_size(s->http, 4096);
    }
    struct evhttp_bound_socket *b = bind_address(s, address);
    if (!b && s->bound) {
        /* Same port on another address of ours: free it, then try again; on
         * failure the old address is bound back. */
        char *old = s->address;
        s->address = NULL;
        evhttp_del_accept_socket(s->http, s->bound);
        s->bound = NULL;
        b = bind_address(s, address);
        if (!b) {
            s->bound = bind_address(s, old);
            s->address = s->bound ? old : NULL;
            if (!s->bound)
                free(old);
        } else {
            free(old);
        }
    }
    if (!b) {
        free(copy);
        return -1;
    }
    if (s->bound)
        evhttp_del_accept_socket(s->http, s->bound);
    free(s->address);
    s->bound = b;
    s->address = copy;
    if (!evtimer_pending(s->lag_timer, NULL))
        lag_arm(s);
    log_info("metrics", "listening on http://%s/metrics", address);
    return 0;
}

const char *metrics_server_address(const struct metrics_server *s)
{
    return s ? s->address : NULL;
}

void metrics_server_destroy(struct metrics_server *s)
{
    if (!s)
        return;
    metrics_collector_remove(collect_process, s);
    if (s->http)
        evhttp_free(s->http);
    if (s->lag_timer)
        event_free(s->lag_timer);
    free(s->address);
    free(s);
}
