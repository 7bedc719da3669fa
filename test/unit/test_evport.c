/* Unit tests for core/evport.c, sofia-sip's su_port on a libevent base: the
 * layout self-check, timers (order, precision, periodic, no busy loop), wait
 * objects (readiness, eventmask, unregistering from callbacks, exact revents
 * for errors and hang-ups), messages from other threads, and
 * su_root_step()/su_root_run()/su_root_break() through the port.
 *
 * Every case gets a fresh event_base (3 priorities, as the switch) and a
 * fresh root, between su_init() and su_deinit().
 *
 * Cases named regression_* reproduce bugs found in evport.c and fixed: a
 * stale loopexit left by su_root_step(), a spin on a wait with no events,
 * starved deferrable timers, an unlocked port refcount under cross-thread
 * sends, and a vtable shorter than the installed library's. */
#include "check.h"
#include "evport.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_alloc.h>
#include <sofia-sip/su_time.h>
#include <sofia-sip/su_wait.h>

/* ---- helpers ------------------------------------------------------------- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* User + system CPU time of the process, in ms. */
static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static struct timeval ms_tv(int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return tv;
}

struct fixture {
    struct event_base *base;
    su_root_t *root;
};

static struct fixture setup(void)
{
    struct fixture f = {0};
    CHECK(su_init() == 0);
    f.base = event_base_new();
    CHECK(f.base != NULL);
    CHECK(event_base_priority_init(f.base, 3) == 0);
    f.root = evport_root_create(f.base, NULL);
    CHECK(f.root != NULL);
    if (!f.root) {
        fprintf(stderr, "evport_root_create() failed: cannot go on\n");
        exit(1);
    }
    return f;
}

