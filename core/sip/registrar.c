/* The endpoint registrar. See registrar.h.
 *
 * This file handles REGISTER and holds the public API; the rest lives in
 * the registrar's modules, each with its header:
 *   account.c    accounts (sorted array, rebuilt by apply) and their digest
 *                authentication: challenges, nonces, the secret
 *   binding.c    bindings, the RFC 3261 10.3 rules, the expiry heap and the
 *                store records; each account owns the list of its own
 *   guard.c      failure counters and suspensions, by account name and by
 *                source IP (unknown names too: answers must not depend on
 *                whether an account exists), and their store records
 *   keepalive.c  NAT keepalive rounds, OPTIONS and CRLF pings, misses
 *   regcommit.c  the group commit and the answers waiting for it; the
 *                answers sent without a transaction, kept for
 *                retransmissions
 * and here:
 *   events       REGISTERs waiting for the policy hook's verdict
 *   passed       the REGISTER the stateless prefilter let through */
#include "sip/registrar.h"
#include "config.h"
#include "log.h"
#include "sip/account.h"
#include "sip/binding.h"
#include "sip/guard.h"
#include "sip/keepalive.h"
#include "sip/rawreply.h"
#include "sip/regcommit.h"
#include "sip/registrar_internal.h"
#include "sip/transport.h"
#include "store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <sofia-sip/msg.h>
#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta_stateless.h>
#include <sofia-sip/nta_tport.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/tport.h>
#include <sofia-sip/url.h>

#define UA_MAX 64
/* What a REGISTER asks, worked out once before the hook and the bindings. */
struct reqinfo {
    char account[128];
    char ip[48];
    char source[64];
    char user_agent[UA_MAX + 1];
    char call_id[128];
    enum binding_transport transport;
    struct binding_request req;
};

struct registrar_event {
    struct registrar *r; /* NULL once orphaned by registrar_destroy() */
    struct registrar_event *prev, *next;
    nta_incoming_t *irq; /* NULL once answered (timeout) */
    const sip_t *sip;
    struct event *timeout;
    struct reqinfo info;
};

struct registrar {
    nta_agent_t *nta;
    su_root_t *root;
    struct event_base *base;
    struct store *store;
    struct accounts *accounts;
    struct binding_set *set;
    struct keepalive *ka;
    struct guard *guard;
    bool loaded;

    struct regcommit *commit; /* answers waiting for the store's commit */

    registrar_hook_h *hook;
    void *hook_arg;
    struct registrar_event *events;
    uint64_t accepted; /* REGISTERs answered 200, for rates */

    /* The REGISTER the prefilter let through, for the handler that the
     * agent calls right after it with the same sip. */
    struct {
        const sip_t *sip;
        struct reqinfo *info;
        struct account *acc;
    } passed;
};

/* ---- Shared with the modules (registrar_internal.h) ------------------------------ */

void registrar_answer(const struct registrar_reply *to, int status, const char *phrase,
                      tag_type_t tag, tag_value_t value, ...)
{
    ta_list ta;
    ta_start(ta, tag, value);
    if (to->irq)
        nta_incoming_treply(to->irq, status, phrase, ta_tags(ta));
    else
        nta_msg_treply(to->nta, to->msg, status, phrase, ta_tags(ta));
    ta_end(ta);
}

void registrar_answer_text(const struct registrar_reply *to, int status,
                           const char *phrase, const char *headers)
{
    if (!to->irq) {
        rawreply_answer(to->nta, to->msg, sip_object(to->msg), status, phrase, headers);
        return;
    }
    char hdr[2048];
    size_t n = strlen(headers);
    if (n >= sizeof hdr)
        n = 0;
    memcpy(hdr, headers, n);
    while (n >= 2 && hdr[n - 2] == '\r' && hdr[n - 1] == '\n')
        n -= 2;
    hdr[n] = '\0';
    nta_incoming_treply(to->irq, status, phrase, TAG_IF(n, SIPTAG_HEADER_STR(hdr)),
                        TAG_END());
}

