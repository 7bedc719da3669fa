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
 * answers first what needs no transaction (the registrar's challenges, the
 * INVITEs refused before a call exists: sipagent_refuse() remembers such a
 * refusal so a retransmission gets it again). Malformed messages never
 * reach this far: nta answers 400 when it can and drops them otherwise
 * (parsefix.h corrects sofia's parser where it refused valid ones). A request other than ACK or
 * CANCEL whose Require names an option tag the core lacks gets 420 with
 * those tags in Unsupported. */
#ifndef MOON_SIP_AGENT_H
#define MOON_SIP_AGENT_H

#include <stdbool.h>

#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>
#include <stdbool.h>
#include <sys/socket.h>

struct strlist;
struct sipagent;
struct siptls;

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

/* Create the agent on `root`, listening on each "udp:IP:PORT",
 * "tcp:IP:PORT" and "tls:IP:PORT" of `listen`. `tls` (NULL: no TLS at all)
 * sets up the TLS transports; a tls: listener needs its certificate loaded
 * (siptls_apply), and without one a client-only TLS transport is made, for
 * requests to peers over TLS. Returns 0 or a negative errno, with the
 * failing address logged. */
int sipagent_create(struct sipagent **ap, su_root_t *root, const struct strlist *listen,
                    unsigned t1_ms, struct siptls *tls);
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

/* ---- Dialogs --------------------------------------------------------------
 *
 * nta answers every request it matches to a dialog (a leg) in a server
 * transaction, which it keeps 64 * T1 after the answer (J) with both
 * messages: a BYE costs 8 KB for 32 s. The switch's dialogs are created
 * with URLTAG_URL(SIPAGENT_DIALOG_URL), which no request matches, so their
 * requests come here without a transaction, and go to the dialog handler
 * with the leg nta_leg_by_dialog() found. The handler owns msg: it answers
 * a BYE with sipagent_reply_final() (no transaction; a retransmission gets
 * the same answer from the answer cache), drops an ACK, and makes the
 * others a transaction with nta_incoming_create(nta, leg, msg, sip, ...)
 * as nta would have. */
#define SIPAGENT_DIALOG_URL "sip:dialog.moonswitch.invalid"

typedef void sipagent_dialog_h(void *arg, nta_leg_t *leg, msg_t *msg, sip_t *sip);
void sipagent_set_dialog_handler(struct sipagent *a, sipagent_dialog_h *h, void *arg);

/* Answer request msg statelessly with a final `status` (phrase NULL: the
 * standard one); takes msg. A BYE's answer is remembered for 64 * T1, so
 * its retransmissions get it again. */
void sipagent_reply_final(struct sipagent *a, msg_t *msg, const sip_t *sip, int status,
                          const char *phrase);

/* Refuse request msg (an INVITE outside any dialog) statelessly with a
 * final `status`, `phrase` (NULL: the standard one) and `headers` (header
 * lines without the last CRLF, or NULL); takes msg. The answer is
 * remembered in the answer cache for 64 * T1 (about 60 bytes, plus the
 * phrase and headers when given), so a retransmission gets the same answer,
 * To tag included (made from the request, not random); the ACK to it matches
 * nothing and is dropped. O(1). */
void sipagent_refuse(struct sipagent *a, msg_t *msg, const sip_t *sip, int status,
                     const char *phrase, const char *headers);

/* The INVITEs sent through sipagent_invite() (sip/invite.h). */
struct sipinv_set *sipagent_invites(struct sipagent *a);

/* The callback to create an outgoing request with (rule 1 above: nta may
 * answer it inside the create, before the request's own callback can be
 * bound): records a final status nta made up in the int `magic` points to.
 * Bind the real callback with nta_outgoing_bind() once the create returned. */
int sipagent_answer_while_creating(nta_outgoing_magic_t *magic, nta_outgoing_t *orq,
                                   sip_t const *sip);

nta_agent_t *sipagent_nta(struct sipagent *a);

/* The leg to send out-of-dialog requests on (nta_default_leg() is NULL
 * here: requests arrive statelessly). sipagent_request() takes it when
 * given no leg. */
nta_leg_t *sipagent_client_leg(struct sipagent *a);

/* ---- Sending requests ----------------------------------------------------
 *
 * Every request the switch sends goes through sipagent_request(), from
 * anywhere: a sofia callback, a libevent timer of ours, a Lua task, the
 * control socket. Two rules of nta are kept here, once:
 *
 * 1. The response callback never runs before sipagent_request() returns,
 *    so the caller can store the transaction first. (sofia delivers the
 *    answers it makes up while creating a request, "No transport" for
 *    one, through the loop; should nta ever answer inside the call, the
 *    request is given up and NULL returned with that status instead.)
 *
 * 2. sofia's timers (retransmissions, timer F) are kept in sofia's own
 *    queue, which the event port (core/evport.h) only re-reads after its
 *    own callbacks. A call into sofia made from outside them leaves a new
 *    timer unseen until the port is re-armed: sipagent_request() and
 *    sipagent_cancel() re-arm it themselves; after any other call into
 *    sofia made outside its callbacks (nta_outgoing_destroy(),
 *    nta_incoming_treply(), nta_leg_*()), call sipagent_after_sofia().
 *    Inside a sofia callback (a response callback, a request handler)
 *    re-arming is not needed, and costs nothing wrong.
 */

/* Send a request on `leg` (NULL: the client leg) as nta_outgoing_tcreate()
 * does, with the same arguments and SIP tags (<sofia-sip/sip_tag.h>),
 * ending with TAG_END(). Returns the client transaction, owned by the
 * caller until nta_outgoing_destroy(); its answers go to `callback` (NULL:
 * none). Returns NULL when nothing was sent, with `*refused` (if not NULL)
 * set to the status nta answered with, or 503 when it made no transaction
 * (a bad URI, out of memory). O(1) beyond nta's own work. */
nta_outgoing_t *sipagent_request(struct sipagent *a, int *refused, nta_leg_t *leg,
                                 nta_response_f *callback, nta_outgoing_magic_t *magic,
                                 url_string_t const *route, sip_method_t method,
                                 char const *name, url_string_t const *request_uri,
                                 tag_type_t tag, tag_value_t value, ...);

/* CANCEL the INVITE client transaction `orq` (which stays the caller's).
 * Returns true when a CANCEL went out. */
bool sipagent_cancel(struct sipagent *a, nta_outgoing_t *orq);

/* After calling into sofia from outside its callbacks (rule 2 above). One
 * su_timer_next_expires() and at most one evtimer_add(). */
void sipagent_after_sofia(struct sipagent *a);

/* What the agent holds now, and its message counters. Transactions are
 * nta's, answered ones it keeps for retransmissions included; their bytes
 * are estimated (SIPAGENT_TR_BYTES each: a transaction and its parsed
 * request and answer, measured with heaptrack). INVITEs are those sent
 * with sipagent_invite(), `light` the ones nta no longer holds; answers
 * the answer cache's entries and their bytes (measured). */
#define SIPAGENT_TR_BYTES 8192
struct sipagent_stats {
    size_t server_tr, client_tr, dialogs; /* nta's, alive now */
    size_t tr_bytes; /* (server_tr + client_tr) * SIPAGENT_TR_BYTES */
    size_t invites, invites_light;
    size_t answers, answer_bytes;
    size_t recv_msg, sent_msg, recv_retry, retry_request, retry_response;
    size_t trless_request, trless_response;
};
void sipagent_stats(struct sipagent *a, struct sipagent_stats *st);

/* Apply a new SIP resend interval (T1, ms), e.g. after a reload. */
void sipagent_set_t1(struct sipagent *a, unsigned t1_ms);

#endif
