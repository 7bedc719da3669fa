/* Outbound registration: the state machines, the set that follows the
 * policy, and the public API. See outreg.h; what goes on the wire is
 * outreg_send.c's, digest is outreg_auth.c's (outreg_internal.h). */
#include "sip/outreg_internal.h"
#include "config.h"
#include "log.h"
#include "sip/agent.h"
#include "sip/transport.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

/* Requested when expires = "auto": the carrier grants what it likes. */
#define AUTO_REQUEST 3600
/* How long a REGISTER may stay unanswered before we give up on it, beyond
 * nta's own timer F (64 * T1): a belt over nta's braces. */
#define WATCHDOG_SLACK 2
/* First REGISTERs of n new entries spread over min(n * 2 ms, 5 s). */
#define SPREAD_PER_ENTRY_MS 2
#define SPREAD_MAX_MS 5000

/* What an entry is doing. Each state says what is pending: a REGISTER in
 * flight (with the watchdog on r->timer), or a timer. outreg_state() shows
 * the operator the coarser enum outreg_state. */
enum state {
    ST_STARTING,      /* first REGISTER scheduled (the start-up spread) */
    ST_REGISTERING,   /* not registered; a REGISTER in flight */
    ST_ACTIVE,        /* registered; the refresh scheduled at half the grant */
    ST_REFRESHING,    /* registered; the refresh in flight */
    ST_EXPIRED,       /* the grant ran out; the refresh still in flight */
    ST_FAILED,        /* refused; the retry scheduled */
    ST_TIMEOUT,       /* unanswered or unsendable; the retry scheduled */
    ST_UNREGISTERING, /* an un-REGISTER in flight */
    ST_DISABLED,      /* nothing pending */
};

static const char *state_name(enum state st)
{
    switch (st) {
    case ST_STARTING:
        return "starting";
    case ST_REGISTERING:
        return "registering";
    case ST_ACTIVE:
        return "active";
    case ST_REFRESHING:
        return "refreshing";
    case ST_EXPIRED:
        return "expired";
    case ST_FAILED:
        return "failed";
    case ST_TIMEOUT:
        return "timeout";
    case ST_UNREGISTERING:
        return "unregistering";
    case ST_DISABLED:
        return "disabled";
    }
    return "?";
}

static enum outreg_state public_state(enum state st)
{
    switch (st) {
    case ST_STARTING:
    case ST_REGISTERING:
        return OUTREG_REGISTERING;
    case ST_ACTIVE:
    case ST_REFRESHING:
        return OUTREG_ACTIVE;
    case ST_EXPIRED:
        return OUTREG_EXPIRED;
    case ST_FAILED:
        return OUTREG_FAILED;
    case ST_TIMEOUT:
        return OUTREG_TIMEOUT;
    case ST_UNREGISTERING:
    case ST_DISABLED:
        return OUTREG_DISABLED;
    }
    return OUTREG_DISABLED;
}

const char *outreg_state_name(enum outreg_state s)
{
    static const char *const names[] = {"registering", "active",  "expired",
                                        "failed",      "timeout", "disabled"};
    return s <= OUTREG_DISABLED ? names[s] : "?";
}

static bool in_flight(const struct outreg *r)
{
    switch ((enum state)r->state) {
    case ST_REGISTERING:
    case ST_REFRESHING:
    case ST_EXPIRED:
    case ST_UNREGISTERING:
        return true;
    case ST_STARTING:
    case ST_ACTIVE:
    case ST_FAILED:
    case ST_TIMEOUT:
    case ST_DISABLED:
        return false;
    }
    return false;
}

static void enter(struct outreg *r, enum state st)
{
    enum state before = (enum state)r->state;
    if (before == st)
        return;
    r->state = st;
    enum outreg_state was = public_state(before), now = public_state(st);
    if (was == now) {
        log_debug("outreg", "%s: %s -> %s", r->name, state_name(before), state_name(st));
        return;
    }
    log_info("outreg", "%s: %s -> %s", r->name, outreg_state_name(was),
             outreg_state_name(now));
    if (r->set->observer)
        r->set->observer(r, was, now, r->set->observer_arg);
}

