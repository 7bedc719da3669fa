/* Outbound registration state machines. See outreg.h. */
#define NTA_OUTGOING_MAGIC_T struct outreg

#include "random.h"
#include "sip/outreg.h"
#include "config.h"
#include "evport.h"
#include "log.h"
#include "sip/digest.h"
#include "store.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sofia-sip/msg.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>

/* Requested when expires = "auto": the carrier grants what it likes. */
#define AUTO_REQUEST 3600
/* How long a REGISTER may stay unanswered before we give up on it, beyond
 * nta's own timer F (64 * T1): a belt over nta's braces. */
#define WATCHDOG_SLACK 2
/* First REGISTERs of n new entries spread over min(n * 2 ms, 5 s). */
#define SPREAD_PER_ENTRY_MS 2
#define SPREAD_MAX_MS 5000
/* CSeq values reserved in the store at a time: one write per this many
 * REGISTERs, and a restart continues above the reservation. */
#define CSEQ_RESERVE 100
#define OUTREG_RECORD_VERSION 1

struct outreg_set {
    nta_agent_t *nta;
    nta_leg_t *client_leg;
    su_root_t *root;
    struct event_base *base;
    struct store *store;
    struct outreg **v; /* sorted by name */
    size_t n, cap;
    outreg_retry_h *retry_h;
    void *retry_arg;
    outreg_state_h *state_h;
    void *state_arg;
    /* switch settings */
    int default_expires;     /* CONFIG_AUTO or seconds */
    int default_retry_delay; /* seconds */
    int default_privacy;
    bool send_unregister;
    unsigned t1_ms;
    /* entries that were removed and are unregistering */
    struct outreg **leaving;
    size_t nleaving;
    /* shutdown */
    void (*shutdown_done)(void *arg);
    void *shutdown_arg;
    unsigned shutdown_pending;
};

/* The last digest challenge that let us in: refreshes answer it up front
 * (nc + 1), so a refresh costs one REGISTER instead of two while the
 * carrier's nonce stays good. One allocation; strings follow the struct. */
struct auth_cache {
    int status; /* 401 or 407; 0: empty */
    size_t capacity; /* of strings[] */
    enum digest_alg alg;
    bool qop_auth;
    const char *realm, *nonce, *opaque;
    char strings[];
};

struct outreg {
    struct outreg_set *set;
    struct auth_cache *auth;
    char *name;
    /* From the definition (copied: the policy that defined it may go). */
    char *server, *username, *password, *auth_username, *hostname, *proxy, *local_ip,
        *user_agent;
    int port, expires_cfg, retry_delay_cfg, hook_ref, mode, privacy;
    bool enabled_cfg;

    enum outreg_state state;
    int status;
    int granted;
    unsigned failures;
    int requested; /* expiry asked for in the REGISTER in flight */
    unsigned auth_tries;
    unsigned nc;
    bool trace;
    bool in_create;      /* inside nta_outgoing_tcreate() */
    int create_status;   /* nta answered from inside it */
    bool unregistering;
    bool leaving;      /* removed from the policy: free once unregistered */
    bool disabled_op;  /* disabled from the REPL */
    /* Heap strings, NULL until set: most entries never need an error or a
     * public address, and 10,000 entries should cost little. */
    char *contact;
    char *public_address;
    char *last_error;
    char call_id[64];
    char from_tag[24];
    uint32_t cseq, cseq_reserved;
    time_t next_refresh, expires_at;
    nta_outgoing_t *orq;
    struct event *timer;  /* next REGISTER, or the watchdog while one is in flight */
    struct event *expiry; /* the granted expiry running out */
};

