/* The call module's private declarations, shared by its files and by no one
 * else (call.h is the public face):
 *
 *   call.c          ingress (the caller's INVITE: where it comes from, a
 *                   new call), the calls' timers, the module's life and its
 *                   public view
 *   call_refuse.c   the refusals of an INVITE before any call exists, with
 *                   a transaction or statelessly (the INVITE prefilter)
 *   call_route.c    the call's targets: the policy's route() and
 *                   on_failure() (queries), default routing, what follows
 *                   a failed attempt
 *   call_identity.c caller and callee numbers, display name, Privacy and
 *                   P-Asserted-Identity towards the carrier
 *   call_bleg.c     B-leg attempts: INVITE, digest retry, the answer
 *   call_dialog.c   in-dialog requests once answered: relay, held ACKs of
 *                   late offers, target refresh
 *   call_end.c      the call's record, teardown and CDR, shutdown
 *   call_timer.c    session timers (RFC 4028) of both legs, refreshes that
 *                   are answered without relaying, and the limits of legs
 *                   without them (no-timer limit, in-dialog OPTIONS)
 *
 * A struct call is owned by its struct calls (a doubly linked list, oldest
 * first) and freed by call_end() (through call_free()); every function below
 * that may end the call says so, and its caller must not touch the call
 * afterwards.
 * Threads: everything belongs to the loop's thread. */
#ifndef MOON_SIP_CALL_INTERNAL_H
#define MOON_SIP_CALL_INTERNAL_H

/* nta's callback magic: a leg's is its call; transactions' vary. */
#define NTA_LEG_MAGIC_T struct call
#define NTA_OUTGOING_MAGIC_T void
#define NTA_INCOMING_MAGIC_T void

#include "evport.h"
#include "metrics.h"
#include "routing.h"
#include "sip/call.h"
#include "sip/invite.h"
#include "wheel.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>

struct gw_set;
struct mapping_gateway_def;
struct call_timer;

/* Gateways one call may try. */
#define CALL_MAX_CANDIDATES 32
/* What both legs may send us in a dialog (call_dialog.c); PRACK is not
 * relayed, so it is not offered. */
#define CALL_ALLOW "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE"
/* Longest number or name a call keeps. */
#define CALL_NUM ROUTING_NUMBER_MAX

enum call_state { ST_ROUTING, ST_CALLING, ST_PROCEEDING, ST_ANSWERED, ST_ENDING };

struct calls {
    struct sipagent *agent;
    nta_agent_t *nta;
    su_root_t *root;
    struct event_base *base;
    struct store *store;
    struct gw_set *gws;   /* gateways: usability, line counts, privacy, failover */
    struct wheel *timers; /* the calls' timers: 100 ms ticks, 1024 slots */
    struct registrar
        *registrar; /* accounts: INVITE auth and their bindings; may be NULL */
    const struct config *cfg;
    struct call *head, *tail;
    size_t count;
    uint64_t next_id;
    calls_query_h *query_h;
    void *query_arg;
    routing_rewrite_h *rewrite_h;
    void *rewrite_arg;
    calls_number_h *number_h;
    void *number_arg;
    calls_end_h *end_h;
    void *end_arg;
    char contact[256]; /* "<sip:IP:PORT>" */
    char host[128];    /* our address for From */
    char instance[16]; /* random per process, ends our B-leg Call-IDs (loop check) */
    /* shutdown */
    bool stopping;
    void (*shutdown_done)(void *arg);
    void *shutdown_arg;
    unsigned shutdown_pending;
    nta_outgoing_t **byes; /* shutdown BYEs not answered yet */
    size_t nbyes;
    struct flood *flood; /* max_calls, checked by the prefilter; may be NULL */
    struct overload *overload; /* sheds new calls, in the prefilter; may be NULL */
    /* The INVITE the prefilter let through, for calls_on_invite(), which
     * the agent calls right after it with the same sip. */
    struct {
        const sip_t *sip;
        struct call_source src;
    } passed;
};

/* A decision asked of the policy (call.h). It lives until
 * call_query_done(), also when the call ends first (then `call` is NULL),
 * and holds its own reference to the caller's INVITE. The hook's changes
 * (caller, callee, display, headers) stay here until the decision, which
 * hands them to the call. */