/* ---- Helpers ------------------------------------------------------------ */

void outreg_set_str(char **slot, const char *value)
{
    if (*slot && value && strcmp(*slot, value) == 0)
        return;
    free(*slot);
    *slot = value && *value ? strdup(value) : NULL;
}

void outreg_set_error(struct outreg *r, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    outreg_set_str(&r->last_error, msg);
}

/* After acting outside sofia's callbacks (our timers, the operator, a
 * reload): let the event port see the timers nta set. */
static void settle(struct outreg_set *s)
{
    if (s->agent)
        sipagent_after_sofia(s->agent);
}

static void arm(struct event *ev, double seconds)
{
    if (seconds < 0)
        seconds = 0;
    struct timeval tv = {.tv_sec = (time_t)seconds,
                         .tv_usec =
                             (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    evtimer_add(ev, &tv);
}

/* The policy function's delay, held to the range a number in the policy
 * must be in: a function returning 1 s must not hammer the carrier. */
static int hook_retry_delay(struct outreg *r, double d)
{
    int clamped = d < OUTREG_RETRY_MIN   ? OUTREG_RETRY_MIN
                  : d > OUTREG_RETRY_MAX ? OUTREG_RETRY_MAX
                                         : (int)d + ((double)(int)d < d); /* rounded up */
    if ((d < OUTREG_RETRY_MIN || d > OUTREG_RETRY_MAX) && !r->retry_clamped) {
        r->retry_clamped = true;
        log_warn("outreg",
                 "%s: retry_delay returned %g s, outside %d..%d: %d s used (said once)",
                 r->name, d, OUTREG_RETRY_MIN, OUTREG_RETRY_MAX, clamped);
    }
    return clamped;
}

static int effective_retry_delay(struct outreg *r)
{
    struct outreg_set *s = r->set;
    if (r->hook_ref && s->retry_h) {
        double d = s->retry_h(r, r->hook_ref, s->retry_arg);
        if (d >= 0)
            return hook_retry_delay(r, d);
    }
    return r->retry_delay_cfg > 0 ? r->retry_delay_cfg : s->default_retry_delay;
}

static int requested_expires(const struct outreg *r)
{
    int e = r->expires_cfg == CONFIG_INHERIT ? r->set->default_expires : r->expires_cfg;
    return e == CONFIG_AUTO ? AUTO_REQUEST : e;
}

/* ---- Sending -------------------------------------------------------------- */

/* Send a REGISTER for `expires` seconds (0: un-REGISTER) carrying `cred`
 * for a `cred_status` challenge, and enter `next`, a state with a REGISTER
 * in flight. Returns false, with last_error set and the state unchanged,
 * when nothing went out. */
static bool transmit(struct outreg *r, enum state next, int expires, int cred_status,
                     const char *cred)
{
    struct outreg_set *s = r->set;
    r->requested = expires;
    outreg_next_cseq(r);
    if (!s->tp->send(r, expires, cred_status, cred))
        return false;
    /* Watchdog: nta's timer F is 64 * T1. */
    arm(r->timer, 64.0 * s->t1_ms / 1000.0 + WATCHDOG_SLACK);
    r->next_refresh = 0;
    enter(r, next);
    return true;
}

/* A REGISTER that answers no fresh challenge: with the remembered one's
 * credentials when there is one (a 401 to them is then answered once). */
static bool transmit_fresh(struct outreg *r, enum state next, int expires)
{
    char cred[OUTREG_CRED_MAX];
    int st = outreg_auth_cached(r, cred, sizeof cred);
    r->answering = 0;
    return transmit(r, next, expires, st, st ? cred : NULL);
}

static void schedule_retry(struct outreg *r)
{
    int delay = effective_retry_delay(r);
    r->next_refresh = time(NULL) + delay;
    arm(r->timer, delay);
    log_info("outreg", "%s: retrying in %d s", r->name, delay);
}

/* Give up on this attempt: enter `st` (ST_FAILED or ST_TIMEOUT) and retry
 * after the delay. */
static void fail(struct outreg *r, enum state st, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct outreg *r, enum state st, int status, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    outreg_set_str(&r->last_error, msg);
    r->status = status;
    r->failures++;
    r->granted = 0;
    event_del(r->expiry);
    log_warn("outreg", "%s: %s", r->name, outreg_last_error(r));
    enter(r, st);
    schedule_retry(r);
}

/* Send a REGISTER now: start, refresh, retry, the operator, a reload. */
static void register_now(struct outreg *r)
{
    enum state next = ST_REGISTERING;
    switch ((enum state)r->state) {
    case ST_REGISTERING:
    case ST_REFRESHING:
    case ST_EXPIRED:
        return; /* one in flight already; its answer decides */
    case ST_UNREGISTERING:
        if (r->leaving || r->set->shutdown_done)
            return;
        r->set->tp->abandon(r); /* registering again supersedes it */
        break;
    case ST_ACTIVE:
        next = ST_REFRESHING;
        break;
    case ST_STARTING:
    case ST_FAILED:
    case ST_TIMEOUT:
    case ST_DISABLED:
        break;
    }
    event_del(r->timer);
    outreg_compute_contact(r);
    if (!transmit_fresh(r, next, requested_expires(r)))
        fail(r, ST_TIMEOUT, 503, "%s", r->last_error);
}

/* ---- Answers ---------------------------------------------------------------- */

/* Dynamic mode: take the address the registrar saw us at. Returns true
 * when the Contact changed (then we register again with it). */
static bool learn_address(struct outreg *r, const char *seen_at)
{
    if (r->mode != REG_MODE_DYNAMIC || !*seen_at)
        return false;
    if (r->public_address && strcmp(seen_at, r->public_address) == 0)
        return false;
    outreg_set_str(&r->public_address, seen_at);
    char before[300];
    snprintf(before, sizeof before, "%s", r->contact ? r->contact : "");
    outreg_compute_contact(r);
    if (strcmp(before, r->contact) == 0)
        return false;
    log_info("outreg", "%s: public address is %s: re-registering with Contact %s",
             r->name, r->public_address, r->contact);
    return true;
}

static void registered(struct outreg *r, const struct outreg_response *res)
{
    if (learn_address(r, res->seen_at)) {
        r->answering = 0;
        if (!transmit(r, (enum state)r->state, requested_expires(r), 0, NULL))
            fail(r, ST_TIMEOUT, 503, "%s", r->last_error);
        return;
    }
    int granted = res->granted >= 0 ? res->granted : r->requested;
    if (granted <= 0) {
        fail(r, ST_FAILED, 200, "registrar granted no expiry");
        return;
    }
    r->granted = granted;
    r->status = 200;
    r->failures = 0;
    outreg_set_str(&r->last_error, NULL);
    /* Refresh half-way: a lost refresh still leaves time for another. */
    double half = granted / 2.0;
    r->next_refresh = time(NULL) + (time_t)half;
    arm(r->timer, half);
    arm(r->expiry, granted);
    enter(r, ST_ACTIVE);
}

static void challenged(struct outreg *r, const struct outreg_response *res)
{
    int status = res->status;
    if (!res->challenged) {
        fail(r, ST_FAILED, status, "%d without a Digest challenge we support", status);
        return;
    }
    if (r->answering >= r->set->auth_retry && !res->challenge.stale) {
        /* We answered sip.authentication_retry challenges and were
         * challenged again: the credentials are wrong. Retrying now would
         * be a storm. */
        fail(r, ST_FAILED, status, "authentication failed (%d after credentials)",
             status);
        return;
    }
    char cred[OUTREG_CRED_MAX];
    if (!outreg_auth_answer(r, status, &res->challenge, cred, sizeof cred)) {
        fail(r, ST_FAILED, status, "cannot answer the %s challenge",
             digest_alg_name(res->challenge.alg));
        return;
    }
    r->answering++;
    if (!transmit(r, (enum state)r->state, r->requested, status, cred))
        fail(r, ST_TIMEOUT, 503, "%s", r->last_error);
}

static void interval_too_brief(struct outreg *r, int min)
{
    if (min <= r->requested || min > 86400) {
        fail(r, ST_FAILED, 423, "423 with an unusable Min-Expires %d", min);
        return;
    }
    log_info("outreg", "%s: 423, registering again with Min-Expires %d", r->name, min);
    if (!transmit_fresh(r, (enum state)r->state, min))
        fail(r, ST_TIMEOUT, 503, "%s", r->last_error);
}

/* Why the TLS connection for the REGISTER just answered failed, if it did:
 * a failure within the transaction's life (timer F and the watchdog). */
static const char *tls_failure(const struct outreg *r)
{
    time_t life = (time_t)(64 * r->set->t1_ms / 1000 + WATCHDOG_SLACK + 1);
    return transport_tls_failure(r->transport, r->proxy, r->server, r->port,
                                 time(NULL) - life);
}

/* The answer to a REGISTER (not an un-REGISTER). */
static void register_answered(struct outreg *r, const struct outreg_response *res)
{
    int status = res->status;
    const char *tls;
    if (status >= 200 && status < 300)
        registered(r, res);
    else if ((status == 401 || status == 407) && !res->internal)
        challenged(r, res);
    else if (status == 423 && res->min_expires >= 0 && !res->internal)
        interval_too_brief(r, res->min_expires);
    else if (res->internal && (tls = tls_failure(r)))
        /* The carrier's TLS refused us (or we it): a failure, not silence. */
        fail(r, ST_FAILED, status, "TLS with %s:%d failed: %s", r->server, r->port, tls);
    else if (res->internal)
        fail(r, ST_TIMEOUT, status, "no answer from %s:%d (%d %s)", r->server, r->port,
             status, res->phrase);
    else
        fail(r, ST_FAILED, status, "%d %s", status, res->phrase);
}

static void leaving_done(struct outreg *r);

/* The un-REGISTER is over (answered or given up). May free r. */
static void unregistered(struct outreg *r, int status)
{
    r->granted = 0;
    r->status = status;
    event_del(r->expiry);
    log_info("outreg", "%s: unregistered (%d)", r->name, status);
    enter(r, ST_DISABLED);
    struct outreg_set *s = r->set;
    if (s->shutdown_done && s->shutdown_pending > 0 && --s->shutdown_pending == 0) {
        void (*done)(void *) = s->shutdown_done;
        s->shutdown_done = NULL;
        done(s->shutdown_arg);
        return;
    }
    if (r->leaving)
        leaving_done(r);
}

static void unregister_answered(struct outreg *r, const struct outreg_response *res)
{
    int status = res->status;
    if ((status == 401 || status == 407) && !res->internal && res->challenged &&
        r->answering < r->set->auth_retry) {
        /* Answer the challenge (up to the retry count), still unregistering. */
        char cred[OUTREG_CRED_MAX];
        if (outreg_auth_answer(r, status, &res->challenge, cred, sizeof cred)) {
            r->answering++;
            if (transmit(r, ST_UNREGISTERING, 0, status, cred))
                return;
        }
    }
    unregistered(r, status);
}

void outreg_answered(struct outreg *r, const struct outreg_response *res)
{
    switch ((enum state)r->state) {
    case ST_REGISTERING:
    case ST_REFRESHING:
    case ST_EXPIRED:
        event_del(r->timer); /* the watchdog */
        register_answered(r, res);
        break;
    case ST_UNREGISTERING:
        event_del(r->timer);
        unregister_answered(r, res);
        break;
    case ST_STARTING:
    case ST_ACTIVE:
    case ST_FAILED:
    case ST_TIMEOUT:
    case ST_DISABLED:
        /* Nothing in flight: the transport should have dropped it. */
        log_debug("outreg", "%s: answer %d ignored in state %s", r->name, res->status,
                  state_name((enum state)r->state));
        break;
    }
}

/* ---- Timers ----------------------------------------------------------------- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct outreg *r = arg;
    struct outreg_set *s = r->set;
    (void)fd;
    (void)what;
    switch ((enum state)r->state) {
    case ST_REGISTERING:
    case ST_REFRESHING:
    case ST_EXPIRED:
        /* The watchdog: nta never answered. Should not happen; if it does,
         * it must not leave the entry stuck. */
        s->tp->abandon(r);
        fail(r, ST_TIMEOUT, 408, "REGISTER unanswered (watchdog)");
        break;
    case ST_UNREGISTERING:
        s->tp->abandon(r);
        unregistered(r, 408);
        break;
    case ST_STARTING:
    case ST_ACTIVE:
    case ST_FAILED:
    case ST_TIMEOUT:
        register_now(r);
        break;
    case ST_DISABLED:
        break;
    }
    settle(s);
}

