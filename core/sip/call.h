/* Calls: the signalling B2BUA.
 *
 * Each call is an A-leg (the caller's INVITE) and a B-leg (our own INVITE
 * to a routing gateway or a registered account), each a dialog of its own
 * in nta: its own Call-ID, tags, CSeq and Via. SDP passes through
 * unchanged; there is no media.
 *
 * Directions: a call from a mapping gateway (a customer, or a registered
 * account) is outbound; one from a routing gateway (a carrier: a static
 * one by address, a registration gateway by its server and our Contact in
 * the Request-URI, a dynamic one by its binding) is inbound, its caller
 * taken by the gateway's peer_number_information. Both are routed alike:
 * the policy's route() decides when it is defined (call_query below);
 * otherwise a callee that names an account goes to its binding, then
 * prefix routing; an inbound call with nowhere to go gets 404 (480 when
 * the callee is an account without a binding).
 *
 *   routing --> calling --1xx--> proceeding --2xx--> answered --BYE--> (end)
 *    ^  |           |                  |
 *    |  |           +---- failure (a final status, nta's own 408/503,
 *    |  |                 invite_timeout, call_progress_timeout)
 *    |  |                   |
 *    +--|-- on_failure() ---+ (its decision, else failover_codes: next target)
 *       +--- no usable target left --> 503 (or the last failure) to the caller
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
struct mapping_gateway_def;
struct routing_gateway_def;

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

/* Accounts: an INVITE from outside every gateway is authenticated against
 * them (registrar_authenticate). Where accounts' bindings are is the
 * gateway module's answer (gw_account_target()). */
struct registrar;
void calls_set_registrar(struct calls *cs, struct registrar *r);

/* The INVITE handler for sipagent_set_method_handler(); arg is the module.
 * Returns 0 (taken). An INVITE refused before any call exists is answered
 * in its transaction unless the prefilter below refused it first. */
int calls_on_invite(nta_incoming_t *irq, const sip_t *sip, void *arg);

/* The INVITE prefilter for sipagent_set_method_prefilter(); arg is the
 * module. It refuses statelessly, without a transaction or anything kept
 * but the answer cache's record (sipagent_refuse(): a retransmission gets
 * the same answer), every INVITE refused before a call exists: overload
 * (calls_set_overload(): 503 with Retry-After), max_calls
 * (503 with Retry-After, when calls_set_flood() gave the flood module),
 * stopping (503), an unknown dialog (481), Max-Forwards 0 (483), our own
 * call looping (482), an unknown source (403), an endpoint without valid
 * credentials (the registrar's 407 challenge, 403, 400: a new nonce each
 * time, as for REGISTER), a Session-Expires below Min-SE (422), a gateway
 * at its line limit (503). The rest (returns -1) becomes a transaction for
 * calls_on_invite(), which the agent calls at once and which does not
 * check it again. Refusals decided once the call exists (no route, the
 * policy's route()) keep their transaction. O(gateways) at worst; no
 * allocation beyond sofia's answer. */
int calls_prefilter_invite(msg_t *msg, sip_t *sip, void *arg);

/* The flood module whose max_calls the prefilter checks first (NULL:
 * none). */
struct flood;
void calls_set_flood(struct calls *cs, struct flood *fl);

/* The overload detector (overload.h) the prefilter asks before anything
 * else (NULL: none): while overload_shedding(), every new INVITE (no To
 * tag) gets 503 with Retry-After: OVERLOAD_RETRY_AFTER, statelessly and
 * remembered like the other refusals, and is counted as shed. Requests in
 * a dialog, answers, and retransmissions of INVITEs whose transaction
 * exists never reach the prefilter. */
struct overload;
void calls_set_overload(struct calls *cs, struct overload *ov);

/* Where an INVITE comes from, told by its source address `ip` (text) and
 * `port`, and its Request-URI alone: a static mapping gateway by address
 * (IP), else a routing gateway (gw_routing_by_source()). NONE: a registered account
 * (known only by its digest, see calls_prefilter_invite()) or a stranger. Reads only and
 * allocates nothing, so it may run before any state exists for the
 * request. O(gateways + bindings of dynamic gateways' accounts). */
enum call_source_kind { CALL_SOURCE_NONE, CALL_SOURCE_MAPPING, CALL_SOURCE_ROUTING };
struct call_source {
    enum call_source_kind kind;
    const struct mapping_gateway_def *mapping; /* CALL_SOURCE_MAPPING */
    const struct routing_gateway_def *routing; /* CALL_SOURCE_ROUTING: inbound */
};
void call_identify_source(const struct calls *cs, const sip_t *sip, const char *ip,
                          unsigned port, struct call_source *out);

/* End every call (BYE the answered ones on both legs, 503 and CANCEL the
 * others), refuse new ones, and call `done` once every BYE is answered or
 * failed (at once when there are none). The caller bounds the wait. */
void calls_shutdown(struct calls *cs, void (*done)(void *arg), void *arg);

/* ---- Hooks installed by the policy engine --------------------------------- */

