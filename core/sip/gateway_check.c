/* OPTIONS checks of routing gateways. See gateway_check.h. */
#define NTA_OUTGOING_MAGIC_T struct gwentry

#include "random.h"
#include "sip/gateway_check.h"
#include "config.h"
#include "evport.h"
#include "log.h"
#include "sip/transport.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>

struct gwentry {
    struct gwentry *next;
    struct gw_checks *set;
    char *name, *address;
    int interval;  /* seconds */
    int transport; /* enum sip_transport */
    bool online;
    bool seen; /* still in the policy (during apply) */
    bool in_create;
    int create_status;
    unsigned misses;
    nta_outgoing_t *orq;
    struct event *tick;    /* the next check */
    struct event *timeout; /* the check in flight */
};

struct gw_checks {
    nta_agent_t *nta;
    nta_leg_t *leg;
    su_root_t *root;
    struct event_base *base;
    struct gwentry *head;
    char host[128];
};

static void kick(struct gw_checks *s)
{
    if (s->root)
        evport_rearm(s->root);
}

static struct gwentry *find(const struct gw_checks *s, const char *name)
{
    for (struct gwentry *e = s ? s->head : NULL; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

bool gw_check_checked(const struct gw_checks *s, const char *name)
{
    return find(s, name) != NULL;
}

bool gw_check_alive(const struct gw_checks *s, const char *name)
{
    struct gwentry *e = find(s, name);
    return !e || e->online;
}

static void drop_orq(struct gwentry *e)
{
    if (e->orq) {
        nta_outgoing_destroy(e->orq);
        e->orq = NULL;
    }
    event_del(e->timeout);
}

static void missed(struct gwentry *e, const char *why)
{
    drop_orq(e);
    e->misses++;
    log_debug("gwcheck", "%s: OPTIONS to %s: %s (%u in a row)", e->name, e->address, why,
              e->misses);
    if (e->online && e->misses >= GW_CHECK_MISSES) {
        e->online = false;
        log_warn("gwcheck", "%s: offline (%u OPTIONS to %s unanswered)", e->name,
                 e->misses, e->address);
    }
}

static void answered(struct gwentry *e, int status)
{
    drop_orq(e);
    e->misses = 0;
    if (!e->online) {
        e->online = true;
        log_info("gwcheck", "%s: online (OPTIONS answered %d)", e->name, status);
    }
}

static int on_response(struct gwentry *e, nta_outgoing_t *orq, sip_t const *sip)
{
    int status =
        sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (status < 200)
        return 0;
    if (e->in_create) {
        /* Failed inside nta_outgoing_tcreate(): the sender handles it. */
        e->create_status = status;
        nta_outgoing_destroy(orq);
        return 0;
    }
    if (orq != e->orq) {
        nta_outgoing_destroy(orq);
        return 0;
    }
    if (!sip || nta_sip_is_internal(sip)) {
        char why[48];
        snprintf(why, sizeof why, "local %d", status);
        missed(e, why);
    } else {
        answered(e, status);
    }
    return 0;
}

static int timeout_of(const struct gwentry *e)
{
    return e->interval < GW_CHECK_TIMEOUT_MAX ? e->interval : GW_CHECK_TIMEOUT_MAX;
}

static void send_check(struct gwentry *e)
{
    struct gw_checks *s = e->set;
    char ruri[300], from[300], call_id[40], tag[20];
    transport_uri(ruri, sizeof ruri, NULL, e->address, 0, e->transport);
    random_hex(tag, 8);
    random_hex(call_id, 16);
    snprintf(from, sizeof from, "<sip:moonswitch@%s>;tag=%s", s->host, tag);
    e->in_create = true;
    e->create_status = 0;
    nta_outgoing_t *orq = nta_outgoing_tcreate(
        s->leg, on_response, e, NULL, SIP_METHOD_OPTIONS, URL_STRING_MAKE(ruri),
        SIPTAG_FROM_STR(from), SIPTAG_TO_STR(ruri), SIPTAG_CALL_ID_STR(call_id),
        SIPTAG_MAX_FORWARDS_STR("70"), SIPTAG_ACCEPT_STR("application/sdp"), TAG_END());
    e->in_create = false;
    if (!orq || e->create_status) {
        if (orq)
            nta_outgoing_destroy(orq);
        missed(e, "cannot send");
        return;
    }
    e->orq = orq;
    struct timeval tv = {timeout_of(e), 0};
    evtimer_add(e->timeout, &tv);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct gwentry *e = arg;
    (void)fd;
    (void)what;
    if (e->orq)
        missed(e, "no answer"); /* only when the timeout did not run first */
    send_check(e);
    struct timeval tv = {e->interval, 0};
    evtimer_add(e->tick, &tv);
    kick(e->set);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct gwentry *e = arg;
    (void)fd;
    (void)what;
    if (e->orq)
        missed(e, "no answer");
    kick(e->set);
}

static void entry_free(struct gwentry *e)
{
    if (e->orq)
        nta_outgoing_destroy(e->orq);
    if (e->tick)
        event_free(e->tick);
    if (e->timeout)
        event_free(e->timeout);
    free(e->name);
    free(e->address);
    free(e);
}

/* (Re)start the checks of e from now, online. */
static void restart(struct gwentry *e)
{
    drop_orq(e);
    e->online = true;
    e->misses = 0;
    struct timeval now = {0, 0};
    evtimer_add(e->tick, &now);
}

static struct gwentry *entry_new(struct gw_checks *s, const struct routing_gateway_def *g)
{
    struct gwentry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->set = s;
    e->name = strdup(g->head.name);
    e->address = strdup(g->address);
    e->interval = g->options_check;
    e->transport = g->transport;
    e->tick = evtimer_new(s->base, on_tick, e);
    e->timeout = evtimer_new(s->base, on_timeout, e);
    if (!e->name || !e->address || !e->tick || !e->timeout) {
        entry_free(e);
        return NULL;
    }
    return e;
}

int gw_check_create(struct gw_checks **sp, nta_agent_t *nta, nta_leg_t *leg,
                    su_root_t *root, struct event_base *base)
{
    struct gw_checks *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->nta = nta;
    s->leg = leg;
    s->root = root;
    s->base = base;
    sip_contact_t const *me = nta ? nta_agent_contact(nta) : NULL;
    snprintf(s->host, sizeof s->host, "%s",
             me && me->m_url->url_host ? me->m_url->url_host : "localhost");
    *sp = s;
    return 0;
}

void gw_check_destroy(struct gw_checks *s)
{
    if (!s)
        return;
    while (s->head) {
        struct gwentry *e = s->head;
        s->head = e->next;
        entry_free(e);
    }
    free(s);
}

void gw_check_apply(struct gw_checks *s, const struct config *cfg)
{
    if (!s)
        return;
    for (struct gwentry *e = s->head; e; e = e->next)
        e->seen = false;
    size_t n = cfg ? config_count(cfg, KIND_ROUTING_GATEWAY) : 0;
    for (size_t i = 0; i < n; i++) {
        const struct routing_gateway_def *g =
            (const void *)config_at(cfg, KIND_ROUTING_GATEWAY, i);
        if (g->options_check <= 0 || !g->address)
            continue;
        struct gwentry *e = find(s, g->head.name);
        if (e && (strcmp(e->address, g->address) != 0 ||
                  e->interval != g->options_check || e->transport != g->transport)) {
            char *addr = strdup(g->address);
            if (addr) {
                free(e->address);
                e->address = addr;
                e->interval = g->options_check;
                e->transport = g->transport;
                log_info("gwcheck", "%s: checks start over (OPTIONS to %s every %d s)",
                         e->name, e->address, e->interval);
                restart(e);
            }
        } else if (!e) {
            e = entry_new(s, g);
            if (!e) {
                log_warn("gwcheck", "%s: out of memory: not checked", g->head.name);
                continue;
            }
            e->next = s->head;
            s->head = e;
            log_info("gwcheck", "%s: OPTIONS to %s every %d s", e->name, e->address,
                     e->interval);
            restart(e);
        }
        e->seen = true;
    }
    for (struct gwentry **p = &s->head; *p;) {
        struct gwentry *e = *p;
        if (e->seen) {
            p = &e->next;
            continue;
        }
        log_info("gwcheck", "%s: no longer checked", e->name);
        *p = e->next;
        entry_free(e);
    }
    kick(s);
}
