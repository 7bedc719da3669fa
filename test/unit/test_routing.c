/* Unit tests for core/routing.c: gateways are ordered by their longest
 * matching prefix, then priority, then name; routing_next() passes over the
 * gateways that cannot take a call now (unknown, registration not active,
 * at their line limit, without an address) and comes back to one that can
 * again; callee_rewrite rules in the C subset and through a hook. */
#include "check.h"
#include "cfgbuild.h"
#include "config.h"
#include "routing.h"
#include "sip/gateway.h"

#include <stdio.h>
#include <string.h>

#include <event2/event.h>

static const char *order(const struct config *cfg, const char *callee, size_t max,
                         char *out, size_t outlen)
{
    const char *names[16];
    size_t n = routing_select(cfg, callee, names, max);
    return cfg_join(names, n, out, outlen);
}

static void longest_prefix_first(void)
{
    struct config *cfg = config_new();
    cfg_rgw(cfg, "uk", "10.0.0.1:5060", "44");
    cfg_rgw(cfg, "london", "10.0.0.2:5060", "4420,4421");
    cfg_rgw(cfg, "any", "10.0.0.3:5060", NULL);
    cfg_rgw(cfg, "fr", "10.0.0.4:5060", "33,0033");
    cfg_finish(cfg);
    static const struct {
        const char *callee, *order;
    } cases[] = {
        {"442071234567", "london uk any"},
        {"442171234567", "london uk any"},
        {"441611234567", "uk any"},
        {"33123", "fr any"},
        {"0033123", "fr any"},
        {"4", "any"},
        {"1555", "any"},
        {"", "any"},
    };
    char got[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        order(cfg, cases[i].callee, 16, got, sizeof got);
        CHECK(strcmp(got, cases[i].order) == 0);
        if (strcmp(got, cases[i].order) != 0)
            fprintf(stderr, "  %s: got \"%s\", want \"%s\"\n", cases[i].callee, got,
                    cases[i].order);
    }
    config_free(cfg);
}

static void priority_then_name(void)
{
    struct config *cfg = config_new();
    cfg_rgw(cfg, "b", "10.0.0.1:5060", "1")->priority = 5;
    cfg_rgw(cfg, "a", "10.0.0.2:5060", "1")->priority = 5;
    cfg_rgw(cfg, "c", "10.0.0.3:5060", "1")->priority = 1;
    cfg_rgw(cfg, "d", "10.0.0.4:5060", NULL)->priority = 0; /* shortest prefix: last */
    cfg_rgw(cfg, "e", "10.0.0.5:5060", "12")->priority = 9; /* longer prefix: first */
    cfg_finish(cfg);
    char got[256];
    CHECK(strcmp(order(cfg, "123", 16, got, sizeof got), "e c a b d") == 0);
    CHECK(strcmp(order(cfg, "13", 16, got, sizeof got), "c a b d") == 0);
    CHECK(strcmp(order(cfg, "123", 2, got, sizeof got), "e c") == 0); /* max */
    CHECK(strcmp(order(cfg, "123", 0, got, sizeof got), "") == 0);
    config_free(cfg);
}

static void no_gateways(void)
{
    struct config *cfg = config_new();
    cfg_finish(cfg);
    char got[64];
    CHECK(strcmp(order(cfg, "123", 16, got, sizeof got), "") == 0);
    config_free(cfg);
}

static void next_skips_unusable_gateways(void)
{
    struct event_base *base = event_base_new();
    struct config *cfg = config_new();
    cfg_registration(cfg, "r");
    cfg_rgw_registered(cfg, "reg", "r"); /* no registration module: never active */
    cfg_rgw(cfg, "zero", "10.0.0.1:5060", NULL)->line_limit = 0;
    cfg_rgw(cfg, "full", "10.0.0.2:5060", NULL)->line_limit = 1;
    cfg_rgw(cfg, "noaddr", NULL, NULL)->type = RGW_DYNAMIC;
    cfg_rgw(cfg, "ok", "10.0.0.3:5060", NULL);
    cfg_rgw(cfg, "ok2", "10.0.0.4:5060", NULL)->line_limit = 2;
    cfg_finish(cfg);
    struct gw_set *gws = NULL;
    CHECK(gw_create(&gws, NULL, NULL, NULL, base, NULL) == 0);
    gw_apply(gws, cfg);
    gw_routing_take(gws, "full");

    const char *names[] = {"ghost", "reg", "zero", "full", "noaddr", "ok", "ok2"};
    size_t n = sizeof names / sizeof names[0], next = 0;
    const struct routing_gateway_def *g = routing_next(gws, names, n, &next, 1);
    CHECK(g && strcmp(g->head.name, "ok") == 0);
    CHECK(next == 6);
    g = routing_next(gws, names, n, &next, 1);
    CHECK(g && strcmp(g->head.name, "ok2") == 0);
    CHECK(next == 7);
    CHECK(routing_next(gws, names, n, &next, 1) == NULL);
    CHECK(next == 7);

    /* Its call ended: "full" takes calls again, in its place in the order. */
    gw_routing_release(gws, "full");
    next = 0;
    g = routing_next(gws, names, n, &next, 1);
    CHECK(g && strcmp(g->head.name, "full") == 0);
    CHECK(next == 4);

    /* Nothing usable at all. */
    const char *none[] = {"ghost", "zero", "reg"};
    next = 0;
    CHECK(routing_next(gws, none, 3, &next, 1) == NULL);
    CHECK(next == 3);
    gw_destroy(gws);
    config_free(cfg);
    event_base_free(base);
}