static void teardown(struct fixture *f)
{
    if (f->root)
        su_root_destroy(f->root);
    if (f->base)
        event_base_free(f->base);
    su_deinit();
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Run the loop until *count reaches target or timeout_ms pass (a libevent
 * timer of the test's own, so a port that never wakes up cannot hang the
 * test). Returns 1 if the target was reached. */
static int run_until(struct event_base *base, const int *count, int target, int timeout_ms)
{
    int expired = 0;
    struct event *guard = evtimer_new(base, on_guard, &expired);
    struct timeval tv = ms_tv(timeout_ms);
    evtimer_add(guard, &tv);
    while (*count < target && !expired)
        if (event_base_loop(base, EVLOOP_ONCE) < 0)
            break;
    event_free(guard);
    return *count >= target;
}

/* Run the loop for ms milliseconds. */
static void run_for(struct event_base *base, int ms)
{
    static const int never = 0;
    run_until(base, &never, 1, ms);
}

static su_port_t *port_of(su_root_t *root)
{
    return su_root_task(root)->sut_port;
}

/* ---- 1. layout ------------------------------------------------------------ */

static void layout_check(void)
{
    char why[256] = "";
    int rc = evport_layout_check(why, sizeof why);
    if (rc != 0)
        fprintf(stderr, "evport_layout_check: %s\n", why);
    CHECK(rc == 0);

    struct fixture f = setup();
    CHECK(evport_waits(f.root) == 0);
    /* The port is obtained by this thread: 2 means "by the caller", as in
     * sofia's own pthread ports (1 would be another thread). */
    CHECK(su_root_has_thread(f.root) == 2);
    teardown(&f);
}

/* ---- 2. timers: order, precision, periodic --------------------------------- */

struct timer_rec {
    int ms;
    double fired_at; /* ms since start, -1 if not yet */
};

static double timers_t0;
static int timers_fired;
static int timers_order[8];

static void on_order_timer(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic;
    (void)t;
    struct timer_rec *rec = arg;
    rec->fired_at = now_ms() - timers_t0;
    if (timers_fired < 8)
        timers_order[timers_fired] = rec->ms;
    timers_fired++;
}

static void timers_in_order(void)
{
    struct fixture f = setup();
    static const int due[] = {50, 10, 30, 20};
    enum { N = sizeof due / sizeof due[0] };
    su_timer_t *t[N];
    struct timer_rec rec[N];

    timers_fired = 0;
    memset(timers_order, 0, sizeof timers_order);
    timers_t0 = now_ms();
    for (int i = 0; i < N; i++) {
        rec[i] = (struct timer_rec){.ms = due[i], .fired_at = -1};
        t[i] = su_timer_create(su_root_task(f.root), 0);
        CHECK(t[i] != NULL);
        CHECK(su_timer_set_interval(t[i], on_order_timer, &rec[i], due[i]) == 0);
    }
    /* sofia does not tell the port about new timers: that is our job. */
    evport_rearm(f.root);

    CHECK(run_until(f.base, &timers_fired, N, 1000));
    CHECK(timers_fired == N);
    CHECK(timers_order[0] == 10);
    CHECK(timers_order[1] == 20);
    CHECK(timers_order[2] == 30);
    CHECK(timers_order[3] == 50);
    for (int i = 0; i < N; i++) {
        if (rec[i].fired_at < rec[i].ms - 1 || rec[i].fired_at > rec[i].ms + 15)
            fprintf(stderr, "timer %d ms fired at %.2f ms\n", rec[i].ms, rec[i].fired_at);
        CHECK(rec[i].fired_at >= rec[i].ms - 1);
        CHECK(rec[i].fired_at <= rec[i].ms + 15);
        su_timer_destroy(t[i]);
    }
    teardown(&f);
}

/* A timer set from a timer callback is armed without evport_rearm(): the port
 * re-arms after each dispatch. */
static int chain_fired;
static double chain_at[3];

static void on_chain_timer(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic;
    (void)arg;
    chain_at[chain_fired] = now_ms() - timers_t0;
    if (++chain_fired < 3)
        su_timer_set_interval(t, on_chain_timer, NULL, 20);
}

static void timer_set_from_callback(void)
{
    struct fixture f = setup();
    su_timer_t *t = su_timer_create(su_root_task(f.root), 0);
    chain_fired = 0;
    timers_t0 = now_ms();
    CHECK(su_timer_set_interval(t, on_chain_timer, NULL, 20) == 0);
    evport_rearm(f.root);
    CHECK(run_until(f.base, &chain_fired, 3, 1000));
    CHECK(chain_fired == 3);
    CHECK(chain_at[2] >= 60 - 1);
    CHECK(chain_at[2] <= 60 + 25);
    su_timer_destroy(t);
    teardown(&f);
}

/* Timers set from a wait callback and from a message handler: the port
 * re-arms after those dispatches too, no evport_rearm() needed. */
static int cb_timers_fired;
static double cb_timer_at[2];
static su_timer_t *cb_timer[2];

static void on_cb_timer(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic;
    (void)t;
    cb_timer_at[(intptr_t)arg] = now_ms() - timers_t0;
    cb_timers_fired++;
}

static int on_wait_set_timer(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
    (void)magic;
    (void)arg;
    char buf[8];
    (void)!read(w->fd, buf, sizeof buf);
    timers_t0 = now_ms();
    su_timer_set_interval(cb_timer[0], on_cb_timer, (void *)(intptr_t)0, 20);
    return 0;
}

static void on_msg_set_timer(su_root_magic_t *magic, su_msg_r msg, su_msg_arg_t *arg)
{
    (void)magic;
    (void)msg;
    (void)arg;
    su_timer_set_interval(cb_timer[1], on_cb_timer, (void *)(intptr_t)1, 40);
}

static void timers_set_from_callbacks(void)
{
    struct fixture f = setup();
    cb_timers_fired = 0;
    cb_timer_at[0] = cb_timer_at[1] = -1;
    cb_timer[0] = su_timer_create(su_root_task(f.root), 0);
    cb_timer[1] = su_timer_create(su_root_task(f.root), 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    su_wait_t w;
    su_wait_create(&w, sv[0], SU_WAIT_IN);
    int index = su_root_register(f.root, &w, on_wait_set_timer, NULL, 0);
    CHECK(index > 0);
    CHECK(write(sv[1], "x", 1) == 1);
    CHECK(run_until(f.base, &cb_timers_fired, 1, 1000));
    CHECK(cb_timer_at[0] >= 20 - 1 && cb_timer_at[0] <= 20 + 15);
    su_msg_r m = SU_MSG_R_INIT;
    CHECK(su_msg_create(m, su_root_task(f.root), su_root_task(f.root), on_msg_set_timer,
                        0) == 0);
    timers_t0 = now_ms();
    CHECK(su_msg_send(m) == 0);
    CHECK(run_until(f.base, &cb_timers_fired, 2, 1000));
    CHECK(cb_timer_at[1] >= 40 - 1 && cb_timer_at[1] <= 40 + 15);
    su_root_deregister(f.root, index);
    su_timer_destroy(cb_timer[0]);
    su_timer_destroy(cb_timer[1]);
    close(sv[0]);
    close(sv[1]);
    teardown(&f);
}

static int periodic_fired;
static double periodic_at[16];

static void on_periodic(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic;
    (void)arg;
    if (periodic_fired < 16)
        periodic_at[periodic_fired] = now_ms() - timers_t0;
    if (++periodic_fired == 5)
        su_timer_reset(t);
}

static void timer_periodic(void)
{
    struct fixture f = setup();
    su_timer_t *t = su_timer_create(su_root_task(f.root), 20);
    periodic_fired = 0;
    timers_t0 = now_ms();
    CHECK(su_timer_run(t, on_periodic, NULL) == 0);
    evport_rearm(f.root);
    CHECK(run_until(f.base, &periodic_fired, 5, 1000));
    /* Reset after the 5th: no 6th within another two periods. */
    run_for(f.base, 50);
    CHECK(periodic_fired == 5);
    CHECK(periodic_at[0] >= 20 - 1 && periodic_at[0] <= 20 + 15);
    CHECK(periodic_at[4] >= 100 - 1 && periodic_at[4] <= 100 + 25);
    for (int i = 1; i < 5; i++)
        CHECK(periodic_at[i] > periodic_at[i - 1]);
    CHECK(!su_timer_is_set(t));
    su_timer_destroy(t);
    teardown(&f);
}

/* ---- 3. short timers, and no busy loop while waiting ---------------------- */

static int short_fired;
static double short_at[2];

static void on_short(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic;
    (void)t;
    short_at[(intptr_t)arg] = now_ms() - timers_t0;
    short_fired++;
}

static int long_fired;
static double long_at; /* now_ms() when on_long ran */

static void on_long(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic;
    (void)t;
    (void)arg;
    long_at = now_ms();
    long_fired++;
}

static int on_idle_wait(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
    (void)magic;
    (void)w;
    (void)arg;
    CHECK(!"an idle socket's callback ran");
    return 0;
}

static void on_every_ms(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic;
    (void)t;
    (void)arg;
    periodic_fired++;
}

static void timers_short_and_idle(void)
{
    struct fixture f = setup();
    su_timer_t *t0 = su_timer_create(su_root_task(f.root), 0);
    su_timer_t *t1 = su_timer_create(su_root_task(f.root), 0);
    short_fired = 0;
    short_at[0] = short_at[1] = -1;
    timers_t0 = now_ms();
    CHECK(su_timer_set_interval(t0, on_short, (void *)(intptr_t)0, 0) == 0);
    CHECK(su_timer_set_interval(t1, on_short, (void *)(intptr_t)1, 1) == 0);
    evport_rearm(f.root);
    CHECK(run_until(f.base, &short_fired, 2, 500));
    CHECK(short_fired == 2);
    CHECK(short_at[0] >= 0 && short_at[0] <= 15);
    CHECK(short_at[1] >= 0 && short_at[1] <= 15);

    /* Waiting 200 ms for a sofia timer, with an idle socket registered,
     * costs (almost) no CPU. */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    su_wait_t w;
    su_wait_create(&w, sv[0], SU_WAIT_IN);
    int index = su_root_register(f.root, &w, on_idle_wait, NULL, 0);
    CHECK(index > 0);
    su_timer_t *tl = su_timer_create(su_root_task(f.root), 0);
    long_fired = 0;
    double cpu0 = cpu_ms(), wall0 = now_ms();
    CHECK(su_timer_set_interval(tl, on_long, NULL, 200) == 0);
    evport_rearm(f.root);
    CHECK(run_until(f.base, &long_fired, 1, 1000));
    double cpu = cpu_ms() - cpu0, wall = now_ms() - wall0;
    if (cpu >= 20)
        fprintf(stderr, "idle wait of %.1f ms used %.1f ms of CPU\n", wall, cpu);
    CHECK(long_fired == 1);
    CHECK(wall >= 199 && wall <= 200 + 25);
    CHECK(cpu < 20);

    /* A 1 ms timer for 100 ms: one loop iteration per expiry or so. The
     * port rounds a timer due in under 1 ms up to 1 ms; arming 0 would run
     * the loop round and round until sofia's clock reaches the timer. (With
     * event_base_new()'s coarse clock it fires every 3-4 ms, not every 1 ms:
     * see timers_precise_base.) */
    su_timer_t *tp = su_timer_create(su_root_task(f.root), 1);
    periodic_fired = 0;
    timers_t0 = now_ms();
    cpu0 = cpu_ms();
    CHECK(su_timer_set_for_ever(tp, on_every_ms, NULL) == 0);
    evport_rearm(f.root);
    int iterations = 0;
    for (double end = now_ms() + 100; now_ms() < end; iterations++)
        event_base_loop(f.base, EVLOOP_ONCE);
    su_timer_reset(tp);
    cpu = cpu_ms() - cpu0;
    if (iterations > 2 * periodic_fired + 10 || periodic_fired < 15)
        fprintf(stderr, "1 ms timer: %d expiries, %d loop iterations, %.1f ms CPU\n",
                periodic_fired, iterations, cpu);
    CHECK(periodic_fired >= 15 && periodic_fired <= 101);
    CHECK(iterations <= 2 * periodic_fired + 10);
    CHECK(cpu < 60);

    su_root_deregister(f.root, index);
    close(sv[0]);
    close(sv[1]);
    su_timer_destroy(t0);
    su_timer_destroy(t1);
    su_timer_destroy(tl);
    su_timer_destroy(tp);
    teardown(&f);
}

/* Timer precision depends on the base: event_base_new() makes libevent use
 * CLOCK_MONOTONIC_COARSE (4 ms steps on this kernel), so sofia timers fire
 * 0-4 ms late. A base with EVENT_BASE_FLAG_PRECISE_TIMER keeps them within a
 * fraction of a millisecond. */
static double mean_lateness(struct event_base *base, su_root_t *root, int ms, int *fired)
{
    su_timer_t *t = su_timer_create(su_root_task(root), ms);
    periodic_fired = 0;
    CHECK(su_timer_set_for_ever(t, on_every_ms, NULL) == 0);
    evport_rearm(root);
    double t0 = now_ms();
    run_until(base, &periodic_fired, 10, 20 * ms + 200);
    double took = now_ms() - t0;
    *fired = periodic_fired;
    su_timer_destroy(t);
    return periodic_fired ? took / periodic_fired - ms : -1;
}

static void timers_precise_base(void)
{
    struct fixture f = setup();
    int fired;
    double coarse = mean_lateness(f.base, f.root, 5, &fired);
    CHECK(fired == 10);
    teardown(&f);

    CHECK(su_init() == 0);
    struct event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    f.base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    CHECK(f.base != NULL);
    CHECK(event_base_priority_init(f.base, 3) == 0);
    f.root = evport_root_create(f.base, NULL);
    CHECK(f.root != NULL);
    double precise = mean_lateness(f.base, f.root, 5, &fired);
    CHECK(fired == 10);
    if (precise >= 1)
        fprintf(stderr, "5 ms timer: %.2f ms late on average (default base: %.2f)\n",
                precise, coarse);
    CHECK(precise >= 0 && precise < 1);
    teardown(&f);
}

/* ---- 4. fd readiness, eventmask, unregister -------------------------------- */

struct waiter {
    su_root_t *root;
    int index;
    int calls;
    int revents;     /* of the last call */
    int all_revents; /* or of every call */
    int fd_seen;     /* w->fd at the last call */
    int mode;
    struct waiter *other;
    su_wait_t other_wait;
};

enum {
    MODE_READ,           /* read a byte */
    MODE_OUT_THEN_IN,    /* writable: switch back to SU_WAIT_IN from here */
    MODE_UNREGISTER,     /* su_root_unregister() itself, then touch w */
    MODE_DEREGISTER,     /* su_root_deregister() itself, then touch w */
    MODE_KILL_BOTH,      /* unregister the other waiter and itself */
    MODE_ERR,            /* read SO_ERROR / recv, as tport does */
    MODE_HUP,            /* unregister on hang-up */
    MODE_COUNT,          /* just count */
};

static int on_wait(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
    (void)magic;
    struct waiter *wt = arg;
    int ev = su_wait_events(w, w->fd);
    wt->calls++;
    wt->revents = ev;
    wt->all_revents |= ev;
    wt->fd_seen = w->fd;
    char buf[64];
    switch (wt->mode) {
    case MODE_READ:
        if (ev & SU_WAIT_IN)
            (void)!read(w->fd, buf, sizeof buf);
        break;
    case MODE_OUT_THEN_IN:
        CHECK(su_root_eventmask(wt->root, wt->index, w->fd, SU_WAIT_IN) == 0);
        break;
    case MODE_UNREGISTER: {
        int fd = w->fd;
        CHECK(su_root_unregister(wt->root, w, on_wait, wt) == wt->index);
        /* The wait object stays valid until the callback returns (ASan). */
        CHECK(w->fd == fd);
        (void)!read(fd, buf, sizeof buf);
        break;
    }
    case MODE_DEREGISTER:
        CHECK(su_root_deregister(wt->root, wt->index) == wt->index);
        wt->fd_seen = w->fd; /* read after deregister: must not be freed */
        break;
    case MODE_KILL_BOTH:
        CHECK(su_root_unregister(wt->root, &wt->other->other_wait, on_wait, wt->other) ==
              wt->other->index);
        CHECK(su_root_unregister(wt->root, w, on_wait, wt) == wt->index);
        break;
    case MODE_ERR:
        if (ev & SU_WAIT_ERR) {
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            wt->fd_seen = err; /* reuse: the error read */
        } else if (ev & SU_WAIT_IN) {
            ssize_t n = recv(w->fd, buf, sizeof buf, MSG_DONTWAIT);
            wt->fd_seen = n < 0 ? errno : 0;
        }
        break;
    case MODE_HUP:
        if (ev & (SU_WAIT_HUP | SU_WAIT_IN)) {
            ssize_t n = read(w->fd, buf, sizeof buf);
            if (n <= 0)
                CHECK(su_root_unregister(wt->root, w, on_wait, wt) == wt->index);
        }
        break;
    case MODE_COUNT:
        break;
    }
    return 0;
}

static void fd_readiness(void)
{
    struct fixture f = setup();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);

    struct waiter wt = {.root = f.root, .mode = MODE_READ};
    su_wait_t w;
    CHECK(su_wait_create(&w, sv[0], SU_WAIT_IN) == 0);
    wt.index = su_root_register(f.root, &w, on_wait, &wt, 0);
    CHECK(wt.index > 0);
    CHECK(evport_waits(f.root) == 1);

    /* Nothing to read: no callback. */
    run_for(f.base, 20);
    CHECK(wt.calls == 0);

    /* Readable. */
    CHECK(write(sv[1], "x", 1) == 1);
    CHECK(run_until(f.base, &wt.calls, 1, 500));
    CHECK(wt.calls == 1);
    CHECK(wt.revents & SU_WAIT_IN);
    CHECK(!(wt.revents & SU_WAIT_OUT)); /* not asked for */
    CHECK(wt.fd_seen == sv[0]);
    /* Drained: no further calls. */
    run_for(f.base, 20);
    CHECK(wt.calls == 1);

    /* Writable, after su_root_eventmask(); the callback switches back to IN
     * from inside itself, so it is called once. */
    wt.mode = MODE_OUT_THEN_IN;
    wt.calls = 0;
    CHECK(su_root_eventmask(f.root, wt.index, sv[0], SU_WAIT_OUT) == 0);
    CHECK(run_until(f.base, &wt.calls, 1, 500));
    run_for(f.base, 20);
    CHECK(wt.calls == 1);
    CHECK(wt.revents & SU_WAIT_OUT);
    CHECK(!(wt.revents & SU_WAIT_IN));
    /* A wrong socket or index is refused. */
    CHECK(su_root_eventmask(f.root, wt.index, sv[1], SU_WAIT_OUT) < 0);
    CHECK(su_root_eventmask(f.root, wt.index + 7, sv[0], SU_WAIT_OUT) < 0);

    /* Back on IN: reads work again. */
    wt.mode = MODE_READ;
    wt.calls = 0;
    CHECK(write(sv[1], "y", 1) == 1);
    CHECK(run_until(f.base, &wt.calls, 1, 500));
    CHECK(wt.revents == SU_WAIT_IN);

    /* Unregistered: silence, even with data pending. The wait object given
     * to su_root_unregister() must match fd and events (as in sofia's own
     * ports). */
    su_wait_t wrong = w;
    wrong.events = SU_WAIT_OUT;
    CHECK(su_root_unregister(f.root, &wrong, on_wait, &wt) < 0);
    CHECK(evport_waits(f.root) == 1);
    CHECK(su_root_unregister(f.root, &w, on_wait, &wt) == wt.index);
    CHECK(evport_waits(f.root) == 0);
    CHECK(su_root_unregister(f.root, &w, on_wait, &wt) < 0);
    wt.calls = 0;
    CHECK(write(sv[1], "z", 1) == 1);
    run_for(f.base, 30);
    CHECK(wt.calls == 0);

    close(sv[0]);
    close(sv[1]);
    teardown(&f);
}

static void unregister_in_callback(void)
{
    struct fixture f = setup();
    int a[2], b[2], c[2], d[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, a) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, b) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, c) == 0);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, d) == 0);

    /* One unregisters itself, one deregisters itself by index. */
    struct waiter wa = {.root = f.root, .mode = MODE_UNREGISTER};
    struct waiter wb = {.root = f.root, .mode = MODE_DEREGISTER};
    su_wait_t w;
    su_wait_create(&w, a[0], SU_WAIT_IN);
    wa.index = su_root_register(f.root, &w, on_wait, &wa, 0);
    su_wait_create(&w, b[0], SU_WAIT_IN);
    wb.index = su_root_register(f.root, &w, on_wait, &wb, 0);
    CHECK(wa.index > 0 && wb.index > 0 && wa.index != wb.index);
    CHECK(evport_waits(f.root) == 2);

    CHECK(write(a[1], "x", 1) == 1);
    CHECK(write(b[1], "x", 1) == 1);
    run_for(f.base, 30);
    CHECK(wa.calls + wb.calls == 2);
    CHECK(wa.calls == 1);
    CHECK(wb.calls == 1);
    CHECK(evport_waits(f.root) == 0);
    /* deregister resets the wait object (su_wait_destroy): fd -1. It does not
     * close the socket (sofia's su_wait_destroy() does not on poll systems). */
    CHECK(wb.fd_seen == -1);
    CHECK(write(b[1], "x", 1) == 1);

    /* Two ready in the same loop iteration; whichever runs first unregisters
     * both: the other must not be called (nor touched after free). */
    struct waiter wc = {.root = f.root, .mode = MODE_KILL_BOTH};
    struct waiter wd = {.root = f.root, .mode = MODE_KILL_BOTH};
    wc.other = &wd;
    wd.other = &wc;
    su_wait_create(&wc.other_wait, c[0], SU_WAIT_IN);
    su_wait_create(&wd.other_wait, d[0], SU_WAIT_IN);
    wc.index = su_root_register(f.root, &wc.other_wait, on_wait, &wc, 0);
    wd.index = su_root_register(f.root, &wd.other_wait, on_wait, &wd, 0);
    CHECK(evport_waits(f.root) == 2);
    CHECK(write(c[1], "x", 1) == 1);
    CHECK(write(d[1], "x", 1) == 1);
    usleep(1000);
    event_base_loop(f.base, EVLOOP_ONCE);
    run_for(f.base, 20);
    CHECK(wc.calls + wd.calls == 1);
    CHECK(evport_waits(f.root) == 0);

    /* Indices are reused; su_root_destroy() releases what is left (checked
     * by ASan/LSan at teardown; sofia logs "1 registered waits"). */
    struct waiter we = {.root = f.root, .mode = MODE_COUNT};
    su_wait_create(&w, c[0], SU_WAIT_IN);
    we.index = su_root_register(f.root, &w, on_wait, &we, 0);
    CHECK(we.index == 1);
    CHECK(evport_waits(f.root) == 1);

    for (int i = 0; i < 2; i++) {
        close(a[i]);
        close(b[i]);
        close(d[i]);
    }
    teardown(&f);
    close(c[0]);
    close(c[1]);
}

