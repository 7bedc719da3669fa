/* In-dialog requests of an answered call, and the ACKs of 2xx.
 *
 * re-INVITE, UPDATE and INFO from either leg are relayed to the other leg
 * and their answers back, with each leg's own session timer headers
 * (call_timer.c), except a re-INVITE or UPDATE that only refreshes its
 * leg's session, which call_timer.c answers itself; BYE ends the call. An offerless
 * INVITE or re-INVITE (late offer: the offer in the 2xx, the answer in the ACK) holds our
 * ACK to the side that made the offer until the other side's ACK brings the answer. A
 * Contact in a target refresh request, or in the 2xx to one, moves where later requests
 * on that leg go. See call_internal.h. */
#include "sip/call_internal.h"
#include "config.h"
#include "log.h"
#include "sip/transport.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>

/* ---- ACKs -------------------------------------------------------------------- */

/* ACK a 2xx to our INVITE (`invite`, still known to nta) on `leg`, with
 * the INVITE's CSeq: nta would take the leg's latest, wrong once another
 * request went out on the leg meanwhile. `answer`, when not NULL, is the
 * other side's ACK, whose body (the SDP answer to an offer in the 2xx)
 * goes along with its Content-Type.
 *
 * Retransmissions of the 2xx (our ACK was lost, RFC 3261 13.2.2.4): with
 * NTATAG_UA(1), nta gives the ACK transaction the INVITE's branch to match
 * responses by, and each retransmitted 2xx that reaches it makes nta send
 * the same ACK again. We let go of the ACK at once; nta keeps it until its
 * timer F (64*T1 after it was sent), which is as long as the peer
 * retransmits its 2xx, and frees it then: no per-call state. */
void call_send_ack(nta_leg_t *leg, nta_outgoing_t *invite, sip_t const *answer)
{
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sip_cseq_t *seq = sip_cseq_create(home, nta_outgoing_cseq(invite), SIP_METHOD_ACK);
    sip_content_type_t const *ct = answer ? answer->sip_content_type : NULL;
    sip_payload_t const *pl = answer ? answer->sip_payload : NULL;
    nta_outgoing_t *ack = nta_outgoing_tcreate(
        leg, NULL, NULL, NULL, SIP_METHOD_ACK, NULL, TAG_IF(seq, SIPTAG_CSEQ(seq)),
        TAG_IF(ct, SIPTAG_CONTENT_TYPE(ct)), TAG_IF(pl, SIPTAG_PAYLOAD(pl)), TAG_END());
    if (ack)
        nta_outgoing_destroy(ack);
    su_home_deinit(home);
}

/* Send the B-leg ACK held for the caller's (late offer): with the caller's
 * answer when it came, bare when the call ends without it (the carrier
 * still gets its ACK before any BYE). The INVITE goes back to nta then. */
void call_flush_b_ack(struct call *c, sip_t const *caller_ack)
{
    if (!c->b_ack_held)
        return;
    c->b_ack_held = false;
    if (c->b_leg && c->b_inv)
        sipinv_ack(c->b_inv, c->b_leg, caller_ack);
    if (c->b_inv) {
        sipinv_destroy(c->b_inv);
        c->b_inv = NULL;
    }
}

/* ---- Targets ----------------------------------------------------------------- */

const char *call_contact(const struct call *c, bool a_side, char *buf, size_t len)
{
    return transport_contact(c->cs->nta, a_side ? c->a_transport : c->b_transport,
                             c->cs->contact, buf, len);
}

/* The B-leg's remote target for a Contact `m` from the carrier, by the
 * gateway's request_address: where in-dialog requests (ACK, BYE,
 * re-INVITE) go. A carrier or phone behind NAT puts an address in its
 * Contact that we cannot reach: "socket" keeps the address we reach it at
 * (`host`, `port`; port may be NULL), "contact_port" that host with the
 * Contact's port, "contact" takes the Contact as it is (NULL returned).
 * Made in `home`; NULL: use `m`. */
