/* Unit tests for the outbound registration state machine (core/sip/outreg.c)
 * with its transport replaced by a double: REGISTERs are recorded instead of
 * sent, answers are made up here, and the entry's timers are fired by hand.
 *
 * The first table runs one entry through a sequence of answers and checks
 * where it ends: state, status, granted expiry, failures, the last REGISTER
 * and when the next one is due. The cases after it cover what needs the
 * timers or the operator: the refresh answering the remembered challenge,
 * the watchdog, expiry during a refresh, disable/enable, removal by a
 * reload, shutdown, an unsendable REGISTER and dynamic mode; then the
 * observer of state changes and the clamp on a retry_delay function. */
#include "check.h"
#include "config.h"
#include "sip/outreg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

/* ---- The transport double -------------------------------------------------- */

struct sent {
    int expires, cred_status;
    char cred[OUTREG_CRED_MAX];
    char contact[300];
    uint32_t cseq;
};

static struct {
    struct sent v[16];
    int n;
    int abandoned;
    bool refuse; /* send() fails, as with no route */
} wire;

static bool fake_send(struct outreg *r, int expires, int cred_status, const char *cred)
{
    if (wire.refuse) {
        outreg_set_error(r, "cannot send REGISTER (test)");
        return false;
    }
    struct sent *s = &wire.v[wire.n < 16 ? wire.n++ : 15];
    s->expires = expires;
    s->cred_status = cred ? cred_status : 0;
    snprintf(s->cred, sizeof s->cred, "%s", cred ? cred : "");
    snprintf(s->contact, sizeof s->contact, "%s", outreg_contact(r));
    s->cseq = r->cseq;
    return true;
}

static void fake_abandon(struct outreg *r)
{
    (void)r;
    wire.abandoned++;
}

static const struct outreg_transport fake = {.send = fake_send, .abandon = fake_abandon};

static const struct sent *last_sent(void)
{
    static const struct sent none;
    return wire.n ? &wire.v[wire.n - 1] : &none;
}

/* ---- Fixture ------------------------------------------------------------------ */

struct entry_cfg {
    int expires;     /* CONFIG_INHERIT, CONFIG_AUTO or seconds */
    int retry_delay; /* CONFIG_INHERIT or seconds */
    int mode;        /* enum reg_mode */
};

static struct config *make_config(const struct entry_cfg *e)
{
    struct config *cfg = config_new();
    char err[256];
    if (e) {
        struct registration_def *d =
            (void *)config_def_new(KIND_REGISTRATION, "carrier", "test.lua", 1);
        d->server = strdup("198.51.100.1");
        d->username = strdup("100");
        d->password = strdup("secret");
        d->expires = e->expires;
        d->retry_delay = e->retry_delay;
        d->mode = e->mode;
        CHECK(config_add(cfg, &d->head, err, sizeof err) == 0);
    }
    CHECK(config_finish(cfg, err, sizeof err) == 0);
    return cfg;
}

struct fixture {
    struct event_base *base;
    struct outreg_set *set;
    struct outreg *r;
};

/* A set with one entry, its first REGISTER sent. */
static struct fixture start(struct entry_cfg e)
{
    memset(&wire, 0, sizeof wire);
    struct fixture f = {0};
    f.base = event_base_new();
    CHECK(outreg_set_create(&f.set, NULL, f.base, NULL) == 0);
    outreg_set_transport(f.set, &fake);
    struct config *cfg = make_config(&e);
    outreg_set_apply(f.set, cfg);
    config_free(cfg);
    f.r = outreg_find(f.set, "carrier");
    CHECK(f.r != NULL);
    CHECK(outreg_state(f.r) == OUTREG_REGISTERING);
    /* The start-up spread: a timer of at most a few ms. */
    for (int i = 0; i < 100 && wire.n == 0; i++)
        event_base_loop(f.base, EVLOOP_ONCE);
    CHECK(wire.n == 1);
    return f;
}

static void finish(struct fixture *f)
{
    outreg_set_destroy(f->set);
    event_base_free(f->base);
}

/* Fire one of the entry's timers now. */
static void fire(struct fixture *f, struct event *ev)
{
    event_active(ev, EV_TIMEOUT, 1);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
}

/* ---- Answers ---------------------------------------------------------------- */

