/* HTTP Digest over OpenSSL's EVP digests. */
#include "sip/digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sys/random.h>

/* OpenSSL 3 looks an algorithm up by name on each EVP_sha256() digest or
 * one-shot HMAC(), and allocates a context each time: for the registrar's
 * one nonce and three hashes per REGISTER that was most of the cost of
 * digest. The algorithms are fetched once here and one context of each
 * kind is reused. Loop thread only; held until exit. */
static EVP_MD *fetched[2];
static EVP_MD_CTX *md_ctx;

static const EVP_MD *md_of(enum digest_alg alg)
{
    int i = alg == DIGEST_SHA256;
    if (!fetched[i])
        fetched[i] = EVP_MD_fetch(NULL, i ? "SHA256" : "MD5", NULL);
    return fetched[i] ? fetched[i] : i ? EVP_sha256() : EVP_md5();
}

enum digest_alg digest_alg_parse(const char *name)
{
    if (!name || !*name || strcasecmp(name, "MD5") == 0)
        return DIGEST_MD5;
    if (strcasecmp(name, "SHA-256") == 0)
        return DIGEST_SHA256;
    return DIGEST_UNSUPPORTED;
}

const char *digest_alg_name(enum digest_alg alg)
{
    return alg == DIGEST_SHA256 ? "SHA-256" : alg == DIGEST_MD5 ? "MD5" : "unsupported";
}

/* H(a:b:c...) of up to 6 parts, as lowercase hex. */
static int hash_hex(enum digest_alg alg, char out[DIGEST_HEX_MAX],
                    const char *const *parts, int n)
{
    if (!md_ctx && !(md_ctx = EVP_MD_CTX_new()))
        return -1;
    EVP_MD_CTX *ctx = md_ctx;
    if (!EVP_DigestInit_ex2(ctx, md_of(alg), NULL))
        return -1;
    for (int i = 0; i < n; i++) {
        if (i)
            EVP_DigestUpdate(ctx, ":", 1);
        EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]));
    }
    unsigned char raw[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx, raw, &len);
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < len; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * len] = '\0';
    return 0;
}

int digest_sha256(const void *data, size_t len, unsigned char out[32])
{
    if (!md_ctx && !(md_ctx = EVP_MD_CTX_new()))
        return -1;
    unsigned n = 0;
    if (!EVP_DigestInit_ex2(md_ctx, md_of(DIGEST_SHA256), NULL) ||
        !EVP_DigestUpdate(md_ctx, data, len) || !EVP_DigestFinal_ex(md_ctx, out, &n) ||
        n != 32)
        return -1;
    return 0;
}

int digest_response(enum digest_alg alg, const char *user, const char *realm,
                    const char *password, const char *method, const char *uri,
                    const char *nonce, const char *nc, const char *cnonce,
                    const char *qop, char out[DIGEST_HEX_MAX])
{
    if (alg == DIGEST_UNSUPPORTED)
        return -1;
    char ha1[DIGEST_HEX_MAX], ha2[DIGEST_HEX_MAX];
    const char *p1[] = {user, realm, password};
    const char *p2[] = {method, uri};
    if (hash_hex(alg, ha1, p1, 3) < 0 || hash_hex(alg, ha2, p2, 2) < 0)
        return -1;
    if (qop && *qop) {
        if (!nc || !cnonce)
            return -1;
        const char *p[] = {ha1, nonce, nc, cnonce, qop, ha2};
        return hash_hex(alg, out, p, 6);
    }
    const char *p[] = {ha1, nonce, ha2};
    return hash_hex(alg, out, p, 3);
}

void digest_unquote(const char *in, char *out, size_t outlen)
{
    size_t n = strlen(in);
    if (n >= 2 && in[0] == '"' && in[n - 1] == '"') {
        in++;
        n -= 2;
    }
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, in, n);
    out[n] = '\0';
}