static void on_expiry(evutil_socket_t fd, short what, void *arg)
{
    struct outreg *r = arg;
    (void)fd;
    (void)what;
    switch ((enum state)r->state) {
    case ST_ACTIVE:
        /* The refresh, due at half the grant, never left: send it now. */
        register_now(r);
        if (r->state != ST_REFRESHING)
            break;
        /* fall through */
    case ST_REFRESHING:
        r->granted = 0;
        outreg_set_error(r, "expired before a refresh succeeded");
        enter(r, ST_EXPIRED);
        break;
    case ST_STARTING:
    case ST_REGISTERING:
    case ST_EXPIRED:
    case ST_FAILED:
    case ST_TIMEOUT:
    case ST_UNREGISTERING:
    case ST_DISABLED:
        break;
    }
    settle(r->set);
}

/* Unregister when anything may be registered at the carrier, and stop: the
 * entry ends in ST_UNREGISTERING (the answer finishes the job; returns
 * true) or ST_DISABLED. */
static bool stop(struct outreg *r)
{
    struct outreg_set *s = r->set;
    bool registered = false;
    switch ((enum state)r->state) {
    case ST_UNREGISTERING:
        return true; /* on its way already */
    case ST_REGISTERING:
    case ST_REFRESHING:
    case ST_EXPIRED:
        s->tp->abandon(r); /* it may have reached the carrier */
        registered = true;
        break;
    case ST_ACTIVE:
        registered = true;
        break;
    case ST_STARTING:
        registered = r->cseq > 0; /* a REGISTER of an earlier run may stand */
        break;
    case ST_FAILED:
    case ST_TIMEOUT:
    case ST_DISABLED:
        break;
    }
    event_del(r->timer);
    event_del(r->expiry);
    r->next_refresh = 0;
    if (registered && s->send_unregister) {
        if (transmit_fresh(r, ST_UNREGISTERING, 0))
            return true;
        log_warn("outreg", "%s: %s", r->name, outreg_last_error(r));
    }
    enter(r, ST_DISABLED);
    return false;
}

