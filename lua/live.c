/* Live objects: `registrations` and `gateways`.
 *
 * A handle names its object and looks it up on every access, so a handle
 * kept across a reload that removed the object reads `removed` instead of
 * pointing at freed memory. */
#include "api.h"
#include "config.h"
#include "sip/outreg.h"
#include "sip/gateway.h"
#include "store.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REG_MT "moon.registration"
#define GW_MT "moon.gateway"

struct handle {
    struct luart *rt;
    char name[1]; /* allocated to fit */
};

static struct handle *push_handle(lua_State *L, struct luart *rt, const char *name,
                                  const char *mt)
{
    size_t n = strlen(name);
    struct handle *h = lua_newuserdata(L, sizeof *h + n);
    h->rt = rt;
    memcpy(h->name, name, n + 1);
    luaL_getmetatable(L, mt);
    lua_setmetatable(L, -2);
    return h;
}

/* ---- registrations --------------------------------------------------------- */

static struct outreg *reg_of(lua_State *L, int idx)
{
    struct handle *h = luaL_checkudata(L, idx, REG_MT);
    struct outreg_set *set = luart_host(h->rt)->outregs;
    return set ? outreg_find(set, h->name) : NULL;
}

void api_push_registration(lua_State *L, struct luart *rt, const char *name)
{
    push_handle(L, rt, name, REG_MT);
}

static int reg_refresh(lua_State *L)
{
    struct outreg *r = reg_of(L, 1);
    if (!r)
        return luaL_error(L, "registration \"%s\" no longer exists",
                          ((struct handle *)lua_touserdata(L, 1))->name);
    outreg_refresh(r);
    lua_pushboolean(L, 1);
    return 1;
}

static int reg_disable(lua_State *L)
{
    struct outreg *r = reg_of(L, 1);
    if (!r)
        return luaL_error(L, "registration no longer exists");
    outreg_disable(r);
    lua_pushboolean(L, 1);
    return 1;
}

static int reg_enable(lua_State *L)
{
    struct outreg *r = reg_of(L, 1);
    if (!r)
        return luaL_error(L, "registration no longer exists");
    outreg_enable(r);
    lua_pushboolean(L, 1);
    return 1;
}

static int reg_trace(lua_State *L)
{
    struct outreg *r = reg_of(L, 1);
    if (!r)
        return luaL_error(L, "registration no longer exists");
    outreg_trace(r, lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2));
    lua_pushboolean(L, outreg_tracing(r));
    return 1;
}

static void push_string_or_nil(lua_State *L, const char *s)
{
    if (s && *s)
        lua_pushstring(L, s);
    else
        lua_pushnil(L);
}

static int reg_index(lua_State *L)
{
    struct handle *h = luaL_checkudata(L, 1, REG_MT);
    const char *k = luaL_checkstring(L, 2);
    static const struct {
        const char *name;
        lua_CFunction fn;
    } methods[] = {{"refresh", reg_refresh},
                   {"disable", reg_disable},
                   {"enable", reg_enable},
                   {"trace", reg_trace}};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(k, methods[i].name) == 0) {
            lua_pushcfunction(L, methods[i].fn);
            return 1;
        }
    if (strcmp(k, "name") == 0) {
        lua_pushstring(L, h->name);
        return 1;
    }
    struct outreg *r = reg_of(L, 1);
    if (!r) {
        if (strcmp(k, "state") == 0)
            lua_pushliteral(L, "removed");
        else
            lua_pushnil(L);
        return 1;
    }
    if (strcmp(k, "state") == 0)
        lua_pushstring(L, outreg_state_name(outreg_state(r)));
    else if (strcmp(k, "status") == 0)
        outreg_status(r) ? lua_pushinteger(L, outreg_status(r)) : lua_pushnil(L);
    else if (strcmp(k, "expires") == 0)
        lua_pushinteger(L, outreg_expires(r));
    else if (strcmp(k, "failures") == 0)
        lua_pushinteger(L, outreg_failures(r));
    else if (strcmp(k, "contact") == 0)
        push_string_or_nil(L, outreg_contact(r));
    else if (strcmp(k, "next_refresh") == 0)
        outreg_next_refresh(r) ? lua_pushnumber(L, (double)outreg_next_refresh(r))
                               : lua_pushnil(L);
    else if (strcmp(k, "public_address") == 0)
        push_string_or_nil(L, outreg_public_address(r));
    else if (strcmp(k, "last_error") == 0)
        push_string_or_nil(L, outreg_last_error(r));
    else if (strcmp(k, "call_id") == 0)
        lua_pushstring(L, outreg_call_id(r));
    else if (strcmp(k, "cseq") == 0)
        lua_pushnumber(L, outreg_cseq(r));
    else if (strcmp(k, "server") == 0)
        lua_pushstring(L, outreg_server(r));
    else if (strcmp(k, "username") == 0)
        lua_pushstring(L, outreg_username(r));
    else if (strcmp(k, "tracing") == 0)
        lua_pushboolean(L, outreg_tracing(r));
    else
        lua_pushnil(L); /* the password is never readable */
    return 1;
}

