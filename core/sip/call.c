/* The B2BUA. See call.h. */
#define NTA_LEG_MAGIC_T struct call
#define NTA_OUTGOING_MAGIC_T void
#define NTA_INCOMING_MAGIC_T void

#include "random.h"
#include "sip/call.h"
#include "sip/registrar.h"
#include "cdr.h"
#include "wheel.h"
#include "config.h"
#include "evport.h"
#include "log.h"
#include "routing.h"
#include "sip/agent.h"
#include "sip/digest.h"
#include "sip/gwcheck.h"
#include "sip/outreg.h"
#include "store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>
#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>

/* nta marks the responses it makes up itself (timer B's 408, a transport
 * error's 503) with this message flag; the value is in nta_internal.h,
 * which is not installed. */
#ifndef NTA_INTERNAL_MSG
#define NTA_INTERNAL_MSG (1 << 15)
#endif

/* Gateways one call may try. */
#define MAX_CANDIDATES 32
/* What both legs may send us in a dialog (dialog_request()); PRACK is not
 * relayed, so it is not offered. */
#define CALL_ALLOW "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE"
#define NUM ROUTING_NUMBER_MAX

enum state { ST_ROUTING, ST_CALLING, ST_PROCEEDING, ST_ANSWERED, ST_ENDING };

static const char *statename(enum state s)
{
    static const char *const names[] = {"routing", "calling", "proceeding", "answered",
                                        "ending"};
    return names[s];
}

/* Calls in progress per gateway name. A handful of gateways: a linear
 * array is enough, and names of removed gateways stay (a few bytes). */
struct counter {
    char *name;
    unsigned calls;
};

struct counters {
    struct counter *v;
    size_t n, cap;
};

struct relay;

struct calls {
    struct sipagent *agent;
    nta_agent_t *nta;
    su_root_t *root;
    struct event_base *base;
    struct store *store;
    struct outreg_set *outregs;
    struct gwcheck_set *checks; /* OPTIONS checks of routing gateways */
    struct wheel *timers; /* the calls' timers: 100 ms ticks, 1024 slots */
    struct registrar *registrar; /* accounts: INVITE auth and their bindings; may be NULL */
    const struct config *cfg;
    struct call *head, *tail;
    size_t count;
    uint64_t next_id;
    struct counters rgw, mgw;
    calls_route_h *route_h;
    void *route_arg;
    routing_rewrite_h *rewrite_h;
    void *rewrite_arg;
    char contact[256]; /* "<sip:IP:PORT>" */
    char host[128];    /* our address for From */
    char instance[16]; /* random per process, ends our B-leg Call-IDs (loop check) */
    /* shutdown */
    bool stopping;
    void (*shutdown_done)(void *arg);
    void *shutdown_arg;
    unsigned shutdown_pending;
    nta_outgoing_t **byes; /* shutdown BYEs not answered yet */
    size_t nbyes;
};

struct call_route {
    struct call *call; /* NULL once the call ended */
    char caller[NUM], callee[NUM], mapping_gateway[NUM];
};

/* An in-dialog request relayed to the other leg. A re-INVITE without SDP
 * (late offer) whose 2xx came back lives on until the sender's ACK: then
 * irq (bound to on_relay_ack()) waits for that ACK, and orq, the relayed
 * INVITE, is kept so that nta finds its branch and CSeq for our ACK. */
struct relay {
    struct relay *next;
    struct call *call;
    nta_incoming_t *irq;
    nta_outgoing_t *orq;
    bool to_b;
    bool invite;
    bool late_offer; /* a re-INVITE without SDP: the answer comes in the ACK */
    bool ack_held;   /* its 2xx was relayed; our ACK waits for the sender's */
};

/* What the call's CDR will say, kept small while the call lives: a struct
 * cdr is 1 KB of fixed-size text fields, built on the stack only when the
 * call ends. Strings are text fields (set_text()): malloc'd to their length,
 * or the shared "" when empty, never NULL. */
struct record {
    /* Set by the INVITE and never changed: one allocation, `fixed`, holds
     * all four (a held call pays one malloc header instead of four). */
    char *fixed;
    const char *call_id, *caller, *callee, *mapping_gateway;
    /* Of the latest attempt: `attempt` holds both. */
    char *attempt;
    const char *routed_callee, *routing_gateway;
    char *reason; /* "" while it is the standard phrase of `status` */
    long long start, answer;
    int status;
};

struct call {
    struct calls *cs;
    struct call *prev, *next;
    uint64_t id;
    enum state state;
    /* A-leg */
    nta_incoming_t *a_irq; /* the caller's INVITE, until answered */
    nta_leg_t *a_leg;
    msg_t *a_msg; /* our reference to the caller's INVITE, until answered */
    int a_max_forwards;
    /* B-leg: the attempt in progress */
    nta_leg_t *b_leg;
    /* The attempt's INVITE; after a late-offer answer, kept (not given back
     * to nta) until the held ACK goes: nta finds the INVITE's branch and
     * CSeq for the ACK in it, even after timer D has terminated it. */
    nta_outgoing_t *b_orq;
    char *b_ruri;          /* the attempt's Request-URI (digest retries sign it) */
    char *b_addr;          /* host:port the attempt's INVITE went to */
    int b_request_address; /* enum request_address of the destination */
    bool b_counted; /* counted in the gateway's calls */
    unsigned auth_tries;
    bool cancelled; /* the caller cancelled, or the switch gave up */
    bool acked;     /* the caller ACKed our 2xx */
    bool late_offer;     /* the caller's INVITE had no SDP: its ACK carries the answer */
    bool b_ack_held;     /* the B-leg's 2xx waits for the caller's ACK (late offer) */
    bool endpoint_tried; /* a registered callee's binding was tried first */
    struct wheel_node timer; /* invite_timeout, call_progress_timeout, then the
                                no-ACK wait and max_call_duration */
    struct call_route *route;
    struct relay *relays;
    /* routing */
    char **cands; /* gateway names, tried in order; malloc'd to fit */
    size_t ncands, next_cand;
    int last_status;
    char *last_reason; /* text: see set_text() */
    struct record rec;
};

static void try_next(struct call *c);
static void hangup_switch(struct call *c, int status, const char *reason);
static void send_bye(nta_leg_t *leg, nta_response_f *cb, void *arg);
static void end_call(struct call *c, const char *hangup, int status, const char *reason);
static int on_b_response(void *magic, nta_outgoing_t *orq, sip_t const *sip);
static void release_acks(struct call *c);
static void on_timer(struct wheel_node *node, void *arg);

/* ---- Helpers ------------------------------------------------------------ */

/* Text fields of a call: "" is shared, anything else is a malloc'd copy
 * owned by the field. Out of memory leaves the field "" (logged): a CDR
 * with a missing name is better than no call. */
static char empty_text[] = "";

static void set_text(char **field, const char *value)
{
    if (*field && *field != empty_text)
        free(*field);
    *field = empty_text;
    if (value && *value) {
        char *copy = strdup(value);
        if (copy)
            *field = copy;
        else
            log_error("call", "out of memory for a call's text field");
    }
}

static void free_text(char **field);

/* The gateway and routed number of a new attempt, in one allocation. */
static void set_attempt(struct record *r, const char *gateway, const char *routed)
{
    size_t glen = strlen(gateway), rlen = strlen(routed);
    free_text(&r->attempt);
    r->routing_gateway = r->routed_callee = empty_text;
    char *p = malloc(glen + rlen + 2);
    if (!p) {
        log_error("call", "out of memory for a call's record");
        return;
    }
    memcpy(p, gateway, glen + 1);
    memcpy(p + glen + 1, routed, rlen + 1);
    r->attempt = p;
    r->routing_gateway = p;
    r->routed_callee = p + glen + 1;
}

/* The record's reason for `status`: nothing stored when it is the standard
 * phrase (end_call() puts it back), a copy otherwise. */
static void set_reason(struct call *c, int status, const char *phrase)
{
    const char *standard = sip_status_phrase(status);
    if (!phrase || (standard && strcmp(phrase, standard) == 0))
        free_text(&c->rec.reason);
    else
        set_text(&c->rec.reason, phrase);
}

/* The four texts fixed at the INVITE, packed in one allocation. */
static void set_fixed(struct record *r, const char *call_id, const char *caller,
                      const char *callee, const char *mapping_gateway)
{
    const char *v[4] = {call_id ? call_id : "", caller, callee, mapping_gateway};
    size_t len[4], total = 0;
    for (int i = 0; i < 4; i++)
        total += (len[i] = strlen(v[i])) + 1;
    r->fixed = malloc(total);
    const char **out[4] = {&r->call_id, &r->caller, &r->callee, &r->mapping_gateway};
    char *p = r->fixed;
    for (int i = 0; i < 4; i++) {
        if (!p) {
            *out[i] = empty_text;
            continue;
        }
        memcpy(p, v[i], len[i] + 1);
        *out[i] = p;
        p += len[i] + 1;
    }
    if (!r->fixed)
        log_error("call", "out of memory for a call's record");
}

