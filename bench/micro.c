/* bench-micro: what a log line and a call's metrics cost.
 *
 *   cmake --build build --target bench-micro && build/bench-micro [lines]
 *
 * Log: the same info line (a call's end, CDR-sized) written N times with
 * stderr sent to /dev/null, to a file and to a pipe that `cat` drains, one
 * write() per line (no loop attached: how the log wrote before buffering)
 * and buffered (attached; the loop does not run, so the buffer goes out
 * when nearly full, as under load); and at --log-level warn, where the line
 * is filtered. Metrics: a call's begin, attempt, progress, answered (3 in
 * 8) and end over 50
 * mapping x 20 routing gateways, and one scrape of what that left. Times
 * are wall-clock nanoseconds per operation, the best of three runs. */
#include "cdr.h"
#include "log.h"
#include "metrics.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static bool cdr_bench;

static void log_lines(long n)
{
    static const struct cdr c = {
        .call_id = "a84b4c76e66710@pc33.example.com",
        .caller = "4420123456",
        .callee = "0044207946000",
        .original_callee = "0044207946000",
        .routed_callee = "44207946000",
        .mapping_gateway = "cust-a",
        .routing_gateway = "carrier-b",
        .start = 1796393571,
        .answer = 1796393573,
        .stop = 1796393631,
        .duration = 58,
        .status = 200,
        .reason = "OK",
        .hangup = "caller",
    };
    if (cdr_bench) {
        for (long i = 0; i < n; i++)
            cdr_log(&c, (uint64_t)i);
        return;
    }
    for (long i = 0; i < n; i++)
        log_info(
            "call",
            "%ld ended: caller=4420123456 callee=0044207946000 routed=0044207946000 "
            "mapping=cust-a routing=carrier-b status=200 reason=\"OK\" hangup=caller "
            "start=1796393571 answer=1796393573 stop=1796393631 duration=58",
            i);
}

/* ns per line, best of three, with stderr on `fd`. */
static double time_log(int fd, long n, struct event_base *base)
{
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    if (base)
        log_attach_loop(base);
    double best = 1e18;
    for (int round = 0; round < 3; round++) {
        double t0 = now_ns();
        log_lines(n);
        log_flush();
        double dt = (now_ns() - t0) / (double)n;
        if (dt < best)
            best = dt;
    }
    if (base)
        log_detach_loop();
    dup2(saved, STDERR_FILENO);
    close(saved);
    return best;
}

static void bench_log(long n)
{
    struct event_base *base = event_base_new();
    char path[] = "/tmp/moon-bench-log-XXXXXX";
    int file = mkstemp(path);
    int null = open("/dev/null", O_WRONLY);
    FILE *cat = popen("cat > /dev/null", "w");
    int pipe_fd = fileno(cat);
    struct {
        const char *name;
        int fd;
    } sinks[] = {{"/dev/null", null}, {"file", file}, {"pipe to cat", pipe_fd}};
    printf("log line (%ld lines per run)   write() per line   buffered   saved\n", n);
    for (size_t i = 0; i < sizeof sinks / sizeof *sinks; i++) {
        log_set_level(LOG_INFO);
        double direct = time_log(sinks[i].fd, n, NULL);
        double buffered = time_log(sinks[i].fd, n, base);
        printf("  %-28s %12.0f ns   %8.0f ns   %4.0f%%\n", sinks[i].name, direct,
               buffered, 100.0 * (direct - buffered) / direct);
    }
    cdr_bench = true;
    printf("  %-28s %12.0f ns   %8.0f ns\n", "cdr_log(), /dev/null",
           time_log(null, n, NULL), time_log(null, n, base));
    log_set_level(LOG_WARN);
    printf("  %-28s %12.1f ns\n", "cdr_log() at warn", time_log(null, n, base));
    cdr_bench = false;
    printf("  %-28s %12.1f ns\n", "filtered (--log-level warn)", time_log(null, n, base));
    log_set_level(LOG_INFO);
    pclose(cat);
    close(null);
    close(file);
    unlink(path);
    event_base_free(base);
}

static void bench_metrics(long n)
{
    enum { MGW = 50, RGW = 20 };
    struct metrics_gateway *m[MGW], *r[RGW];
    char name[32];
    for (int i = 0; i < MGW; i++) {
        snprintf(name, sizeof name, "customer-%d", i);
        m[i] = metrics_mapping_gateway(name);
    }
    for (int i = 0; i < RGW; i++) {
        snprintf(name, sizeof name, "carrier-%d", i);
        r[i] = metrics_routing_gateway(name);
    }
    static const int statuses[] = {200, 200, 200, 486, 487, 404, 503, 480};
    double best = 1e18;
    for (int round = 0; round < 3; round++) {
        double t0 = now_ns();
        for (long i = 0; i < n; i++) {
            struct metrics_call mc = {0};
            metrics_call_begin(&mc, m[i % MGW]);
            metrics_call_attempt(&mc, r[(i / MGW) % RGW]);
            metrics_call_progress(&mc);
            int st = statuses[i % 8];
            if (st == 200)
                metrics_call_answered(&mc);
            metrics_call_end(&mc, st);
        }
        double dt = (now_ns() - t0) / (double)n;
        if (dt < best)
            best = dt;
    }
    printf("metrics per call (begin, attempt, progress, [answered,] end)   %6.1f ns\n",
           best);

    struct evbuffer *buf = evbuffer_new();
    double t0 = now_ns();
    metrics_render(buf);
    double dt = now_ns() - t0;
    size_t lines = 0, len = evbuffer_get_length(buf);
    char *text = (char *)evbuffer_pullup(buf, -1);
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    printf("scrape of %zu lines (%zu bytes)                    %6.2f ms\n", lines, len,
           dt / 1e6);
    evbuffer_free(buf);
    metrics_free_all();
}

static void collect_many(struct metrics_out *out, void *arg)
{
    long n = *(long *)arg;
    char name[32];
    metrics_out_family(out, "bench_registration_up", "Up.", METRICS_GAUGE);
    for (long i = 0; i < n; i++) {
        snprintf(name, sizeof name, "carrier-%ld", i);
        metrics_out_sample(out, "bench_registration_up", (double)(i & 1), "registration",
                           name, NULL);
    }
}

/* A collector's samples, as 10,000 registrations' would be. */
static void bench_collector(void)
{
    long n = 10000;
    metrics_collector_add(collect_many, &n);
    struct evbuffer *buf = evbuffer_new();
    double best = 1e18;
    for (int round = 0; round < 3; round++) {
        evbuffer_drain(buf, evbuffer_get_length(buf));
        double t0 = now_ns();
        metrics_render(buf);
        double dt = now_ns() - t0;
        if (dt < best)
            best = dt;
    }
    printf("scrape of %ld collected samples                   %6.2f ms (%.0f ns each)\n",
           n, best / 1e6, best / (double)n);
    evbuffer_free(buf);
    metrics_free_all();
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    bench_log(n);
    bench_metrics(n * 5);
    bench_collector();
    return 0;
}
