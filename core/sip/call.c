/* The call module's front: the caller's INVITE (ingress: loop check, where
 * it comes from, a new call), the caller's ACK or CANCEL of that INVITE,
 * the calls' timer, the module's life, and the live view. The route is
 * call_route.c, the B-leg call_bleg.c, the answered dialog call_dialog.c,
 * the end call_end.c. See call.h and call_internal.h. */
#include "sip/call_internal.h"
#include "config.h"
#include "log.h"
#include "random.h"
#include "sip/agent.h"
#include "sip/gateway.h"
#include "sip/registrar.h"
#include "sip/transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>
#include <sofia-sip/url_tag.h>

static const char *statename(enum call_state s)
{
    static const char *const names[] = {"routing", "calling", "proceeding", "answered",
                                        "ending"};
    return names[s];
}

/* ---- Timers ------------------------------------------------------------------ */

void call_arm(struct call *c, int seconds)
{
    wheel_add(c->cs->timers, &c->timer, (unsigned)(seconds > 0 ? seconds : 1) * 1000u);
}

void call_disarm(struct call *c)
{
    wheel_del(c->cs->timers, &c->timer);
}

/* The call's one timer fired: what it meant depends on the state. */
static void on_timer(struct wheel_node *node, void *arg)
{
    struct calls *cs = arg;
    struct call *c = (struct call *)((char *)node - offsetof(struct call, timer));
    if (c->state == ST_ANSWERED && !c->acked) {
        /* Our 2xx was never ACKed (nta gave up retransmitting it): the
         * caller is gone or never saw the answer. Without this the call
         * would stay up until the maximum duration. */
        log_info("call", "%" PRIu64 ": the caller never ACKed the answer: hanging up",
                 c->id);
        call_hangup_switch(c, 408, "No ACK");
        call_kick(cs);
        return;
    }
    if (c->state == ST_ANSWERED) {
        /* Session timers and the no-timer limit (call_timer.c). */
        call_timer_fire(c); /* may end c */
        call_kick(cs);
        return;
    }
    if (c->state != ST_CALLING && c->state != ST_PROCEEDING)
        return;
    call_attempt_timeout(c); /* may end c */
    call_kick(cs);
}

/* ---- Lifetime ---------------------------------------------------------------- */

int calls_create(struct calls **csp, struct sipagent *agent, su_root_t *root,
                 struct event_base *base, struct store *store, struct gw_set *gws)
{
    struct calls *cs = calloc(1, sizeof *cs);
    if (!cs)
        return -ENOMEM;
    cs->agent = agent;
    cs->nta = sipagent_nta(agent);
    cs->root = root;
    cs->base = base;
    cs->store = store;
    cs->gws = gws;
    cs->next_id = 1;
    random_hex(cs->instance, 6);
    /* Call timers are seconds long: 100 ms ticks are precise enough, and
     * 1024 slots keep a tick's work at calls/1024 checks. */
    cs->timers = wheel_create(base, 100, 1024, on_timer, cs);
    if (!cs->timers) {
        free(cs);
        return -ENOMEM;
    }
    sip_contact_t const *me = nta_agent_contact(cs->nta);
    if (me && me->m_url->url_host) {
        snprintf(cs->host, sizeof cs->host, "%s%s%s", me->m_url->url_host,
                 me->m_url->url_port ? ":" : "",
                 me->m_url->url_port ? me->m_url->url_port : "");
        snprintf(cs->contact, sizeof cs->contact, "<sip:%s>", cs->host);
    } else {
        snprintf(cs->host, sizeof cs->host, "localhost");
        snprintf(cs->contact, sizeof cs->contact, "<sip:localhost>");
    }
    /* The dialogs' requests come without a transaction (see agent.h). */
    sipagent_set_dialog_handler(agent, call_indialog_request, cs);
    *csp = cs;
    return 0;
}

void calls_set_registrar(struct calls *cs, struct registrar *r)
{
    cs->registrar = r;
}

void calls_apply(struct calls *cs, const struct config *cfg)
{
    cs->cfg = cfg;
}

void calls_set_query_hook(struct calls *cs, calls_query_h *h, void *arg)
{
    cs->query_h = h;
    cs->query_arg = arg;
}

void calls_set_number_hook(struct calls *cs, calls_number_h *h, void *arg)
{
    cs->number_h = h;
    cs->number_arg = arg;
}

void calls_set_end_hook(struct calls *cs, calls_end_h *h, void *arg)
{
    cs->end_h = h;
    cs->end_arg = arg;
}

void calls_set_rewrite_hook(struct calls *cs, routing_rewrite_h *h, void *arg)
{
    cs->rewrite_h = h;
    cs->rewrite_arg = arg;
}

