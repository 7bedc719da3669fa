/* The policy engine. See engine.h. */
#include "engine.h"
#include "api.h"
#include "security.h"
#include "log.h"
#include "sip/agent.h"
#include "sip/call.h" /* issue 5 */
#include "sip/outreg.h"
#include "store.h"

#include <math.h>

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
};

static int host_reload(void *arg, char *msg, size_t msglen)
{
    return engine_reload(arg, msg, msglen);
}

struct engine *engine_create(struct event_base *base, struct store *store, const char *dir,
                             double budget, char *err, size_t errlen)
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
                               .budget = budget};
    e->current = luart_load(&e->host, dir, err, errlen);
    if (!e->current) {
        free(e->dir);
        free(e);
        return NULL;
    }
    e->generation = 1;
    return e;
}

void engine_destroy(struct engine *e)
{
    if (!e)
        return;
    luart_retire(e->current);
    luart_close_all();
    free(e->dir);
    free(e);
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

/* A registration's retry_delay function: called with the registration's
 * live handle, returns seconds. Runs under the time budget and may not
 * wait; on any error the switch setting applies. */
static int retry_hook(struct outreg *reg, int ref, void *arg)
{
    struct engine *e = arg;
    struct luart *rt = e->current;
    lua_State *L = luart_state(rt);
    char err[512];
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return -1;
    }
    api_push_registration(L, rt, outreg_name(reg));
    if (luart_call(rt, 1, 1, err, sizeof err) < 0) {
        log_error("policy", "registration \"%s\": retry_delay: %s", outreg_name(reg), err);
        return -1;
    }
    double d = lua_tonumber(L, -1);
    int ok = lua_type(L, -1) == LUA_TNUMBER && d >= 1 && d <= 86400;
    lua_pop(L, 1);
    if (!ok) {
        log_error("policy",
                  "registration \"%s\": retry_delay must return seconds from 1 to 86400",
                  outreg_name(reg));
        return -1;
    }
    return (int)ceil(d);
}

void engine_attach_outregs(struct engine *e, struct outreg_set *set, void *sip_root)
{
    e->host.outregs = set;
    e->host.sip_root = sip_root;
    outreg_set_retry_hook(set, retry_hook, e);
}

/* Out-of-dialog requests no core module took: the current policy's
 * on_request hook, if it has one. */
static int on_request(nta_incoming_t *irq, const sip_t *sip, void *arg)
{
    struct engine *e = arg;
    return sip_dispatch_request(e->current, irq, sip);
}

void engine_attach_sip(struct engine *e, struct sipagent *agent)
{
    e->host.agent = agent;
    sipagent_set_request_handler(agent, on_request, e);
}

/* The registrar's objects (endpoints, accounts) and its on_register hook,
 * which always runs in the current policy (e->current changes on reload). */
void engine_attach_registrar(struct engine *e, struct registrar *r)
{
    e->host.registrar = r;
    endpoints_attach(r, &e->current);
}

/* The flood bans and the on_flood hook, run in the current policy. */
void engine_attach_flood(struct engine *e, struct flood *fl)
{
    e->host.flood = fl;
    security_attach(fl, &e->current);
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
            api_format_value(L, base + i, &out);
            strbuf_add(&out, "\n", 1);
        }
        control_reply(ev->req, CONTROL_OK, out.data ? out.data : "", out.len);
        strbuf_free(&out);
    }
    free(ev);
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
    luart_spawn(rt, 0, eval_done, ev);
}

/* ---- Calls (issue 5) -------------------------------------------------------- */

/* The policy's route(call) hook, when the current policy defines one: it
 * runs in a task of its own and may wait; the call waits for its answer.
 * It returns an array of routing gateway names (or several names), or
 * nothing for prefix and priority routing. An error falls back to prefix
 * and priority routing, logged. */
static void route_done(lua_State *L, int nres, const char *error, void *arg)
{
    struct call_route *rq = arg;
    if (error) {
        log_error("policy", "route(): %s", error);
        call_route_done(rq, NULL, 0);
        return;
    }
    const char *names[32];
    size_t n = 0;
    int base = lua_gettop(L) - nres;
    if (nres >= 1 && lua_istable(L, base + 1)) {
        for (int i = 1; n < 32; i++) {
            lua_rawgeti(L, base + 1, i);
            if (lua_type(L, -1) != LUA_TSTRING) {
                lua_pop(L, 1);
                break;
            }
            names[n++] = lua_tostring(L, -1); /* anchored by the table */
            lua_pop(L, 1);
        }
    } else {
        for (int i = 1; i <= nres && n < 32; i++)
            if (lua_type(L, base + i) == LUA_TSTRING)
                names[n++] = lua_tostring(L, base + i);
    }
    call_route_done(rq, names, n);
}

static bool route_hook(struct call_route *rq, void *arg)
{
    struct engine *e = arg;
    struct luart *rt = e->current;
    lua_State *L = luart_state(rt);
    lua_getglobal(L, "route");
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return false;
    }
    lua_createtable(L, 0, 3);
    lua_pushstring(L, call_route_caller(rq));
    lua_setfield(L, -2, "caller");
    lua_pushstring(L, call_route_callee(rq));
    lua_setfield(L, -2, "callee");
    lua_pushstring(L, call_route_mapping_gateway(rq));
    lua_setfield(L, -2, "mapping_gateway");
    luart_spawn(rt, 1, route_done, rq); /* done follows, even on failure */
    return true;
}

/* A gateway's callee_rewrite rule, with Lua's own string.gsub so that the
 * rules mean what they mean in Lua. Runs under the time budget. */
static int rewrite_hook(const char *pattern, const char *replacement, const char *in,
                        char *out, size_t outlen, void *arg)
{
    struct engine *e = arg;
    struct luart *rt = e->current;
    lua_State *L = luart_state(rt);
    char err[256];
    lua_getglobal(L, "string");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return -1;
    }
    lua_getfield(L, -1, "gsub");
    lua_remove(L, -2);
    lua_pushstring(L, in);
    lua_pushstring(L, pattern);
    lua_pushstring(L, replacement);
    if (luart_call(rt, 3, 1, err, sizeof err) < 0) {
        log_error("policy", "callee_rewrite { \"%s\", \"%s\" }: %s", pattern, replacement, err);
        return -1;
    }
    const char *s = lua_tostring(L, -1);
    int rc = s && strlen(s) < outlen ? 0 : -1;
    if (rc == 0)
        memcpy(out, s, strlen(s) + 1);
    lua_pop(L, 1);
    return rc;
}

void engine_attach_calls(struct engine *e, struct calls *cs)
{
    e->host.calls = cs;
    calls_set_route_hook(cs, route_hook, e);
    calls_set_rewrite_hook(cs, rewrite_hook, e);
}
