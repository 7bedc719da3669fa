/* Unit tests for config_diff(), the comparison a reload acts on: each
 * definition of the new set is added, changed or unchanged against the old
 * one, each definition only in the old set is removed, and the callback
 * sees the old and new definition of each (NULL where there is none).
 *
 * Policy sets are built in C here (no Lua): a table row gives the two sets
 * as short specs and the verdict expected for every definition. */
#include "check.h"
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One definition: a registration ("r") or a routing gateway ("g"), with the
 * fields a row may vary. */
struct spec {
    const char *kind; /* "r", "g"; NULL ends a list */
    const char *name;
    const char *password; /* registration; NULL: "p" */
    const char *hook;     /* registration's retry_delay function signature, or NULL */
    int hook_ref;
    int line;            /* where it was defined: never compared */
    int resend_interval; /* for kind "s", the switch; 0: default */
};

static struct config *build(const struct spec *specs)
{
    if (!specs)
        return NULL;
    struct config *cfg = config_new();
    char err[256];
    for (const struct spec *s = specs; s->kind; s++) {
        struct def_head *h = NULL;
        if (strcmp(s->kind, "r") == 0) {
            struct registration_def *d =
                (void *)config_def_new(KIND_REGISTRATION, s->name, "10.lua", s->line);
            d->server = strdup("198.51.100.1");
            d->username = strdup("100");
            d->password = strdup(s->password ? s->password : "p");
            if (s->hook) {
                d->retry_delay_hook.ref = s->hook_ref;
                d->retry_delay_hook.signature = strdup(s->hook);
            }
            h = &d->head;
        } else if (strcmp(s->kind, "g") == 0) {
            struct routing_gateway_def *d =
                (void *)config_def_new(KIND_ROUTING_GATEWAY, s->name, "20.lua", s->line);
            d->address = strdup("192.0.2.1:5060");
            h = &d->head;
        } else {
            struct switch_def *d =
                (void *)config_def_new(KIND_SWITCH, NULL, "00.lua", s->line);
            if (s->resend_interval)
                d->sip.resend_interval = s->resend_interval;
            h = &d->head;
        }
        CHECK(config_def_check(h, err, sizeof err) == 0);
        CHECK(config_add(cfg, h, err, sizeof err) == 0);
    }
    CHECK(config_finish(cfg, err, sizeof err) == 0);
    return cfg;
}

/* What the callback saw: "kind name verdict" per definition. */
static char seen[16][80];
static int nseen;

static const char *const verdicts[] = {"added", "changed", "removed", "unchanged"};

static void record(enum diff_verdict v, const struct def_head *before,
                   const struct def_head *now, void *arg)
{
    (void)arg;
    /* Old and new definitions are given exactly where they exist. */
    CHECK((before == NULL) == (v == DIFF_ADDED));
    CHECK((now == NULL) == (v == DIFF_REMOVED));
    const struct def_head *d = now ? now : before;
    if (before && now)
        CHECK(before->kind == now->kind);
    if (nseen < 16)
        snprintf(seen[nseen++], sizeof seen[0], "%s %s %s",
                 config_schema(d->kind)->keyword, d->name ? d->name : "-", verdicts[v]);
}

static bool was_seen(const char *line)
{
    for (int i = 0; i < nseen; i++)
        if (strcmp(seen[i], line) == 0)
            return true;
    return false;
}

struct row {
    const char *name;
    const struct spec *before; /* NULL: no running policy yet */
    const struct spec *after;
    const char *expect[8]; /* every verdict, NULL-terminated */
    struct config_diff counts;
};

#define R(...) ((const struct spec[]){__VA_ARGS__, {0}})

