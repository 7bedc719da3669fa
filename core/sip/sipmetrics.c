/* The SIP side's scrape-time figures. See sipmetrics.h. */
#include "sip/sipmetrics.h"
#include "metrics.h"
#include "sip/outreg.h"
#include "sip/registrar.h"
#include "sip/statuscount.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/nta_tag.h>
#include <sofia-sip/sip_header.h>

struct sipmetrics {
    nta_agent_t *nta;
    struct outreg_set *outregs;
    struct registrar *registrar;
};

/* sip_method_invalid (-1) .. sip_method_publish (14), shifted by one. */
#define METHOD_SLOTS 16
static uint64_t requests_received[METHOD_SLOTS];

/* Responses sent as text on a transport, past nta's own count. */
static uint64_t responses_sent;

void sipmetrics_response_sent(void)
{
    responses_sent++;
}

void sipmetrics_request_received(sip_method_t method)
{
    unsigned i = (unsigned)((int)method + 1);
    requests_received[i < METHOD_SLOTS ? i : 0]++;
}

static void collect_requests(struct metrics_out *out)
{
    metrics_out_family(out, "moonswitch_sip_requests_out_of_dialog_total",
                       "Requests received outside a dialog, by method.", METRICS_COUNTER);
    for (int i = 0; i < METHOD_SLOTS; i++) {
        if (!requests_received[i])
            continue;
        sip_method_t m = (sip_method_t)(i - 1);
        const char *name = m == sip_method_unknown || m == sip_method_invalid
                               ? "other"
                               : sip_method_name(m, "other");
        metrics_out_sample(out, "moonswitch_sip_requests_out_of_dialog_total",
                           (double)requests_received[i], "method", name, NULL);
    }
}

/* Responses by direction and status code, as statuscount.c counted them at
 * the transports; codes never seen are left out. */
static void collect_statuses(struct metrics_out *out)
{
    const char *name = "moonswitch_sip_responses_total";
    metrics_out_family(out, name, "SIP responses received and sent, by status code.",
                       METRICS_COUNTER);
    for (int dir = 0; dir < 2; dir++)
        for (int status = STATUSCOUNT_MIN; status <= STATUSCOUNT_MAX; status++) {
            uint64_t n = statuscount_get(dir == 0, status);
            if (!n)
                continue;
            char code[8];
            snprintf(code, sizeof code, "%d", status);
            metrics_out_sample(out, name, (double)n, "direction", dir == 0 ? "in" : "out",
                               "status", code, NULL);
        }
}

static void collect_nta(struct metrics_out *out, nta_agent_t *nta)
{
    usize_t recv_request = 0, recv_response = 0, sent_request = 0, sent_response = 0;
    usize_t retry_request = 0, retry_response = 0, recv_retry = 0, bad = 0;
    usize_t tout_request = 0, tout_response = 0, irq = 0, orq = 0, legs = 0;
    nta_agent_get_stats(
        nta, NTATAG_S_RECV_REQUEST_REF(recv_request),
        NTATAG_S_RECV_RESPONSE_REF(recv_response),
        NTATAG_S_SENT_REQUEST_REF(sent_request),
        NTATAG_S_SENT_RESPONSE_REF(sent_response),
        NTATAG_S_RETRY_REQUEST_REF(retry_request),
        NTATAG_S_RETRY_RESPONSE_REF(retry_response), NTATAG_S_RECV_RETRY_REF(recv_retry),
        NTATAG_S_BAD_MESSAGE_REF(bad), NTATAG_S_TOUT_REQUEST_REF(tout_request),
        NTATAG_S_TOUT_RESPONSE_REF(tout_response), NTATAG_S_IRQ_HASH_USED_REF(irq),
        NTATAG_S_ORQ_HASH_USED_REF(orq), NTATAG_S_LEG_HASH_USED_REF(legs), TAG_END());
    const char *msgs = "moonswitch_sip_messages_total";
    metrics_out_family(out, msgs, "SIP messages received and sent, by kind.",
                       METRICS_COUNTER);
    metrics_out_sample(out, msgs, (double)recv_request, "direction", "in", "kind",
                       "request", NULL);
    metrics_out_sample(out, msgs, (double)recv_response, "direction", "in", "kind",
                       "response", NULL);
    metrics_out_sample(out, msgs, (double)sent_request, "direction", "out", "kind",
                       "request", NULL);
    metrics_out_sample(out, msgs, (double)(sent_response + responses_sent), "direction",
                       "out", "kind", "response", NULL);
    const char *retr = "moonswitch_sip_retransmissions_total";
    metrics_out_family(
        out, retr,
        "Retransmissions: requests received again (in), requests and responses "
        "sent again (out).",
        METRICS_COUNTER);
    metrics_out_sample(out, retr, (double)recv_retry, "direction", "in", "kind",
                       "request", NULL);
    metrics_out_sample(out, retr, (double)retry_request, "direction", "out", "kind",
                       "request", NULL);
    metrics_out_sample(out, retr, (double)retry_response, "direction", "out", "kind",
                       "response", NULL);
    metrics_out_family(out, "moonswitch_sip_bad_messages_total",
                       "Messages received that could not be parsed or were refused.",
                       METRICS_COUNTER);
    metrics_out_sample(out, "moonswitch_sip_bad_messages_total", (double)bad, NULL);
    const char *tout = "moonswitch_sip_transaction_timeouts_total";
    metrics_out_family(
        out, tout, "Transactions timed out: client (no final answer), server (no ACK).",
        METRICS_COUNTER);
    metrics_out_sample(out, tout, (double)tout_request, "kind", "client", NULL);
    metrics_out_sample(out, tout, (double)tout_response, "kind", "server", NULL);
    metrics_out_family(out, "moonswitch_sip_transactions",
                       "SIP transactions in progress.", METRICS_GAUGE);
    metrics_out_sample(out, "moonswitch_sip_transactions", (double)orq, "kind", "client",
                       NULL);
    metrics_out_sample(out, "moonswitch_sip_transactions", (double)irq, "kind", "server",
                       NULL);
    metrics_out_family(out, "moonswitch_sip_dialog_legs",
                       "Dialog legs nta holds (a call has two).", METRICS_GAUGE);
    metrics_out_sample(out, "moonswitch_sip_dialog_legs", (double)legs, NULL);
}

