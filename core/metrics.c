/* The metrics registry and the text exposition. See metrics.h. */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

/* ---- A chained hash of named entries -------------------------------------- */

struct hnode {
    struct hnode *next;
    char *key; /* owned by the entry */
    size_t hash;
};

struct htab {
    struct hnode **b;
    size_t nb, n;
};

static size_t str_hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static struct hnode *htab_find(const struct htab *t, const char *key, size_t h)
{
    if (!t->nb)
        return NULL;
    for (struct hnode *n = t->b[h & (t->nb - 1)]; n; n = n->next)
        if (n->hash == h && strcmp(n->key, key) == 0)
            return n;
    return NULL;
}

static int htab_insert(struct htab *t, struct hnode *node)
{
    if (t->n >= t->nb) {
        size_t nb = t->nb ? t->nb * 2 : 16;
        struct hnode **b = calloc(nb, sizeof *b);
        if (!b)
            return -ENOMEM;
        for (size_t i = 0; i < t->nb; i++)
            for (struct hnode *n = t->b[i], *next; n; n = next) {
                next = n->next;
                n->next = b[n->hash & (nb - 1)];
                b[n->hash & (nb - 1)] = n;
            }
        free(t->b);
        t->b = b;
        t->nb = nb;
    }
    struct hnode **head = &t->b[node->hash & (t->nb - 1)];
    node->next = *head;
    *head = node;
    t->n++;
    return 0;
}

static void htab_remove(struct htab *t, struct hnode *node)
{
    for (struct hnode **p = &t->b[node->hash & (t->nb - 1)]; *p; p = &(*p)->next)
        if (*p == node) {
            *p = node->next;
            t->n--;
            return;
        }
}

/* ---- Status codes ------------------------------------------------------------ */

/* Statuses map to small indexes in the order first seen (200 is index 0),
 * so a per-pair table of counts is as long as the statuses seen, not 600.
 * Codes outside 100..699 count as 0. */
#define STATUS_CODES 700

struct status_counts {
    uint64_t *v;
    unsigned n;
};

static int status_code(int code)
{
    return code >= 100 && code < STATUS_CODES ? code : 0;
}

/* ---- Histograms ---------------------------------------------------------------- */

static const double setup_bounds[] = {0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30};
static const double duration_bounds[] = {5,   10,   30,   60,   120, 300,
                                         600, 1200, 1800, 3600, 7200};
#define CALL_BUCKETS 11

struct call_hist {
    uint64_t b[CALL_BUCKETS]; /* observations <= bound i (not cumulative) */
    uint64_t count;
    double sum;
};

static void call_hist_observe(struct call_hist *h, const double *bounds, double v)
{
    unsigned i = 0;
    while (i < CALL_BUCKETS && v > bounds[i])
        i++;
    if (i < CALL_BUCKETS)
        h->b[i]++;
    h->count++;
    h->sum += v;
}

/* ---- The registry ------------------------------------------------------------ */

struct metrics_gateway {
    struct hnode node; /* key: the name */
    char *label;       /* the name escaped */
    bool routing;
    long active;
    struct status_counts attempts; /* routing only, the rest too */
    struct call_hist setup, duration;
};

struct pair {
    struct metrics_gateway *m, *r;
    struct status_counts calls;
};

struct gateway_list {
    struct htab by_name;
    struct metrics_gateway **v;
    size_t n, cap;
    struct metrics_gateway *none; /* "" */
};

struct metrics_series {
    struct hnode node; /* key: the label value */
    struct metrics_family *f;
    struct metrics_series *prev, *next;
    char *label; /* the value escaped */
    double value, sum;
    uint64_t count;
    uint64_t *buckets; /* histograms: one per bound, not cumulative */
};

struct metrics_family {
    char *name, *help, *label;
    enum metrics_type type;
    double *bounds;
    unsigned nbounds;
    struct htab by_label;
    struct metrics_series *head, *tail;
    struct metrics_family *next;
};

struct collector {
    metrics_collect_f *fn;
    void *arg;
};

struct metrics_out {
    struct evbuffer *buf;
};

static struct registry {
    uint16_t status_index[STATUS_CODES]; /* code -> index + 1; 0: not yet */
    uint16_t index_status[STATUS_CODES];
    unsigned nstatus;
    struct gateway_list mapping, routing;
    struct pair **pairs; /* open addressing on (m, r) */
    size_t npairs, pair_slots;
    struct pair **pair_order; /* creation order, for output */
    long active;
    struct metrics_family *families, *families_tail;
    struct collector *collectors;
    size_t ncollectors;
} R;