struct load_walk {
    registrar_load_h *fn;
    void *arg;
    uint8_t (*dead)[STORE_MAX_KEY + 2]; /* keys to delete: 2-byte length + key */
    size_t ndead, capdead;
    size_t loaded;
};

static void load_dead(struct load_walk *w, const void *key, size_t klen)
{
    if (w->ndead == w->capdead) {
        size_t cap = w->capdead ? w->capdead * 2 : 64;
        void *grown = realloc(w->dead, cap * sizeof *w->dead);
        if (!grown)
            return;
        w->dead = grown;
        w->capdead = cap;
    }
    w->dead[w->ndead][0] = (uint8_t)(klen >> 8);
    w->dead[w->ndead][1] = (uint8_t)klen;
    memcpy(w->dead[w->ndead] + 2, key, klen);
    w->ndead++;
}

static int load_visit(const void *key, size_t klen, uint8_t version, const void *val,
                      size_t vlen, void *arg)
{
    struct load_walk *w = arg;
    enum registrar_load verdict = w->fn(key, klen, version, val, vlen, w->arg);
    if (verdict == REGISTRAR_LOAD_DROP)
        load_dead(w, key, klen);
    else if (verdict == REGISTRAR_LOAD_COUNTED)
        w->loaded++;
    return 0;
}

void registrar_store_load(struct store *s, enum store_db db, registrar_load_h *fn,
                          void *arg)
{
    struct load_walk w = {.fn = fn, .arg = arg};
    store_foreach(s, db, load_visit, &w);
    for (size_t i = 0; i < w.ndead; i++)
        store_del(s, db, w.dead[i] + 2, (size_t)w.dead[i][0] << 8 | w.dead[i][1]);
    if (w.ndead || w.loaded)
        log_info("registrar", "%s: %zu loaded, %zu expired or unknown dropped",
                 store_db_name(db), w.loaded, w.ndead);
    free(w.dead);
}

/* ---- The peer -----------------------------------------------------------------------
 */

/* Decimal digits of v at out, not terminated; their count. */
static size_t uint_text(unsigned v, char *out)
{
    char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* A dotted quad into out[16] (what inet_ntop() writes, without its
 * sprintf); its length. */
static size_t ip4_text(const unsigned char a[4], char *out)
{
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        if (i)
            out[n++] = '.';
        n += uint_text(a[i], out + n);
    }
    out[n] = '\0';
    return n;
}

/* The peer's address: "ip" and "ip:port" (IPv6 in brackets there), and the
 * transport. Returns 0 or -1. */
static int source_of(msg_t *msg, char *ip, size_t iplen, char *source, size_t srclen,
                     enum binding_transport *transport)
{
    if (!msg)
        return -1;
    su_addrinfo_t *ai = msg_addrinfo(msg);
    int rc = -1;
    if (ai && ai->ai_addr) {
        const struct sockaddr *sa = (const struct sockaddr *)ai->ai_addr;
        unsigned port = 0;
        if (sa->sa_family == AF_INET && iplen >= 16 && srclen >= 22) {
            const struct sockaddr_in *in = (const void *)sa;
            size_t n = ip4_text((const unsigned char *)&in->sin_addr, ip);
            port = ntohs(in->sin_port);
            memcpy(source, ip, n);
            source[n++] = ':';
            n += uint_text(port, source + n);
            source[n] = '\0';
            rc = 0;
        } else if (sa->sa_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const void *)sa;
            inet_ntop(AF_INET6, &in6->sin6_addr, ip, (socklen_t)iplen);
            port = ntohs(in6->sin6_port);
            snprintf(source, srclen, "[%s]:%u", ip, port);
            rc = 0;
        }
        *transport = (enum binding_transport)transport_of_msg(msg);
    }
    return rc;
}