static bool send_register(struct outreg *r, int expires);
static void fail(struct outreg *r, enum outreg_state s, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int on_response(struct outreg *r, nta_outgoing_t *orq, sip_t const *sip);

const char *outreg_state_name(enum outreg_state s)
{
    static const char *const names[] = {"registering", "active", "expired",
                                        "failed",      "timeout", "disabled"};
    return s <= OUTREG_DISABLED ? names[s] : "?";
}

/* ---- Helpers ------------------------------------------------------------ */

/* Replace a heap string; NULL or "" clears it. Setting the same text again
 * keeps the allocation. */
static void set_str(char **slot, const char *value)
{
    if (*slot && value && strcmp(*slot, value) == 0)
        return;
    free(*slot);
    *slot = value && *value ? strdup(value) : NULL;
}

static void set_error(struct outreg *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct outreg *r, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    set_str(&r->last_error, msg);
}

/* nta's timers live in sofia's queue, which the port only re-reads after its
 * own callbacks: after acting from a libevent timer of ours, tell it. */
static void kick(struct outreg_set *s)
{
    if (s->root)
        evport_rearm(s->root);
}

static void set_state(struct outreg *r, enum outreg_state s)
{
    enum outreg_state before = r->state;
    if (before == s)
        return;
    r->state = s;
    log_info("outreg", "%s: %s -> %s", r->name, outreg_state_name(before),
             outreg_state_name(s));
    if (r->set->state_h)
        r->set->state_h(r, before, r->set->state_arg);
}

static void arm(struct event *ev, double seconds)
{
    if (seconds < 0)
        seconds = 0;
    struct timeval tv = {.tv_sec = (time_t)seconds,
                         .tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    evtimer_add(ev, &tv);
}

/* ---- Persistence: Call-ID, From tag, CSeq ------------------------------- */

/* Record v1: call_id NUL from_tag NUL u32 cseq_reserved (big-endian). */
static void save_ids(struct outreg *r)
{
    if (!r->set->store)
        return;
    char buf[sizeof r->call_id + sizeof r->from_tag + 4];
    size_t a = strlen(r->call_id) + 1, b = strlen(r->from_tag) + 1;
    memcpy(buf, r->call_id, a);
    memcpy(buf + a, r->from_tag, b);
    uint8_t be[8];
    store_key_u64(be, r->cseq_reserved);
    memcpy(buf + a + b, be + 4, 4);
    if (store_put(r->set->store, STORE_OUTREG, r->name, strlen(r->name),
                  OUTREG_RECORD_VERSION, buf, a + b + 4) < 0)
        log_error("outreg", "%s: cannot save Call-ID and CSeq", r->name);
}

static void load_ids(struct outreg *r)
{
    uint8_t version;
    void *val = NULL;
    size_t len = 0;
    if (r->set->store && store_get(r->set->store, STORE_OUTREG, r->name, strlen(r->name),
                                   &version, &val, &len) == 0) {
        const char *p = val;
        size_t a = strnlen(p, len);
        size_t b = a < len ? strnlen(p + a + 1, len - a - 1) : 0;
        if (version == OUTREG_RECORD_VERSION && a + 1 + b + 1 + 4 == len &&
            a < sizeof r->call_id && b < sizeof r->from_tag) {
            memcpy(r->call_id, p, a + 1);
            memcpy(r->from_tag, p + a + 1, b + 1);
            uint8_t be[8] = {0};
            memcpy(be + 4, p + a + b + 2, 4);
            r->cseq = (uint32_t)store_key_u64_read(be);
            r->cseq_reserved = r->cseq;
            free(val);
            log_debug("outreg", "%s: resuming Call-ID %s at CSeq %u", r->name, r->call_id,
                      r->cseq);
            return;
        }
        log_warn("outreg", "%s: unreadable stored state, starting afresh", r->name);
        free(val);
    }
    random_hex(r->call_id, 16);
    strcat(r->call_id, "@moonswitch");
    random_hex(r->from_tag, 8);
    r->cseq = 0;
    r->cseq_reserved = 0;
}

static uint32_t next_cseq(struct outreg *r)
{
    r->cseq++;
    if (r->cseq >= r->cseq_reserved) {
        r->cseq_reserved = r->cseq + CSEQ_RESERVE;
        save_ids(r);
    }
    return r->cseq;
}

/* ---- Building the REGISTER --------------------------------------------- */

static int effective_retry_delay(struct outreg *r)
{
    struct outreg_set *s = r->set;
    if (r->hook_ref && s->retry_h) {
        int d = s->retry_h(r, r->hook_ref, s->retry_arg);
        if (d > 0)
            return d;
    }
    return r->retry_delay_cfg > 0 ? r->retry_delay_cfg : s->default_retry_delay;
}

static int effective_privacy(const struct outreg *r)
{
    return r->privacy == CONFIG_INHERIT ? r->set->default_privacy : r->privacy;
}

static int requested_expires(const struct outreg *r)
{
    int e = r->expires_cfg == CONFIG_INHERIT ? r->set->default_expires : r->expires_cfg;
    return e == CONFIG_AUTO ? AUTO_REQUEST : e;
}

/* The Contact: the switch's own address (static mode, or dynamic mode before
 * the carrier told us what it sees), or the learned public address. */
static void compute_contact(struct outreg *r)
{
    char hostport[128];
    if (r->mode == REG_MODE_DYNAMIC && r->public_address) {
        snprintf(hostport, sizeof hostport, "%s", r->public_address);
    } else {
        sip_contact_t const *m = nta_agent_contact(r->set->nta);
        const char *host = r->local_ip ? r->local_ip : (m ? m->m_url->url_host : "127.0.0.1");
        const char *port = m && m->m_url->url_port ? m->m_url->url_port : "5060";
        snprintf(hostport, sizeof hostport, "%s:%s", host, port);
    }
    char contact[300];
    snprintf(contact, sizeof contact, "sip:%s@%s", r->username, hostport);
    set_str(&r->contact, contact);
}

/* Log the request (or the response) of `orq` in full, when tracing. The
 * nta getters hand out a new reference to the message: dropped here. */
static void trace_msg(struct outreg *r, const char *dir, nta_outgoing_t *orq, bool response)
{
    if (!r->trace)
        return;
    msg_t *msg = response ? nta_outgoing_getresponse(orq) : nta_outgoing_getrequest(orq);
    if (!msg)
        return;
    size_t len = 0;
    su_home_t home[1] = {SU_HOME_INIT(home)};
    char *text = msg_as_string(home, msg, NULL, 0, &len);
    if (text)
        log_write(LOG_INFO, "trace", "%s %s:\n%.*s", r->name, dir, (int)len, text);
    su_home_deinit(home);
    msg_destroy(msg);
}

/* Send a REGISTER asking for `expires` seconds (0: unregister), with digest
 * credentials when `auth_value` is set (for a 401 or 407 `auth_status`).
 * Returns false, with last_error set, when nothing could be sent. */
static bool send_register_auth(struct outreg *r, int expires, int auth_status,
                               const char *auth_value)
{
    struct outreg_set *s = r->set;
    char ruri[300], from[300], to[300], contact[260], exp[16], route[300];
    snprintf(ruri, sizeof ruri, "sip:%s:%d", r->server, r->port);
    const char *domain = r->hostname ? r->hostname : r->server;
    snprintf(from, sizeof from, "<sip:%s@%s>;tag=%s", r->username, domain, r->from_tag);
    snprintf(to, sizeof to, "<sip:%s@%s>", r->username, domain);
    snprintf(contact, sizeof contact, "<%s>", r->contact);
    snprintf(exp, sizeof exp, "%d", expires);
    if (r->proxy)
        snprintf(route, sizeof route, "%s%s", strncmp(r->proxy, "sip:", 4) ? "sip:" : "",
                 r->proxy);
    int privacy = effective_privacy(r);
    const char *privacy_str =
        privacy == PRIVACY_ID ? "id" : privacy == PRIVACY_NONE ? "none" : NULL;

    r->requested = expires;
    uint32_t cseq = next_cseq(r);
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sip_cseq_t *cs = sip_cseq_create(home, cseq, SIP_METHOD_REGISTER);
    r->in_create = true;
    r->create_status = 0;
    nta_outgoing_t *orq = nta_outgoing_tcreate(
        s->client_leg, on_response, r, r->proxy ? URL_STRING_MAKE(route) : NULL,
        SIP_METHOD_REGISTER, URL_STRING_MAKE(ruri), SIPTAG_FROM_STR(from), SIPTAG_TO_STR(to),
        SIPTAG_CALL_ID_STR(r->call_id), SIPTAG_CSEQ(cs), SIPTAG_CONTACT_STR(contact),
        SIPTAG_EXPIRES_STR(exp), TAG_IF(r->user_agent, SIPTAG_USER_AGENT_STR(r->user_agent)),
        TAG_IF(privacy_str, SIPTAG_PRIVACY_STR(privacy_str)),
        TAG_IF(auth_value && auth_status == 401, SIPTAG_AUTHORIZATION_STR(auth_value)),
        TAG_IF(auth_value && auth_status == 407, SIPTAG_PROXY_AUTHORIZATION_STR(auth_value)),
        TAG_END());
    r->in_create = false;
    su_home_deinit(home);
    if (!orq || r->create_status) {
        set_error(r, "cannot send REGISTER to %.100s (%d)", ruri, r->create_status);
        return false;
    }
    r->orq = orq;
    trace_msg(r, "sends", orq, false);
    /* Watchdog: nta's timer F is 64 * T1. */
    arm(r->timer, 64.0 * s->t1_ms / 1000.0 + WATCHDOG_SLACK);
    r->next_refresh = 0;
    return true;
}

/* Send, and on failure count it as a timeout and schedule the retry. */
static void send_or_fail(struct outreg *r, int expires, int auth_status, const char *auth)
{
    if (!send_register_auth(r, expires, auth_status, auth))
        fail(r, OUTREG_TIMEOUT, 503, "%s", r->last_error);
}

static bool send_register(struct outreg *r, int expires)
{
    r->auth_tries = 0;
    return send_register_auth(r, expires, 0, NULL);
}

/* Digest credentials for a REGISTER answering challenge `c`. */
static bool authorize(struct outreg *r, const struct digest_challenge *c, char *value,
                      size_t len)
{
    char uri[300], cnonce[17];
    snprintf(uri, sizeof uri, "sip:%s:%d", r->server, r->port);
    random_hex(cnonce, 8);
    const char *user = r->auth_username ? r->auth_username : r->username;
    return digest_authorization(c, user, r->password, "REGISTER", uri, ++r->nc, cnonce, value,
                                len) > 0;
}

/* Room reserved for a challenge when an entry is created. Long-lived
 * allocations made in the middle of a start-up burst (thousands of
 * transactions' messages come and go around them) pin heap pages for good;
 * made up front, they sit together. */
#define AUTH_CACHE_RESERVE 192

static struct auth_cache *auth_cache_new(size_t capacity)
{
    struct auth_cache *ac = malloc(sizeof *ac + capacity);
    if (ac) {
        ac->status = 0;
        ac->capacity = capacity;
    }
    return ac;
}

static void cache_challenge(struct outreg *r, int status, const struct digest_challenge *c)
{
    size_t a = strlen(c->realm) + 1, b = strlen(c->nonce) + 1,
           o = c->opaque ? strlen(c->opaque) + 1 : 0;
    struct auth_cache *ac = r->auth;
    if (!ac || ac->capacity < a + b + o) {
        free(ac);
        ac = r->auth = auth_cache_new(a + b + o);
        if (!ac)
            return;
    }
    ac->status = status;
    ac->alg = c->alg;
    ac->qop_auth = c->qop_auth;
    memcpy(ac->strings, c->realm, a);
    memcpy(ac->strings + a, c->nonce, b);
    ac->realm = ac->strings;
    ac->nonce = ac->strings + a;
    ac->opaque = NULL;
    if (o) {
        memcpy(ac->strings + a + b, c->opaque, o);
        ac->opaque = ac->strings + a + b;
    }
}

/* Credentials from the cached challenge, if there is one. */
static bool authorize_cached(struct outreg *r, char *value, size_t len)
{
    if (!r->auth || !r->auth->status)
        return false;
    struct digest_challenge c = {.realm = r->auth->realm,
                                 .nonce = r->auth->nonce,
                                 .opaque = r->auth->opaque,
                                 .alg = r->auth->alg,
                                 .qop_auth = r->auth->qop_auth};
    return authorize(r, &c, value, len);
}

static void start_registering(struct outreg *r)
{
    if (r->orq)
        return; /* one in flight already; its answer decides */
    event_del(r->timer);
    if (r->state != OUTREG_ACTIVE)
        set_state(r, OUTREG_REGISTERING);
    compute_contact(r);
    r->auth_tries = 0;
    char value[2048];
    if (authorize_cached(r, value, sizeof value)) {
        /* Not an answer to a challenge: a 401 to it is answered once. */
        send_or_fail(r, requested_expires(r), r->auth->status, value);
        return;
    }
    send_or_fail(r, requested_expires(r), 0, NULL);
}

static void schedule_retry(struct outreg *r)
{
    int delay = effective_retry_delay(r);
    r->next_refresh = time(NULL) + delay;
    arm(r->timer, delay);
    log_info("outreg", "%s: retrying in %d s", r->name, delay);
}

static void fail(struct outreg *r, enum outreg_state s, int status, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    set_str(&r->last_error, msg);
    r->status = status;
    r->failures++;
    r->granted = 0;
    event_del(r->expiry);
    log_warn("outreg", "%s: %s", r->name, outreg_last_error(r));
    set_state(r, s);
    schedule_retry(r);
}

/* ---- Responses ------------------------------------------------------------ */

/* The expiry the carrier granted: our Contact's expires parameter first,
 * then the Expires header, then what we asked for. */
static int granted_expires(struct outreg *r, sip_t const *sip)
{
    for (sip_contact_t const *m = sip->sip_contact; m; m = m->m_next) {
        if (!m->m_expires)
            continue;
        char uri[256];
        url_e(uri, sizeof uri, m->m_url);
        if ((r->contact && strstr(uri, r->contact)) || !sip->sip_contact->m_next)
            return atoi(m->m_expires);
    }
    if (sip->sip_expires)
        return (int)sip->sip_expires->ex_delta;
    return r->requested;
}

/* Dynamic mode: the address the carrier saw us at, from the top Via. */
static bool learn_public_address(struct outreg *r, sip_t const *sip)
{
    if (r->mode != REG_MODE_DYNAMIC || !sip->sip_via)
        return false;
    sip_via_t const *v = sip->sip_via;
    const char *host = v->v_received ? v->v_received : v->v_host;
    const char *port = v->v_rport && *v->v_rport ? v->v_rport : v->v_port;
    if (!host)
        return false;
    char public_address[80];
    snprintf(public_address, sizeof public_address, "%s:%s", host, port ? port : "5060");
    if (r->public_address && strcmp(public_address, r->public_address) == 0)
        return false;
    set_str(&r->public_address, public_address);
    char before[300];
    snprintf(before, sizeof before, "%s", r->contact ? r->contact : "");
    compute_contact(r);
    if (strcmp(before, r->contact) == 0)
        return false;
    log_info("outreg", "%s: public address is %s: re-registering with Contact %s", r->name,
             r->public_address, r->contact);
    return true;
}

static void on_registered(struct outreg *r, sip_t const *sip)
{
    if (learn_public_address(r, sip)) {
        r->auth_tries = 0;
        send_or_fail(r, requested_expires(r), 0, NULL);
        return;
    }
    int granted = granted_expires(r, sip);
    if (granted <= 0) {
        fail(r, OUTREG_FAILED, 200, "registrar granted no expiry");
        return;
    }
    r->granted = granted;
    r->status = 200;
    r->failures = 0;
    set_str(&r->last_error, NULL);
    time_t now = time(NULL);
    r->expires_at = now + granted;
    /* Refresh half-way: a lost refresh still leaves time for another. */
    double half = granted / 2.0;
    r->next_refresh = now + (time_t)half;
    arm(r->timer, half);
    arm(r->expiry, granted);
    set_state(r, OUTREG_ACTIVE);
}

static void on_challenge(struct outreg *r, int status, sip_t const *sip)
{
    msg_auth_t const *ch = status == 401 ? sip->sip_www_authenticate : sip->sip_proxy_authenticate;
    /* RFC 8760: the server may offer several algorithms; take the strongest
     * we support. */
    struct digest_challenge best, c;
    bool have = false;
    for (; ch; ch = ch->au_next) {
        if (!ch->au_scheme || strcasecmp(ch->au_scheme, "Digest") != 0)
            continue;
        if (digest_challenge_parse(&c, ch->au_params) < 0 || c.alg == DIGEST_UNSUPPORTED)
            continue;
        if (!have || c.alg == DIGEST_SHA256) {
            best = c;
            have = true;
        }
    }
    if (!have) {
        fail(r, OUTREG_FAILED, status, "%d without a Digest challenge we support", status);
        return;
    }
    if (r->auth_tries > 0 && !best.stale) {
        /* We answered a challenge and were challenged again: the
         * credentials are wrong. Retrying now would be a storm. */
        fail(r, OUTREG_FAILED, status, "authentication failed (%d after credentials)", status);
        return;
    }
    char value[2048];
    r->nc = 0; /* a new nonce counts from 1 */
    if (!authorize(r, &best, value, sizeof value)) {
        fail(r, OUTREG_FAILED, status, "cannot answer the %s challenge",
             digest_alg_name(best.alg));
        return;
    }
    cache_challenge(r, status, &best);
    r->auth_tries++;
    send_or_fail(r, r->requested, status, value);
}

static void leaving_done(struct outreg *r);

static void on_unregistered(struct outreg *r, int status)
{
    r->unregistering = false;
    r->granted = 0;
    r->status = status;
    event_del(r->expiry);
    log_info("outreg", "%s: unregistered (%d)", r->name, status);
    struct outreg_set *s = r->set;
    if (s->shutdown_done && s->shutdown_pending > 0 && --s->shutdown_pending == 0) {
        void (*done)(void *) = s->shutdown_done;
        s->shutdown_done = NULL;
        done(s->shutdown_arg);
        return;
    }
    if (r->leaving) {
        leaving_done(r);
        return;
    }
    set_state(r, OUTREG_DISABLED);
}

static int on_response(struct outreg *r, nta_outgoing_t *orq, sip_t const *sip)
{
    int status = sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (status < 200)
        return 0;
    if (r->in_create) {
        /* Failed before nta_outgoing_tcreate() even returned: the sender
         * sees create_status and handles it there. */
        r->create_status = status;
        nta_outgoing_destroy(orq);
        return 0;
    }
    trace_msg(r, "receives", orq, true);
    bool internal = sip == NULL || nta_sip_is_internal(sip);
    r->orq = NULL;
    event_del(r->timer);
    nta_outgoing_destroy(orq);

    if (r->unregistering) {
        if ((status == 401 || status == 407) && r->auth_tries == 0 && sip) {
            /* Answer the challenge once, still unregistering. */
            msg_auth_t const *ch =
                status == 401 ? sip->sip_www_authenticate : sip->sip_proxy_authenticate;
            struct digest_challenge c;
            char value[2048];
            if (ch && digest_challenge_parse(&c, ch->au_params) == 0 &&
                c.alg != DIGEST_UNSUPPORTED && (r->nc = 0, authorize(r, &c, value, sizeof value))) {
                r->auth_tries++;
                if (send_register_auth(r, 0, status, value))
                    return 0;
            }
        }
        on_unregistered(r, status);
        return 0;
    }

    if (status >= 200 && status < 300) {
        on_registered(r, sip);
    } else if ((status == 401 || status == 407) && !internal) {
        on_challenge(r, status, sip);
    } else if (status == 423 && sip && sip->sip_min_expires && !internal) {
        int min = (int)sip->sip_min_expires->me_delta;
        if (min <= r->requested || min > 86400) {
            fail(r, OUTREG_FAILED, 423, "423 with an unusable Min-Expires %d", min);
            return 0;
        }
        log_info("outreg", "%s: 423, registering again with Min-Expires %d", r->name, min);
        r->auth_tries = 0;
        char value[2048];
        if (authorize_cached(r, value, sizeof value))
            send_or_fail(r, min, r->auth->status, value);
        else
            send_or_fail(r, min, 0, NULL);
    } else if (internal) {
        fail(r, OUTREG_TIMEOUT, status, "no answer from %s:%d (%d %s)", r->server, r->port,
             status, sip && sip->sip_status ? sip->sip_status->st_phrase : "");
    } else {
        fail(r, OUTREG_FAILED, status, "%d %s", status,
             sip->sip_status->st_phrase ? sip->sip_status->st_phrase : "");
    }
    return 0;
}

/* ---- Timers ------------------------------------------------------------- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct outreg *r = arg;
    (void)fd;
    (void)what;
    if (r->orq) {
        /* The watchdog: nta never answered. Should not happen; if it does,
         * it must not leave the entry stuck in "registering". */
        nta_outgoing_destroy(r->orq);
        r->orq = NULL;
        if (r->unregistering)
            on_unregistered(r, 408);
        else
            fail(r, OUTREG_TIMEOUT, 408, "REGISTER unanswered (watchdog)");
        return;
    }
    if (r->state != OUTREG_DISABLED)
        start_registering(r);
    kick(r->set);
}

