/* invite: the switch's INVITE client transaction, lighter than nta's.
 *
 * nta keeps an INVITE client transaction that got its final answer for
 * timer D, at least 32 s whatever T1 is, with the INVITE and the answer
 * parsed (about 8 KB): at a thousand calls a second, a quarter of a GB. The
 * transaction is needed only until a provisional answer arrives (it
 * retransmits the INVITE until then, and times out with timer B); after
 * that, over UDP, an INVITE client only has to deliver the answers, ACK a
 * failure, ACK each retransmitted 2xx again and send a CANCEL. So a
 * sipinv starts as an nta transaction and, at the first provisional answer
 * (100 included), gives it back to nta, which frees it at once; the answers
 * that follow reach the agent without a transaction and come here by
 * Call-ID, CSeq and branch. What it keeps is a few header lines (about 400
 * bytes), and once its owner lets it go, an entry of the answer cache
 * (answer.h) for 64 * T1: the ACK to send again when the answer is
 * retransmitted.
 *
 * The owner sees what it saw with nta: the answers in order, 100 not
 * included; a 2xx it ACKs with sipinv_ack(); nta's own answers (408 of
 * timer B, 503 of a transport error) while nta still holds it. A CANCEL
 * before any provisional answer is nta's (it waits for one). An INVITE
 * whose final answer comes before any provisional one stays nta's to the
 * end (timer D included): the same as before, only not lighter.
 *
 * Owned by the caller of sipagent_invite() until sipinv_destroy(). All on
 * the loop's thread. */
#ifndef MOON_SIP_INVITE_H
#define MOON_SIP_INVITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>

struct sipagent;
struct sipinv;
struct sipinv_set;

/* An answer to the INVITE: `sip` is the response (NULL for an answer nta
 * made up, then `status` says which), valid during the call only. The
 * callback may call sipinv_destroy(inv). */
typedef void sipinv_response_f(void *magic, struct sipinv *inv, sip_t const *sip,
                               int status);

/* Send an INVITE on `leg` as nta_outgoing_tcreate() would (NULL route, the
 * Request-URI, SIP tags ending with TAG_END()). Returns NULL when nothing
 * was sent, with `*refused` (if not NULL) the status nta answered with (503
 * when it made no transaction). The callback never runs before this
 * returns. */
struct sipinv *sipagent_invite(struct sipagent *a, int *refused, nta_leg_t *leg,
                               sipinv_response_f *cb, void *magic,
                               url_string_t const *request_uri, tag_type_t tag,
                               tag_value_t value, ...);

/* The INVITE's CSeq number. */
uint32_t sipinv_cseq(const struct sipinv *inv);

/* CANCEL it (RFC 3261 9.1). Returns true when a CANCEL went out, or will
 * once a provisional answer comes. */
bool sipinv_cancel(struct sipinv *inv);

/* ACK its 2xx on `leg`, the dialog it made, with `answer`'s body (the
 * other side's ACK, late offer) when not NULL. The ACK leaves without a
 * transaction; its text is kept to answer retransmissions of the 2xx. */
void sipinv_ack(struct sipinv *inv, nta_leg_t *leg, sip_t const *answer);

/* The owner lets go: no more callbacks. What retransmissions need is left
 * in the answer cache. */
void sipinv_destroy(struct sipinv *inv);

/* ---- For the agent ----------------------------------------------------- */

struct answer_cache;

struct sipinv_set *sipinv_set_create(nta_agent_t *nta, struct answer_cache *ac,
                                     uint64_t (*now_ms)(void));
void sipinv_set_destroy(struct sipinv_set *set);

/* A response that matched no nta transaction. Returns true when it was one
 * of ours (msg taken); false leaves msg to the caller. */
bool sipinv_set_response(struct sipinv_set *set, msg_t *msg, sip_t *sip);

/* INVITEs in flight (owned), and of them those nta no longer holds. */
size_t sipinv_set_count(const struct sipinv_set *set, size_t *light);

#endif