static int reg_tostring(lua_State *L)
{
    struct handle *h = luaL_checkudata(L, 1, REG_MT);
    struct outreg *r = reg_of(L, 1);
    if (!r)
        lua_pushfstring(L, "registration \"%s\" (removed)", h->name);
    else
        lua_pushfstring(L, "registration \"%s\": %s, status %d, expires %d", h->name,
                        outreg_state_name(outreg_state(r)), outreg_status(r),
                        outreg_expires(r));
    return 1;
}

/* registrations[name] */
static int regs_index(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    const char *name = luaL_checkstring(L, 2);
    struct outreg_set *set = luart_host(rt)->outregs;
    if (!set || !outreg_find(set, name)) {
        lua_pushnil(L);
        return 1;
    }
    push_handle(L, rt, name, REG_MT);
    return 1;
}

/* registrations(): an array of handles, in name order. */
static int regs_call(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    struct outreg_set *set = luart_host(rt)->outregs;
    size_t n = set ? outreg_set_count(set) : 0;
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        push_handle(L, rt, outreg_name(outreg_set_at(set, i)), REG_MT);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

/* The status table printed for `registrations` in the REPL. The password is
 * not part of it, nor readable anywhere. */
static int regs_tostring(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    struct outreg_set *set = luart_host(rt)->outregs;
    size_t n = set ? outreg_set_count(set) : 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char line[512];
    snprintf(line, sizeof line, "%-24s %-12s %6s %8s %12s  %s\n", "name", "state", "status",
             "expires", "next refresh", "last error");
    luaL_addstring(&b, line);
    time_t now = time(NULL);
    for (size_t i = 0; i < n; i++) {
        struct outreg *r = outreg_set_at(set, i);
        char next[32] = "-";
        if (outreg_next_refresh(r))
            snprintf(next, sizeof next, "in %lds", (long)(outreg_next_refresh(r) - now));
        char status[16] = "-";
        if (outreg_status(r))
            snprintf(status, sizeof status, "%d", outreg_status(r));
        snprintf(line, sizeof line, "%-24s %-12s %6s %8d %12s  %s\n", outreg_name(r),
                 outreg_state_name(outreg_state(r)), status, outreg_expires(r), next,
                 outreg_last_error(r));
        luaL_addstring(&b, line);
    }
    snprintf(line, sizeof line, "(%zu registrations)", n);
    luaL_addstring(&b, line);
    luaL_pushresult(&b);
    return 1;
}

/* ---- gateways ------------------------------------------------------------- */

/* A routing gateway is online when it can take calls: a registration-type
 * gateway only while its registration is active, and any gateway with
 * options_check while its OPTIONS checks answer (the gateway module decides:
 * gw_online). */
static int gateway_online(struct luart *rt, const struct routing_gateway_def *g)
{
    struct gw_set *gws = luart_host(rt)->gateways;
    if (gws)
        return gw_online(gws, g->head.name);
    if (g->type != RGW_REGISTRATION)
        return 1;
    struct outreg_set *set = luart_host(rt)->outregs;
    struct outreg *r = set ? outreg_find(set, g->registration) : NULL;
    return r && outreg_state(r) == OUTREG_ACTIVE;
}

/* Calls in progress through a gateway (issue 5): 0 until calls are up. */
static unsigned gateway_calls(struct luart *rt, const char *name)
{
    struct gw_set *gws = luart_host(rt)->gateways;
    return gws ? gw_routing_calls(gws, name) : 0;
}

static int gw_index(lua_State *L)
{
    struct handle *h = luaL_checkudata(L, 1, GW_MT);
    const char *k = luaL_checkstring(L, 2);
    const struct routing_gateway_def *g =
        (const void *)config_find(luart_config(h->rt), KIND_ROUTING_GATEWAY, h->name);
    if (strcmp(k, "name") == 0) {
        lua_pushstring(L, h->name);
    } else if (!g) {
        lua_pushnil(L);
    } else if (strcmp(k, "online") == 0) {
        lua_pushboolean(L, gateway_online(h->rt, g));
    } else if (strcmp(k, "calls") == 0) {
        lua_pushinteger(L, gateway_calls(h->rt, h->name)); /* issue 5 */
    } else if (strcmp(k, "type") == 0) {
        static const char *const types[] = {"static", "dynamic", "registration"};
        lua_pushstring(L, types[g->type]);
    } else if (strcmp(k, "registration") == 0) {
        push_string_or_nil(L, g->registration);
    } else if (strcmp(k, "address") == 0) {
        push_string_or_nil(L, g->address);
    } else if (strcmp(k, "priority") == 0) {
        lua_pushinteger(L, g->priority);
    } else if (strcmp(k, "line_limit") == 0) {
        g->line_limit < 0 ? lua_pushnil(L) : lua_pushinteger(L, g->line_limit);
    } else {
        lua_pushnil(L);
    }
    return 1;
}

static int gws_index(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    const char *name = luaL_checkstring(L, 2);
    if (!config_find(luart_config(rt), KIND_ROUTING_GATEWAY, name)) {
        lua_pushnil(L);
        return 1;
    }
    push_handle(L, rt, name, GW_MT);
    return 1;
}

static int gws_tostring(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    const struct config *cfg = luart_config(rt);
    size_t n = config_count(cfg, KIND_ROUTING_GATEWAY);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char line[256];
    snprintf(line, sizeof line, "%-24s %-13s %-7s %5s  %s\n", "name", "type", "online", "calls",
             "registration");
    luaL_addstring(&b, line);
    static const char *const types[] = {"static", "dynamic", "registration"};
    for (size_t i = 0; i < n; i++) {
        const struct routing_gateway_def *g =
            (const void *)config_at(cfg, KIND_ROUTING_GATEWAY, i);
        snprintf(line, sizeof line, "%-24s %-13s %-7s %5d  %s\n", g->head.name,
                 types[g->type], gateway_online(rt, g) ? "yes" : "no",
                 (int)gateway_calls(rt, g->head.name), /* issue 5 */
                 g->registration ? g->registration : "-");
        luaL_addstring(&b, line);
    }
    snprintf(line, sizeof line, "(%zu routing gateways)", n);
    luaL_addstring(&b, line);
    luaL_pushresult(&b);
    return 1;
}

/* stats(): what the switch holds now. heap_in_use is malloc's count of
 * live bytes (what benchmarks divide by entries); heap_mapped includes
 * freed memory glibc has not returned yet. */
static int l_stats(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    const struct luahost *host = luart_host(rt);
    struct mallinfo2 mi = mallinfo2();
    lua_createtable(L, 0, 8);
    lua_pushnumber(L, (double)mi.uordblks + (double)mi.hblkhd);
    lua_setfield(L, -2, "heap_in_use");
    lua_pushnumber(L, (double)mi.arena + (double)mi.hblkhd);
    lua_setfield(L, -2, "heap_mapped");
    lua_pushnumber(L, (double)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + lua_gc(L, LUA_GCCOUNTB, 0));
    lua_setfield(L, -2, "lua_bytes");
    lua_pushinteger(L, luart_tasks(rt));
    lua_setfield(L, -2, "tasks");
    lua_pushinteger(L, host->outregs ? (lua_Integer)outreg_set_count(host->outregs) : 0);
    lua_setfield(L, -2, "registrations");
    if (host->store) {
        lua_pushnumber(L, (double)store_used_bytes(host->store));
        lua_setfield(L, -2, "store_bytes");
    }
    return 1;
}

/* A global proxy table: `name` is indexed through `index`, printed through
 * `tostring`, called through `call` (any may be NULL), with plain `fields`
 * (functions, may be NULL). Read-only: its metatable is hidden. */
void api_open_proxy(lua_State *L, struct luart *rt, const char *global, lua_CFunction index,
                    lua_CFunction tostring, lua_CFunction call, const luaL_Reg *fields)
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

void api_open_live(lua_State *L, struct luart *rt)
{
    luaL_newmetatable(L, REG_MT);
    lua_pushcfunction(L, reg_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, reg_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    luaL_newmetatable(L, GW_MT);
    lua_pushcfunction(L, gw_index);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    api_register(L, rt, "stats", l_stats);
    api_open_proxy(L, rt, "registrations", regs_index, regs_tostring, regs_call, NULL);
    api_open_proxy(L, rt, "gateways", gws_index, gws_tostring, NULL, NULL);
}