void calls_destroy(struct calls *cs)
{
    if (!cs)
        return;
    while (cs->head)
        call_free(cs->head);
    wheel_destroy(cs->timers);
    for (size_t i = 0; i < cs->nbyes; i++)
        if (cs->byes[i])
            nta_outgoing_destroy(cs->byes[i]);
    free(cs->byes);
    free(cs);
}

/* ---- Ingress ----------------------------------------------------------------- */

/* The caller's ACK of our 2xx, or its CANCEL (nta has answered it 200), or
 * (sip NULL) nta giving up on an ACK that never came. */
static int on_a_ack_cancel(void *magic, nta_incoming_t *irq, sip_t const *sip)
{
    struct call *c = magic;
    if (irq != c->a_irq)
        return 0;
    if (c->state == ST_ANSWERED) {
        if (!sip || !sip->sip_request || sip->sip_request->rq_method == sip_method_ack) {
            nta_incoming_destroy(c->a_irq);
            c->a_irq = NULL;
            if (!sip) {
                log_info("call",
                         "%" PRIu64 ": the caller never ACKed the answer: hanging up",
                         c->id);
                struct calls *cs = c->cs;
                call_hangup_switch(c, 408, "No ACK"); /* frees c */
                call_kick(cs);
                return 0;
            }
            /* Confirmed: the carrier gets its ACK now if it waited for
             * the caller's answer (late offer); the timer keeps the
             * session timers and the no-timer limit. */
            call_flush_b_ack(c, sip);
            c->acked = true;
            call_disarm(c);
            call_timer_start(c, sip);
        }
        return 0; /* a CANCEL after the answer changes nothing */
    }
    if (!sip || !sip->sip_request || sip->sip_request->rq_method != sip_method_cancel)
        return 0;
    if (c->cancelled)
        return 0;
    c->cancelled = true;
    nta_incoming_treply(c->a_irq, SIP_487_REQUEST_CANCELLED, TAG_END());
    nta_incoming_destroy(c->a_irq);
    c->a_irq = NULL;
    c->rec.status = 487;
    call_set_reason(c, 487, "Request Terminated");
    if (c->b_inv) {
        sipinv_cancel(c->b_inv);
        /* Wait for the gateway's 487 (or a crossing 200) to end the call;
         * the timer bounds the wait. */
        if (c->state == ST_CALLING)
            call_arm(c, 2);
        return 0;
    }
    call_end(c, "caller", 487, "Request Terminated");
    return 0;
}

void call_identify_source(const struct calls *cs, const sip_t *sip, const char *ip,
                          unsigned port, struct call_source *out)
{
    *out = (struct call_source){.kind = CALL_SOURCE_NONE};
    if (!cs->cfg || !ip || !*ip)
        return;
    if ((out->mapping = gw_mapping_by_source(cs->gws, ip))) {
        out->kind = CALL_SOURCE_MAPPING;
        return;
    }
    const url_t *ruri = sip->sip_request ? sip->sip_request->rq_url : NULL;
    if ((out->routing = gw_routing_by_source(cs->gws, ruri, ip, port)))
        out->kind = CALL_SOURCE_ROUTING;
}

/* A new call for the caller's INVITE `irq` (whose message `msg` it takes)
 * through the gateway of `src`, at the end of the list and counted against
 * the gateway's line limit. NULL when out of memory. */
static struct call *call_new(struct calls *cs, nta_incoming_t *irq, msg_t *msg,
                             const sip_t *sip, const struct call_source *src,
                             int max_forwards)
{
    struct call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->cs = cs;
    c->id = cs->next_id++;
    c->a_msg = msg;
    c->a_irq = irq;
    c->a_max_forwards = max_forwards > 70 ? 70 : max_forwards;
    c->late_offer = !sip->sip_payload || sip->sip_payload->pl_len == 0;
    c->inbound = src->kind == CALL_SOURCE_ROUTING;
    call_record_init(c);
    struct call_number_rule rule;
    const char *name;
    if (c->inbound) {
        const struct routing_gateway_def *g = src->routing;
        rule = (struct call_number_rule){.callee_from = CALLEE_FROM_TO,
                                         .caller_from = g->peer_number_information,
                                         .caller_hook = g->peer_number_hook.ref};
        name = g->head.name;
    } else {
        const struct mapping_gateway_def *m = src->mapping;
        rule = (struct call_number_rule){.callee_from = m->callee_from,
                                         .caller_from = m->caller_from,
                                         .callee_hook = m->callee_hook.ref,
                                         .caller_hook = m->caller_hook.ref};
        name = m->head.name;
    }
    char callee[CALL_NUM], caller[CALL_NUM];
    call_identity_numbers(cs, &rule, msg, caller, sizeof caller, callee, sizeof callee);
    call_set_fixed(&c->rec, sip->sip_call_id->i_id, caller, callee, name, callee);
    metrics_call_begin(&c->metrics, metrics_mapping_gateway(name));
    if (c->inbound)
        gw_routing_take(cs->gws, c->rec.mapping_gateway);
    else
        gw_mapping_take(cs->gws, c->rec.mapping_gateway);

    c->prev = cs->tail;
    if (cs->tail)
        cs->tail->next = c;
    else
        cs->head = c;
    cs->tail = c;
    cs->count++;
    return c;
}