static void reply_once(nta_incoming_t *irq, int status, const char *phrase)
{
    nta_incoming_treply(irq, status, phrase, TAG_END());
}

/* Authenticate request `msg` (the transaction's copy, or the stateless
 * request itself), answering through `to` when it does not pass. */
static int authenticate(struct registrar *r, const struct registrar_reply *to, msg_t *msg,
                        const sip_t *sip, const char **account)
{
    char ip[48], source[64];
    enum binding_transport transport;
    *account = NULL;
    if (source_of(msg, ip, sizeof ip, source, sizeof source, &transport) < 0) {
        registrar_answer(to, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
        return 500;
    }
    struct account *acc;
    int status = accounts_authenticate(r->accounts, to, sip, ip, &acc);
    if (status == 0)
        *account = account_name(acc);
    return status;
}

int registrar_authenticate(struct registrar *r, nta_incoming_t *irq, const sip_t *sip,
                           const char **account)
{
    msg_t *msg = nta_incoming_getrequest(irq);
    const struct registrar_reply to = {.irq = irq};
    int status = authenticate(r, &to, msg, sip, account);
    msg_destroy(msg);
    return status;
}

int registrar_authenticate_msg(struct registrar *r, msg_t *msg, const sip_t *sip,
                               const char **account)
{
    const struct registrar_reply to = {.nta = r->nta, .msg = msg};
    return authenticate(r, &to, msg, sip, account);
}

/* ---- REGISTER -------------------------------------------------------------------- */

/* After authentication (and the hook): check order, change, queue the 200. */
static void finish_register(struct registrar *r, nta_incoming_t *irq, const sip_t *sip,
                            struct account *acc, const struct reqinfo *info)
{
    struct binding_aor *aor = account_aor(acc);
    const char *call_id = sip->sip_call_id->i_id;
    uint32_t cseq = sip->sip_cseq->cs_seq;
    if (binding_out_of_order(aor, &info->req, call_id, cseq)) {
        reply_once(irq, 500, "Out Of Order CSeq");
        nta_incoming_destroy(irq);
        return;
    }
    tport_t *tp = nta_incoming_transport(r->nta, irq, NULL);
    const struct binding_origin origin = {.call_id = call_id,
                                          .cseq = cseq,
                                          .source = info->source,
                                          .user_agent = info->user_agent,
                                          .transport = info->transport,
                                          .tp = tp};
    binding_update(aor, &info->req, &origin, registrar_now_s());
    tport_unref(tp);
    r->accepted++;
    regcommit_queue_irq(r->commit, irq, binding_contacts_header(aor, registrar_now_s()));
}

static void on_hook_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct registrar_event *ev = arg;
    (void)fd;
    (void)what;
    if (!ev->irq)
        return;
    log_error("registrar", "%s: on_register did not decide within %d s: answering 500",
              ev->info.account, REGISTRAR_HOOK_TIMEOUT);
    reply_once(ev->irq, 500, "Policy Timeout");
    nta_incoming_destroy(ev->irq);
    ev->irq = NULL;
    registrar_kick(ev->r->root);
}

static void event_unlink(struct registrar *r, struct registrar_event *ev)
{
    if (ev->prev)
        ev->prev->next = ev->next;
    else
        r->events = ev->next;
    if (ev->next)
        ev->next->prev = ev->prev;
    ev->prev = ev->next = NULL;
}

/* Hand the registration to the policy hook. True when it took it. */
static bool hook_wants(struct registrar *r, const struct reqinfo *info);