sip_contact_t *call_b_target(int mode, su_home_t *home, sip_contact_t const *m,
                             const char *host, const char *port, int transport)
{
    if (!m || mode == REQUEST_CONTACT || !host || !*host)
        return NULL;
    const url_t *u = m->m_url;
    if (mode == REQUEST_CONTACT_PORT)
        port = u->url_port ? u->url_port : "5060";
    char uri[400];
    snprintf(uri, sizeof uri, "<sip:%s%s%s%s%s%s>", u->url_user ? u->url_user : "",
             u->url_user ? "@" : "", host, port ? ":" : "", port ? port : "",
             transport_param(transport));
    return sip_contact_make(home, uri);
}

/* A target refresh (RFC 3261 12.2.1.2, 12.2.2): a re-INVITE or UPDATE from
 * the peer on `leg`, or the 2xx to ours, came with Contact `m`: later
 * requests on that leg go there. The caller's leg follows the Contact; the
 * carrier's follows request_address, from where we reach it now (which the
 * dialog's first target already put through request_address). The route
 * set stays what the dialog began with. */
static void refresh_target(struct call *c, nta_leg_t *leg, sip_contact_t const *m)
{
    if (!leg || !m)
        return;
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sip_contact_t const *target = m;
    if (leg == c->b_leg && c->b_request_address != REQUEST_CONTACT) {
        sip_contact_t const *now = NULL;
        nta_leg_get_route(leg, NULL, &now);
        const url_t *u = now ? now->m_url : NULL;
        sip_contact_t *fixed = u ? call_b_target(c->b_request_address, home, m,
                                                 u->url_host, u->url_port, c->b_transport)
                                 : NULL;
        if (!fixed) {
            /* No address to keep (the answer had no Contact, or no memory):
             * requests go on where they went. */
            su_home_deinit(home);
            return;
        }
        target = fixed;
    }
    /* reroute 1 (not the initial transaction): the target only. */
    nta_leg_client_reroute(leg, NULL, target, 0);
    char *uri = url_as_string(home, target->m_url);
    log_debug("call", "%" PRIu64 ": the %s's target is now %s", c->id,
              leg == c->b_leg ? "callee" : "caller", uri ? uri : "?");
    su_home_deinit(home);
}

/* ---- Relayed requests -------------------------------------------------------- */

static void relay_free(struct relay *r, bool answer)
{
    if (r->orq)
        nta_outgoing_destroy(r->orq);
    if (r->irq) {
        if (answer && nta_incoming_status(r->irq) < 200)
            nta_incoming_treply(r->irq, SIP_481_NO_TRANSACTION, TAG_END());
        nta_incoming_destroy(r->irq);
    }
    free(r);
}

static void relay_unlink(struct relay *r)
{
    for (struct relay **p = &r->call->relays; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            break;
        }
}

/* Send the ACK held for a relayed offerless re-INVITE: with the answer from
 * the sender's ACK, or bare when that never came or the call ends first
 * (the peer still gets its ACK before any BYE). */
static void relay_flush_ack(struct relay *r, sip_t const *answer)
{
    if (!r->ack_held)
        return;
    r->ack_held = false;
    nta_leg_t *leg = r->to_b ? r->call->b_leg : r->call->a_leg;
    if (leg && r->orq)
        call_send_ack(leg, r->orq, answer);
}

/* The ACKs still held (late offers) go out bare, before a BYE. */
void call_release_acks(struct call *c)
{
    call_flush_b_ack(c, NULL);
    for (struct relay *r = c->relays; r; r = r->next)
        relay_flush_ack(r, NULL);
}

void call_relays_free(struct call *c)
{
    while (c->relays) {
        struct relay *r = c->relays;
        c->relays = r->next;
        relay_free(r, true);
    }
}

/* The sender's ACK of the 2xx we relayed to its re-INVITE (for an offerless
 * one it carries the answer to the offer in that 2xx), or (sip NULL) nta
 * giving up on it after 64*T1: a held ACK goes to the other side bare and,
 * as after an initial answer never ACKed (RFC 3261 13.3.1.4), the call ends:
 * the peers no longer agree on the session. */