struct step {
    int status;
    int granted;       /* 2xx: granted seconds, -1: says nothing */
    int min_expires;   /* 423: -1: no Min-Expires */
    const char *nonce; /* 401/407: a Digest challenge with this nonce; NULL: none */
    bool stale;
    bool internal; /* made up by the SIP stack (a timeout) */
    const char *seen_at;
};

static void answer(struct outreg *r, const struct step *st)
{
    struct outreg_response res = {.status = st->status,
                                  .phrase = "Test",
                                  .internal = st->internal,
                                  .granted = st->granted,
                                  .min_expires = st->min_expires};
    snprintf(res.seen_at, sizeof res.seen_at, "%s", st->seen_at ? st->seen_at : "");
    if (st->nonce) {
        char nonce[64];
        snprintf(nonce, sizeof nonce, "nonce=\"%s\"", st->nonce);
        const char *params[] = {"realm=\"carrier\"", nonce, "qop=\"auth\"",
                                st->stale ? "stale=true" : "algorithm=MD5", NULL};
        res.challenged = digest_challenge_parse(&res.challenge, params) == 0;
    }
    outreg_answered(r, &res);
}

static const struct step OK_120 = {.status = 200, .granted = 120, .min_expires = -1};

/* Seconds from now to the next REGISTER, -1 when none is due. */
static long next_in(const struct outreg *r)
{
    time_t t = outreg_next_refresh(r);
    return t ? (long)(t - time(NULL)) : -1;
}

#define NEAR(a, b) ((a) >= (b)-1 && (a) <= (b) + 1)

/* ---- The table ---------------------------------------------------------------- */

struct scenario {
    const char *name;
    struct entry_cfg cfg;
    struct step steps[4]; /* until status 0 */
    /* Where the entry ends. */
    enum outreg_state state;
    int status, granted;
    unsigned failures;
    int sends;         /* REGISTERs in all */
    int last_expires;  /* of the last REGISTER */
    int last_cred;     /* its credentials' challenge status, 0: none */
    long next;         /* seconds to the next REGISTER, -1: none due */
    const char *error; /* in last_error; NULL: empty */
};

#define AUTO                                                                             \
    {                                                                                    \
        CONFIG_AUTO, CONFIG_INHERIT, REG_MODE_STATIC                                     \
    }
#define NONE_GRANTED .granted = -1, .min_expires = -1
#define CHALLENGE(st, n)                                                                 \
    {                                                                                    \
        .status = st, NONE_GRANTED, .nonce = n                                           \
    }

