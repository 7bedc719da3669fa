/* The overload detector's decision: hysteresis on the receive queue's fill
 * (enter after OVERLOAD_ENTER_TICKS full samples in a row, one of them
 * with datagrams dropped; leave after OVERLOAD_LEAVE_TICKS empty ones), lag
 * deciding nothing, shedding only
 * while overloaded and switched on, the counters; and the sampling timer
 * reading a real UDP socket's queue through the event port. */
#include "check.h"

#include "evport.h"
#include "metrics.h"
#include "overload.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_wait.h>

/* Feed `n` samples of `fill`, each with `dropped` datagrams dropped; how
 * many of them changed the state. */
static int feed_drops(struct overload *ov, int n, double fill, uint64_t dropped)
{
    int changes = 0;
    for (int i = 0; i < n; i++)
        changes += overload_sample(ov, fill, dropped, 0);
    return changes;
}

static int feed(struct overload *ov, int n, double fill)
{
    return feed_drops(ov, n, fill, 1);
}

static void enters_only_after_a_full_run(void)
{
    struct overload *ov = overload_create(NULL, NULL);
    CHECK(!overload_active(ov));
    /* Spikes shorter than the run, and fills under the threshold: nothing. */
    for (int i = 0; i < 10; i++) {
        CHECK(feed(ov, OVERLOAD_ENTER_TICKS - 1, 1.0) == 0);
        CHECK(feed(ov, 1, OVERLOAD_ENTER_FILL - 0.01) == 0);
    }
    CHECK(feed(ov, 100, OVERLOAD_ENTER_FILL - 0.01) == 0);
    CHECK(!overload_active(ov));
    /* A lag alone decides nothing. */
    CHECK(!overload_sample(ov, 0, 0, 5.0));
    CHECK(!overload_active(ov));
    /* A run of full samples: overloaded at its last sample, once. */
    CHECK(feed(ov, OVERLOAD_ENTER_TICKS - 1, OVERLOAD_ENTER_FILL) == 0);
    CHECK(feed(ov, 1, OVERLOAD_ENTER_FILL) == 1);
    CHECK(overload_active(ov));
    CHECK(feed(ov, 50, 1.0) == 0);
    struct overload_stats st;
    overload_stats(ov, &st);
    CHECK(st.active && st.episodes == 1 && st.fill == 1.0 && st.fill_max == 1.0);
    CHECK(st.lag_max == 5.0);
    overload_destroy(ov);
}

static void a_full_queue_without_drops_is_worked_off(void)
{
    struct overload *ov = overload_create(NULL, NULL);
    /* Full, but the kernel had room: a hiccup being worked off. */
    CHECK(feed_drops(ov, 100, 1.0, 0) == 0);
    CHECK(!overload_active(ov));
    /* Full all along, and now drops: overloaded at once. */
    CHECK(feed_drops(ov, 1, 1.0, 500) == 1);
    CHECK(feed(ov, OVERLOAD_LEAVE_TICKS, 0) == 1);
    /* Drops too long before the run no longer count. */
    feed_drops(ov, 1, 1.0, 3);
    CHECK(feed_drops(ov, OVERLOAD_ENTER_TICKS, 0.2, 0) == 0);
    CHECK(feed_drops(ov, OVERLOAD_ENTER_TICKS + 5, 1.0, 0) == 0);
    /* Drops at the start of a run: overloaded at its end. */
    feed_drops(ov, 1, 0, 0);
    CHECK(feed_drops(ov, 1, 1.0, 7) == 0);
    CHECK(feed_drops(ov, OVERLOAD_ENTER_TICKS - 2, 1.0, 0) == 0);
    CHECK(feed_drops(ov, 1, 1.0, 0) == 1);
    struct overload_stats st;
    overload_stats(ov, &st);
    CHECK(st.dropped == 500 + OVERLOAD_LEAVE_TICKS + 3 + 7);
    CHECK(st.episodes == 2 && st.active);
    overload_destroy(ov);
}