static int on_relay_ack(void *magic, nta_incoming_t *irq, sip_t const *sip)
{
    struct relay *r = magic;
    struct call *c = r->call;
    const char *sender = r->to_b ? "caller" : "callee";
    (void)irq;
    if (sip && (!sip->sip_request || sip->sip_request->rq_method != sip_method_ack))
        return 0; /* a CANCEL after the 2xx changes nothing */
    if (r->ack_held)
        call_timer_sdp(c, r->to_b, sip); /* the answer to a late offer */
    relay_flush_ack(r, sip);
    relay_unlink(r);
    relay_free(r, false);
    if (!sip) {
        struct calls *cs = c->cs;
        log_info("call", "%" PRIu64 ": the %s never ACKed our 2xx to its re-INVITE",
                 c->id, sender);
        call_hangup_switch(c, 408, "No ACK"); /* frees c */
        call_kick(cs);
    }
    return 0;
}

static int on_relay_response(void *magic, nta_outgoing_t *orq, sip_t const *sip)
{
    struct relay *r = magic;
    struct call *c = r->call;
    int status =
        sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    const char *phrase = sip && sip->sip_status ? sip->sip_status->st_phrase : NULL;
    if (status < 200) {
        if (status > 100 && r->irq)
            nta_incoming_treply(r->irq, status, phrase, TAG_END());
        return 0;
    }
    nta_leg_t *leg = r->to_b ? c->b_leg : c->a_leg;
    bool hold = false;
    char timer[128] = ""; /* the sender's session timer, renewed */
    if (status < 300 && sip && r->irq &&
        (r->invite || nta_outgoing_method(orq) == sip_method_update)) {
        msg_t *req = nta_incoming_getrequest(r->irq);
        call_timer_relayed(c, r->to_b, req ? sip_object(req) : NULL, sip, timer,
                           sizeof timer);
        msg_destroy(req);
    }
    if (status < 300 && sip) {
        /* The 2xx to a target refresh request moves the target (12.2.1.2);
         * the ACK goes there already. */
        if (r->invite || nta_outgoing_method(orq) == sip_method_update)
            refresh_target(c, leg, sip->sip_contact);
        /* An offerless re-INVITE: the 2xx carries the peer's offer, and
         * the ACK must carry the sender's answer, which comes in its ACK. */
        hold = r->invite && r->late_offer && r->irq;
        if (r->invite && !hold)
            call_send_ack(leg, orq, NULL);
    }
    if (r->irq) {
        char contact[160];
        nta_incoming_treply(
            r->irq, status, phrase,
            TAG_IF(status < 300,
                   SIPTAG_CONTACT_STR(call_contact(c, r->to_b, contact, sizeof contact))),
            TAG_IF(timer[0], SIPTAG_HEADER_STR(timer)),
            TAG_IF(sip && sip->sip_content_type,
                   SIPTAG_CONTENT_TYPE(sip ? sip->sip_content_type : NULL)),
            TAG_IF(sip && sip->sip_payload,
                   SIPTAG_PAYLOAD(sip ? sip->sip_payload : NULL)),
            TAG_END());
        if (hold) {
            /* irq and orq stay until the sender's ACK (on_relay_ack()). */
            r->ack_held = true;
            nta_incoming_bind(r->irq, on_relay_ack, r);
            log_debug("call", "%" PRIu64 ": re-INVITE late offer: ACK waits for the %s's",
                      c->id, r->to_b ? "caller" : "callee");
            return 0;
        }
        if (r->invite && status < 300) {
            /* Our ACK went out above; the sender's ACK of our 2xx is still
             * due, and a sender that never sends it ends the call as after
             * an initial answer never ACKed (on_relay_ack()). Only the
             * server transaction is kept until then. */
            nta_outgoing_destroy(r->orq);
            r->orq = NULL;
            nta_incoming_bind(r->irq, on_relay_ack, r);
            return 0;
        }
        nta_incoming_destroy(r->irq);
        r->irq = NULL;
    }
    relay_unlink(r);
    nta_outgoing_destroy(r->orq);
    r->orq = NULL;
    free(r);
    return 0;
}