/* Walk auth-params ("name=value", value maybe quoted), unquoting each value
 * into `buf` (NUL-separated). For each, `set(name, value, ctx)` with the name
 * as given (not terminated: `nlen` bytes). Stops when buf is full. */
typedef void param_set_h(const char *name, size_t nlen, const char *value, void *ctx);

static void each_param(const char *const *params, char *buf, size_t buflen,
                       param_set_h *set, void *ctx)
{
    size_t used = 0;
    for (int i = 0; params && params[i]; i++) {
        const char *eq = strchr(params[i], '=');
        if (!eq)
            continue;
        char *val = buf + used;
        size_t room = buflen - used;
        if (room < 2)
            break;
        digest_unquote(eq + 1, val, room);
        used += strlen(val) + 1;
        set(params[i], (size_t)(eq - params[i]), val, ctx);
    }
}

static bool name_is(const char *name, size_t nlen, const char *key)
{
    return nlen == strlen(key) && strncasecmp(name, key, nlen) == 0;
}

static void set_challenge_param(const char *name, size_t nlen, const char *val, void *ctx)
{
    struct digest_challenge *c = ctx;
    if (name_is(name, nlen, "realm"))
        c->realm = val;
    else if (name_is(name, nlen, "nonce"))
        c->nonce = val;
    else if (name_is(name, nlen, "opaque"))
        c->opaque = val;
    else if (name_is(name, nlen, "qop"))
        c->qop = val;
    else if (name_is(name, nlen, "algorithm"))
        c->algorithm = val;
    else if (name_is(name, nlen, "stale"))
        c->stale = strcasecmp(val, "true") == 0;
}

int digest_challenge_parse(struct digest_challenge *c, const char *const *params)
{
    memset(c, 0, sizeof *c);
    each_param(params, c->buf, sizeof c->buf, set_challenge_param, c);
    c->alg = digest_alg_parse(c->algorithm);
    if (c->qop) { /* a comma-separated list: "auth,auth-int" */
        const char *p = c->qop;
        while (*p) {
            while (*p == ' ' || *p == ',')
                p++;
            size_t n = strcspn(p, ", ");
            if (n == 4 && strncasecmp(p, "auth", 4) == 0)
                c->qop_auth = true;
            p += n;
        }
    }
    return c->realm && c->nonce ? 0 : -1;
}

int digest_authorization(const struct digest_challenge *c, const char *user,
                         const char *password, const char *method, const char *uri,
                         unsigned nc, const char *cnonce, char *out, size_t outlen)
{
    char ncs[9], response[DIGEST_HEX_MAX];
    snprintf(ncs, sizeof ncs, "%08x", nc);
    const char *qop = c->qop_auth ? "auth" : NULL;
    if (digest_response(c->alg, user, c->realm, password, method, uri, c->nonce, ncs,
                        cnonce, qop, response) < 0)
        return -1;
    int n = snprintf(out, outlen,
                     "Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\", "
                     "response=\"%s\", algorithm=%s",
                     user, c->realm, c->nonce, uri, response, digest_alg_name(c->alg));
    if (n < 0 || (size_t)n >= outlen)
        return -1;
    if (c->opaque) {
        int m = snprintf(out + n, outlen - (size_t)n, ", opaque=\"%s\"", c->opaque);
        if (m < 0 || (size_t)(n + m) >= outlen)
            return -1;
        n += m;
    }
    if (qop) {
        int m = snprintf(out + n, outlen - (size_t)n, ", qop=auth, nc=%s, cnonce=\"%s\"",
                         ncs, cnonce);
        if (m < 0 || (size_t)(n + m) >= outlen)
            return -1;
        n += m;
    }
    return n;
}

/* ---- Server side ------------------------------------------------------------ */

static const char hexdigits[] = "0123456789abcdef";