static void on_expiry(evutil_socket_t fd, short what, void *arg)
{
    struct outreg *r = arg;
    (void)fd;
    (void)what;
    if (r->state == OUTREG_ACTIVE) {
        r->granted = 0;
        set_error(r, "expired before a refresh succeeded");
        set_state(r, OUTREG_EXPIRED);
    }
}

/* ---- Entries ------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void copy_def(struct outreg *r, const struct registration_def *d)
{
    char **strs[] = {&r->server, &r->username, &r->password, &r->auth_username,
                     &r->hostname, &r->proxy, &r->local_ip, &r->user_agent};
    const char *vals[] = {d->server, d->username, d->password, d->auth_username,
                          d->hostname, d->proxy, d->local_ip, d->user_agent};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        free(*strs[i]);
        *strs[i] = dup_or_null(vals[i]);
    }
    r->port = d->port;
    r->expires_cfg = d->expires;
    r->retry_delay_cfg = d->retry_delay;
    r->hook_ref = d->retry_delay_hook.ref;
    r->mode = d->mode;
    r->privacy = d->privacy;
    r->enabled_cfg = d->enabled;
}

static void entry_free(struct outreg *r)
{
    if (!r)
        return;
    if (r->orq)
        nta_outgoing_destroy(r->orq);
    if (r->timer)
        event_free(r->timer);
    if (r->expiry)
        event_free(r->expiry);
    free(r->auth);
    char *strs[] = {r->name,     r->server,   r->username,    r->password,
                    r->auth_username, r->hostname, r->proxy, r->local_ip,
                    r->user_agent, r->contact, r->public_address, r->last_error};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        free(strs[i]);
    free(r);
}

static struct outreg *entry_new(struct outreg_set *s, const struct registration_def *d)
{
    struct outreg *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->set = s;
    r->name = strdup(d->head.name);
    r->timer = evtimer_new(s->base, on_timer, r);
    r->expiry = evtimer_new(s->base, on_expiry, r);
    if (!r->name || !r->timer || !r->expiry) {
        entry_free(r);
        return NULL;
    }
    copy_def(r, d);
    load_ids(r);
    compute_contact(r);
    r->auth = auth_cache_new(AUTH_CACHE_RESERVE);
    r->state = OUTREG_REGISTERING;
    return r;
}

/* Send the un-REGISTER if there is anything to remove. Returns true when one
 * went out (the answer finishes the job). */
