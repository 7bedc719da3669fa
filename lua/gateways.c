/* Routing gateways in Lua: `gateways`.
 *
 *   gateways                    prints name, type, online, calls, registration
 *   gateways["carrier-a"]       a handle (handle.h), or nil: .name, .online,
 *                               .calls, .type, .registration, .account,
 *                               .address (a dynamic gateway's: where its
 *                               account registered, nil while not),
 *                               .prefixes, .priority, .line_limit
 *                               (gateway_handle_fields)
 *
 * A handle reads its gateway from the running runtime's policy set on each
 * access, and whether it is online and its calls from the core. */
#include "calls.h"
#include "config.h"
#include "handle.h"
#include "module.h"
#include "runtime.h"
#include "sip/gateway.h"
#include "sip/outreg.h"

#include <stdio.h>
#include <string.h>

#define GW_MT "moon.gateway"

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

/* Calls in progress through a gateway: 0 until calls are up. */
static unsigned gateway_calls(struct luart *rt, const char *name)
{
    struct gw_set *gws = luart_host(rt)->gateways;
    return gws ? gw_routing_calls(gws, name) : 0;
}

const char *const gateway_handle_fields[] = {
    "name",     "online",   "calls",      "type", "registration", "account", "address",
    "prefixes", "priority", "line_limit", NULL};

enum {
    G_NAME,
    G_ONLINE,
    G_CALLS,
    G_TYPE,
    G_REGISTRATION,
    G_ACCOUNT,
    G_ADDRESS,
    G_PREFIXES,
    G_PRIORITY,
    G_LINE_LIMIT
};

/* Where calls to g go now: its address, a dynamic one's binding. */
static void push_address(lua_State *L, struct luart *rt,
                         const struct routing_gateway_def *g)
{
    struct gw_set *gws = luart_host(rt)->gateways;
    char addr[128];
    if (g->type != RGW_DYNAMIC)
        api_push_string(L, g->address);
    else if (gws && gw_address(gws, g, addr, sizeof addr) == 0)
        lua_pushstring(L, addr);
    else
        lua_pushnil(L);
}

static int gw_index(lua_State *L)
{
    struct handle *h = handle_check(L, 1, GW_MT);
    int f = api_field_index(gateway_handle_fields, luaL_checkstring(L, 2));
    const struct routing_gateway_def *g =
        (const void *)config_find(luart_config(h->rt), KIND_ROUTING_GATEWAY, h->name);
    static const char *const types[] = {"static", "dynamic", "registration"};
    if (f == G_NAME) {
        lua_pushstring(L, h->name);
        return 1;
    }
    if (!g) {
        lua_pushnil(L);
        return 1;
    }
    switch (f) {
    case G_ONLINE:
        lua_pushboolean(L, gateway_online(h->rt, g));
        break;
    case G_CALLS:
        lua_pushinteger(L, gateway_calls(h->rt, h->name));
        break;
    case G_TYPE:
        lua_pushstring(L, types[g->type]);
        break;
    case G_REGISTRATION:
        api_push_string(L, g->registration);
        break;
    case G_ACCOUNT:
        api_push_string(L, g->account);
        break;
    case G_ADDRESS:
        push_address(L, h->rt, g);
        break;
    case G_PREFIXES:
        lua_createtable(L, (int)g->prefixes.n, 0);
        for (size_t i = 0; i < g->prefixes.n; i++) {
            lua_pushstring(L, g->prefixes.v[i]);
            lua_rawseti(L, -2, (int)i + 1);
        }
        break;
    case G_PRIORITY:
        lua_pushinteger(L, g->priority);
        break;
    case G_LINE_LIMIT:
        g->line_limit < 0 ? lua_pushnil(L) : lua_pushinteger(L, g->line_limit);
        break;
    default:
        lua_pushnil(L);
        break;
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
    handle_push(L, rt, name, GW_MT);
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
    snprintf(line, sizeof line, "%-24s %-13s %-7s %5s  %s\n", "name", "type", "online",
             "calls", "registration/account");
    luaL_addstring(&b, line);
    static const char *const types[] = {"static", "dynamic", "registration"};
    for (size_t i = 0; i < n; i++) {
        const struct routing_gateway_def *g =
            (const void *)config_at(cfg, KIND_ROUTING_GATEWAY, i);
        snprintf(line, sizeof line, "%-24s %-13s %-7s %5d  %s\n", g->head.name,
                 types[g->type], gateway_online(rt, g) ? "yes" : "no",
                 (int)gateway_calls(rt, g->head.name),
                 g->registration ? g->registration
                 : g->account    ? g->account
                                 : "-");
        luaL_addstring(&b, line);
    }
    snprintf(line, sizeof line, "(%zu routing gateways)", n);
    luaL_addstring(&b, line);
    luaL_pushresult(&b);
    return 1;
}

static void open_gateways(lua_State *L, struct luart *rt)
{
    luaL_newmetatable(L, GW_MT);
    lua_pushcfunction(L, gw_index);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    api_open_proxy(L, rt, "gateways", gws_index, gws_tostring, NULL, NULL);
}

static const struct api_help help[] = {
    {"gateways", "routing gateways; prints type, online, calls, registration",
     "  gateways                     the table: name, type, online, calls, registration\n"
     "  gateways[\"name\"]             a handle, or nil:\n"
     "    .name .online .calls .type .registration .address .priority .line_limit\n",
     (const char *const[]){GW_MT, NULL}},
    {NULL, NULL, NULL, NULL},
};

const struct api_module api_gateways = {
    .name = "gateways", .help = help, .open = open_gateways};
