/* B-leg attempts: the call's INVITE to each usable target in turn (a
 * routing gateway, or a registered account's binding), a digest retry for
 * gateways with credentials (a registration gateway's registration's, or a
 * static gateway's own), failures handed to call_route_failed(), our
 * timeouts, and the answer relayed to the caller. See call_internal.h. */
#include "sip/call_internal.h"
#include "cdr.h"
#include "config.h"
#include "log.h"
#include "random.h"
#include "sip/agent.h"
#include "sip/digest.h"
#include "sip/gateway.h"
#include "sip/hep.h"
#include "sip/registrar.h"
#include "sip/transport.h"

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
    call_cands_free(c, 0);
    call_free_text(&c->b_ruri);
    call_free_text(&c->b_addr);
    call_free_text(&c->last_reason);
}

/* Send the INVITE of one attempt to gateway g. `auth` is an Authorization
 * (401) or Proxy-Authorization (407) value for a retry, else NULL. Returns
 * 0, or -1 when it could not even be sent. */
static int send_invite(struct call *c, const struct routing_gateway_def *g,
                       const char *addr, int auth_status, const char *auth)
{
    struct calls *cs = c->cs;
    sip_t const *a = sip_object(c->a_msg);
    const char *callee = c->rec.callee, *routed = c->rec.routed_callee;
    int use_contact = g->invite_use_contact == TRI_INHERIT
                          ? config_switch(cs->cfg)->sip.routing_gateway_invite_use_contact
                          : g->invite_use_contact == TRI_ON;
    char to[512], from[480], rnd[33], call_id[64], tag[20], ids[1024 + 8192];
    bool pass_privacy;
    call_identity_headers(c, g, a, ids, sizeof ids, &pass_privacy);
    size_t idlen = strlen(ids);
    snprintf(ids + idlen, sizeof ids - idlen, "%s", c->headers); /* the policy's */
    char ruri[512], user[3 * CALL_NUM], contact[160];
    call_identity_uri_user(routed, user, sizeof user);
    transport_uri(ruri, sizeof ruri, user, addr, 0, g->transport);
    call_set_text(&c->b_ruri, ruri);
    c->b_transport = (uint8_t)g->transport;
    call_set_text(&c->b_addr, addr);
    c->b_request_address = g->request_address;
    if (use_contact)
        call_identity_uri_user(callee, user, sizeof user);
    snprintf(to, sizeof to, "<sip:%s@%s>", user, addr);
    if (!c->b_leg) {
        c->session_offer = 0; /* a new attempt offers sip.session_ttl again */
        c->session_retries = 0;
        random_hex(tag, 8);
        random_hex(rnd, 16);
        /* Marked ours: see own_call_id() in call.c. */
        snprintf(call_id, sizeof call_id, "%s-%s", rnd, cs->instance);
        call_identity_from(a->sip_from, c->display, c->rec.caller,
                           config_switch(cs->cfg)->sip.e164_display_from, cs->host, tag,
                           from, sizeof from);
        c->b_leg = nta_leg_tcreate(cs->nta, call_b_leg_request, c, SIPTAG_FROM_STR(from),
                                   SIPTAG_TO_STR(to), SIPTAG_CALL_ID_STR(call_id),
                                   URLTAG_URL(SIPAGENT_DIALOG_URL), TAG_END());
        if (!c->b_leg)
            return -1;
        hep_correlate(call_id, c->rec.call_id); /* Homer joins the legs */
    }
    char mf[16], timer[128];
    snprintf(mf, sizeof mf, "%d", c->a_max_forwards - 1);
    call_timer_invite_headers(c, timer, sizeof timer);
    c->b_inv = sipagent_invite(
        cs->agent, NULL, c->b_leg, on_b_response, c, URL_STRING_MAKE(c->b_ruri),
        SIPTAG_CONTACT_STR(transport_contact(cs->nta, g->transport, cs->contact, contact,
                                             sizeof contact)),
        SIPTAG_MAX_FORWARDS_STR(mf), SIPTAG_ALLOW_STR(CALL_ALLOW),
        TAG_IF(auth && auth_status == 401, SIPTAG_AUTHORIZATION_STR(auth)),
        TAG_IF(auth && auth_status == 407, SIPTAG_PROXY_AUTHORIZATION_STR(auth)),
        TAG_IF(pass_privacy, SIPTAG_PRIVACY(a->sip_privacy)),
        TAG_IF(ids[0], SIPTAG_HEADER_STR(ids)),
        TAG_IF(timer[0], SIPTAG_HEADER_STR(timer)),
        TAG_IF(a->sip_content_type, SIPTAG_CONTENT_TYPE(a->sip_content_type)),
        TAG_IF(a->sip_payload, SIPTAG_PAYLOAD(a->sip_payload)), TAG_END());
    if (!c->b_inv)
        return -1;
    c->state = ST_CALLING;
    call_arm(c, c->b_timeout ? c->b_timeout : config_switch(cs->cfg)->sip.invite_timeout);
    return 0;
}

