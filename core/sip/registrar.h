/* The endpoint registrar: phones and gateways (`account` definitions whose
 * mapping gateway is of type "register") register to the switch with
 * digest authentication, and their bindings live in the store.
 *
 * REGISTER per RFC 3261 10.3: add, refresh, remove (Expires: 0), `*` with
 * Expires: 0, Call-ID and CSeq ordering (an old or repeated CSeq of the same
 * Call-ID is refused with 500), Min-Expires (423). The AOR is the account
 * name, the user part of To; the digest user must be that account.
 *
 * Digest (RFC 7616, RFC 8760): SHA-256 and MD5 are both offered, SHA-256
 * first, with qop=auth (the switch setting endpoint_digest changes which and
 * in what order: many deployed UAs, Debian's baresip 1.0 among them, give up
 * on any SHA-256 challenge, and SIPp answers only the first one). Nonces are stateless:
 * an HMAC of their issue time under a secret kept in the store, so they survive restarts
 * and cost no memory until answered; an expired one is answered with stale=true, and a
 * nonce-count seen before is refused (see nonce.h). Unknown users and wrong
 * passwords get the same answers, so a scanner cannot tell which accounts
 * exist.
 *
 * Retry and suspension (VOS3000 SS_ENDPOINT_REGISTER_RETRY/_SUSPEND): after
 * `endpoint_register_retry` failed authentications (credentials that do not
 * match; the first unauthenticated challenge is not a failure) the account
 * name and the source IP that made them are refused with 403 for
 * `endpoint_register_suspend` seconds. Suspensions live in the store.
 *
 * Expiry: what the endpoint asks (the Contact's expires, else Expires, else
 * endpoint_expire), clamped to endpoint_expire, or to endpoint_nat_expire
 * behind NAT (the source address differs from the Contact's host:port).
 * Expired bindings are removed by one timer on a min-heap of expiry times.
 *
 * Durability: a binding is written to the store and committed before its
 * 200 OK leaves. Replies of one loop turn share one commit (group commit),
 * so the cost of the fsync is spread over the REGISTERs that arrived
 * together.
 *
 * NAT keepalive (endpoint_keepalive, _interval, _misses): every NAT binding
 * is pinged every endpoint_keepalive_interval seconds (spread over the
 * interval by a timer wheel of one slot a second). "options" sends an
 * OPTIONS and removes the binding after endpoint_keepalive_misses
 * unanswered in a row; any answer, even an error status, counts as alive.
 * "crlf" sends RFC 5626's CRLF CRLF from the socket the REGISTER came to
 * (over TCP: on its connection). Over UDP nothing answers it, so it only
 * keeps the NAT pinhole open and counts no misses; over TCP a closed
 * connection removes the binding at its next slot. "off" sends nothing.
 * Each binding holds a reference to its transport, so a registered
 * endpoint's TCP connection is not closed for idleness while it lasts.
 *
 * Policies may add a check: a hook (installed by the Lua layer) is told of
 * every successful registration that adds or refreshes a binding, and may
 * refuse it; the REGISTER is answered when it decides.
 *
 * Threads: everything belongs to the loop's thread. */
#ifndef MOON_SIP_REGISTRAR_H
#define MOON_SIP_REGISTRAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>

struct config;
struct event_base;
struct store;
struct registrar;
struct registrar_event;

/* The realm of every challenge. */
#define REGISTRAR_REALM "moonswitch"
/* Bindings per account when endpoint_register_replace is off; a new one
 * beyond it replaces the binding closest to expiry. */
#define REGISTRAR_MAX_BINDINGS 10
/* Shorter requests get 423 with this Min-Expires. */
#define REGISTRAR_MIN_EXPIRES 10
/* Seconds a nonce stays fresh. The environment variable MOON_NONCE_TTL,
 * read at start, overrides it for tests only (see sip/account.h); it is not
 * a policy setting. */