/* A query asks the policy to decide: the route of a new call
 * (CALL_QUERY_ROUTE, the policy's route()), or what follows a failed attempt
 * (CALL_QUERY_FAILURE, on_failure()). The hook returns false when the
 * policy has no such function (the call goes on by default), or true to
 * take the query: then call_query_done() must follow, now or later, and the
 * call waits (a caller's CANCEL still ends it). Bounding the wait is the
 * hook's (sip.route_timeout). A query costs about 1 KiB while it lives. */
struct call_query;
enum call_query_kind { CALL_QUERY_ROUTE, CALL_QUERY_FAILURE };
typedef bool calls_query_h(struct call_query *q, void *arg);
void calls_set_query_hook(struct calls *cs, calls_query_h *h, void *arg);

/* What the policy reads. Strings are the query's, valid until
 * call_query_done(); caller, callee and display follow call_query_set(). */
struct call_query_info {
    enum call_query_kind kind;
    uint64_t id;                           /* the call's */
    bool inbound;                          /* from a routing gateway */
    const char *source;                    /* the gateway it came through */
    const char *caller, *callee, *display; /* display: "" when none */
    const char *source_address;            /* "ip:port" */
    /* CALL_QUERY_FAILURE: the attempt that failed */
    const char *gateway; /* "endpoint:NAME" for an account's binding */
    const char *routed_callee, *reason;
    int status;
    double duration; /* seconds from its INVITE to the failure */
};
const struct call_query_info *call_query_info(const struct call_query *q);

/* The caller's INVITE, for reading its headers: the query's own reference,
 * valid until call_query_done(). */
msg_t *call_query_request(const struct call_query *q);

/* Change the call: its caller and callee numbers (letters, digits and
 * + * # . - _, at most 127) and the display name of the B-leg's From
 * (printable, no quote or backslash; "" falls back to the caller's).
 * Applied to the call at call_query_done(). Returns 0 or -EINVAL. */
enum call_query_field { CALL_FIELD_CALLER, CALL_FIELD_CALLEE, CALL_FIELD_DISPLAY };
int call_query_set(struct call_query *q, enum call_query_field f, const char *value);

/* A header for the B-leg's INVITEs (value NULL: none). The headers the
 * switch writes itself (Via, From, To, Call-ID, CSeq, Contact, Max-Forwards,
 * Route, Record-Route, Content-*, Allow, Authorization, Proxy-Authorization,
 * and the identity headers Privacy and P-Asserted-Identity, which the
 * gateway's privacy decides) are refused, as are names that are no token
 * and values with CR or LF: -EINVAL. */
int call_query_set_header(struct call_query *q, const char *name, const char *value);

/* One target of a decision: a routing gateway, or an account's binding;
 * `callee` (NULL: the gateway's callee_rewrite of the call's callee) and
 * `timeout` (seconds without a provisional answer; 0: invite_timeout)
 * apply to that attempt only. */
struct call_target {
    const char *gateway, *account; /* exactly one */
    const char *callee;
    int timeout;
};

enum call_verdict {
    CALL_DEFAULT,  /* route: default routing; failure: failover_codes decide */
    CALL_CONTINUE, /* failure: the next target, whatever the status */
    CALL_TARGETS,  /* these targets (copied), in order; for a failure they
                      replace those not tried yet */
    CALL_REFUSE,   /* the caller gets status (300..699) and reason */
    CALL_ERROR,    /* the policy failed: 500 with reason (logged by the hook) */
};
struct call_decision {
    enum call_verdict verdict;
    int status;
    const char *reason; /* NULL: the standard phrase */
    const struct call_target *targets;
    size_t n;
};

/* The policy's decision. Frees q; when the call ended meanwhile, only
 * frees. */
void call_query_done(struct call_query *q, const struct call_decision *d);

/* The callee rewrite (string.gsub from the engine); NULL: the C subset. */
void calls_set_rewrite_hook(struct calls *cs, routing_rewrite_h *h, void *arg);

/* A number chosen by a policy function (a mapping gateway's callee_from or
 * caller_from, a routing gateway's peer_number_information): `hook_ref` is
 * its config_hook's ref, `msg` the INVITE. Write the number to out and
 * return 0, or return -1 to fall back to the From user (the To user for a
 * callee). Runs while the INVITE is handled: it may not wait. */
typedef int calls_number_h(int hook_ref, msg_t *msg, char *out, size_t outlen, void *arg);
void calls_set_number_hook(struct calls *cs, calls_number_h *h, void *arg);

/* Told of each call's record once it is staged (cdr_write()); it is
 * durable at the store's next commit (store_commit() makes that now). */
struct cdr;
typedef void calls_end_h(const struct cdr *r, void *arg);
void calls_set_end_hook(struct calls *cs, calls_end_h *h, void *arg);

/* ---- Live view ----------------------------------------------------------- */

size_t calls_count(const struct calls *cs);

struct call_info {
    uint64_t id;
    const char *state; /* "routing", "calling", "proceeding", "answered", "ending" */
    const char *direction; /* "outbound", "inbound" */
    const char *caller, *callee, *routed_callee;
    const char *mapping_gateway, *routing_gateway; /* "" when none yet; mapping:
                                                      the gateway it came through */
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
