/* B-leg attempts: the call's INVITE to a registered callee's binding or to
 * each usable routing gateway in turn, a digest retry for registration
 * gateways, failover on the gateway's failover codes and on our timeouts,
 * and the answer relayed to the caller. See call_internal.h. */
#include "sip/call_internal.h"
#include "cdr.h"
#include "config.h"
#include "log.h"
#include "random.h"
#include "sip/agent.h"
#include "sip/digest.h"
#include "sip/gateway.h"
#include "sip/registrar.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>
#include <sofia-sip/url_tag.h>

/* nta marks the responses it makes up itself (timer B's 408, a transport
 * error's 503) with this message flag; the value is in nta_internal.h,
 * which is not installed. */
#ifndef NTA_INTERNAL_MSG
#define NTA_INTERNAL_MSG (1 << 15)
#endif

static void on_b_response(void *magic, struct sipinv *inv, sip_t const *sip, int status);

/* ---- Attempts ---------------------------------------------------------------- */

/* Forget the B-leg attempt: its transaction (nta cancels nothing here; the
 * caller of this did what the protocol needs) and its dialog. */
void call_drop_b(struct call *c)
{
    if (c->b_inv) {
        sipinv_destroy(c->b_inv);
        c->b_inv = NULL;
    }
    if (c->b_leg) {
        nta_leg_destroy(c->b_leg);
        c->b_leg = NULL;
    }
    if (c->b_counted) {
        gw_routing_release(c->cs->gws, c->rec.routing_gateway);
        c->b_counted = false;
    }
}

/* After the answer: the candidates, the attempt's Request-URI and address,
 * the last failure. About 200 bytes of a held call. */
static void forget_routing(struct call *c)
{
    for (size_t i = 0; i < c->ncands; i++)
        free(c->cands[i]);
    free(c->cands);
    c->cands = NULL;
    c->ncands = c->next_cand = 0;
    call_free_text(&c->b_ruri);
    call_free_text(&c->b_addr);
    call_free_text(&c->last_reason);
}

/* Send the INVITE of one attempt to gateway g. `auth` is an Authorization
 * (401) or Proxy-Authorization (407) value for a retry, else NULL. Returns
 * 0, or -1 when it could not even be sent. */
static int send_invite(struct call *c, const struct routing_gateway_def *g,
                       int auth_status, const char *auth)
{
    struct calls *cs = c->cs;
    sip_t const *a = sip_object(c->a_msg);
    const char *callee = c->rec.callee, *routed = c->rec.routed_callee;
    int use_contact = g->invite_use_contact == TRI_INHERIT
                          ? config_switch(cs->cfg)->sip.routing_gateway_invite_use_contact
                          : g->invite_use_contact == TRI_ON;
    char to[320], from[480], rnd[33], call_id[64], tag[20], ids[1024];
    bool pass_privacy;
    call_identity_headers(c, g, a, ids, sizeof ids, &pass_privacy);
    char ruri[400];
    snprintf(ruri, sizeof ruri, "sip:%s@%s", routed, g->address);
    call_set_text(&c->b_ruri, ruri);
    call_set_text(&c->b_addr, g->address);
    c->b_request_address = g->request_address;
    snprintf(to, sizeof to, "<sip:%s@%s>", use_contact ? callee : routed, g->address);
    if (!c->b_leg) {
        random_hex(tag, 8);
        random_hex(rnd, 16);
        /* Marked ours: see own_call_id() in call.c. */
        snprintf(call_id, sizeof call_id, "%s-%s", rnd, cs->instance);
        call_identity_from(a->sip_from, c->rec.caller, cs->host, tag, from, sizeof from);
        c->b_leg = nta_leg_tcreate(cs->nta, call_b_leg_request, c, SIPTAG_FROM_STR(from),
                                   SIPTAG_TO_STR(to), SIPTAG_CALL_ID_STR(call_id),
                                   URLTAG_URL(SIPAGENT_DIALOG_URL), TAG_END());
        if (!c->b_leg)
            return -1;
    }
    char mf[16];
    snprintf(mf, sizeof mf, "%d", c->a_max_forwards - 1);
    c->b_inv = sipagent_invite(
        cs->agent, NULL, c->b_leg, on_b_response, c, URL_STRING_MAKE(c->b_ruri),
        SIPTAG_CONTACT_STR(cs->contact), SIPTAG_MAX_FORWARDS_STR(mf),
        SIPTAG_ALLOW_STR(CALL_ALLOW),
        TAG_IF(auth && auth_status == 401, SIPTAG_AUTHORIZATION_STR(auth)),
        TAG_IF(auth && auth_status == 407, SIPTAG_PROXY_AUTHORIZATION_STR(auth)),
        TAG_IF(pass_privacy, SIPTAG_PRIVACY(a->sip_privacy)),
        TAG_IF(ids[0], SIPTAG_HEADER_STR(ids)),
        TAG_IF(a->sip_content_type, SIPTAG_CONTENT_TYPE(a->sip_content_type)),
        TAG_IF(a->sip_payload, SIPTAG_PAYLOAD(a->sip_payload)), TAG_END());
    if (!c->b_inv)
        return -1;
    c->state = ST_CALLING;
    call_arm(c, config_switch(cs->cfg)->sip.invite_timeout);
    return 0;
}

