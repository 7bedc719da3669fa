/* sipmetrics: the SIP side's figures for the metrics registry (metrics.h).
 *
 * Read at scrape time, through a collector, from the modules' public
 * state (nothing is counted twice, nothing costs between scrapes):
 *
 *   moonswitch_sip_messages_total{direction, kind}    nta's counters: "in"/"out",
 *                                                      "request"/"response"
 *   moonswitch_sip_retransmissions_total{direction}   requests and responses
 *   moonswitch_sip_bad_messages_total                 unparsable or refused
 *   moonswitch_sip_transaction_timeouts_total{kind}   "client" (no final answer),
 *                                                      "server" (no ACK)
 *   moonswitch_sip_transactions{kind}                 "client"/"server" in progress
 *   moonswitch_sip_dialog_legs                        nta legs (two per call)
 *   moonswitch_registration_up{registration}          1 while active, else 0
 *   moonswitch_registration_failures{registration}    consecutive failures now
 *   moonswitch_bindings, moonswitch_accounts          the registrar's
 *   moonswitch_suspensions{kind}                      "account"/"source" in force
 *
 *   moonswitch_sip_responses_total{direction, status} every response received
 *                                                      or sent, by code (statuscount.h)
 *
 * Pushed, by the agent for every request that arrives outside a dialog
 * (stateless answers' retransmissions included):
 *
 *   moonswitch_sip_requests_out_of_dialog_total{method}
 *
 * Registrations and suspensions are read from the live sets, so a reload
 * that removes an entry removes its series at the next scrape. Reading
 * them is O(registrations + suspensions) per scrape.
 *
 * The collector holds pointers to the modules given to sipmetrics_create();
 * destroy it before them. */
#ifndef MOON_SIP_SIPMETRICS_H
#define MOON_SIP_SIPMETRICS_H

#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>

struct outreg_set;
struct registrar;
struct sipmetrics;

/* Any of the modules may be NULL (its series are then left out). Returns
 * NULL when out of memory. */
struct sipmetrics *sipmetrics_create(nta_agent_t *nta, struct outreg_set *outregs,
                                     struct registrar *registrar);
void sipmetrics_destroy(struct sipmetrics *m);

/* Count one request received outside a dialog. O(1): an array increment. */
void sipmetrics_request_received(sip_method_t method);

/* Count one response sent as text past nta (rawreply.c), added to nta's
 * count of responses sent. O(1). */
void sipmetrics_response_sent(void);

#endif