static const struct row rows[] = {
    {"identical sets: all kept",
     R({.kind = "r", .name = "a", .line = 1}, {.kind = "r", .name = "b", .line = 2}),
     R({.kind = "r", .name = "a", .line = 1}, {.kind = "r", .name = "b", .line = 2}),
     {"switch - unchanged", "registration a unchanged", "registration b unchanged"},
     {0, 0, 0, 3}},
    {"a changed field is flagged, the rest kept",
     R({.kind = "r", .name = "a"}, {.kind = "r", .name = "b"}),
     R({.kind = "r", .name = "a", .password = "p2"}, {.kind = "r", .name = "b"}),
     {"switch - unchanged", "registration a changed", "registration b unchanged"},
     {0, 1, 0, 2}},
    {"removed and added",
     R({.kind = "r", .name = "a"}, {.kind = "r", .name = "b"}),
     R({.kind = "r", .name = "a"}, {.kind = "r", .name = "c"}),
     {"switch - unchanged", "registration a unchanged", "registration b removed",
      "registration c added"},
     {1, 0, 1, 2}},
    {"moved in its file: file and line are not compared",
     R({.kind = "r", .name = "a", .line = 1}),
     R({.kind = "r", .name = "a", .line = 7}),
     {"switch - unchanged", "registration a unchanged"},
     {0, 0, 0, 2}},
    {"the same name in another kind is another definition",
     R({.kind = "r", .name = "x"}),
     R({.kind = "g", .name = "x"}),
     {"switch - unchanged", "registration x removed", "routing_gateway x added"},
     {1, 0, 1, 1}},
    {"a switch setting changed",
     R({.kind = "s", .resend_interval = 500}, {.kind = "r", .name = "a"}),
     R({.kind = "s", .resend_interval = 200}, {.kind = "r", .name = "a"}),
     {"switch - changed", "registration a unchanged"},
     {0, 1, 0, 1}},
    {"a function compares by its code, not its reference",
     R({.kind = "r", .name = "a", .hook = "code-1", .hook_ref = 3},
       {.kind = "r", .name = "b", .hook = "code-1", .hook_ref = 4}),
     R({.kind = "r", .name = "a", .hook = "code-1", .hook_ref = 9},
       {.kind = "r", .name = "b", .hook = "code-2", .hook_ref = 4}),
     {"switch - unchanged", "registration a unchanged", "registration b changed"},
     {0, 1, 0, 2}},
    {"no running policy: everything added",
     NULL,
     R({.kind = "r", .name = "a"}, {.kind = "g", .name = "g1"}),
     {"switch - added", "registration a added", "routing_gateway g1 added"},
     {3, 0, 0, 0}},
};

static void table(void)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct row *row = &rows[i];
        int before = check_failures;
        struct config *old = build(row->before), *now = build(row->after);
        nseen = 0;
        struct config_diff d = config_diff(old, now, record, NULL);
        int expected = 0;
        for (const char *const *e = row->expect; *e; e++, expected++)
            CHECK(was_seen(*e));
        CHECK(nseen == expected);
        CHECK(d.added == row->counts.added && d.changed == row->counts.changed &&
              d.removed == row->counts.removed && d.unchanged == row->counts.unchanged);
        /* Without a callback: the same counts. */
        struct config_diff quiet = config_diff(old, now, NULL, NULL);
        CHECK(memcmp(&quiet, &d, sizeof d) == 0);
        if (check_failures != before) {
            fprintf(stderr,
                    "  in row \"%s\" (%u added, %u changed, %u removed, %u "
                    "unchanged), the callback saw:\n",
                    row->name, d.added, d.changed, d.removed, d.unchanged);
            for (int k = 0; k < nseen; k++)
                fprintf(stderr, "    %s\n", seen[k]);
        }
        config_free(old);
        config_free(now);
    }
}

static void summary(void)
{
    struct config_diff d = {1, 2, 3, 4};
    char out[128];
    config_diff_summary(&d, out, sizeof out);
    CHECK(strcmp(out, "1 added, 2 changed, 3 removed, 4 unchanged") == 0);
}

TEST_MAIN(CASE(table), CASE(summary))