static const struct scenario scenarios[] = {
    {"200: active with the granted expiry, refresh at half",
     AUTO,
     {OK_120},
     OUTREG_ACTIVE,
     200,
     120,
     0,
     1,
     3600,
     0,
     60,
     NULL},
    {"200 without an expiry: what was asked",
     {300, CONFIG_INHERIT, REG_MODE_STATIC},
     {{.status = 200, NONE_GRANTED}},
     OUTREG_ACTIVE,
     200,
     300,
     0,
     1,
     300,
     0,
     150,
     NULL},
    {"200 granting 0: failed",
     AUTO,
     {{.status = 200, .granted = 0, .min_expires = -1}},
     OUTREG_FAILED,
     200,
     0,
     1,
     1,
     3600,
     0,
     60,
     "no expiry"},
    {"401: answered with credentials",
     AUTO,
     {CHALLENGE(401, "n1")},
     OUTREG_REGISTERING,
     0,
     0,
     0,
     2,
     3600,
     401,
     -1,
     NULL},
    {"407: answered with proxy credentials",
     AUTO,
     {CHALLENGE(407, "n1")},
     OUTREG_REGISTERING,
     0,
     0,
     0,
     2,
     3600,
     407,
     -1,
     NULL},
    {"401 then 200: active",
     AUTO,
     {CHALLENGE(401, "n1"), OK_120},
     OUTREG_ACTIVE,
     200,
     120,
     0,
     2,
     3600,
     401,
     60,
     NULL},
    {"second challenge, not stale: failed, no storm",
     AUTO,
     {CHALLENGE(401, "n1"), CHALLENGE(401, "n2")},
     OUTREG_FAILED,
     401,
     0,
     1,
     2,
     3600,
     401,
     60,
     "authentication failed"},
    {"second challenge, stale: answered again",
     AUTO,
     {CHALLENGE(401, "n1"), {.status = 401, NONE_GRANTED, .nonce = "n2", .stale = true}},
     OUTREG_REGISTERING,
     0,
     0,
     0,
     3,
     3600,
     401,
     -1,
     NULL},
    {"401 without a Digest challenge: failed",
     AUTO,
     {{.status = 401, NONE_GRANTED}},
     OUTREG_FAILED,
     401,
     0,
     1,
     1,
     3600,
     0,
     60,
     "without a Digest challenge"},
    {"423: again at once with Min-Expires",
     {30, CONFIG_INHERIT, REG_MODE_STATIC},
     {{.status = 423, .granted = -1, .min_expires = 60}},
     OUTREG_REGISTERING,
     0,
     0,
     0,
     2,
     60,
     0,
     -1,
     NULL},
    {"423 then 200: active with the Min-Expires",
     {30, CONFIG_INHERIT, REG_MODE_STATIC},
     {{.status = 423, .granted = -1, .min_expires = 60},
      {.status = 200, .granted = 60, .min_expires = -1}},
     OUTREG_ACTIVE,
     200,
     60,
     0,
     2,
     60,
     0,
     30,
     NULL},
    {"423 asking less than we did: failed",
     {60, CONFIG_INHERIT, REG_MODE_STATIC},
     {{.status = 423, .granted = -1, .min_expires = 30}},
     OUTREG_FAILED,
     423,
     0,
     1,
     1,
     60,
     0,
     60,
     "Min-Expires"},
    {"timeout: timeout state, retry after the delay",
     {CONFIG_AUTO, 45, REG_MODE_STATIC},
     {{.status = 408, NONE_GRANTED, .internal = true}},
     OUTREG_TIMEOUT,
     408,
     0,
     1,
     1,
     3600,
     0,
     45,
     "no answer"},
    {"403: failed, retry after the switch's delay",
     AUTO,
     {{.status = 403, NONE_GRANTED}},
     OUTREG_FAILED,
     403,
     0,
     1,
     1,
     3600,
     0,
     60,
     "403"},
};

static void table(void)
{
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        const struct scenario *sc = &scenarios[i];
        int before = check_failures;
        struct fixture f = start(sc->cfg);
        for (const struct step *st = sc->steps; st->status; st++)
            answer(f.r, st);
        const struct sent *last = last_sent();
        CHECK(outreg_state(f.r) == sc->state);
        CHECK(outreg_status(f.r) == sc->status);
        CHECK(outreg_expires(f.r) == sc->granted);
        CHECK(outreg_failures(f.r) == sc->failures);
        CHECK(wire.n == sc->sends);
        CHECK(last->expires == sc->last_expires);
        CHECK(last->cred_status == sc->last_cred);
        CHECK(NEAR(next_in(f.r), sc->next));
        if (sc->next >= 0)
            CHECK(event_pending(f.r->timer, EV_TIMEOUT, NULL));
        if (sc->error)
            CHECK_STR_CONTAINS(outreg_last_error(f.r), sc->error);
        else
            CHECK(outreg_last_error(f.r)[0] == '\0');
        if (check_failures != before)
            fprintf(stderr,
                    "  in scenario \"%s\": state %s, status %d, expires %d, "
                    "failures %u, %d sent, next in %ld, error \"%s\"\n",
                    sc->name, outreg_state_name(outreg_state(f.r)), outreg_status(f.r),
                    outreg_expires(f.r), outreg_failures(f.r), wire.n, next_in(f.r),
                    outreg_last_error(f.r));
        finish(&f);
    }
}

/* ---- Timers and the operator ------------------------------------------------------ */

/* The refresh at half the grant answers the remembered challenge up front
 * (nonce-count 2), and the entry stays active meanwhile. */
static void refresh_answers_remembered_challenge(void)
{
    struct fixture f = start((struct entry_cfg)AUTO);
    answer(f.r, &(struct step)CHALLENGE(401, "n1"));
    CHECK_STR_CONTAINS(last_sent()->cred, "nc=00000001");
    answer(f.r, &OK_120);
    CHECK(outreg_state(f.r) == OUTREG_ACTIVE);
    fire(&f, f.r->timer);
    CHECK(wire.n == 3);
    CHECK(last_sent()->cred_status == 401);
    CHECK_STR_CONTAINS(last_sent()->cred, "nonce=\"n1\"");
    CHECK_STR_CONTAINS(last_sent()->cred, "nc=00000002");
    CHECK(wire.v[0].cseq < wire.v[1].cseq && wire.v[1].cseq < wire.v[2].cseq);
    CHECK(outreg_state(f.r) == OUTREG_ACTIVE);
    answer(f.r, &OK_120);
    CHECK(outreg_state(f.r) == OUTREG_ACTIVE && wire.n == 3);
    finish(&f);
}

