/* The policy engine. See engine.h. */
#include "engine.h"
#include "format.h"
#include "hooks.h"
#include "log.h"
#include "runtime.h"
#include "store.h"
#include "strbuf.h"
#include "task.h"

#include <lauxlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct engine {
    struct luahost host;
    char *dir;
    struct luart *current;
    engine_reload_h *on_reload;
    void *on_reload_arg;
    unsigned generation;
    struct outreg_hooks *outreg_hooks;
    struct strlist listen; /* the listen addresses in force (copied) */
};

static int host_reload(void *arg, char *msg, size_t msglen)
{
    return engine_reload(arg, msg, msglen);
}

/* Copy `from` into e->listen. Returns 0 or -1 when out of memory. */
static int keep_listen(struct engine *e, const struct strlist *from)
{
    e->listen.v = calloc(from->n ? from->n : 1, sizeof *e->listen.v);
    if (!e->listen.v)
        return -1;
    for (size_t i = 0; i < from->n; i++) {
        if (!(e->listen.v[i] = strdup(from->v[i])))
            return -1;
        e->listen.n++;
    }
    return 0;
}

static void free_listen(struct engine *e)
{
    for (size_t i = 0; i < e->listen.n; i++)
        free(e->listen.v[i]);
    free(e->listen.v);
}

