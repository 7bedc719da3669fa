/* The registrar's side of digest: stateless nonces (valid, stale, forged,
 * from the future), challenges, credentials parsing and checking, and the
 * nonce-count replay table. */
#include "check.h"

#include "sip/digest.h"
#include "sip/nonce.h"

static const unsigned char secret[DIGEST_SECRET_LEN] = "0123456789abcdef0123456789abcdef";
static const unsigned char other[DIGEST_SECRET_LEN] = "fedcba9876543210fedcba9876543210";

#define T0 1700000000000LL /* ms */

static void nonce_valid_and_unique(void)
{
    char a[DIGEST_NONCE_MAX], b[DIGEST_NONCE_MAX];
    digest_nonce_make(secret, T0, a);
    digest_nonce_make(secret, T0, b);
    CHECK(strlen(a) == DIGEST_NONCE_LEN);
    CHECK(strcmp(a, b) != 0); /* random part */
    long long issued = 0;
    unsigned long long id1 = 0, id2 = 0;
    CHECK(digest_nonce_check(secret, a, T0 + 1000, 300, &issued, &id1) ==
          DIGEST_NONCE_VALID);
    CHECK(issued == T0);
    CHECK(digest_nonce_check(secret, b, T0, 300, NULL, &id2) == DIGEST_NONCE_VALID);
    CHECK(id1 != id2);
}

static void nonce_stale_after_ttl(void)
{
    char n[DIGEST_NONCE_MAX];
    digest_nonce_make(secret, T0, n);
    CHECK(digest_nonce_check(secret, n, T0 + 300 * 1000, 300, NULL, NULL) ==
          DIGEST_NONCE_VALID);
    CHECK(digest_nonce_check(secret, n, T0 + 300 * 1000 + 1, 300, NULL, NULL) ==
          DIGEST_NONCE_STALE);
}

static void nonce_forged_or_foreign(void)
{
    char n[DIGEST_NONCE_MAX];
    digest_nonce_make(secret, T0, n);
    CHECK(digest_nonce_check(other, n, T0, 300, NULL, NULL) == DIGEST_NONCE_INVALID);
    /* Moving the time forward (to dodge staleness) breaks the MAC. */
    char moved[DIGEST_NONCE_MAX];
    memcpy(moved, n, sizeof moved);
    moved[15] = moved[15] == 'f' ? 'e' : 'f';
    CHECK(digest_nonce_check(secret, moved, T0, 300, NULL, NULL) == DIGEST_NONCE_INVALID);
    CHECK(digest_nonce_check(secret, "abc", T0, 300, NULL, NULL) == DIGEST_NONCE_INVALID);
    CHECK(digest_nonce_check(secret, NULL, T0, 300, NULL, NULL) == DIGEST_NONCE_INVALID);
    char nothex[DIGEST_NONCE_MAX];
    memcpy(nothex, n, sizeof nothex);
    nothex[40] = 'z';
    CHECK(digest_nonce_check(secret, nothex, T0, 300, NULL, NULL) ==
          DIGEST_NONCE_INVALID);
    /* Issued in the future (more than the slack): not ours to trust. */
    digest_nonce_make(secret, T0 + 60000, n);
    CHECK(digest_nonce_check(secret, n, T0, 300, NULL, NULL) == DIGEST_NONCE_INVALID);
}