/* nta never answers: the watchdog drops the transaction and the entry
 * goes to timeout, to retry after the delay. */
static void watchdog_ends_in_timeout(void)
{
    struct fixture f = start((struct entry_cfg){CONFIG_AUTO, 30, REG_MODE_STATIC});
    fire(&f, f.r->timer);
    CHECK(wire.abandoned == 1);
    CHECK(outreg_state(f.r) == OUTREG_TIMEOUT);
    CHECK(outreg_status(f.r) == 408);
    CHECK_STR_CONTAINS(outreg_last_error(f.r), "watchdog");
    CHECK(NEAR(next_in(f.r), 30));
    fire(&f, f.r->timer); /* the retry */
    CHECK(wire.n == 2);
    CHECK(outreg_state(f.r) == OUTREG_REGISTERING);
    finish(&f);
}

/* The grant runs out while the refresh is unanswered: expired, and active
 * again when the refresh succeeds. */
static void expiry_during_refresh(void)
{
    struct fixture f = start((struct entry_cfg)AUTO);
    answer(f.r, &OK_120);
    fire(&f, f.r->timer); /* the refresh leaves */
    CHECK(wire.n == 2);
    fire(&f, f.r->expiry);
    CHECK(outreg_state(f.r) == OUTREG_EXPIRED);
    CHECK(outreg_expires(f.r) == 0);
    answer(f.r, &OK_120);
    CHECK(outreg_state(f.r) == OUTREG_ACTIVE);
    CHECK(outreg_expires(f.r) == 120);
    finish(&f);
}

/* disable(): an un-REGISTER, then disabled for good; enable() registers. */
static void disable_unregisters_enable_registers(void)
{
    struct fixture f = start((struct entry_cfg)AUTO);
    answer(f.r, &OK_120);
    outreg_disable(f.r);
    CHECK(wire.n == 2 && last_sent()->expires == 0);
    CHECK(outreg_state(f.r) == OUTREG_DISABLED);
    CHECK(!event_pending(f.r->expiry, EV_TIMEOUT, NULL));
    answer(f.r, &OK_120);
    CHECK(outreg_state(f.r) == OUTREG_DISABLED);
    CHECK(outreg_expires(f.r) == 0);
    CHECK(next_in(f.r) == -1);
    outreg_refresh(f.r); /* ignored while disabled */
    CHECK(wire.n == 2);
    outreg_enable(f.r);
    CHECK(wire.n == 3 && last_sent()->expires == 3600);
    CHECK(outreg_state(f.r) == OUTREG_REGISTERING);
    finish(&f);
}

/* enable() while the un-REGISTER is still unanswered: it is dropped and the
 * entry registers at once. */
static void enable_while_unregistering(void)
{
    struct fixture f = start((struct entry_cfg)AUTO);
    answer(f.r, &OK_120);
    outreg_disable(f.r);
    outreg_enable(f.r);
    CHECK(wire.abandoned == 1);
    CHECK(wire.n == 3 && last_sent()->expires == 3600);
    CHECK(outreg_state(f.r) == OUTREG_REGISTERING);
    answer(f.r, &OK_120);
    CHECK(outreg_state(f.r) == OUTREG_ACTIVE);
    finish(&f);
}

/* A reload that removes the entry: un-REGISTER with the remembered
 * credentials, gone from the set at once, freed when answered. */
static void removal_unregisters_and_frees(void)
{
    struct fixture f = start((struct entry_cfg)AUTO);
    answer(f.r, &(struct step)CHALLENGE(401, "n1"));
    answer(f.r, &OK_120);
    struct outreg *r = f.r;
    struct config *cfg = make_config(NULL);
    outreg_set_apply(f.set, cfg);
    config_free(cfg);
    CHECK(outreg_find(f.set, "carrier") == NULL);
    CHECK(outreg_set_count(f.set) == 0);
    CHECK(wire.n == 3 && last_sent()->expires == 0 && last_sent()->cred_status == 401);
    CHECK(f.set->nleaving == 1);
    answer(r, &OK_120); /* frees it: ASan sees any use after */
    CHECK(f.set->nleaving == 0);
    finish(&f);
}

