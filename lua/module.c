/* The table of API modules and the helpers they share. See module.h. */
#include "module.h"

#include <stddef.h>

/* Every module, in the order a fresh runtime opens them. This is the one
 * place that names them; each is defined in its own file. The policy DSL is
 * not here: the runtime opens it itself, since loading depends on it. */
extern const struct api_module api_globals;       /* globals.c: sleep, reload, stats */
extern const struct api_module api_timer;         /* timer.c: timer.after, timer.every */
extern const struct api_module api_kv;            /* kv.c: kv.get/put/del/keys */
extern const struct api_module api_registrations; /* registrations.c: registrations */
extern const struct api_module api_gateways;      /* gateways.c: gateways */
extern const struct api_module api_sip;           /* sip.c: sip.request, messages */
extern const struct api_module api_endpoints;     /* endpoints.c: endpoints, accounts,
                                                     suspensions */
extern const struct api_module api_calls;         /* calls.c: calls, cdrs */
extern const struct api_module api_call_policy;   /* call_policy.c: the call object of
                                                     route() and on_failure(), the
                                                     on_call_end queue */
extern const struct api_module api_security;      /* security.c: security */
extern const struct api_module api_repl;          /* repl.c: print, help, top; last,
                                                     since top uses sleep and stats */

static const struct api_module *const modules[] = {
    &api_globals,   &api_timer,       &api_kv,       &api_registrations, &api_gateways,
    &api_sip,       &api_endpoints,   &api_calls,    &api_call_policy,   &api_security,
    &api_repl,
};

const struct api_module *const *api_modules(size_t *n)
{
    *n = sizeof modules / sizeof modules[0];
    return modules;
}

void api_open_all(lua_State *L, struct luart *rt)
{
    for (size_t i = 0; i < sizeof modules / sizeof modules[0]; i++)
        modules[i]->open(L, rt);
}

void api_retire_all(lua_State *L)
{
    for (size_t i = 0; i < sizeof modules / sizeof modules[0]; i++)
        if (modules[i]->retire)
            modules[i]->retire(L);
}

void api_register(lua_State *L, struct luart *rt, const char *name, lua_CFunction fn)
{
    lua_pushlightuserdata(L, rt);
    lua_pushcclosure(L, fn, 1);
    lua_setglobal(L, name);
}

void api_setfield(lua_State *L, struct luart *rt, const char *name, lua_CFunction fn)
{
    lua_pushlightuserdata(L, rt);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, name);
}

void api_open_proxy(lua_State *L, struct luart *rt, const char *global,
                    lua_CFunction index, lua_CFunction tostring, lua_CFunction call,
                    const luaL_Reg *fields)
{
    lua_newtable(L);
    for (const luaL_Reg *f = fields; f && f->name; f++)
        api_setfield(L, rt, f->name, f->func);
    lua_newtable(L); /* proxy mt */
    if (index)
        api_setfield(L, rt, "__index", index);
    if (tostring)
        api_setfield(L, rt, "__tostring", tostring);
    if (call)
        api_setfield(L, rt, "__call", call);
    lua_pushliteral(L, "read-only");
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_setglobal(L, global);
}

void api_push_string(lua_State *L, const char *s)
{
    if (s && *s)
        lua_pushstring(L, s);
    else
        lua_pushnil(L);
}
