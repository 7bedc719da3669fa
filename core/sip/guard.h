/* Failed authentications and the suspensions they bring (VOS3000
 * SS_ENDPOINT_REGISTER_RETRY/_SUSPEND), by account name and by source IP.
 * Part of the registrar (see registrar.h); nothing outside core/sip/
 * includes it.
 *
 * After `retry` failures within REGISTRAR_FAILURE_WINDOW seconds, a name or
 * an IP is suspended for `suspend` seconds. Unknown account names are
 * counted like known ones, so that answers cannot tell them apart.
 *
 * Owns: one chained hash table of entries (40 bytes plus the name
 * each, at most 200,000), and a libevent timer that sweeps it every minute.
 * Costs: every call is O(1) on average, except guard_suspensions() and the
 * sweep, O(entries). Suspensions are kept in the store (STORE_SUSPEND,
 * key: 'a' + account name or 's' + source IP, value v1: u64 suspended until,
 * unix seconds), staged when they start or end; guard_create() loads them.
 *
 * Times are unix seconds, given by the caller. Threads: the loop's. */
#ifndef MOON_SIP_GUARD_H
#define MOON_SIP_GUARD_H

#include "sip/registrar.h"

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct store;
struct guard;

/* The kind of a name; the value is the first byte of its store key. */
enum guard_kind { GUARD_ACCOUNT = 'a', GUARD_SOURCE = 's' };

/* `base` (may be NULL: no sweep timer) and `store` (may be NULL: nothing
 * durable). Loads the stored suspensions still in force and drops the
 * others. Returns 0 or -ENOMEM. */
int guard_create(struct guard **gp, struct event_base *base, struct store *store);
void guard_destroy(struct guard *g); /* NULL is a no-op */

/* endpoint_register_retry and endpoint_register_suspend (defaults 6, 180);
 * suspend 0 suspends nothing. */
void guard_set_limits(struct guard *g, int retry, int suspend);

/* Is the name suspended at `now`? An expired suspension is lifted on the
 * way. */
bool guard_suspended(struct guard *g, enum guard_kind kind, const char *name,
                     long long now);

/* A failed authentication by `user` from `ip`. `attempt` fingerprints the
 * credentials tried: failures are answered statelessly, so a retransmission
 * of the same request (its answer lost) comes again, and the same attempt
 * as the last one counts once. Returns true when either is suspended now. */
bool guard_failure(struct guard *g, const char *user, const char *ip, long long now,
                   uint64_t attempt);

/* A successful authentication: the account's failures start again. */
void guard_success(struct guard *g, const char *user);

/* An account's failures in the window and the end of its suspension (0:
 * none), at `now`. */
void guard_account(struct guard *g, const char *name, long long now, unsigned *failures,
                   long long *until);

/* Visit the suspensions in force at `now` (kind "account" or "source"). */
int guard_suspensions(struct guard *g, long long now, registrar_suspension_h *fn,
                      void *arg);

/* Lift the suspension of an account name and of a source IP of that text,
 * and forget their failures. Returns the number lifted (0 to 2). */
int guard_lift(struct guard *g, const char *name_or_ip, long long now);

/* Forget what has aged out and end the suspensions that are over; the
 * timer calls it. */
void guard_sweep(struct guard *g, long long now);

#endif