static int shutdown_calls;
static void on_shutdown_done(void *arg)
{
    (void)arg;
    shutdown_calls++;
}

/* Shutdown: done only once the un-REGISTER is answered. */
static void shutdown_waits_for_unregister(void)
{
    struct fixture f = start((struct entry_cfg)AUTO);
    answer(f.r, &OK_120);
    shutdown_calls = 0;
    outreg_set_shutdown(f.set, on_shutdown_done, NULL);
    CHECK(wire.n == 2 && last_sent()->expires == 0);
    CHECK(shutdown_calls == 0);
    /* The un-REGISTER is challenged: answered once, still unregistering. */
    answer(f.r, &(struct step)CHALLENGE(401, "n1"));
    CHECK(wire.n == 3 && last_sent()->expires == 0 && last_sent()->cred_status == 401);
    CHECK(shutdown_calls == 0);
    answer(f.r, &OK_120);
    CHECK(shutdown_calls == 1);
    finish(&f);
}

/* A REGISTER that cannot leave counts as a timeout, retried later. */
static void unsendable_is_timeout(void)
{
    memset(&wire, 0, sizeof wire);
    struct fixture f = start((struct entry_cfg){CONFIG_AUTO, 40, REG_MODE_STATIC});
    answer(f.r, &OK_120);
    wire.refuse = true;
    outreg_refresh(f.r);
    CHECK(outreg_state(f.r) == OUTREG_TIMEOUT);
    CHECK(outreg_status(f.r) == 503);
    CHECK_STR_CONTAINS(outreg_last_error(f.r), "cannot send");
    CHECK(NEAR(next_in(f.r), 40));
    wire.refuse = false;
    finish(&f);
}

/* Dynamic mode: the 200 says where the registrar saw us; the entry
 * registers again at once with a Contact there. */
static void dynamic_mode_learns_address(void)
{
    struct fixture f =
        start((struct entry_cfg){CONFIG_AUTO, CONFIG_INHERIT, REG_MODE_DYNAMIC});
    CHECK(strcmp(last_sent()->contact, "sip:100@127.0.0.1:5060") == 0);
    struct step seen = OK_120;
    seen.seen_at = "203.0.113.5:40000";
    answer(f.r, &seen);
    CHECK(wire.n == 2);
    CHECK(strcmp(last_sent()->contact, "sip:100@203.0.113.5:40000") == 0);
    CHECK(outreg_state(f.r) == OUTREG_REGISTERING);
    answer(f.r, &seen);
    CHECK(wire.n == 2);
    CHECK(outreg_state(f.r) == OUTREG_ACTIVE);
    CHECK(strcmp(outreg_public_address(f.r), "203.0.113.5:40000") == 0);
    finish(&f);
}

/* ---- The observer and the retry hook ------------------------------------------- */

static struct {
    enum outreg_state was[16], now[16];
    int n;
} seen;

static void observe(struct outreg *r, enum outreg_state was, enum outreg_state now,
                    void *arg)
{
    CHECK(arg == &seen);
    CHECK(outreg_state(r) == now);
    if (seen.n < 16) {
        seen.was[seen.n] = was;
        seen.now[seen.n] = now;
    }
    seen.n++;
}

/* The observer hears each change of the public state once, in order, and
 * nothing of the changes inside one (a refresh, a challenge). */
