/* Overload detection from the receive queues' fill. See overload.h. */
#include "overload.h"
#include "evport.h"
#include "log.h"
#include "metrics.h"

#include <linux/sock_diag.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>

/* The window of fill_max and lag_max: two of these, 10 to 20 s. */
#define WINDOW_TICKS (10000 / OVERLOAD_TICK_MS)

/* The most datagram sockets sampled (listeners: a handful). */
#define MAX_SOCKETS 32

struct overload {
    struct event_base *base;
    su_root_t *root;
    struct event *tick;
    double due; /* monotonic seconds the tick is due */
    bool active;
    bool shedding;       /* overload_set_shedding() */
    unsigned run;        /* samples in a row on the other side of the threshold */
    unsigned since_drop; /* samples since one that saw drops, at most the run */
    bool sampled;        /* drops holds a reading */
    uint64_t drops;      /* the sockets' drop counters at the last sample */
    uint64_t dropped;    /* datagrams dropped, seen by the samples */
    uint64_t shed, episodes;
    uint64_t shed_at_enter;
    double entered; /* monotonic seconds */
    double fill;
    double fill_max[2], lag_max[2]; /* [0]: this window, [1]: the previous */
    unsigned window;
    struct metrics_series *m_active, *m_shed, *m_fill, *m_drops;
};

static struct log_limit enter_limit = {.interval = 10};
static struct log_limit leave_limit = {.interval = 10};

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The fullest receive queue of the port's datagram sockets (0..1) into
 * *fill; returns the datagrams the kernel dropped from them, in all, since
 * they were made. */
static uint64_t read_queues(su_root_t *root, double *fill)
{
    int fds[MAX_SOCKETS];
    size_t n = evport_datagram_fds(root, fds, MAX_SOCKETS);
    uint64_t drops = 0;
    *fill = 0;
    for (size_t i = 0; i < n && i < MAX_SOCKETS; i++) {
        uint32_t mem[SK_MEMINFO_VARS] = {0};
        socklen_t len = sizeof mem;
        if (getsockopt(fds[i], SOL_SOCKET, SO_MEMINFO, mem, &len) < 0 ||
            len < (SK_MEMINFO_DROPS + 1) * sizeof mem[0] || !mem[SK_MEMINFO_RCVBUF])
            continue;
        double f = (double)mem[SK_MEMINFO_RMEM_ALLOC] / mem[SK_MEMINFO_RCVBUF];
        if (f > *fill)
            *fill = f > 1 ? 1 : f;
        drops += mem[SK_MEMINFO_DROPS];
    }
    return drops;
}

static void arm(struct overload *ov)
{
    struct timeval tv = {0, OVERLOAD_TICK_MS * 1000};
    ov->due = monotonic_s() + OVERLOAD_TICK_MS / 1000.0;
    evtimer_add(ov->tick, &tv);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct overload *ov = arg;
    (void)fd;
    (void)what;
    double lag = monotonic_s() - ov->due, fill;
    uint64_t drops = read_queues(ov->root, &fill);
    /* A socket gone (or a first sample): no drops seen in between. */
    uint64_t dropped = ov->sampled && drops > ov->drops ? drops - ov->drops : 0;
    ov->drops = drops;
    ov->sampled = true;
    overload_sample(ov, fill, dropped, lag > 0 ? lag : 0);
    arm(ov);
}

static void change(struct overload *ov, bool active)
{
    ov->active = active;
    ov->run = 0;
    metrics_set(ov->m_active, active ? 1 : 0);
    double now = monotonic_s();
    if (active) {
        ov->episodes++;
        ov->entered = now;
        ov->shed_at_enter = ov->shed;
        log_limited(&enter_limit, LOG_WARN, "overload",
                    "overloaded: the SIP receive queue is %.0f %% full; %s",
                    ov->fill * 100,
                    ov->shedding ? "new calls get 503 until it empties"
                                 : "new calls still taken (overload_shedding = false)");
        return;
    }
    log_limited(&leave_limit, LOG_WARN, "overload",
                "overload over after %.1f s: %llu new calls refused (503)",
                now - ov->entered, (unsigned long long)(ov->shed - ov->shed_at_enter));
}