/* The binding a call to an account goes to: the most recent one. */
struct pick {
    char contact[256];
    char target[128]; /* host:port to send to */
    long long expires_at;
};

static int pick_binding(const struct registrar_binding *b, void *arg)
{
    struct pick *p = arg;
    if (b->expires_at <= p->expires_at)
        return 0;
    p->expires_at = b->expires_at;
    snprintf(p->contact, sizeof p->contact, "%s", b->contact);
    /* Behind NAT the Contact is unreachable: send where the REGISTER came
     * from (request address "socket"). */
    if (b->nat && b->source && *b->source) {
        snprintf(p->target, sizeof p->target, "%s", b->source);
    } else {
        url_t url[1];
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", b->contact);
        if (url_d(url, tmp) == 0 && url->url_host)
            snprintf(p->target, sizeof p->target, "%s:%s", url->url_host,
                     url->url_port ? url->url_port : "5060");
    }
    return 0;
}

/* A call to a registered account goes to its binding first. Returns true
 * when an INVITE went out. */
static bool try_endpoint(struct call *c)
{
    struct calls *cs = c->cs;
    if (!cs->registrar || !config_find(cs->cfg, KIND_ACCOUNT, c->rec.callee))
        return false;
    struct pick p = {.expires_at = 0};
    registrar_bindings(cs->registrar, c->rec.callee, pick_binding, &p);
    if (!p.target[0])
        return false;
    /* A gateway-shaped destination: the endpoint's address, the account as
     * the number, no rewriting. */
    struct routing_gateway_def g = {.type = RGW_STATIC,
                                    .address = p.target,
                                    .invite_use_contact = TRI_OFF,
                                    .line_limit = CONFIG_UNLIMITED,
                                    .request_address = REQUEST_SOCKET};
    char name[CDR_FIELD_MAX];
    snprintf(name, sizeof name, "endpoint:%.100s", c->rec.callee);
    call_set_attempt(&c->rec, name, c->rec.callee);
    c->auth_tries = 1; /* an endpoint's challenge is not ours to answer */
    if (send_invite(c, &g, 0, NULL) != 0)
        return false;
    log_info("call", "%" PRIu64 ": %s -> registered %s at %s", c->id, c->rec.caller,
             c->rec.callee, p.target);
    return true;
}

/* Try the next usable candidate, or fail the call when none is left. */
void call_try_next(struct call *c)
{
    struct calls *cs = c->cs;
    if (!c->endpoint_tried) {
        c->endpoint_tried = true;
        if (try_endpoint(c))
            return;
    }
    const struct routing_gateway_def *g;
    while ((g = routing_next(cs->gws, (const char *const *)c->cands, c->ncands,
                             &c->next_cand, c->id))) {
        const char *name = g->head.name;
        char routed[CALL_NUM];
        routing_rewrite(&g->callee_rewrite, c->rec.callee, cs->rewrite_h, cs->rewrite_arg,
                        routed, sizeof routed);
        call_set_attempt(&c->rec, name, routed);
        gw_routing_take(cs->gws, name);
        c->b_counted = true;
        c->auth_tries = 0;
        if (send_invite(c, g, 0, NULL) == 0) {
            log_info("call", "%" PRIu64 ": %s -> %s via %s", c->id, c->rec.caller,
                     c->rec.routed_callee, name);
            return;
        }
        log_warn("call", "%" PRIu64 ": cannot send the INVITE to %s", c->id, name);
        c->last_status = 503;
        call_drop_b(c);
    }
    if (c->last_status)
        call_fail(c, c->last_status, c->last_reason[0] ? c->last_reason : NULL, "switch");
    else
        call_fail(c, 503, "No Route", "switch");
}

