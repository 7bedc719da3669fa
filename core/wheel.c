/* A hashed timing wheel on one libevent timer. See wheel.h. */
#include "wheel.h"
#include <stdlib.h>
#include <time.h>
#include <event2/event.h>

struct wheel {
    struct event *tick_ev;
    unsigned tick_ms;
    uint64_t mask;             /* slots - 1 */
    struct wheel_node *slots;  /* sentinels of circular lists */
    uint64_t done;             /* the last tick processed */
    size_t armed;
    wheel_fire_f *fire;
    void *arg;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Tick t is processed once now_tick() >= t, i.e. at t * tick_ms or later. */
static uint64_t now_tick(const struct wheel *w)
{
    return now_ms() / w->tick_ms;
}

static void link_before(struct wheel_node *at, struct wheel_node *n)
{
    n->prev = at->prev;
    n->next = at;
    at->prev->next = n;
    at->prev = n;
}

static void unlink_node(struct wheel_node *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

static void start_ticking(struct wheel *w)
{
    struct timeval tv = {w->tick_ms / 1000, (w->tick_ms % 1000) * 1000};
    event_add(w->tick_ev, &tv);
}

/* Process every tick from the last one done up to now; a loop that fell
 * behind by a whole revolution visits each slot once. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct wheel *w = arg;
    (void)fd;
    (void)what;
    uint64_t now = now_tick(w), from = w->done + 1;
    if (now - w->done > w->mask + 1)
        from = now - w->mask;
    for (uint64_t t = from; t <= now; t++) {
        struct wheel_node *slot = &w->slots[t & w->mask];
        if (slot->next == slot)
            continue;
        /* Move the slot's nodes to a local list: callbacks may arm nodes
         * into this very slot, or disarm nodes still waiting here. */
        struct wheel_node pending = {.prev = slot->prev, .next = slot->next};
        pending.next->prev = &pending;
        pending.prev->next = &pending;
        slot->next = slot->prev = slot;
        while (pending.next != &pending) {
            struct wheel_node *n = pending.next;
            unlink_node(n);
            if (n->due > now) {
                link_before(&w->slots[n->due & w->mask], n); /* a later round */
                continue;
            }
            w->armed--;
            w->fire(n, w->arg);
        }
    }
    w->done = now;
    if (w->armed)
        start_ticking(w);
}

struct wheel *wheel_create(struct event_base *base, unsigned tick_ms, unsigned slots,
                           wheel_fire_f *fire, void *arg)
{
    unsigned n = 1;
    while (n < slots)
        n <<= 1;
    struct wheel *w = calloc(1, sizeof *w);
    if (!w || !(w->slots = calloc(n, sizeof *w->slots)) ||
        !(w->tick_ev = evtimer_new(base, on_tick, w))) {
        if (w)
            free(w->slots);
        free(w);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++)
        w->slots[i].next = w->slots[i].prev = &w->slots[i];
    w->tick_ms = tick_ms ? tick_ms : 1;
    w->mask = n - 1;
    w->fire = fire;
    w->arg = arg;
    w->done = now_tick(w);
    return w;
}

void wheel_add(struct wheel *w, struct wheel_node *node, unsigned ms)
{
    if (wheel_armed(node))
        wheel_del(w, node);
    if (!w->armed) {
        /* Idle until now: nothing to catch up on. */
        w->done = now_tick(w);
        start_ticking(w);
    }
    /* The first tick that starts at or after now + ms: never early. */
    node->due = (now_ms() + 1 + ms + w->tick_ms - 1) / w->tick_ms; /* +1: ms truncated */
    if (node->due <= w->done)
        node->due = w->done + 1;
    link_before(&w->slots[node->due & w->mask], node);
    w->armed++;
}

void wheel_del(struct wheel *w, struct wheel_node *node)
{
    if (!wheel_armed(node))
        return;
    unlink_node(node);
    if (--w->armed == 0)
        event_del(w->tick_ev);
}

void wheel_destroy(struct wheel *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i <= w->mask; i++)
        while (w->slots[i].next != &w->slots[i])
            unlink_node(w->slots[i].next);
    event_free(w->tick_ev);
    free(w->slots);
    free(w);
}