/* ---- Entries ------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void copy_def(struct outreg *r, const struct registration_def *d)
{
    char **strs[] = {&r->server,   &r->username, &r->password, &r->auth_username,
                     &r->hostname, &r->proxy,    &r->local_ip, &r->user_agent};
    const char *vals[] = {d->server,   d->username, d->password, d->auth_username,
                          d->hostname, d->proxy,    d->local_ip, d->user_agent};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        free(*strs[i]);
        *strs[i] = dup_or_null(vals[i]);
    }
    r->port = d->port;
    r->expires_cfg = d->expires;
    r->retry_delay_cfg = d->retry_delay;
    if (r->hook_ref != d->retry_delay_hook.ref)
        r->retry_clamped = false; /* a new function (each reload makes one) */
    r->hook_ref = d->retry_delay_hook.ref;
    r->mode = d->mode;
    r->privacy = d->privacy;
    r->enabled_cfg = d->enabled;
    r->transport = d->transport;
}

static void entry_free(struct outreg *r)
{
    if (!r)
        return;
    if (in_flight(r))
        r->set->tp->abandon(r);
    if (r->timer)
        event_free(r->timer);
    if (r->expiry)
        event_free(r->expiry);
    outreg_auth_free(r->auth);
    char *strs[] = {r->name,          r->server,   r->username,       r->password,
                    r->auth_username, r->hostname, r->proxy,          r->local_ip,
                    r->user_agent,    r->contact,  r->public_address, r->last_error};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        free(strs[i]);
    free(r);
}

