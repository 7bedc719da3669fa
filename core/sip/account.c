/* The registrar's accounts and their authentication. See account.h. */
#include "sip/account.h"
#include "config.h"
#include "log.h"
#include "sip/binding.h"
#include "sip/digest.h"
#include "sip/guard.h"
#include "sip/nonce.h"
#include "sip/registrar.h"
#include "sip/registrar_internal.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <sofia-sip/msg_header.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/url.h>

#define SECRET_VERSION 1
static const char secret_key[] = "\0secret";
#define SECRET_KEY_LEN (sizeof secret_key - 1)
/* Nonce-counts remembered (24 bytes each, allocated at start). */
#define NCTRACK_ENTRIES 65536

struct account {
    struct binding_aor aor; /* its name is the account's */
    char *name, *password, *mapping_gateway;
    int digest; /* enum endpoint_digest: its own, its gateway's or the switch's */
    bool kept;  /* during accounts_apply() */
};

struct accounts {
    struct store *store;
    struct guard *guard;
    struct binding_set *set;
    unsigned char secret[DIGEST_SECRET_LEN];
    struct nctrack *nct;
    unsigned nonce_ttl;
    int digest;           /* enum endpoint_digest */
    struct account **acc; /* sorted by name */
    size_t n;
};

const char *account_name(const struct account *acc)
{
    return acc->name;
}

const char *account_mapping_gateway(const struct account *acc)
{
    return acc->mapping_gateway;
}

struct binding_aor *account_aor(struct account *acc)
{
    return &acc->aor;
}

/* ---- The table ------------------------------------------------------------------- */

static int account_cmp(const void *name, const void *entry)
{
    return strcmp(name, (*(struct account *const *)entry)->name);
}

struct account *accounts_find(struct accounts *a, const char *name)
{
    struct account **hit =
        a->n ? bsearch(name, a->acc, a->n, sizeof *a->acc, account_cmp) : NULL;
    return hit ? *hit : NULL;
}

size_t accounts_count(const struct accounts *a)
{
    return a->n;
}

struct account *accounts_at(struct accounts *a, size_t i)
{
    return i < a->n ? a->acc[i] : NULL;
}

static void account_free(struct account *acc, bool forget)
{
    if (forget)
        binding_clear(&acc->aor, "account removed");
    else
        binding_release(&acc->aor);
    free(acc->name);
    free(acc->password);
    free(acc->mapping_gateway);
    free(acc);
}

static int acc_by_name(const void *x, const void *y)
{
    return strcmp((*(struct account *const *)x)->name,
                  (*(struct account *const *)y)->name);
}

static char *dup_str(const char *s)
{
    return strdup(s ? s : "");
}

static struct account *account_new(struct accounts *a, const struct account_def *d)
{
    struct account *acc = calloc(1, sizeof *acc);
    if (!acc || !(acc->name = strdup(d->head.name)) ||
        !(acc->password = dup_str(d->password)) ||
        !(acc->mapping_gateway = dup_str(d->mapping_gateway))) {
        if (acc) {
            free(acc->name);
            free(acc->password);
            free(acc);
        }
        log_error("registrar", "out of memory adding account %s", d->head.name);
        return NULL;
    }
    binding_aor_init(&acc->aor, a->set, acc->name);
    return acc;
}

/* A kept account takes the new password and gateway. */
static void account_change(struct account *acc, const struct account_def *d)
{
    char *pw = dup_str(d->password), *gw = dup_str(d->mapping_gateway);
    if (pw && gw) {
        free(acc->password);
        free(acc->mapping_gateway);
        acc->password = pw;
        acc->mapping_gateway = gw;
    } else {
        free(pw);
        free(gw);
    }
    acc->kept = true;
}

void accounts_apply(struct accounts *a, const struct config *cfg)
{
    a->digest = config_switch(cfg)->sip.endpoint_digest;
    size_t n = config_count(cfg, KIND_ACCOUNT);
    struct account **next = calloc(n ? n : 1, sizeof *next);
    if (!next) {
        log_error("registrar", "out of memory applying the policy");
        return;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const struct account_def *d = (const void *)config_at(cfg, KIND_ACCOUNT, i);
        const struct mapping_gateway_def *g =
            (const void *)config_find(cfg, KIND_MAPPING_GATEWAY, d->mapping_gateway);
        if (!g || g->type != MGW_REGISTER)
            continue;
        struct account *acc = accounts_find(a, d->head.name);
        if (acc)
            account_change(acc, d);
        else if (!(acc = account_new(a, d)))
            continue;
        acc->digest = d->digest != CONFIG_INHERIT   ? d->digest
                      : g->digest != CONFIG_INHERIT ? g->digest
                                                    : a->digest;
        next[m++] = acc;
    }
    /* Accounts no longer defined lose their bindings. */
    size_t removed = 0;
    for (size_t i = 0; i < a->n; i++) {
        struct account *acc = a->acc[i];
        if (acc->kept) {
            acc->kept = false;
            continue;
        }
        /* Still findable by the old array while its bindings go. */
        account_free(acc, true);
        removed++;
    }
    qsort(next, m, sizeof *next, acc_by_name);
    free(a->acc);
    a->acc = next;
    a->n = m;
    if (removed)
        log_info("registrar", "%zu accounts removed with their bindings", removed);
}

