/* HTTP Digest over OpenSSL's EVP digests. */
#include "sip/digest.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

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
static int hash_hex(enum digest_alg alg, char out[DIGEST_HEX_MAX], const char *const *parts,
                    int n)
{
    const EVP_MD *md = alg == DIGEST_SHA256 ? EVP_sha256() : EVP_md5();
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -1;
    EVP_DigestInit_ex(ctx, md, NULL);
    for (int i = 0; i < n; i++) {
        if (i)
            EVP_DigestUpdate(ctx, ":", 1);
        EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]));
    }
    unsigned char raw[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx, raw, &len);
    EVP_MD_CTX_free(ctx);
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < len; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * len] = '\0';
    return 0;
}

int digest_response(enum digest_alg alg, const char *user, const char *realm,
                    const char *password, const char *method, const char *uri,
                    const char *nonce, const char *nc, const char *cnonce, const char *qop,
                    char out[DIGEST_HEX_MAX])
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

int digest_challenge_parse(struct digest_challenge *c, const char *const *params)
{
    memset(c, 0, sizeof *c);
    size_t used = 0;
    for (int i = 0; params && params[i]; i++) {
        const char *eq = strchr(params[i], '=');
        if (!eq)
            continue;
        size_t klen = (size_t)(eq - params[i]);
        char *val = c->buf + used;
        size_t room = sizeof c->buf - used;
        if (room < 2)
            break;
        digest_unquote(eq + 1, val, room);
        used += strlen(val) + 1;
#define KEY(k) (klen == sizeof(k) - 1 && strncasecmp(params[i], k, klen) == 0)
        if (KEY("realm"))
            c->realm = val;
        else if (KEY("nonce"))
            c->nonce = val;
        else if (KEY("opaque"))
            c->opaque = val;
        else if (KEY("qop"))
            c->qop = val;
        else if (KEY("algorithm"))
            c->algorithm = val;
        else if (KEY("stale"))
            c->stale = strcasecmp(val, "true") == 0;
#undef KEY
    }
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
    if (digest_response(c->alg, user, c->realm, password, method, uri, c->nonce, ncs, cnonce,
                        qop, response) < 0)
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
        int m = snprintf(out + n, outlen - (size_t)n, ", qop=auth, nc=%s, cnonce=\"%s\"", ncs,
                         cnonce);
        if (m < 0 || (size_t)(n + m) >= outlen)
            return -1;
        n += m;
    }
    return n;
}