static void free_text(char **field)
{
    if (*field && *field != empty_text)
        free(*field);
    *field = empty_text;
}

static void kick(struct calls *cs)
{
    if (cs->root)
        evport_rearm(cs->root);
}

static struct counter *counter_get(struct counters *cn, const char *name, bool create)
{
    for (size_t i = 0; i < cn->n; i++)
        if (strcmp(cn->v[i].name, name) == 0)
            return &cn->v[i];
    if (!create)
        return NULL;
    if (cn->n == cn->cap) {
        size_t cap = cn->cap ? cn->cap * 2 : 8;
        struct counter *v = realloc(cn->v, cap * sizeof *v);
        if (!v)
            return NULL;
        cn->v = v;
        cn->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return NULL;
    cn->v[cn->n] = (struct counter){copy, 0};
    return &cn->v[cn->n++];
}

static unsigned counter_value(const struct counters *cn, const char *name)
{
    struct counter *k = counter_get((struct counters *)cn, name, false);
    return k ? k->calls : 0;
}

static void counter_add(struct counters *cn, const char *name, int delta)
{
    struct counter *k = counter_get(cn, name, true);
    if (k && (delta > 0 || k->calls > 0))
        k->calls += (unsigned)delta;
}

static void copy_user(char *out, size_t outlen, const url_t *url)
{
    snprintf(out, outlen, "%s", url && url->url_user ? url->url_user : "");
}

/* The first header called `name` that sofia did not parse (RPID, PAI). */
static const char *unknown_header(const sip_t *sip, const char *name)
{
    for (const sip_unknown_t *u = sip->sip_unknown; u; u = u->un_next)
        if (u->un_name && strcasecmp(u->un_name, name) == 0)
            return u->un_value;
    return NULL;
}

/* The user part of the first SIP URI in a header value:
 * "\"Bob\" <sip:1234@host>;party=calling" -> "1234". */
static void user_of_value(const char *value, char *out, size_t outlen)
{
    *out = '\0';
    if (!value)
        return;
    const char *p = strstr(value, "sip:");
    const char *q = p ? p + 4 : NULL;
    if (!q && (p = strstr(value, "tel:")))
        q = p + 4;
    if (!q)
        return;
    size_t n = strcspn(q, "@;>? ");
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, q, n);
    out[n] = '\0';
}

static void display_of(const sip_from_t *from, char *out, size_t outlen)
{
    *out = '\0';
    if (!from || !from->a_display)
        return;
    const char *d = from->a_display;
    size_t n = strlen(d);
    if (n >= 2 && d[0] == '"' && d[n - 1] == '"') {
        d++;
        n -= 2;
    }
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, d, n);
    out[n] = '\0';
}

/* The source IP of a request, as text. */
static void source_ip(msg_t *msg, char *out, size_t outlen)
{
    *out = '\0';
    su_addrinfo_t *ai = msg_addrinfo(msg);
    if (!ai || !ai->ai_addr)
        return;
    su_sockaddr_t *su = (su_sockaddr_t *)ai->ai_addr;
    if (su->su_family == AF_INET)
        inet_ntop(AF_INET, &su->su_sin.sin_addr, out, (socklen_t)outlen);
    else if (su->su_family == AF_INET6)
        inet_ntop(AF_INET6, &su->su_sin6.sin6_addr, out, (socklen_t)outlen);
}

/* The static mapping gateway with `ip` among its addresses. An address may
 * be written "IP" or "IP:PORT" (the port is not compared). */
static const struct mapping_gateway_def *mapping_by_source(const struct config *cfg,
                                                           const char *ip)
{
    size_t n = config_count(cfg, KIND_MAPPING_GATEWAY);
    for (size_t i = 0; i < n; i++) {
        const struct mapping_gateway_def *m =
            (const void *)config_at(cfg, KIND_MAPPING_GATEWAY, i);
        if (m->type != MGW_STATIC)
            continue;
        for (size_t k = 0; k < m->addresses.n; k++) {
            const char *a = m->addresses.v[k];
            size_t len = strlen(ip);
            if (strncmp(a, ip, len) == 0 && (a[len] == '\0' || (a[len] == ':' && !strchr(ip, ':'))))
                return m;
        }
    }
    return NULL;
}

static const struct routing_gateway_def *rgw_def(const struct calls *cs, const char *name)
{
    return cs->cfg ? (const void *)config_find(cs->cfg, KIND_ROUTING_GATEWAY, name) : NULL;
}

static bool registration_active(const struct calls *cs, const struct routing_gateway_def *g)
{
    if (g->type != RGW_REGISTRATION)
        return true;
    struct outreg *r = cs->outregs && g->registration ? outreg_find(cs->outregs, g->registration)
                                                      : NULL;
    return r && outreg_state(r) == OUTREG_ACTIVE;
}

/* Usable now: its registration (if any) active and its OPTIONS checks (if
 * any) answered. */
static bool gateway_usable(const struct calls *cs, const struct routing_gateway_def *g)
{
    return registration_active(cs, g) && gwcheck_alive(cs->checks, g->head.name);
}

bool calls_gateway_online(const struct calls *cs, const char *name)
{
    const struct routing_gateway_def *g = rgw_def(cs, name);
    return g && gateway_usable(cs, g);
}

unsigned calls_gateway_calls(const struct calls *cs, const char *name)
{
    return counter_value(&cs->rgw, name);
}

size_t calls_count(const struct calls *cs)
{
    return cs->count;
}

/* ---- Lifetime ----------------------------------------------------------- */

int calls_create(struct calls **csp, struct sipagent *agent, su_root_t *root,
                 struct event_base *base, struct store *store, struct outreg_set *outregs)
{
    struct calls *cs = calloc(1, sizeof *cs);
    if (!cs)
        return -ENOMEM;
    cs->agent = agent;
    cs->nta = sipagent_nta(agent);
    cs->root = root;
    cs->base = base;
    cs->store = store;
    cs->outregs = outregs;
    cs->next_id = 1;
    random_hex(cs->instance, 6);
    /* Call timers are seconds long: 100 ms ticks are precise enough, and
     * 1024 slots keep a tick's work at calls/1024 checks. */
    cs->timers = wheel_create(base, 100, 1024, on_timer, cs);
    if (!cs->timers ||
        gwcheck_create(&cs->checks, cs->nta, sipagent_client_leg(agent), root, base) < 0) {
        wheel_destroy(cs->timers);
        free(cs);
        return -ENOMEM;
    }
    sip_contact_t const *me = nta_agent_contact(cs->nta);
    if (me && me->m_url->url_host) {
        snprintf(cs->host, sizeof cs->host, "%s%s%s", me->m_url->url_host,
                 me->m_url->url_port ? ":" : "", me->m_url->url_port ? me->m_url->url_port : "");
        snprintf(cs->contact, sizeof cs->contact, "<sip:%s>", cs->host);
    } else {
        snprintf(cs->host, sizeof cs->host, "localhost");
        snprintf(cs->contact, sizeof cs->contact, "<sip:localhost>");
    }
    *csp = cs;
    return 0;
}

void calls_set_registrar(struct calls *cs, struct registrar *r)
{
    cs->registrar = r;
}

void calls_apply(struct calls *cs, const struct config *cfg)
{
    cs->cfg = cfg;
    gwcheck_apply(cs->checks, cfg);
}

void calls_set_route_hook(struct calls *cs, calls_route_h *h, void *arg)
{
    cs->route_h = h;
    cs->route_arg = arg;
}

void calls_set_rewrite_hook(struct calls *cs, routing_rewrite_h *h, void *arg)
{
    cs->rewrite_h = h;
    cs->rewrite_arg = arg;
}

static void relay_free(struct relay *r, bool answer)
{
    if (r->orq)
        nta_outgoing_destroy(r->orq);
    if (r->irq) {
        if (answer && nta_incoming_status(r->irq) < 200)
            nta_incoming_treply(r->irq, SIP_481_NO_TRANSACTION, TAG_END());
        nta_incoming_destroy(r->irq);
    }
    free(r);
}

/* Forget the B-leg attempt: its transaction (nta cancels nothing here; the
 * caller of this did what the protocol needs) and its dialog. */
static void drop_b(struct call *c)
{
    if (c->b_orq) {
        nta_outgoing_destroy(c->b_orq);
        c->b_orq = NULL;
    }
    if (c->b_leg) {
        nta_leg_destroy(c->b_leg);
        c->b_leg = NULL;
    }
    if (c->b_counted) {
        counter_add(&c->cs->rgw, c->rec.routing_gateway, -1);
        c->b_counted = false;
    }
}

