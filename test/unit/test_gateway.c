/* Unit tests for core/sip/gateway.c, the gateways' run-time state: a routing
 * gateway is usable while under its line limit, online per its OPTIONS
 * checks, and (type registration) while its registration is active; each
 * answer names the first reason it is not. Also the privacy a gateway asks
 * for, its failover codes, mapping gateways by source and line limit, and
 * routing gateways by source (a carrier's own calls).
 * No SIP agent: OPTIONS checks cannot be sent, so each one is a miss. */
#include "check.h"
#include "cfgbuild.h"
#include "config.h"
#include "sip/gateway.h"
#include "sip/outreg.h"

#include <stdio.h>
#include <string.h>

#include <event2/event.h>

static struct event_base *base;
static struct config *cfg;
static struct gw_set *gws;

/* A loop and an empty policy set, for the test to fill. */
static void begin(void)
{
    base = event_base_new();
    CHECK(base != NULL);
    cfg = config_new();
}

/* The policy set is complete: the gateway module follows it. */
static void setup(struct outreg_set *outregs)
{
    cfg_finish(cfg);
    CHECK(gw_create(&gws, NULL, NULL, NULL, base, outregs) == 0);
    gw_apply(gws, cfg);
}

static void teardown(struct outreg_set *outregs)
{
    gw_destroy(gws);
    outreg_set_destroy(outregs);
    config_free(cfg);
    event_base_free(base);
    gws = NULL;
    cfg = NULL;
    base = NULL;
}

static void line_limit(void)
{
    begin();
    cfg_rgw(cfg, "two", "10.0.0.1:5060", NULL)->line_limit = 2;
    cfg_rgw(cfg, "zero", "10.0.0.2:5060", NULL)->line_limit = 0;
    cfg_rgw(cfg, "unlimited", "10.0.0.3:5060", NULL);
    setup(NULL);
    static const struct {
        int take; /* +1 take, -1 release, 0 just look */
        unsigned calls;
        enum gw_verdict verdict;
    } steps[] = {
        {0, 0, GW_USABLE},  {+1, 1, GW_USABLE},   {+1, 2, GW_AT_LIMIT},
        {-1, 1, GW_USABLE}, {-1, 0, GW_USABLE},   {-1, 0, GW_USABLE}, /* never below 0 */
        {+1, 1, GW_USABLE}, {+1, 2, GW_AT_LIMIT},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (steps[i].take > 0)
            gw_routing_take(gws, "two");
        else if (steps[i].take < 0)
            gw_routing_release(gws, "two");
        CHECK(gw_routing_calls(gws, "two") == steps[i].calls);
        CHECK(gw_usable(gws, "two") == steps[i].verdict);
        if (gw_usable(gws, "two") != steps[i].verdict)
            fprintf(stderr, "  step %zu: verdict %d\n", i, (int)gw_usable(gws, "two"));
        CHECK(gw_online(gws, "two")); /* the line limit is not about being online */
    }
    CHECK(gw_usable(gws, "zero") == GW_AT_LIMIT);
    for (int i = 0; i < 1000; i++)
        gw_routing_take(gws, "unlimited");
    CHECK(gw_usable(gws, "unlimited") == GW_USABLE);
    CHECK(gw_routing_calls(gws, "unlimited") == 1000);
    CHECK(gw_usable(gws, "ghost") == GW_UNKNOWN);
    CHECK(!gw_online(gws, "ghost"));
    CHECK(gw_routing_calls(gws, "ghost") == 0);
    teardown(NULL);
}

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

/* Run the loop for `ms`. */
static void run_for(unsigned ms)
{
    struct event *t = evtimer_new(base, stop_loop, base);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t, &tv);
    event_base_dispatch(base);
    event_free(t);
}

static void offline_after_missed_checks(void)
{
    begin();
    cfg_rgw(cfg, "checked", "127.0.0.1:9", NULL)->options_check = 1;
    cfg_rgw(cfg, "unchecked", "127.0.0.1:9", NULL);
    setup(NULL);
    /* A gateway starts online; the first check goes out at once. */
    CHECK(gw_online(gws, "checked"));
    run_for(300);
    CHECK(gw_online(gws, "checked")); /* one miss is not enough */
    CHECK(gw_usable(gws, "checked") == GW_USABLE);
    run_for(1000); /* the second check, a second later */
    CHECK(!gw_online(gws, "checked"));
    CHECK(gw_usable(gws, "checked") == GW_OFFLINE);
    CHECK(gw_online(gws, "unchecked"));
    CHECK(gw_usable(gws, "unchecked") == GW_USABLE);

    /* A policy without the check: online again at once. */
    struct config *before = cfg;
    cfg = config_new();
    cfg_rgw(cfg, "checked", "127.0.0.1:9", NULL);
    cfg_finish(cfg);
    gw_apply(gws, cfg);
    config_free(before);
    CHECK(gw_online(gws, "checked"));
    CHECK(gw_usable(gws, "checked") == GW_USABLE);
    teardown(NULL);
}

