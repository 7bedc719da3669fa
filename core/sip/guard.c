/* Failed authentications and suspensions. See guard.h. */
#include "sip/guard.h"
#include "log.h"
#include "sip/registrar_internal.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#define SUSPEND_VERSION 1
/* Failure counters and suspensions kept in memory at most. */
#define BUCKETS 4096
#define MAX_ENTRIES 200000
#define SWEEP_S 60

struct entry {
    struct entry *next;
    long long last_failure;
    long long until;       /* suspended until; 0: not suspended */
    uint64_t last_attempt; /* fingerprint of the last failed credentials */
    unsigned failures;
    char key[]; /* kind ('a' or 's') + name, NUL-terminated */
};

struct guard {
    struct store *store;
    int retry, suspend;
    struct entry *buckets[BUCKETS];
    size_t count;
    struct event *sweep_ev;
};

static unsigned hash(const char *key)
{
    unsigned h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h & (BUCKETS - 1);
}

static struct entry *get(struct guard *g, char kind, const char *name, bool create)
{
    char key[160];
    size_t len = strlen(name);
    if (len + 2 > sizeof key)
        return NULL;
    key[0] = kind;
    memcpy(key + 1, name, len + 1);
    int n = (int)len + 1;
    unsigned h = hash(key);
    for (struct entry *e = g->buckets[h]; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    if (!create || g->count >= MAX_ENTRIES)
        return NULL;
    struct entry *e = calloc(1, sizeof *e + (size_t)n + 1);
    if (!e)
        return NULL;
    memcpy(e->key, key, (size_t)n + 1);
    e->next = g->buckets[h];
    g->buckets[h] = e;
    g->count++;
    return e;
}

static void persist(struct guard *g, const struct entry *e)
{
    if (!g->store)
        return;
    size_t klen = strlen(e->key);
    if (e->until) {
        uint8_t v[8];
        store_key_u64(v, (uint64_t)e->until);
        store_put(g->store, STORE_SUSPEND, e->key, klen, SUSPEND_VERSION, v, 8);
    } else {
        store_del(g->store, STORE_SUSPEND, e->key, klen);
    }
}

static const char *kind_name(char kind)
{
    return kind == GUARD_ACCOUNT ? "account" : "source";
}

bool guard_suspended(struct guard *g, enum guard_kind kind, const char *name,
                     long long now)
{
    struct entry *e = get(g, (char)kind, name, false);
    if (!e || !e->until)
        return false;
    if (e->until > now)
        return true;
    e->until = 0;
    e->failures = 0;
    persist(g, e);
    log_info("registrar", "%s %s: suspension over", kind_name((char)kind), name);
    return false;
}

static bool count_failure(struct guard *g, char kind, const char *name, long long now,
                          uint64_t attempt)
{
    struct entry *e = get(g, kind, name, true);
    if (!e)
        return false;
    if (now - e->last_failure > REGISTRAR_FAILURE_WINDOW)
        e->failures = 0;
    else if (e->failures > 0 && e->last_attempt == attempt)
        return false;
    e->last_attempt = attempt;
    e->failures++;
    e->last_failure = now;
    if ((int)e->failures < g->retry || g->suspend <= 0)
        return false;
    e->until = now + g->suspend;
    e->failures = 0;
    persist(g, e);
    log_warn("registrar", "%s %s suspended for %d s after %d failed authentications",
             kind_name(kind), name, g->suspend, g->retry);
    return true;
}

bool guard_failure(struct guard *g, const char *user, const char *ip, long long now,
                   uint64_t attempt)
{
    bool a = count_failure(g, GUARD_ACCOUNT, user, now, attempt);
    bool s = count_failure(g, GUARD_SOURCE, ip, now, attempt);
    return a || s;
}

void guard_success(struct guard *g, const char *user)
{
    struct entry *e = get(g, GUARD_ACCOUNT, user, false);
    if (e)
        e->failures = 0;
}

void guard_account(struct guard *g, const char *name, long long now, unsigned *failures,
                   long long *until)
{
    struct entry *e = get(g, GUARD_ACCOUNT, name, false);
    *failures = e && now - e->last_failure <= REGISTRAR_FAILURE_WINDOW ? e->failures : 0;
    *until = e && e->until > now ? e->until : 0;
}

int guard_suspensions(struct guard *g, long long now, registrar_suspension_h *fn,
                      void *arg)
{
    for (unsigned h = 0; h < BUCKETS; h++)
        for (struct entry *e = g->buckets[h]; e; e = e->next) {
            if (e->until <= now)
                continue;
            int rc = fn(kind_name(e->key[0]), e->key + 1, e->until, e->failures, arg);
            if (rc)
                return rc;
        }
    return 0;
}

int guard_lift(struct guard *g, const char *name, long long now)
{
    int lifted = 0;
    const char kinds[] = {GUARD_ACCOUNT, GUARD_SOURCE};
    for (int i = 0; i < 2; i++) {
        struct entry *e = get(g, kinds[i], name, false);
        if (!e)
            continue;
        if (e->until > now)
            lifted++;
        bool was = e->until != 0;
        e->until = 0;
        e->failures = 0;
        if (was)
            persist(g, e);
    }
    if (lifted)
        log_info("registrar", "%s: suspension lifted by the operator", name);
    return lifted;
}

void guard_sweep(struct guard *g, long long now)
{
    for (unsigned h = 0; h < BUCKETS; h++) {
        struct entry **p = &g->buckets[h];
        while (*p) {
            struct entry *e = *p;
            if (e->until && e->until <= now) {
                e->until = 0;
                e->failures = 0;
                persist(g, e);
                log_info("registrar", "%s %s: suspension over", kind_name(e->key[0]),
                         e->key + 1);
            }
            if (!e->until && now - e->last_failure > REGISTRAR_FAILURE_WINDOW) {
                *p = e->next;
                free(e);
                g->count--;
                continue;
            }
            p = &e->next;
        }
    }
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    guard_sweep(arg, registrar_now_s());
}

void guard_set_limits(struct guard *g, int retry, int suspend)
{
    g->retry = retry;
    g->suspend = suspend;
}

struct load_ctx {
    struct guard *g;
    long long now;
};

static enum registrar_load load_one(const void *key, size_t klen, uint8_t version,
                                    const void *val, size_t vlen, void *arg)
{
    struct load_ctx *lc = arg;
    const char *k = key;
    if (klen < 2 || (k[0] != GUARD_ACCOUNT && k[0] != GUARD_SOURCE))
        return REGISTRAR_LOAD_KEEP; /* the nonce secret, or not ours */
    long long until =
        version == SUSPEND_VERSION && vlen == 8 ? (long long)store_key_u64_read(val) : 0;
    if (until <= lc->now)
        return REGISTRAR_LOAD_DROP;
    char name[STORE_MAX_KEY];
    size_t n = klen - 1 < sizeof name - 1 ? klen - 1 : sizeof name - 1;
    memcpy(name, k + 1, n);
    name[n] = '\0';
    struct entry *e = get(lc->g, k[0], name, true);
    if (e) {
        e->until = until;
        e->last_failure = lc->now;
    }
    return REGISTRAR_LOAD_KEEP;
}

int guard_create(struct guard **gp, struct event_base *base, struct store *store)
{
    *gp = NULL;
    struct guard *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->store = store;
    g->retry = 6;
    g->suspend = 180;
    if (base) {
        g->sweep_ev = event_new(base, -1, EV_PERSIST, on_sweep, g);
        if (!g->sweep_ev) {
            free(g);
            return -ENOMEM;
        }
        struct timeval sweep = {SWEEP_S, 0};
        event_add(g->sweep_ev, &sweep);
    }
    if (store) {
        struct load_ctx lc = {.g = g, .now = registrar_now_s()};
        registrar_store_load(store, STORE_SUSPEND, load_one, &lc);
    }
    *gp = g;
    return 0;
}

void guard_destroy(struct guard *g)
{
    if (!g)
        return;
    for (unsigned h = 0; h < BUCKETS; h++)
        while (g->buckets[h]) {
            struct entry *e = g->buckets[h];
            g->buckets[h] = e->next;
            free(e);
        }
    if (g->sweep_ev)
        event_free(g->sweep_ev);
    free(g);
}
