/* Nonce-count tracking. See nonce.h.
 *
 * A ring of entries in first-use order, indexed by a chained hash on the
 * nonce's random id (already uniformly random, so its low bits are the
 * bucket). Evicting the ring's next slot unlinks it from its chain; chains
 * are short because the table is never more than full. */
#include "sip/nonce.h"

#include <stdint.h>
#include <stdlib.h>

#define NIL UINT32_MAX

struct entry {
    unsigned long long id;
    long long issued;
    uint32_t nc;
    uint32_t next; /* in the bucket's chain */
};

struct nctrack {
    struct entry *ring;
    uint32_t *buckets;
    uint32_t mask; /* capacity - 1 */
    uint32_t head; /* next ring slot to fill */
    uint32_t count;
    long long watermark;
};

struct nctrack *nctrack_create(unsigned capacity, long long since)
{
    uint32_t cap = 16;
    while (cap < capacity && cap < (1u << 30))
        cap <<= 1;
    struct nctrack *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ring = calloc(cap, sizeof *t->ring);
    t->buckets = malloc(cap * sizeof *t->buckets);
    if (!t->ring || !t->buckets) {
        nctrack_destroy(t);
        return NULL;
    }
    for (uint32_t i = 0; i < cap; i++)
        t->buckets[i] = NIL;
    t->mask = cap - 1;
    t->watermark = since;
    return t;
}

void nctrack_destroy(struct nctrack *t)
{
    if (!t)
        return;
    free(t->ring);
    free(t->buckets);
    free(t);
}

unsigned nctrack_count(const struct nctrack *t)
{
    return t->count;
}

static void unlink_slot(struct nctrack *t, uint32_t slot)
{
    uint32_t *p = &t->buckets[t->ring[slot].id & t->mask];
    while (*p != NIL && *p != slot)
        p = &t->ring[*p].next;
    if (*p == slot)
        *p = t->ring[slot].next;
}

enum nctrack_verdict nctrack_use(struct nctrack *t, unsigned long long id,
                                 long long issued, unsigned long nc)
{
    uint32_t b = (uint32_t)(id & t->mask);
    for (uint32_t i = t->buckets[b]; i != NIL; i = t->ring[i].next) {
        struct entry *e = &t->ring[i];
        if (e->id == id && e->issued == issued) {
            if (nc <= e->nc)
                return NCTRACK_REPLAY;
            e->nc = (uint32_t)nc;
            return NCTRACK_OK;
        }
    }
    if (issued <= t->watermark)
        return NCTRACK_FORGOTTEN;
    uint32_t slot = t->head;
    t->head = (t->head + 1) & t->mask;
    if (t->count > t->mask) { /* full: forget the oldest-used entry */
        unlink_slot(t, slot);
        if (t->ring[slot].issued > t->watermark)
            t->watermark = t->ring[slot].issued;
    } else {
        t->count++;
    }
    t->ring[slot] = (struct entry){
        .id = id, .issued = issued, .nc = (uint32_t)nc, .next = t->buckets[b]};
    t->buckets[b] = slot;
    return NCTRACK_OK;
}