static struct outreg *entry_new(struct outreg_set *s, const struct registration_def *d)
{
    struct outreg *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->set = s;
    r->state = ST_DISABLED;
    r->name = strdup(d->head.name);
    r->timer = evtimer_new(s->base, on_timer, r);
    r->expiry = evtimer_new(s->base, on_expiry, r);
    if (!r->name || !r->timer || !r->expiry) {
        entry_free(r);
        return NULL;
    }
    copy_def(r, d);
    outreg_ids_load(r);
    outreg_compute_contact(r);
    r->auth = outreg_auth_new();
    r->state = r->enabled_cfg ? ST_STARTING : ST_DISABLED;
    return r;
}

static void leaving_done(struct outreg *r)
{
    struct outreg_set *s = r->set;
    for (size_t i = 0; i < s->nleaving; i++) {
        if (s->leaving[i] == r) {
            s->leaving[i] = s->leaving[--s->nleaving];
            break;
        }
    }
    entry_free(r);
}

/* Removed from the policy: unregister, then go. */
static void entry_remove(struct outreg_set *s, struct outreg *r)
{
    outreg_ids_forget(r);
    r->leaving = true;
    struct outreg **grown = realloc(s->leaving, (s->nleaving + 1) * sizeof *grown);
    if (grown)
        s->leaving = grown;
    if (grown && stop(r)) {
        s->leaving[s->nleaving++] = r;
        return;
    }
    enter(r, ST_DISABLED);
    entry_free(r);
}

