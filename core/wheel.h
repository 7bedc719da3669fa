/* wheel: many coarse timers on one libevent timer (a hashed timing wheel).
 *
 * A libevent timer is a 128-byte struct event per owner; a call or a
 * binding that only needs "about N seconds from now, give or take a tick"
 * can embed a 24-byte wheel_node instead. The wheel ticks every tick_ms
 * while any node is armed (not at all when none is), and a tick looks only
 * at the nodes of one slot: O(armed / slots) per tick. A node fires on the
 * first tick at or after its due time, so up to one tick late, never early.
 *
 * Nodes are owned by their embedder; the wheel only links them. Firing
 * unlinks the node first, so the callback may re-arm it, free it, or
 * disarm or free any other node. */
#ifndef MOON_WHEEL_H
#define MOON_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct wheel;

struct wheel_node {
    struct wheel_node *prev, *next; /* NULL when not armed */
    uint64_t due;                   /* tick number */
};

typedef void wheel_fire_f(struct wheel_node *node, void *arg);

/* Returns NULL when out of memory. `slots` is rounded up to a power of 2. */
struct wheel *wheel_create(struct event_base *base, unsigned tick_ms, unsigned slots,
                           wheel_fire_f *fire, void *arg);

/* Arm (or re-arm) `node` to fire `ms` from now. O(1). */
void wheel_add(struct wheel *w, struct wheel_node *node, unsigned ms);

/* Disarm; a node that is not armed is left alone. O(1). */
void wheel_del(struct wheel *w, struct wheel_node *node);

static inline bool wheel_armed(const struct wheel_node *node)
{
    return node->next != NULL;
}

/* Nodes still armed are left unlinked. NULL is allowed. */
void wheel_destroy(struct wheel *w);

#endif