static bool unregister(struct outreg *r)
{
    if (r->orq) {
        nta_outgoing_destroy(r->orq);
        r->orq = NULL;
    }
    event_del(r->timer);
    event_del(r->expiry);
    r->next_refresh = 0;
    bool registered = r->state == OUTREG_ACTIVE || r->state == OUTREG_EXPIRED ||
                      (r->state == OUTREG_REGISTERING && r->cseq > 0);
    if (!registered || !r->set->send_unregister)
        return false;
    r->unregistering = true;
    r->auth_tries = 0;
    char value[2048];
    if (authorize_cached(r, value, sizeof value)) {
        if (send_register_auth(r, 0, r->auth->status, value))
            return true;
    } else if (send_register(r, 0)) {
        return true;
    }
    r->unregistering = false;
    log_warn("outreg", "%s: %s", r->name, outreg_last_error(r));
    return false;
}

static void leaving_done(struct outreg *r)
{
    struct outreg_set *s = r->set;
    for (size_t i = 0; i < s->nleaving; i++) {
        if (s->leaving[i] == r) {
            s->leaving[i] = s->leaving[--s->nleaving];
            break;
        }
    }
    entry_free(r);
}

static void entry_remove(struct outreg_set *s, struct outreg *r)
{
    if (s->store)
        store_del(s->store, STORE_OUTREG, r->name, strlen(r->name));
    r->leaving = true;
    struct outreg **grown = realloc(s->leaving, (s->nleaving + 1) * sizeof *grown);
    if (grown)
        s->leaving = grown;
    /* Unregister first: it looks at the state to see if there is anything
     * to remove at the carrier. */
    bool sent = grown && unregister(r);
    if (r->state != OUTREG_DISABLED)
        set_state(r, OUTREG_DISABLED);
    if (sent) {
        s->leaving[s->nleaving++] = r;
        return;
    }
    entry_free(r);
}