#define REGISTRAR_NONCE_TTL 300
/* Failed authentications older than this are forgotten. */
#define REGISTRAR_FAILURE_WINDOW 600

/* Create the registrar. `leg` is the leg keepalive OPTIONS go out on
 * (sipagent_client_leg); CRLF keepalives go out on nta's transports. `store` may be NULL (then nothing is durable and
 * the nonce secret is new at each start). `root` is the evport root nta runs
 * on, re-armed after acting from the registrar's own timers. The accounts
 * and the stored bindings come with the first registrar_apply(). Returns 0,
 * -ENOMEM, or a store error. */
int registrar_create(struct registrar **rp, nta_agent_t *nta, nta_leg_t *leg,
                     su_root_t *root, struct event_base *base, struct store *store);

/* Answer whatever waits (503), stop the timers and free everything. Hook
 * calls still running are orphaned: registrar_event_done() on them only
 * frees them. NULL is a no-op. */
void registrar_destroy(struct registrar *r);

/* Follow the policy: accounts added, changed (a new password applies to the
 * next authentication) or removed (their bindings go, from the store too),
 * and the switch's endpoint_* settings (a new keepalive interval reschedules
 * every NAT binding's next keepalive within the new round). The first call also loads the stored
 * bindings, dropping the expired ones and those of unknown accounts. The
 * registrar copies what it needs; O(n log n) in accounts. */
void registrar_apply(struct registrar *r, const struct config *cfg);

/* The REGISTER prefilter for sipagent_set_method_prefilter(); `arg` is the
 * registrar. It answers statelessly (no transaction, nothing kept) every
 * REGISTER that changes nothing: challenges (no credentials, stale or
 * replayed nonce, wrong credentials), 403 (suspended account or source,
 * someone else's AOR), 400 and 423 (bad Contacts or Expires, digest URI
 * mismatch). Failed authentications are counted as with a transaction; a
 * retransmission of the same failed request (its answer lost) counts once.
 * Only an authenticated, well-formed REGISTER goes on (returns -1) to
 * become a transaction for registrar_on_register(), which the agent calls
 * at once: its checks are not repeated there. A retransmission of a request
 * answered here is checked again (its nonce-count now seen: a stale
 * challenge if it had passed authentication). */
int registrar_prefilter_register(msg_t *msg, sip_t *sip, void *arg);

/* The REGISTER handler for sipagent_set_method_handler(); `arg` is the
 * registrar. Always takes the request (returns 0). Without the prefilter
 * it makes every check itself, answering in the transaction. */
int registrar_on_register(nta_incoming_t *irq, const sip_t *sip, void *arg);

/* Authenticate any request against the accounts, with the same digest,
 * nonce, failure counting and suspension as REGISTER (INVITE from
 * registered endpoints). Returns 0 with *account set to the account's name
 * (owned by the registrar, valid until the next registrar_apply()), or the
 * status it answered the request with itself (401 for REGISTER, 407 for
 * other methods with Proxy-Authenticate, 403 when suspended, 400): then the
 * caller must not answer it, and must still call nta_incoming_destroy(). */
int registrar_authenticate(struct registrar *r, nta_incoming_t *irq, const sip_t *sip,
                           const char **account);

/* The same for a request without a transaction (a stateless prefilter):
 * when it does not pass, it is answered statelessly (msg taken: neither msg
 * nor sip may be used after); on 0 msg stays the caller's. Allocates
 * nothing that outlives the call. */
int registrar_authenticate_msg(struct registrar *r, msg_t *msg, const sip_t *sip,
                               const char **account);

/* ---- The policy hook ------------------------------------------------------- */

/* Called for every authenticated REGISTER that adds or refreshes a binding.
 * Return false to go on at once (no hook defined), or true to take the
 * event: then registrar_event_done() must follow, now or later. Called
 * first with ev NULL: return whether there is a hook at all (nothing is
 * allocated for a REGISTER when there is none). */
typedef bool registrar_hook_h(struct registrar_event *ev, void *arg);
void registrar_set_hook(struct registrar *r, registrar_hook_h *h, void *arg);