static unsigned status_index(int code)
{
    code = status_code(code);
    if (!R.nstatus) { /* 200 first: every pair shows it */
        R.status_index[200] = 1;
        R.index_status[0] = 200;
        R.nstatus = 1;
    }
    if (!R.status_index[code]) {
        R.index_status[R.nstatus] = (uint16_t)code;
        R.status_index[code] = (uint16_t)++R.nstatus;
    }
    return R.status_index[code] - 1u;
}

static void status_count(struct status_counts *sc, int code)
{
    unsigned i = status_index(code);
    if (i >= sc->n) {
        unsigned n = (i + 8) & ~7u;
        uint64_t *v = realloc(sc->v, n * sizeof *v);
        if (!v)
            return;
        memset(v + sc->n, 0, (n - sc->n) * sizeof *v);
        sc->v = v;
        sc->n = n;
    }
    sc->v[i]++;
}

/* ---- Label escaping ------------------------------------------------------------ */

static size_t escaped_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += (*s == '\\' || *s == '"' || *s == '\n') ? 2 : 1;
    return n;
}

static char *escape_dup(const char *s)
{
    char *out = malloc(escaped_len(s) + 1), *o = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') {
            *o++ = '\\';
            *o++ = *s;
        } else if (*s == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return out;
}

void metrics_escape_label(struct evbuffer *buf, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        if (*s != '\\' && *s != '"' && *s != '\n')
            continue;
        evbuffer_add(buf, run, (size_t)(s - run));
        evbuffer_add(buf, *s == '\n' ? "\\n" : *s == '"' ? "\\\"" : "\\\\", 2);
        run = s + 1;
    }
    evbuffer_add(buf, run, (size_t)(s - run));
}

/* HELP text: backslash and newline escaped. */
static void add_help(struct evbuffer *buf, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\')
            evbuffer_add(buf, "\\\\", 2);
        else if (*s == '\n')
            evbuffer_add(buf, "\\n", 2);
        else
            evbuffer_add(buf, s, 1);
    }
}

/* ---- Gateways and pairs ------------------------------------------------------- */

static struct metrics_gateway *gateway_get(struct gateway_list *l, const char *name,
                                           bool routing)
{
    if (!name || !*name) {
        if (l->none)
            return l->none;
        name = "";
    }
    size_t h = str_hash(name);
    struct hnode *found = htab_find(&l->by_name, name, h);
    if (found)
        return (struct metrics_gateway *)found;
    struct metrics_gateway *g = calloc(1, sizeof *g);
    if (!g || !(g->node.key = strdup(name)) || !(g->label = escape_dup(name)))
        goto fail;
    g->node.hash = h;
    g->routing = routing;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct metrics_gateway **v = realloc(l->v, cap * sizeof *v);
        if (!v)
            goto fail;
        l->v = v;
        l->cap = cap;
    }
    if (htab_insert(&l->by_name, &g->node) < 0)
        goto fail;
    l->v[l->n++] = g;
    if (!*name)
        l->none = g;
    return g;
fail:
    if (g) {
        free(g->node.key);
        free(g->label);
        free(g);
    }
    return NULL;
}

struct metrics_gateway *metrics_routing_gateway(const char *name)
{
    return gateway_get(&R.routing, name, true);
}

struct metrics_gateway *metrics_mapping_gateway(const char *name)
{
    return gateway_get(&R.mapping, name, false);
}

static size_t pair_hash(const struct metrics_gateway *m, const struct metrics_gateway *r)
{
    uintptr_t x = (uintptr_t)m * 0x9E3779B97F4A7C15ull ^ (uintptr_t)r;
    return (size_t)(x ^ (x >> 29)) * 0xBF58476D1CE4E5B9ull;
}