static double now_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A target that is an account: its binding, as a gateway-shaped
 * destination (the endpoint's address, the account as the number unless
 * the target names one, no rewriting). Returns true when an INVITE went
 * out. */
static bool try_account(struct call *c, const struct call_cand *t)
{
    struct calls *cs = c->cs;
    char target[128];
    if (!config_find(cs->cfg, KIND_ACCOUNT, t->name)) {
        log_warn("call", "%" PRIu64 ": route names unknown account \"%s\"", c->id,
                 t->name);
        return false;
    }
    int transport = gw_account_target(cs->gws, t->name, target, sizeof target, NULL, 0);
    if (transport < 0) {
        log_debug("call", "%" PRIu64 ": account %s skipped: not registered", c->id,
                  t->name);
        return false;
    }
    struct routing_gateway_def g = {.type = RGW_STATIC,
                                    .address = target,
                                    .invite_use_contact = TRI_OFF,
                                    .line_limit = CONFIG_UNLIMITED,
                                    .request_address = REQUEST_SOCKET,
                                    .transport = transport};
    char name[CDR_FIELD_MAX];
    snprintf(name, sizeof name, "endpoint:%.100s", t->name);
    call_set_attempt(&c->rec, name, t->callee ? t->callee : t->name);
    c->auth_tries = 1; /* an endpoint's challenge is not ours to answer */
    c->b_timeout = t->timeout;
    c->b_started = now_monotonic();
    if (send_invite(c, &g, target, 0, NULL) != 0) {
        c->last_status = 503;
        call_drop_b(c);
        return false;
    }
    /* One series for all registered phones: per-account labels would make
     * one per phone. */
    metrics_call_attempt(&c->metrics, metrics_routing_gateway("endpoint"));
    log_debug("call", "%" PRIu64 ": %s -> registered %s at %s", c->id, c->rec.caller,
              t->name, target);
    return true;
}

/* A target that is a routing gateway, when it can take the call now.
 * Returns true when an INVITE went out. */
static bool try_gateway(struct call *c, const struct call_cand *t)
{
    struct calls *cs = c->cs;
    const struct routing_gateway_def *g = routing_check(cs->gws, t->name, c->id);
    char addr[128];
    if (!g)
        return false;
    if (gw_address(cs->gws, g, addr, sizeof addr) < 0) {
        log_debug("call", "%" PRIu64 ": %s skipped: no address", c->id, t->name);
        return false;
    }
    char routed[CALL_NUM];
    if (t->callee)
        snprintf(routed, sizeof routed, "%s", t->callee);
    else
        routing_rewrite(&g->callee_rewrite, c->rec.callee, cs->rewrite_h, cs->rewrite_arg,
                        routed, sizeof routed);
    call_set_attempt(&c->rec, g->head.name, routed);
    gw_routing_take(cs->gws, g->head.name);
    c->b_counted = true;
    c->auth_tries = 0;
    c->b_timeout = t->timeout;
    c->b_started = now_monotonic();
    if (send_invite(c, g, addr, 0, NULL) == 0) {
        metrics_call_attempt(&c->metrics, metrics_routing_gateway(g->head.name));
        log_debug("call", "%" PRIu64 ": %s -> %s via %s", c->id, c->rec.caller,
                  c->rec.routed_callee, g->head.name);
        return true;
    }
    log_warn("call", "%" PRIu64 ": cannot send the INVITE to %s", c->id, g->head.name);
    c->last_status = 503;
    call_drop_b(c);
    return false;
}