static bool run_hook(struct registrar *r, nta_incoming_t *irq, const sip_t *sip,
                     const struct reqinfo *info)
{
    if (!hook_wants(r, info))
        return false;
    struct registrar_event *ev = calloc(1, sizeof *ev);
    if (!ev)
        return false;
    ev->r = r;
    ev->irq = irq;
    ev->sip = sip;
    ev->info = *info;
    ev->timeout = evtimer_new(r->base, on_hook_timeout, ev);
    if (!ev->timeout) {
        free(ev);
        return false;
    }
    ev->next = r->events;
    if (ev->next)
        ev->next->prev = ev;
    r->events = ev;
    registrar_arm_seconds(ev->timeout, REGISTRAR_HOOK_TIMEOUT);
    if (r->hook(ev, r->hook_arg))
        return true; /* ev may be gone already (decided at once) */
    event_unlink(r, ev);
    event_free(ev->timeout);
    free(ev);
    return false;
}

void registrar_event_done(struct registrar_event *ev, int status, const char *reason)
{
    struct registrar *r = ev->r;
    if (r)
        event_unlink(r, ev);
    if (ev->timeout)
        event_free(ev->timeout);
    if (!r || !ev->irq) {
        free(ev);
        return;
    }
    if (status >= 300 && status <= 699) {
        log_info("registrar", "%s: registration refused by the policy (%d)",
                 ev->info.account, status);
        const char *phrase = reason && *reason ? reason : sip_status_phrase(status);
        nta_incoming_treply(ev->irq, status, phrase ? phrase : "Refused", TAG_END());
        nta_incoming_destroy(ev->irq);
    } else {
        struct account *acc = accounts_find(r->accounts, ev->info.account);
        if (!acc) { /* removed by a reload while the hook ran */
            reply_once(ev->irq, SIP_403_FORBIDDEN);
            nta_incoming_destroy(ev->irq);
        } else {
            finish_register(r, ev->irq, ev->sip, acc, &ev->info);
        }
    }
    free(ev);
}

/* The Contacts and their expiry; answers 400 or 423 through `to`. */
static int parse_register(struct registrar *r, const struct registrar_reply *to,
                          const sip_t *sip, struct reqinfo *info)
{
    const char *phrase = NULL;
    int status = binding_parse(r->set, sip, info->ip, info->source, &info->req, &phrase);
    if (status == 423) {
        char min[16];
        snprintf(min, sizeof min, "%d", REGISTRAR_MIN_EXPIRES);
        registrar_answer(to, SIP_423_INTERVAL_TOO_BRIEF, SIPTAG_MIN_EXPIRES_STR(min),
                         TAG_END());
    } else if (status != 0) {
        registrar_answer(to, status, phrase, TAG_END());
    }
    return status;
}

/* Everything checked before a REGISTER may change bindings: the source,
 * the authentication, the AOR, the Contacts. Returns 0 with *accp and info
 * filled, or the status answered through `to` (stateless: msg and sip are
 * gone then). msg is the request, for its source address. */
