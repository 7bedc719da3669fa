/* The SIP agent: one nta agent listening on every configured address, and the
 * out-of-dialog request dispatcher.
 *
 * Requests outside any dialog arrive without a transaction. OPTIONS and
 * errors are answered statelessly (200 with Allow and Accept; 481 for stray
 * BYE/CANCEL; 416; 405 with Allow for standard methods nobody serves, 501 for
 * unknown ones), so a flood of them leaves nothing behind. A request that a
 * method handler (REGISTER, INVITE) or the policy's on_request takes becomes
 * a server transaction owned by the handler, which must answer it and call
 * nta_incoming_destroy(). A method may also have a stateless prefilter that
 * answers first what needs no transaction (the registrar's challenges). Malformed messages never reach this far: nta
 * answers 400 when it can and drops them otherwise. */
#ifndef MOON_SIP_AGENT_H
#define MOON_SIP_AGENT_H

#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>
#include <stdbool.h>
#include <sys/socket.h>

struct strlist;
struct sipagent;

/* Return 0 when the request was taken (answered now or later through
 * nta_incoming_treply(), then nta_incoming_destroy() by the handler), or a
 * status code >= 300 for the agent to answer with, or -1 to decline
 * (405/501). */
typedef int sipagent_request_h(nta_incoming_t *irq, const sip_t *sip, void *arg);

/* A method's optional stateless prefilter, run before any transaction
 * exists. Return 0 when it answered the request itself, statelessly, with
 * nta_msg_treply(sipagent_nta(), msg, ...) (which takes msg: neither msg nor
 * sip may be used after that), or dropped it with msg_destroy(); or -1 to
 * go on: the request then becomes a server transaction given to the
 * method's handler (with the same sip). Nothing is kept for a request
 * answered here, so its retransmissions come here again; those of a request
 * passed on are absorbed by its transaction. Use it for answers that change
 * nothing (challenges, refusals), so that a flood of them costs no memory. */
typedef int sipagent_stateless_h(msg_t *msg, sip_t *sip, void *arg);

/* Create the agent on `root`, listening on each "udp:IP:PORT" / "tcp:IP:PORT"
 * of `listen` (tls is refused for now with a clear message). Returns 0 or a
 * negative errno, with the failing address logged. */
int sipagent_create(struct sipagent **ap, su_root_t *root, const struct strlist *listen,
                    unsigned t1_ms);
void sipagent_destroy(struct sipagent *a);

/* Install the handler of one method (REGISTER -> the registrar, INVITE ->
 * calls). At most SIPAGENT_MAX_METHODS; a second call for a method replaces
 * the first. Returns 0 or -ENOSPC. */
#define SIPAGENT_MAX_METHODS 8
int sipagent_set_method_handler(struct sipagent *a, sip_method_t method,
                                sipagent_request_h *h, void *arg);

/* Install the stateless prefilter of one method (NULL removes it); it
 * shares the method's slot with its handler. Returns 0 or -ENOSPC. */
int sipagent_set_method_prefilter(struct sipagent *a, sip_method_t method,
                                  sipagent_stateless_h *pre, void *arg);

/* Install the handler for requests no method handler took (the policy's
 * on_request hook). */
void sipagent_set_request_handler(struct sipagent *a, sipagent_request_h *h, void *arg);

/* A source check for requests that arrive over stream transports (TCP,
 * TLS), which the event port's datagram filter does not see: called for
 * each request outside a dialog before anything else (not for responses);
 * false drops it silently. NULL removes it. */
typedef bool sipagent_source_filter_h(const struct sockaddr *from, socklen_t fromlen,
                                      void *arg);
void sipagent_set_stream_filter(struct sipagent *a, sipagent_source_filter_h *fn, void *arg);

nta_agent_t *sipagent_nta(struct sipagent *a);

/* The leg to send out-of-dialog requests on (nta_outgoing_tcreate needs
 * one; nta_default_leg() is NULL here: requests arrive statelessly). */
nta_leg_t *sipagent_client_leg(struct sipagent *a);

/* Apply a new SIP resend interval (T1, ms), e.g. after a reload. */
void sipagent_set_t1(struct sipagent *a, unsigned t1_ms);

/* The methods the switch answers, for Allow headers. */
const char *sipagent_allow(void);

#endif
