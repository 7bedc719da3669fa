/* Digest against the published vectors of RFC 2617 and RFC 7616. */
#include "check.h"

#include "sip/digest.h"

static void rfc7616_sha256(void)
{
    char out[DIGEST_HEX_MAX];
    CHECK(digest_response(DIGEST_SHA256, "Mufasa", "http-auth@example.org", "Circle of Life",
                          "GET", "/dir/index.html",
                          "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "00000001",
                          "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "auth", out) == 0);
    CHECK(strcmp(out, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1") == 0);
}

static void rfc7616_md5(void)
{
    char out[DIGEST_HEX_MAX];
    CHECK(digest_response(DIGEST_MD5, "Mufasa", "http-auth@example.org", "Circle of Life",
                          "GET", "/dir/index.html",
                          "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "00000001",
                          "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "auth", out) == 0);
    CHECK(strcmp(out, "8ca523f5e9506fed4657c9700eebdbec") == 0);
}

static void rfc2617_example(void)
{
    char out[DIGEST_HEX_MAX];
    CHECK(digest_response(DIGEST_MD5, "Mufasa", "testrealm@host.com", "Circle Of Life", "GET",
                          "/dir/index.html", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001",
                          "0a4f113b", "auth", out) == 0);
    CHECK(strcmp(out, "6629fae49393a05397450978507c4ef1") == 0);
}

static void challenge_and_answer(void)
{
    const char *params[] = {"realm=\"carrier\"", "nonce=\"abc\"", "qop=\"auth,auth-int\"",
                            "algorithm=SHA-256", "opaque=\"o1\"", "stale=TRUE", NULL};
    struct digest_challenge c;
    CHECK(digest_challenge_parse(&c, params) == 0);
    CHECK(c.alg == DIGEST_SHA256 && c.qop_auth && c.stale);
    CHECK(strcmp(c.realm, "carrier") == 0 && strcmp(c.opaque, "o1") == 0);
    char hdr[1024];
    CHECK(digest_authorization(&c, "u", "p", "REGISTER", "sip:1.2.3.4", 1, "cn", hdr,
                               sizeof hdr) > 0);
    char expect[DIGEST_HEX_MAX];
    digest_response(DIGEST_SHA256, "u", "carrier", "p", "REGISTER", "sip:1.2.3.4", "abc",
                    "00000001", "cn", "auth", expect);
    CHECK_STR_CONTAINS(hdr, expect);
    CHECK_STR_CONTAINS(hdr, "algorithm=SHA-256");
    CHECK_STR_CONTAINS(hdr, "qop=auth, nc=00000001, cnonce=\"cn\"");
    CHECK_STR_CONTAINS(hdr, "opaque=\"o1\"");

    const char *noqop[] = {"realm=r", "nonce=n", NULL};
    CHECK(digest_challenge_parse(&c, noqop) == 0);
    CHECK(c.alg == DIGEST_MD5 && !c.qop_auth && !c.stale);
    CHECK(digest_authorization(&c, "u", "p", "REGISTER", "sip:x", 1, "cn", hdr, sizeof hdr) > 0);
    CHECK(strstr(hdr, "qop") == NULL);

    const char *bad[] = {"realm=r", NULL};
    CHECK(digest_challenge_parse(&c, bad) == -1);
    const char *sess[] = {"realm=r", "nonce=n", "algorithm=MD5-sess", NULL};
    CHECK(digest_challenge_parse(&c, sess) == 0);
    CHECK(digest_authorization(&c, "u", "p", "REGISTER", "sip:x", 1, "cn", hdr, sizeof hdr) < 0);
}

TEST_MAIN(CASE(rfc7616_sha256), CASE(rfc7616_md5), CASE(rfc2617_example),
          CASE(challenge_and_answer))
