/* answer: what the switch answered, kept small for as long as the peer may
 * retransmit (64 * T1), in place of whole transactions.
 *
 * nta keeps each completed transaction with both its parsed messages (about
 * 8 KB) for 64 * T1 after it ends, only to absorb retransmissions. Those the
 * agent handles without a transaction (a BYE answered statelessly, an
 * INVITE whose transaction ended, an ACK resent for a retransmitted 2xx)
 * leave here instead an entry of about 60 bytes, plus the text of a request
 * to send again when there is one (an ACK). Entries are keyed by a 64-bit
 * hash of what identifies the transaction (see answer_key()); they all live
 * the same time, so they expire in insertion order: a FIFO, O(1) per
 * entry.
 *
 * Costs: put, get O(1) expected; expire O(expired). The cache owns its
 * entries and their texts; answer_get()'s result is valid until the next
 * put or expire. One thread (the loop's). */
#ifndef MOON_SIP_ANSWER_H
#define MOON_SIP_ANSWER_H

#include <stddef.h>
#include <stdint.h>

struct answer_cache;

/* What an entry says about its transaction. */
enum answer_kind {
    ANSWER_INVITE = 1, /* a caller's INVITE was taken: absorb retransmissions */
    ANSWER_FINAL,      /* a request was answered `status`: answer again */
    ANSWER_ACK,        /* our ACK to an answer: send `text` again */
};

struct answer {
    uint64_t key;
    enum answer_kind kind;
    int status;
    char *text; /* ANSWER_ACK: the request to send again; else NULL */
    size_t len;
};

/* Entries live `ttl_ms`; NULL when out of memory. */
struct answer_cache *answer_cache_create(unsigned ttl_ms);
void answer_cache_destroy(struct answer_cache *ac);
void answer_cache_set_ttl(struct answer_cache *ac, unsigned ttl_ms);

/* The key of a transaction: `kind`, Call-ID, CSeq number, a tag and a Via
 * branch (any may be NULL). FNV-1a over the fields, separated. */
uint64_t answer_key(enum answer_kind kind, const char *call_id, uint32_t cseq,
                    const char *tag, const char *branch);

/* Remember (or replace) `key` from `now_ms`. `text` (may be NULL) is copied.
 * Returns 0 or -1 when out of memory (nothing is remembered then). */
int answer_put(struct answer_cache *ac, uint64_t now_ms, uint64_t key,
               enum answer_kind kind, int status, const char *text, size_t len);

/* The live entry of `key`, or NULL. */
const struct answer *answer_get(struct answer_cache *ac, uint64_t now_ms, uint64_t key);

/* Drop what is older than the TTL. Returns how many went. */
size_t answer_expire(struct answer_cache *ac, uint64_t now_ms);

/* Entries alive, and the heap they hold (entries, texts, buckets). */
size_t answer_count(const struct answer_cache *ac);
size_t answer_bytes(const struct answer_cache *ac);

#endif
