/* Refusals of a caller's INVITE before any call exists: overload, max_calls, a
 * stopping switch, a re-INVITE of an unknown dialog, Max-Forwards spent,
 * our own call looping, an unknown source, an endpoint's digest (challenge
 * or refusal), a Session-Expires below our Min-SE, a gateway at its line
 * limit.
 *
 * The same checks run in two places. calls_prefilter_invite() runs them
 * before any transaction exists and answers statelessly: the agent's answer
 * cache remembers each refusal (sipagent_refuse(), about 60 bytes for
 * 64 * T1) so a retransmission gets the same answer; the registrar's
 * challenges and refusals carry a fresh nonce and are answered anew, as a
 * REGISTER's are. What passes is kept for calls_on_invite(), which the agent
 * calls at once with the same sip (the digest nonce-count is used: it must
 * not be checked twice). Without the prefilter, calls_on_invite() runs the
 * checks itself and answers in the transaction. See call_internal.h. */
#include "sip/call_internal.h"
#include "config.h"
#include "log.h"
#include "overload.h"
#include "sip/agent.h"
#include "sip/flood.h"
#include "sip/gateway.h"
#include "sip/registrar.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>

void call_source_ip(msg_t *msg, char *out, size_t outlen, unsigned *port)
{
    *out = '\0';
    *port = 0;
    su_addrinfo_t *ai = msg_addrinfo(msg);
    if (!ai || !ai->ai_addr)
        return;
    su_sockaddr_t *su = (su_sockaddr_t *)ai->ai_addr;
    *port = ntohs(su->su_port);
    if (su->su_family == AF_INET)
        inet_ntop(AF_INET, &su->su_sin.sin_addr, out, (socklen_t)outlen);
    else if (su->su_family == AF_INET6)
        inet_ntop(AF_INET6, &su->su_sin6.sin6_addr, out, (socklen_t)outlen);
}

/* Loop check. Our own B-leg INVITE coming back to us (a routing gateway
 * that is the switch itself, or a proxy that routes the number back) would
 * be taken as a new call and routed the same way again, until
 * Max-Forwards, which we decrement, ran out: 70 calls at once (each
 * counting against the gateways' line limits) and 70 CDRs for one
 * attempt, and no end at all through an element that resets Max-Forwards.
 * RFC 3261 16.3 has a proxy look for its own Via; a B2BUA cannot keep one
 * request across its legs, but the Call-ID crosses every proxy unchanged,
 * so each of our B-leg Call-IDs ends with this process's random instance
 * id, and an INVITE carrying it is our own call looping: 482 Loop Detected
 * at once, before any call state or CDR. The attempt that looped gets the
 * 482 (the next gateway only when failover_codes lists 482) and its call
 * writes the one CDR. A loop through another B2BUA (a new Call-ID) is
 * still cut by Max-Forwards: 483 Too Many Hops. */
static bool own_call_id(const struct calls *cs, const char *call_id)
{
    size_t n = call_id ? strlen(call_id) : 0, m = strlen(cs->instance);
    return n > m + 1 && call_id[n - m - 1] == '-' &&
           strcmp(call_id + n - m, cs->instance) == 0;
}

/* Answer the refusal through `to`; returns `status`. */
static int refuse(const struct call_reply *to, int status, const char *phrase,
                  const char *headers)
{
    if (to->irq)
        nta_incoming_treply(to->irq, status, phrase ? phrase : sip_status_phrase(status),
                            TAG_IF(headers, SIPTAG_HEADER_STR(headers)), TAG_END());
    else
        sipagent_refuse(to->agent, to->msg, to->sip, status, phrase, headers);
    return status;
}

/* Where an INVITE comes from: call_identify_source(), else the mapping
 * gateway of the account it authenticates as (NONE when neither). Returns
 * 0, or the status the registrar answered the request with itself (a
 * challenge, a refusal). */
static int caller_source(struct calls *cs, const struct call_reply *to, const sip_t *sip,
                         const char *ip, unsigned port, struct call_source *src)
{
    call_identify_source(cs, sip, ip, port, src);
    if (src->kind != CALL_SOURCE_NONE || !cs->registrar ||
        config_count(cs->cfg, KIND_ACCOUNT) == 0)
        return 0;
    /* Not a gateway's address: perhaps a registered endpoint. The
     * registrar challenges and answers itself when it is not. */
    const char *account = NULL;
    int status = to->irq
                     ? registrar_authenticate(cs->registrar, to->irq, sip, &account)
                     : registrar_authenticate_msg(cs->registrar, to->msg, sip, &account);
    if (status)
        return status;
    const struct account_def *acc =
        (const void *)config_find(cs->cfg, KIND_ACCOUNT, account);
    src->mapping = acc ? (const void *)config_find(cs->cfg, KIND_MAPPING_GATEWAY,
                                                   acc->mapping_gateway)
                       : NULL;
    if (src->mapping)
        src->kind = CALL_SOURCE_MAPPING;
    return 0;
}

