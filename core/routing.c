/* Gateway selection, the walk over a call's candidates, and callee rewriting. See
 * routing.h. */
#include "routing.h"
#include "config.h"
#include "log.h"
#include "sip/gateway.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct candidate {
    const struct routing_gateway_def *g;
    size_t match; /* length of the longest matching prefix */
};

/* The longest prefix of g that starts `callee`, or -1 when none does. A
 * gateway without prefixes matches everything with length 0. */
static long best_prefix(const struct routing_gateway_def *g, const char *callee)
{
    if (g->prefixes.n == 0)
        return 0;
    long best = -1;
    for (size_t i = 0; i < g->prefixes.n; i++) {
        size_t n = strlen(g->prefixes.v[i]);
        if ((long)n > best && strncmp(callee, g->prefixes.v[i], n) == 0)
            best = (long)n;
    }
    return best;
}

static int by_preference(const void *pa, const void *pb)
{
    const struct candidate *a = pa, *b = pb;
    if (a->match != b->match)
        return a->match > b->match ? -1 : 1;
    if (a->g->priority != b->g->priority)
        return a->g->priority < b->g->priority ? -1 : 1;
    return strcmp(a->g->head.name, b->g->head.name);
}

size_t routing_select(const struct config *cfg, const char *callee, const char **out,
                      size_t max)
{
    size_t n = config_count(cfg, KIND_ROUTING_GATEWAY);
    if (n == 0 || max == 0)
        return 0;
    struct candidate *c = malloc(n * sizeof *c);
    if (!c)
        return 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct routing_gateway_def *g =
            (const void *)config_at(cfg, KIND_ROUTING_GATEWAY, i);
        long m = best_prefix(g, callee);
        if (m >= 0)
            c[k++] = (struct candidate){g, (size_t)m};
    }
    qsort(c, k, sizeof *c, by_preference);
    if (k > max)
        k = max;
    for (size_t i = 0; i < k; i++)
        out[i] = c[i].g->head.name;
    free(c);
    return k;
}

const struct routing_gateway_def *routing_check(const struct gw_set *gws,
                                                const char *name, uint64_t id)
{
    const struct routing_gateway_def *g = gw_find(gws, name);
    switch (gw_usable(gws, name)) {
    case GW_USABLE:
        return g;
    case GW_UNKNOWN:
        log_warn("call", "%" PRIu64 ": route names unknown gateway \"%s\"", id, name);
        break;
    case GW_NOT_REGISTERED:
        log_debug("call", "%" PRIu64 ": %s skipped: %s", id, name,
                  g->type == RGW_DYNAMIC ? "its account is not registered"
                                         : "registration not active");
        break;
    case GW_OFFLINE:
        log_debug("call", "%" PRIu64 ": %s skipped: offline (OPTIONS checks)", id, name);
        break;
    case GW_AT_LIMIT:
        log_debug("call", "%" PRIu64 ": %s skipped: at its line limit %d", id, name,
                  g->line_limit);
        break;
    case GW_NO_ADDRESS:
        log_debug("call", "%" PRIu64 ": %s skipped: no address", id, name);
        break;
    }
    return NULL;
}

const struct routing_gateway_def *routing_next(const struct gw_set *gws,
                                               const char *const *names, size_t n,
                                               size_t *next, uint64_t id)
{
    while (*next < n) {
        const struct routing_gateway_def *g = routing_check(gws, names[(*next)++], id);
        if (g)
            return g;
    }
    return NULL;
}

/* Does the literal/%d pattern `p` match `s` at its start? Returns the
 * length matched, or -1. */
static long match_here(const char *p, const char *s)
{
    long len = 0;
    while (*p) {
        if (p[0] == '%' && p[1] == 'd') {
            if (!isdigit((unsigned char)s[len]))
                return -1;
            p += 2;
        } else if (p[0] == '%' && p[1] && !isalnum((unsigned char)p[1])) {
            if (s[len] != p[1])
                return -1;
            p += 2;
        } else if (strchr("^$()[].*+-?%", *p)) {
            return -2; /* outside the subset */
        } else {
            if (s[len] != *p)
                return -1;
            p++;
        }
        len++;
    }
    return len;
}

int routing_rewrite_simple(const char *pattern, const char *replacement, const char *in,
                           char *out, size_t outlen, void *arg)
{
    (void)arg;
    int anchored = pattern[0] == '^';
    const char *p = pattern + anchored;
    if (strchr(replacement, '%'))
        return -1;
    size_t o = 0, n = strlen(in);
    size_t rl = strlen(replacement);
    for (size_t i = 0; i <= n;) {
        long m = match_here(p, in + i);
        if (m == -2)
            return -1;
        if (m >= 0) {
            if (o + rl >= outlen)
                return -1;
            memcpy(out + o, replacement, rl);
            o += rl;
            if (m == 0) { /* an empty match: copy one character on */
                if (i < n) {
                    if (o + 1 >= outlen)
                        return -1;
                    out[o++] = in[i];
                }
                i++;
            } else {
                i += (size_t)m;
            }
        } else {
            if (i < n) {
                if (o + 1 >= outlen)
                    return -1;
                out[o++] = in[i];
            }
            i++;
        }
        if (anchored) {
            /* Only the first position may match: copy the rest. */
            if (i <= n) {
                size_t rest = n - (i > n ? n : i);
                if (o + rest >= outlen)
                    return -1;
                memcpy(out + o, in + i, rest);
                o += rest;
            }
            break;
        }
    }
    out[o] = '\0';
    return 0;
}

void routing_rewrite(const struct rewrite_list *rules, const char *callee,
                     routing_rewrite_h *h, void *arg, char *out, size_t outlen)
{
    char cur[ROUTING_NUMBER_MAX], next[ROUTING_NUMBER_MAX];
    snprintf(cur, sizeof cur, "%s", callee);
    if (!h)
        h = routing_rewrite_simple;
    for (size_t i = 0; rules && i < rules->n; i++)
        if (h(rules->v[i].pattern, rules->v[i].replacement, cur, next, sizeof next, arg) == 0)
            memcpy(cur, next, sizeof cur);
    snprintf(out, outlen, "%s", cur);
}