/* ---- Digest ---------------------------------------------------------------------- */

/* The algorithms offered, most preferred first, for `digest` (enum
 * endpoint_digest: an account's, or the switch's for unknown users). */
static unsigned offered(int digest, enum digest_alg algs[2])
{
    switch (digest) {
    case ENDPOINT_DIGEST_MD5_SHA256:
        algs[0] = DIGEST_MD5;
        algs[1] = DIGEST_SHA256;
        return 2;
    case ENDPOINT_DIGEST_MD5:
        algs[0] = DIGEST_MD5;
        return 1;
    case ENDPOINT_DIGEST_SHA256:
        algs[0] = DIGEST_SHA256;
        return 1;
    default:
        algs[0] = DIGEST_SHA256;
        algs[1] = DIGEST_MD5;
        return 2;
    }
}

static bool is_offered(int digest, enum digest_alg alg)
{
    enum digest_alg algs[2];
    unsigned n = offered(digest, algs);
    for (unsigned i = 0; i < n; i++)
        if (algs[i] == alg)
            return true;
    return false;
}

/* A fresh nonce, one challenge per algorithm offered (RFC 8760: in order of
 * preference, as separate headers). */
static int challenge(struct accounts *a, const struct registrar_reply *to, bool proxy,
                     bool stale, int digest)
{
    char nonce[DIGEST_NONCE_MAX], one[2][256], hdr[640];
    digest_nonce_make(a->secret, registrar_now_ms(), nonce);
    enum digest_alg algs[2];
    unsigned n = offered(digest, algs);
    for (unsigned i = 0; i < n; i++)
        if (digest_challenge_format(algs[i], REGISTRAR_REALM, nonce, stale, one[i],
                                    sizeof one[i]) < 0)
            one[i][0] = '\0';
    const char *name = proxy ? "Proxy-Authenticate: " : "WWW-Authenticate: ";
    size_t len = 0, nl = strlen(name);
    for (unsigned i = 0; i < n; i++) {
        size_t l1 = strlen(one[i]);
        memcpy(hdr + len, name, nl);
        memcpy(hdr + len + nl, one[i], l1);
        memcpy(hdr + len + nl + l1, "\r\n", 3);
        len += nl + l1 + 2;
    }
    int status = proxy ? 407 : 401;
    registrar_answer_text(to, status,
                          proxy ? "Proxy Authentication Required" : "Unauthorized", hdr);
    return status;
}

static int forbid(const struct registrar_reply *to)
{
    registrar_answer(to, SIP_403_FORBIDDEN, TAG_END());
    return 403;
}

/* The Digest credentials for our realm, from the header the method uses. */
static bool find_credentials(const sip_t *sip, bool proxy, struct digest_credentials *c)
{
    const msg_auth_t *lists[2] = {proxy ? sip->sip_proxy_authorization
                                        : sip->sip_authorization,
                                  proxy ? sip->sip_authorization : NULL};
    for (int i = 0; i < 2; i++)
        for (const msg_auth_t *au = lists[i]; au; au = au->au_next) {
            if (!au->au_scheme || strcasecmp(au->au_scheme, "Digest") != 0)
                continue;
            if (digest_credentials_parse(c, (const char *const *)au->au_params) < 0)
                continue;
            if (strcmp(c->realm, REGISTRAR_REALM) == 0)
                return true;
        }
    return false;
}

static bool digest_uri_matches(const char *uri, const url_t *ruri)
{
    char buf[512];
    size_t n = strlen(uri);
    if (n >= sizeof buf)
        return false;
    memcpy(buf, uri, n + 1);
    url_t u[1];
    return url_d(u, buf) >= 0 && url_cmp(u, ruri) == 0;
}

/* FNV-1a over the fields that make one attempt: a retransmission repeats
 * them all, a new attempt has a new nonce, nonce-count or cnonce. */
