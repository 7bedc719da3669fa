/* The end of a call: its record (what the CDR will say, kept small while the
 * call lives), the CDR written when it ends, teardown (failure to the caller,
 * BYE, the switch's own hangup), freeing, and the module's shutdown. See
 * call_internal.h. */
#include "sip/call_internal.h"
#include "cdr.h"
#include "log.h"
#include "sip/gateway.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sofia-sip/msg.h>
#include <sofia-sip/sip_status.h>

/* ---- The record ------------------------------------------------------------ */

/* Text fields of a call: "" is shared, anything else is a malloc'd copy
 * owned by the field. Out of memory leaves the field "" (logged): a CDR
 * with a missing name is better than no call. */
char call_empty_text[] = "";

void call_set_text(char **field, const char *value)
{
    if (*field && *field != call_empty_text)
        free(*field);
    *field = call_empty_text;
    if (value && *value) {
        char *copy = strdup(value);
        if (copy)
            *field = copy;
        else
            log_error("call", "out of memory for a call's text field");
    }
}

void call_free_text(char **field)
{
    if (*field && *field != call_empty_text)
        free(*field);
    *field = call_empty_text;
}

void call_record_init(struct call *c)
{
    struct call_record *r = &c->rec;
    char **texts[] = {&c->b_ruri, &c->b_addr,  &c->last_reason, &r->attempt,
                      &r->reason, &c->display, &c->headers};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        *texts[i] = call_empty_text;
    r->routed_callee = r->routing_gateway = call_empty_text;
    r->start = (long long)time(NULL);
}

/* The five texts fixed at the INVITE, packed in one allocation. The
 * values may point into the old pack, which goes afterwards. */
void call_set_fixed(struct call_record *r, const char *call_id, const char *caller,
                    const char *callee, const char *mapping_gateway,
                    const char *original_callee)
{
    const char *v[5] = {call_id ? call_id : "", caller, callee, mapping_gateway,
                        original_callee};
    size_t len[5], total = 0;
    for (int i = 0; i < 5; i++)
        total += (len[i] = strlen(v[i])) + 1;
    char *old = r->fixed;
    r->fixed = malloc(total);
    const char **out[5] = {&r->call_id, &r->caller, &r->callee, &r->mapping_gateway,
                           &r->original_callee};
    char *p = r->fixed;
    if (!p && old) { /* out of memory again: keep the old pack */
        r->fixed = old;
        log_error("call", "out of memory for a call's record");
        return;
    }
    for (int i = 0; i < 5; i++) {
        if (!p) {
            *out[i] = call_empty_text;
            continue;
        }
        memmove(p, v[i], len[i] + 1);
        *out[i] = p;
        p += len[i] + 1;
    }
    free(old);
    if (!r->fixed)
        log_error("call", "out of memory for a call's record");
}

/* The gateway and routed number of a new attempt, in one allocation. */
void call_set_attempt(struct call_record *r, const char *gateway, const char *routed)
{
    size_t glen = strlen(gateway), rlen = strlen(routed);
    call_free_text(&r->attempt);
    r->routing_gateway = r->routed_callee = call_empty_text;
    char *p = malloc(glen + rlen + 2);
    if (!p) {
        log_error("call", "out of memory for a call's record");
        return;
    }
    memcpy(p, gateway, glen + 1);
    memcpy(p + glen + 1, routed, rlen + 1);
    r->attempt = p;
    r->routing_gateway = p;
    r->routed_callee = p + glen + 1;
}

/* The record's reason for `status`: nothing stored when it is the standard
 * phrase (call_end() puts it back), a copy otherwise. */
void call_set_reason(struct call *c, int status, const char *phrase)
{
    const char *standard = sip_status_phrase(status);
    if (!phrase || (standard && strcmp(phrase, standard) == 0))
        call_free_text(&c->rec.reason);
    else
        call_set_text(&c->rec.reason, phrase);
}

/* ---- Ending ---------------------------------------------------------------- */

