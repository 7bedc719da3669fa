/* Unit tests for core/sip/answer.c: entries are found until their TTL and
 * not after, expire in insertion order, keep their text, are replaced in
 * place; keys differ when any field differs; thousands of entries grow the
 * buckets, and their chunks are unmapped once they expired. */
#include "check.h"
#include "sip/answer.h"

#include <stdio.h>
#include <string.h>

static void found_until_ttl(void)
{
    struct answer_cache *ac = answer_cache_create(1000);
    uint64_t k = answer_key(ANSWER_FINAL, "call@h", 2, "tag", "z9hG4bK1");
    CHECK(answer_put(ac, 100, k, ANSWER_FINAL, 200, NULL, 0) == 0);
    const struct answer *a = answer_get(ac, 1099, k);
    CHECK(a && a->status == 200 && a->kind == ANSWER_FINAL && !a->text);
    CHECK(answer_get(ac, 1100, k) == NULL);
    CHECK(answer_count(ac) == 0);
    answer_cache_destroy(ac);
}

static void keys_differ_by_every_field(void)
{
    uint64_t k = answer_key(ANSWER_ACK, "c", 1, "t", "b");
    CHECK(k != answer_key(ANSWER_FINAL, "c", 1, "t", "b"));
    CHECK(k != answer_key(ANSWER_ACK, "d", 1, "t", "b"));
    CHECK(k != answer_key(ANSWER_ACK, "c", 2, "t", "b"));
    CHECK(k != answer_key(ANSWER_ACK, "c", 1, NULL, "b"));
    CHECK(k != answer_key(ANSWER_ACK, "c", 1, "t", "bb"));
    /* Fields are separated: moving a character across does not collide. */
    CHECK(answer_key(ANSWER_ACK, "ab", 1, "c", NULL) !=
          answer_key(ANSWER_ACK, "a", 1, "bc", NULL));
}

static void text_kept_and_replaced(void)
{
    struct answer_cache *ac = answer_cache_create(1000);
    uint64_t k = answer_key(ANSWER_ACK, "c", 1, "t", "b");
    CHECK(answer_put(ac, 0, k, ANSWER_ACK, 200, "ACK sip:x SIP/2.0\r\n", 19) == 0);
    const struct answer *a = answer_get(ac, 10, k);
    CHECK(a && a->len == 19 && memcmp(a->text, "ACK sip:x", 9) == 0);
    CHECK(answer_put(ac, 20, k, ANSWER_ACK, 486, NULL, 0) == 0);
    a = answer_get(ac, 30, k);
    CHECK(a && a->status == 486 && !a->text);
    CHECK(answer_count(ac) == 1);
    CHECK(answer_bytes(ac) > 0);
    /* Replaced in place: it keeps its first expiry. */
    CHECK(answer_get(ac, 1000, k) == NULL);
    answer_cache_destroy(ac);
}

static void expire_in_order_and_grow(void)
{
    struct answer_cache *ac = answer_cache_create(500);
    char id[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof id, "call-%d", i);
        CHECK(answer_put(ac, (uint64_t)i / 10, answer_key(ANSWER_INVITE, id, 1, "t", "b"),
                         ANSWER_INVITE, 0, NULL, 0) == 0);
    }
    CHECK(answer_count(ac) == 5000);
    CHECK(answer_bytes(ac) > 5000 * 40);
    /* At 599 ms those put before 100 ms (i < 1000) are gone. */
    CHECK(answer_expire(ac, 599) == 1000);
    snprintf(id, sizeof id, "call-%d", 999);
    CHECK(!answer_get(ac, 599, answer_key(ANSWER_INVITE, id, 1, "t", "b")));
    snprintf(id, sizeof id, "call-%d", 1000);
    CHECK(answer_get(ac, 599, answer_key(ANSWER_INVITE, id, 1, "t", "b")));
    CHECK(answer_expire(ac, 10000) == 4000);
    CHECK(answer_count(ac) == 0);
    /* Their chunks went back to the system but the newest. */
    CHECK(answer_bytes(ac) <= 256 * 1024 + 8192 * sizeof(void *));
    answer_cache_destroy(ac);
}

TEST_MAIN(CASE(found_until_ttl), CASE(keys_differ_by_every_field),
          CASE(text_kept_and_replaced), CASE(expire_in_order_and_grow))