/* Many registrations: the index grows past its first allocation (16). */
static void many_waits(void)
{
    struct fixture f = setup();
    enum { N = 40 };
    int sv[N][2];
    struct waiter wt[N];
    for (int i = 0; i < N; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv[i]) == 0);
        wt[i] = (struct waiter){.root = f.root, .mode = MODE_READ};
        su_wait_t w;
        su_wait_create(&w, sv[i][0], SU_WAIT_IN);
        wt[i].index = su_root_register(f.root, &w, on_wait, &wt[i], 0);
        CHECK(wt[i].index == i + 1);
    }
    CHECK(evport_waits(f.root) == N);
    for (int i = 0; i < N; i++)
        CHECK(write(sv[i][1], "x", 1) == 1);
    run_for(f.base, 30);
    int ok = 1;
    for (int i = 0; i < N; i++)
        ok &= wt[i].calls == 1 && wt[i].revents == SU_WAIT_IN;
    CHECK(ok);
    for (int i = 0; i < N; i += 2) {
        CHECK(su_root_deregister(f.root, wt[i].index) == wt[i].index);
    }
    CHECK(evport_waits(f.root) == N / 2);
    for (int i = 1; i < N; i += 2)
        CHECK(su_root_deregister(f.root, wt[i].index) == wt[i].index);
    CHECK(evport_waits(f.root) == 0);
    teardown(&f);
    for (int i = 0; i < N; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
}