bool overload_sample(struct overload *ov, double fill, uint64_t dropped, double lag_s)
{
    ov->fill = fill;
    ov->dropped += dropped;
    metrics_add(ov->m_drops, (double)dropped);
    if (dropped)
        ov->since_drop = 0;
    else if (ov->since_drop < OVERLOAD_ENTER_TICKS)
        ov->since_drop++;
    if (fill > ov->fill_max[0])
        ov->fill_max[0] = fill;
    if (lag_s > ov->lag_max[0])
        ov->lag_max[0] = lag_s;
    if (++ov->window >= WINDOW_TICKS) {
        ov->window = 0;
        ov->fill_max[1] = ov->fill_max[0];
        ov->lag_max[1] = ov->lag_max[0];
        ov->fill_max[0] = ov->lag_max[0] = 0;
    }
    metrics_set(ov->m_fill, fill);
    bool crossing = ov->active ? fill < OVERLOAD_LEAVE_FILL : fill >= OVERLOAD_ENTER_FILL;
    ov->run = crossing ? ov->run + 1 : 0;
    if (ov->run < (ov->active ? OVERLOAD_LEAVE_TICKS : OVERLOAD_ENTER_TICKS))
        return false;
    if (!ov->active && ov->since_drop >= OVERLOAD_ENTER_TICKS)
        return false; /* a backlog the kernel had room for: being worked off */
    change(ov, !ov->active);
    return true;
}

bool overload_active(const struct overload *ov)
{
    return ov && ov->active;
}

bool overload_shedding(const struct overload *ov)
{
    return ov && ov->active && ov->shedding;
}

void overload_set_shedding(struct overload *ov, bool on)
{
    ov->shedding = on;
}

void overload_shed(struct overload *ov)
{
    ov->shed++;
    metrics_inc(ov->m_shed);
}

void overload_stats(const struct overload *ov, struct overload_stats *st)
{
    *st = (struct overload_stats){
        .active = ov->active,
        .shed = ov->shed,
        .episodes = ov->episodes,
        .fill = ov->fill,
        .dropped = ov->dropped,
        .fill_max = ov->fill_max[0] > ov->fill_max[1] ? ov->fill_max[0] : ov->fill_max[1],
        .lag_max = ov->lag_max[0] > ov->lag_max[1] ? ov->lag_max[0] : ov->lag_max[1],
    };
}

/* One unlabelled series of a new family. */
static struct metrics_series *series(const char *name, const char *help,
                                     enum metrics_type type)
{
    return metrics_series(metrics_family(name, help, type, NULL, NULL, 0), NULL);
}

struct overload *overload_create(struct event_base *base, su_root_t *root)
{
    struct overload *ov = calloc(1, sizeof *ov);
    if (!ov)
        return NULL;
    ov->base = base;
    ov->root = root;
    ov->shedding = true;
    ov->m_active =
        series("moonswitch_overload_active",
               "1 while the switch is behind on the SIP it receives and refuses "
               "new calls with 503, else 0.",
               METRICS_GAUGE);
    ov->m_shed = series("moonswitch_calls_shed_total",
                        "New calls refused with 503 while the switch was overloaded.",
                        METRICS_COUNTER);
    ov->m_fill = series("moonswitch_sip_receive_queue_fill",
                        "How full the fullest UDP receive queue was at the last sample "
                        "(every 100 ms), 0 to 1.",
                        METRICS_GAUGE);
    ov->m_drops =
        series("moonswitch_sip_receive_queue_drops_total",
               "Datagrams the kernel dropped because a UDP receive queue was full.",
               METRICS_COUNTER);
    ov->since_drop = OVERLOAD_ENTER_TICKS;
    if (base) {
        ov->tick = evtimer_new(base, on_tick, ov);
        if (!ov->tick) {
            free(ov);
            return NULL;
        }
        arm(ov);
    }
    return ov;
}

void overload_destroy(struct overload *ov)
{
    if (!ov)
        return;
    if (ov->tick)
        event_free(ov->tick);
    free(ov);
}