/* ---- The set -------------------------------------------------------------- */

int outreg_set_create(struct outreg_set **sp, nta_agent_t *nta, nta_leg_t *client_leg,
                      su_root_t *root, struct event_base *base, struct store *store)
{
    struct outreg_set *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->nta = nta;
    s->client_leg = client_leg;
    s->root = root;
    s->base = base;
    s->store = store;
    s->default_expires = CONFIG_AUTO;
    s->default_retry_delay = 60;
    s->send_unregister = true;
    s->t1_ms = 500;
    *sp = s;
    return 0;
}

void outreg_set_destroy(struct outreg_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        entry_free(s->v[i]);
    for (size_t i = 0; i < s->nleaving; i++)
        entry_free(s->leaving[i]);
    free(s->v);
    free(s->leaving);
    free(s);
}

void outreg_set_retry_hook(struct outreg_set *s, outreg_retry_h *h, void *arg)
{
    s->retry_h = h;
    s->retry_arg = arg;
}

void outreg_set_observer(struct outreg_set *s, outreg_state_h *h, void *arg)
{
    s->state_h = h;
    s->state_arg = arg;
}

static int def_by_name(const void *a, const void *b)
{
    return strcmp((*(const struct registration_def *const *)a)->head.name,
                  (*(const struct registration_def *const *)b)->head.name);
}