/* ---- 5. ICMP port unreachable on a connected UDP socket -------------------- */

/* A UDP port on 127.0.0.1 with nothing bound to it (bound, then closed). */
static int unused_udp_port(void)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sin;
    bind(s, (struct sockaddr *)&sin, sizeof sin);
    getsockname(s, (struct sockaddr *)&sin, &len);
    close(s);
    return ntohs(sin.sin_port);
}

static void udp_error_revents(void)
{
    struct fixture f = setup();
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    CHECK(s >= 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(unused_udp_port())};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(s, (struct sockaddr *)&to, sizeof to) == 0);

    struct waiter wt = {.root = f.root, .mode = MODE_ERR, .fd_seen = -1};
    su_wait_t w;
    CHECK(su_wait_create(&w, s, SU_WAIT_IN) == 0);
    wt.index = su_root_register(f.root, &w, on_wait, &wt, 0);
    CHECK(wt.index > 0);

    CHECK(send(s, "OPTIONS", 7, 0) == 7);
    double t0 = now_ms();
    CHECK(run_until(f.base, &wt.calls, 1, 500));
    /* Observed on Linux: revents is POLLERR alone (no datagram is queued),
     * exactly what poll() reports, and tport can clear it. */
    CHECK(wt.revents & SU_WAIT_ERR);
    CHECK(!(wt.revents & SU_WAIT_IN));
    CHECK(wt.fd_seen == ECONNREFUSED);
    /* Once the error is read the socket is quiet: no spin. */
    run_for(f.base, 100);
    if (wt.calls >= 5)
        fprintf(stderr, "ICMP error: %d callbacks in %.0f ms\n", wt.calls, now_ms() - t0);
    CHECK(wt.calls < 5);

    /* A callback that ignores the error (level-triggered, as sofia's own
     * ports): called repeatedly, but each call says POLLERR. */
    wt.mode = MODE_COUNT;
    wt.calls = 0;
    wt.all_revents = 0;
    CHECK(send(s, "OPTIONS", 7, 0) == 7);
    run_for(f.base, 20);
    CHECK(wt.calls >= 1);
    CHECK(wt.all_revents == SU_WAIT_ERR);
    CHECK(su_root_deregister(f.root, wt.index) == wt.index);

    close(s);
    teardown(&f);
}