static void leaves_only_after_an_empty_run(void)
{
    struct overload *ov = overload_create(NULL, NULL);
    feed(ov, OVERLOAD_ENTER_TICKS, 1.0);
    CHECK(overload_active(ov));
    /* Between the thresholds, or empty for less than the run: still on. */
    CHECK(feed(ov, 100, OVERLOAD_LEAVE_FILL) == 0);
    for (int i = 0; i < 10; i++) {
        CHECK(feed(ov, OVERLOAD_LEAVE_TICKS - 1, 0) == 0);
        CHECK(feed(ov, 1, 0.3) == 0);
    }
    CHECK(overload_active(ov));
    CHECK(feed(ov, OVERLOAD_LEAVE_TICKS - 1, 0) == 0);
    CHECK(feed(ov, 1, 0) == 1);
    CHECK(!overload_active(ov));
    /* Entering again takes a whole run again. */
    CHECK(feed(ov, OVERLOAD_ENTER_TICKS - 1, 1.0) == 0);
    CHECK(feed(ov, 1, 1.0) == 1);
    struct overload_stats st;
    overload_stats(ov, &st);
    CHECK(st.episodes == 2);
    overload_destroy(ov);
}

static void sheds_while_overloaded_and_on(void)
{
    struct overload *ov = overload_create(NULL, NULL);
    CHECK(!overload_shedding(NULL) && !overload_active(NULL));
    CHECK(!overload_shedding(ov));
    feed(ov, OVERLOAD_ENTER_TICKS, 1.0);
    CHECK(overload_shedding(ov));
    overload_shed(ov);
    overload_shed(ov);
    overload_set_shedding(ov, false);
    CHECK(overload_active(ov) && !overload_shedding(ov));
    overload_set_shedding(ov, true);
    CHECK(overload_shedding(ov));
    feed(ov, OVERLOAD_LEAVE_TICKS, 0);
    CHECK(!overload_shedding(ov));
    struct overload_stats st;
    overload_stats(ov, &st);
    CHECK(st.shed == 2 && !st.active);
    overload_destroy(ov);
}

/* ---- The timer, on a real socket ------------------------------------------- */

static int on_readable(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
    (void)magic;
    (void)w;
    (void)arg;
    return 0; /* never reads: the queue fills */
}

struct sender {
    int fd;
    struct sockaddr_in to;
};

/* More than the small receive buffer takes: the kernel drops the rest. */
static void on_send(evutil_socket_t fd, short what, void *arg)
{
    struct sender *s = arg;
    (void)fd;
    (void)what;
    char data[512] = "x";
    for (int i = 0; i < 64; i++)
        sendto(s->fd, data, sizeof data, MSG_DONTWAIT, (struct sockaddr *)&s->to,
               sizeof s->to);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void timer_reads_the_socket_queue(void)
{
    su_init();
    struct event_base *base = event_base_new();
    su_root_t *root = evport_root_create(base, NULL);
    CHECK(root != NULL);
    int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);
    int small = 4096; /* the kernel doubles it */
    setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(0x7f000001)};
    socklen_t len = sizeof sin;
    CHECK(bind(rx, (struct sockaddr *)&sin, sizeof sin) == 0);
    getsockname(rx, (struct sockaddr *)&sin, &len);
    su_wait_t w;
    su_wait_create(&w, rx, SU_WAIT_IN);
    /* Registered but never readable for the port (no events asked). */
    w.events = 0;
    CHECK(su_root_register(root, &w, on_readable, NULL, 0) > 0);
    int fds[4];
    CHECK(evport_datagram_fds(root, fds, 4) == 1 && fds[0] == rx);
    struct overload *ov = overload_create(base, root);
    /* After the first sample, which reads the drop counters' start. */
    struct sender sender = {.fd = tx, .to = sin};
    struct event *send = evtimer_new(base, on_send, &sender);
    struct timeval at = {0, OVERLOAD_TICK_MS * 1500};
    evtimer_add(send, &at);
    struct event *stop = evtimer_new(base, on_stop, base);
    int stop_ms = (OVERLOAD_ENTER_TICKS + 4) * OVERLOAD_TICK_MS;
    struct timeval tv = {stop_ms / 1000, stop_ms % 1000 * 1000};
    evtimer_add(stop, &tv);
    event_base_dispatch(base);
    struct overload_stats st;
    overload_stats(ov, &st);
    CHECK(st.fill >= OVERLOAD_ENTER_FILL);
    CHECK(st.dropped > 0);
    CHECK(st.active && st.episodes == 1);
    overload_destroy(ov);
    event_free(stop);
    event_free(send);
    su_root_unregister(root, &w, on_readable, NULL);
    su_root_destroy(root);
    close(rx);
    close(tx);
    event_base_free(base);
    metrics_free_all();
    su_deinit();
}

TEST_MAIN(CASE(enters_only_after_a_full_run),
          CASE(a_full_queue_without_drops_is_worked_off),
          CASE(leaves_only_after_an_empty_run), CASE(sheds_while_overloaded_and_on),
          CASE(timer_reads_the_socket_queue))
