/* Outbound registration: the switch registers itself, as a SIP client, to
 * every carrier that has a `registration` entry, and keeps it registered.
 *
 * One state machine per entry (struct outreg), all of them in one set that
 * follows the policy: outreg_set_apply() adds, changes and removes entries
 * as a reload says. Each entry owns at most one nta client transaction and
 * two libevent timers; nothing is polled, so an idle entry costs nothing but
 * its memory (about 1 KiB).
 *
 *   registering --200--> active --(half the granted expiry)--> refresh
 *        |                  |  \--(expiry passes unrefreshed)--> expired
 *        |--4xx/5xx/6xx--> failed  --(retry delay)--> registering
 *        |--no answer----> timeout --(retry delay)--> registering
 *   disable()/enabled=false --> disabled (after an un-REGISTER)
 *
 * Call-ID and CSeq live in the store, so they survive reloads and restarts
 * and CSeq only grows. */
#ifndef MOON_SIP_OUTREG_H
#define MOON_SIP_OUTREG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct config;
struct event_base;
struct sipagent;
struct store;
struct outreg;
struct outreg_set;

enum outreg_state {
    OUTREG_REGISTERING,
    OUTREG_ACTIVE,
    OUTREG_EXPIRED,
    OUTREG_FAILED,
    OUTREG_TIMEOUT,
    OUTREG_DISABLED,
};

const char *outreg_state_name(enum outreg_state state);

/* Computes an entry's retry delay from its policy function (`hook_ref`).
 * Returns seconds, or a negative number to fall back to the switch setting.
 * The set takes OUTREG_RETRY_MIN..OUTREG_RETRY_MAX of it, and logs once per
 * entry (again after a reload) when it had to clamp. */
typedef double outreg_retry_h(struct outreg *reg, int hook_ref, void *arg);
#define OUTREG_RETRY_MIN 30
#define OUTREG_RETRY_MAX 600

/* Told of each change of an entry's public state, once per change and in
 * order, from inside the state machine: it must not call into the set
 * (copy what it needs and act later, from the loop). `r` may be freed
 * right after the call (a removed entry done unregistering). A new entry
 * starts in OUTREG_REGISTERING (OUTREG_DISABLED when not enabled) without
 * a call. */
typedef void outreg_observer_h(struct outreg *r, enum outreg_state was,
                               enum outreg_state now, void *arg);

/* REGISTERs go out through `agent` (sipagent_request()). `store` may be
 * NULL (then Call-ID and CSeq do not survive restarts). */
int outreg_set_create(struct outreg_set **sp, struct sipagent *agent, struct event_base *base,
                      struct store *store);

/* Free everything at once, without unregistering (see outreg_set_shutdown). */
void outreg_set_destroy(struct outreg_set *s);

void outreg_set_retry_hook(struct outreg_set *s, outreg_retry_h *h, void *arg);
/* One observer per set; NULL removes it. */
void outreg_set_observer(struct outreg_set *s, outreg_observer_h *h, void *arg);

/* Bring the entries in line with `cfg`: new entries start registering (the
 * first REGISTERs of many entries spread over a short random window),
 * changed ones re-register with their Call-ID kept, removed ones unregister
 * and go, unchanged ones keep state, timers and transaction. The set copies
 * what it needs: cfg may be freed afterwards. O(n log n). */
void outreg_set_apply(struct outreg_set *s, const struct config *cfg);

/* Unregister every registered entry (when send_unregister is on) and call
 * `done` once all have answered or failed; the caller bounds the wait. */
void outreg_set_shutdown(struct outreg_set *s, void (*done)(void *arg), void *arg);

size_t outreg_set_count(const struct outreg_set *s);
struct outreg *outreg_set_at(struct outreg_set *s, size_t i);
/* O(log n). */
struct outreg *outreg_find(struct outreg_set *s, const char *name);

/* Live state. Strings are owned by the entry and valid until it changes. */
const char *outreg_name(const struct outreg *r);
enum outreg_state outreg_state(const struct outreg *r);
int outreg_status(const struct outreg *r);        /* last final status, 0: none */
int outreg_expires(const struct outreg *r);       /* granted, seconds, 0: none */
unsigned outreg_failures(const struct outreg *r); /* consecutive */
const char *outreg_contact(const struct outreg *r);
time_t outreg_next_refresh(const struct outreg *r); /* unix time of the next REGISTER, 0 */
const char *outreg_public_address(const struct outreg *r); /* learned, "" if none */
const char *outreg_last_error(const struct outreg *r);
const char *outreg_call_id(const struct outreg *r);
uint32_t outreg_cseq(const struct outreg *r);
const char *outreg_server(const struct outreg *r);
const char *outreg_username(const struct outreg *r);
/* enum privacy_mode: the entry's `privacy`, or the switch's
 * user_agent_privacy when the entry inherits it. Calls through its gateway
 * follow it too. */
int outreg_privacy(const struct outreg *r);

/* Operator actions. refresh: REGISTER now. disable: unregister and stay
 * disabled until enable() or a reload that changes the entry. */
void outreg_refresh(struct outreg *r);
void outreg_disable(struct outreg *r);
void outreg_enable(struct outreg *r);
/* Log the whole REGISTER exchange of this entry (VOS3000's Registration
 * Trace). */
void outreg_trace(struct outreg *r, bool on);
bool outreg_tracing(const struct outreg *r);

#endif