/* ---- 6. hang-up ------------------------------------------------------------ */

static void hangup_revents(void)
{
    struct fixture f = setup();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    struct waiter wt = {.root = f.root, .mode = MODE_HUP};
    su_wait_t w;
    su_wait_create(&w, sv[0], SU_WAIT_IN);
    wt.index = su_root_register(f.root, &w, on_wait, &wt, 0);
    CHECK(wt.index > 0);
    close(sv[1]);
    CHECK(run_until(f.base, &wt.calls, 1, 500));
    /* Observed: POLLIN | POLLHUP (a closed AF_UNIX peer reads as EOF and
     * hang-up); the callback reads 0 and unregisters. */
    CHECK(wt.revents & SU_WAIT_HUP);
    CHECK(wt.revents & SU_WAIT_IN);
    run_for(f.base, 20);
    CHECK(wt.calls == 1);
    CHECK(evport_waits(f.root) == 0);
    close(sv[0]);

    /* Same for a TCP connection whose peer closed: POLLIN (EOF) at least. */
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sin;
    CHECK(bind(l, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(listen(l, 1) == 0);
    getsockname(l, (struct sockaddr *)&sin, &len);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&sin, sizeof sin) == 0);
    int a = accept(l, NULL, NULL);
    CHECK(a >= 0);
    struct waiter wt2 = {.root = f.root, .mode = MODE_HUP};
    su_wait_create(&w, a, SU_WAIT_IN);
    wt2.index = su_root_register(f.root, &w, on_wait, &wt2, 0);
    close(c);
    CHECK(run_until(f.base, &wt2.calls, 1, 500));
    CHECK(wt2.revents & SU_WAIT_IN);
    run_for(f.base, 20);
    CHECK(wt2.calls == 1);
    close(a);
    close(l);
    teardown(&f);
}

/* ---- 7. messages, from this thread and from another one -------------------- */

struct payload {
    double sent_at;
    int seq;
};

static pthread_t loop_thread;
static int msgs_delivered;
static int msgs_on_loop_thread;
static double msg_latency;
static int msgs_in_order;

static void on_message(su_root_magic_t *magic, su_msg_r msg, su_msg_arg_t *arg)
{
    (void)magic;
    (void)msg;
    struct payload *p = arg;
    msg_latency = now_ms() - p->sent_at;
    if (p->seq != msgs_delivered)
        msgs_in_order = 0;
    msgs_delivered++;
    if (pthread_equal(pthread_self(), loop_thread))
        msgs_on_loop_thread++;
}

static int send_message(su_root_t *root, int seq)
{
    su_msg_r m = SU_MSG_R_INIT;
    if (su_msg_create(m, su_root_task(root), su_root_task(root), on_message,
                      sizeof(struct payload)) != 0)
        return -1;
    struct payload *p = su_msg_data(m);
    p->sent_at = now_ms();
    p->seq = seq;
    return su_msg_send(m);
}

struct sender {
    su_root_t *root;
    int delay_ms;
    int count;
    int failures;
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;
    usleep(s->delay_ms * 1000);
    for (int i = 0; i < s->count; i++)
        if (send_message(s->root, i) != 0)
            s->failures++;
    return NULL;
}