struct call_query {
    struct call *call; /* NULL once the call ended */
    msg_t *request;
    struct call_query_info info; /* points into the fields below */
    char caller[CALL_NUM], callee[CALL_NUM], display[CALL_NUM];
    char source[CALL_NUM], source_address[64];
    char gateway[CALL_NUM], routed_callee[CALL_NUM], reason[128];
    bool failure_internal; /* the failure was our own (timeout, nta) */
    char *headers;         /* the B-leg's extra header lines: a text */
};

/* One target of a call, tried in order: a routing gateway, or (account) a
 * registered account's binding; callee and timeout override the gateway's
 * rewrite rules and invite_timeout when set. Strings malloc'd. */
struct call_cand {
    char *name;
    char *callee; /* NULL: the gateway's callee_rewrite of the call's callee */
    int timeout;  /* 0: invite_timeout */
    bool account;
};

/* An in-dialog request relayed to the other leg. A re-INVITE without SDP
 * (late offer) whose 2xx came back lives on until the sender's ACK: then
 * irq (bound to on_relay_ack()) waits for that ACK, and orq, the relayed
 * INVITE, is kept so that nta finds its branch and CSeq for our ACK. */
struct relay {
    struct relay *next;
    struct call *call;
    nta_incoming_t *irq;
    nta_outgoing_t *orq;
    bool to_b;
    bool invite;
    bool late_offer; /* a re-INVITE without SDP: the answer comes in the ACK */
    bool ack_held;   /* its 2xx was relayed; our ACK waits for the sender's */
};

/* What the call's CDR will say, kept small while the call lives: a struct
 * cdr is 1 KB of fixed-size text fields, built on the stack only when the
 * call ends. Strings are text fields (call_set_text()): malloc'd to their
 * length, or the shared "" when empty, never NULL. */
struct call_record {
    /* Set by the INVITE (caller and callee changed by the policy's
     * route() before any attempt): one allocation, `fixed`, holds all five
     * (a held call pays one malloc header instead of five). The mapping
     * gateway is the gateway the call came through: a routing gateway for
     * an inbound call. */
    char *fixed;
    const char *call_id, *caller, *callee, *mapping_gateway, *original_callee;
    /* Of the latest attempt: `attempt` holds both. */
    char *attempt;
    const char *routed_callee, *routing_gateway;
    char *reason; /* "" while it is the standard phrase of `status` */
    long long start, answer;
    int status;
};

struct call {
    struct calls *cs;
    struct call *prev, *next;
    uint64_t id;
    enum call_state state;
    /* A-leg */
    nta_incoming_t *a_irq; /* the caller's INVITE, until answered */
    nta_leg_t *a_leg;
    msg_t *a_msg; /* our reference to the caller's INVITE, until answered */
    int a_max_forwards;
    /* B-leg: the attempt in progress */
    nta_leg_t *b_leg;
    /* The attempt's INVITE; after a late-offer answer, kept until the held
     * ACK goes (the ACK takes its CSeq and credentials). */
    struct sipinv *b_inv;
    char *b_ruri;          /* the attempt's Request-URI (digest retries sign it) */
    char *b_addr;          /* host:port the attempt's INVITE went to */
    int b_request_address; /* enum request_address of the destination */
    int b_timeout;         /* the attempt's invite_timeout, seconds */
    double b_started;      /* when its first INVITE went, monotonic seconds */
    bool b_counted;        /* counted in the gateway's calls */
    uint8_t b_transport;   /* enum sip_transport of the destination */
    uint8_t a_transport;   /* enum sip_transport the caller's INVITE came over */
    bool inbound;          /* from a routing gateway, counted in its calls */
    unsigned auth_tries;
    bool cancelled;      /* the caller cancelled, or the switch gave up */
    bool acked;          /* the caller ACKed our 2xx */
    bool late_offer;     /* the caller's INVITE had no SDP: its ACK carries the answer */
    bool b_ack_held;     /* the B-leg's 2xx waits for the caller's ACK (late offer) */
    bool endpoint_tried; /* a registered callee's binding was tried first */
    unsigned char session_retries; /* 422s answered in this attempt */
    unsigned session_offer;        /* the B-leg INVITE's Session-Expires after a 422;
                                      0: sip.session_ttl */
    struct call_timer *st;   /* session timers once answered (call_timer.c); NULL: none */
    struct wheel_node timer; /* invite_timeout, call_progress_timeout, then the
                                no-ACK wait, then call_timer.c's deadlines */
    struct call_query *query;    /* the policy's decision being waited for */
    struct metrics_call metrics; /* its Prometheus series (metrics.h) */
    struct relay *relays;
    /* routing */
    struct call_cand *cands; /* tried in order; malloc'd to fit */
    size_t ncands, next_cand;
    int no_route; /* when nothing could be tried: 404 or 480 inbound, else 0 (503) */
    int last_status;
    char *last_reason; /* text: see call_set_text() */
    char *display;     /* the B-leg From's display name set by the policy; "" */
    char *headers;     /* extra B-leg header lines set by the policy; "" */
    struct call_record rec;
};

