/* Calls: the signalling B2BUA.
 *
 * Each call is an A-leg (the caller's INVITE, taken from a mapping gateway)
 * and a B-leg (our own INVITE to a routing gateway), each a dialog of its
 * own in nta: its own Call-ID, tags, CSeq and Via. SDP passes through
 * unchanged; there is no media.
 *
 *   routing --> calling --1xx--> proceeding --2xx--> answered --BYE--> (end)
 *      |           |                  |
 *      |           +---- failure (408 480 500 502 503 504, nta's own 408/503,
 *      |                 invite_timeout, call_progress_timeout) --> next gateway
 *      +--- no usable gateway left --> 503 (or the last failure) to the caller
 *
 * ACK of 2xx: the switch ACKs the B-leg's 2xx as soon as it arrives and
 * relays the 2xx to the caller, whose ACK ends the A-leg's transaction (nta
 * retransmits our 2xx until then). Hop-by-hop ACKs keep a lost ACK on one
 * side from tearing down the other. An offerless INVITE or re-INVITE (the
 * offer in the 2xx, the answer in the ACK) is the exception: our ACK to
 * the side that made the offer waits for the other side's ACK and carries
 * its answer (bare if it never comes, and then the call ends). A 2xx sent
 * again after our ACK (ours was lost) gets the same ACK again: nta's ACK
 * transaction answers it until 64*T1 after it was sent.
 *
 * Target refresh: a re-INVITE or UPDATE with a Contact, or the 2xx to ours,
 * moves where later requests on that leg go (the carrier's leg through
 * its gateway's request_address).
 *
 * Loops: our B-leg Call-IDs end with a random id of this process; an
 * INVITE that carries it is one of our own calls coming back and gets 482
 * Loop Detected. Max-Forwards is decremented on the B-leg (483 at 0).
 *
 * The caller's CANCEL cancels the B-leg (nta sends the CANCEL once the
 * gateway has sent a provisional answer) and the caller gets 487 at once; a
 * 2xx that crosses the CANCEL is ACKed and BYEd.
 *
 * A BYE from either side is answered 200 and a BYE goes on the other leg;
 * re-INVITE, UPDATE and INFO inside the dialog are relayed to the other leg
 * and their answers back, except a re-INVITE or UPDATE that only refreshes
 * its leg's session timer, which the switch answers itself.
 *
 * Session timers (RFC 4028, call_timer.c): each leg negotiates its own
 * (sip.session_ttl, sip.session_min_se); the switch refreshes the legs that
 * ask it to (every session_ttl / sip.session_update_segment, UPDATE or
 * re-INVITE) and watches the others' refreshes. A failed refresh or a
 * missing one ends the call (BYE on both legs, CDR hangup "switch" with
 * the reason). A call with a leg that runs no timer ends after
 * sip.no_timer_reinvite_interval (0: no limit; alias max_call_duration), so
 * no call stays up for ever after a lost BYE; the limit is read at the
 * caller's ACK.
 *
 * Gateways: the gateway module (gateway.h) says which mapping gateway an
 * INVITE comes through, whether a routing gateway can take a call (online,
 * registered, under its line limit), counts the calls through each, and
 * which statuses fail over; routing_next() skips the unusable ones.
 *
 * Each call writes one CDR (cdr.h) when it ends.
 *
 * Memory: one struct call (about 1.9 KiB, most of it the CDR's fixed
 * fields) and nta's two legs (the rest, about 3.5 KiB): about 5.6 KiB per
 * answered call once its INVITE transactions are gone (measured with
 * scripts/bench-calls: 1,000 calls held; the caller's INVITE is let go at
 * the answer, which took it down from 12 KiB). Each
 * transaction holds its messages for up to 64*T1 after it ends, so a burst
 * costs more while it lasts.
 * Threads: everything belongs to the loop's thread. */
#ifndef MOON_SIP_CALL_H
#define MOON_SIP_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>

#include "routing.h"

