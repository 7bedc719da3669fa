/* Unit tests for core/sip/flood.c: the token bucket (burst, refill, ban on
 * the first datagram over), trusted sources and the decision hook, the ban
 * table under many bans and lifts (backward-shift deletion), bans kept in
 * the store across instances, the bucket table past its size, max_calls,
 * and log_limited(). */
#include "check.h"
#include "config.h"
#include "log.h"
#include "sip/flood.h"
#include "store.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define SEC 1000000ULL

static struct sockaddr_in v4(const char *ip)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(5060)};
    inet_pton(AF_INET, ip, &sin.sin_addr);
    return sin;
}

static bool check_at(struct flood *fl, const char *ip, uint64_t now_us)
{
    struct sockaddr_in sin = v4(ip);
    return flood_check(fl, (struct sockaddr *)&sin, now_us);
}

/* A policy with the given security settings and gateways. */
static struct config *policy(int rate, int ban, int max_calls, const char *mapping_ip)
{
    struct config *cfg = config_new();
    char err[256];
    struct switch_def *sw = (void *)config_def_new(KIND_SWITCH, NULL, "t.lua", 1);
    sw->security.source_rate = rate;
    sw->security.source_ban = ban;
    sw->security.max_calls = max_calls;
    CHECK(config_add(cfg, &sw->head, err, sizeof err) == 0);
    if (mapping_ip) {
        struct mapping_gateway_def *g =
            (void *)config_def_new(KIND_MAPPING_GATEWAY, "gw", "t.lua", 2);
        g->addresses.v = calloc(1, sizeof(char *));
        g->addresses.v[0] = strdup(mapping_ip);
        g->addresses.n = 1;
        CHECK(config_add(cfg, &g->head, err, sizeof err) == 0);
    }
    CHECK(config_finish(cfg, err, sizeof err) == 0);
    return cfg;
}

static struct flood *make(int rate, int ban, const char *mapping_ip)
{
    struct flood *fl = NULL;
    CHECK(flood_create(&fl, NULL, NULL) == 0);
    struct config *cfg = policy(rate, ban, 0, mapping_ip);
    flood_apply(fl, cfg);
    config_free(cfg);
    return fl;
}

static void test_burst_then_ban(void)
{
    struct flood *fl = make(10, 60, NULL);
    uint64_t t = 100 * SEC;
    for (int i = 0; i < FLOOD_BURST(10); i++)
        CHECK(check_at(fl, "192.0.2.1", t));
    CHECK(flood_banned_until(fl, "192.0.2.1") == 0);
    CHECK(!check_at(fl, "192.0.2.1", t)); /* the first one over: banned */
    long long until = flood_banned_until(fl, "192.0.2.1");
    CHECK(until >= (long long)time(NULL) + 59 && until <= (long long)time(NULL) + 60);
    /* Banned: dropped however slowly it sends now. */
    CHECK(!check_at(fl, "192.0.2.1", t + 10 * SEC));
    /* Another source is not affected. */
    CHECK(check_at(fl, "192.0.2.2", t));
    struct flood_stats st;
    flood_get_stats(fl, &st);
    CHECK(st.bans == 1 && st.banned == 1 && st.dropped == 2);
    CHECK(flood_lift(fl, "192.0.2.1") == 1);
    CHECK(flood_lift(fl, "192.0.2.1") == 0);
    CHECK(flood_lift(fl, "not an ip") == -EINVAL);
    CHECK(check_at(fl, "192.0.2.1", t + 11 * SEC)); /* refilled while banned */
    flood_destroy(fl);
}

static void test_refill(void)
{
    struct flood *fl = make(20, 60, NULL);
    uint64_t t = 100 * SEC;
    for (int i = 0; i < 20; i++)
        CHECK(check_at(fl, "192.0.2.1", t));
    /* Exactly at the rate, for ten seconds: never over. */
    for (int i = 1; i <= 200; i++)
        CHECK(check_at(fl, "192.0.2.1", t + (uint64_t)i * SEC / 20));
    CHECK(flood_banned_until(fl, "192.0.2.1") == 0);
    /* Half a second refills ten tokens: ten pass, the eleventh is over. */
    t += 10 * SEC + SEC / 2;
    for (int i = 0; i < 10; i++)
        CHECK(check_at(fl, "192.0.2.1", t));
    CHECK(!check_at(fl, "192.0.2.1", t));
    flood_destroy(fl);
}