/* Try the next usable target, or fail the call when none is left. */
void call_try_next(struct call *c)
{
    while (c->next_cand < c->ncands) {
        const struct call_cand *t = &c->cands[c->next_cand++];
        if (t->account ? try_account(c, t) : try_gateway(c, t))
            return;
    }
    if (c->last_status)
        call_fail(c, c->last_status, c->last_reason[0] ? c->last_reason : NULL, "switch");
    else if (c->no_route)
        call_fail(c, c->no_route, NULL, "switch");
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
    sip_contact_t *fixed =
        call_b_target(c->b_request_address, home, target, host, port, c->b_transport);
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

/* The credentials gateway g answers challenges with: its registration's
 * (type registration), else its own (username, password, auth_username).
 * False when it has none. */
static bool credentials(const struct calls *cs, const struct routing_gateway_def *g,
                        const char **user, const char **password)
{
    if (g->registration) {
        const struct registration_def *reg =
            (const void *)config_find(cs->cfg, KIND_REGISTRATION, g->registration);
        if (!reg)
            return false;
        *user = reg->auth_username ? reg->auth_username : reg->username;
        *password = reg->password ? reg->password : "";
        return true;
    }
    if (!g->password)
        return false;
    *user = g->auth_username ? g->auth_username : g->username;
    *password = g->password;
    return *user != NULL;
}

/* Answer a 401/407 from a gateway with credentials, up to
 * sip.authentication_retry times per attempt. Returns true when a new
 * INVITE went out. */
static bool answer_challenge(struct call *c, int status, sip_t const *sip)
{
    struct calls *cs = c->cs;
    const struct routing_gateway_def *g = gw_find(cs->gws, c->rec.routing_gateway);
    const char *user, *password;
    unsigned retry = (unsigned)config_switch(cs->cfg)->sip.authentication_retry;
    if (!g || c->auth_tries >= retry || !credentials(cs, g, &user, &password))
        return false;
    c->auth_tries++;
    msg_auth_t const *au =
        status == 401 ? sip->sip_www_authenticate : sip->sip_proxy_authenticate;
    if (!au)
        return false;
    struct digest_challenge ch;
    if (digest_challenge_parse(&ch, (const char *const *)au->au_params) < 0)
        return false;
    char cnonce[17], value[2048];
    random_hex(cnonce, 8);
    if (digest_authorization(&ch, user, password, "INVITE", c->b_ruri, 1, cnonce, value,
                             sizeof value) < 0)
        return false;
    sipinv_destroy(c->b_inv);
    c->b_inv = NULL;
    call_disarm(c);
    char addr[128];
    snprintf(addr, sizeof addr, "%s", c->b_addr); /* send_invite() replaces b_addr */
    log_debug("call", "%" PRIu64 ": %s challenged the INVITE (%d): answering as %s",
              c->id, g->head.name, status, user);
    return send_invite(c, g, addr, status, value) == 0;
}

/* A 422 (RFC 4028): the INVITE goes again with the gateway's Min-SE.
 * Returns true when it went out. */
static bool retry_422(struct call *c, sip_t const *sip)
{
    const struct routing_gateway_def *g = gw_find(c->cs->gws, c->rec.routing_gateway);
    if (!g || !call_timer_retry_422(c, sip))
        return false;
    sipinv_destroy(c->b_inv);
    c->b_inv = NULL;
    call_disarm(c);
    char addr[128];
    snprintf(addr, sizeof addr, "%s", c->b_addr); /* send_invite() replaces b_addr */
    return send_invite(c, g, addr, 0, NULL) == 0;
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
    char timer[128]; /* the caller's session timer (call_timer.c) */
    call_timer_answer(c, sip, timer, sizeof timer);
    char contact[160];
    nta_incoming_treply(
        c->a_irq, status, phrase,
        SIPTAG_CONTACT_STR(call_contact(c, true, contact, sizeof contact)),
        SIPTAG_ALLOW_STR(CALL_ALLOW), TAG_IF(timer[0], SIPTAG_HEADER_STR(timer)),
        TAG_IF(sip->sip_content_type, SIPTAG_CONTENT_TYPE(sip->sip_content_type)),
        TAG_IF(sip->sip_payload, SIPTAG_PAYLOAD(sip->sip_payload)), TAG_END());
    /* nta retransmits the 2xx until the caller's ACK, which comes to
     * on_a_ack_cancel(); so does the news that it never came. The
     * transaction is kept until then. */
    c->state = ST_ANSWERED;
    c->rec.answer = (long long)time(NULL);
    metrics_call_answered(&c->metrics);
    /* No more attempts: the caller's INVITE (and its SDP) can go, and
     * so can what only failover and digest retries needed. */
    msg_destroy(c->a_msg);
    c->a_msg = NULL;
    forget_routing(c);
    /* Until the caller's ACK: nta retransmits the 2xx for 64 * T1. */
    call_arm(c, (int)(64 * config_switch(cs->cfg)->sip.resend_interval / 1000) + 2);
    c->rec.status = status;
    call_set_reason(c, status, phrase ? phrase : "OK");
    log_debug("call", "%" PRIu64 ": answered by %s", c->id, c->rec.routing_gateway);
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
        if (status > 100)
            metrics_call_progress(&c->metrics);
        char contact[160];
        if (status > 100 && c->a_irq && !c->cancelled)
            nta_incoming_treply(
                c->a_irq, status, phrase,
                SIPTAG_CONTACT_STR(call_contact(c, true, contact, sizeof contact)),
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
    if (status == 422 && !internal && retry_422(c, sip))
        return;
    c->last_status = status;
    call_set_text(&c->last_reason, phrase);
    call_drop_b(c);
    call_route_failed(c, status, internal); /* may end c */
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
    log_info("call", "%" PRIu64 ": %s: %s", c->id, c->rec.routing_gateway,
             c->last_reason);
    call_drop_b(c);
    call_route_failed(c, 408, true); /* may end c */
}