static int check_register(struct registrar *r, const struct registrar_reply *to,
                          msg_t *msg, const sip_t *sip, struct reqinfo *info,
                          struct account **accp)
{
    if (source_of(msg, info->ip, sizeof info->ip, info->source, sizeof info->source,
                  &info->transport) < 0) {
        registrar_answer(to, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
        return 500;
    }
    struct account *acc;
    int status = accounts_authenticate(r->accounts, to, sip, info->ip, &acc);
    if (status != 0)
        return status;
    const char *name = account_name(acc);
    const char *to_user =
        sip->sip_to && sip->sip_to->a_url->url_user ? sip->sip_to->a_url->url_user : NULL;
    if (!to_user || strcmp(to_user, name) != 0) {
        log_info("registrar", "%s tried to register the AOR %.64s", name,
                 to_user ? to_user : "(none)");
        registrar_answer(to, 403, "Not Your Address Of Record", TAG_END());
        return 403;
    }
    snprintf(info->account, sizeof info->account, "%s", name);
    info->user_agent[0] = '\0';
    if (sip->sip_user_agent && sip->sip_user_agent->g_string)
        snprintf(info->user_agent, sizeof info->user_agent, "%s",
                 sip->sip_user_agent->g_string);
    snprintf(info->call_id, sizeof info->call_id, "%s", sip->sip_call_id->i_id);
    status = parse_register(r, to, sip, info);
    if (status != 0)
        return status;
    *accp = acc;
    return 0;
}

static void drop_passed(struct registrar *r)
{
    free(r->passed.info);
    r->passed.info = NULL;
    r->passed.sip = NULL;
    r->passed.acc = NULL;
}

/* Whether the policy hook wants to see this registration (it adds or
 * refreshes a binding, and a hook is defined). */
static bool hook_wants(struct registrar *r, const struct reqinfo *info)
{
    if (!r->hook)
        return false;
    bool adds = false;
    for (unsigned i = 0; i < info->req.n; i++)
        if (info->req.c[i].granted > 0)
            adds = true;
    return adds && r->hook(NULL, r->hook_arg);
}

/* An authenticated, well-formed REGISTER without a transaction: its
 * bindings changed and its answer queued for the commit. False (nothing
 * done) when its answer cannot be written as text: the transaction path
 * takes it then. */
static bool register_stateless(struct registrar *r, msg_t *msg, const sip_t *sip,
                               struct account *acc, const struct reqinfo *info,
                               uint64_t key)
{
    struct regcommit_answer *a = regcommit_answer_new(r->commit, msg, sip, key);
    if (!a)
        return false;
    struct binding_aor *aor = account_aor(acc);
    const char *call_id = sip->sip_call_id->i_id;
    uint32_t cseq = sip->sip_cseq->cs_seq;
    if (binding_out_of_order(aor, &info->req, call_id, cseq)) {
        regcommit_answer_now(r->commit, a, 500, "Out Of Order CSeq");
        msg_destroy(msg);
        return true;
    }
    long long now = registrar_now_s();
    const struct binding_origin origin = {.call_id = call_id,
                                          .cseq = cseq,
                                          .source = info->source,
                                          .user_agent = info->user_agent,
                                          .transport = info->transport,
                                          .tp = regcommit_answer_tport(a)};
    binding_update(aor, &info->req, &origin, now);
    r->accepted++;
    regcommit_answer_queue(r->commit, a, binding_contact_lines(aor, now));
    msg_destroy(msg);
    return true;
}

int registrar_prefilter_register(msg_t *msg, sip_t *sip, void *arg)
{
    struct registrar *r = arg;
    drop_passed(r);
    uint64_t key = 0;
    if (sip->sip_call_id && sip->sip_cseq) {
        key = regcommit_key(sip);
        if (regcommit_answered_before(r->commit, msg, sip, key))
            return 0;
    }
    struct reqinfo *info = malloc(sizeof *info);
    if (!info)
        return -1; /* the transaction path answers 500 */
    const struct registrar_reply to = {.nta = r->nta, .msg = msg};
    struct account *acc;
    if (check_register(r, &to, msg, sip, info, &acc) != 0) {
        free(info); /* answered statelessly: nothing kept */
        return 0;
    }
    /* Authenticated and well-formed: without a hook to ask, answered after
     * the commit without a transaction; retransmissions find the answer
     * cache. */
    if (key && !hook_wants(r, info) && register_stateless(r, msg, sip, acc, info, key)) {
        free(info);
        return 0;
    }
    /* Else the REGISTER becomes a transaction, given at once to
     * registrar_on_register() with this sip. */
    r->passed.sip = sip;
    r->passed.info = info;
    r->passed.acc = acc;
    return -1;
}

int registrar_on_register(nta_incoming_t *irq, const sip_t *sip, void *arg)
{
    struct registrar *r = arg;
    struct reqinfo *info;
    struct account *acc;
    if (r->passed.info && r->passed.sip == sip) {
        /* Checked by the prefilter a moment ago, in the same call from
         * the agent: nothing can have changed since. */
        info = r->passed.info;
        acc = r->passed.acc;
        r->passed.info = NULL;
        r->passed.sip = NULL;
        r->passed.acc = NULL;
    } else {
        /* No prefilter installed: every check answers in the transaction. */
        drop_passed(r);
        info = malloc(sizeof *info);
        if (!info) {
            reply_once(irq, SIP_500_INTERNAL_SERVER_ERROR);
            nta_incoming_destroy(irq);
            return 0;
        }
        const struct registrar_reply to = {.irq = irq};
        msg_t *msg = nta_incoming_getrequest(irq);
        int status = check_register(r, &to, msg, sip, info, &acc);
        msg_destroy(msg);
        if (status != 0) {
            nta_incoming_destroy(irq);
            free(info);
            return 0;
        }
    }
    if (!run_hook(r, irq, sip, info))
        finish_register(r, irq, sip, acc, info);
    free(info);
    return 0;
}

/* ---- Hook accessors -------------------------------------------------------------- */

void registrar_set_hook(struct registrar *r, registrar_hook_h *h, void *arg)
{
    r->hook = h;
    r->hook_arg = arg;
}

const char *registrar_event_account(const struct registrar_event *ev)
{
    return ev->info.account;
}
unsigned registrar_event_contacts(const struct registrar_event *ev)
{
    return ev->info.req.n;
}
const char *registrar_event_contact(const struct registrar_event *ev, unsigned i)
{
    return i < ev->info.req.n ? ev->info.req.c[i].uri : NULL;
}
int registrar_event_expires(const struct registrar_event *ev, unsigned i)
{
    return i < ev->info.req.n ? ev->info.req.c[i].granted : 0;
}
bool registrar_event_nat(const struct registrar_event *ev, unsigned i)
{
    return i < ev->info.req.n && ev->info.req.c[i].nat;
}
const char *registrar_event_source(const struct registrar_event *ev)
{
    return ev->info.source;
}
const char *registrar_event_transport(const struct registrar_event *ev)
{
    return binding_transport_name(ev->info.transport);
}
const char *registrar_event_user_agent(const struct registrar_event *ev)
{
    return ev->info.user_agent;
}
const char *registrar_event_call_id(const struct registrar_event *ev)
{
    return ev->info.call_id;
}

/* ---- Lifetime --------------------------------------------------------------------- */

int registrar_create(struct registrar **rp, nta_agent_t *nta, nta_leg_t *leg,
                     su_root_t *root, struct event_base *base, struct store *store)
{
    *rp = NULL;
    struct registrar *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->nta = nta;
    r->root = root;
    r->base = base;
    r->store = store;
    int rc = binding_set_create(&r->set, base, root, store);
    if (rc == 0)
        rc = keepalive_create(&r->ka, nta, leg, root, base, r->set);
    if (rc == 0) {
        binding_set_attach_keepalive(r->set, r->ka);
        rc = guard_create(&r->guard, base, store);
    }
    if (rc == 0)
        rc = accounts_create(&r->accounts, store, r->guard, r->set);
    if (rc == 0)
        rc = regcommit_create(&r->commit, nta, root, base, store);
    if (rc < 0) {
        registrar_destroy(r);
        return rc;
    }
    *rp = r;
    return 0;
}

void registrar_destroy(struct registrar *r)
{
    if (!r)
        return;
    regcommit_flush(r->commit);
    while (r->events) {
        struct registrar_event *ev = r->events;
        event_unlink(r, ev);
        if (ev->irq) {
            reply_once(ev->irq, SIP_503_SERVICE_UNAVAILABLE);
            nta_incoming_destroy(ev->irq);
            ev->irq = NULL;
        }
        event_free(ev->timeout);
        ev->timeout = NULL;
        ev->r = NULL; /* freed by registrar_event_done() */
    }
    accounts_destroy(r->accounts); /* their bindings leave the keepalive */
    keepalive_destroy(r->ka);
    binding_set_destroy(r->set);
    guard_destroy(r->guard);
    regcommit_destroy(r->commit);
    drop_passed(r);
    free(r);
}

static struct binding_aor *find_aor(const char *name, void *arg)
{
    struct account *acc = accounts_find(arg, name);
    return acc ? account_aor(acc) : NULL;
}

void registrar_apply(struct registrar *r, const struct config *cfg)
{
    const struct sip_settings *s = &config_switch(cfg)->sip;
    binding_set_configure(r->set, s->endpoint_expire, s->endpoint_nat_expire,
                          s->endpoint_register_replace);
    guard_set_limits(r->guard, s->endpoint_register_retry, s->endpoint_register_suspend);
    keepalive_apply(r->ka, s);
    regcommit_set_t1(r->commit, (unsigned)s->resend_interval);
    drop_passed(r); /* its account may go */
    accounts_apply(r->accounts, cfg);
    if (!r->loaded)
        binding_set_load(r->set, find_aor, r->accounts);
    r->loaded = true;
    registrar_kick(r->root);
}

/* ---- Introspection and operator actions ----------------------------------------- */

int registrar_bindings(struct registrar *r, const char *aor, registrar_binding_h *fn,
                       void *arg)
{
    if (aor) {
        struct account *acc = accounts_find(r->accounts, aor);
        return acc ? binding_visit(account_aor(acc), fn, arg) : 0;
    }
    for (size_t i = 0; i < accounts_count(r->accounts); i++) {
        int rc = binding_visit(account_aor(accounts_at(r->accounts, i)), fn, arg);
        if (rc)
            return rc;
    }
    return 0;
}

int registrar_remove(struct registrar *r, const char *aor, const char *contact)
{
    struct account *acc = accounts_find(r->accounts, aor);
    if (!acc)
        return -ENOENT;
    const char *why = "removed by the operator";
    unsigned removed;
    if (!contact) {
        removed = binding_clear(account_aor(acc), why);
    } else {
        char buf[BINDING_CONTACT_MAX + 2];
        size_t n = strlen(contact);
        if (n >= 2 && contact[0] == '<' && contact[n - 1] == '>') {
            contact++;
            n -= 2;
        }
        if (n >= sizeof buf)
            return 0;
        memcpy(buf, contact, n);
        buf[n] = '\0';
        url_t u[1];
        if (url_d(u, buf) < 0)
            return 0;
        removed = binding_remove_matching(account_aor(acc), u, why);
    }
    registrar_kick(r->root);
    return (int)removed;
}

size_t registrar_binding_count(const struct registrar *r)
{
    return binding_set_count(r->set);
}

bool registrar_binding_source(const struct registrar *r, const char *ip)
{
    return binding_set_has_source(r->set, ip);
}

size_t registrar_account_count(const struct registrar *r)
{
    return accounts_count(r->accounts);
}

static void fill_account(struct registrar *r, struct account *acc,
                         struct registrar_account *out)
{
    out->name = account_name(acc);
    out->mapping_gateway = account_mapping_gateway(acc);
    out->bindings = account_aor(acc)->count;
    guard_account(r->guard, out->name, registrar_now_s(), &out->failures,
                  &out->suspended_until);
}

int registrar_account_at(struct registrar *r, size_t i, struct registrar_account *out)
{
    struct account *acc = accounts_at(r->accounts, i);
    if (!acc)
        return -ENOENT;
    fill_account(r, acc, out);
    return 0;
}

int registrar_account_find(struct registrar *r, const char *name,
                           struct registrar_account *out)
{
    struct account *acc = accounts_find(r->accounts, name);
    if (!acc)
        return -ENOENT;
    fill_account(r, acc, out);
    return 0;
}

int registrar_suspensions(struct registrar *r, registrar_suspension_h *fn, void *arg)
{
    return guard_suspensions(r->guard, registrar_now_s(), fn, arg);
}

int registrar_unsuspend(struct registrar *r, const char *name)
{
    return guard_lift(r->guard, name, registrar_now_s());
}

uint64_t registrar_registers_accepted(const struct registrar *r)
{
    return r->accepted;
}