static void challenge_format(void)
{
    char out[256];
    CHECK(digest_challenge_format(DIGEST_SHA256, "moonswitch", "abc", false, out,
                                  sizeof out) > 0);
    CHECK(strcmp(out, "Digest realm=\"moonswitch\", nonce=\"abc\", algorithm=SHA-256, "
                      "qop=\"auth\"") == 0);
    CHECK(digest_challenge_format(DIGEST_MD5, "r", "n", true, out, sizeof out) > 0);
    CHECK_STR_CONTAINS(out, "algorithm=MD5");
    CHECK_STR_CONTAINS(out, ", stale=true");
    CHECK(digest_challenge_format(DIGEST_MD5, "r", "n", true, out, 10) == -1);
    CHECK(digest_challenge_format(DIGEST_UNSUPPORTED, "r", "n", false, out, sizeof out) ==
          -1);
    /* Our own client parses what our server says. */
    CHECK(digest_challenge_format(DIGEST_SHA256, "moonswitch", "abc", true, out,
                                  sizeof out) > 0);
    const char *params[] = {"realm=\"moonswitch\"", "nonce=\"abc\"", "algorithm=SHA-256",
                            "qop=\"auth\"",         "stale=true",    NULL};
    struct digest_challenge c;
    CHECK(digest_challenge_parse(&c, params) == 0 && c.stale && c.qop_auth &&
          c.alg == DIGEST_SHA256);
}

/* Answer a challenge with the client side, check it with the server side. */
static void round_trip(enum digest_alg alg)
{
    char nonce[DIGEST_NONCE_MAX];
    digest_nonce_make(secret, T0, nonce);
    const char *cp[] = {"realm=\"moonswitch\"", NULL, "qop=\"auth\"", NULL, NULL};
    char np[100], ap[40];
    snprintf(np, sizeof np, "nonce=\"%s\"", nonce);
    snprintf(ap, sizeof ap, "algorithm=%s", digest_alg_name(alg));
    cp[1] = np;
    cp[3] = ap;
    struct digest_challenge ch;
    CHECK(digest_challenge_parse(&ch, cp) == 0);
    char value[1024];
    CHECK(digest_authorization(&ch, "1001", "pw1001", "REGISTER", "sip:127.0.0.1:5060", 7,
                               "c0ffee", value, sizeof value) > 0);
    /* Split the value the way sofia hands au_params: "k=v" strings. */
    const char *body = value + strlen("Digest ");
    char copy[1024], *params[20];
    snprintf(copy, sizeof copy, "%s", body);
    int n = 0;
    for (char *p = strtok(copy, ","); p && n < 19; p = strtok(NULL, ",")) {
        while (*p == ' ')
            p++;
        params[n++] = p;
    }
    params[n] = NULL;
    struct digest_credentials c;
    CHECK(digest_credentials_parse(&c, (const char *const *)params) == 0);
    CHECK(strcmp(c.username, "1001") == 0 && strcmp(c.realm, "moonswitch") == 0);
    CHECK(strcmp(c.uri, "sip:127.0.0.1:5060") == 0);
    CHECK(c.alg == alg);
    CHECK(c.ncount == 7);
    CHECK(digest_check(&c, "pw1001", "REGISTER"));
    CHECK(!digest_check(&c, "pw1002", "REGISTER"));
    CHECK(!digest_check(&c, "pw1001", "INVITE"));
    /* A tampered response or nc fails. */
    struct digest_credentials t = c;
    t.nc = "00000008";
    CHECK(!digest_check(&t, "pw1001", "REGISTER"));
    /* auth-int and missing cnonce are refused. */
    t = c;
    t.qop = "auth-int";
    CHECK(!digest_check(&t, "pw1001", "REGISTER"));
    t = c;
    t.cnonce = NULL;
    CHECK(!digest_check(&t, "pw1001", "REGISTER"));
}

static void round_trip_md5(void)
{
    round_trip(DIGEST_MD5);
}
static void round_trip_sha256(void)
{
    round_trip(DIGEST_SHA256);
}