/* After acting from our own callbacks (timers, nta's callbacks that send),
 * wake the evport root so that nta's new timers are taken into account. */
static inline void call_kick(struct calls *cs)
{
    if (cs->root)
        evport_rearm(cs->root);
}

/* ---- call.c: the call's timer ---------------------------------------------- */

/* (Re)arm the call's one timer `seconds` from now (at least 1), or disarm
 * it. What it does when it fires depends on the call's state. */
void call_arm(struct call *c, int seconds);
void call_disarm(struct call *c);

/* ---- call_refuse.c ----------------------------------------------------------- */

/* Where a refusal goes: the INVITE's transaction (irq), or (irq NULL) the
 * request itself, answered statelessly through the agent, which takes msg. */
struct call_reply {
    nta_incoming_t *irq;
    struct sipagent *agent;
    msg_t *msg;
    const sip_t *sip;
};

/* The source IP of request `msg`, as text ("" when unknown), and its port. */
void call_source_ip(msg_t *msg, char *out, size_t outlen, unsigned *port);

/* Every refusal of a caller's INVITE `msg` before a call exists, in order:
 * stopping (503), a To tag (481), Max-Forwards (483), our own Call-ID
 * (482), the source (call_identify_source(), else an account's digest:
 * challenges and refusals answered by the registrar; else 403), Min-SE
 * (422), the gateway's line limit (503). Returns 0 with *src set, or the
 * status answered through `to` (an irq is answered, not destroyed; a
 * stateless msg is gone). Allocates nothing; O(gateways) at worst. */
int call_refuse_check(struct calls *cs, const struct call_reply *to, msg_t *msg,
                      const sip_t *sip, struct call_source *src);

/* Whether `sip` is the INVITE the prefilter just let through, with its
 * source in *src. Forgets it either way. */
bool call_refuse_passed(struct calls *cs, const sip_t *sip, struct call_source *src);

/* ---- call_route.c ------------------------------------------------------------ */

/* A new call's route: the policy's route() when it has one, else default
 * routing; then the first attempt. May end the call. */
void call_route_start(struct call *c);

/* Attempt `c->rec.routing_gateway` failed with `status` (`internal`: our
 * own timeout or nta's): ask the policy's on_failure() when it has one,
 * else go on by failover_codes. The attempt is dropped already; the
 * failure is in last_status and last_reason. May end the call. */
void call_route_failed(struct call *c, int status, bool internal);

/* Free the targets from `from` on. */
void call_cands_free(struct call *c, size_t from);

/* ---- call_identity.c -------------------------------------------------------- */

/* Where a call's numbers come from: the fixed choices and the policy's
 * functions (ref 0: none). */
struct call_number_rule {
    int callee_from; /* enum callee_from */
    int caller_from; /* enum caller_from */
    int callee_hook, caller_hook;
};

/* The callee (To or the Request-Line, by the rule's callee_from, or its
 * function) and the caller (caller_from: From, Remote-Party-ID, From's
 * display name or P-Asserted-Identity, or its function; falling back to
 * From) of the caller's INVITE `msg`. */
void call_identity_numbers(struct calls *cs, const struct call_number_rule *rule,
                           msg_t *msg, char *caller, size_t callerlen, char *callee,
                           size_t calleelen);

/* `number` as a SIP URI's user part into out[outlen]: characters a user
 * part may not hold unescaped ('#', '@', ...) as %XX, escapes already in
 * it (%20) as they are. Stops at a character that does not fit whole. */
