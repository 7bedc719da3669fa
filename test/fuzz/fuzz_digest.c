/* libFuzzer harness for core/sip/digest.c: the Authorization and
 * WWW-Authenticate parsers, and what runs on what they return.
 *
 * Input: one byte of options, then a header value such as
 * 'Digest username="1001", realm="moonswitch", nonce="..", ...'.
 * The value goes through sofia's own header parser (as the registrar,
 * outreg and calls get it: msg_auth_t.au_params) as credentials and as a
 * challenge, and also, split at commas, straight into the parsers (any
 * NUL-terminated list of strings is within their contract). Then:
 * digest_check() and digest_nonce_check() on the credentials,
 * digest_authorization() on the challenge into an output buffer whose
 * size the option byte chooses (short ones test the truncation checks),
 * digest_unquote() into a short buffer. */
#include "sip/digest.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_alloc.h>

static const unsigned char secret[DIGEST_SECRET_LEN] = "fuzz-secret-fuzz-secret-fuzz-se";
static const char *const methods[] = {"REGISTER", "INVITE", "", "OPTIONS"};

static void use_credentials(const char *const *params, unsigned opt)
{
    struct digest_credentials c;
    int rc = digest_credentials_parse(&c, params);
    (void)rc; /* the fields found are set either way */
    digest_check(&c, "secret", methods[opt & 3]);
    long long issued = 0;
    unsigned long long id = 0;
    digest_nonce_check(secret, c.nonce, 1700000000000LL, 300, &issued, &id);
}

static void use_challenge(const char *const *params, unsigned opt)
{
    struct digest_challenge ch;
    if (digest_challenge_parse(&ch, params) < 0)
        return; /* realm or nonce missing: callers stop here */
    static const size_t outlens[] = {1, 16, 64, 128, 256, 512, 1024, 4096};
    size_t outlen = outlens[(opt >> 2) & 7];
    char *out = malloc(outlen); /* exact size, so ASan sees any overrun */
    if (!out)
        return;
    int n = digest_authorization(&ch, "1001", "secret", methods[opt & 3],
                                 "sip:moonswitch.invalid", (opt >> 5) + 1, "0a4f113b",
                                 out, outlen);
    if (n >= 0 && ((size_t)n >= outlen || strlen(out) != (size_t)n))
        abort(); /* the length returned must be what was written */
    free(out);
}

/* The value split at commas into "name=value" strings, as a plain list. */
static void raw_params(char *value, unsigned opt)
{
    const char *params[64];
    size_t n = 0;
    char *save = NULL;
    for (char *p = strtok_r(value, ",", &save); p && n < 63;
         p = strtok_r(NULL, ",", &save)) {
        while (*p == ' ')
            p++;
        params[n++] = p;
    }
    params[n] = NULL;
    use_credentials(params, opt);
    use_challenge(params, opt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    unsigned opt = data[0];
    char *value = malloc(size);
    if (!value)
        return 0;
    memcpy(value, data + 1, size - 1);
    value[size - 1] = '\0';

    su_home_t home[1] = {SU_HOME_INIT(home)};
    sip_authorization_t *au = sip_authorization_make(home, value);
    if (au)
        for (msg_auth_t *a = au; a; a = a->au_next)
            use_credentials((const char *const *)a->au_params, opt);
    sip_www_authenticate_t *ch = sip_www_authenticate_make(home, value);
    if (ch)
        for (msg_auth_t *a = ch; a; a = a->au_next)
            use_challenge((const char *const *)a->au_params, opt);
    su_home_deinit(home);

    char small[8];
    digest_unquote(value, small, sizeof small);
    raw_params(value, opt);
    free(value);
    return 0;
}