static void test_no_limit(void)
{
    struct flood *fl = make(0, 60, NULL);
    for (int i = 0; i < 10000; i++)
        CHECK(check_at(fl, "192.0.2.1", 100 * SEC));
    /* Bans still hold without a rate. */
    CHECK(flood_ban(fl, "192.0.2.1", 30, "test") == 0);
    CHECK(!check_at(fl, "192.0.2.1", 100 * SEC));
    CHECK(flood_ban(fl, "192.0.2.1", 0, "test") == -EINVAL);
    flood_destroy(fl);
}

static bool trust_dot_seven(const char *ip, void *arg)
{
    ++*(int *)arg;
    return strcmp(ip, "192.0.2.7") == 0;
}

static int hook_calls;
static double hook_rate;

static bool spare_dot_eight(const char *ip, double rate, void *arg)
{
    (void)arg;
    hook_calls++;
    hook_rate = rate;
    return strcmp(ip, "192.0.2.8") != 0;
}

static void test_trusted_and_hook(void)
{
    struct flood *fl = make(10, 60, "192.0.2.5");
    int asked = 0;
    flood_set_trusted_fn(fl, trust_dot_seven, &asked);
    flood_set_hook(fl, spare_dot_eight, NULL);
    uint64_t t = 100 * SEC;
    for (int i = 0; i < 1000; i++) {
        CHECK(check_at(fl, "192.0.2.5", t + (uint64_t)i * 100)); /* a mapping gateway */
        CHECK(check_at(fl, "192.0.2.7", t + (uint64_t)i * 100)); /* trusted by callback */
        CHECK(check_at(fl, "192.0.2.8", t + (uint64_t)i * 100)); /* spared by the hook */
    }
    /* Asked once each when out of tokens, then cached. */
    CHECK(asked == 2);
    CHECK(hook_calls == 1 && hook_rate > 100);
    struct flood_stats st;
    flood_get_stats(fl, &st);
    CHECK(st.bans == 0 && st.spared == 1);
    /* The trust cache runs out: the callback is asked again. */
    for (int i = 0; i < 100; i++)
        check_at(fl, "192.0.2.7", t + (FLOOD_TRUST_CACHE_S + 1) * SEC);
    CHECK(asked == 3);
    /* Not trusted, the hook says ban. */
    for (int i = 0; i < 11; i++)
        check_at(fl, "192.0.2.9", t);
    CHECK(hook_calls == 2 && flood_banned_until(fl, "192.0.2.9") > 0);
    flood_destroy(fl);
}

static int count_ban(const char *ip, long long until, uint64_t dropped, void *arg)
{
    (void)ip;
    (void)until;
    (void)dropped;
    ++*(int *)arg;
    return 0;
}

static void test_many_bans_and_lifts(void)
{
    struct flood *fl = make(10, 60, NULL);
    char ip[64];
    for (int i = 0; i < 5000; i++) {
        snprintf(ip, sizeof ip, "10.%d.%d.1", i / 256, i % 256);
        CHECK(flood_ban(fl, ip, 100, "test") == 0);
    }
    snprintf(ip, sizeof ip, "2001:db8::%x", 42);
    CHECK(flood_ban(fl, ip, 100, "test") == 0);
    CHECK(flood_banned_until(fl, "2001:db8::2a") > 0);
    CHECK(flood_banned_until(fl, "[2001:db8::2a]:5060") > 0);
    /* Lift every other one: the others stay findable. */
    for (int i = 0; i < 5000; i += 2) {
        snprintf(ip, sizeof ip, "10.%d.%d.1", i / 256, i % 256);
        CHECK(flood_lift(fl, ip) == 1);
    }
    int bad = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(ip, sizeof ip, "10.%d.%d.1", i / 256, i % 256);
        bad += (flood_banned_until(fl, ip) > 0) != (i % 2 == 1);
    }
    CHECK(bad == 0);
    int n = 0;
    flood_bans(fl, count_ban, &n);
    CHECK(n == 2501);
    flood_destroy(fl);
}

static void test_many_sources(void)
{
    /* Four times the bucket table: sources are evicted, nothing grows, and
     * a flooder among them is still caught. */
    struct flood *fl = make(10, 60, NULL);
    char ip[64];
    uint64_t t = 100 * SEC;
    int banned = 0;
    for (int i = 0; i < 4 * FLOOD_BUCKETS; i++) {
        snprintf(ip, sizeof ip, "10.%d.%d.%d", i / 65536, (i / 256) % 256, i % 256);
        CHECK(check_at(fl, ip, t + (uint64_t)i));
        if (i % 16 == 0)
            banned += !check_at(fl, "192.0.2.1", t + (uint64_t)i);
    }
    CHECK(banned > 0 && flood_banned_until(fl, "192.0.2.1") > 0);
    flood_destroy(fl);
}

