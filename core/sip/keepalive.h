/* NAT keepalive of endpoint bindings (endpoint_keepalive, _interval,
 * _misses). Part of the registrar (see registrar.h for what goes on the
 * wire); nothing outside core/sip/ includes it.
 *
 * Every binding behind NAT is pinged once per round of
 * endpoint_keepalive_interval seconds: the rounds are a ring of one slot a
 * second, each binding linked in one slot through the keepalive_node it
 * embeds, and one persistent one-second libevent timer walks the ring.
 * "options" sends an OPTIONS on nta (a binding whose last one is still
 * unanswered waits for nta's verdict) and removes the binding after
 * endpoint_keepalive_misses unanswered in a row; "crlf" writes CRLF CRLF
 * with tport on the binding's own socket or connection; "off" sends nothing.
 *
 * Owns: the ring (one pointer a slot) and the OPTIONS transactions in
 * flight, one per node at most (keepalive_release() destroys it). Nodes are
 * owned by their bindings. Costs: a tick is O(bindings in its slot);
 * keepalive_refresh() and keepalive_release() are O(1); a new interval
 * rebuilds the ring, O(NAT bindings).
 *
 * Threads: the loop's. */
#ifndef MOON_SIP_KEEPALIVE_H
#define MOON_SIP_KEEPALIVE_H

#include <stdbool.h>
#include <stdint.h>

#include <sofia-sip/nta.h>

struct event_base;
struct sip_settings;
struct binding_set;
struct keepalive;

/* Embedded in each binding. Zeroed: in no slot, nothing in flight. */
struct keepalive_node {
    struct keepalive_node *prev, *next; /* the slot's list */
    nta_outgoing_t *orq;                /* the OPTIONS in flight */
    uint16_t slot;
    uint8_t linked;
    uint8_t misses; /* unanswered in a row */
};

/* OPTIONS go out on `leg`, CRLF on nta's transports; removals go through
 * binding_remove() on bindings of `set`. Nothing is sent before the first
 * keepalive_apply(). Returns 0 or -ENOMEM. */
int keepalive_create(struct keepalive **kp, nta_agent_t *nta, nta_leg_t *leg,
                     su_root_t *root, struct event_base *base, struct binding_set *set);
/* Nodes still linked are left as they are. NULL is a no-op. */
void keepalive_destroy(struct keepalive *ka);

/* The policy's settings. A new interval rebuilds the ring, each binding
 * keeping its place in the round, scaled; a new mode applies from each
 * binding's next slot, and every binding's misses start again. */
void keepalive_apply(struct keepalive *ka, const struct sip_settings *s);

/* A binding was registered (or loaded): its misses start again, and it is
 * pinged (first about one interval from now; a node already in the ring
 * keeps its slot) when `nat`, not otherwise. `ka` may be NULL. */
void keepalive_refresh(struct keepalive *ka, struct keepalive_node *n, bool nat);

/* The binding goes: out of the ring, its OPTIONS in flight destroyed
 * (unanswered, uncounted). `ka` may be NULL when the node was never linked. */
void keepalive_release(struct keepalive *ka, struct keepalive_node *n);

#endif