void call_free(struct call *c)
{
    struct calls *cs = c->cs;
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        cs->tail = c->prev;
    cs->count--;
    metrics_call_end(&c->metrics, c->rec.status ? c->rec.status : 500); /* if not yet */
    if (c->query)
        c->query->call = NULL; /* the policy's answer only frees it */
    /* A 2xx is ACKed, whatever ended the call. */
    call_release_acks(c);
    call_relays_free(c);
    call_timer_free(c);
    call_drop_b(c);
    if (c->a_irq) {
        nta_incoming_treply(c->a_irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
        nta_incoming_destroy(c->a_irq);
    }
    if (c->a_leg)
        nta_leg_destroy(c->a_leg);
    if (c->a_msg)
        msg_destroy(c->a_msg);
    wheel_del(cs->timers, &c->timer);
    if (c->inbound)
        gw_routing_release(cs->gws, c->rec.mapping_gateway);
    else if (c->rec.mapping_gateway[0])
        gw_mapping_release(cs->gws, c->rec.mapping_gateway);
    call_cands_free(c, 0);
    char **texts[] = {&c->b_ruri,     &c->b_addr,  &c->last_reason, &c->rec.attempt,
                      &c->rec.reason, &c->display, &c->headers};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        call_free_text(texts[i]);
    free(c->rec.fixed);
    free(c);
}

/* Write the record and free the call. The caller has already told both
 * sides what they need (final response, BYE, CANCEL). */
void call_end(struct call *c, const char *hangup, int status, const char *reason)
{
    const struct call_record *rec = &c->rec;
    struct cdr cdr = {.start = rec->start, .answer = rec->answer, .status = rec->status};
    struct cdr *r = &cdr;
    snprintf(r->call_id, sizeof r->call_id, "%s", rec->call_id);
    snprintf(r->caller, sizeof r->caller, "%s", rec->caller);
    snprintf(r->callee, sizeof r->callee, "%s", rec->callee);
    snprintf(r->original_callee, sizeof r->original_callee, "%s", rec->original_callee);
    snprintf(r->direction, sizeof r->direction, "%s",
             c->inbound ? "inbound" : "outbound");
    snprintf(r->routed_callee, sizeof r->routed_callee, "%s", rec->routed_callee);
    snprintf(r->mapping_gateway, sizeof r->mapping_gateway, "%s", rec->mapping_gateway);
    snprintf(r->routing_gateway, sizeof r->routing_gateway, "%s", rec->routing_gateway);
    snprintf(r->reason, sizeof r->reason, "%s", rec->reason);
    r->stop = (long long)time(NULL);
    if (r->answer)
        r->duration = r->stop - r->answer;
    if (!r->status)
        r->status = status;
    else if (!r->reason[0] && sip_status_phrase(r->status))
        reason = sip_status_phrase(r->status); /* the record's own status, kept short */
    if (!r->reason[0])
        snprintf(r->reason, sizeof r->reason, "%s",
                 reason                      ? reason
                 : sip_status_phrase(status) ? sip_status_phrase(status)
                                             : "");
    snprintf(r->hangup, sizeof r->hangup, "%s", hangup);
    cdr_write(c->cs->store, r);
    if (c->cs->end_h)
        c->cs->end_h(r, c->cs->end_arg);
    metrics_call_end(&c->metrics, r->status);
    if (log_enabled(LOG_INFO))
        cdr_log(r, c->id); /* the one info line per call, with the CDR's fields */
    call_free(c);
}

/* Answer the caller's INVITE with a failure, and end. */
void call_fail(struct call *c, int status, const char *reason, const char *hangup)
{
    if (c->a_irq) {
        nta_incoming_treply(c->a_irq, status, reason ? reason : sip_status_phrase(status),
                            TAG_END());
        nta_incoming_destroy(c->a_irq);
        c->a_irq = NULL;
    }
    c->rec.status = status;
    call_set_reason(c, status, reason);
    call_end(c, hangup, status, reason);
}

/* A BYE on a leg, fire and forget: nta keeps the transaction (and its
 * retransmissions) after we let go. */
void call_send_bye(nta_leg_t *leg, nta_response_f *cb, void *arg)
{
    if (!leg)
        return;
    nta_outgoing_t *bye =
        nta_outgoing_tcreate(leg, cb, arg, NULL, SIP_METHOD_BYE, NULL, TAG_END());
    if (bye && !cb)
        nta_outgoing_destroy(bye);
}

/* End call c from the switch side. */
void call_hangup_switch(struct call *c, int status, const char *reason)
{
    if (c->state == ST_ANSWERED) {
        call_release_acks(c); /* a late offer never ACKed: ACK, then BYE */
        call_send_bye(c->a_leg, NULL, NULL);
        call_send_bye(c->b_leg, NULL, NULL);
        call_end(c, "switch", c->rec.status, NULL);
        return;
    }
    if (c->b_inv)
        sipinv_cancel(c->b_inv);
    call_fail(c, status, reason, "switch");
}

/* ---- Shutdown -------------------------------------------------------------- */

static void shutdown_check(struct calls *cs)
{
    if (cs->shutdown_done && cs->shutdown_pending == 0) {
        void (*done)(void *) = cs->shutdown_done;
        cs->shutdown_done = NULL;
        done(cs->shutdown_arg);
    }
}

static int on_shutdown_bye(void *magic, nta_outgoing_t *orq, sip_t const *sip)
{
    struct calls *cs = magic;
    int status =
        sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (status < 200)
        return 0;
    for (size_t i = 0; i < cs->nbyes; i++)
        if (cs->byes[i] == orq)
            cs->byes[i] = NULL;
    nta_outgoing_destroy(orq);
    if (cs->shutdown_pending)
        cs->shutdown_pending--;
    shutdown_check(cs);
    return 0;
}

void calls_shutdown(struct calls *cs, void (*done)(void *arg), void *arg)
{
    cs->stopping = true;
    cs->shutdown_done = done;
    cs->shutdown_arg = arg;
    cs->shutdown_pending = 0;
    while (cs->head) {
        struct call *c = cs->head;
        if (c->state == ST_ANSWERED) {
            call_release_acks(c);
            nta_outgoing_t *a =
                nta_outgoing_tcreate(c->a_leg, on_shutdown_bye, (void *)cs, NULL,
                                     SIP_METHOD_BYE, NULL, TAG_END());
            nta_outgoing_t *b =
                nta_outgoing_tcreate(c->b_leg, on_shutdown_bye, (void *)cs, NULL,
                                     SIP_METHOD_BYE, NULL, TAG_END());
            nta_outgoing_t **grown = realloc(cs->byes, (cs->nbyes + 2) * sizeof *grown);
            if (grown) {
                cs->byes = grown;
                if (a)
                    cs->byes[cs->nbyes++] = a, cs->shutdown_pending++;
                if (b)
                    cs->byes[cs->nbyes++] = b, cs->shutdown_pending++;
            }
            call_end(c, "switch", c->rec.status, NULL);
        } else {
            call_hangup_switch(c, 503, "Switch Shutting Down");
        }
    }
    call_kick(cs);
    shutdown_check(cs);
}