void call_identity_uri_user(const char *number, char *out, size_t outlen);

/* Whether `s` can be a caller or callee number: 1 to CALL_NUM - 1 of
 * letters, digits and + * # . - _ (a URI's user part without escapes). */
bool call_identity_valid_number(const char *s);

/* The display name of a From header, without its quotes ("" when none). */
void call_identity_display(const sip_from_t *from, char *out, size_t outlen);

/* Our B-leg From, `"Display" <sip:CALLER@HOST>;tag=TAG`: the number
 * caller_from chose (or "anonymous") under `display_set` when not NULL or
 * empty (the policy's, quoted here), else under a display name chosen by
 * `display_from` (enum display_from): the caller's From display name, the
 * number itself, or none. */
void call_identity_from(const sip_from_t *caller_from, const char *display_set,
                        const char *caller, int display_from, const char *host,
                        const char *tag, char *out, size_t outlen);

/* Identity header lines towards gateway g (Privacy, P-Asserted-Identity) for
 * SIPTAG_HEADER_STR in `out`; *pass_privacy says whether the caller's Privacy
 * header goes along as it came. `a` is the caller's INVITE. */
void call_identity_headers(const struct call *c, const struct routing_gateway_def *g,
                           sip_t const *a, char *out, size_t outlen, bool *pass_privacy);

/* ---- call_bleg.c ------------------------------------------------------------ */

/* Try the next usable target, or fail the call when none is left: may end
 * the call. */
void call_try_next(struct call *c);

/* Forget the B-leg attempt: its transaction, its dialog, its line count. */
void call_drop_b(struct call *c);

/* The attempt's timer fired (invite_timeout, call_progress_timeout, or the
 * wait for the gateway's answer to a CANCEL): cancel it and fail over, or
 * end a cancelled call. May end the call. */
void call_attempt_timeout(struct call *c);

/* ---- call_dialog.c ---------------------------------------------------------- */

/* The requests nta gives each leg's dialog (nta_leg_tcreate's callback). */
int call_a_leg_request(struct call *c, nta_leg_t *leg, nta_incoming_t *irq,
                       sip_t const *sip);
int call_b_leg_request(struct call *c, nta_leg_t *leg, nta_incoming_t *irq,
                       sip_t const *sip);

/* ACK a 2xx to our INVITE `invite` on `leg`, with `answer`'s body (the
 * other side's ACK) when not NULL. */
/* Our Contact on the caller's leg (a_side) or the callee's: the address of
 * the transport that leg runs over, so in-dialog requests come back over it
 * (made in buf[len] unless it is UDP's). */
const char *call_contact(const struct call *c, bool a_side, char *buf, size_t len);

void call_send_ack(nta_leg_t *leg, nta_outgoing_t *invite, sip_t const *answer);

/* A BYE from one side (`from_a`): the status to answer it with. May end
 * the call. */
int call_dialog_bye(struct call *c, bool from_a);

/* ---- call_indialog.c -------------------------------------------------------- */

/* The requests of the calls' dialogs, without a transaction (the agent's
 * dialog handler, see agent.h). */
void call_indialog_request(void *arg, nta_leg_t *leg, msg_t *msg, sip_t *sip);

/* Send the B-leg ACK held for the caller's (late offer), with the caller's
 * ACK's answer, or bare (NULL). No-op when none is held. */
void call_flush_b_ack(struct call *c, sip_t const *caller_ack);

/* Every ACK still held (late offers) goes out bare, before a BYE. */
void call_release_acks(struct call *c);

/* The B-leg's remote target for Contact `m` by request_address `mode`, over
 * `transport` (enum sip_transport), made in `home`; NULL: use `m`. See
 * call_dialog.c. */
sip_contact_t *call_b_target(int mode, su_home_t *home, sip_contact_t const *m,
                             const char *host, const char *port, int transport);

/* Free the call's relayed requests; those not answered yet get 481. */
void call_relays_free(struct call *c);

/* ---- call_timer.c ----------------------------------------------------------- */

/* Session-Expires, Min-SE and Supported: timer for the B-leg INVITE, as
 * header lines in `out` ("" when session timers are off). */
