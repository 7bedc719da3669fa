/* HTTP Digest for SIP (RFC 2617, RFC 7616, RFC 8760): MD5 and SHA-256, with
 * and without qop=auth, for answering challenges (outbound registration,
 * calls to carriers) and for checking answers (the registrar).
 *
 * Functions over strings; no allocation, no SIP stack (making a nonce
 * advances a counter). */
#ifndef MOON_SIP_DIGEST_H
#define MOON_SIP_DIGEST_H

#include <stdbool.h>
#include <stddef.h>

enum digest_alg { DIGEST_MD5, DIGEST_SHA256, DIGEST_UNSUPPORTED };

/* Longest hex digest (SHA-256) plus NUL. */
#define DIGEST_HEX_MAX 65

/* "MD5", "SHA-256" (case-insensitive); NULL or "" is MD5. -sess variants
 * and anything else are DIGEST_UNSUPPORTED. */
enum digest_alg digest_alg_parse(const char *name);
const char *digest_alg_name(enum digest_alg alg);

/* SHA-256 of data[len] into out, with the algorithm fetched once and a
 * context reused (loop thread only). Returns 0 or -1. */
int digest_sha256(const void *data, size_t len, unsigned char out[32]);

/* The `response` value. `qop` is NULL (RFC 2069 style) or "auth"; with qop,
 * `nc` ("00000001") and `cnonce` are required. Writes lowercase hex into
 * `out` (DIGEST_HEX_MAX bytes). Returns 0, or -1 for a bad algorithm or
 * missing qop fields. */
int digest_response(enum digest_alg alg, const char *user, const char *realm,
                    const char *password, const char *method, const char *uri,
                    const char *nonce, const char *nc, const char *cnonce, const char *qop,
                    char out[DIGEST_HEX_MAX]);

/* A parsed challenge (WWW-Authenticate / Proxy-Authenticate). Pointers point
 * into `buf`. */
struct digest_challenge {
    char buf[1024];
    const char *realm, *nonce, *opaque, *qop, *algorithm;
    bool stale;
    enum digest_alg alg;
    bool qop_auth; /* the server offers qop=auth */
};

/* Parse a list of auth-params ("realm=\"x\"", "nonce=\"y\"", ...) as sofia
 * gives them in msg_auth_t.au_params. Returns 0, or -1 when realm or nonce is
 * missing. */
int digest_challenge_parse(struct digest_challenge *c, const char *const *params);

/* Build the credentials for an Authorization / Proxy-Authorization header:
 * 'Digest username="..", realm="..", nonce="..", uri="..", response="..",
 * algorithm=.., cnonce="..", opaque="..", qop=auth, nc=..'.
 * Returns the length written, or -1 if `out` is too small or the challenge's
 * algorithm is unsupported. */
int digest_authorization(const struct digest_challenge *c, const char *user,
                         const char *password, const char *method, const char *uri,
                         unsigned nc, const char *cnonce, char *out, size_t outlen);

/* Strip surrounding quotes from an auth-param value into out. */
void digest_unquote(const char *in, char *out, size_t outlen);

/* ---- Server side: challenging and checking (the registrar) ---------------- */

/* Nonces are stateless: the switch can check one it issued without keeping
 * it. A nonce is 64 hex characters: 8 bytes of issue time (unix
 * milliseconds, big-endian), 8 bytes of a counter started at a random value
 * (so every challenge's nonce is unique, and its nonce-count can be
 * tracked), and the first 16 bytes of
 * HMAC-SHA256(secret, time || counter). */
#define DIGEST_SECRET_LEN 32
#define DIGEST_NONCE_LEN 64
#define DIGEST_NONCE_MAX (DIGEST_NONCE_LEN + 1)

/* Make a nonce issued at `now_ms` (unix milliseconds). Its 8 unique bytes
 * come from a counter started at a random value at the first call (loop
 * thread only). Costs one HMAC-SHA256. */
void digest_nonce_make(const unsigned char secret[DIGEST_SECRET_LEN], long long now_ms,
                       char out[DIGEST_NONCE_MAX]);

enum digest_nonce_state {
    DIGEST_NONCE_VALID,   /* ours, and younger than the lifetime */
    DIGEST_NONCE_STALE,   /* ours, but older than the lifetime */
    DIGEST_NONCE_INVALID, /* not ours: wrong length, bad MAC, from the future */
};

/* Check a nonce against the secret at `now_ms`. `ttl` is its lifetime in
 * seconds. On VALID and STALE, `*issued_ms` gets its issue time and `*id` 8
 * bytes that identify it (for nonce-count tracking). Constant time in the MAC compare.
 * Costs one HMAC-SHA256. */
enum digest_nonce_state digest_nonce_check(const unsigned char secret[DIGEST_SECRET_LEN],
                                           const char *nonce, long long now_ms, unsigned ttl,
                                           long long *issued_ms, unsigned long long *id);

/* A challenge value for WWW-Authenticate / Proxy-Authenticate:
 * 'Digest realm="..", nonce="..", algorithm=SHA-256, qop="auth"' and
 * ', stale=true' when asked. Returns the length, or -1 if `out` is too
 * small or the algorithm unsupported. */
int digest_challenge_format(enum digest_alg alg, const char *realm, const char *nonce,
                            bool stale, char *out, size_t outlen);

/* Parsed credentials (Authorization / Proxy-Authorization), from sofia's
 * msg_auth_t.au_params. Pointers point into `buf`; absent ones are NULL. */
struct digest_credentials {
    char buf[1536];
    const char *username, *realm, *nonce, *uri, *response, *algorithm, *cnonce, *opaque,
        *qop, *nc;
    enum digest_alg alg;
    unsigned long ncount; /* nc as a number; 0 when absent or not 8 hex digits */
};

/* Returns 0 when username, realm, nonce, uri and response are all present,
 * -1 otherwise (the fields found are still set). */
int digest_credentials_parse(struct digest_credentials *c, const char *const *params);

/* Does the response in `c` match `password` for a request of `method`?
 * With qop=auth, nc and cnonce must be present; qop values other than auth
 * (auth-int) and unsupported algorithms are refused. The comparison runs in
 * constant time. Costs three hashes. */
bool digest_check(const struct digest_credentials *c, const char *password,
                  const char *method);

#endif
