/* What the registrar's modules share (registrar.c, account.c, binding.c,
 * guard.c, keepalive.c); nothing outside core/sip/ includes it.
 *
 * The clocks, the one place they tell the event port that sofia's timers
 * may have moved, the answer path of REGISTER checks (a transaction or the
 * stateless request), and the start-up walk over a store database that
 * drops dead records. Everything here belongs to the loop's thread; nothing
 * here allocates except registrar_store_load() (its list of dead keys,
 * freed before it returns). */
#ifndef MOON_SIP_REGISTRAR_INTERNAL_H
#define MOON_SIP_REGISTRAR_INTERNAL_H

#include "evport.h"
#include "store.h"

#include <time.h>

#include <event2/event.h>
#include <sofia-sip/nta.h>

static inline long long registrar_now_s(void)
{
    return (long long)time(NULL);
}

static inline long long registrar_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* nta's timers live in sofia's queue, which the port re-reads only after its
 * own callbacks: after acting from a libevent callback of ours, tell it.
 * Every module of the registrar goes through this one helper. NULL root (unit
 * tests without nta) does nothing. */
static inline void registrar_kick(su_root_t *root)
{
    if (root)
        evport_rearm(root);
}

/* Arm a libevent timer `s` seconds from now (negative: now). */
static inline void registrar_arm_seconds(struct event *ev, double s)
{
    if (s < 0)
        s = 0;
    struct timeval tv = {.tv_sec = (time_t)s,
                         .tv_usec = (suseconds_t)((s - (double)(time_t)s) * 1e6)};
    evtimer_add(ev, &tv);
}

/* Where the answer to a REGISTER check or an authentication goes: a server
 * transaction, or (stateless, from the prefilter) the request message
 * itself, which the answer consumes. Either way one answer per request. */
struct registrar_reply {
    nta_incoming_t *irq; /* NULL: stateless */
    nta_agent_t *nta;
    msg_t *msg;
};

void registrar_answer(const struct registrar_reply *to, int status, const char *phrase,
                      tag_type_t tag, tag_value_t value, ...);

/* The same with the answer's extra headers as text (lines each ending in
 * CRLF): a stateless answer is then written as text (rawreply.h), without
 * sofia's message objects. */
void registrar_answer_text(const struct registrar_reply *to, int status,
                           const char *phrase, const char *headers);

/* What a start-up visitor decides about one stored record. */
enum registrar_load {
    REGISTRAR_LOAD_KEEP,    /* kept */
    REGISTRAR_LOAD_COUNTED, /* kept, and counted as loaded in the log line */
    REGISTRAR_LOAD_DROP,    /* deleted once the walk is over */
};
typedef enum registrar_load registrar_load_h(const void *key, size_t klen,
                                             uint8_t version, const void *val,
                                             size_t vlen, void *arg);

/* Walk every record of `db`, delete those `fn` drops (store_foreach()
 * forbids writes while it runs, so their keys are collected first), and log
 * the counts when any. O(records); the deletes are staged, committed with
 * the turn. */
void registrar_store_load(struct store *s, enum store_db db, registrar_load_h *fn,
                          void *arg);

#endif
