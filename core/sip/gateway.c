/* Gateways at run time: counters, usability, privacy, failover codes. The
 * OPTIONS checks are gateway_check.c. See gateway.h. */
#include "sip/gateway.h"
#include "config.h"
#include "sip/gateway_check.h"
#include "sip/outreg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
    struct outreg_set *outregs; /* may be NULL */
    struct gw_checks *checks;   /* OPTIONS checks of routing gateways */
    struct counters rgw, mgw;   /* routing and mapping gateways */
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

const struct routing_gateway_def *gw_find(const struct gw_set *s, const char *name)
{
    return s->cfg ? (const void *)config_find(s->cfg, KIND_ROUTING_GATEWAY, name) : NULL;
}

/* ---- Routing gateways ------------------------------------------------------ */

static bool registration_active(const struct gw_set *s,
                                const struct routing_gateway_def *g)
{
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
    if (!g->address)
        return GW_NO_ADDRESS;
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

/* ---- Mapping gateways ------------------------------------------------------ */

const struct mapping_gateway_def *gw_mapping_by_source(const struct gw_set *s,
                                                       const char *ip)
{
    size_t n = s->cfg ? config_count(s->cfg, KIND_MAPPING_GATEWAY) : 0;
    size_t len = strlen(ip);
    for (size_t i = 0; i < n; i++) {
        const struct mapping_gateway_def *m =
            (const void *)config_at(s->cfg, KIND_MAPPING_GATEWAY, i);
        if (m->type != MGW_STATIC)
            continue;
        for (size_t k = 0; k < m->addresses.n; k++) {
            const char *a = m->addresses.v[k];
            if (strncmp(a, ip, len) == 0 &&
                (a[len] == '\0' || (a[len] == ':' && !strchr(ip, ':'))))
                return m;
        }
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
