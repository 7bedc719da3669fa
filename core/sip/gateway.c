/* Gateways at run time: counters, usability, privacy, failover codes. The
 * OPTIONS checks are gateway_check.c. See gateway.h. */
#include "sip/gateway.h"
#include "config.h"
#include "sip/gateway_check.h"
#include "sip/outreg.h"
#include "sip/registrar.h"
#include "sip/transport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Calls in progress per gateway name. */
struct counter {
    char *name;
    unsigned calls;
};

struct counters {
    struct counter *v;
    size_t n, cap;
};

struct gw_set {
    const struct config *cfg;
    struct outreg_set *outregs;  /* may be NULL */
    struct registrar *registrar; /* may be NULL */
    struct gw_checks *checks;    /* OPTIONS checks of routing gateways */
    struct counters rgw, mgw;    /* routing and mapping gateways */
};

/* ---- Counters -------------------------------------------------------------- */

static struct counter *counter_find(const struct counters *cn, const char *name)
{
    for (size_t i = 0; i < cn->n; i++)
        if (strcmp(cn->v[i].name, name) == 0)
            return &cn->v[i];
    return NULL;
}

static struct counter *counter_get(struct counters *cn, const char *name)
{
    struct counter *k = counter_find(cn, name);
    if (k)
        return k;
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
    const struct counter *k = counter_find(cn, name);
    return k ? k->calls : 0;
}

static void counter_take(struct counters *cn, const char *name)
{
    struct counter *k = counter_get(cn, name);
    if (k)
        k->calls++;
}

static void counter_release(struct counters *cn, const char *name)
{
    struct counter *k = counter_find(cn, name);
    if (k && k->calls > 0)
        k->calls--;
}

static void counters_free(struct counters *cn)
{
    for (size_t i = 0; i < cn->n; i++)
        free(cn->v[i].name);
    free(cn->v);
}

/* ---- Lifetime -------------------------------------------------------------- */

int gw_create(struct gw_set **sp, nta_agent_t *nta, nta_leg_t *leg, su_root_t *root,
              struct event_base *base, struct outreg_set *outregs)
{
    struct gw_set *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->outregs = outregs;
    if (gw_check_create(&s->checks, nta, leg, root, base) < 0) {
        free(s);
        return -ENOMEM;
    }
    *sp = s;
    return 0;
}

void gw_destroy(struct gw_set *s)
{
    if (!s)
        return;
    gw_check_destroy(s->checks);
    counters_free(&s->rgw);
    counters_free(&s->mgw);
    free(s);
}

void gw_apply(struct gw_set *s, const struct config *cfg)
{
    s->cfg = cfg;
    gw_check_apply(s->checks, cfg);
}

void gw_stop_checks(struct gw_set *s)
{
    gw_check_apply(s->checks, NULL);
}

void gw_set_registrar(struct gw_set *s, struct registrar *r)
{
    s->registrar = r;
}

const struct routing_gateway_def *gw_find(const struct gw_set *s, const char *name)
{
    return s->cfg ? (const void *)config_find(s->cfg, KIND_ROUTING_GATEWAY, name) : NULL;
}

/* ---- Addresses -------------------------------------------------------------- */

/* Does "host:port" (or "[v6]:port", or a bare host) name host `ip`? */
static bool addr_has_host(const char *addr, const char *ip)
{
    size_t len = strlen(ip);
    if (addr[0] == '[')
        return strncmp(addr + 1, ip, len) == 0 && addr[len + 1] == ']';
    return strncmp(addr, ip, len) == 0 &&
           (addr[len] == '\0' || (addr[len] == ':' && !strchr(ip, ':')));
}

/* The binding a call to an account goes to: the most recent one. */
struct pick {
    const char *ip; /* with ip: any binding from there */
    bool found;
    long long expires_at;
    char *target, *contact;
    size_t targetlen, contactlen;
    int transport; /* enum sip_transport */
};