static void credentials_parse_edges(void)
{
    struct digest_credentials c;
    const char *missing[] = {"username=\"u\"", "realm=\"r\"", "nonce=\"n\"", "uri=\"x\"",
                             NULL};
    CHECK(digest_credentials_parse(&c, missing) == -1); /* no response */
    const char *badnc[] = {
        "username=\"u\"",  "realm=\"r\"", "nonce=\"n\"",        "uri=\"x\"",
        "response=\"00\"", "nc=0000001",  "algorithm=MD5-sess", NULL};
    CHECK(digest_credentials_parse(&c, badnc) == 0);
    CHECK(c.ncount == 0);
    CHECK(c.alg == DIGEST_UNSUPPORTED);
    CHECK(!digest_check(&c, "p", "REGISTER"));
    const char *upper[] = {"USERNAME=\"u\"", "Realm=r",     "NONCE=n", "URI=x",
                           "Response=y",     "NC=0000000A", NULL};
    CHECK(digest_credentials_parse(&c, upper) == 0);
    CHECK(c.ncount == 10 && strcmp(c.realm, "r") == 0);
}

static void nctrack_replay(void)
{
    struct nctrack *t = nctrack_create(16, 100);
    CHECK(t != NULL);
    CHECK(nctrack_use(t, 1, 200, 1) == NCTRACK_OK);
    CHECK(nctrack_use(t, 1, 200, 1) == NCTRACK_REPLAY);
    CHECK(nctrack_use(t, 1, 200, 2) == NCTRACK_OK);
    CHECK(nctrack_use(t, 1, 200, 1) == NCTRACK_REPLAY);
    CHECK(nctrack_use(t, 1, 200, 5) == NCTRACK_OK); /* gaps are allowed */
    CHECK(nctrack_use(t, 2, 200, 1) == NCTRACK_OK); /* another nonce */
    /* Issued at or before the start: may have been used by an earlier run. */
    CHECK(nctrack_use(t, 3, 100, 1) == NCTRACK_FORGOTTEN);
    CHECK(nctrack_count(t) == 2);
    nctrack_destroy(t);
}

static void nctrack_eviction_forgets_safely(void)
{
    struct nctrack *t = nctrack_create(16, 0);
    /* 16 nonces issued at 1..16, then 16 more: the first ones are evicted. */
    for (unsigned long long i = 1; i <= 32; i++)
        CHECK(nctrack_use(t, i * 7919, (long long)i, 1) == NCTRACK_OK);
    CHECK(nctrack_count(t) == 16);
    /* An evicted nonce is never accepted again, even with a higher nc. */
    CHECK(nctrack_use(t, 1 * 7919, 1, 2) == NCTRACK_FORGOTTEN);
    CHECK(nctrack_use(t, 16 * 7919, 16, 1) == NCTRACK_FORGOTTEN);
    /* Those still in the table are tracked. */
    CHECK(nctrack_use(t, 32 * 7919, 32, 1) == NCTRACK_REPLAY);
    CHECK(nctrack_use(t, 32 * 7919, 32, 2) == NCTRACK_OK);
    /* A new nonce issued after the watermark is fine. */
    CHECK(nctrack_use(t, 99, 33, 1) == NCTRACK_OK);
    nctrack_destroy(t);
}

static void nctrack_many(void)
{
    /* Chains stay correct with colliding buckets (ids equal modulo the size). */
    struct nctrack *t = nctrack_create(64, 0);
    for (unsigned long long i = 0; i < 1000; i++)
        CHECK(nctrack_use(t, i << 6, 1000 + (long long)i, 1) == NCTRACK_OK);
    for (unsigned long long i = 1000 - 64; i < 1000; i++)
        CHECK(nctrack_use(t, i << 6, 1000 + (long long)i, 1) == NCTRACK_REPLAY);
    CHECK(nctrack_use(t, 0, 1000, 9) == NCTRACK_FORGOTTEN);
    nctrack_destroy(t);
}

TEST_MAIN(CASE(nonce_valid_and_unique), CASE(nonce_stale_after_ttl),
          CASE(nonce_forged_or_foreign), CASE(challenge_format), CASE(round_trip_md5),
          CASE(round_trip_sha256), CASE(credentials_parse_edges), CASE(nctrack_replay),
          CASE(nctrack_eviction_forgets_safely), CASE(nctrack_many))