static void stopped_checks_leave_gateways_online(void)
{
    begin();
    cfg_rgw(cfg, "checked", "127.0.0.1:9", NULL)->options_check = 1;
    setup(NULL);
    run_for(1300);
    CHECK(gw_usable(gws, "checked") == GW_OFFLINE);
    gw_stop_checks(gws); /* shutdown: no more OPTIONS, nothing left armed */
    CHECK(gw_usable(gws, "checked") == GW_USABLE);
    CHECK(event_base_dispatch(base) == 1);
    teardown(NULL);
}

static void registration_not_active(void)
{
    /* Without the registration module no registration gateway is usable. */
    begin();
    cfg_registration(cfg, "r");
    cfg_rgw_registered(cfg, "via-r", "r");
    cfg_rgw(cfg, "static", "10.0.0.1:5060", NULL);
    setup(NULL);
    CHECK(gw_usable(gws, "via-r") == GW_NOT_REGISTERED);
    CHECK(!gw_online(gws, "via-r"));
    CHECK(gw_usable(gws, "static") == GW_USABLE);
    teardown(NULL);

    /* A registration still registering (no agent: it never will be). */
    begin();
    cfg_registration(cfg, "r");
    cfg_rgw_registered(cfg, "via-r", "r")->line_limit = 0;
    struct outreg_set *outregs = NULL;
    CHECK(outreg_set_create(&outregs, NULL, base, NULL) == 0);
    setup(outregs);
    outreg_set_apply(outregs, cfg);
    struct outreg *r = outreg_find(outregs, "r");
    CHECK(r && outreg_state(r) != OUTREG_ACTIVE);
    /* The registration is the first reason, before the line limit. */
    CHECK(gw_usable(gws, "via-r") == GW_NOT_REGISTERED);
    CHECK(!gw_online(gws, "via-r"));
    teardown(outregs);
}

static void privacy_per_gateway(void)
{
    begin();
    cfg_registration(cfg, "hidden")->privacy = PRIVACY_ID;
    cfg_registration(cfg, "plain"); /* the switch's user_agent_privacy: ignore */
    struct routing_gateway_def *h = cfg_rgw_registered(cfg, "via-hidden", "hidden");
    struct routing_gateway_def *p = cfg_rgw_registered(cfg, "via-plain", "plain");
    struct routing_gateway_def *s = cfg_rgw(cfg, "static", "10.0.0.1:5060", NULL);
    struct outreg_set *outregs = NULL;
    CHECK(outreg_set_create(&outregs, NULL, base, NULL) == 0);
    setup(outregs);
    outreg_set_apply(outregs, cfg);
    CHECK(gw_privacy(gws, h) == PRIVACY_ID);
    CHECK(gw_privacy(gws, p) == PRIVACY_IGNORE);
    CHECK(gw_privacy(gws, s) == PRIVACY_IGNORE);
    teardown(outregs);
}