/* ---- The set -------------------------------------------------------------- */

int outreg_set_create(struct outreg_set **sp, struct sipagent *agent,
                      struct event_base *base, struct store *store)
{
    struct outreg_set *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->agent = agent;
    s->tp = &outreg_nta_transport;
    s->base = base;
    s->store = store;
    s->default_expires = CONFIG_AUTO;
    s->default_retry_delay = 60;
    s->send_unregister = true;
    s->t1_ms = 500;
    s->auth_retry = 1;
    *sp = s;
    return 0;
}

void outreg_set_transport(struct outreg_set *s, const struct outreg_transport *tp)
{
    s->tp = tp;
}

void outreg_set_destroy(struct outreg_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        entry_free(s->v[i]);
    for (size_t i = 0; i < s->nleaving; i++)
        entry_free(s->leaving[i]);
    free(s->v);
    free(s->leaving);
    free(s);
}

void outreg_set_retry_hook(struct outreg_set *s, outreg_retry_h *h, void *arg)
{
    s->retry_h = h;
    s->retry_arg = arg;
}

void outreg_set_observer(struct outreg_set *s, outreg_observer_h *h, void *arg)
{
    s->observer = h;
    s->observer_arg = arg;
}

static int def_by_name(const void *a, const void *b)
{
    return strcmp((*(const struct registration_def *const *)a)->head.name,
                  (*(const struct registration_def *const *)b)->head.name);
}

static int name_cmp(const void *name, const void *entry)
{
    return strcmp(name, (*(struct outreg *const *)entry)->name);
}

