/* Unit tests for core/metrics.c and the address parser of
 * core/metrics_server.c: a call's life through failover lands in the right
 * series once, label values are escaped, histograms are cumulative, many
 * gateway pairs and status codes grow the tables, generic series and
 * collectors render in the exposition format. */
#include "check.h"
#include "metrics.h"
#include "metrics_server.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

/* The whole exposition as a NUL-terminated string (caller frees). */
static char *render(void)
{
    struct evbuffer *buf = evbuffer_new();
    metrics_render(buf);
    size_t n = evbuffer_get_length(buf);
    char *text = malloc(n + 1);
    evbuffer_remove(buf, text, n);
    text[n] = '\0';
    evbuffer_free(buf);
    return text;
}

/* Whether `line` is one whole line of `text`. */
static int has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The value of the sample line starting with `prefix` (then a space). */
static double sample(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *p = text; (p = strstr(p, prefix)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return atof(p + n + 1);
    return -1;
}

#define CHECK_LINE(text, line)                                                           \
    do {                                                                                 \
        if (!has_line((text), (line))) {                                                 \
            fprintf(stderr, "%s:%d: no line \"%s\" in:\n%s\n", __FILE__, __LINE__,       \
                    (line), (text));                                                     \
            check_failures++;                                                            \
        }                                                                                \
    } while (0)

static void test_call_with_failover(void)
{
    struct metrics_gateway *a = metrics_mapping_gateway("cust-a");
    struct metrics_gateway *x = metrics_routing_gateway("carrier-x");
    struct metrics_gateway *y = metrics_routing_gateway("carrier-y");
    CHECK(a && x && y);
    CHECK(metrics_routing_gateway("carrier-x") == x);
    CHECK(metrics_mapping_gateway("carrier-x") != x); /* kinds are apart */

    struct metrics_call mc = {0};
    metrics_call_begin(&mc, a);
    CHECK(metrics_calls_active() == 1);
    metrics_call_attempt(&mc, x);
    metrics_call_progress(&mc); /* at once: under 0.1 s */
    metrics_call_attempt_failed(&mc, 503);
    metrics_call_attempt(&mc, y);
    char *mid = render();
    CHECK_LINE(mid, "moonswitch_calls_active 1");
    CHECK_LINE(mid,
               "moonswitch_mapping_gateway_calls_active{mapping_gateway=\"cust-a\"} 1");
    CHECK_LINE(
        mid, "moonswitch_routing_gateway_calls_active{routing_gateway=\"carrier-x\"} 0");
    CHECK_LINE(
        mid, "moonswitch_routing_gateway_calls_active{routing_gateway=\"carrier-y\"} 1");
    free(mid);
    nap_ms(300);
    metrics_call_progress(&mc); /* the 180 after 0.3 s */
    nap_ms(300);
    metrics_call_answered(&mc);            /* the 200: the PDD was the 180's */
    metrics_call_attempt_failed(&mc, 500); /* after the answer: ignored */
    metrics_call_attempt(&mc, x);          /* likewise */
    nap_ms(1100);
    metrics_call_end(&mc, 200);
    metrics_call_end(&mc, 200); /* twice: nothing more */
    struct metrics_call never = {0};
    metrics_call_end(&never, 500); /* never begun: nothing */

    char *t = render();
    CHECK_LINE(t, "# TYPE moonswitch_calls_total counter");
    CHECK_LINE(t, "moonswitch_calls_total{mapping_gateway=\"cust-a\",routing_gateway="
                  "\"carrier-y\",status=\"200\"} 1");
    CHECK(!strstr(t, "mapping_gateway=\"cust-a\",routing_gateway=\"carrier-x\""));
    CHECK_LINE(
        t,
        "moonswitch_call_attempts_total{routing_gateway=\"carrier-x\",status=\"503\"} 1");
    CHECK_LINE(
        t,
        "moonswitch_call_attempts_total{routing_gateway=\"carrier-y\",status=\"200\"} 1");
    CHECK_LINE(t, "moonswitch_calls_active 0");
    CHECK_LINE(t,
               "moonswitch_mapping_gateway_calls_active{mapping_gateway=\"cust-a\"} 0");
    CHECK_LINE(
        t, "moonswitch_routing_gateway_calls_active{routing_gateway=\"carrier-y\"} 0");
    CHECK_LINE(t, "# TYPE moonswitch_call_setup_seconds histogram");
#define SETUP "moonswitch_call_setup_seconds"
#define CARRIER_Y "{routing_gateway=\"carrier-y\""
    CHECK_LINE(t, SETUP "_bucket{routing_gateway=\"carrier-x\",le=\"0.1\"} 1");
    CHECK_LINE(t, SETUP "_bucket" CARRIER_Y ",le=\"0.25\"} 0");
    CHECK_LINE(t, SETUP "_bucket" CARRIER_Y ",le=\"+Inf\"} 1");
    CHECK_LINE(t, SETUP "_count" CARRIER_Y "} 1");
    CHECK_LINE(t, "moonswitch_call_duration_seconds_count" CARRIER_Y "} 1");
    CHECK(!strstr(
        t, "moonswitch_call_duration_seconds_count{routing_gateway=\"carrier-x\"}"));
    double setup =
        sample(t, "moonswitch_call_setup_seconds_sum{routing_gateway=\"carrier-y\"}");
    double duration =
        sample(t, "moonswitch_call_duration_seconds_sum{routing_gateway=\"carrier-y\"}");
    CHECK(setup >= 0.29 && setup < 2); /* 0.3 s, and slack for a loaded machine */
    CHECK(duration >= 1.09 && duration < 3);
    free(t);
    metrics_free_all();
}

/* A refused call (no routing gateway) and one with no mapping gateway both
 * count, under "", and the pair shows status 200 even with none answered. */
static void test_calls_without_gateways(void)
{
    struct metrics_call refused = {0}, unknown = {0};
    metrics_call_begin(&refused, metrics_mapping_gateway("cust-b"));
    metrics_call_end(&refused, 503);
    metrics_call_begin(&unknown, NULL);
    metrics_call_end(&unknown, 403);
    char *t = render();
    CHECK_LINE(t,
               "moonswitch_calls_total{mapping_gateway=\"cust-b\",routing_gateway=\"\","
               "status=\"503\"} 1");
    CHECK_LINE(t,
               "moonswitch_calls_total{mapping_gateway=\"cust-b\",routing_gateway=\"\","
               "status=\"200\"} 0");
    CHECK_LINE(t, "moonswitch_calls_total{mapping_gateway=\"\",routing_gateway=\"\","
                  "status=\"403\"} 1");
    CHECK_LINE(t, "moonswitch_calls_active 0");
    free(t);
    metrics_free_all();
}

static void test_escaping(void)
{
    struct metrics_call mc = {0};
    metrics_call_begin(&mc, metrics_mapping_gateway("a\"b\\c\nd"));
    metrics_call_end(&mc, 486);
    struct metrics_family *f =
        metrics_family("test_weird_total", "Help with \\ and\nnewline.", METRICS_COUNTER,
                       "name", NULL, 0);
    metrics_inc(metrics_series(f, "x\"y"));
    char *t = render();
    CHECK_LINE(t, "moonswitch_calls_total{mapping_gateway=\"a\\\"b\\\\c\\nd\","
                  "routing_gateway=\"\",status=\"486\"} 1");
    CHECK_LINE(t, "# HELP test_weird_total Help with \\\\ and\\nnewline.");
    CHECK_LINE(t, "test_weird_total{name=\"x\\\"y\"} 1");
    free(t);
    metrics_free_all();
}

/* 2,000 pairs and every status code: the tables grow and nothing is lost. */
static void test_many_pairs_and_statuses(void)
{
    char name[32];
    struct metrics_gateway *r[4];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "r%d", i);
        r[i] = metrics_routing_gateway(name);
    }
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof name, "m%d", i);
        struct metrics_gateway *m = metrics_mapping_gateway(name);
        for (int j = 0; j < 4; j++) {
            struct metrics_call mc = {0};
            metrics_call_begin(&mc, m);
            metrics_call_attempt(&mc, r[j]);
            metrics_call_end(&mc, 100 + (i * 4 + j) % 600);
        }
    }
    CHECK(metrics_calls_active() == 0);
    char *t = render();
    CHECK_LINE(t, "moonswitch_calls_total{mapping_gateway=\"m0\",routing_gateway=\"r0\","
                  "status=\"100\"} 1");
    CHECK_LINE(t,
               "moonswitch_calls_total{mapping_gateway=\"m149\",routing_gateway=\"r3\","
               "status=\"699\"} 1");
    CHECK_LINE(t,
               "moonswitch_call_attempts_total{routing_gateway=\"r2\",status=\"102\"} 4");
    /* Out of range counts as 0. */
    struct metrics_call odd = {0};
    metrics_call_begin(&odd, metrics_mapping_gateway("m0"));
    metrics_call_end(&odd, 42);
    free(t);
    t = render();
    CHECK(strstr(t, "status=\"0\"} 1") != NULL);
    free(t);
    metrics_free_all();
}