static void observer_hears_public_changes_in_order(void)
{
    struct fixture f = start((struct entry_cfg){CONFIG_AUTO, 30, REG_MODE_STATIC});
    memset(&seen, 0, sizeof seen);
    outreg_set_observer(f.set, observe, &seen);
    answer(f.r, &(struct step)CHALLENGE(401, "n1"));
    answer(f.r, &OK_120);  /* registering -> active */
    fire(&f, f.r->timer);  /* the refresh: still active */
    fire(&f, f.r->expiry); /* active -> expired */
    answer(f.r, &OK_120);  /* expired -> active */
    outreg_disable(f.r);   /* active -> disabled */
    answer(f.r, &OK_120);  /* unregistered: still disabled */
    outreg_enable(f.r);    /* disabled -> registering */
    answer(f.r, &(struct step){.status = 403, NONE_GRANTED}); /* -> failed */
    fire(&f, f.r->timer);                                     /* failed -> registering */
    answer(f.r,
           &(struct step){.status = 408, NONE_GRANTED, .internal = true}); /* timeout */
    static const enum outreg_state want[][2] = {
        {OUTREG_REGISTERING, OUTREG_ACTIVE},   {OUTREG_ACTIVE, OUTREG_EXPIRED},
        {OUTREG_EXPIRED, OUTREG_ACTIVE},       {OUTREG_ACTIVE, OUTREG_DISABLED},
        {OUTREG_DISABLED, OUTREG_REGISTERING}, {OUTREG_REGISTERING, OUTREG_FAILED},
        {OUTREG_FAILED, OUTREG_REGISTERING},   {OUTREG_REGISTERING, OUTREG_TIMEOUT}};
    CHECK(seen.n == (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < seen.n && i < 16; i++) {
        if (seen.was[i] != want[i][0] || seen.now[i] != want[i][1])
            fprintf(stderr, "  change %d: %s -> %s, want %s -> %s\n", i,
                    outreg_state_name(seen.was[i]), outreg_state_name(seen.now[i]),
                    outreg_state_name(want[i][0]), outreg_state_name(want[i][1]));
        CHECK(seen.was[i] == want[i][0] && seen.now[i] == want[i][1]);
    }
    /* Removal: the un-REGISTER is the last change the observer hears. */
    fire(&f, f.r->timer); /* the retry */
    answer(f.r, &OK_120);
    seen.n = 0;
    struct config *cfg = make_config(NULL);
    outreg_set_apply(f.set, cfg);
    config_free(cfg);
    CHECK(seen.n == 1 && seen.was[0] == OUTREG_ACTIVE && seen.now[0] == OUTREG_DISABLED);
    outreg_set_observer(f.set, NULL, NULL);
    finish(&f);
}

static double hook_value;
static int hook_calls;
static double fake_retry_hook(struct outreg *r, int ref, void *arg)
{
    (void)r;
    (void)arg;
    CHECK(ref == 7);
    hook_calls++;
    return hook_value;
}

/* A policy function's delay is held to 30..600 s, said once per entry;
 * a negative value falls back to the entry's setting. */
static void retry_hook_is_clamped(void)
{
    static const struct {
        double value;
        long next;
        bool clamped;
    } cases[] = {{1, 30, true},     {0, 30, true},     {5000, 600, true},
                 {45.2, 46, false}, {600, 600, false}, {-1, 40, false}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct fixture f = start((struct entry_cfg){CONFIG_AUTO, 40, REG_MODE_STATIC});
        f.r->hook_ref = 7;
        hook_value = cases[i].value;
        hook_calls = 0;
        outreg_set_retry_hook(f.set, fake_retry_hook, NULL);
        answer(f.r, &(struct step){.status = 403, NONE_GRANTED});
        CHECK(hook_calls == 1);
        CHECK(NEAR(next_in(f.r), cases[i].next));
        CHECK(f.r->retry_clamped == cases[i].clamped);
        if (!NEAR(next_in(f.r), cases[i].next))
            fprintf(stderr, "  value %g: next in %ld, want %ld\n", cases[i].value,
                    next_in(f.r), cases[i].next);
        /* Later retries keep the clamp quiet: the flag stays set. */
        fire(&f, f.r->timer);
        answer(f.r, &(struct step){.status = 403, NONE_GRANTED});
        CHECK(hook_calls == 2 && f.r->retry_clamped == cases[i].clamped);
        finish(&f);
    }
}

TEST_MAIN(CASE(table), CASE(refresh_answers_remembered_challenge),
          CASE(watchdog_ends_in_timeout), CASE(expiry_during_refresh),
          CASE(disable_unregisters_enable_registers), CASE(enable_while_unregistering),
          CASE(removal_unregisters_and_frees), CASE(shutdown_waits_for_unregister),
          CASE(unsendable_is_timeout), CASE(dynamic_mode_learns_address),
          CASE(observer_hears_public_changes_in_order), CASE(retry_hook_is_clamped))
