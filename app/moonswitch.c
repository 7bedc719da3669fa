/* moonswitch: the switch process.
 *
 *   moonswitch [--policies DIR] [--data DIR] [--listen URI]... [--control PATH]
 *              [--log-level error|warn|info|debug] [--check]
 *
 * One thread, one libevent loop: sofia-sip's SIP stack runs on it through
 * evport, the Lua policy engine and the control socket too. */
#include "config.h"
#include "control.h"
#include "engine.h"
#include "evport.h"
#include "log.h"
#include "metrics.h"
#include "metrics_server.h"
#include "overload.h"
#include "sip/agent.h"
#include "sip/call.h"
#include "sip/flood.h"
#include "sip/gateway.h"
#include "sip/hep.h"
#include "sip/outreg.h"
#include "sip/registrar.h"
#include "sip/replyaddr.h"
#include "sip/sipmetrics.h"
#include "sip/statuscount.h"
#include "sip/tls.h"
#include "store.h"

#include <errno.h>
#include <malloc.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>
#include <sofia-sip/su.h>

/* Seconds a policy hook or REPL chunk may run without yielding. */
#define TASK_BUDGET 2.0

/* SIGTERM to exit: shutdown hooks (unregister, BYE) get this long. */
#define SHUTDOWN_GRACE_MS 3000

struct options {
    const char *policies;
    const char *data;
    const char *control;
    struct strlist listen; /* from --listen; empty: the policy's */
    int check;
};

struct app {
    struct options opt;
    struct event_base *base;
    su_root_t *root;
    struct store *store;
    struct engine *engine;
    struct sipagent *agent;
    struct siptls *tls;        /* NULL: no TLS transport */
    struct replyaddr *replies; /* where responses go, per gateway */
    struct hep *hep;           /* switch.hep: SIP capture to Homer */
    struct outreg_set *outregs;
    struct gw_set *gateways;     /* usability, line counts, OPTIONS checks */
    struct registrar *registrar; /* endpoints registering to us */
    struct calls *calls;         /* the B2BUA: calls and CDRs */
    int shutdown_steps;          /* at shutdown: calls, registrations still ending */
    struct flood *flood;         /* source rates, bans, connection caps, max_calls */
    struct overload *overload;   /* behind on SIP: new calls shed */
    struct control *control;
    struct event *log_flush;        /* counts of rate-limited log lines */
    struct metrics_server *metrics; /* switch.metrics: Prometheus */
    struct sipmetrics *sipmetrics;
    struct event *sig_term, *sig_int, *sig_hup, *shutdown_timer, *housekeeping;
    int exit_code;
    int stopping;
};

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: moonswitch [--policies DIR] [--data DIR] [--listen URI]...\n"
        "                  [--control PATH] [--log-level error|warn|info|debug] "
        "[--check]\n"
        "\n"
        "  --policies DIR   load every *.lua in DIR, in name order (default: policies)\n"
        "  --data DIR       LMDB environment and state (default: var)\n"
        "  --listen URI     udp:IP:PORT, tcp:IP:PORT, tls:IP:PORT; repeatable; replaces "
        "the "
        "policy's\n"
        "  --control PATH   the REPL's unix socket (default: DATA/control.sock)\n"
        "  --log-level L    error, warn, info (default) or debug\n"
        "  --check          validate the policies and exit 0 or 1\n");
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"policies", required_argument, NULL, 'p'},
        {"data", required_argument, NULL, 'd'},
        {"listen", required_argument, NULL, 'l'},
        {"control", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'L'},
        {"check", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    o->policies = "policies";
    o->data = "var";
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            o->policies = optarg;
            break;
        case 'd':
            o->data = optarg;
            break;
        case 'c':
            o->control = optarg;
            break;
        case 'l': {
            char **grown = realloc(o->listen.v, (o->listen.n + 1) * sizeof *grown);
            if (!grown)
                return -1;
            o->listen.v = grown;
            o->listen.v[o->listen.n++] = optarg;
            break;
        }
        case 'L': {
            int level = log_level_parse(optarg);
            if (level < 0) {
                fprintf(stderr,
                        "moonswitch: --log-level must be error, warn, info or debug\n");
                return -1;
            }
            log_set_level((enum log_level)level);
            break;
        }
        case 'C':
            o->check = 1;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "moonswitch: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    for (size_t i = 0; i < o->listen.n; i++) {
        char proto[8], host[64];
        int port;
        if (config_parse_listen(o->listen.v[i], proto, sizeof proto, host, sizeof host,
                                &port) < 0) {
            fprintf(stderr,
                    "moonswitch: --listen %s: expected udp:IP:PORT, tcp:IP:PORT or "
                    "tls:IP:PORT\n",
                    o->listen.v[i]);
            return -1;
        }
    }
    return 0;
}