static int pick_binding(const struct registrar_binding *b, void *arg)
{
    struct pick *p = arg;
    if (p->ip) {
        /* Identification: any binding from (or at) that address. */
        const char *c = strchr(b->contact, ':');
        const char *at = c ? strchr(c, '@') : NULL;
        const char *host = at ? at + 1 : c ? c + 1 : "";
        size_t len = strlen(p->ip);
        p->found = (b->source && addr_has_host(b->source, p->ip)) ||
                   (strncmp(host, p->ip, len) == 0 && strchr(":;>", host[len]));
        return p->found;
    }
    if (p->found && b->expires_at <= p->expires_at)
        return 0;
    url_t url[1];
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s", b->contact);
    bool parsed = url_d(url, tmp) == 0 && url->url_host;
    /* Behind NAT the Contact is unreachable: send where the REGISTER came
     * from (request address "socket"). */
    if (b->nat && b->source && *b->source)
        snprintf(p->target, p->targetlen, "%s", b->source);
    else if (parsed)
        snprintf(p->target, p->targetlen, "%s:%s", url->url_host,
                 url->url_port ? url->url_port : "5060");
    else
        return 0;
    p->transport = transport_endpoint(b->transport, b->source, p->target, p->targetlen);
    if (p->contact)
        snprintf(p->contact, p->contactlen, "%s", b->contact);
    p->found = true;
    p->expires_at = b->expires_at;
    return 0;
}

int gw_account_target(const struct gw_set *s, const char *name, char *out, size_t outlen,
                      char *contact, size_t contactlen)
{
    char ignore[1];
    struct pick p = {.target = outlen ? out : ignore,
                     .targetlen = outlen ? outlen : sizeof ignore,
                     .contact = contactlen ? contact : NULL,
                     .contactlen = contactlen};
    if (!s->registrar || !name)
        return -ENOENT;
    registrar_bindings(s->registrar, name, pick_binding, &p);
    return p.found ? p.transport : -ENOENT;
}

int gw_address(const struct gw_set *s, const struct routing_gateway_def *g, char *out,
               size_t outlen)
{
    if (g->type == RGW_DYNAMIC)
        return gw_account_target(s, g->account, out, outlen, NULL, 0);
    if (!g->address)
        return -ENOENT;
    snprintf(out, outlen, "%s", g->address);
    return 0;
}

/* ---- Routing gateways ------------------------------------------------------ */

/* Its registration active (type registration), its account registered
 * (type dynamic); true for static gateways. */
static bool registration_active(const struct gw_set *s,
                                const struct routing_gateway_def *g)
{
    if (g->type == RGW_DYNAMIC)
        return gw_account_target(s, g->account, NULL, 0, NULL, 0) == 0;
    if (g->type != RGW_REGISTRATION)
        return true;
    struct outreg *r =
        s->outregs && g->registration ? outreg_find(s->outregs, g->registration) : NULL;
    return r && outreg_state(r) == OUTREG_ACTIVE;
}

enum gw_verdict gw_usable(const struct gw_set *s, const char *name)
{
    const struct routing_gateway_def *g = gw_find(s, name);
    if (!g)
        return GW_UNKNOWN;
    if (!registration_active(s, g))
        return GW_NOT_REGISTERED;
    if (!gw_check_alive(s->checks, name))
        return GW_OFFLINE;
    if (g->line_limit >= 0 && counter_value(&s->rgw, name) >= (unsigned)g->line_limit)
        return GW_AT_LIMIT;
    if (!g->address && g->type != RGW_DYNAMIC)
        return GW_NO_ADDRESS; /* a dynamic one has its binding's */
    return GW_USABLE;
}

bool gw_online(const struct gw_set *s, const char *name)
{
    const struct routing_gateway_def *g = gw_find(s, name);
    return g && registration_active(s, g) && gw_check_alive(s->checks, name);
}

void gw_routing_take(struct gw_set *s, const char *name)
{
    counter_take(&s->rgw, name);
}

void gw_routing_release(struct gw_set *s, const char *name)
{
    counter_release(&s->rgw, name);
}

unsigned gw_routing_calls(const struct gw_set *s, const char *name)
{
    return counter_value(&s->rgw, name);
}

int gw_privacy(const struct gw_set *s, const struct routing_gateway_def *g)
{
    if (g->type != RGW_REGISTRATION || !g->registration || !s->outregs)
        return PRIVACY_IGNORE;
    struct outreg *r = outreg_find(s->outregs, g->registration);
    return r ? outreg_privacy(r) : PRIVACY_IGNORE;
}

bool gw_failover(const struct gw_set *s, const char *name, int status)
{
    const struct routing_gateway_def *g = gw_find(s, name);
    const struct status_set *set = g && g->failover_codes.given
                                       ? &g->failover_codes
                                       : &config_switch(s->cfg)->sip.failover_codes;
    return status_set_has(set, status);
}

/* ---- Which routing gateway a request comes from ----------------------------- */

/* Does the Request-URI name Contact `contact` ("sip:user@host:port", as
 * outreg makes it)? User and host as written, the port 5060 when absent. */