/* The hook's verdict: status 0 or 2xx accepts (the bindings are made and the
 * 200 follows), any 3xx-6xx refuses with that status and `reason` (NULL: the
 * standard phrase). Frees the event. A verdict after the registrar gave up
 * waiting (it answers 500 after REGISTRAR_HOOK_TIMEOUT seconds) only frees. */
#define REGISTRAR_HOOK_TIMEOUT 10
void registrar_event_done(struct registrar_event *ev, int status, const char *reason);

/* What is being registered. Strings are owned by the event. */
const char *registrar_event_account(const struct registrar_event *ev);
unsigned registrar_event_contacts(const struct registrar_event *ev);
const char *registrar_event_contact(const struct registrar_event *ev, unsigned i);
int registrar_event_expires(const struct registrar_event *ev,
                            unsigned i); /* granted; 0: removal */
bool registrar_event_nat(const struct registrar_event *ev, unsigned i);
const char *registrar_event_source(const struct registrar_event *ev); /* "ip:port" */
const char *
registrar_event_transport(const struct registrar_event *ev); /* "udp", "tcp", "tls" */
const char *registrar_event_user_agent(const struct registrar_event *ev); /* "" if none */
const char *registrar_event_call_id(const struct registrar_event *ev);

/* ---- Bindings and accounts, for the REPL ------------------------------------ */

struct registrar_binding {
    const char *aor;
    const char *contact;
    const char *source;     /* where the REGISTER came from, "ip:port" */
    const char *transport;  /* "udp", "tcp" or "tls" */
    const char *user_agent; /* "" if none */
    const char *call_id;
    uint32_t cseq;
    long long expires_at; /* unix seconds */
    bool nat;
    unsigned keepalive_misses;
};

/* Visit the bindings of one account (aor), or of all when aor is NULL. Stop
 * when fn returns non-zero, and return that. Pointers are valid during the
 * call only; fn must not change bindings. O(bindings visited). */
typedef int registrar_binding_h(const struct registrar_binding *b, void *arg);
int registrar_bindings(struct registrar *r, const char *aor, registrar_binding_h *fn,
                       void *arg);

/* Remove the binding of `aor` whose Contact matches `contact` (RFC 3261
 * URI comparison), or all of aor's when contact is NULL. Returns the number
 * removed (from the store too), or -ENOENT for an unknown account. */
int registrar_remove(struct registrar *r, const char *aor, const char *contact);

size_t registrar_binding_count(const struct registrar *r);

/* Whether some binding's REGISTER came from `ip` (text as inet_ntop()
 * writes it): the flood module trusts those sources. O(1) (an index of the
 * bindings' source addresses). */
bool registrar_binding_source(const struct registrar *r, const char *ip);
size_t registrar_account_count(const struct registrar *r);

struct registrar_account {
    const char *name;
    const char *mapping_gateway;
    unsigned bindings;
    unsigned failures;         /* failed authentications in the window */
    long long suspended_until; /* unix seconds; 0: not suspended */
};

/* Account i in name order, or the named one. Return 0 or -ENOENT. */
int registrar_account_at(struct registrar *r, size_t i, struct registrar_account *out);
int registrar_account_find(struct registrar *r, const char *name,
                           struct registrar_account *out);

/* Suspensions in force: kind is "account" or "source". */
typedef int registrar_suspension_h(const char *kind, const char *name, long long until,
                                   unsigned failures, void *arg);
int registrar_suspensions(struct registrar *r, registrar_suspension_h *fn, void *arg);

/* Lift the suspension of an account name or a source IP, and forget its
 * failures. Returns the number lifted (0 or 1 for each kind). */
int registrar_unsuspend(struct registrar *r, const char *name_or_ip);

/* REGISTERs accepted (bindings changed and a 200 queued) since the
 * registrar was created, for rates. O(1). */
uint64_t registrar_registers_accepted(const struct registrar *r);

#endif