static void failover_codes(void)
{
    begin();
    struct routing_gateway_def *own = cfg_rgw(cfg, "own", "10.0.0.1:5060", NULL);
    own->failover_codes.given = true;
    status_set_add(&own->failover_codes, 486);
    cfg_rgw(cfg, "switch", "10.0.0.2:5060", NULL);
    setup(NULL);
    static const struct {
        const char *gateway;
        int status;
        bool failover;
    } cases[] = {
        {"own", 486, true},           {"own", 503, false},   /* its own list only */
        {"switch", 503, true},        {"switch", 408, true}, /* the switch's default */
        {"switch", 486, false},       {"switch", 404, false},
        {"endpoint:1001", 480, true}, /* not a routing gateway: the switch's */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(gw_failover(gws, cases[i].gateway, cases[i].status) == cases[i].failover);
    teardown(NULL);
}

static void mapping_gateways(void)
{
    begin();
    cfg_mgw(cfg, "cust", "192.0.2.1,198.51.100.7:5070")->line_limit = 1;
    cfg_mgw(cfg, "v6", "2001:db8::1");
    cfg_mgw(cfg, "phones", "192.0.2.9")->type = MGW_REGISTER; /* by account, not source */
    setup(NULL);
    static const struct {
        const char *ip, *gateway; /* NULL: none */
    } cases[] = {
        {"192.0.2.1", "cust"}, {"198.51.100.7", "cust"}, /* the port is not compared */
        {"192.0.2.10", NULL},  {"192.0.2", NULL},        {"2001:db8::1", "v6"},
        {"2001:db8::", NULL},  {"192.0.2.9", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct mapping_gateway_def *m = gw_mapping_by_source(gws, cases[i].ip);
        CHECK(cases[i].gateway ? m && strcmp(m->head.name, cases[i].gateway) == 0 : !m);
    }
    const struct mapping_gateway_def *m = gw_mapping_by_source(gws, "192.0.2.1");
    CHECK(m && !gw_mapping_full(gws, m));
    gw_mapping_take(gws, "cust");
    CHECK(m && gw_mapping_full(gws, m));
    gw_mapping_release(gws, "cust");
    CHECK(m && !gw_mapping_full(gws, m));
    /* Mapping and routing counters are apart, even under one name. */
    gw_mapping_take(gws, "cust");
    CHECK(gw_routing_calls(gws, "cust") == 0);
    teardown(NULL);
}

/* Where an INVITE from a carrier comes from: a registration gateway by its
 * server and our Contact as Request-URI, a static one by IP and port; a
 * dynamic one needs the registrar (none here: never, and unusable). */
static void routing_gateways_by_source(void)
{
    begin();
    cfg_registration(cfg, "r"); /* server 127.0.0.1, username u */
    cfg_rgw_registered(cfg, "via-r", "r");
    cfg_rgw(cfg, "st", "10.0.0.1:5060", NULL);
    struct routing_gateway_def *d = cfg_rgw(cfg, "pbx", NULL, NULL);
    d->type = RGW_DYNAMIC;
    cfg_set_string(&d->account, "pbx");
    cfg_add(cfg, KIND_MAPPING_GATEWAY, "phones");
    struct account_def *acc = (void *)cfg_add(cfg, KIND_ACCOUNT, "pbx");
    cfg_set_string(&acc->password, "p");
    cfg_set_string(&acc->mapping_gateway, "phones");
    ((struct mapping_gateway_def *)config_find(cfg, KIND_MAPPING_GATEWAY, "phones"))
        ->type = MGW_REGISTER;
    struct outreg_set *outregs = NULL;
    CHECK(outreg_set_create(&outregs, NULL, base, NULL) == 0);
    setup(outregs);
    outreg_set_apply(outregs, cfg);
    struct outreg *r = outreg_find(outregs, "r");
    CHECK(r && strcmp(outreg_contact(r), "sip:u@127.0.0.1:5060") == 0);
    static const struct {
        const char *ruri, *ip;
        unsigned port;
        const char *gateway; /* NULL: none */
    } cases[] = {
        {"sip:u@127.0.0.1:5060", "127.0.0.1", 40000, "via-r"},
        {"sip:u@127.0.0.1;transport=udp", "127.0.0.1", 5060, "via-r"}, /* 5060 implied */
        {"sip:x@127.0.0.1:5060", "127.0.0.1", 5060, NULL}, /* not our Contact */
        {"sip:u@127.0.0.1:5070", "127.0.0.1", 5060, NULL}, /* nor this */
        {"sip:u@127.0.0.1:5060", "127.0.0.2", 5060, NULL}, /* not its server */
        {"sip:1555@192.0.2.1", "10.0.0.1", 5060, "st"},    /* IP and port */
        {"sip:1555@192.0.2.1", "10.0.0.1", 5070, NULL},
        {"sip:1555@192.0.2.1", "10.0.0.11", 5060, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[128];
        url_t url[1];
        snprintf(buf, sizeof buf, "%s", cases[i].ruri);
        CHECK(url_d(url, buf) == 0);
        const struct routing_gateway_def *g =
            gw_routing_by_source(gws, url, cases[i].ip, cases[i].port);
        CHECK(cases[i].gateway ? g && strcmp(g->head.name, cases[i].gateway) == 0 : !g);
        if (cases[i].gateway ? !g || strcmp(g->head.name, cases[i].gateway) != 0
                             : g != NULL)
            fprintf(stderr, "  case %zu: %s\n", i, g ? g->head.name : "none");
    }
    char addr[64];
    CHECK(gw_usable(gws, "pbx") == GW_NOT_REGISTERED && !gw_online(gws, "pbx"));
    CHECK(gw_address(gws, d, addr, sizeof addr) < 0);
    CHECK(gw_address(gws, gw_find(gws, "st"), addr, sizeof addr) == 0 &&
          strcmp(addr, "10.0.0.1:5060") == 0);
    teardown(outregs);
}

TEST_MAIN(CASE(line_limit), CASE(offline_after_missed_checks),
          CASE(stopped_checks_leave_gateways_online), CASE(registration_not_active),
          CASE(privacy_per_gateway), CASE(failover_codes), CASE(mapping_gateways),
          CASE(routing_gateways_by_source))