/* Whether the gateway the call comes through has line_limit calls already. */
static bool source_full(const struct calls *cs, const struct call_source *src, int *limit)
{
    if (src->kind == CALL_SOURCE_ROUTING) {
        const struct routing_gateway_def *g = src->routing;
        *limit = g->line_limit;
        return g->line_limit >= 0 &&
               gw_routing_calls(cs->gws, g->head.name) >= (unsigned)g->line_limit;
    }
    *limit = src->mapping->line_limit;
    return gw_mapping_full(cs->gws, src->mapping);
}

int call_refuse_check(struct calls *cs, const struct call_reply *to, msg_t *msg,
                      const sip_t *sip, struct call_source *src)
{
    if (cs->stopping || !cs->cfg)
        return refuse(to, 503, NULL, NULL);
    if (sip->sip_to && sip->sip_to->a_tag)
        return refuse(to, 481, NULL, NULL); /* a re-INVITE for a dialog we do not know */
    int mf = sip->sip_max_forwards ? (int)sip->sip_max_forwards->mf_count : 70;
    if (mf <= 0)
        return refuse(to, 483, NULL, NULL);
    if (own_call_id(cs, sip->sip_call_id ? sip->sip_call_id->i_id : NULL)) {
        log_info("call", "INVITE %s is our own call coming back: 482 Loop Detected",
                 sip->sip_call_id->i_id);
        return refuse(to, 482, NULL, NULL);
    }
    char ip[64];
    unsigned port;
    call_source_ip(msg, ip, sizeof ip, &port);
    int status = caller_source(cs, to, sip, ip, port, src);
    if (status)
        return status;
    if (src->kind == CALL_SOURCE_NONE) {
        log_debug("call", "INVITE from unknown source %s: 403", ip);
        return refuse(to, 403, NULL, NULL);
    }
    int min_se = calls_timer_min_se(cs, sip);
    if (min_se) {
        char hdr[32];
        snprintf(hdr, sizeof hdr, "Min-SE: %d", min_se);
        return refuse(to, 422, NULL, hdr);
    }
    int limit;
    if (source_full(cs, src, &limit)) {
        log_info("call", "INVITE from %s: %s gateway %s at its line limit %d", ip,
                 src->mapping ? "mapping" : "routing",
                 src->mapping ? src->mapping->head.name : src->routing->head.name, limit);
        return refuse(to, 503, "Line Limit Reached", NULL);
    }
    return 0;
}

void calls_set_flood(struct calls *cs, struct flood *fl)
{
    cs->flood = fl;
}

void calls_set_overload(struct calls *cs, struct overload *ov)
{
    cs->overload = ov;
}

bool call_refuse_passed(struct calls *cs, const sip_t *sip, struct call_source *src)
{
    bool passed = cs->passed.sip && cs->passed.sip == sip;
    if (passed)
        *src = cs->passed.src;
    cs->passed.sip = NULL;
    return passed;
}

int calls_prefilter_invite(msg_t *msg, sip_t *sip, void *arg)
{
    struct calls *cs = arg;
    cs->passed.sip = NULL;
    if (overload_shedding(cs->overload) && !(sip->sip_to && sip->sip_to->a_tag)) {
        /* Behind on what comes in: the CPU goes to the calls we have. */
        char hdr[32];
        snprintf(hdr, sizeof hdr, "Retry-After: %d", OVERLOAD_RETRY_AFTER);
        overload_shed(cs->overload);
        sipagent_refuse(cs->agent, msg, sip, 503, NULL, hdr);
        return 0;
    }
    if (cs->flood && flood_calls_over(cs->flood, cs->count)) {
        /* The flood module's 503 with Retry-After, remembered like ours. */
        char hdr[32];
        snprintf(hdr, sizeof hdr, "Retry-After: %d", FLOOD_CALLS_RETRY_AFTER);
        flood_calls_refused(cs->flood);
        sipagent_refuse(cs->agent, msg, sip, 503, NULL, hdr);
        return 0;
    }
    const struct call_reply to = {.agent = cs->agent, .msg = msg, .sip = sip};
    struct call_source src;
    if (call_refuse_check(cs, &to, msg, sip, &src) != 0)
        return 0; /* answered statelessly: msg is gone */
    cs->passed.sip = sip;
    cs->passed.src = src;
    return -1;
}