/* ---- Answers ----------------------------------------------------------------- */

/* A 2xx on the B-leg: confirm the dialog and ACK it, or (`hold`: the
 * caller's INVITE had no SDP, so this 2xx carries the offer and the
 * caller's ACK the answer) keep the ACK until the caller's arrives. */
static void confirm_b(struct call *c, sip_t const *sip, bool hold)
{
    if (sip->sip_to && sip->sip_to->a_tag)
        nta_leg_rtag(c->b_leg, sip->sip_to->a_tag);
    /* b_addr is "host:port" (a bracketed IPv6 host keeps its colons). */
    char host[128];
    snprintf(host, sizeof host, "%s", c->b_addr);
    char *colon = strrchr(host, ':'), *port = NULL;
    if (colon && !strchr(colon, ']')) {
        *colon = '\0';
        port = colon + 1;
    }
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sip_contact_t const *target = sip->sip_contact;
    sip_contact_t *fixed = call_b_target(c->b_request_address, home, target, host, port);
    if (fixed)
        target = fixed;
    nta_leg_client_route(c->b_leg, sip->sip_record_route, target);
    su_home_deinit(home);
    if (hold) {
        /* nta drops the carrier's 2xx retransmissions meanwhile (they match
         * the INVITE, which answers no more); the caller's ACK, or the
         * no-ACK hangup, releases it, and the ACK then answers them. */
        c->b_ack_held = true;
        log_debug("call", "%" PRIu64 ": late offer: the ACK to %s waits for the caller's",
                  c->id, c->rec.routing_gateway);
        return;
    }
    sipinv_ack(c->b_inv, c->b_leg, NULL);
}

/* Answer a 401/407 from a registration gateway once, with its registration's
 * credentials. Returns true when a new INVITE went out. */
static bool answer_challenge(struct call *c, int status, sip_t const *sip)
{
    struct calls *cs = c->cs;
    const struct routing_gateway_def *g = gw_find(cs->gws, c->rec.routing_gateway);
    if (!g || !g->registration || c->auth_tries++ > 0)
        return false;
    const struct registration_def *reg =
        (const void *)config_find(cs->cfg, KIND_REGISTRATION, g->registration);
    msg_auth_t const *au =
        status == 401 ? sip->sip_www_authenticate : sip->sip_proxy_authenticate;
    if (!reg || !au)
        return false;
    struct digest_challenge ch;
    if (digest_challenge_parse(&ch, (const char *const *)au->au_params) < 0)
        return false;
    char cnonce[17], value[2048];
    random_hex(cnonce, 8);
    const char *user = reg->auth_username ? reg->auth_username : reg->username;
    if (digest_authorization(&ch, user, reg->password ? reg->password : "", "INVITE",
                             c->b_ruri, 1, cnonce, value, sizeof value) < 0)
        return false;
    sipinv_destroy(c->b_inv);
    c->b_inv = NULL;
    call_disarm(c);
    return send_invite(c, g, status, value) == 0;
}

/* A 2xx to the attempt: relay it to the caller, and the call is answered;
 * or, when it crossed the caller's CANCEL, ACK and BYE it and end the call. */