static uint64_t attempt_fingerprint(const struct digest_credentials *c)
{
    const char *fields[] = {c->username, c->nonce, c->nc, c->cnonce, c->response};
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        for (const char *p = fields[i] ? fields[i] : ""; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    return h;
}

int accounts_authenticate(struct accounts *a, const struct registrar_reply *to,
                          const sip_t *sip, const char *ip, struct account **accp)
{
    *accp = NULL;
    bool proxy = sip->sip_request->rq_method != sip_method_register;
    long long now = registrar_now_s();
    if (guard_suspended(a->guard, GUARD_SOURCE, ip, now))
        return forbid(to);
    struct digest_credentials c;
    bool answered = find_credentials(sip, proxy, &c);
    /* The algorithms are the account's: the one answering, else the one
     * registering (To) or calling (From); an unknown name gets the
     * switch's, like an account without its own. */
    const sip_from_t *aor = proxy ? sip->sip_from : sip->sip_to;
    const char *user = answered ? c.username : aor ? aor->a_url->url_user : NULL;
    struct account *acc = accounts_find(a, user ? user : "");
    int digest = acc ? acc->digest : a->digest;
    /* No credentials for us, or an answer without qop (so without a
     * nonce-count to check): the first challenge, not a failure. */
    if (!answered || !c.qop || c.ncount == 0 || !is_offered(digest, c.alg))
        return challenge(a, to, proxy, false, digest);
    if (guard_suspended(a->guard, GUARD_ACCOUNT, c.username, now))
        return forbid(to);
    long long issued;
    unsigned long long id;
    enum digest_nonce_state ns = digest_nonce_check(
        a->secret, c.nonce, registrar_now_ms(), a->nonce_ttl, &issued, &id);
    if (ns == DIGEST_NONCE_INVALID) /* never ours: nothing was tried */
        return challenge(a, to, proxy, false, digest);
    if (!digest_uri_matches(c.uri, sip->sip_request->rq_url)) {
        registrar_answer(to, 400, "Digest URI Mismatch", TAG_END());
        return 400;
    }
    /* An unknown user is checked against a password nobody has, so that the
     * work, the counting and the answer are the same as for a wrong one. */
    bool ok = digest_check(&c, acc ? acc->password : "\x01unknown\x01",
                           sip->sip_request->rq_method_name) &&
              acc;
    if (!ok) {
        log_info("registrar", "authentication failed for \"%.64s\" from %s", c.username,
                 ip);
        if (guard_failure(a->guard, c.username, ip, now, attempt_fingerprint(&c)))
            return forbid(to);
        return challenge(a, to, proxy, false, digest);
    }
    if (ns == DIGEST_NONCE_STALE)
        return challenge(a, to, proxy, true, digest);
    if (a->nct && nctrack_use(a->nct, id, issued, c.ncount) != NCTRACK_OK) {
        log_info("registrar", "%s: nonce-count %08lx refused (seen, or nonce forgotten)",
                 acc->name, c.ncount);
        return challenge(a, to, proxy, true, digest);
    }
    guard_success(a->guard, acc->name);
    *accp = acc;
    return 0;
}

/* ---- Lifetime ------------------------------------------------------------------------
 */

/* MOON_NONCE_TTL: the test-only override of REGISTRAR_NONCE_TTL (account.h). */
static unsigned nonce_ttl_from_env(void)
{
    const char *name = "MOON_NONCE_TTL", *v = getenv(name);
    if (!v || !*v)
        return REGISTRAR_NONCE_TTL;
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (*end || n > 86400) {
        log_warn("registrar", "ignoring %s=%s", name, v);
        return REGISTRAR_NONCE_TTL;
    }
    log_info("registrar", "%s=%lu", name, n);
    return (unsigned)n;
}

static int load_secret(struct accounts *a)
{
    uint8_t version;
    void *val = NULL;
    size_t len = 0;
    if (a->store && store_get(a->store, STORE_SUSPEND, secret_key, SECRET_KEY_LEN,
                              &version, &val, &len) == 0) {
        if (version == SECRET_VERSION && len == DIGEST_SECRET_LEN) {
            memcpy(a->secret, val, DIGEST_SECRET_LEN);
            free(val);
            return 0;
        }
        free(val);
    }
    if (getrandom(a->secret, sizeof a->secret, 0) != (ssize_t)sizeof a->secret) {
        log_error("registrar", "no randomness for the nonce secret");
        return -EIO;
    }
    if (!a->store)
        return 0;
    int rc = store_put(a->store, STORE_SUSPEND, secret_key, SECRET_KEY_LEN,
                       SECRET_VERSION, a->secret, DIGEST_SECRET_LEN);
    if (rc == 0)
        rc = store_commit(a->store);
    return rc;
}

int accounts_create(struct accounts **ap, struct store *store, struct guard *guard,
                    struct binding_set *set)
{
    *ap = NULL;
    struct accounts *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->store = store;
    a->guard = guard;
    a->set = set;
    a->nonce_ttl = nonce_ttl_from_env();
    int rc = load_secret(a);
    if (rc < 0)
        goto fail;
    rc = -ENOMEM;
    a->nct = nctrack_create(NCTRACK_ENTRIES, registrar_now_ms());
    if (!a->nct)
        goto fail;
    *ap = a;
    return 0;
fail:
    accounts_destroy(a);
    return rc;
}

void accounts_destroy(struct accounts *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        account_free(a->acc[i], false);
    free(a->acc);
    nctrack_destroy(a->nct);
    free(a);
}