static int collected;

static void collect(struct metrics_out *out, void *arg)
{
    collected++;
    metrics_out_family(out, "test_up", "Up.", METRICS_GAUGE);
    metrics_out_sample(out, "test_up", 1, "registration", (const char *)arg, NULL);
    metrics_out_sample(out, "test_up", 0.25, "a", "1", "b", "2", NULL);
    metrics_out_sample(out, "test_up", 3, NULL);
}

static void test_generic_and_collectors(void)
{
    static const double bounds[] = {1, 10};
    struct metrics_family *g =
        metrics_family("test_gauge", "A gauge.", METRICS_GAUGE, NULL, NULL, 0);
    CHECK(metrics_family("test_gauge", "again", METRICS_GAUGE, NULL, NULL, 0) == g);
    struct metrics_family *h =
        metrics_family("test_hist", "A histogram.", METRICS_HISTOGRAM, "k", bounds, 2);
    struct metrics_series *gs = metrics_series(g, "ignored");
    metrics_set(gs, 7.5);
    metrics_add(gs, 1);
    CHECK(metrics_value(gs) == 8.5);
    struct metrics_series *hs = metrics_series(h, "v");
    metrics_observe(hs, 0.5);
    metrics_observe(hs, 5);
    metrics_observe(hs, 50);
    struct metrics_series *gone = metrics_series(h, "gone");
    metrics_observe(gone, 1);
    metrics_series_drop(gone);
    CHECK(metrics_collector_add(collect, "car\"rier") == 0);
    char *t = render();
    CHECK_LINE(t, "test_gauge 8.5");
    CHECK_LINE(t, "test_hist_bucket{k=\"v\",le=\"1\"} 1");
    CHECK_LINE(t, "test_hist_bucket{k=\"v\",le=\"10\"} 2");
    CHECK_LINE(t, "test_hist_bucket{k=\"v\",le=\"+Inf\"} 3");
    CHECK_LINE(t, "test_hist_sum{k=\"v\"} 55.5");
    CHECK_LINE(t, "test_hist_count{k=\"v\"} 3");
    CHECK(!strstr(t, "gone"));
    CHECK_LINE(t, "# TYPE test_up gauge");
    CHECK_LINE(t, "test_up{registration=\"car\\\"rier\"} 1");
    CHECK_LINE(t, "test_up{a=\"1\",b=\"2\"} 0.25");
    CHECK_LINE(t, "test_up 3");
    free(t);
    metrics_collector_remove(collect, "car\"rier");
    int before = collected;
    free(render());
    CHECK(collected == before);
    metrics_free_all();
}