static void messages(void)
{
    struct fixture f = setup();
    loop_thread = pthread_self();

    /* From the loop's own thread, before the loop runs. */
    msgs_delivered = msgs_on_loop_thread = 0;
    msgs_in_order = 1;
    CHECK(send_message(f.root, 0) == 0);
    CHECK(send_message(f.root, 1) == 0);
    CHECK(run_until(f.base, &msgs_delivered, 2, 500));
    CHECK(msgs_delivered == 2);
    CHECK(msgs_on_loop_thread == 2);
    CHECK(msgs_in_order);

    /* From another thread while the loop sleeps with nothing else to do: it
     * wakes up at once, and the handler runs on the loop's thread. */
    msgs_delivered = msgs_on_loop_thread = 0;
    msg_latency = -1;
    struct sender s = {.root = f.root, .delay_ms = 50, .count = 1};
    pthread_t th;
    double t0 = now_ms();
    CHECK(pthread_create(&th, NULL, sender_main, &s) == 0);
    CHECK(run_until(f.base, &msgs_delivered, 1, 1000));
    double waited = now_ms() - t0;
    pthread_join(th, NULL);
    CHECK(s.failures == 0);
    CHECK(msgs_delivered == 1);
    CHECK(msgs_on_loop_thread == 1);
    if (msg_latency < 0 || msg_latency >= 100)
        fprintf(stderr, "cross-thread message latency %.2f ms\n", msg_latency);
    CHECK(msg_latency >= 0 && msg_latency < 100);
    CHECK(waited >= 45 && waited < 150);

    /* A burst from another thread while the loop delivers: see
     * regression_cross_thread_refcount (it can crash the process today). */
    teardown(&f);
}

static su_root_t *timer_msg_root;

static void on_send_timer(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic;
    (void)t;
    (void)arg;
    CHECK(send_message(timer_msg_root, 0) == 0);
}

static void message_from_callback(void)
{
    struct fixture f = setup();
    loop_thread = pthread_self();
    timer_msg_root = f.root;
    msgs_delivered = msgs_on_loop_thread = 0;
    msgs_in_order = 1;
    su_timer_t *t = su_timer_create(su_root_task(f.root), 10);
    CHECK(su_timer_set(t, on_send_timer, NULL) == 0);
    evport_rearm(f.root);
    double t0 = now_ms();
    CHECK(run_until(f.base, &msgs_delivered, 1, 500));
    CHECK(msgs_delivered == 1);
    CHECK(now_ms() - t0 < 100);
    su_timer_destroy(t);
    teardown(&f);
}

/* ---- 8. su_root_step / su_root_run / su_root_break ------------------------ */

static int break_fired;
static int guard_fired;

static void on_break_timer(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic;
    (void)t;
    break_fired++;
    su_root_break(arg);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static void on_run_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    guard_fired = 1;
    su_root_break(arg);
}

static void root_step_run_break(void)
{
    struct fixture f = setup();
    /* Safety nets so a broken port fails the checks instead of hanging: a
     * wakeup every second, and su_root_break() after one second. */
    struct event *wake = event_new(f.base, -1, EV_PERSIST, on_wake, NULL);
    struct timeval sec = ms_tv(1000);
    event_add(wake, &sec);
    struct event *stop = evtimer_new(f.base, on_run_guard, f.root);
    evtimer_add(stop, &sec);
    guard_fired = 0;

    /* su_root_run() until a timer calls su_root_break(). */
    su_timer_t *t = su_timer_create(su_root_task(f.root), 30);
    break_fired = 0;
    CHECK(su_timer_set(t, on_break_timer, f.root) == 0);
    double t0 = now_ms();
    su_root_run(f.root); /* no evport_rearm(): su_root_run arms it */
    double took = now_ms() - t0;
    CHECK(break_fired == 1);
    CHECK(!guard_fired);
    CHECK(took >= 29 && took <= 30 + 25);
    event_free(stop);

    /* su_root_step() with a timer due before the step's timeout: returns
     * once the timer fired, and says there is no further timer. */
    break_fired = 0;
    CHECK(su_timer_set_interval(t, on_long, NULL, 20) == 0);
    long_fired = 0;
    t0 = now_ms();
    su_duration_t next = 0;
    for (int i = 0; i < 10 && !long_fired; i++)
        next = su_root_step(f.root, 200);
    took = now_ms() - t0;
    CHECK(long_fired == 1);
    CHECK(took >= 19 && took <= 20 + 25);
    CHECK(next == SU_WAIT_FOREVER);

    /* With a timer pending, su_root_step() returns the time to it. */
    CHECK(su_timer_set_interval(t, on_long, NULL, 500) == 0);
    next = su_root_step(f.root, 0);
    CHECK(next > 400 && next <= 500);
    su_timer_reset(t);

    /* su_root_step(root, 0) does not block. */
    t0 = now_ms();
    su_root_step(f.root, 0);
    CHECK(now_ms() - t0 < 10);

    /* su_root_step() with nothing to do returns after its timeout. */
    t0 = now_ms();
    su_root_step(f.root, 30);
    took = now_ms() - t0;
    CHECK(took >= 29 && took <= 30 + 25);

    /* su_root_step() serves wait objects and messages. */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    struct waiter wt = {.root = f.root, .mode = MODE_READ};
    su_wait_t w;
    su_wait_create(&w, sv[0], SU_WAIT_IN);
    wt.index = su_root_register(f.root, &w, on_wait, &wt, 0);
    CHECK(write(sv[1], "x", 1) == 1);
    t0 = now_ms();
    su_root_step(f.root, 200);
    CHECK(wt.calls == 1);
    CHECK(now_ms() - t0 < 100);
    loop_thread = pthread_self();
    msgs_delivered = 0;
    msgs_in_order = 1;
    CHECK(send_message(f.root, 0) == 0);
    su_root_step(f.root, 200);
    CHECK(msgs_delivered == 1);

    su_root_deregister(f.root, wt.index);
    close(sv[0]);
    close(sv[1]);
    su_timer_destroy(t);
    event_free(wake);
    teardown(&f);
}

/* ---- regressions ------------------------------------------------------------ */


static void on_stop_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    guard_fired = 1;
    event_base_loopbreak(arg);
}

/* su_root_step(root, tout > 0) calls event_base_loopexit(tout) and then
 * event_base_loop(EVLOOP_ONCE). When something else ends the step first,
 * the loopexit timer stays scheduled and later terminates whatever loop runs
 * on the base then, e.g. the switch's event_base_dispatch(). */
