/* Unit tests for core/wheel.c: timers fire in due order, never early and at
 * most about a tick late; a callback may re-arm its node or disarm another
 * one due in the same tick; timeouts longer than a revolution wait their
 * rounds; an empty wheel leaves the loop with nothing to do. */
#include "check.h"
#include "wheel.h"

#include <stddef.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct timer {
    struct wheel_node node;
    int id;
    double fired_at;
    int fired;
    struct timer *kill;  /* disarm this one when firing */
    unsigned rearm_ms;   /* re-arm once with this delay */
};

static struct wheel *wheel;
static int order[16], norder;

static void on_fire(struct wheel_node *node, void *arg)
{
    (void)arg;
    struct timer *t = (struct timer *)((char *)node - offsetof(struct timer, node));
    t->fired++;
    t->fired_at = now_ms();
    if (norder < 16)
        order[norder++] = t->id;
    if (t->kill)
        wheel_del(wheel, &t->kill->node);
    if (t->rearm_ms) {
        wheel_add(wheel, node, t->rearm_ms);
        t->rearm_ms = 0;
    }
}

static struct event_base *setup(unsigned tick_ms, unsigned slots)
{
    struct event_base *base = event_base_new();
    CHECK(base != NULL);
    wheel = wheel_create(base, tick_ms, slots, on_fire, NULL);
    CHECK(wheel != NULL);
    norder = 0;
    return base;
}

static void teardown(struct event_base *base)
{
    wheel_destroy(wheel);
    event_base_free(base);
}

static void fires_in_order_never_early(void)
{
    struct event_base *base = setup(10, 8);
    struct timer t[3];
    memset(t, 0, sizeof t);
    unsigned delay[3] = {120, 30, 70};
    double t0 = now_ms();
    for (int i = 0; i < 3; i++) {
        t[i].id = i;
        wheel_add(wheel, &t[i].node, delay[i]);
        CHECK(wheel_armed(&t[i].node));
    }
    /* The loop returns when nothing is armed: the wheel stops ticking. */
    CHECK(event_base_dispatch(base) == 1);
    CHECK(norder == 3);
    CHECK(order[0] == 1 && order[1] == 2 && order[2] == 0);
    for (int i = 0; i < 3; i++) {
        CHECK(t[i].fired == 1);
        CHECK(!wheel_armed(&t[i].node));
        double late = t[i].fired_at - t0 - delay[i];
        CHECK(late >= -0.5);   /* never early */
        CHECK(late <= 10 + 30); /* a tick, plus scheduling slack */
    }
    teardown(base);
}

static void callback_rearms_and_disarms(void)
{
    struct event_base *base = setup(10, 16);
    struct timer a = {.id = 1, .rearm_ms = 40}, b = {.id = 2}, c = {.id = 3};
    a.kill = &b; /* due in the same tick as a: disarmed before its turn */
    wheel_add(wheel, &a.node, 20);
    wheel_add(wheel, &b.node, 20);
    wheel_add(wheel, &c.node, 200);
    wheel_del(wheel, &c.node);
    wheel_del(wheel, &c.node); /* twice is harmless */
    CHECK(event_base_dispatch(base) == 1);
    CHECK(a.fired == 2);
    CHECK(b.fired == 0);
    CHECK(c.fired == 0);
    teardown(base);
}

static void longer_than_a_revolution(void)
{
    /* 4 slots of 10 ms: 95 ms is more than two revolutions. */
    struct event_base *base = setup(10, 4);
    struct timer a = {.id = 1}, b = {.id = 2};
    double t0 = now_ms();
    wheel_add(wheel, &a.node, 95);
    wheel_add(wheel, &b.node, 15);
    CHECK(event_base_dispatch(base) == 1);
    CHECK(b.fired == 1 && a.fired == 1);
    CHECK(order[0] == 2 && order[1] == 1);
    CHECK(a.fired_at - t0 >= 95 - 0.5);
    teardown(base);
}

static void rearm_moves_the_node(void)
{
    struct event_base *base = setup(10, 8);
    struct timer a = {.id = 1};
    double t0 = now_ms();
    wheel_add(wheel, &a.node, 20);
    wheel_add(wheel, &a.node, 150); /* re-armed before it fired: once, later */
    CHECK(event_base_dispatch(base) == 1);
    CHECK(a.fired == 1);
    CHECK(a.fired_at - t0 >= 150 - 0.5);
    teardown(base);
}

TEST_MAIN(CASE(fires_in_order_never_early), CASE(callback_rearms_and_disarms),
          CASE(longer_than_a_revolution), CASE(rearm_moves_the_node))