static void collect_outregs(struct metrics_out *out, struct outreg_set *set)
{
    size_t n = outreg_set_count(set);
    metrics_out_family(out, "moonswitch_registration_up",
                       "1 while the outbound registration is active, else 0.",
                       METRICS_GAUGE);
    for (size_t i = 0; i < n; i++) {
        const struct outreg *r = outreg_set_at(set, i);
        metrics_out_sample(out, "moonswitch_registration_up",
                           outreg_state(r) == OUTREG_ACTIVE ? 1 : 0, "registration",
                           outreg_name(r), NULL);
    }
    metrics_out_family(
        out, "moonswitch_registration_failures",
        "Consecutive failed attempts of the outbound registration (0 once it "
        "succeeds).",
        METRICS_GAUGE);
    for (size_t i = 0; i < n; i++) {
        const struct outreg *r = outreg_set_at(set, i);
        metrics_out_sample(out, "moonswitch_registration_failures",
                           (double)outreg_failures(r), "registration", outreg_name(r),
                           NULL);
    }
}

static int count_suspension(const char *kind, const char *name, long long until,
                            unsigned failures, void *arg)
{
    unsigned *counts = arg;
    (void)name;
    (void)until;
    (void)failures;
    counts[strcmp(kind, "account") == 0 ? 0 : strcmp(kind, "source") == 0 ? 1 : 2]++;
    return 0;
}

static void collect_registrar(struct metrics_out *out, struct registrar *r)
{
    metrics_out_family(out, "moonswitch_bindings", "Endpoint bindings registered.",
                       METRICS_GAUGE);
    metrics_out_sample(out, "moonswitch_bindings", (double)registrar_binding_count(r),
                       NULL);
    metrics_out_family(out, "moonswitch_accounts", "Accounts in the policy.",
                       METRICS_GAUGE);
    metrics_out_sample(out, "moonswitch_accounts", (double)registrar_account_count(r),
                       NULL);
    unsigned counts[3] = {0, 0, 0};
    registrar_suspensions(r, count_suspension, counts);
    metrics_out_family(out, "moonswitch_suspensions",
                       "Suspensions in force, of accounts and of source addresses.",
                       METRICS_GAUGE);
    metrics_out_sample(out, "moonswitch_suspensions", counts[0], "kind", "account", NULL);
    metrics_out_sample(out, "moonswitch_suspensions", counts[1], "kind", "source", NULL);
    if (counts[2])
        metrics_out_sample(out, "moonswitch_suspensions", counts[2], "kind", "other",
                           NULL);
}

static void collect(struct metrics_out *out, void *arg)
{
    struct sipmetrics *m = arg;
    collect_requests(out);
    collect_statuses(out);
    if (m->nta)
        collect_nta(out, m->nta);
    if (m->outregs)
        collect_outregs(out, m->outregs);
    if (m->registrar)
        collect_registrar(out, m->registrar);
}

struct sipmetrics *sipmetrics_create(nta_agent_t *nta, struct outreg_set *outregs,
                                     struct registrar *registrar)
{
    struct sipmetrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    *m = (struct sipmetrics){nta, outregs, registrar};
    if (metrics_collector_add(collect, m) < 0) {
        free(m);
        return NULL;
    }
    return m;
}

void sipmetrics_destroy(struct sipmetrics *m)
{
    if (!m)
        return;
    metrics_collector_remove(collect, m);
    free(m);
}