static void regression_step_leaves_loopexit(void)
{
    struct fixture f = setup();
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    struct waiter wt = {.root = f.root, .mode = MODE_READ};
    su_wait_t w;
    su_wait_create(&w, sv[0], SU_WAIT_IN);
    wt.index = su_root_register(f.root, &w, on_wait, &wt, 0);
    CHECK(write(sv[1], "x", 1) == 1);
    double t0 = now_ms();
    su_root_step(f.root, 150); /* returns at once: the fd is readable */
    CHECK(wt.calls == 1);
    CHECK(now_ms() - t0 < 50);

    /* The application's loop, to be stopped by its own timer at 300 ms. */
    guard_fired = 0;
    struct event *guard = evtimer_new(f.base, on_stop_guard, f.base);
    struct timeval tv = ms_tv(300);
    evtimer_add(guard, &tv);
    t0 = now_ms();
    event_base_dispatch(f.base);
    double took = now_ms() - t0;
    event_free(guard);
    if (!guard_fired)
        fprintf(stderr, "event_base_dispatch() ended after %.0f ms, not 300\n", took);
    CHECK(guard_fired);

    su_root_deregister(f.root, wt.index);
    close(sv[0]);
    close(sv[1]);
    teardown(&f);
}

/* A wait registered with no events (tport does this: tport_shutdown0(tp, 0)
 * does shutdown(SHUT_RD) and clears SU_WAIT_IN) still gets EV_READ in
 * libevent. Once the socket reads as EOF, libevent reports it readable on
 * every iteration, on_wait_ready()'s poll() with events 0 finds nothing and
 * returns without calling back: the loop spins at 100% CPU. sofia's epoll
 * port would only wake up for POLLERR/POLLHUP. */
static void regression_no_events_spin(void)
{
    struct fixture f = setup();
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sin;
    CHECK(bind(l, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(listen(l, 1) == 0);
    getsockname(l, (struct sockaddr *)&sin, &len);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(c, (struct sockaddr *)&sin, sizeof sin) == 0);
    int a = accept(l, NULL, NULL);
    CHECK(a >= 0);

    struct waiter wt = {.root = f.root, .mode = MODE_COUNT};
    su_wait_t w;
    su_wait_create(&w, a, SU_WAIT_IN);
    wt.index = su_root_register(f.root, &w, on_wait, &wt, 0);
    /* The peer half-closes; we shut reception down and stop asking for IN,
     * as tport does. */
    shutdown(c, SHUT_WR);
    CHECK(run_until(f.base, &wt.calls, 1, 500));
    shutdown(a, SHUT_RD);
    CHECK(su_root_eventmask(f.root, wt.index, a, 0) == 0);

    /* A 150 ms sofia timer; nothing else should happen meanwhile. */
    su_timer_t *t = su_timer_create(su_root_task(f.root), 150);
    long_fired = 0;
    CHECK(su_timer_set(t, on_long, NULL) == 0);
    evport_rearm(f.root);
    wt.calls = 0;
    double cpu0 = cpu_ms();
    int iterations = 0;
    for (double end = now_ms() + 1000; !long_fired && now_ms() < end; iterations++)
        event_base_loop(f.base, EVLOOP_ONCE);
    double cpu = cpu_ms() - cpu0;
    CHECK(long_fired == 1);
    CHECK(wt.calls == 0); /* no error, no hang-up: no callback */
    if (iterations > 10)
        fprintf(stderr, "events=0 on an EOF socket: %d loop iterations, %.0f ms CPU in "
                "150 ms\n", iterations, cpu);
    CHECK(iterations <= 10);

    su_timer_destroy(t);
    su_root_deregister(f.root, wt.index);
    close(a);
    close(c);
    close(l);
    teardown(&f);
}

/* Deferrable timers are only expired in on_timer() (and port_step()), and
 * every wait callback re-arms the libevent timer to max_defer from now while
 * no ordinary timer is pending. A socket with traffic more often than
 * max_defer thus postpones deferrable timers for ever. sofia's loop expires
 * them on every iteration: at the latest max_defer after they are due. */
static void on_traffic(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)!write(*(int *)arg, "x", 1);
}

