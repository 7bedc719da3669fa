/* regcommit: the registrar's group commit, and the answers that wait for it.
 *
 * A REGISTER that changed bindings is answered only once the store says the
 * commit that holds them is on disk (durable before the 200). The answers
 * of a turn are handed to the store together (store_when_durable()); its
 * writer thread commits them with everything staged while it synced the
 * batch before, so the loop never waits for the disk. An answer waits either in its server transaction
 * (with a policy hook: the REGISTER went through nta) or, for the common
 * REGISTER taken without a transaction, as the answer's text up to CSeq and
 * where it goes; that text is completed after the commit (200 with Contacts
 * and Date, or 500 when the commit failed), sent by rawreply, and kept in an
 * answer cache for 64 * T1 and a little more, so that a retransmission gets
 * the same answer again (and is absorbed while its commit is pending)
 * instead of being taken as a new REGISTER.
 *
 * Costs: queueing O(1) (one allocation per waiting answer, one per turn's
 * hand-over); answering O(answers) when the store calls back; the cache about
 * 60 bytes and the answer's text (~400 bytes) per REGISTER for its TTL.
 * The module owns the waiting answers and the cache; transactions given to
 * it are destroyed once answered. Loop thread only. */
#ifndef MOON_SIP_REGCOMMIT_H
#define MOON_SIP_REGCOMMIT_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/tport.h>

struct regcommit;
struct regcommit_answer;
struct store;

/* `store` may be NULL (nothing to commit: answers leave at the end of the
 * turn). `root` is re-armed after acting from a libevent callback. Returns
 * 0 or -ENOMEM. */
int regcommit_create(struct regcommit **cp, nta_agent_t *nta, su_root_t *root,
                     struct event_base *base, struct store *store);
/* Commits and answers what waits, then frees everything. NULL is a no-op. */
void regcommit_destroy(struct regcommit *c);
/* How long answers are kept: 64 * t1_ms and a slack. */
void regcommit_set_t1(struct regcommit *c, unsigned t1_ms);

/* Commit now and answer what waits, blocking until the store has synced. */
void regcommit_flush(struct regcommit *c);

/* A transaction's 200 after the commit, with `contacts` as its Contact
 * value (taken, malloc'd; NULL: none). Takes irq. */
void regcommit_queue_irq(struct regcommit *c, nta_incoming_t *irq, char *contacts);

/* ---- REGISTERs without a transaction --------------------------------------- */

/* The cache key of request `sip` (Call-ID, CSeq, From tag, Via branch); it
 * must have Call-ID and CSeq. */
uint64_t regcommit_key(const sip_t *sip);

/* A retransmission of a REGISTER answered, or being answered, without a
 * transaction: its answer is sent again, or nothing while its commit is
 * pending. True when msg was taken. */
bool regcommit_answered_before(struct regcommit *c, msg_t *msg, const sip_t *sip,
                               uint64_t key);

/* The answer to `msg` written up to CSeq, and where it goes; NULL when it
 * cannot be written that way (then nothing was kept). */
struct regcommit_answer *regcommit_answer_new(struct regcommit *c, msg_t *msg,
                                              const sip_t *sip, uint64_t key);
/* The transport the request came over (owned by the answer). */
tport_t *regcommit_answer_tport(const struct regcommit_answer *a);
/* Answer at once with `status` and `phrase` (no commit), remember it, free
 * the answer. */
void regcommit_answer_now(struct regcommit *c, struct regcommit_answer *a, int status,
                          const char *phrase);
/* Wait for the commit: then 200 with `contact_lines` ("Contact: ...\r\n"
 * lines, taken, malloc'd; NULL: none). Retransmissions meanwhile are
 * absorbed. */
void regcommit_answer_queue(struct regcommit *c, struct regcommit_answer *a,
                            char *contact_lines);

#endif