static void rewrite_simple_subset(void)
{
    static const struct {
        const char *pattern, *replacement, *in, *out; /* out NULL: refused */
    } cases[] = {
        {"^00", "", "0044207", "44207"},
        {"^00", "", "4400207", "4400207"},  /* anchored: the start only */
        {"00", "", "4400207007", "442077"}, /* unanchored: every match */
        {"^0", "44", "0207", "44207"},
        {"^%d%d", "X", "123", "X3"},
        {"%d", "#", "a1b2", "a#b#"},
        {"%-", "", "1-2-3", "123"},
        {"", "x", "ab", "xaxbx"},   /* as string.gsub does */
        {"^9", "", "123", "123"},   /* no match: unchanged */
        {"[0-9]", "", "123", NULL}, /* outside the subset */
        {"^0.", "", "0207", NULL},
        {"^0", "%1", "0207", NULL}, /* captures in the replacement */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[64];
        int rc = routing_rewrite_simple(cases[i].pattern, cases[i].replacement,
                                        cases[i].in, out, sizeof out, NULL);
        if (!cases[i].out) {
            CHECK(rc == -1);
            continue;
        }
        CHECK(rc == 0);
        CHECK(rc == 0 && strcmp(out, cases[i].out) == 0);
        if (rc == 0 && strcmp(out, cases[i].out) != 0)
            fprintf(stderr, "  gsub(%s, %s, %s): got \"%s\", want \"%s\"\n", cases[i].in,
                    cases[i].pattern, cases[i].replacement, out, cases[i].out);
    }
    char small[4];
    CHECK(routing_rewrite_simple("^0", "4444", "0207", small, sizeof small, NULL) == -1);
}

/* A hook that logs each rule it is given and appends the rule's replacement. */
static char hook_seen[256];

static int appending_hook(const char *pattern, const char *replacement, const char *in,
                          char *out, size_t outlen, void *arg)
{
    (void)arg;
    size_t len = strlen(hook_seen);
    snprintf(hook_seen + len, sizeof hook_seen - len, "[%s %s]", pattern, in);
    if (strcmp(pattern, "fail") == 0)
        return -1;
    snprintf(out, outlen, "%s%s", in, replacement);
    return 0;
}

static void rewrite_rules_in_order(void)
{
    struct config *cfg = config_new();
    struct routing_gateway_def *g = cfg_rgw(cfg, "gw", "10.0.0.1:5060", NULL);
    cfg_rewrite(g, "^00", "");
    cfg_rewrite(g, "[x]", "y"); /* outside the C subset: skipped */
    cfg_rewrite(g, "^44", "0");
    cfg_finish(cfg);
    char out[ROUTING_NUMBER_MAX];
    routing_rewrite(&g->callee_rewrite, "0044207", NULL, NULL, out, sizeof out);
    CHECK(strcmp(out, "0207") == 0);
    routing_rewrite(NULL, "0044207", NULL, NULL, out, sizeof out); /* no rules */
    CHECK(strcmp(out, "0044207") == 0);

    /* Through a hook: each rule gets the previous one's result; a rule the
     * hook refuses leaves the number as it was. */
    struct rewrite_rule v[] = {{"a", "1"}, {"fail", "2"}, {"b", "3"}};
    struct rewrite_list rules = {3, v};
    hook_seen[0] = '\0';
    routing_rewrite(&rules, "9", appending_hook, NULL, out, sizeof out);
    CHECK(strcmp(out, "913") == 0);
    CHECK(strcmp(hook_seen, "[a 9][fail 91][b 91]") == 0);
    config_free(cfg);
}

TEST_MAIN(CASE(longest_prefix_first), CASE(priority_then_name), CASE(no_gateways),
          CASE(next_skips_unusable_gateways), CASE(rewrite_simple_subset),
          CASE(rewrite_rules_in_order))