static void test_dir(char *out, size_t size, const char *name)
{
    const char *tmp = getenv("MOON_TEST_TMP");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", tmp);
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0700);
            *p = '/';
        }
    mkdir(path, 0700);
    snprintf(out, size, "%s/flood-%ld-%s", tmp, (long)getpid(), name);
}

static void test_store(void)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof dir, "store");
    struct event_base *base = event_base_new();
    struct store *s = NULL;
    CHECK(store_open(&s, base, dir, 1 << 20) == 0);
    struct flood *fl = NULL;
    CHECK(flood_create(&fl, base, s) == 0);
    CHECK(flood_ban(fl, "192.0.2.1", 100, "test") == 0);
    CHECK(flood_ban(fl, "2001:db8::1", 100, "test") == 0);
    CHECK(flood_ban(fl, "192.0.2.2", 100, "test") == 0);
    CHECK(flood_lift(fl, "192.0.2.2") == 1);
    long long until = flood_banned_until(fl, "192.0.2.1");
    flood_destroy(fl);
    /* A ban that ended while the switch was down, and a registrar record. */
    uint8_t v[8];
    store_key_u64(v, (uint64_t)time(NULL) - 5);
    CHECK(store_put(s, STORE_SUSPEND, "f192.0.2.3", 10, 1, v, 8) == 0);
    CHECK(store_put(s, STORE_SUSPEND, "s192.0.2.4", 10, 1, v, 8) == 0);
    CHECK(store_commit(s) == 0);
    CHECK(flood_create(&fl, base, s) == 0);
    CHECK(flood_banned_until(fl, "192.0.2.1") == until);
    CHECK(flood_banned_until(fl, "2001:db8::1") > 0);
    CHECK(flood_banned_until(fl, "192.0.2.2") == 0);
    CHECK(flood_banned_until(fl, "192.0.2.3") == 0);
    CHECK(flood_banned_until(fl, "192.0.2.4") == 0);
    CHECK(store_commit(s) == 0);
    uint8_t ver;
    void *val = NULL;
    size_t vlen;
    CHECK(store_get(s, STORE_SUSPEND, "f192.0.2.3", 10, &ver, &val, &vlen) == -ENOENT);
    CHECK(store_get(s, STORE_SUSPEND, "s192.0.2.4", 10, &ver, &val, &vlen) == 0);
    free(val);
    flood_destroy(fl);
    store_close(s);
    event_base_free(base);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void test_max_calls(void)
{
    struct flood *fl = NULL;
    CHECK(flood_create(&fl, NULL, NULL) == 0);
    CHECK(!flood_calls_over(fl, 1000000)); /* before any policy: no limit */
    struct config *cfg = policy(100, 600, 2, NULL);
    flood_apply(fl, cfg);
    config_free(cfg);
    CHECK(!flood_calls_over(fl, 0) && !flood_calls_over(fl, 1));
    CHECK(flood_calls_over(fl, 2) && flood_calls_over(fl, 3));
    CHECK(!flood_calls_over(NULL, 3));
    flood_destroy(fl);
}

static void test_log_limited(void)
{
    static struct log_limit lim = {.interval = 0.2};
    log_set_level(LOG_WARN);
    CHECK(log_limited(&lim, LOG_WARN, "test", "first %d", 1) == 1);
    for (int i = 0; i < 100; i++)
        CHECK(log_limited(&lim, LOG_WARN, "test", "again %d", i) == 0);
    CHECK(lim.suppressed == 100);
    CHECK(log_limited(&lim, LOG_INFO, "test", "hidden") == 0); /* below the level */
    struct timespec ts = {0, 250 * 1000 * 1000};
    nanosleep(&ts, NULL);
    log_limits_flush(); /* "100 more like this ..." */
    CHECK(lim.suppressed == 0);
    CHECK(log_limited(&lim, LOG_WARN, "test", "later") ==
          0); /* the flush took the slot */
    nanosleep(&ts, NULL);
    CHECK(log_limited(&lim, LOG_WARN, "test", "later") == 1);
}

TEST_MAIN(CASE(test_burst_then_ban), CASE(test_refill), CASE(test_no_limit),
          CASE(test_trusted_and_hook), CASE(test_many_bans_and_lifts),
          CASE(test_many_sources), CASE(test_store), CASE(test_max_calls),
          CASE(test_log_limited))