void call_timer_invite_headers(const struct call *c, char *out, size_t outlen);

/* A 422 to the B-leg INVITE: true when the INVITE is to go again with the
 * interval its Min-SE asks for (set in c->session_offer; twice at most). */
bool call_timer_retry_422(struct call *c, sip_t const *sip);

/* When the caller's INVITE asks for a Session-Expires below
 * sip.session_min_se: that Min-SE, for its 422 (logged); else 0. */
int calls_timer_min_se(const struct calls *cs, sip_t const *sip);

/* The B-leg's 2xx `ok` answered the call, the caller's INVITE still in
 * c->a_msg: negotiate each leg's timer (c->st) and write the header lines
 * for the caller's 2xx in `out`. Nothing is armed before the caller's ACK. */
void call_timer_answer(struct call *c, sip_t const *ok, char *out, size_t outlen);

/* The caller ACKed the answer (`ack` carries its answer to a late offer):
 * start the session timers, OPTIONS and the no-timer limit. */
void call_timer_start(struct call *c, sip_t const *ack);

/* The call's timer fired once answered and ACKed. May end the call. */
void call_timer_fire(struct call *c);

/* A re-INVITE or UPDATE from the caller (from_a) or the callee: when it
 * only refreshes that leg's session it is answered here: 1 when with a 2xx,
 * 0 otherwise (422); -1: relay it. */
int call_timer_request(struct call *c, nta_incoming_t *irq, sip_t const *sip,
                       bool from_a);

/* Header lines for a re-INVITE or UPDATE relayed to the callee (to_b) or
 * the caller: that leg's Session-Expires ("" without a timer). */
void call_timer_relay_headers(const struct call *c, bool to_b, char *out, size_t outlen);

/* A relayed re-INVITE or UPDATE `req` from the caller (from_a) or the
 * callee got the other leg's 2xx `ok` (either may be NULL): both sessions
 * are renewed and the SDP noted; header lines for the sender's 2xx go to
 * `out`. */
void call_timer_relayed(struct call *c, bool from_a, sip_t const *req, sip_t const *ok,
                        char *out, size_t outlen);

/* An SDP from the caller (from_a) or the callee passed to the other leg in
 * an ACK (the answer to a late offer). */
void call_timer_sdp(struct call *c, bool from_a, sip_t const *sip);

/* Free the call's session timers; refreshes in flight are dropped. */
void call_timer_free(struct call *c);

/* ---- call_end.c ------------------------------------------------------------- */

/* The record's text fields (see struct call_record). call_empty_text is the
 * shared "", never freed. */
extern char call_empty_text[];
void call_set_text(char **field, const char *value);
void call_free_text(char **field);

/* Every text field of a new call "", its start now. */
void call_record_init(struct call *c);

/* The five texts fixed at the INVITE, packed in one allocation (again
 * when route() changes a number: the old pack is freed). */
void call_set_fixed(struct call_record *r, const char *call_id, const char *caller,
                    const char *callee, const char *mapping_gateway,
                    const char *original_callee);

/* The gateway and routed number of a new attempt, in one allocation. */
void call_set_attempt(struct call_record *r, const char *gateway, const char *routed);

/* The record's reason for `status`: nothing stored when it is the standard
 * phrase, a copy otherwise. */
void call_set_reason(struct call *c, int status, const char *phrase);

/* Write the CDR and free the call. The caller has already told both sides
 * what they need (final response, BYE, CANCEL). */
void call_end(struct call *c, const char *hangup, int status, const char *reason);

/* Answer the caller's INVITE with a failure, and end. */
void call_fail(struct call *c, int status, const char *reason, const char *hangup);

/* End call c from the switch side: BYE both legs once answered, else CANCEL
 * the attempt and answer the caller `status`. Ends the call. */
void call_hangup_switch(struct call *c, int status, const char *reason);

/* A BYE on `leg` (may be NULL: nothing); with no `cb`, fire and forget. */
void call_send_bye(nta_leg_t *leg, nta_response_f *cb, void *arg);

/* Unlink and free the call without a CDR; whatever is still open gets the
 * protocol's minimum (held ACKs, 481 to relayed requests, 500 to the
 * caller's INVITE). */
void call_free(struct call *c);

#endif
