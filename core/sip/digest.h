/* HTTP Digest for SIP (RFC 2617, RFC 7616, RFC 8760): MD5 and SHA-256, with
 * and without qop=auth, for answering challenges (outbound registration,
 * calls to carriers) and for checking answers (the registrar).
 *
 * Pure functions over strings; no allocation, no SIP stack. */
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

#endif