struct outreg *outreg_find(struct outreg_set *s, const char *name)
{
    struct outreg **hit = s->n ? bsearch(name, s->v, s->n, sizeof *s->v, name_cmp) : NULL;
    return hit ? *hit : NULL;
}

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* Did anything that goes on the wire change? (A new retry function alone
 * does not warrant a new REGISTER.) */
static bool wire_changed(const struct outreg *r, const struct registration_def *d)
{
    return !str_eq(r->server, d->server) || !str_eq(r->username, d->username) ||
           !str_eq(r->password, d->password) ||
           !str_eq(r->auth_username, d->auth_username) ||
           !str_eq(r->hostname, d->hostname) || !str_eq(r->proxy, d->proxy) ||
           !str_eq(r->local_ip, d->local_ip) || !str_eq(r->user_agent, d->user_agent) ||
           r->port != d->port || r->expires_cfg != d->expires || r->mode != d->mode ||
           r->privacy != d->privacy || r->enabled_cfg != d->enabled ||
           r->transport != d->transport;
}

/* An entry the policy keeps: take its definition and act on what changed. */
static void entry_update(struct outreg *r, const struct registration_def *d,
                         bool defaults_changed)
{
    bool changed = wire_changed(r, d);
    if (changed)
        outreg_auth_forget(r); /* the credentials may have changed */
    copy_def(r, d);            /* also takes the new runtime's hook reference */
    bool disabled = public_state((enum state)r->state) == OUTREG_DISABLED;
    if (!r->enabled_cfg) {
        if (!disabled)
            stop(r);
    } else if (changed || (defaults_changed && !disabled)) {
        log_info("outreg", "%s: changed, registering again", r->name);
        register_now(r);
    }
}

/* Start new entries, their first REGISTERs spread over a short random
 * window. */
static void start_spread(struct outreg **fresh, size_t n)
{
    unsigned window_ms = (unsigned)n * SPREAD_PER_ENTRY_MS;
    if (window_ms > SPREAD_MAX_MS)
        window_ms = SPREAD_MAX_MS;
    for (size_t k = 0; k < n; k++) {
        struct outreg *r = fresh[k];
        if (r->state != ST_STARTING)
            continue;
        double delay = window_ms ? (double)(random() % (window_ms + 1)) / 1000.0 : 0;
        r->next_refresh = time(NULL) + (time_t)delay;
        arm(r->timer, delay);
    }
}

void outreg_set_apply(struct outreg_set *s, const struct config *cfg)
{
    const struct switch_def *sw = config_switch(cfg);
    int privacy_before = s->default_privacy, expires_before = s->default_expires;
    s->default_expires = sw->sip.user_agent_expire;
    s->default_retry_delay = sw->sip.user_agent_retry_delay;
    s->default_privacy = sw->sip.user_agent_privacy;
    s->send_unregister = sw->sip.user_agent_send_unregister;
    s->t1_ms = (unsigned)sw->sip.resend_interval;
    s->auth_retry = (unsigned)sw->sip.authentication_retry;
    bool defaults_changed =
        privacy_before != s->default_privacy || expires_before != s->default_expires;

    size_t n = config_count(cfg, KIND_REGISTRATION);
    const struct registration_def **defs = calloc(n ? n : 1, sizeof *defs);
    struct outreg **next = calloc(n ? n : 1, sizeof *next);
    struct outreg **fresh = calloc(n ? n : 1, sizeof *fresh);
    if (!defs || !next || !fresh) {
        log_error("outreg", "out of memory applying the policy");
        free(defs);
        free(next);
        free(fresh);
        return;
    }
    for (size_t i = 0; i < n; i++)
        defs[i] = (const void *)config_at(cfg, KIND_REGISTRATION, i);
    qsort(defs, n, sizeof *defs, def_by_name);

    /* Merge the two sorted lists. */
    size_t i = 0, j = 0, m = 0, added = 0;
    while (i < s->n || j < n) {
        int c = i == s->n ? 1 : j == n ? -1 : strcmp(s->v[i]->name, defs[j]->head.name);
        if (c < 0) { /* removed */
            entry_remove(s, s->v[i++]);
        } else if (c > 0) { /* added */
            struct outreg *r = entry_new(s, defs[j++]);
            if (!r) {
                log_error("outreg", "out of memory adding %s", defs[j - 1]->head.name);
                continue;
            }
            next[m++] = r;
            fresh[added++] = r;
        } else {
            struct outreg *r = s->v[i++];
            entry_update(r, defs[j++], defaults_changed);
            next[m++] = r;
        }
    }
    free(s->v);
    s->v = next;
    s->n = m;
    free(defs);
    start_spread(fresh, added);
    free(fresh);
    settle(s);
}

