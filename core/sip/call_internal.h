/* The call module's private declarations, shared by its files and by no one
 * else (call.h is the public face):
 *
 *   call.c          ingress (the caller's INVITE), routing requests, the
 *                   calls' timers, the module's life and its public view
 *   call_identity.c caller and callee numbers, display name, Privacy and
 *                   P-Asserted-Identity towards the carrier
 *   call_bleg.c     B-leg attempts: INVITE, digest retry, failover, answer
 *   call_dialog.c   in-dialog requests once answered: relay, held ACKs of
 *                   late offers, target refresh
 *   call_end.c      the call's record, teardown and CDR, shutdown
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
    calls_route_h *route_h;
    void *route_arg;
    routing_rewrite_h *rewrite_h;
    void *rewrite_arg;
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
};

struct call_route {
    struct call *call; /* NULL once the call ended */
    char caller[CALL_NUM], callee[CALL_NUM], mapping_gateway[CALL_NUM];
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
    /* Set by the INVITE and never changed: one allocation, `fixed`, holds
     * all four (a held call pays one malloc header instead of four). */
    char *fixed;
    const char *call_id, *caller, *callee, *mapping_gateway;
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
    bool b_counted;        /* counted in the gateway's calls */
    unsigned auth_tries;
    bool cancelled;      /* the caller cancelled, or the switch gave up */
    bool acked;          /* the caller ACKed our 2xx */
    bool late_offer;     /* the caller's INVITE had no SDP: its ACK carries the answer */
    bool b_ack_held;     /* the B-leg's 2xx waits for the caller's ACK (late offer) */
    bool endpoint_tried; /* a registered callee's binding was tried first */
    struct wheel_node timer; /* invite_timeout, call_progress_timeout, then the
                                no-ACK wait and max_call_duration */
    struct call_route *route;
    struct relay *relays;
    /* routing */
    char **cands; /* gateway names, tried in order; malloc'd to fit */
    size_t ncands, next_cand;
    int last_status;
    char *last_reason; /* text: see call_set_text() */
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

/* ---- call_identity.c -------------------------------------------------------- */

/* The callee (To or the Request-Line, by m's callee_from) and the caller
 * (m's caller_from: From, Remote-Party-ID, From's display name or
 * P-Asserted-Identity, falling back to From) of the caller's INVITE. */
void call_identity_numbers(const struct mapping_gateway_def *m, const sip_t *sip,
                           char *caller, size_t callerlen, char *callee,
                           size_t calleelen);

/* Our B-leg From, `"Display" <sip:CALLER@HOST>;tag=TAG`: the number
 * caller_from chose (or "anonymous") under the caller's From display name. */
void call_identity_from(const sip_from_t *caller_from, const char *caller,
                        const char *host, const char *tag, char *out, size_t outlen);

/* Identity header lines towards gateway g (Privacy, P-Asserted-Identity) for
 * SIPTAG_HEADER_STR in `out`; *pass_privacy says whether the caller's Privacy
 * header goes along as it came. `a` is the caller's INVITE. */
void call_identity_headers(const struct call *c, const struct routing_gateway_def *g,
                           sip_t const *a, char *out, size_t outlen, bool *pass_privacy);

/* ---- call_bleg.c ------------------------------------------------------------ */

/* Try the next usable candidate (a registered callee's binding first), or
 * fail the call when none is left: may end the call. */
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

/* The B-leg's remote target for Contact `m` by request_address `mode`, made
 * in `home`; NULL: use `m`. See call_dialog.c. */
sip_contact_t *call_b_target(int mode, su_home_t *home, sip_contact_t const *m,
                             const char *host, const char *port);

/* Free the call's relayed requests; those not answered yet get 481. */
void call_relays_free(struct call *c);

/* ---- call_end.c ------------------------------------------------------------- */

/* The record's text fields (see struct call_record). call_empty_text is the
 * shared "", never freed. */
extern char call_empty_text[];
void call_set_text(char **field, const char *value);
void call_free_text(char **field);

/* Every text field of a new call "", its start now. */
void call_record_init(struct call *c);

/* The four texts fixed at the INVITE, packed in one allocation. */
void call_set_fixed(struct call_record *r, const char *call_id, const char *caller,
                    const char *callee, const char *mapping_gateway);

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