/* Relay re-INVITE, UPDATE or INFO to the other leg. */
static int relay_request(struct call *c, nta_incoming_t *irq, sip_t const *sip, bool to_b)
{
    nta_leg_t *leg = to_b ? c->b_leg : c->a_leg;
    if (!leg || c->state != ST_ANSWERED)
        return 491;
    struct relay *r = calloc(1, sizeof *r);
    if (!r)
        return 500;
    r->call = c;
    r->to_b = to_b;
    r->invite = sip->sip_request->rq_method == sip_method_invite;
    r->late_offer = r->invite && (!sip->sip_payload || sip->sip_payload->pl_len == 0);
    /* re-INVITE and UPDATE are target refresh requests (RFC 3261 12.2,
     * RFC 3311 5.1): a Contact in them moves the sender's target (12.2.2:
     * on receipt), and ours carry our Contact, which stays what it was. */
    bool refresh = r->invite || sip->sip_request->rq_method == sip_method_update;
    if (refresh)
        refresh_target(c, to_b ? c->a_leg : c->b_leg, sip->sip_contact);
    char timer[128] = ""; /* the other leg's session timer goes along */
    if (refresh)
        call_timer_relay_headers(c, to_b, timer, sizeof timer);
    char contact[160];
    r->orq = nta_outgoing_tcreate(
        leg, on_relay_response, (void *)r, NULL, sip->sip_request->rq_method,
        sip->sip_request->rq_method_name, NULL,
        TAG_IF(refresh,
               SIPTAG_CONTACT_STR(call_contact(c, !to_b, contact, sizeof contact))),
        TAG_IF(timer[0], SIPTAG_HEADER_STR(timer)),
        TAG_IF(sip->sip_content_type, SIPTAG_CONTENT_TYPE(sip->sip_content_type)),
        TAG_IF(sip->sip_payload, SIPTAG_PAYLOAD(sip->sip_payload)), TAG_END());
    if (!r->orq) {
        free(r);
        return 500;
    }
    r->irq = irq;
    r->next = c->relays;
    c->relays = r;
    return 0;
}

/* ---- The dialogs' requests --------------------------------------------------- */

int call_dialog_bye(struct call *c, bool from_a)
{
    if (c->state == ST_ANSWERED) {
        call_release_acks(c); /* a BYE before an ACK we hold (late offer) */
        call_send_bye(from_a ? c->b_leg : c->a_leg, NULL, NULL);
        call_end(c, from_a ? "caller" : "callee", c->rec.status, NULL);
        return 200;
    }
    if (from_a) {
        /* BYE before the answer (RFC 3261 15: only once confirmed, but
         * seen in the wild): treat as a CANCEL. */
        if (c->b_inv)
            sipinv_cancel(c->b_inv);
        call_fail(c, 487, "Request Terminated", "caller");
        return 200;
    }
    return 481;
}

static int dialog_request(struct call *c, nta_incoming_t *irq, sip_t const *sip,
                          bool from_a)
{
    switch (sip->sip_request->rq_method) {
    case sip_method_ack:
        return 200; /* ACK of our 2xx is absorbed by its transaction */
    case sip_method_bye:
        return call_dialog_bye(c, from_a);
    case sip_method_invite:
    case sip_method_update: {
        /* A session refresh is answered here (call_timer.c), still moving
         * the sender's target when it names a new Contact. */
        int st = call_timer_request(c, irq, sip, from_a);
        if (st < 0)
            return relay_request(c, irq, sip, from_a);
        if (st > 0)
            refresh_target(c, from_a ? c->a_leg : c->b_leg, sip->sip_contact);
        return 0;
    }
    case sip_method_info:
        return relay_request(c, irq, sip, from_a);
    case sip_method_cancel:
        return 481; /* a CANCEL matching no transaction of ours */
    default:
        return 501;
    }
}

int call_a_leg_request(struct call *c, nta_leg_t *leg, nta_incoming_t *irq,
                       sip_t const *sip)
{
    (void)leg;
    return dialog_request(c, irq, sip, true);
}

int call_b_leg_request(struct call *c, nta_leg_t *leg, nta_incoming_t *irq,
                       sip_t const *sip)
{
    (void)leg;
    return dialog_request(c, irq, sip, false);
}