void outreg_set_shutdown(struct outreg_set *s, void (*done)(void *arg), void *arg)
{
    s->shutdown_done = done;
    s->shutdown_arg = arg;
    s->shutdown_pending = 0;
    for (size_t i = 0; i < s->n; i++)
        if (stop(s->v[i]))
            s->shutdown_pending++;
    for (size_t i = 0; i < s->nleaving; i++)
        if (s->leaving[i]->state == ST_UNREGISTERING)
            s->shutdown_pending++;
    if (s->shutdown_pending == 0) {
        s->shutdown_done = NULL;
        done(arg);
    } else {
        log_info("outreg", "unregistering %u entries", s->shutdown_pending);
    }
    settle(s);
}

size_t outreg_set_count(const struct outreg_set *s)
{
    return s->n;
}

struct outreg *outreg_set_at(struct outreg_set *s, size_t i)
{
    return i < s->n ? s->v[i] : NULL;
}

/* ---- Accessors and operator actions ----------------------------------------- */

const char *outreg_name(const struct outreg *r)
{
    return r->name;
}
enum outreg_state outreg_state(const struct outreg *r)
{
    return public_state((enum state)r->state);
}
int outreg_status(const struct outreg *r)
{
    return r->status;
}
int outreg_expires(const struct outreg *r)
{
    return r->granted;
}
unsigned outreg_failures(const struct outreg *r)
{
    return r->failures;
}
const char *outreg_contact(const struct outreg *r)
{
    return r->contact ? r->contact : "";
}
time_t outreg_next_refresh(const struct outreg *r)
{
    return r->next_refresh;
}
const char *outreg_public_address(const struct outreg *r)
{
    return r->public_address ? r->public_address : "";
}
const char *outreg_last_error(const struct outreg *r)
{
    return r->last_error ? r->last_error : "";
}
const char *outreg_call_id(const struct outreg *r)
{
    return r->call_id;
}
uint32_t outreg_cseq(const struct outreg *r)
{
    return r->cseq;
}
const char *outreg_server(const struct outreg *r)
{
    return r->server;
}
const char *outreg_username(const struct outreg *r)
{
    return r->username;
}
int outreg_privacy(const struct outreg *r)
{
    return r->privacy == CONFIG_INHERIT ? r->set->default_privacy : r->privacy;
}
bool outreg_tracing(const struct outreg *r)
{
    return r->trace;
}

void outreg_refresh(struct outreg *r)
{
    if (r->leaving || r->set->shutdown_done ||
        public_state((enum state)r->state) == OUTREG_DISABLED)
        return;
    register_now(r);
    settle(r->set);
}

void outreg_disable(struct outreg *r)
{
    if (r->leaving || public_state((enum state)r->state) == OUTREG_DISABLED)
        return;
    stop(r);
    settle(r->set);
}

void outreg_enable(struct outreg *r)
{
    if (r->leaving || r->set->shutdown_done || !r->enabled_cfg ||
        public_state((enum state)r->state) != OUTREG_DISABLED)
        return;
    r->failures = 0;
    register_now(r);
    settle(r->set);
}

void outreg_trace(struct outreg *r, bool on)
{
    r->trace = on;
    log_info("outreg", "%s: trace %s", r->name, on ? "on" : "off");
}