struct config;
struct event_base;
struct gw_set;
struct sipagent;
struct store;
struct calls;
struct call_route;

/* Create the call module. `store` may be NULL (no CDRs). `gws` is the
 * gateway module, which must outlive the call module (destroy calls first);
 * its owner applies each policy set to it. `root` is the evport root,
 * re-armed after acting from our own timers. Returns 0 or -ENOMEM. */
int calls_create(struct calls **csp, struct sipagent *agent, su_root_t *root,
                 struct event_base *base, struct store *store, struct gw_set *gws);

/* Free everything at once: calls still up are dropped without BYE (use
 * calls_shutdown first). Route hooks still running are orphaned: their
 * call_route_done() only frees. NULL is a no-op. */
void calls_destroy(struct calls *cs);

/* Follow the policy set `cfg`, which must stay valid until the next call
 * (the engine's running config). Calls in progress keep their gateway
 * names and look definitions up again at each attempt. */
void calls_apply(struct calls *cs, const struct config *cfg);

/* Accounts: an INVITE from outside every static mapping gateway is
 * authenticated against them (registrar_authenticate), and a call to an
 * account with a binding goes to that binding before any gateway. */
struct registrar;
void calls_set_registrar(struct calls *cs, struct registrar *r);

/* The INVITE handler for sipagent_set_method_handler(); arg is the module.
 * Returns 0 (taken) or a status for the agent to answer with. */
int calls_on_invite(nta_incoming_t *irq, const sip_t *sip, void *arg);

/* End every call (BYE the answered ones on both legs, 503 and CANCEL the
 * others), refuse new ones, and call `done` once every BYE is answered or
 * failed (at once when there are none). The caller bounds the wait. */
void calls_shutdown(struct calls *cs, void (*done)(void *arg), void *arg);

/* ---- Hooks installed by the policy engine --------------------------------- */

/* A new call asks its route: return false when no hook is defined (the call
 * uses prefix and priority routing), or true to take the request: then
 * call_route_done() must follow, now or later. */
typedef bool calls_route_h(struct call_route *rq, void *arg);
void calls_set_route_hook(struct calls *cs, calls_route_h *h, void *arg);

const char *call_route_caller(const struct call_route *rq);
const char *call_route_callee(const struct call_route *rq);
const char *call_route_mapping_gateway(const struct call_route *rq);

/* The hook's answer: gateway names in the order to try (copied), or n = 0
 * for prefix and priority routing. Frees rq; when the call ended meanwhile,
 * only frees. */
void call_route_done(struct call_route *rq, const char *const *names, size_t n);

/* The callee rewrite (string.gsub from the engine); NULL: the C subset. */
void calls_set_rewrite_hook(struct calls *cs, routing_rewrite_h *h, void *arg);

/* ---- Live view ----------------------------------------------------------- */

size_t calls_count(const struct calls *cs);

struct call_info {
    uint64_t id;
    const char *state; /* "routing", "calling", "proceeding", "answered", "ending" */
    const char *caller, *callee, *routed_callee;
    const char *mapping_gateway, *routing_gateway; /* "" when none yet */
    const char *call_id; /* the caller's */
    long long start, answer; /* unix seconds; answer 0: not answered */
};

/* Visit every call in progress (oldest first). Stop when fn returns
 * non-zero and return that. Strings are valid during the call only. */
typedef int call_visit_h(const struct call_info *info, void *arg);
int calls_visit(struct calls *cs, call_visit_h *fn, void *arg);

/* The call with this id, or -ENOENT. */
int calls_info(struct calls *cs, uint64_t id, struct call_info *out);

/* End a call from the switch side (BYE, or 487/CANCEL before the answer).
 * Returns 0 or -ENOENT. */
int calls_hangup(struct calls *cs, uint64_t id);

/* Calls taken since the module was created (each INVITE that became a
 * call), for rates. O(1). */
uint64_t calls_started(const struct calls *cs);

#endif