static void test_parse_address(void)
{
    char host[64];
    int port = 0;
    CHECK(metrics_parse_address("127.0.0.1:9464", host, sizeof host, &port) == 0);
    CHECK(strcmp(host, "127.0.0.1") == 0 && port == 9464);
    CHECK(metrics_parse_address("[::1]:9100", host, sizeof host, &port) == 0);
    CHECK(strcmp(host, "::1") == 0 && port == 9100);
    CHECK(metrics_parse_address("0.0.0.0:1", host, sizeof host, &port) == 0);
    CHECK(metrics_parse_address("localhost:9464", host, sizeof host, &port) < 0);
    CHECK(metrics_parse_address("127.0.0.1", host, sizeof host, &port) < 0);
    CHECK(metrics_parse_address("127.0.0.1:", host, sizeof host, &port) < 0);
    CHECK(metrics_parse_address("127.0.0.1:70000", host, sizeof host, &port) < 0);
    CHECK(metrics_parse_address("127.0.0.1:94x", host, sizeof host, &port) < 0);
    CHECK(metrics_parse_address("::1:9464", host, sizeof host, &port) < 0);
    CHECK(metrics_parse_address("[::1]9464", host, sizeof host, &port) < 0);
    CHECK(metrics_parse_address(":9464", host, sizeof host, &port) < 0);
}

TEST_MAIN(CASE(test_call_with_failover), CASE(test_calls_without_gateways),
          CASE(test_escaping), CASE(test_many_pairs_and_statuses),
          CASE(test_generic_and_collectors), CASE(test_parse_address))