/* ---- Shutdown -------------------------------------------------------------- */

static void finish(struct app *a)
{
    event_base_loopexit(a->base, NULL);
}

static void shutdown_step_done(void *arg)
{
    struct app *a = arg;
    if (--a->shutdown_steps > 0) /* calls and registrations report once each */
        return;
    log_info("main", "sessions ended");
    finish(a);
}

static void on_shutdown_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    log_warn("main", "shutdown grace of %d ms is over: stopping", SHUTDOWN_GRACE_MS);
    finish(arg);
}

static void begin_shutdown(struct app *a, const char *why)
{
    if (a->stopping) {
        log_warn("main", "%s again: stopping now", why);
        finish(a);
        return;
    }
    a->stopping = 1;
    log_info("main", "%s: shutting down", why);
    control_close(a->control);
    a->control = NULL;
    if (a->store)
        store_commit(a->store);
    /* Sessions end first (un-REGISTERs; BYEs when calls come); the grace
     * timer bounds how long that may take. */
    struct timeval tv = {SHUTDOWN_GRACE_MS / 1000, (SHUTDOWN_GRACE_MS % 1000) * 1000};
    evtimer_add(a->shutdown_timer, &tv);
    /* BYE every call and unregister every registration, together; each
     * reports through shutdown_step_done when it is over. */
    if (a->gateways)
        gw_stop_checks(a->gateways); /* no more OPTIONS */
    a->shutdown_steps = a->calls ? 2 : 1;
    if (a->calls)
        calls_shutdown(a->calls, shutdown_step_done, a);
    if (a->outregs)
        outreg_set_shutdown(a->outregs, shutdown_step_done, a);
    else
        finish(a);
    evport_rearm(a->root);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct app *a = arg;
    (void)what;
    if (sig == SIGHUP) {
        char msg[1024];
        if (engine_reload(a->engine, msg, sizeof msg) == 0)
            log_info("main", "SIGHUP: reloaded: %s", msg);
        return;
    }
    begin_shutdown(a, sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* A reload passed validation: bring the live objects in line. */
static void on_reload(const struct config *before, const struct config *now, void *arg)
{
    struct app *a = arg;
    (void)before;
    sipagent_set_t1(a->agent, (unsigned)config_switch(now)->sip.resend_interval);
    if (a->tls)
        siptls_apply(a->tls, now); /* a renewed certificate, from disk */
    else if (siptls_wanted(now, &(struct strlist){0})) /* (nor a tls: listener) */
        log_warn("tls", "the policy needs TLS now: TLS transports are made at start, "
                        "restart the switch");
    replyaddr_apply(a->replies, now);
    hep_apply(a->hep, now);
    outreg_set_apply(a->outregs, now);
    registrar_apply(a->registrar, now);
    gw_apply(a->gateways, now);
    calls_apply(a->calls, now);
    flood_apply(a->flood, now);
    overload_set_shedding(a->overload, config_switch(now)->security.overload_shedding);
    metrics_server_apply(a->metrics, config_switch(now)->metrics);
    evport_rearm(a->root);
}

/* Sources of endpoint bindings are trusted (not rate-limited). Asked only
 * when a source runs out of tokens, and cached FLOOD_TRUST_CACHE_S; O(1):
 * the registrar indexes its bindings by source. */
static bool trusted_binding_source(const char *ip, void *arg)
{
    struct app *a = arg;
    return a->registrar && registrar_binding_source(a->registrar, ip);
}

static size_t calls_in_progress(void *arg)
{
    struct app *a = arg;
    return a->calls ? calls_count(a->calls) : 0;
}

static void on_log_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    log_limits_flush();
}

/* Every HOUSEKEEPING_S: hand freed heap back to the system once a good part
 * of the heap is free. A burst (10,000 registrations starting, a call peak)
 * leaves its transactions' memory free but mapped: glibc returns by itself
 * only the top of the heap (above M_TRIM_THRESHOLD, 128 KiB), and the top
 * is held by whatever was allocated last, so after a burst nearly all the
 * heap stays mapped. malloc_trim() also gives back every whole free page
 * inside it (madvise). It walks the free chunks: about a millisecond per
 * 100 MB free; mallinfo2() first, far cheaper, says whether it is worth it. */
#define HOUSEKEEPING_S 5
#define TRIM_FREE_BYTES (16u << 20)

/* statuscount.c counts responses through two of sofia's transport
 * functions the executable replaces: said once when messages flow and the
 * replacements are never reached (a sofia built otherwise). */
static void check_transport_hooks(struct app *a)
{
    static bool said_status, said_capture;
    struct sipagent_stats st;
    if ((said_status && said_capture) || !a->agent)
        return;
    sipagent_stats(a->agent, &st);
    if (st.recv_msg == 0)
        return;
    if (!said_status && !statuscount_hooked()) {
        said_status = true;
        log_warn("sip", "sofia's transport does not call the switch's tport_deliver(): "
                        "responses are not counted by status");
    }
    if (!said_capture && hep_capturing(a->hep) && !hep_hooked()) {
        said_capture = true;
        log_warn("sip", "sofia's transport does not call the switch's tport_log_msg(): "
                        "SIP capture (switch.hep) sees only the switch's own answers");
    }
}

static void on_housekeeping(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct mallinfo2 mi = mallinfo2();
    if (mi.fordblks > TRIM_FREE_BYTES)
        malloc_trim(0);
    check_transport_hooks(arg);
}

/* ---- Metrics ---------------------------------------------------------------- */

/* Scrape-time figures of the store and the policy engine. */
static void collect_app(struct metrics_out *out, void *arg)
{
    struct app *a = arg;
    metrics_out_family(out, "moonswitch_store_used_bytes",
                       "Bytes of the LMDB map in use (up to its last page).",
                       METRICS_GAUGE);
    metrics_out_sample(out, "moonswitch_store_used_bytes",
                       (double)store_used_bytes(a->store), NULL);
    metrics_out_family(out, "moonswitch_store_records", "Records in each LMDB database.",
                       METRICS_GAUGE);
    for (int db = 0; db < STORE_DB_COUNT; db++)
        metrics_out_sample(out, "moonswitch_store_records",
                           (double)store_count(a->store, (enum store_db)db), "db",
                           store_db_name((enum store_db)db), NULL);
    uint64_t commits, commit_us;
    store_commit_stats(a->store, &commits, &commit_us);
    metrics_out_family(out, "moonswitch_store_commits_total",
                       "Batches the store's writer thread committed (each synced).",
                       METRICS_COUNTER);
    metrics_out_sample(out, "moonswitch_store_commits_total", (double)commits, NULL);
    metrics_out_family(out, "moonswitch_store_commit_seconds_total",
                       "Time the writer thread spent committing, fsyncs included "
                       "(off the event loop).",
                       METRICS_COUNTER);
    metrics_out_sample(out, "moonswitch_store_commit_seconds_total",
                       (double)commit_us / 1e6, NULL);
    metrics_out_family(out, "moonswitch_lua_bytes",
                       "Bytes the running policy's Lua state holds.", METRICS_GAUGE);
    metrics_out_sample(out, "moonswitch_lua_bytes", (double)engine_lua_bytes(a->engine),
                       NULL);
    /* What SIP keeps for retransmissions (stats().sip in the REPL). */
    struct sipagent_stats st;
    sipagent_stats(a->agent, &st);
    metrics_out_family(
        out, "moonswitch_sip_held_bytes",
        "Bytes held for SIP retransmissions: nta's transactions (estimated "
        "per transaction) and the answer cache's records.",
        METRICS_GAUGE);
    metrics_out_sample(out, "moonswitch_sip_held_bytes", (double)st.tr_bytes, "kind",
                       "transactions", NULL);
    metrics_out_sample(out, "moonswitch_sip_held_bytes", (double)st.answer_bytes, "kind",
                       "answers", NULL);
    metrics_out_family(out, "moonswitch_sip_answer_records",
                       "Answers kept without a transaction, for retransmissions.",
                       METRICS_GAUGE);
    metrics_out_sample(out, "moonswitch_sip_answer_records", (double)st.answers, NULL);
    metrics_out_family(out, "moonswitch_sip_invites",
                       "INVITEs the switch sent that are in progress; light: no longer "
                       "held by nta (after the first provisional answer).",
                       METRICS_GAUGE);
    metrics_out_sample(out, "moonswitch_sip_invites", (double)st.invites, "kind", "all",
                       NULL);
    metrics_out_sample(out, "moonswitch_sip_invites", (double)st.invites_light, "kind",
                       "light", NULL);
}

static int start_metrics(struct app *a)
{
    if (!(a->metrics = metrics_server_create(a->base)) ||
        !(a->sipmetrics =
              sipmetrics_create(sipagent_nta(a->agent), a->outregs, a->registrar)) ||
        metrics_collector_add(collect_app, a) < 0)
        return -1;
    return metrics_server_apply(a->metrics,
                                config_switch(engine_config(a->engine))->metrics);
}

/* ---- Start-up -------------------------------------------------------------- */

static int make_dir(const char *dir)
{
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return 0;
    log_error("main", "cannot create %s: %s", dir, strerror(errno));
    return -1;
}

static int run(struct app *a)
{
    char err[2048];
    struct options *o = &a->opt;

    if (o->check) {
        struct event_base *base = event_base_new();
        struct engine *e = engine_create(base, NULL, o->policies, &o->listen, TASK_BUDGET,
                                         err, sizeof err);
        if (!e) {
            fprintf(stderr, "%s\n", err);
            event_base_free(base);
            return 1;
        }
        const struct config *cfg = engine_config(e);
        printf("%s: ok (%zu registrations, %zu routing gateways, %zu mapping gateways, "
               "%zu accounts)\n",
               o->policies, config_count(cfg, KIND_REGISTRATION),
               config_count(cfg, KIND_ROUTING_GATEWAY),
               config_count(cfg, KIND_MAPPING_GATEWAY), config_count(cfg, KIND_ACCOUNT));
        engine_destroy(e);
        event_base_free(base);
        return 0;
    }

    struct event_config *ecfg = event_config_new();
    /* The coarse clock moves in 4 ms steps here: SIP timers want better. */
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    a->base = event_base_new_with_config(ecfg);
    event_config_free(ecfg);
    if (!a->base || event_base_priority_init(a->base, 3) < 0) {
        log_error("main", "cannot create the event loop");
        return 1;
    }
    log_attach_loop(a->base);

    if (make_dir(o->data) < 0)
        return 1;
    int rc = store_open(&a->store, a->base, o->data, 0);
    if (rc < 0) {
        log_error("main", "cannot open the store in %s", o->data);
        return 1;
    }

    a->engine = engine_create(a->base, a->store, o->policies, &o->listen, TASK_BUDGET,
                              err, sizeof err);
    if (!a->engine) {
        log_error("policy", "%s", err);
        return 1;
    }
    if (flood_create(&a->flood, a->base, a->store) < 0)
        return 1;

    su_init();
    log_attach_libraries();
    a->root = evport_root_create(a->base, NULL);
    if (!a->root)
        return 1;

    const struct strlist *listen = engine_listen(a->engine);
    /* TLS transports exist from the start or not at all, like listeners. */
    if (siptls_wanted(engine_config(a->engine), listen)) {
        if (siptls_create(&a->tls, a->base) < 0)
            return 1;
        siptls_apply(a->tls, engine_config(a->engine));
    }
    if (sipagent_create(
            &a->agent, a->root, listen,
            (unsigned)config_switch(engine_config(a->engine))->sip.resend_interval,
            a->tls) < 0)
        return 1;
    if (!(a->replies = replyaddr_create(a->root, sipagent_nta(a->agent))))
        return 1;
    replyaddr_apply(a->replies, engine_config(a->engine));
    if (hep_create(&a->hep, sipagent_nta(a->agent), a->base) < 0)
        return 1;
    hep_apply(a->hep, engine_config(a->engine));
    if (outreg_set_create(&a->outregs, a->agent, a->base, a->store) < 0)
        return 1;
    engine_attach_outregs(a->engine, a->outregs, a->root);
    engine_attach_sip(a->engine, a->agent);
    /* The registrar takes REGISTER: its stateless prefilter answers those
     * that change nothing (challenges, refusals), its handler the rest. */
    if (registrar_create(&a->registrar, sipagent_nta(a->agent),
                         sipagent_client_leg(a->agent), a->root, a->base, a->store) < 0)
        return 1;
    engine_attach_registrar(a->engine, a->registrar);
    registrar_apply(a->registrar, engine_config(a->engine));
    sipagent_set_method_handler(a->agent, sip_method_register, registrar_on_register,
                                a->registrar);
    sipagent_set_method_prefilter(a->agent, sip_method_register,
                                  registrar_prefilter_register, a->registrar);
    /* Gateways: usability, line counts and OPTIONS checks, asked by calls
     * and shown to policies. */
    if (gw_create(&a->gateways, sipagent_nta(a->agent), sipagent_client_leg(a->agent),
                  a->root, a->base, a->outregs) < 0)
        return 1;
    gw_set_registrar(a->gateways,
                     a->registrar); /* dynamic gateways, accounts' bindings */
    gw_apply(a->gateways, engine_config(a->engine));
    engine_attach_gateways(a->engine, a->gateways);
    /* Calls take INVITE; the registrar authenticates callers from accounts
     * and knows where called accounts are bound. */
    if (calls_create(&a->calls, a->agent, a->root, a->base, a->store, a->gateways) < 0)
        return 1;
    calls_apply(a->calls, engine_config(a->engine));
    engine_attach_calls(a->engine, a->calls);
    calls_set_registrar(a->calls, a->registrar);
    sipagent_set_method_handler(a->agent, sip_method_invite, calls_on_invite, a->calls);
    /* Hostile traffic: per-source rates and bans (the port's datagram filter
     * and connection hooks, requests over TCP through the agent), gateways
     * and binding sources trusted, max_calls before any call state. */
    flood_attach(a->flood, a->root, sipagent_nta(a->agent));
    flood_apply(a->flood, engine_config(a->engine));
    flood_set_trusted_fn(a->flood, trusted_binding_source, a);
    flood_set_call_counter(a->flood, calls_in_progress, a);
    sipagent_set_stream_filter(a->agent, flood_admit, a->flood);
    /* INVITEs refused before any call (max_calls first) get stateless
     * answers. */
    calls_set_flood(a->calls, a->flood);
    /* Overload: new calls get 503 while the receive queues are full. */
    if (!(a->overload = overload_create(a->base, a->root)))
        return 1;
    overload_set_shedding(
        a->overload, config_switch(engine_config(a->engine))->security.overload_shedding);
    calls_set_overload(a->calls, a->overload);
    engine_attach_overload(a->engine, a->overload);
    sipagent_set_method_prefilter(a->agent, sip_method_invite, calls_prefilter_invite,
                                  a->calls);
    engine_attach_flood(a->engine, a->flood);
    engine_set_reload_handler(a->engine, on_reload, a);
    if (start_metrics(a) < 0)
        return 1;
    outreg_set_apply(a->outregs, engine_config(a->engine));
    evport_rearm(a->root);

    char control_path[4096];
    if (o->control)
        snprintf(control_path, sizeof control_path, "%s", o->control);
    else
        snprintf(control_path, sizeof control_path, "%s/control.sock", o->data);
    if (control_open(&a->control, a->base, control_path, engine_eval, a->engine) < 0)
        return 1;

    a->sig_term = evsignal_new(a->base, SIGTERM, on_signal, a);
    a->sig_int = evsignal_new(a->base, SIGINT, on_signal, a);
    a->sig_hup = evsignal_new(a->base, SIGHUP, on_signal, a);
    a->shutdown_timer = evtimer_new(a->base, on_shutdown_timer, a);
    a->housekeeping = event_new(a->base, -1, EV_PERSIST, on_housekeeping, a);
    struct timeval every = {HOUSEKEEPING_S, 0};
    event_add(a->housekeeping, &every);
    a->log_flush = event_new(a->base, -1, EV_PERSIST, on_log_flush, a);
    struct timeval flush_every = {(time_t)LOG_LIMIT_INTERVAL, 0};
    event_add(a->log_flush, &flush_every);
    evsignal_add(a->sig_term, NULL);
    evsignal_add(a->sig_int, NULL);
    evsignal_add(a->sig_hup, NULL);
    signal(SIGPIPE, SIG_IGN);

    log_info("main", "moonswitch ready: policies %s, data %s, control %s", o->policies,
             o->data, control_path);
    event_base_dispatch(a->base);
    log_info("main", "stopped");
    return 0;
}

static void cleanup(struct app *a)
{
    control_close(a->control);
    metrics_server_destroy(a->metrics);
    metrics_collector_remove(collect_app, a);
    sipmetrics_destroy(a->sipmetrics);
    calls_destroy(a->calls); /* before nta goes */
    overload_destroy(a->overload);
    /* Lua before nta: closing the states collects transaction objects that
     * still own nta transactions and legs. */
    if (a->flood)
        flood_set_hook(a->flood, NULL, NULL); /* on_flood lives in the engine */
    engine_destroy(a->engine);
    registrar_destroy(a->registrar); /* before nta goes */
    gw_destroy(a->gateways);         /* after calls, before outregs and nta */
    outreg_set_destroy(a->outregs);
    replyaddr_destroy(a->replies);
    hep_destroy(a->hep);
    sipagent_destroy(a->agent);
    flood_destroy(a->flood); /* after nta: closing connections reports to it */
    siptls_destroy(a->tls);  /* after nta: sofia frees its TLS objects first */
    if (a->root)
        su_root_destroy(a->root);
    store_close(a->store);
    if (a->sig_term)
        event_free(a->sig_term);
    if (a->sig_int)
        event_free(a->sig_int);
    if (a->sig_hup)
        event_free(a->sig_hup);
    if (a->shutdown_timer)
        event_free(a->shutdown_timer);
    if (a->housekeeping)
        event_free(a->housekeeping);
    if (a->log_flush)
        event_free(a->log_flush);
    log_detach_loop();
    if (a->base)
        event_base_free(a->base);
    metrics_free_all();
    if (a->root)
        su_deinit();
    free(a->opt.listen.v);
}

int main(int argc, char **argv)
{
    struct app a = {0};
    if (parse_options(argc, argv, &a.opt) < 0)
        return 2;
    int rc = run(&a);
    cleanup(&a);
    return rc;
}