static struct pair *pair_get(struct metrics_gateway *m, struct metrics_gateway *r)
{
    size_t mask = R.pair_slots - 1;
    if (R.pair_slots)
        for (size_t i = pair_hash(m, r) & mask; R.pairs[i]; i = (i + 1) & mask)
            if (R.pairs[i]->m == m && R.pairs[i]->r == r)
                return R.pairs[i];
    if (2 * (R.npairs + 1) > R.pair_slots) {
        size_t slots = R.pair_slots ? R.pair_slots * 2 : 64;
        struct pair **tab = calloc(slots, sizeof *tab);
        struct pair **order = realloc(R.pair_order, slots / 2 * sizeof *order);
        if (!tab || !order) {
            free(tab);
            if (order)
                R.pair_order = order;
            return NULL;
        }
        R.pair_order = order;
        for (size_t i = 0; i < R.npairs; i++) {
            struct pair *p = R.pair_order[i];
            size_t j = pair_hash(p->m, p->r) & (slots - 1);
            while (tab[j])
                j = (j + 1) & (slots - 1);
            tab[j] = p;
        }
        free(R.pairs);
        R.pairs = tab;
        R.pair_slots = slots;
        mask = slots - 1;
    }
    struct pair *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->m = m;
    p->r = r;
    size_t i = pair_hash(m, r) & mask;
    while (R.pairs[i])
        i = (i + 1) & mask;
    R.pairs[i] = p;
    R.pair_order[R.npairs++] = p;
    return p;
}

/* ---- Calls ---------------------------------------------------------------------- */

enum { MC_BEGUN = 1, MC_ATTEMPT = 2, MC_PROGRESS = 4, MC_ANSWERED = 8, MC_ENDED = 16 };

/* Milliseconds of the monotonic clock, modulo 2^32: differences up to 49
 * days come out right. */
static uint32_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

static double seconds(uint32_t from_ms, uint32_t to_ms)
{
    return (double)(uint32_t)(to_ms - from_ms) / 1000.0;
}

void metrics_call_begin(struct metrics_call *mc, struct metrics_gateway *mapping)
{
    if (mc->flags & MC_BEGUN)
        return;
    if (!mapping)
        mapping = metrics_mapping_gateway(NULL);
    mc->mapping = mapping;
    mc->routing = NULL;
    mc->flags = MC_BEGUN;
    R.active++;
    if (mapping)
        mapping->active++;
}

static void attempt_close(struct metrics_call *mc, int status)
{
    if (!(mc->flags & MC_ATTEMPT))
        return;
    mc->flags &= (uint8_t) ~(MC_ATTEMPT | MC_PROGRESS);
    if (mc->routing) {
        mc->routing->active--;
        status_count(&mc->routing->attempts, status);
    }
}

void metrics_call_attempt(struct metrics_call *mc, struct metrics_gateway *routing)
{
    if ((mc->flags & (MC_BEGUN | MC_ANSWERED | MC_ENDED)) != MC_BEGUN)
        return;
    attempt_close(mc, 0);
    if (!routing)
        routing = metrics_routing_gateway(NULL);
    mc->routing = routing;
    mc->flags |= MC_ATTEMPT;
    mc->stamp_ms = now_ms();
    if (routing)
        routing->active++;
}

void metrics_call_progress(struct metrics_call *mc)
{
    if ((mc->flags & (MC_ATTEMPT | MC_PROGRESS | MC_ANSWERED)) != MC_ATTEMPT ||
        !mc->routing)
        return;
    mc->flags |= MC_PROGRESS;
    call_hist_observe(&mc->routing->setup, setup_bounds, seconds(mc->stamp_ms, now_ms()));
}

void metrics_call_answered(struct metrics_call *mc)
{
    if ((mc->flags & (MC_ATTEMPT | MC_ANSWERED)) != MC_ATTEMPT)
        return;
    uint32_t now = now_ms();
    if (!(mc->flags & MC_PROGRESS) && mc->routing)
        call_hist_observe(&mc->routing->setup, setup_bounds, seconds(mc->stamp_ms, now));
    mc->flags |= MC_PROGRESS | MC_ANSWERED;
    mc->stamp_ms = now; /* from now on: the answer's time */
}

void metrics_call_attempt_failed(struct metrics_call *mc, int status)
{
    if (!(mc->flags & MC_ANSWERED))
        attempt_close(mc, status);
}

void metrics_call_end(struct metrics_call *mc, int status)
{
    if (!(mc->flags & MC_BEGUN) || (mc->flags & MC_ENDED))
        return;
    attempt_close(mc, status);
    mc->flags |= MC_ENDED;
    R.active--;
    if (mc->mapping)
        mc->mapping->active--;
    struct metrics_gateway *r = mc->routing ? mc->routing : metrics_routing_gateway(NULL);
    if ((mc->flags & MC_ANSWERED) && r)
        call_hist_observe(&r->duration, duration_bounds, seconds(mc->stamp_ms, now_ms()));
    struct pair *p = mc->mapping && r ? pair_get(mc->mapping, r) : NULL;
    if (p)
        status_count(&p->calls, status);
}