static int name_cmp(const void *name, const void *entry)
{
    return strcmp(name, (*(struct outreg *const *)entry)->name);
}

struct outreg *outreg_find(struct outreg_set *s, const char *name)
{
    struct outreg **hit = s->n ? bsearch(name, s->v, s->n, sizeof *s->v, name_cmp) : NULL;
    return hit ? *hit : NULL;
}

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Did anything that goes on the wire change? (A new retry function alone
 * does not warrant a new REGISTER.) */
static bool wire_changed(const struct outreg *r, const struct registration_def *d)
{
    return !str_eq(r->server, d->server) || !str_eq(r->username, d->username) ||
           !str_eq(r->password, d->password) || !str_eq(r->auth_username, d->auth_username) ||
           !str_eq(r->hostname, d->hostname) || !str_eq(r->proxy, d->proxy) ||
           !str_eq(r->local_ip, d->local_ip) || !str_eq(r->user_agent, d->user_agent) ||
           r->port != d->port || r->expires_cfg != d->expires || r->mode != d->mode ||
           r->privacy != d->privacy || r->enabled_cfg != d->enabled;
}

void outreg_set_apply(struct outreg_set *s, const struct config *cfg)
{
    const struct switch_def *sw = config_switch(cfg);
    int privacy_before = s->default_privacy, expires_before = s->default_expires;
    s->default_expires = sw->sip.user_agent_expire;
    s->default_retry_delay = sw->sip.user_agent_retry_delay;
    s->default_privacy = sw->sip.user_agent_privacy;
    s->send_unregister = sw->sip.user_agent_send_unregister;
    s->t1_ms = (unsigned)sw->sip.resend_interval;
    bool defaults_changed =
        privacy_before != s->default_privacy || expires_before != s->default_expires;

    size_t n = config_count(cfg, KIND_REGISTRATION);
    const struct registration_def **defs = calloc(n ? n : 1, sizeof *defs);
    struct outreg **next = calloc(n ? n : 1, sizeof *next);
    if (!defs || !next) {
        log_error("outreg", "out of memory applying the policy");
        free(defs);
        free(next);
        return;
    }
    for (size_t i = 0; i < n; i++)
        defs[i] = (const void *)config_at(cfg, KIND_REGISTRATION, i);
    qsort(defs, n, sizeof *defs, def_by_name);

    /* Merge the two sorted lists. */
    size_t i = 0, j = 0, m = 0, added = 0;
    struct outreg **fresh = calloc(n ? n : 1, sizeof *fresh);
    if (!fresh) {
        log_error("outreg", "out of memory applying the policy");
        free(defs);
        free(next);
        return;
    }
    while (i < s->n || j < n) {
        int c = i == s->n ? 1 : j == n ? -1 : strcmp(s->v[i]->name, defs[j]->head.name);
        if (c < 0) { /* removed */
            entry_remove(s, s->v[i++]);
            continue;
        }
        if (c > 0) { /* added */
            struct outreg *r = entry_new(s, defs[j++]);
            if (!r) {
                log_error("outreg", "out of memory adding %s", defs[j - 1]->head.name);
                continue;
            }
            next[m++] = r;
            fresh[added++] = r;
            continue;
        }
        struct outreg *r = s->v[i++];
        const struct registration_def *d = defs[j++];
        bool changed = wire_changed(r, d);
        if (changed) {
            if (r->auth)
                r->auth->status = 0; /* the credentials may have changed */
        }
        copy_def(r, d); /* also takes the new runtime's hook reference */
        next[m++] = r;
        if (!r->enabled_cfg) {
            if (r->state != OUTREG_DISABLED) {
                unregister(r);
                set_state(r, OUTREG_DISABLED);
            }
        } else if (changed || (defaults_changed && r->state != OUTREG_DISABLED)) {
            log_info("outreg", "%s: changed, registering again", r->name);
            r->disabled_op = false;
            start_registering(r);
        }
    }
    free(s->v);
    s->v = next;
    s->n = m;
    s->cap = n;
    free(defs);

    /* Start the new ones, spread over a short random window. */
    unsigned window_ms = (unsigned)added * SPREAD_PER_ENTRY_MS;
    if (window_ms > SPREAD_MAX_MS)
        window_ms = SPREAD_MAX_MS;
    for (size_t k = 0; k < added; k++) {
        struct outreg *r = fresh[k];
        if (!r->enabled_cfg) {
            r->state = OUTREG_DISABLED;
            continue;
        }
        double delay = window_ms ? (double)(random() % (window_ms + 1)) / 1000.0 : 0;
        r->next_refresh = time(NULL) + (time_t)delay;
        arm(r->timer, delay);
    }
    free(fresh);
    kick(s);
}