struct engine *engine_create(struct event_base *base, struct store *store,
                             const char *dir, const struct strlist *listen, double budget,
                             char *err, size_t errlen)
{
    struct engine *e = calloc(1, sizeof *e);
    if (!e || !(e->dir = strdup(dir))) {
        free(e);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    e->host = (struct luahost){.base = base,
                               .store = store,
                               .reload = host_reload,
                               .reload_arg = e,
                               .budget = budget,
                               .listen = listen && listen->n ? listen : NULL};
    e->current = luart_load(&e->host, dir, err, errlen);
    if (!e->current) {
        free(e->dir);
        free(e);
        return NULL;
    }
    /* Listeners are made once, at start: reloads check against these. */
    if (keep_listen(e, config_listen(luart_config(e->current), listen)) < 0) {
        snprintf(err, errlen, "out of memory");
        engine_destroy(e);
        return NULL;
    }
    e->host.listen = &e->listen;
    e->generation = 1;
    return e;
}

void engine_destroy(struct engine *e)
{
    if (!e)
        return;
    hooks_detach_outregs(e->outreg_hooks);
    luart_retire(e->current);
    luart_close_all();
    free_listen(e);
    free(e->dir);
    free(e);
}

const struct strlist *engine_listen(const struct engine *e)
{
    return &e->listen;
}

const struct config *engine_config(const struct engine *e)
{
    return luart_config(e->current);
}

void engine_set_reload_handler(struct engine *e, engine_reload_h *h, void *arg)
{
    e->on_reload = h;
    e->on_reload_arg = arg;
}

/* Each attach makes a core object reachable from policies and installs its
 * hooks (hooks.h). The hooks read e->current at each call, so they always
 * run in the current policy (e->current changes on reload). */
void engine_attach_gateways(struct engine *e, struct gw_set *gws)
{
    e->host.gateways = gws;
}

void engine_attach_outregs(struct engine *e, struct outreg_set *set, void *sip_root)
{
    e->host.outregs = set;
    e->host.sip_root = sip_root;
    e->outreg_hooks = hooks_attach_outregs(set, e->host.base, &e->current);
}

void engine_attach_sip(struct engine *e, struct sipagent *agent)
{
    e->host.agent = agent;
    hooks_attach_sip(agent, &e->current);
}

void engine_attach_registrar(struct engine *e, struct registrar *r)
{
    e->host.registrar = r;
    hooks_attach_registrar(r, &e->current);
}

void engine_attach_calls(struct engine *e, struct calls *cs)
{
    e->host.calls = cs;
    hooks_attach_calls(cs, &e->current);
}

/* The flood bans and the on_flood hook, run in the current policy. */
void engine_attach_flood(struct engine *e, struct flood *fl)
{
    e->host.flood = fl;
    hooks_attach_flood(fl, &e->current);
}

void engine_attach_overload(struct engine *e, struct overload *ov)
{
    e->host.overload = ov;
}

static int same_listen(const struct config *a, const struct config *b)
{
    const struct strlist *x = &config_switch(a)->listen, *y = &config_switch(b)->listen;
    if (x->n != y->n)
        return 0;
    for (size_t i = 0; i < x->n; i++)
        if (strcmp(x->v[i], y->v[i]) != 0)
            return 0;
    return 1;
}

int engine_reload(struct engine *e, char *msg, size_t msglen)
{
    char err[1024];
    struct luart *next = luart_load(&e->host, e->dir, err, sizeof err);
    if (!next) {
        log_warn("policy", "reload refused, the running policy stays: %s", err);
        snprintf(msg, msglen, "%s", err);
        return -1;
    }
    const struct config *before = luart_config(e->current);
    const struct config *now = luart_config(next);
    struct config_diff d = config_diff(before, now, NULL, NULL);
    char summary[160];
    config_diff_summary(&d, summary, sizeof summary);
    if (!same_listen(before, now))
        log_warn("policy", "listen addresses changed: they take effect at the next restart");
    if (e->on_reload)
        e->on_reload(before, now, e->on_reload_arg);
    struct luart *old = e->current;
    e->current = next;
    e->generation++;
    luart_retire(old);
    log_info("policy", "reloaded (generation %u): %s", e->generation, summary);
    snprintf(msg, msglen, "%s", summary);
    return 0;
}

/* ---- REPL chunks ---------------------------------------------------------- */

struct eval {
    struct engine *engine;
    struct control_request *req;
};

static void eval_done(lua_State *L, int nres, const char *error, void *arg)
{
    struct eval *ev = arg;
    /* Whatever the chunk wrote must be durable before we answer. */
    if (ev->engine->host.store)
        store_commit(ev->engine->host.store);
    if (error) {
        control_reply(ev->req, CONTROL_ERROR, error, strlen(error));
    } else {
        struct strbuf out = {0};
        int base = lua_gettop(L) - nres;
        for (int i = 1; i <= nres; i++) {
            format_value(L, base + i, &out);
            strbuf_add(&out, "\n", 1);
        }
        control_reply(ev->req, CONTROL_OK, out.data ? out.data : "", out.len);
        strbuf_free(&out);
    }
    free(ev);
}

/* What the chunk printed goes to its client ahead of its values, after
 * the commit of what it wrote so far, as its answer does. */
static void eval_output(const char *text, size_t len, void *arg)
{
    struct eval *ev = arg;
    if (ev->engine->host.store)
        store_commit(ev->engine->host.store);
    control_output(ev->req, text, len);
}

/* Lua 5.1 reports an unfinished chunk as an error "near '<eof>'". */
static int incomplete(const char *msg)
{
    static const char mark[] = "'<eof>'";
    size_t n = strlen(msg), m = sizeof mark - 1;
    return n >= m && strcmp(msg + n - m, mark) == 0;
}

void engine_eval(struct control_request *req, enum control_mode mode, const char *chunk,
                 size_t len, void *arg)
{
    struct engine *e = arg;
    struct luart *rt = e->current;
    lua_State *L = luart_state(rt);
    int loaded = 0;
    if (mode == CONTROL_INTERACTIVE) {
        /* An expression prints its value, as in Lua's own REPL. */
        struct strbuf ret = {0};
        strbuf_add(&ret, "return ", 7);
        strbuf_add(&ret, chunk, len);
        loaded = ret.data && luaL_loadbuffer(L, ret.data, ret.len, "=repl") == 0;
        if (!loaded)
            lua_pop(L, 1);
        strbuf_free(&ret);
    }
    if (!loaded && luaL_loadbuffer(L, chunk, len, "=repl") != 0) {
        const char *msg = lua_tostring(L, -1);
        enum control_status st =
            mode == CONTROL_INTERACTIVE && incomplete(msg) ? CONTROL_INCOMPLETE : CONTROL_ERROR;
        control_reply(req, st, msg, strlen(msg));
        lua_pop(L, 1);
        return;
    }
    struct eval *ev = malloc(sizeof *ev);
    if (!ev) {
        lua_pop(L, 1);
        control_reply(req, CONTROL_ERROR, "out of memory", 13);
        return;
    }
    ev->engine = e;
    ev->req = req;
    luart_spawn_output(rt, 0, eval_done, eval_output, ev);
}

size_t engine_lua_bytes(const struct engine *e)
{
    lua_State *L = luart_state(e->current);
    return (size_t)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(L, LUA_GCCOUNTB, 0);
}