long metrics_calls_active(void)
{
    return R.active;
}

/* ---- Generic families ------------------------------------------------------------ */

struct metrics_family *metrics_family(const char *name, const char *help,
                                      enum metrics_type type, const char *label,
                                      const double *buckets, unsigned nbuckets)
{
    for (struct metrics_family *f = R.families; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    struct metrics_family *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->label = label ? strdup(label) : NULL;
    f->nbounds = type == METRICS_HISTOGRAM ? nbuckets : 0;
    f->bounds = f->nbounds ? malloc(f->nbounds * sizeof *f->bounds) : NULL;
    if (!f->name || !f->help || (label && !f->label) || (f->nbounds && !f->bounds)) {
        free(f->name);
        free(f->help);
        free(f->label);
        free(f->bounds);
        free(f);
        return NULL;
    }
    if (f->nbounds)
        memcpy(f->bounds, buckets, f->nbounds * sizeof *f->bounds);
    if (R.families_tail)
        R.families_tail->next = f;
    else
        R.families = f;
    R.families_tail = f;
    return f;
}

static void series_free(struct metrics_series *s)
{
    free(s->node.key);
    free(s->label);
    free(s->buckets);
    free(s);
}

struct metrics_series *metrics_series(struct metrics_family *f, const char *label_value)
{
    if (!f)
        return NULL;
    const char *key = f->label && label_value ? label_value : "";
    size_t h = str_hash(key);
    struct hnode *found = htab_find(&f->by_label, key, h);
    if (found)
        return (struct metrics_series *)found;
    struct metrics_series *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->f = f;
    s->node.hash = h;
    if (!(s->node.key = strdup(key)) || !(s->label = escape_dup(key)) ||
        (f->nbounds && !(s->buckets = calloc(f->nbounds, sizeof *s->buckets))) ||
        htab_insert(&f->by_label, &s->node) < 0) {
        series_free(s);
        return NULL;
    }
    s->prev = f->tail;
    if (f->tail)
        f->tail->next = s;
    else
        f->head = s;
    f->tail = s;
    return s;
}

void metrics_inc(struct metrics_series *s)
{
    if (s)
        s->value += 1;
}

void metrics_add(struct metrics_series *s, double v)
{
    if (s)
        s->value += v;
}

void metrics_set(struct metrics_series *s, double v)
{
    if (s)
        s->value = v;
}

void metrics_observe(struct metrics_series *s, double v)
{
    if (!s)
        return;
    const struct metrics_family *f = s->f;
    unsigned i = 0;
    while (i < f->nbounds && v > f->bounds[i])
        i++;
    if (i < f->nbounds)
        s->buckets[i]++;
    s->count++;
    s->sum += v;
}

double metrics_value(const struct metrics_series *s)
{
    return s ? s->value : 0;
}

void metrics_series_drop(struct metrics_series *s)
{
    if (!s)
        return;
    struct metrics_family *f = s->f;
    htab_remove(&f->by_label, &s->node);
    if (s->prev)
        s->prev->next = s->next;
    else
        f->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        f->tail = s->prev;
    series_free(s);
}

/* ---- Collectors ---------------------------------------------------------------------
 */

int metrics_collector_add(metrics_collect_f *fn, void *arg)
{
    struct collector *v = realloc(R.collectors, (R.ncollectors + 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    R.collectors = v;
    v[R.ncollectors++] = (struct collector){fn, arg};
    return 0;
}

void metrics_collector_remove(metrics_collect_f *fn, void *arg)
{
    for (size_t i = 0; i < R.ncollectors; i++)
        if (R.collectors[i].fn == fn && R.collectors[i].arg == arg) {
            memmove(&R.collectors[i], &R.collectors[i + 1],
                    (R.ncollectors - i - 1) * sizeof *R.collectors);
            R.ncollectors--;
            return;
        }
}

/* ---- Output -------------------------------------------------------------------------
 */

static const char *const type_names[] = {"counter", "gauge", "histogram"};

static void add_family(struct evbuffer *buf, const char *name, const char *help,
                       enum metrics_type type)
{
    evbuffer_add_printf(buf, "# HELP %s ", name);
    add_help(buf, help);
    evbuffer_add_printf(buf, "\n# TYPE %s %s\n", name, type_names[type]);
}

/* Integers exactly, the rest with 15 significant digits. */
static void add_value(struct evbuffer *buf, double v)
{
    if (isnan(v))
        evbuffer_add(buf, "NaN", 3);
    else if (isinf(v))
        evbuffer_add_printf(buf, "%cInf", v > 0 ? '+' : '-');
    else if (v == (double)(long long)v && fabs(v) < 1e15)
        evbuffer_add_printf(buf, "%lld", (long long)v);
    else
        evbuffer_add_printf(buf, "%.15g", v);
}

void metrics_out_family(struct metrics_out *out, const char *name, const char *help,
                        enum metrics_type type)
{
    add_family(out->buf, name, help, type);
}

void metrics_out_sample(struct metrics_out *out, const char *name, double v, ...)
{
    struct evbuffer *buf = out->buf;
    evbuffer_add(buf, name, strlen(name));
    va_list ap;
    va_start(ap, v);
    const char *label;
    char sep = '{';
    while ((label = va_arg(ap, const char *))) {
        const char *value = va_arg(ap, const char *);
        evbuffer_add_printf(buf, "%c%s=\"", sep, label);
        metrics_escape_label(buf, value ? value : "");
        evbuffer_add(buf, "\"", 1);
        sep = ',';
    }
    va_end(ap);
    if (sep == ',')
        evbuffer_add(buf, "}", 1);
    evbuffer_add(buf, " ", 1);
    add_value(buf, v);
    evbuffer_add(buf, "\n", 1);
}

/* name_bucket{lname="lvalue",le="b"} ... name_sum, name_count; `lname`
 * NULL for no label, `lvalue` already escaped. */
static void add_histogram(struct evbuffer *buf, const char *name, const char *lname,
                          const char *lvalue, const double *bounds, unsigned nbounds,
                          const uint64_t *b, uint64_t count, double sum)
{
    const char *ln = lname ? lname : "", *eq = lname ? "=\"" : "",
               *lv = lname ? lvalue : "";
    const char *end = lname ? "\"," : "";
    uint64_t cum = 0;
    for (unsigned i = 0; i <= nbounds; i++) {
        char le[32] = "+Inf";
        if (i < nbounds) {
            cum += b[i];
            snprintf(le, sizeof le, "%g", bounds[i]);
        }
        evbuffer_add_printf(buf, "%s_bucket{%s%s%s%sle=\"%s\"} %" PRIu64 "\n", name, ln,
                            eq, lv, end, le, i < nbounds ? cum : count);
    }
    const char *open = lname ? "{" : "", *close = lname ? "\"}" : "";
    evbuffer_add_printf(buf, "%s_sum%s%s%s%s%s ", name, open, ln, eq, lv, close);
    add_value(buf, sum);
    evbuffer_add_printf(buf, "\n%s_count%s%s%s%s%s %" PRIu64 "\n", name, open, ln, eq, lv,
                        close, count);
}

static void render_calls(struct evbuffer *buf)
{
    add_family(
        buf, "moonswitch_calls_total",
        "Calls ended, by mapping gateway, routing gateway (the last tried) and the "
        "final status the caller saw (200: answered).",
        METRICS_COUNTER);
    for (size_t i = 0; i < R.npairs; i++) {
        const struct pair *p = R.pair_order[i];
        for (unsigned s = 0; s < p->calls.n || s == 0; s++) {
            uint64_t n = s < p->calls.n ? p->calls.v[s] : 0;
            if (n || s == 0) /* index 0 is 200 */
                evbuffer_add_printf(buf,
                                    "moonswitch_calls_total{mapping_gateway=\"%s\","
                                    "routing_gateway=\"%s\",status=\"%u\"} %" PRIu64 "\n",
                                    p->m->label, p->r->label, R.index_status[s], n);
        }
    }
    add_family(buf, "moonswitch_calls_active", "Calls in progress.", METRICS_GAUGE);
    evbuffer_add_printf(buf, "moonswitch_calls_active %ld\n", R.active);

    add_family(buf, "moonswitch_mapping_gateway_calls_active",
               "Calls in progress from each mapping gateway.", METRICS_GAUGE);
    for (size_t i = 0; i < R.mapping.n; i++)
        evbuffer_add_printf(
            buf, "moonswitch_mapping_gateway_calls_active{mapping_gateway=\"%s\"} %ld\n",
            R.mapping.v[i]->label, R.mapping.v[i]->active);
    add_family(buf, "moonswitch_routing_gateway_calls_active",
               "Attempts in progress and answered calls through each routing gateway.",
               METRICS_GAUGE);
    for (size_t i = 0; i < R.routing.n; i++)
        evbuffer_add_printf(
            buf, "moonswitch_routing_gateway_calls_active{routing_gateway=\"%s\"} %ld\n",
            R.routing.v[i]->label, R.routing.v[i]->active);

    add_family(
        buf, "moonswitch_call_attempts_total",
        "Attempts to routing gateways ended, failed-over ones included, by status.",
        METRICS_COUNTER);
    for (size_t i = 0; i < R.routing.n; i++) {
        const struct metrics_gateway *g = R.routing.v[i];
        for (unsigned s = 0; s < g->attempts.n; s++)
            if (g->attempts.v[s])
                evbuffer_add_printf(
                    buf,
                    "moonswitch_call_attempts_total{routing_gateway=\"%s\","
                    "status=\"%u\"} %" PRIu64 "\n",
                    g->label, R.index_status[s], g->attempts.v[s]);
    }

    static const char *const hist_names[] = {"moonswitch_call_setup_seconds",
                                             "moonswitch_call_duration_seconds"};
    static const char *const hist_help[] = {
        "Post-dial delay per routing gateway: the INVITE to the first 18x or 200.",
        "Answered calls' duration per routing gateway: the answer to the end."};
    for (int k = 0; k < 2; k++) {
        add_family(buf, hist_names[k], hist_help[k], METRICS_HISTOGRAM);
        for (size_t i = 0; i < R.routing.n; i++) {
            const struct metrics_gateway *g = R.routing.v[i];
            const struct call_hist *h = k == 0 ? &g->setup : &g->duration;
            if (!h->count)
                continue;
            add_histogram(buf, hist_names[k], "routing_gateway", g->label,
                          k == 0 ? setup_bounds : duration_bounds, CALL_BUCKETS, h->b,
                          h->count, h->sum);
        }
    }
}

static void render_family(struct evbuffer *buf, const struct metrics_family *f)
{
    add_family(buf, f->name, f->help, f->type);
    for (const struct metrics_series *s = f->head; s; s = s->next) {
        if (f->type == METRICS_HISTOGRAM) {
            add_histogram(buf, f->name, f->label, s->label, f->bounds, f->nbounds,
                          s->buckets, s->count, s->sum);
            continue;
        }
        if (f->label)
            evbuffer_add_printf(buf, "%s{%s=\"%s\"} ", f->name, f->label, s->label);
        else
            evbuffer_add_printf(buf, "%s ", f->name);
        add_value(buf, s->value);
        evbuffer_add(buf, "\n", 1);
    }
}

void metrics_render(struct evbuffer *buf)
{
    render_calls(buf);
    for (const struct metrics_family *f = R.families; f; f = f->next)
        render_family(buf, f);
    struct metrics_out out = {buf};
    for (size_t i = 0; i < R.ncollectors; i++)
        R.collectors[i].fn(&out, R.collectors[i].arg);
}

/* ---- Teardown ------------------------------------------------------------------------
 */

static void gateways_free(struct gateway_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i]->node.key);
        free(l->v[i]->label);
        free(l->v[i]->attempts.v);
        free(l->v[i]);
    }
    free(l->v);
    free(l->by_name.b);
}

void metrics_free_all(void)
{
    gateways_free(&R.mapping);
    gateways_free(&R.routing);
    for (size_t i = 0; i < R.npairs; i++) {
        free(R.pair_order[i]->calls.v);
        free(R.pair_order[i]);
    }
    free(R.pairs);
    free(R.pair_order);
    for (struct metrics_family *f = R.families, *next; f; f = next) {
        next = f->next;
        for (struct metrics_series *s = f->head, *sn; s; s = sn) {
            sn = s->next;
            series_free(s);
        }
        free(f->by_label.b);
        free(f->name);
        free(f->help);
        free(f->label);
        free(f->bounds);
        free(f);
    }
    free(R.collectors);
    memset(&R, 0, sizeof R);
}