static bool ruri_is_contact(const url_t *ruri, const char *contact)
{
    const char *user = strchr(contact, ':');
    const char *at = user ? strchr(user, '@') : NULL;
    if (!at || !ruri->url_user || !ruri->url_host)
        return false;
    user++;
    size_t ulen = (size_t)(at - user);
    if (strlen(ruri->url_user) != ulen || strncmp(ruri->url_user, user, ulen) != 0)
        return false;
    const char *host = at + 1, *colon = strrchr(host, ':'), *close = strchr(host, ']');
    if (close && colon && colon < close)
        colon = NULL; /* "[v6]" without a port */
    size_t hlen = colon ? (size_t)(colon - host) : strlen(host);
    const char *rhost = ruri->url_host;
    size_t rlen = strlen(rhost);
    if (hlen >= 2 && host[0] == '[' && rhost[0] != '[') {
        host++;
        hlen -= 2;
    }
    if (rlen != hlen || strncasecmp(rhost, host, hlen) != 0)
        return false;
    const char *port = colon ? colon + 1 : "5060";
    const char *rport = ruri->url_port ? ruri->url_port : "5060";
    return strcmp(port, rport) == 0;
}

static bool from_registration(const struct gw_set *s, const struct routing_gateway_def *g,
                              const url_t *ruri, const char *ip)
{
    struct outreg *r =
        s->outregs && g->registration ? outreg_find(s->outregs, g->registration) : NULL;
    if (!r || !ruri)
        return false;
    const char *server = outreg_server(r);
    bool from_server = (server && strcmp(server, ip) == 0) ||
                       (g->address && addr_has_host(g->address, ip));
    return from_server && ruri_is_contact(ruri, outreg_contact(r));
}

static bool from_binding(const struct gw_set *s, const struct routing_gateway_def *g,
                         const char *ip)
{
    struct pick p = {.ip = ip};
    if (s->registrar && g->account)
        registrar_bindings(s->registrar, g->account, pick_binding, &p);
    return p.found;
}

/* Is "host:port" exactly `ip`:`port`? */
static bool addr_is(const char *addr, const char *ip, unsigned port)
{
    const char *colon = strrchr(addr, ':');
    return colon && addr_has_host(addr, ip) && (unsigned)atoi(colon + 1) == port;
}

const struct routing_gateway_def *gw_routing_by_source(const struct gw_set *s,
                                                       const url_t *ruri, const char *ip,
                                                       unsigned port)
{
    size_t n = s->cfg ? config_count(s->cfg, KIND_ROUTING_GATEWAY) : 0;
    if (!*ip)
        return NULL;
    /* Most specific first: a registration names its Contact; a binding and
     * a static address only an IP. */
    static const int order[] = {RGW_REGISTRATION, RGW_DYNAMIC, RGW_STATIC};
    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++)
        for (size_t i = 0; i < n; i++) {
            const struct routing_gateway_def *g =
                (const void *)config_at(s->cfg, KIND_ROUTING_GATEWAY, i);
            if (g->type != order[k])
                continue;
            bool match = g->type == RGW_REGISTRATION ? from_registration(s, g, ruri, ip)
                         : g->type == RGW_DYNAMIC    ? from_binding(s, g, ip)
                                                     : addr_is(g->address, ip, port);
            if (match)
                return g;
        }
    return NULL;
}

/* ---- Mapping gateways ------------------------------------------------------ */

const struct mapping_gateway_def *gw_mapping_by_source(const struct gw_set *s,
                                                       const char *ip)
{
    size_t n = s->cfg ? config_count(s->cfg, KIND_MAPPING_GATEWAY) : 0;
    for (size_t i = 0; i < n; i++) {
        const struct mapping_gateway_def *m =
            (const void *)config_at(s->cfg, KIND_MAPPING_GATEWAY, i);
        if (m->type != MGW_STATIC)
            continue;
        for (size_t k = 0; k < m->addresses.n; k++)
            if (addr_has_host(m->addresses.v[k], ip))
                return m;
    }
    return NULL;
}

bool gw_mapping_full(const struct gw_set *s, const struct mapping_gateway_def *m)
{
    return m->line_limit >= 0 &&
           counter_value(&s->mgw, m->head.name) >= (unsigned)m->line_limit;
}

void gw_mapping_take(struct gw_set *s, const char *name)
{
    counter_take(&s->mgw, name);
}

void gw_mapping_release(struct gw_set *s, const char *name)
{
    counter_release(&s->mgw, name);
}
