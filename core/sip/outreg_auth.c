/* Outbound registration: digest challenges and credentials. See
 * outreg_internal.h.
 *
 * The last challenge that let us in is remembered, so that each refresh
 * answers it up front (nonce-count + 1): one REGISTER per refresh instead
 * of two while the carrier's nonce stays good. */
#include "random.h"
#include "sip/outreg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/msg_header.h>

/* Room reserved for a challenge when an entry is created. Long-lived
 * allocations made in the middle of a start-up burst (thousands of
 * transactions' messages come and go around them) pin heap pages for good;
 * made up front, they sit together. */
#define AUTH_RESERVE 192

/* One allocation; the strings follow the struct. */
struct outreg_auth {
    int status;      /* 401 or 407; 0: nothing remembered */
    size_t capacity; /* of strings[] */
    unsigned nc;     /* nonce-count of the last credentials */
    enum digest_alg alg;
    bool qop_auth;
    const char *realm, *nonce, *opaque;
    char strings[];
};

static struct outreg_auth *auth_alloc(size_t capacity)
{
    struct outreg_auth *a = malloc(sizeof *a + capacity);
    if (a) {
        a->status = 0;
        a->capacity = capacity;
        a->nc = 0;
    }
    return a;
}

struct outreg_auth *outreg_auth_new(void)
{
    return auth_alloc(AUTH_RESERVE);
}

void outreg_auth_free(struct outreg_auth *a)
{
    free(a);
}

bool outreg_auth_pick(const msg_auth_t *list, struct digest_challenge *best)
{
    /* RFC 8760: the server may offer several algorithms; take the
     * strongest we support. The winner is parsed again at the end: a
     * parsed challenge points into its own buffer. */
    const msg_auth_t *winner = NULL;
    enum digest_alg winner_alg = DIGEST_UNSUPPORTED;
    for (const msg_auth_t *ch = list; ch; ch = ch->au_next) {
        if (!ch->au_scheme || strcasecmp(ch->au_scheme, "Digest") != 0)
            continue;
        if (digest_challenge_parse(best, ch->au_params) < 0 ||
            best->alg == DIGEST_UNSUPPORTED)
            continue;
        if (!winner || (best->alg == DIGEST_SHA256 && winner_alg != DIGEST_SHA256)) {
            winner = ch;
            winner_alg = best->alg;
        }
    }
    return winner && digest_challenge_parse(best, winner->au_params) == 0;
}

/* The credentials for challenge `c` at nonce-count `nc`. */
static bool authorize(const struct outreg *r, const struct digest_challenge *c,
                      unsigned nc, char *value, size_t len)
{
    char uri[300], cnonce[17];
    outreg_register_uri(r, uri, sizeof uri);
    random_hex(cnonce, 8);
    const char *user = r->auth_username ? r->auth_username : r->username;
    return digest_authorization(c, user, r->password, "REGISTER", uri, nc, cnonce, value,
                                len) > 0;
}

static void remember(struct outreg *r, int status, const struct digest_challenge *c)
{
    size_t a = strlen(c->realm) + 1, b = strlen(c->nonce) + 1,
           o = c->opaque ? strlen(c->opaque) + 1 : 0;
    struct outreg_auth *m = r->auth;
    if (!m || m->capacity < a + b + o) {
        free(m);
        m = r->auth = auth_alloc(a + b + o);
        if (!m)
            return;
    }
    m->status = status;
    m->nc = 1;
    m->alg = c->alg;
    m->qop_auth = c->qop_auth;
    memcpy(m->strings, c->realm, a);
    memcpy(m->strings + a, c->nonce, b);
    m->realm = m->strings;
    m->nonce = m->strings + a;
    m->opaque = NULL;
    if (o) {
        memcpy(m->strings + a + b, c->opaque, o);
        m->opaque = m->strings + a + b;
    }
}

bool outreg_auth_answer(struct outreg *r, int status, const struct digest_challenge *c,
                        char *value, size_t len)
{
    /* A new nonce counts from 1. */
    if (!authorize(r, c, 1, value, len))
        return false;
    remember(r, status, c);
    return true;
}

int outreg_auth_cached(struct outreg *r, char *value, size_t len)
{
    struct outreg_auth *m = r->auth;
    if (!m || !m->status)
        return 0;
    struct digest_challenge c = {.realm = m->realm,
                                 .nonce = m->nonce,
                                 .opaque = m->opaque,
                                 .alg = m->alg,
                                 .qop_auth = m->qop_auth};
    return authorize(r, &c, ++m->nc, value, len) ? m->status : 0;
}

void outreg_auth_forget(struct outreg *r)
{
    if (r->auth)
        r->auth->status = 0;
}