void outreg_set_shutdown(struct outreg_set *s, void (*done)(void *arg), void *arg)
{
    s->shutdown_done = done;
    s->shutdown_arg = arg;
    s->shutdown_pending = 0;
    for (size_t i = 0; i < s->n; i++)
        if (unregister(s->v[i]))
            s->shutdown_pending++;
    for (size_t i = 0; i < s->nleaving; i++)
        if (s->leaving[i]->unregistering)
            s->shutdown_pending++;
    if (s->shutdown_pending == 0) {
        s->shutdown_done = NULL;
        done(arg);
    } else {
        log_info("outreg", "unregistering %u entries", s->shutdown_pending);
    }
    kick(s);
}

size_t outreg_set_count(const struct outreg_set *s)
{
    return s->n;
}

struct outreg *outreg_set_at(struct outreg_set *s, size_t i)
{
    return i < s->n ? s->v[i] : NULL;
}

/* ---- Accessors and operator actions ----------------------------------------- */

const char *outreg_name(const struct outreg *r) { return r->name; }
enum outreg_state outreg_state(const struct outreg *r) { return r->state; }
int outreg_status(const struct outreg *r) { return r->status; }
int outreg_expires(const struct outreg *r) { return r->granted; }
unsigned outreg_failures(const struct outreg *r) { return r->failures; }
const char *outreg_contact(const struct outreg *r) { return r->contact ? r->contact : ""; }
time_t outreg_next_refresh(const struct outreg *r) { return r->next_refresh; }
const char *outreg_public_address(const struct outreg *r)
{
    return r->public_address ? r->public_address : "";
}
const char *outreg_last_error(const struct outreg *r)
{
    return r->last_error ? r->last_error : "";
}
const char *outreg_call_id(const struct outreg *r) { return r->call_id; }
uint32_t outreg_cseq(const struct outreg *r) { return r->cseq; }
const char *outreg_server(const struct outreg *r) { return r->server; }
const char *outreg_username(const struct outreg *r) { return r->username; }
int outreg_privacy(const struct outreg *r) { return effective_privacy(r); }
bool outreg_tracing(const struct outreg *r) { return r->trace; }

void outreg_refresh(struct outreg *r)
{
    if (r->state == OUTREG_DISABLED || r->unregistering || r->leaving)
        return;
    start_registering(r);
    kick(r->set);
}

void outreg_disable(struct outreg *r)
{
    if (r->state == OUTREG_DISABLED || r->leaving)
        return;
    r->disabled_op = true;
    unregister(r);
    set_state(r, OUTREG_DISABLED);
    kick(r->set);
}

void outreg_enable(struct outreg *r)
{
    if (r->state != OUTREG_DISABLED || r->leaving || !r->enabled_cfg)
        return;
    r->disabled_op = false;
    r->failures = 0;
    start_registering(r);
    if (r->state == OUTREG_DISABLED)
        set_state(r, OUTREG_REGISTERING);
    kick(r->set);
}

void outreg_trace(struct outreg *r, bool on)
{
    r->trace = on;
    log_info("outreg", "%s: trace %s", r->name, on ? "on" : "off");
}