static void to_hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdigits[in[i] >> 4];
        out[2 * i + 1] = hexdigits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int from_hex(const char *in, unsigned char *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

/* time(8) || counter(8) || HMAC-SHA256(secret, time || counter)[0..16) */
#define NONCE_RAW 32

/* One HMAC context, keyed with the secret it last saw: re-initialised
 * with its key kept (no lookup, no allocation) for each nonce. */
static EVP_MAC_CTX *mac_ctx;
static unsigned char mac_key[DIGEST_SECRET_LEN];

static bool mac_keyed(const unsigned char secret[DIGEST_SECRET_LEN])
{
    if (mac_ctx && memcmp(mac_key, secret, DIGEST_SECRET_LEN) == 0)
        return EVP_MAC_init(mac_ctx, NULL, 0, NULL) == 1;
    if (!mac_ctx) {
        EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
        mac_ctx = m ? EVP_MAC_CTX_new(m) : NULL;
        EVP_MAC_free(m);
        if (!mac_ctx)
            return false;
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(mac_ctx, secret, DIGEST_SECRET_LEN, params) != 1) {
        memset(mac_key, 0, sizeof mac_key);
        return false;
    }
    memcpy(mac_key, secret, DIGEST_SECRET_LEN);
    return true;
}

static void nonce_mac(const unsigned char secret[DIGEST_SECRET_LEN],
                      const unsigned char head[16], unsigned char mac[32])
{
    size_t len = 0;
    if (mac_keyed(secret) && EVP_MAC_update(mac_ctx, head, 16) == 1 &&
        EVP_MAC_final(mac_ctx, mac, &len, 32) == 1 && len == 32)
        return;
    unsigned ulen = 0;
    HMAC(EVP_sha256(), secret, DIGEST_SECRET_LEN, head, 16, mac, &ulen);
}

void digest_nonce_make(const unsigned char secret[DIGEST_SECRET_LEN], long long now_ms,
                       char out[DIGEST_NONCE_MAX])
{
    unsigned char raw[NONCE_RAW], mac[32];
    unsigned long long t = (unsigned long long)now_ms;
    for (int i = 7; i >= 0; i--, t >>= 8)
        raw[i] = (unsigned char)(t & 0xff);
    /* The 8 bytes that make each nonce unique: a counter started at a
     * random value (no secret: the MAC is what cannot be forged, and a
     * counter cannot repeat where random bytes might). */
    static unsigned long long counter;
    static bool seeded;
    if (!seeded) {
        if (RAND_bytes((unsigned char *)&counter, sizeof counter) != 1 &&
            getrandom(&counter, sizeof counter, 0) != (ssize_t)sizeof counter)
            counter = (unsigned long long)random() << 32 ^ (unsigned long long)random();
        seeded = true;
    }
    unsigned long long id = ++counter;
    for (int i = 15; i >= 8; i--, id >>= 8)
        raw[i] = (unsigned char)(id & 0xff);
    nonce_mac(secret, raw, mac);
    memcpy(raw + 16, mac, 16);
    to_hex(raw, NONCE_RAW, out);
}

enum digest_nonce_state digest_nonce_check(const unsigned char secret[DIGEST_SECRET_LEN],
                                           const char *nonce, long long now_ms,
                                           unsigned ttl, long long *issued_ms,
                                           unsigned long long *id)
{
    unsigned char raw[NONCE_RAW], mac[32];
    if (!nonce || strlen(nonce) != DIGEST_NONCE_LEN ||
        from_hex(nonce, raw, NONCE_RAW) < 0)
        return DIGEST_NONCE_INVALID;
    nonce_mac(secret, raw, mac);
    if (CRYPTO_memcmp(mac, raw + 16, 16) != 0)
        return DIGEST_NONCE_INVALID;
    unsigned long long t = 0, r = 0;
    for (int i = 0; i < 8; i++) {
        t = t << 8 | raw[i];
        r = r << 8 | raw[8 + i];
    }
    long long when = (long long)t;
    /* A little slack for a clock stepped back since it was issued. */
    if (when > now_ms + 5000)
        return DIGEST_NONCE_INVALID;
    if (issued_ms)
        *issued_ms = when;
    if (id)
        *id = r;
    return now_ms - when > (long long)ttl * 1000 ? DIGEST_NONCE_STALE
                                                 : DIGEST_NONCE_VALID;
}

int digest_challenge_format(enum digest_alg alg, const char *realm, const char *nonce,
                            bool stale, char *out, size_t outlen)
{
    if (alg == DIGEST_UNSUPPORTED)
        return -1;
    /* Concatenated without printf: this is on every challenge. */
    const char *parts[] = {"Digest realm=\"", realm,
                           "\", nonce=\"",    nonce,
                           "\", algorithm=",  digest_alg_name(alg),
                           ", qop=\"auth\"",  stale ? ", stale=true" : ""};
    size_t n = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t len = strlen(parts[i]);
        if (n + len >= outlen)
            return -1;
        memcpy(out + n, parts[i], len);
        n += len;
    }
    out[n] = '\0';
    return (int)n;
}