static void call_free(struct call *c)
{
    struct calls *cs = c->cs;
    if (c->prev)
        c->prev->next = c->next;
    else
        cs->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        cs->tail = c->prev;
    cs->count--;
    if (c->route)
        c->route->call = NULL; /* the hook's answer only frees it */
    /* A 2xx is ACKed, whatever ended the call. */
    release_acks(c);
    while (c->relays) {
        struct relay *r = c->relays;
        c->relays = r->next;
        relay_free(r, true);
    }
    drop_b(c);
    if (c->a_irq) {
        nta_incoming_treply(c->a_irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
        nta_incoming_destroy(c->a_irq);
    }
    if (c->a_leg)
        nta_leg_destroy(c->a_leg);
    if (c->a_msg)
        msg_destroy(c->a_msg);
    wheel_del(cs->timers, &c->timer);
    if (c->rec.mapping_gateway[0])
        counter_add(&cs->mgw, c->rec.mapping_gateway, -1);
    for (size_t i = 0; i < c->ncands; i++)
        free(c->cands[i]);
    free(c->cands);
    char **texts[] = {&c->b_ruri, &c->b_addr, &c->last_reason, &c->rec.attempt,
                      &c->rec.reason};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        free_text(texts[i]);
    free(c->rec.fixed);
    free(c);
}

void calls_destroy(struct calls *cs)
{
    if (!cs)
        return;
    while (cs->head)
        call_free(cs->head);
    gwcheck_destroy(cs->checks);
    wheel_destroy(cs->timers);
    for (size_t i = 0; i < cs->rgw.n; i++)
        free(cs->rgw.v[i].name);
    for (size_t i = 0; i < cs->mgw.n; i++)
        free(cs->mgw.v[i].name);
    for (size_t i = 0; i < cs->nbyes; i++)
        if (cs->byes[i])
            nta_outgoing_destroy(cs->byes[i]);
    free(cs->byes);
    free(cs->rgw.v);
    free(cs->mgw.v);
    free(cs);
}

/* ---- Ending ------------------------------------------------------------- */

/* Write the record and free the call. The caller has already told both
 * sides what they need (final response, BYE, CANCEL). */
static void end_call(struct call *c, const char *hangup, int status, const char *reason)
{
    const struct record *rec = &c->rec;
    struct cdr cdr = {.start = rec->start, .answer = rec->answer, .status = rec->status};
    struct cdr *r = &cdr;
    snprintf(r->call_id, sizeof r->call_id, "%s", rec->call_id);
    snprintf(r->caller, sizeof r->caller, "%s", rec->caller);
    snprintf(r->callee, sizeof r->callee, "%s", rec->callee);
    snprintf(r->original_callee, sizeof r->original_callee, "%s", rec->callee);
    snprintf(r->routed_callee, sizeof r->routed_callee, "%s", rec->routed_callee);
    snprintf(r->mapping_gateway, sizeof r->mapping_gateway, "%s", rec->mapping_gateway);
    snprintf(r->routing_gateway, sizeof r->routing_gateway, "%s", rec->routing_gateway);
    snprintf(r->reason, sizeof r->reason, "%s", rec->reason);
    r->stop = (long long)time(NULL);
    if (r->answer)
        r->duration = r->stop - r->answer;
    if (!r->status)
        r->status = status;
    else if (!r->reason[0] && sip_status_phrase(r->status))
        reason = sip_status_phrase(r->status); /* the record's own status, kept short */
    if (!r->reason[0])
        snprintf(r->reason, sizeof r->reason, "%s",
                 reason ? reason : sip_status_phrase(status) ? sip_status_phrase(status) : "");
    snprintf(r->hangup, sizeof r->hangup, "%s", hangup);
    cdr_write(c->cs->store, r);
    log_info("call", "%" PRIu64 " ended: %s -> %s via %s, %d %s, hangup %s, %llds", c->id,
             r->caller, r->routed_callee[0] ? r->routed_callee : r->callee,
             r->routing_gateway[0] ? r->routing_gateway : "-", r->status, r->reason, r->hangup,
             r->duration);
    call_free(c);
}

/* Answer the caller's INVITE with a failure, and end. */
static void fail_call(struct call *c, int status, const char *reason, const char *hangup)
{
    if (c->a_irq) {
        nta_incoming_treply(c->a_irq, status, reason ? reason : sip_status_phrase(status),
                            TAG_END());
        nta_incoming_destroy(c->a_irq);
        c->a_irq = NULL;
    }
    c->rec.status = status;
    set_reason(c, status, reason);
    end_call(c, hangup, status, reason);
}

/* A BYE on a leg, fire and forget: nta keeps the transaction (and its
 * retransmissions) after we let go. */
static void send_bye(nta_leg_t *leg, nta_response_f *cb, void *arg)
{
    if (!leg)
        return;
    nta_outgoing_t *bye =
        nta_outgoing_tcreate(leg, cb, arg, NULL, SIP_METHOD_BYE, NULL, TAG_END());
    if (bye && !cb)
        nta_outgoing_destroy(bye);
}

/* After the answer: the candidates, the attempt's Request-URI and address,
 * the last failure. About 200 bytes of a held call. */
static void forget_routing(struct call *c)
{
    for (size_t i = 0; i < c->ncands; i++)
        free(c->cands[i]);
    free(c->cands);
    c->cands = NULL;
    c->ncands = c->next_cand = 0;
    free_text(&c->b_ruri);
    free_text(&c->b_addr);
    free_text(&c->last_reason);
}

/* ---- Timers -------------------------------------------------------------- */

static void arm(struct call *c, int seconds)
{
    wheel_add(c->cs->timers, &c->timer, (unsigned)(seconds > 0 ? seconds : 1) * 1000u);
}

static void disarm(struct call *c)
{
    wheel_del(c->cs->timers, &c->timer);
}

static void on_timer(struct wheel_node *node, void *arg)
{
    struct calls *cs = arg;
    struct call *c = (struct call *)((char *)node - offsetof(struct call, timer));
    if (c->state == ST_ANSWERED && !c->acked) {
        /* Our 2xx was never ACKed (nta gave up retransmitting it): the
         * caller is gone or never saw the answer. Without this the call
         * would stay up until the maximum duration. */
        log_info("call", "%" PRIu64 ": the caller never ACKed the answer: hanging up", c->id);
        hangup_switch(c, 408, "No ACK");
        kick(cs);
        return;
    }
    if (c->state == ST_ANSWERED) {
        /* sip.max_call_duration: no call stays up for ever after a lost BYE. */
        log_info("call", "%" PRIu64 ": up %lld s, the maximum call duration: hanging up", c->id,
                 (long long)time(NULL) - c->rec.answer);
        hangup_switch(c, 503, "Call Terminated");
        kick(cs);
        return;
    }
    if (c->state != ST_CALLING && c->state != ST_PROCEEDING)
        return;
    if (c->b_orq) {
        nta_outgoing_t *cancel = nta_outgoing_tcancel(c->b_orq, NULL, NULL, TAG_END());
        if (cancel)
            nta_outgoing_destroy(cancel);
    }
    if (c->cancelled) {
        /* The caller is gone and the gateway never answered the CANCEL. */
        end_call(c, "caller", 487, "Request Terminated");
        kick(cs);
        return;
    }
    c->last_status = 408;
    set_text(&c->last_reason,
             c->state == ST_CALLING ? "INVITE Timeout" : "Call Progress Timeout");
    log_info("call", "%" PRIu64 ": %s: %s, trying the next gateway", c->id,
             c->rec.routing_gateway, c->last_reason);
    drop_b(c);
    try_next(c);
    kick(cs);
}

/* ---- The B-leg ---------------------------------------------------------- */

/* Whether a final status from `gateway` sends the call to the next one: the
 * gateway's failover_codes, else the switch's. Read from the running
 * policy at each answer, so a reload applies to calls already routing. */
static bool failover_status(const struct calls *cs, const char *gateway, int status)
{
    const struct routing_gateway_def *g = rgw_def(cs, gateway);
    const struct status_set *set = g && g->failover_codes.given
                                       ? &g->failover_codes
                                       : &config_switch(cs->cfg)->sip.failover_codes;
    return status_set_has(set, status);
}

static int b_leg_request(struct call *c, nta_leg_t *leg, nta_incoming_t *irq,
                         sip_t const *sip);

/* The caller's From display name, as the start of our From ("display
 * from"): `"Alice" `, or "" when it has none (or an unreasonably long one).
 * sofia keeps a quoted-string with its quotes and escapes, so it goes back
 * as it came; a bare token sequence gets quotes. */
static void quoted_display(const sip_from_t *from, char *out, size_t outlen)
{
    *out = '\0';
    const char *d = from ? from->a_display : NULL;
    size_t n = d ? strlen(d) : 0;
    bool quoted = n >= 2 && d[0] == '"' && d[n - 1] == '"';
    if (n == 0 || (quoted && n == 2) || n + 4 > outlen)
        return;
    snprintf(out, outlen, quoted ? "%s " : "\"%s\" ", d);
}

/* Append one header line to `out` if all of it fits. */
static bool add_line(char *out, size_t outlen, size_t *len, const char *name,
                     const char *value)
{
    int n = snprintf(out + *len, outlen - *len, "%s: %s\r\n", name, value);
    if (n < 0 || (size_t)n >= outlen - *len) {
        out[*len] = '\0';
        return false;
    }
    *len += (size_t)n;
    return true;
}

/* The privacy a registration gateway asks for: its registration's (or the
 * switch's user_agent_privacy, inherited). Other gateways: "ignore". */
static int gateway_privacy(const struct calls *cs, const struct routing_gateway_def *g)
{
    if (g->type != RGW_REGISTRATION || !g->registration || !cs->outregs)
        return PRIVACY_IGNORE;
    struct outreg *r = outreg_find(cs->outregs, g->registration);
    return r ? outreg_privacy(r) : PRIVACY_IGNORE;
}

/* Identity headers towards gateway g (RFC 3323, RFC 3325). Between trusted
 * operators the caller's P-Asserted-Identity and Privacy pass as they came.
 * A registration gateway's privacy adds the switch's own: "id" asserts the
 * caller ourselves and asks that it be withheld (Privacy: id and our
 * P-Asserted-Identity replace the caller's), "none" says nothing is to be
 * withheld (Privacy: none replaces the caller's Privacy), "ignore" adds
 * nothing. Header lines go to `out` for SIPTAG_HEADER_STR; *pass_privacy
 * says whether the caller's Privacy header goes along. */
static void identity_headers(const struct call *c, const struct routing_gateway_def *g,
                             sip_t const *a, char *out, size_t outlen, bool *pass_privacy)
{
    size_t len = 0;
    char value[NUM + 160];
    *out = '\0';
    int mode = gateway_privacy(c->cs, g);
    *pass_privacy = a->sip_privacy && mode == PRIVACY_IGNORE;
    if (mode != PRIVACY_IGNORE)
        add_line(out, outlen, &len, "Privacy", mode == PRIVACY_ID ? "id" : "none");
    if (mode == PRIVACY_ID) {
        if (c->rec.caller[0]) {
            snprintf(value, sizeof value, "<sip:%s@%s>", c->rec.caller, c->cs->host);
            add_line(out, outlen, &len, "P-Asserted-Identity", value);
        }
        return;
    }
    for (const sip_unknown_t *u = a->sip_unknown; u; u = u->un_next)
        if (u->un_name && u->un_value &&
            strcasecmp(u->un_name, "P-Asserted-Identity") == 0 &&
            !add_line(out, outlen, &len, "P-Asserted-Identity", u->un_value))
            break;
}

/* Send the INVITE of one attempt to gateway g. `auth` is an Authorization
 * (401) or Proxy-Authorization (407) value for a retry, else NULL. Returns
 * 0, or -1 when it could not even be sent. */
static int send_invite(struct call *c, const struct routing_gateway_def *g, int auth_status,
                       const char *auth)
{
    struct calls *cs = c->cs;
    sip_t const *a = sip_object(c->a_msg);
    const char *callee = c->rec.callee, *routed = c->rec.routed_callee;
    int use_contact = g->invite_use_contact == TRI_INHERIT
                          ? config_switch(cs->cfg)->sip.routing_gateway_invite_use_contact
                          : g->invite_use_contact == TRI_ON;
    char to[320], from[480], rnd[33], call_id[64], tag[20], display[160], ids[1024];
    bool pass_privacy;
    identity_headers(c, g, a, ids, sizeof ids, &pass_privacy);
    char ruri[400];
    snprintf(ruri, sizeof ruri, "sip:%s@%s", routed, g->address);
    set_text(&c->b_ruri, ruri);
    set_text(&c->b_addr, g->address);
    c->b_request_address = g->request_address;
    snprintf(to, sizeof to, "<sip:%s@%s>", use_contact ? callee : routed, g->address);
    if (!c->b_leg) {
        random_hex(tag, 8);
        random_hex(rnd, 16);
        /* Marked ours: see own_call_id(). */
        snprintf(call_id, sizeof call_id, "%s-%s", rnd, cs->instance);
        /* The number caller_from chose, under the caller's display name. */
        quoted_display(a->sip_from, display, sizeof display);
        snprintf(from, sizeof from, "%s<sip:%s@%s>;tag=%s", display,
                 c->rec.caller[0] ? c->rec.caller : "anonymous", cs->host, tag);
        c->b_leg = nta_leg_tcreate(cs->nta, b_leg_request, c, SIPTAG_FROM_STR(from),
                                   SIPTAG_TO_STR(to), SIPTAG_CALL_ID_STR(call_id), TAG_END());
        if (!c->b_leg)
            return -1;
    }
    char mf[16];
    snprintf(mf, sizeof mf, "%d", c->a_max_forwards - 1);
    c->b_orq = nta_outgoing_tcreate(
        c->b_leg, on_b_response, c, NULL, SIP_METHOD_INVITE, URL_STRING_MAKE(c->b_ruri),
        SIPTAG_CONTACT_STR(cs->contact), SIPTAG_MAX_FORWARDS_STR(mf),
        SIPTAG_ALLOW_STR(CALL_ALLOW),
        TAG_IF(auth && auth_status == 401, SIPTAG_AUTHORIZATION_STR(auth)),
        TAG_IF(auth && auth_status == 407, SIPTAG_PROXY_AUTHORIZATION_STR(auth)),
        TAG_IF(pass_privacy, SIPTAG_PRIVACY(a->sip_privacy)),
        TAG_IF(ids[0], SIPTAG_HEADER_STR(ids)),
        TAG_IF(a->sip_content_type, SIPTAG_CONTENT_TYPE(a->sip_content_type)),
        TAG_IF(a->sip_payload, SIPTAG_PAYLOAD(a->sip_payload)), TAG_END());
    if (!c->b_orq)
        return -1;
    c->state = ST_CALLING;
    arm(c, config_switch(cs->cfg)->sip.invite_timeout);
    return 0;
}

/* The binding a call to an account goes to: the most recent one. */
struct pick {
    char contact[256];
    char target[128]; /* host:port to send to */
    long long expires_at;
};

static int pick_binding(const struct registrar_binding *b, void *arg)
{
    struct pick *p = arg;
    if (b->expires_at <= p->expires_at)
        return 0;
    p->expires_at = b->expires_at;
    snprintf(p->contact, sizeof p->contact, "%s", b->contact);
    /* Behind NAT the Contact is unreachable: send where the REGISTER came
     * from (request address "socket"). */
    if (b->nat && b->source && *b->source) {
        snprintf(p->target, sizeof p->target, "%s", b->source);
    } else {
        url_t url[1];
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%s", b->contact);
        if (url_d(url, tmp) == 0 && url->url_host)
            snprintf(p->target, sizeof p->target, "%s:%s", url->url_host,
                     url->url_port ? url->url_port : "5060");
    }
    return 0;
}

/* A call to a registered account goes to its binding first. Returns true
 * when an INVITE went out. */
static bool try_endpoint(struct call *c)
{
    struct calls *cs = c->cs;
    if (!cs->registrar || !config_find(cs->cfg, KIND_ACCOUNT, c->rec.callee))
        return false;
    struct pick p = {.expires_at = 0};
    registrar_bindings(cs->registrar, c->rec.callee, pick_binding, &p);
    if (!p.target[0])
        return false;
    /* A gateway-shaped destination: the endpoint's address, the account as
     * the number, no rewriting. */
    struct routing_gateway_def g = {.type = RGW_STATIC, .address = p.target,
                                    .invite_use_contact = TRI_OFF, .line_limit = CONFIG_UNLIMITED,
                                    .request_address = REQUEST_SOCKET};
    char name[CDR_FIELD_MAX];
    snprintf(name, sizeof name, "endpoint:%.100s", c->rec.callee);
    set_attempt(&c->rec, name, c->rec.callee);
    c->auth_tries = 1; /* an endpoint's challenge is not ours to answer */
    if (send_invite(c, &g, 0, NULL) != 0)
        return false;
    log_info("call", "%" PRIu64 ": %s -> registered %s at %s", c->id, c->rec.caller,
             c->rec.callee, p.target);
    return true;
}

/* Try the next usable candidate, or fail the call when none is left. */
static void try_next(struct call *c)
{
    struct calls *cs = c->cs;
    if (!c->endpoint_tried) {
        c->endpoint_tried = true;
        if (try_endpoint(c))
            return;
    }
    while (c->next_cand < c->ncands) {
        const char *name = c->cands[c->next_cand++];
        const struct routing_gateway_def *g = rgw_def(cs, name);
        if (!g) {
            log_warn("call", "%" PRIu64 ": route names unknown gateway \"%s\"", c->id, name);
            continue;
        }
        if (!registration_active(cs, g)) {
            log_debug("call", "%" PRIu64 ": %s skipped: registration not active", c->id, name);
            continue;
        }
        if (!gwcheck_alive(cs->checks, name)) {
            log_debug("call", "%" PRIu64 ": %s skipped: offline (OPTIONS checks)", c->id, name);
            continue;
        }
        if (g->line_limit >= 0 && counter_value(&cs->rgw, name) >= (unsigned)g->line_limit) {
            log_debug("call", "%" PRIu64 ": %s skipped: at its line limit %d", c->id, name,
                      g->line_limit);
            continue;
        }
        if (!g->address) {
            log_debug("call", "%" PRIu64 ": %s skipped: no address", c->id, name);
            continue;
        }
        char routed[NUM];
        routing_rewrite(&g->callee_rewrite, c->rec.callee, cs->rewrite_h, cs->rewrite_arg,
                        routed, sizeof routed);
        set_attempt(&c->rec, name, routed);
        counter_add(&cs->rgw, name, 1);
        c->b_counted = true;
        c->auth_tries = 0;
        if (send_invite(c, g, 0, NULL) == 0) {
            log_info("call", "%" PRIu64 ": %s -> %s via %s", c->id, c->rec.caller,
                     c->rec.routed_callee, name);
            return;
        }
        log_warn("call", "%" PRIu64 ": cannot send the INVITE to %s", c->id, name);
        c->last_status = 503;
        drop_b(c);
    }
    if (c->last_status)
        fail_call(c, c->last_status, c->last_reason[0] ? c->last_reason : NULL, "switch");
    else
        fail_call(c, 503, "No Route", "switch");
}

/* ACK a 2xx to our INVITE (`invite`, still known to nta) on `leg`, with
 * the INVITE's CSeq: nta would take the leg's latest, wrong once another
 * request went out on the leg meanwhile. `answer`, when not NULL, is the
 * other side's ACK, whose body (the SDP answer to an offer in the 2xx)
 * goes along with its Content-Type.
 *
 * Retransmissions of the 2xx (our ACK was lost, RFC 3261 13.2.2.4): with
 * NTATAG_UA(1), nta gives the ACK transaction the INVITE's branch to match
 * responses by, and each retransmitted 2xx that reaches it makes nta send
 * the same ACK again. We let go of the ACK at once; nta keeps it until its
 * timer F (64*T1 after it was sent), which is as long as the peer
 * retransmits its 2xx, and frees it then: no per-call state. */
static void send_ack(nta_leg_t *leg, nta_outgoing_t *invite, sip_t const *answer)
{
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sip_cseq_t *seq = sip_cseq_create(home, nta_outgoing_cseq(invite), SIP_METHOD_ACK);
    sip_content_type_t const *ct = answer ? answer->sip_content_type : NULL;
    sip_payload_t const *pl = answer ? answer->sip_payload : NULL;
    nta_outgoing_t *ack = nta_outgoing_tcreate(
        leg, NULL, NULL, NULL, SIP_METHOD_ACK, NULL, TAG_IF(seq, SIPTAG_CSEQ(seq)),
        TAG_IF(ct, SIPTAG_CONTENT_TYPE(ct)), TAG_IF(pl, SIPTAG_PAYLOAD(pl)), TAG_END());
    if (ack)
        nta_outgoing_destroy(ack);
    su_home_deinit(home);
}

/* Send the B-leg ACK held for the caller's (late offer): with the caller's
 * answer when it came, bare when the call ends without it (the carrier
 * still gets its ACK before any BYE). The INVITE goes back to nta then. */
static void flush_b_ack(struct call *c, sip_t const *caller_ack)
{
    if (!c->b_ack_held)
        return;
    c->b_ack_held = false;
    if (c->b_leg && c->b_orq)
        send_ack(c->b_leg, c->b_orq, caller_ack);
    if (c->b_orq) {
        nta_outgoing_destroy(c->b_orq);
        c->b_orq = NULL;
    }
}

/* The B-leg's remote target for a Contact `m` from the carrier, by the
 * gateway's request_address: where in-dialog requests (ACK, BYE,
 * re-INVITE) go. A carrier or phone behind NAT puts an address in its
 * Contact that we cannot reach: "socket" keeps the address we reach it at
 * (`host`, `port`; port may be NULL), "contact_port" that host with the
 * Contact's port, "contact" takes the Contact as it is (NULL returned).
 * Made in `home`; NULL: use `m`. */
static sip_contact_t *b_target(int mode, su_home_t *home, sip_contact_t const *m,
                               const char *host, const char *port)
{
    if (!m || mode == REQUEST_CONTACT || !host || !*host)
        return NULL;
    const url_t *u = m->m_url;
    if (mode == REQUEST_CONTACT_PORT)
        port = u->url_port ? u->url_port : "5060";
    char uri[400];
    snprintf(uri, sizeof uri, "<sip:%s%s%s%s%s>", u->url_user ? u->url_user : "",
             u->url_user ? "@" : "", host, port ? ":" : "", port ? port : "");
    return sip_contact_make(home, uri);
}

/* A target refresh (RFC 3261 12.2.1.2, 12.2.2): a re-INVITE or UPDATE from
 * the peer on `leg`, or the 2xx to ours, came with Contact `m`: later
 * requests on that leg go there. The caller's leg follows the Contact; the
 * carrier's follows request_address, from where we reach it now (which the
 * dialog's first target already put through request_address). The route
 * set stays what the dialog began with. */
static void refresh_target(struct call *c, nta_leg_t *leg, sip_contact_t const *m)
{
    if (!leg || !m)
        return;
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sip_contact_t const *target = m;
    if (leg == c->b_leg && c->b_request_address != REQUEST_CONTACT) {
        sip_contact_t const *now = NULL;
        nta_leg_get_route(leg, NULL, &now);
        const url_t *u = now ? now->m_url : NULL;
        sip_contact_t *fixed =
            u ? b_target(c->b_request_address, home, m, u->url_host, u->url_port) : NULL;
        if (!fixed) {
            /* No address to keep (the answer had no Contact, or no memory):
             * requests go on where they went. */
            su_home_deinit(home);
            return;
        }
        target = fixed;
    }
    /* reroute 1 (not the initial transaction): the target only. */
    nta_leg_client_reroute(leg, NULL, target, 0);
    char *uri = url_as_string(home, target->m_url);
    log_debug("call", "%" PRIu64 ": the %s's target is now %s", c->id,
              leg == c->b_leg ? "callee" : "caller", uri ? uri : "?");
    su_home_deinit(home);
}

/* A 2xx on the B-leg: confirm the dialog and ACK it, or (`hold`: the
 * caller's INVITE had no SDP, so this 2xx carries the offer and the
 * caller's ACK the answer) keep the ACK until the caller's arrives. */
static void confirm_b(struct call *c, sip_t const *sip, bool hold)
{
    if (sip->sip_to && sip->sip_to->a_tag)
        nta_leg_rtag(c->b_leg, sip->sip_to->a_tag);
    /* b_addr is "host:port" (a bracketed IPv6 host keeps its colons). */
    char host[128];
    snprintf(host, sizeof host, "%s", c->b_addr);
    char *colon = strrchr(host, ':'), *port = NULL;
    if (colon && !strchr(colon, ']')) {
        *colon = '\0';
        port = colon + 1;
    }
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sip_contact_t const *target = sip->sip_contact;
    sip_contact_t *fixed = b_target(c->b_request_address, home, target, host, port);
    if (fixed)
        target = fixed;
    nta_leg_client_route(c->b_leg, sip->sip_record_route, target);
    su_home_deinit(home);
    if (hold) {
        /* nta drops the carrier's 2xx retransmissions meanwhile (they match
         * the INVITE, which answers no more); the caller's ACK, or the
         * no-ACK hangup, releases it, and the ACK then answers them. */
        c->b_ack_held = true;
        log_debug("call", "%" PRIu64 ": late offer: the ACK to %s waits for the caller's",
                  c->id, c->rec.routing_gateway);
        return;
    }
    send_ack(c->b_leg, c->b_orq, NULL);
}

/* Answer a 401/407 from a registration gateway once, with its registration's
 * credentials. Returns true when a new INVITE went out. */
static bool answer_challenge(struct call *c, int status, sip_t const *sip)
{
    struct calls *cs = c->cs;
    const struct routing_gateway_def *g = rgw_def(cs, c->rec.routing_gateway);
    if (!g || !g->registration || c->auth_tries++ > 0)
        return false;
    const struct registration_def *reg =
        (const void *)config_find(cs->cfg, KIND_REGISTRATION, g->registration);
    msg_auth_t const *au = status == 401 ? sip->sip_www_authenticate : sip->sip_proxy_authenticate;
    if (!reg || !au)
        return false;
    struct digest_challenge ch;
    if (digest_challenge_parse(&ch, (const char *const *)au->au_params) < 0)
        return false;
    char cnonce[17], value[2048];
    random_hex(cnonce, 8);
    const char *user = reg->auth_username ? reg->auth_username : reg->username;
    if (digest_authorization(&ch, user, reg->password ? reg->password : "", "INVITE",
                             c->b_ruri, 1, cnonce, value, sizeof value) < 0)
        return false;
    nta_outgoing_destroy(c->b_orq);
    c->b_orq = NULL;
    disarm(c);
    return send_invite(c, g, status, value) == 0;
}

static int on_b_response(void *magic, nta_outgoing_t *orq, sip_t const *sip)
{
    struct call *c = magic;
    struct calls *cs = c->cs;
    int status = sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    bool internal = !sip || (sip->sip_flags & NTA_INTERNAL_MSG);
    const char *phrase = sip && sip->sip_status ? sip->sip_status->st_phrase : NULL;
    if (orq != c->b_orq)
        return 0;

    if (status < 200) {
        if (c->state == ST_CALLING) {
            c->state = ST_PROCEEDING;
            arm(c, config_switch(cs->cfg)->sip.call_progress_timeout);
        }
        if (status > 100 && c->a_irq && !c->cancelled)
            nta_incoming_treply(
                c->a_irq, status, phrase, SIPTAG_CONTACT_STR(cs->contact),
                SIPTAG_ALLOW_STR(CALL_ALLOW),
                TAG_IF(sip->sip_content_type, SIPTAG_CONTENT_TYPE(sip->sip_content_type)),
                TAG_IF(sip->sip_payload, SIPTAG_PAYLOAD(sip->sip_payload)), TAG_END());
        return 0;
    }
    disarm(c);

    if (status < 300) {
        bool relayed = !c->cancelled && c->a_irq;
        confirm_b(c, sip, relayed && c->late_offer);
        if (!c->b_ack_held) {
            nta_outgoing_destroy(c->b_orq);
            c->b_orq = NULL;
        }
        if (!relayed) {
            /* The 200 crossed the caller's CANCEL (who got 487): hang up. */
            send_bye(c->b_leg, NULL, NULL);
            end_call(c, "caller", 487, "Request Terminated");
            return 0;
        }
        nta_incoming_treply(
            c->a_irq, status, phrase, SIPTAG_CONTACT_STR(cs->contact),
            SIPTAG_ALLOW_STR(CALL_ALLOW),
            TAG_IF(sip->sip_content_type, SIPTAG_CONTENT_TYPE(sip->sip_content_type)),
            TAG_IF(sip->sip_payload, SIPTAG_PAYLOAD(sip->sip_payload)), TAG_END());
        /* nta retransmits the 2xx until the caller's ACK, which comes to
         * on_a_ack_cancel(); so does the news that it never came. The
         * transaction is kept until then. */
        c->state = ST_ANSWERED;
        c->rec.answer = (long long)time(NULL);
        /* No more attempts: the caller's INVITE (and its SDP) can go, and
         * so can what only failover and digest retries needed. */
        msg_destroy(c->a_msg);
        c->a_msg = NULL;
        forget_routing(c);
        /* Until the caller's ACK: nta retransmits the 2xx for 64 * T1. */
        arm(c, (int)(64 * config_switch(cs->cfg)->sip.resend_interval / 1000) + 2);
        c->rec.status = status;
        set_reason(c, status, phrase ? phrase : "OK");
        log_info("call", "%" PRIu64 ": answered by %s", c->id, c->rec.routing_gateway);
        return 0;
    }

    if (c->cancelled) {
        end_call(c, "caller", 487, "Request Terminated");
        return 0;
    }
    if ((status == 401 || status == 407) && !internal && answer_challenge(c, status, sip))
        return 0;
    c->last_status = status;
    set_text(&c->last_reason, phrase);
    if (internal || failover_status(cs, c->rec.routing_gateway, status)) {
        log_info("call", "%" PRIu64 ": %s answered %d%s, trying the next gateway", c->id,
                 c->rec.routing_gateway, status, internal ? " (local)" : "");
        drop_b(c);
        try_next(c);
        return 0;
    }
    /* A final answer about the callee (404, 486, ...): relay it. */
    drop_b(c);
    fail_call(c, status, phrase, "callee");
    return 0;
}

/* ---- In-dialog requests -------------------------------------------------- */

static void relay_unlink(struct relay *r)
{
    for (struct relay **p = &r->call->relays; *p; p = &(*p)->next)
        if (*p == r) {
            *p = r->next;
            break;
        }
}

/* Send the ACK held for a relayed offerless re-INVITE: with the answer from
 * the sender's ACK, or bare when that never came or the call ends first
 * (the peer still gets its ACK before any BYE). */
static void relay_flush_ack(struct relay *r, sip_t const *answer)
{
    if (!r->ack_held)
        return;
    r->ack_held = false;
    nta_leg_t *leg = r->to_b ? r->call->b_leg : r->call->a_leg;
    if (leg && r->orq)
        send_ack(leg, r->orq, answer);
}

/* The ACKs still held (late offers) go out bare, before a BYE. */
static void release_acks(struct call *c)
{
    flush_b_ack(c, NULL);
    for (struct relay *r = c->relays; r; r = r->next)
        relay_flush_ack(r, NULL);
}

/* The sender's ACK of the 2xx we relayed to its re-INVITE (for an offerless
 * one it carries the answer to the offer in that 2xx), or (sip NULL) nta
 * giving up on it after 64*T1: a held ACK goes to the other side bare and,
 * as after an initial answer never ACKed (RFC 3261 13.3.1.4), the call ends:
 * the peers no longer agree on the session. */
static int on_relay_ack(void *magic, nta_incoming_t *irq, sip_t const *sip)
{
    struct relay *r = magic;
    struct call *c = r->call;
    const char *sender = r->to_b ? "caller" : "callee";
    (void)irq;
    if (sip && (!sip->sip_request || sip->sip_request->rq_method != sip_method_ack))
        return 0; /* a CANCEL after the 2xx changes nothing */
    relay_flush_ack(r, sip);
    relay_unlink(r);
    relay_free(r, false);
    if (!sip) {
        struct calls *cs = c->cs;
        log_info("call", "%" PRIu64 ": the %s never ACKed our 2xx to its re-INVITE",
                 c->id, sender);
        hangup_switch(c, 408, "No ACK"); /* frees c */
        kick(cs);
    }
    return 0;
}

static int on_relay_response(void *magic, nta_outgoing_t *orq, sip_t const *sip)
{
    struct relay *r = magic;
    struct call *c = r->call;
    int status = sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    const char *phrase = sip && sip->sip_status ? sip->sip_status->st_phrase : NULL;
    if (status < 200) {
        if (status > 100 && r->irq)
            nta_incoming_treply(r->irq, status, phrase, TAG_END());
        return 0;
    }
    nta_leg_t *leg = r->to_b ? c->b_leg : c->a_leg;
    bool hold = false;
    if (status < 300 && sip) {
        /* The 2xx to a target refresh request moves the target (12.2.1.2);
         * the ACK goes there already. */
        if (r->invite || nta_outgoing_method(orq) == sip_method_update)
            refresh_target(c, leg, sip->sip_contact);
        /* An offerless re-INVITE: the 2xx carries the peer's offer, and
         * the ACK must carry the sender's answer, which comes in its ACK. */
        hold = r->invite && r->late_offer && r->irq;
        if (r->invite && !hold)
            send_ack(leg, orq, NULL);
    }
    if (r->irq) {
        nta_incoming_treply(r->irq, status, phrase,
                            TAG_IF(status < 300, SIPTAG_CONTACT_STR(c->cs->contact)),
                            TAG_IF(sip && sip->sip_content_type,
                                   SIPTAG_CONTENT_TYPE(sip ? sip->sip_content_type : NULL)),
                            TAG_IF(sip && sip->sip_payload,
                                   SIPTAG_PAYLOAD(sip ? sip->sip_payload : NULL)),
                            TAG_END());
        if (hold) {
            /* irq and orq stay until the sender's ACK (on_relay_ack()). */
            r->ack_held = true;
            nta_incoming_bind(r->irq, on_relay_ack, r);
            log_debug("call", "%" PRIu64 ": re-INVITE late offer: ACK waits for the %s's",
                      c->id, r->to_b ? "caller" : "callee");
            return 0;
        }
        if (r->invite && status < 300) {
            /* Our ACK went out above; the sender's ACK of our 2xx is still
             * due, and a sender that never sends it ends the call as after
             * an initial answer never ACKed (on_relay_ack()). Only the
             * server transaction is kept until then. */
            nta_outgoing_destroy(r->orq);
            r->orq = NULL;
            nta_incoming_bind(r->irq, on_relay_ack, r);
            return 0;
        }
        nta_incoming_destroy(r->irq);
        r->irq = NULL;
    }
    relay_unlink(r);
    nta_outgoing_destroy(r->orq);
    r->orq = NULL;
    free(r);
    return 0;
}

/* Relay re-INVITE, UPDATE or INFO to the other leg. */
static int relay_request(struct call *c, nta_incoming_t *irq, sip_t const *sip, bool to_b)
{
    nta_leg_t *leg = to_b ? c->b_leg : c->a_leg;
    if (!leg || c->state != ST_ANSWERED)
        return 491;
    struct relay *r = calloc(1, sizeof *r);
    if (!r)
        return 500;
    r->call = c;
    r->to_b = to_b;
    r->invite = sip->sip_request->rq_method == sip_method_invite;
    r->late_offer = r->invite && (!sip->sip_payload || sip->sip_payload->pl_len == 0);
    /* re-INVITE and UPDATE are target refresh requests (RFC 3261 12.2,
     * RFC 3311 5.1): a Contact in them moves the sender's target (12.2.2:
     * on receipt), and ours carry our Contact, which stays what it was. */
    bool refresh = r->invite || sip->sip_request->rq_method == sip_method_update;
    if (refresh)
        refresh_target(c, to_b ? c->a_leg : c->b_leg, sip->sip_contact);
    r->orq = nta_outgoing_tcreate(
        leg, on_relay_response, (void *)r, NULL, sip->sip_request->rq_method,
        sip->sip_request->rq_method_name, NULL,
        TAG_IF(refresh, SIPTAG_CONTACT_STR(c->cs->contact)),
        TAG_IF(sip->sip_content_type, SIPTAG_CONTENT_TYPE(sip->sip_content_type)),
        TAG_IF(sip->sip_payload, SIPTAG_PAYLOAD(sip->sip_payload)), TAG_END());
    if (!r->orq) {
        free(r);
        return 500;
    }
    r->irq = irq;
    r->next = c->relays;
    c->relays = r;
    return 0;
}

static int dialog_request(struct call *c, nta_incoming_t *irq, sip_t const *sip, bool from_a)
{
    switch (sip->sip_request->rq_method) {
    case sip_method_ack:
        return 200; /* ACK of our 2xx is absorbed by its transaction */
    case sip_method_bye:
        if (c->state == ST_ANSWERED) {
            release_acks(c); /* a BYE before an ACK we hold (late offer) */
            send_bye(from_a ? c->b_leg : c->a_leg, NULL, NULL);
            end_call(c, from_a ? "caller" : "callee", c->rec.status, NULL);
            return 200;
        }
        if (from_a) {
            /* BYE before the answer (RFC 3261 15: only once confirmed, but
             * seen in the wild): treat as a CANCEL. */
            if (c->b_orq) {
                nta_outgoing_t *cancel = nta_outgoing_tcancel(c->b_orq, NULL, NULL, TAG_END());
                if (cancel)
                    nta_outgoing_destroy(cancel);
            }
            fail_call(c, 487, "Request Terminated", "caller");
            return 200;
        }
        return 481;
    case sip_method_invite:
    case sip_method_update:
    case sip_method_info:
        return relay_request(c, irq, sip, from_a);
    case sip_method_cancel:
        return 481; /* a CANCEL matching no transaction of ours */
    default:
        return 501;
    }
}

static int a_leg_request(struct call *c, nta_leg_t *leg, nta_incoming_t *irq,
                         sip_t const *sip)
{
    (void)leg;
    return dialog_request(c, irq, sip, true);
}

static int b_leg_request(struct call *c, nta_leg_t *leg, nta_incoming_t *irq,
                         sip_t const *sip)
{
    (void)leg;
    return dialog_request(c, irq, sip, false);
}

/* The caller's ACK of our 2xx, or its CANCEL (nta has answered it 200), or
 * (sip NULL) nta giving up on an ACK that never came. */
static int on_a_ack_cancel(void *magic, nta_incoming_t *irq, sip_t const *sip)
{
    struct call *c = magic;
    if (irq != c->a_irq)
        return 0;
    if (c->state == ST_ANSWERED) {
        if (!sip || !sip->sip_request || sip->sip_request->rq_method == sip_method_ack) {
            nta_incoming_destroy(c->a_irq);
            c->a_irq = NULL;
            if (!sip) {
                log_info("call", "%" PRIu64 ": the caller never ACKed the answer: hanging up",
                         c->id);
                struct calls *cs = c->cs;
                hangup_switch(c, 408, "No ACK"); /* frees c */
                kick(cs);
                return 0;
            }
            /* Confirmed: the carrier gets its ACK now if it waited for
             * the caller's answer (late offer); the timer keeps only the
             * maximum duration. */
            flush_b_ack(c, sip);
            c->acked = true;
            disarm(c);
            int max = config_switch(c->cs->cfg)->sip.max_call_duration;
            if (max > 0)
                arm(c, max - (int)((long long)time(NULL) - c->rec.answer));
        }
        return 0; /* a CANCEL after the answer changes nothing */
    }
    if (!sip || !sip->sip_request || sip->sip_request->rq_method != sip_method_cancel)
        return 0;
    if (c->cancelled)
        return 0;
    c->cancelled = true;
    nta_incoming_treply(c->a_irq, SIP_487_REQUEST_CANCELLED, TAG_END());
    nta_incoming_destroy(c->a_irq);
    c->a_irq = NULL;
    c->rec.status = 487;
    set_reason(c, 487, "Request Terminated");
    if (c->b_orq) {
        nta_outgoing_t *cancel = nta_outgoing_tcancel(c->b_orq, NULL, NULL, TAG_END());
        if (cancel)
            nta_outgoing_destroy(cancel);
        /* Wait for the gateway's 487 (or a crossing 200) to end the call;
         * the timer bounds the wait. */
        if (c->state == ST_CALLING)
            arm(c, 2);
        return 0;
    }
    end_call(c, "caller", 487, "Request Terminated");
    return 0;
}

/* ---- Routing ------------------------------------------------------------- */

const char *call_route_caller(const struct call_route *rq)
{
    return rq->caller;
}
const char *call_route_callee(const struct call_route *rq)
{
    return rq->callee;
}
const char *call_route_mapping_gateway(const struct call_route *rq)
{
    return rq->mapping_gateway;
}

/* Called once per call (by the route hook's answer or the default). */
static void set_candidates(struct call *c, const char *const *names, size_t n)
{
    if (n > MAX_CANDIDATES)
        n = MAX_CANDIDATES;
    if (!n || !(c->cands = calloc(n, sizeof *c->cands)))
        return;
    for (size_t i = 0; i < n; i++)
        if (names[i] && (c->cands[c->ncands] = strdup(names[i])))
            c->ncands++;
}

static void route_default(struct call *c)
{
    const char *names[MAX_CANDIDATES];
    size_t n = routing_select(c->cs->cfg, c->rec.callee, names, MAX_CANDIDATES);
    set_candidates(c, names, n);
}

void call_route_done(struct call_route *rq, const char *const *names, size_t n)
{
    struct call *c = rq->call;
    free(rq);
    if (!c)
        return;
    c->route = NULL;
    if (n)
        set_candidates(c, names, n);
    else
        route_default(c);
    try_next(c);
    kick(c->cs);
}

static void start_routing(struct call *c)
{
    struct calls *cs = c->cs;
    if (cs->route_h) {
        struct call_route *rq = calloc(1, sizeof *rq);
        if (rq) {
            rq->call = c;
            snprintf(rq->caller, sizeof rq->caller, "%s", c->rec.caller);
            snprintf(rq->callee, sizeof rq->callee, "%s", c->rec.callee);
            snprintf(rq->mapping_gateway, sizeof rq->mapping_gateway, "%s",
                     c->rec.mapping_gateway);
            c->route = rq;
            if (cs->route_h(rq, cs->route_arg))
                return; /* call_route_done() follows (maybe already did) */
            c->route = NULL;
            free(rq);
        }
    }
    route_default(c);
    try_next(c);
}

/* ---- Ingress ------------------------------------------------------------- */

/* Loop check. Our own B-leg INVITE coming back to us (a routing gateway
 * that is the switch itself, or a proxy that routes the number back) would
 * be taken as a new call and routed the same way again, until
 * Max-Forwards, which we decrement, ran out: 70 calls at once (each
 * counting against the gateways' line limits) and 70 CDRs for one
 * attempt, and no end at all through an element that resets Max-Forwards.
 * RFC 3261 16.3 has a proxy look for its own Via; a B2BUA cannot keep one
 * request across its legs, but the Call-ID crosses every proxy unchanged,
 * so each of our B-leg Call-IDs ends with this process's random instance
 * id, and an INVITE carrying it is our own call looping: 482 Loop Detected
 * at once, before any call state or CDR. The attempt that looped gets the
 * 482 (the next gateway only when failover_codes lists 482) and its call
 * writes the one CDR. A loop through another B2BUA (a new Call-ID) is
 * still cut by Max-Forwards: 483 Too Many Hops. */
static bool own_call_id(const struct calls *cs, const char *call_id)
{
    size_t n = call_id ? strlen(call_id) : 0, m = strlen(cs->instance);
    return n > m + 1 && call_id[n - m - 1] == '-' &&
           strcmp(call_id + n - m, cs->instance) == 0;
}

int calls_on_invite(nta_incoming_t *irq, const sip_t *sip, void *arg)
{
    struct calls *cs = arg;
    if (cs->stopping || !cs->cfg)
        return 503;
    if (sip->sip_to && sip->sip_to->a_tag)
        return 481; /* a re-INVITE for a dialog we do not know */
    int mf = sip->sip_max_forwards ? (int)sip->sip_max_forwards->mf_count : 70;
    if (mf <= 0)
        return 483;
    if (own_call_id(cs, sip->sip_call_id ? sip->sip_call_id->i_id : NULL)) {
        log_info("call", "INVITE %s is our own call coming back: 482 Loop Detected",
                 sip->sip_call_id->i_id);
        return 482;
    }
    msg_t *msg = nta_incoming_getrequest(irq);
    char ip[64];
    source_ip(msg, ip, sizeof ip);
    const struct mapping_gateway_def *m = mapping_by_source(cs->cfg, ip);
    if (!m && cs->registrar && config_count(cs->cfg, KIND_ACCOUNT) > 0) {
        /* Not a customer's address: perhaps a registered endpoint. The
         * registrar challenges and answers itself when it is not. */
        const char *account = NULL;
        int answered = registrar_authenticate(cs->registrar, irq, sip, &account);
        if (answered) {
            msg_destroy(msg);
            nta_incoming_destroy(irq);
            return 0;
        }
        const struct account_def *acc =
            (const void *)config_find(cs->cfg, KIND_ACCOUNT, account);
        m = acc ? (const void *)config_find(cs->cfg, KIND_MAPPING_GATEWAY, acc->mapping_gateway)
                : NULL;
    }
    if (!m) {
        msg_destroy(msg);
        log_info("call", "INVITE from unknown source %s: 403", ip);
        return 403;
    }
    if (m->line_limit >= 0 && counter_value(&cs->mgw, m->head.name) >= (unsigned)m->line_limit) {
        msg_destroy(msg);
        log_info("call", "INVITE from %s: mapping gateway %s at its line limit %d", ip,
                 m->head.name, m->line_limit);
        nta_incoming_treply(irq, 503, "Line Limit Reached", TAG_END());
        nta_incoming_destroy(irq);
        return 0;
    }
    struct call *c = calloc(1, sizeof *c);
    if (!c) {
        msg_destroy(msg);
        return 500;
    }
    c->cs = cs;
    c->id = cs->next_id++;
    c->a_msg = msg;
    c->a_irq = irq;
    c->a_max_forwards = mf > 70 ? 70 : mf;
    c->late_offer = !sip->sip_payload || sip->sip_payload->pl_len == 0;
    struct record *r = &c->rec;
    char **texts[] = {&c->b_ruri, &c->b_addr, &c->last_reason, &r->attempt, &r->reason};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        *texts[i] = empty_text;
    r->routed_callee = r->routing_gateway = empty_text;
    r->start = (long long)time(NULL);
    char callee[NUM] = "", number[NUM] = "";
    if (m->callee_from == CALLEE_FROM_REQUEST_LINE)
        copy_user(callee, sizeof callee, sip->sip_request->rq_url);
    else
        copy_user(callee, sizeof callee, sip->sip_to ? sip->sip_to->a_url : NULL);
    switch (m->caller_from) {
    case CALLER_FROM_RPID:
        user_of_value(unknown_header(sip, "Remote-Party-ID"), number, sizeof number);
        break;
    case CALLER_FROM_PAI:
        user_of_value(unknown_header(sip, "P-Asserted-Identity"), number, sizeof number);
        break;
    case CALLER_FROM_DISPLAY:
        display_of(sip->sip_from, number, sizeof number);
        break;
    default:
        break;
    }
    if (!number[0])
        copy_user(number, sizeof number, sip->sip_from ? sip->sip_from->a_url : NULL);
    set_fixed(r, sip->sip_call_id->i_id, number, callee, m->head.name);
    counter_add(&cs->mgw, r->mapping_gateway, 1);

    c->prev = cs->tail;
    if (cs->tail)
        cs->tail->next = c;
    else
        cs->head = c;
    cs->tail = c;
    cs->count++;

    c->a_leg = nta_leg_tcreate(cs->nta, a_leg_request, c, SIPTAG_CALL_ID(sip->sip_call_id),
                               SIPTAG_FROM(sip->sip_to), SIPTAG_TO(sip->sip_from), TAG_END());
    if (!c->a_leg) {
        fail_call(c, 500, NULL, "switch");
        return 0;
    }
    nta_leg_tag(c->a_leg, NULL);
    nta_incoming_tag(irq, nta_leg_get_tag(c->a_leg));
    nta_leg_server_route(c->a_leg, sip->sip_record_route, sip->sip_contact);
    nta_incoming_bind(irq, on_a_ack_cancel, c);
    nta_incoming_treply(irq, SIP_100_TRYING, TAG_END());
    log_info("call", "%" PRIu64 ": INVITE %s -> %s from %s (%s)", c->id, r->caller, r->callee,
             m->head.name, ip);
    start_routing(c);
    return 0;
}

/* ---- Operator actions and shutdown ---------------------------------------- */

/* End call c from the switch side. */
static void hangup_switch(struct call *c, int status, const char *reason)
{
    if (c->state == ST_ANSWERED) {
        release_acks(c); /* a late offer never ACKed: ACK, then BYE */
        send_bye(c->a_leg, NULL, NULL);
        send_bye(c->b_leg, NULL, NULL);
        end_call(c, "switch", c->rec.status, NULL);
        return;
    }
    if (c->b_orq) {
        nta_outgoing_t *cancel = nta_outgoing_tcancel(c->b_orq, NULL, NULL, TAG_END());
        if (cancel)
            nta_outgoing_destroy(cancel);
    }
    fail_call(c, status, reason, "switch");
}

static void fill_info(const struct call *c, struct call_info *out)
{
    out->id = c->id;
    out->state = statename(c->state);
    out->caller = c->rec.caller;
    out->callee = c->rec.callee;
    out->routed_callee = c->rec.routed_callee;
    out->mapping_gateway = c->rec.mapping_gateway;
    out->routing_gateway = c->rec.routing_gateway;
    out->call_id = c->rec.call_id;
    out->start = c->rec.start;
    out->answer = c->rec.answer;
}

int calls_visit(struct calls *cs, call_visit_h *fn, void *arg)
{
    struct call_info info;
    for (struct call *c = cs->head; c; c = c->next) {
        fill_info(c, &info);
        int rc = fn(&info, arg);
        if (rc)
            return rc;
    }
    return 0;
}

static struct call *find(struct calls *cs, uint64_t id)
{
    for (struct call *c = cs->head; c; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

int calls_info(struct calls *cs, uint64_t id, struct call_info *out)
{
    struct call *c = find(cs, id);
    if (!c)
        return -ENOENT;
    fill_info(c, out);
    return 0;
}

int calls_hangup(struct calls *cs, uint64_t id)
{
    struct call *c = find(cs, id);
    if (!c)
        return -ENOENT;
    hangup_switch(c, 503, "Call Terminated");
    kick(cs);
    return 0;
}

static void shutdown_check(struct calls *cs)
{
    if (cs->shutdown_done && cs->shutdown_pending == 0) {
        void (*done)(void *) = cs->shutdown_done;
        cs->shutdown_done = NULL;
        done(cs->shutdown_arg);
    }
}

static int on_shutdown_bye(void *magic, nta_outgoing_t *orq, sip_t const *sip)
{
    struct calls *cs = magic;
    int status = sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (status < 200)
        return 0;
    for (size_t i = 0; i < cs->nbyes; i++)
        if (cs->byes[i] == orq)
            cs->byes[i] = NULL;
    nta_outgoing_destroy(orq);
    if (cs->shutdown_pending)
        cs->shutdown_pending--;
    shutdown_check(cs);
    return 0;
}

void calls_shutdown(struct calls *cs, void (*done)(void *arg), void *arg)
{
    cs->stopping = true;
    gwcheck_apply(cs->checks, NULL); /* no more OPTIONS */
    cs->shutdown_done = done;
    cs->shutdown_arg = arg;
    cs->shutdown_pending = 0;
    while (cs->head) {
        struct call *c = cs->head;
        if (c->state == ST_ANSWERED) {
            release_acks(c);
            nta_outgoing_t *a = nta_outgoing_tcreate(c->a_leg, on_shutdown_bye, (void *)cs, NULL,
                                                     SIP_METHOD_BYE, NULL, TAG_END());
            nta_outgoing_t *b = nta_outgoing_tcreate(c->b_leg, on_shutdown_bye, (void *)cs, NULL,
                                                     SIP_METHOD_BYE, NULL, TAG_END());
            nta_outgoing_t **grown = realloc(cs->byes, (cs->nbyes + 2) * sizeof *grown);
            if (grown) {
                cs->byes = grown;
                if (a)
                    cs->byes[cs->nbyes++] = a, cs->shutdown_pending++;
                if (b)
                    cs->byes[cs->nbyes++] = b, cs->shutdown_pending++;
            }
            end_call(c, "switch", c->rec.status, NULL);
        } else {
            hangup_switch(c, 503, "Switch Shutting Down");
        }
    }
    kick(cs);
    shutdown_check(cs);
}