int calls_on_invite(nta_incoming_t *irq, const sip_t *sip, void *arg)
{
    struct calls *cs = arg;
    msg_t *msg = nta_incoming_getrequest(irq);
    struct call_source src;
    /* The prefilter checked it a moment ago, in the same call from the
     * agent; without it the checks answer in the transaction. */
    if (!call_refuse_passed(cs, sip, &src)) {
        const struct call_reply to = {.irq = irq};
        if (call_refuse_check(cs, &to, msg, sip, &src) != 0) {
            msg_destroy(msg);
            nta_incoming_destroy(irq);
            return 0;
        }
    }
    int mf = sip->sip_max_forwards ? (int)sip->sip_max_forwards->mf_count : 70;
    char ip[64];
    unsigned port;
    call_source_ip(msg, ip, sizeof ip, &port);
    const char *gw = src.mapping ? src.mapping->head.name : src.routing->head.name;
    int a_transport = transport_of_msg(msg);
    struct call *c = call_new(cs, irq, msg, sip, &src, mf);
    if (!c) {
        msg_destroy(msg);
        return 500;
    }
    c->a_transport = (uint8_t)a_transport;
    c->a_leg =
        nta_leg_tcreate(cs->nta, call_a_leg_request, c, SIPTAG_CALL_ID(sip->sip_call_id),
                        SIPTAG_FROM(sip->sip_to), SIPTAG_TO(sip->sip_from),
                        URLTAG_URL(SIPAGENT_DIALOG_URL), TAG_END());
    if (!c->a_leg) {
        call_fail(c, 500, NULL, "switch");
        return 0;
    }
    nta_leg_tag(c->a_leg, NULL);
    nta_incoming_tag(irq, nta_leg_get_tag(c->a_leg));
    nta_leg_server_route(c->a_leg, sip->sip_record_route, sip->sip_contact);
    nta_incoming_bind(irq, on_a_ack_cancel, c);
    nta_incoming_treply(irq, SIP_100_TRYING, TAG_END());
    log_debug("call", "%" PRIu64 ": %s INVITE %s -> %s from %s (%s)", c->id,
              c->inbound ? "inbound" : "outbound", c->rec.caller, c->rec.callee, gw, ip);
    call_route_start(c);
    return 0;
}

/* ---- Live view and operator actions ------------------------------------------ */

size_t calls_count(const struct calls *cs)
{
    return cs->count;
}

static void fill_info(const struct call *c, struct call_info *out)
{
    out->id = c->id;
    out->state = statename(c->state);
    out->direction = c->inbound ? "inbound" : "outbound";
    out->caller = c->rec.caller;
    out->callee = c->rec.callee;
    out->routed_callee = c->rec.routed_callee;
    out->mapping_gateway = c->rec.mapping_gateway;
    out->routing_gateway = c->rec.routing_gateway;
    out->call_id = c->rec.call_id;
    out->start = c->rec.start;
    out->answer = c->rec.answer;
}

int calls_visit(struct calls *cs, call_visit_h *fn, void *arg)
{
    struct call_info info;
    for (struct call *c = cs->head; c; c = c->next) {
        fill_info(c, &info);
        int rc = fn(&info, arg);
        if (rc)
            return rc;
    }
    return 0;
}

static struct call *find(struct calls *cs, uint64_t id)
{
    for (struct call *c = cs->head; c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

int calls_info(struct calls *cs, uint64_t id, struct call_info *out)
{
    struct call *c = find(cs, id);
    if (!c)
        return -ENOENT;
    fill_info(c, out);
    return 0;
}

int calls_hangup(struct calls *cs, uint64_t id)
{
    struct call *c = find(cs, id);
    if (!c)
        return -ENOENT;
    call_hangup_switch(c, 503, "Call Terminated");
    call_kick(cs);
    return 0;
}

uint64_t calls_started(const struct calls *cs)
{
    return cs->next_id - 1;
}
