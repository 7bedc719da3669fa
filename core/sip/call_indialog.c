/* The requests of the calls' dialogs, as the agent hands them over: without
 * a transaction (see "Dialogs" in agent.h). A BYE is answered statelessly
 * (the agent's answer cache answers its retransmissions), an ACK that no
 * INVITE transaction took is dropped, and the rest become server
 * transactions for call_dialog.c, as nta would have made them. */
#include "sip/call_internal.h"
#include "sip/agent.h"

#include <sofia-sip/msg.h>
#include <sofia-sip/sip_status.h>

void call_indialog_request(void *arg, nta_leg_t *leg, msg_t *msg, sip_t *sip)
{
    struct calls *cs = arg;
    sip_method_t method = sip->sip_request->rq_method;
    bool from_a = true;
    struct call *c = nta_leg_magic(leg, call_a_leg_request);
    if (!c) {
        from_a = false;
        c = nta_leg_magic(leg, call_b_leg_request);
    }
    if (method == sip_method_ack) {
        msg_destroy(msg); /* ACK of a 2xx: its INVITE transaction took it, or it ended */
        return;
    }
    if (!c || method == sip_method_cancel || method == sip_method_prack) {
        /* A CANCEL matching no transaction; PRACK, not served (RFC 3262 3). */
        sipagent_reply_final(cs->agent, msg, sip, SIP_481_NO_TRANSACTION);
        return;
    }
    if (method == sip_method_bye) {
        int status = call_dialog_bye(c, from_a); /* may end c */
        sipagent_reply_final(cs->agent, msg, sip, status, NULL);
        call_kick(cs);
        return;
    }
    nta_incoming_t *irq = nta_incoming_create(cs->nta, leg, msg, sip, TAG_END());
    if (!irq)
        return; /* nta dropped msg */
    int rc = from_a ? call_a_leg_request(c, leg, irq, sip)
                    : call_b_leg_request(c, leg, irq, sip);
    if (rc != 0) {
        nta_incoming_treply(irq, rc, NULL, TAG_END());
        nta_incoming_destroy(irq);
    }
    call_kick(cs);
}