static void set_credential_param(const char *name, size_t nlen, const char *val,
                                 void *ctx)
{
    struct digest_credentials *c = ctx;
    if (name_is(name, nlen, "username"))
        c->username = val;
    else if (name_is(name, nlen, "realm"))
        c->realm = val;
    else if (name_is(name, nlen, "nonce"))
        c->nonce = val;
    else if (name_is(name, nlen, "uri"))
        c->uri = val;
    else if (name_is(name, nlen, "response"))
        c->response = val;
    else if (name_is(name, nlen, "algorithm"))
        c->algorithm = val;
    else if (name_is(name, nlen, "cnonce"))
        c->cnonce = val;
    else if (name_is(name, nlen, "opaque"))
        c->opaque = val;
    else if (name_is(name, nlen, "qop"))
        c->qop = val;
    else if (name_is(name, nlen, "nc"))
        c->nc = val;
}

int digest_credentials_parse(struct digest_credentials *c, const char *const *params)
{
    memset(c, 0, sizeof *c);
    each_param(params, c->buf, sizeof c->buf, set_credential_param, c);
    c->alg = digest_alg_parse(c->algorithm);
    c->ncount = 0;
    if (c->nc && strlen(c->nc) == 8) {
        unsigned long v = 0;
        bool ok = true;
        for (int i = 0; i < 8; i++) {
            int d = hexval(c->nc[i]);
            if (d < 0) {
                ok = false;
                break;
            }
            v = v << 4 | (unsigned long)d;
        }
        c->ncount = ok ? v : 0;
    }
    return c->username && c->realm && c->nonce && c->uri && c->response ? 0 : -1;
}

bool digest_check(const struct digest_credentials *c, const char *password,
                  const char *method)
{
    if (c->alg == DIGEST_UNSUPPORTED || !c->username || !c->realm || !c->nonce ||
        !c->uri || !c->response || !password || !method)
        return false;
    const char *qop = NULL;
    if (c->qop && *c->qop) {
        if (strcasecmp(c->qop, "auth") != 0 || !c->nc || !c->cnonce)
            return false;
        qop = "auth";
    }
    char want[DIGEST_HEX_MAX];
    if (digest_response(c->alg, c->username, c->realm, password, method, c->uri, c->nonce,
                        c->nc, c->cnonce, qop, want) < 0)
        return false;
    size_t n = strlen(want);
    if (strlen(c->response) != n)
        return false;
    /* Lowercase hex is what we make; accept an uppercase answer too. */
    char got[DIGEST_HEX_MAX];
    for (size_t i = 0; i < n; i++)
        got[i] =
            (char)((c->response[i] >= 'A' && c->response[i] <= 'F') ? c->response[i] + 32
                                                                    : c->response[i]);
    return CRYPTO_memcmp(want, got, n) == 0;
}