static void answered(struct call *c, sip_t const *sip, int status, const char *phrase)
{
    struct calls *cs = c->cs;
    bool relayed = !c->cancelled && c->a_irq;
    confirm_b(c, sip, relayed && c->late_offer);
    if (!c->b_ack_held) {
        sipinv_destroy(c->b_inv);
        c->b_inv = NULL;
    }
    if (!relayed) {
        /* The 200 crossed the caller's CANCEL (who got 487): hang up. */
        call_send_bye(c->b_leg, NULL, NULL);
        call_end(c, "caller", 487, "Request Terminated");
        return;
    }
    nta_incoming_treply(
        c->a_irq, status, phrase, SIPTAG_CONTACT_STR(cs->contact),
        SIPTAG_ALLOW_STR(CALL_ALLOW),
        TAG_IF(sip->sip_content_type, SIPTAG_CONTENT_TYPE(sip->sip_content_type)),
        TAG_IF(sip->sip_payload, SIPTAG_PAYLOAD(sip->sip_payload)), TAG_END());
    /* nta retransmits the 2xx until the caller's ACK, which comes to
     * on_a_ack_cancel(); so does the news that it never came. The
     * transaction is kept until then. */
    c->state = ST_ANSWERED;
    c->rec.answer = (long long)time(NULL);
    /* No more attempts: the caller's INVITE (and its SDP) can go, and
     * so can what only failover and digest retries needed. */
    msg_destroy(c->a_msg);
    c->a_msg = NULL;
    forget_routing(c);
    /* Until the caller's ACK: nta retransmits the 2xx for 64 * T1. */
    call_arm(c, (int)(64 * config_switch(cs->cfg)->sip.resend_interval / 1000) + 2);
    c->rec.status = status;
    call_set_reason(c, status, phrase ? phrase : "OK");
    log_info("call", "%" PRIu64 ": answered by %s", c->id, c->rec.routing_gateway);
}

static void on_b_response(void *magic, struct sipinv *inv, sip_t const *sip, int status)
{
    struct call *c = magic;
    struct calls *cs = c->cs;
    bool internal = !sip || (sip->sip_flags & NTA_INTERNAL_MSG);
    const char *phrase = sip && sip->sip_status ? sip->sip_status->st_phrase : NULL;
    if (inv != c->b_inv)
        return;

    if (status < 200) {
        if (c->state == ST_CALLING) {
            c->state = ST_PROCEEDING;
            call_arm(c, config_switch(cs->cfg)->sip.call_progress_timeout);
        }
        if (status > 100 && c->a_irq && !c->cancelled)
            nta_incoming_treply(
                c->a_irq, status, phrase, SIPTAG_CONTACT_STR(cs->contact),
                SIPTAG_ALLOW_STR(CALL_ALLOW),
                TAG_IF(sip->sip_content_type, SIPTAG_CONTENT_TYPE(sip->sip_content_type)),
                TAG_IF(sip->sip_payload, SIPTAG_PAYLOAD(sip->sip_payload)), TAG_END());
        return;
    }
    call_disarm(c);

    if (status < 300) {
        answered(c, sip, status, phrase);
        return;
    }

    if (c->cancelled) {
        call_end(c, "caller", 487, "Request Terminated");
        return;
    }
    if ((status == 401 || status == 407) && !internal && answer_challenge(c, status, sip))
        return;
    c->last_status = status;
    call_set_text(&c->last_reason, phrase);
    if (internal || gw_failover(cs->gws, c->rec.routing_gateway, status)) {
        log_info("call", "%" PRIu64 ": %s answered %d%s, trying the next gateway", c->id,
                 c->rec.routing_gateway, status, internal ? " (local)" : "");
        call_drop_b(c);
        call_try_next(c);
        return;
    }
    /* A final answer about the callee (404, 486, ...): relay it. */
    call_drop_b(c);
    call_fail(c, status, phrase, "callee");
    return;
}

/* ---- Timeouts ---------------------------------------------------------------- */

void call_attempt_timeout(struct call *c)
{
    if (c->b_inv)
        sipinv_cancel(c->b_inv);
    if (c->cancelled) {
        /* The caller is gone and the gateway never answered the CANCEL. */
        call_end(c, "caller", 487, "Request Terminated");
        return;
    }
    c->last_status = 408;
    call_set_text(&c->last_reason,
                  c->state == ST_CALLING ? "INVITE Timeout" : "Call Progress Timeout");
    log_info("call", "%" PRIu64 ": %s: %s, trying the next gateway", c->id,
             c->rec.routing_gateway, c->last_reason);
    call_drop_b(c);
    call_try_next(c);
}
