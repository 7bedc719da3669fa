/* Policy sets built in C for the unit tests of modules that read them
 * (routing, gateways), without Lua: each definition starts at its schema's
 * defaults, the test changes what it needs, and cfg_finish() checks the set
 * as a reload would. The set owns every definition; config_free() frees
 * it. */
#ifndef MOON_TEST_CFGBUILD_H
#define MOON_TEST_CFGBUILD_H

#include "check.h"
#include "config.h"

#include <stdlib.h>
#include <string.h>

/* Replace a definition's string field with a copy of `value`. */
static inline void cfg_set_string(char **slot, const char *value)
{
    free(*slot);
    *slot = strdup(value);
    CHECK(*slot != NULL);
}

static inline struct def_head *cfg_add(struct config *cfg, enum config_kind kind,
                                       const char *name)
{
    char err[256];
    struct def_head *d = config_def_new(kind, name, "test", 1);
    CHECK(d != NULL);
    CHECK(config_add(cfg, d, err, sizeof err) == 0);
    return d;
}

/* "a,b,c" as a strlist (NULL or "": empty). */
static inline void cfg_list(struct strlist *l, const char *csv)
{
    for (const char *p = csv; p && *p;) {
        size_t n = strcspn(p, ",");
        char **v = realloc(l->v, (l->n + 1) * sizeof *v);
        CHECK(v != NULL);
        l->v = v;
        l->v[l->n++] = strndup(p, n);
        p += n + (p[n] == ',');
    }
}

/* A static routing gateway at `address` (may be NULL) serving `prefixes`
 * ("44,4420"; NULL: every number). */
static inline struct routing_gateway_def *
cfg_rgw(struct config *cfg, const char *name, const char *address, const char *prefixes)
{
    struct routing_gateway_def *g = (void *)cfg_add(cfg, KIND_ROUTING_GATEWAY, name);
    if (address)
        cfg_set_string(&g->address, address);
    cfg_list(&g->prefixes, prefixes);
    return g;
}

static inline void cfg_rewrite(struct routing_gateway_def *g, const char *pattern,
                               const char *replacement)
{
    struct rewrite_rule *v =
        realloc(g->callee_rewrite.v, (g->callee_rewrite.n + 1) * sizeof *v);
    CHECK(v != NULL);
    g->callee_rewrite.v = v;
    v[g->callee_rewrite.n++] =
        (struct rewrite_rule){strdup(pattern), strdup(replacement)};
}

static inline struct registration_def *cfg_registration(struct config *cfg,
                                                        const char *name)
{
    struct registration_def *r = (void *)cfg_add(cfg, KIND_REGISTRATION, name);
    cfg_set_string(&r->server, "127.0.0.1");
    cfg_set_string(&r->username, "u");
    cfg_set_string(&r->password, "p");
    return r;
}

/* A routing gateway of type registration, through registration `reg`. */
static inline struct routing_gateway_def *
cfg_rgw_registered(struct config *cfg, const char *name, const char *reg)
{
    struct routing_gateway_def *g = cfg_rgw(cfg, name, "127.0.0.1:5060", NULL);
    g->type = RGW_REGISTRATION;
    cfg_set_string(&g->registration, reg);
    return g;
}

/* A static mapping gateway with source `addresses` ("IP,IP:PORT"). */
static inline struct mapping_gateway_def *cfg_mgw(struct config *cfg, const char *name,
                                                  const char *addresses)
{
    struct mapping_gateway_def *m = (void *)cfg_add(cfg, KIND_MAPPING_GATEWAY, name);
    cfg_list(&m->addresses, addresses);
    return m;
}

static inline void cfg_finish(struct config *cfg)
{
    char err[256] = "";
    CHECK(config_finish(cfg, err, sizeof err) == 0);
    if (err[0])
        fprintf(stderr, "  %s\n", err);
}

/* Names joined with one space, for comparing orders in one CHECK. */
static inline const char *cfg_join(const char *const *names, size_t n, char *out,
                                   size_t outlen)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && len < outlen; i++)
        len += (size_t)snprintf(out + len, outlen - len, "%s%s", i ? " " : "", names[i]);
    return out;
}

#endif