static void regression_deferrable_starved(void)
{
    struct fixture f = setup();
    CHECK(su_root_set_max_defer(f.root, 100) == 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    struct waiter wt = {.root = f.root, .mode = MODE_READ};
    su_wait_t w;
    su_wait_create(&w, sv[0], SU_WAIT_IN);
    wt.index = su_root_register(f.root, &w, on_wait, &wt, 0);

    su_timer_t *t = su_timer_create(su_root_task(f.root), 50);
    CHECK(su_timer_deferrable(t, 1) == 0);
    long_fired = 0;
    CHECK(su_timer_set(t, on_long, NULL) == 0);
    evport_rearm(f.root);

    /* Traffic every 20 ms (a plain libevent timer writes to the peer). */
    struct event *traffic = event_new(f.base, -1, EV_PERSIST, on_traffic, &sv[1]);
    struct timeval tv = ms_tv(20);
    event_add(traffic, &tv);
    double t0 = now_ms();
    run_for(f.base, 300);
    event_free(traffic);
    CHECK(wt.calls >= 10);
    /* Due at 50 ms, max_defer 100 ms: it should have fired by 150 ms. */
    if (long_fired)
        fprintf(stderr, "deferrable timer (50 ms, max_defer 100 ms) fired at %.0f ms\n",
                long_at - t0);
    CHECK(long_fired == 1 && long_at - t0 <= 150 + 25);

    su_timer_destroy(t);
    su_root_deregister(f.root, wt.index);
    close(sv[0]);
    close(sv[1]);
    teardown(&f);
}

/* su_msg_create() from another thread increfs the port (su_home_ref()), the
 * loop thread decrefs it when it destroys a delivered message. sofia's own
 * pthread ports make their home thread-safe (su_home_threadsafe() in
 * su_pthread_port_thread(obtain)); evport does not, so the two threads race
 * on a plain sub_ref++/-- and the count drifts. The port's count is 1 (the
 * root's): one lost increment and a delivery frees the port under the root.
 * Bursts of messages from another thread, in a child process (it crashes),
 * until the count drifts or 1 s passes. */
static void regression_cross_thread_refcount(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        struct fixture f = setup();
        loop_thread = pthread_self();
        su_home_t *home = (su_home_t *)port_of(f.root);
        size_t before = su_home_refcount(home), after = before;
        int rounds = 0, ok = 1;
        for (double end = now_ms() + 1000; ok && now_ms() < end; rounds++) {
            enum { N = 20000 };
            msgs_delivered = msgs_on_loop_thread = 0;
            msgs_in_order = 1;
            struct sender s = {.root = f.root, .count = N};
            pthread_t th;
            pthread_create(&th, NULL, sender_main, &s);
            run_until(f.base, &msgs_delivered, N, 500);
            pthread_join(th, NULL);
            after = su_home_refcount(home);
            ok = s.failures == 0 && msgs_delivered == N && msgs_on_loop_thread == N &&
                 msgs_in_order && after == before;
        }
        if (!ok)
            fprintf(stderr, "port refcount %zu before, %zu after round %d (%d delivered)\n",
                    before, after, rounds, msgs_delivered);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    if (WIFSIGNALED(status))
        fprintf(stderr, "cross-thread messages: child killed by signal %d\n",
                WTERMSIG(status));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* The installed libsofia-sip-ua's vtable has two more entries than evport's
 * (su_port_stamp64 at offset 0xf8, su_port_stamp64_offset at 0x100,
 * su_vtable_size 0x108 in su_socket_port's vtable); su_root_stamp64() calls
 * through vtable+0xf8 without checking su_vtable_size, i.e. past the end of
 * evport_vtable. Run in a child process: it crashes or worse. */
static void regression_vtable_too_short(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 2); /* the crash report is noise here */
        struct fixture f = setup();
        su_time64_t stamp = su_root_stamp64(f.root);
        _exit(stamp != 0 ? 0 : 1);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    if (WIFSIGNALED(status))
        fprintf(stderr, "su_root_stamp64(): child killed by signal %d\n", WTERMSIG(status));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- The datagram observer ------------------------------------------------ */

/* The observer sees a datagram's source before the wait's callback reads it,
 * once per datagram (sofia's UDP transport reads one per wakeup), and only
 * on datagram sockets; cleared, it sees nothing. */
struct observed {
    int calls;
    int order_ok;  /* the callback had not yet read when the observer ran */
    int reads;     /* datagrams the callback read */
    uint16_t port; /* source port of the last one */
};
static struct observed observed;

static void on_datagram(const struct sockaddr *from, socklen_t fromlen, void *arg)
{
    CHECK(arg == &observed);
    CHECK(from->sa_family == AF_INET && fromlen >= sizeof(struct sockaddr_in));
    observed.calls++;
    observed.order_ok += observed.calls == observed.reads + 1;
    observed.port = ntohs(((const struct sockaddr_in *)from)->sin_port);
}

static int on_read_one(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
    (void)magic;
    (void)arg;
    char buf[64];
    if (recv(w->fd, buf, sizeof buf, MSG_DONTWAIT) >= 0)
        observed.reads++;
    return 0;
}

static int bound_udp(uint16_t *port)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sin;
    CHECK(bind(s, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(getsockname(s, (struct sockaddr *)&sin, &len) == 0);
    *port = ntohs(sin.sin_port);
    return s;
}

static void datagram_observer(void)
{
    struct fixture f = setup();
    memset(&observed, 0, sizeof observed);
    uint16_t rport, sport;
    int r = bound_udp(&rport), s = bound_udp(&sport);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(rport)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    su_wait_t w;
    CHECK(su_wait_create(&w, r, SU_WAIT_IN) == 0);
    int index = su_root_register(f.root, &w, on_read_one, NULL, 0);
    CHECK(index > 0);
    /* A stream socket next to it: never observed. */
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    struct waiter wt = {.root = f.root, .mode = MODE_READ, .fd_seen = -1};
    su_wait_t w2;
    CHECK(su_wait_create(&w2, sv[0], SU_WAIT_IN) == 0);
    wt.index = su_root_register(f.root, &w2, on_wait, &wt, 0);

    evport_set_datagram_observer(f.root, on_datagram, &observed);
    for (int i = 0; i < 3; i++)
        CHECK(sendto(s, "x", 1, 0, (struct sockaddr *)&to, sizeof to) == 1);
    CHECK(write(sv[1], "y", 1) == 1);
    CHECK(run_until(f.base, &observed.reads, 3, 1000));
    CHECK(run_until(f.base, &wt.calls, 1, 1000));
    CHECK(observed.calls == 3);
    CHECK(observed.order_ok == 3);
    CHECK(observed.port == sport);

    evport_set_datagram_observer(f.root, NULL, NULL);
    CHECK(sendto(s, "x", 1, 0, (struct sockaddr *)&to, sizeof to) == 1);
    CHECK(run_until(f.base, &observed.reads, 4, 1000));
    CHECK(observed.calls == 3);

    CHECK(su_root_deregister(f.root, index) == index);
    CHECK(su_root_deregister(f.root, wt.index) == wt.index);
    teardown(&f);
    close(r);
    close(s);
    close(sv[0]);
    close(sv[1]);
}

/* nta calls su_root_yield() from inside its own timer callback under load
 * (every fifth retransmission). The port must not re-enter libevent's loop
 * from there: libevent would refuse it and log "reentrant invocation" once
 * per timer pass. */
static int yield_fired;
static int libevent_complaints;

static void count_libevent_log(int severity, const char *msg)
{
    (void)severity;
    (void)msg;
    libevent_complaints++;
}

static void on_yielding_timer(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic;
    (void)t;
    su_root_yield((su_root_t *)arg);
    yield_fired++;
}

static void regression_yield_inside_dispatch(void)
{
    struct fixture f = setup();
    event_set_log_callback(count_libevent_log);
    su_timer_t *t = su_timer_create(su_root_task(f.root), 0);
    yield_fired = libevent_complaints = 0;
    CHECK(su_timer_set_interval(t, on_yielding_timer, (su_timer_arg_t *)f.root, 5) == 0);
    evport_rearm(f.root);
    CHECK(run_until(f.base, &yield_fired, 1, 1000));
    CHECK(libevent_complaints == 0);
    /* Outside any callback, yield still reads what is pending. */
    (void)su_root_yield(f.root);
    CHECK(libevent_complaints == 0);
    event_set_log_callback(NULL);
    su_timer_destroy(t);
    teardown(&f);
}

TEST_MAIN(CASE(layout_check), CASE(timers_in_order), CASE(timer_set_from_callback),
          CASE(timers_set_from_callbacks),
          CASE(timer_periodic), CASE(timers_short_and_idle),
          CASE(timers_precise_base), CASE(fd_readiness),
          CASE(unregister_in_callback), CASE(many_waits), CASE(udp_error_revents),
          CASE(hangup_revents), CASE(messages), CASE(message_from_callback),
          CASE(root_step_run_break), CASE(regression_step_leaves_loopexit),
          CASE(regression_no_events_spin), CASE(regression_deferrable_starved),
          CASE(regression_cross_thread_refcount), CASE(regression_vtable_too_short), CASE(datagram_observer),
          CASE(regression_yield_inside_dispatch))
