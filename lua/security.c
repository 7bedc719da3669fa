/* Hostile traffic in Lua: the `security` table, the flood bans' part of
 * `suspensions`, and the optional policy hook `on_flood`.
 *
 *   security.ban("198.51.100.7", 3600)  ban a source (seconds; default: the
 *                                       policy's source_ban); true, or nil
 *                                       and a message
 *   security.lift("198.51.100.7")       true when a ban was lifted
 *   security.bans()                     array of { ip=, until=, dropped= }
 *   security.stats()                    { dropped=, bans=, spared=, refused=,
 *                                       banned=, connections=, silent=, kernel= }
 *   suspensions()                       also holds { kind = "flood",
 *                                       name = IP, until = unix seconds }
 *
 *   function on_flood(source, rate)     a source that is no gateway went
 *     return false                      over source_rate: false spares it
 *   end                                 for source_ban seconds; anything
 *                                       else (or an error) bans it
 *
 * on_flood runs synchronously, in the running policy, when the source runs
 * out of tokens (at most once per source per ban period), under the policy
 * time budget; it cannot wait (sleep, sip.request raise an error, and the
 * source is banned). It may call security.ban() and security.lift(). */
#include "security.h"
#include "config.h"
#include "hooks.h"
#include "log.h"
#include "module.h"
#include "runtime.h"
#include "sip/flood.h"
#include "task.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static struct flood *flood_of(lua_State *L)
{
    return luart_host(RT_UPVALUE(L))->flood;
}

static int sec_ban(lua_State *L)
{
    const char *ip = luaL_checkstring(L, 1);
    struct luart *rt = RT_UPVALUE(L);
    long seconds =
        (long)luaL_optnumber(L, 2, config_switch(luart_config(rt))->security.source_ban);
    struct flood *fl = flood_of(L);
    if (!fl) {
        lua_pushnil(L);
        lua_pushstring(L, "the switch is not running");
        return 2;
    }
    int rc = flood_ban(fl, ip, seconds, "banned by the policy");
    if (rc < 0) {
        lua_pushnil(L);
        lua_pushstring(L, rc == -EINVAL ? "not an IP address, or seconds not above 0"
                                        : "no room for more bans");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int sec_lift(lua_State *L)
{
    const char *ip = luaL_checkstring(L, 1);
    struct flood *fl = flood_of(L);
    lua_pushboolean(L, fl && flood_lift(fl, ip) > 0);
    return 1;
}

struct bans_ctx {
    lua_State *L;
    int n;
};

static int push_ban(const char *ip, long long until, uint64_t dropped, void *arg)
{
    struct bans_ctx *c = arg;
    lua_createtable(c->L, 0, 3);
    lua_pushstring(c->L, ip);
    lua_setfield(c->L, -2, "ip");
    lua_pushnumber(c->L, (double)until);
    lua_setfield(c->L, -2, "until");
    lua_pushnumber(c->L, (double)dropped);
    lua_setfield(c->L, -2, "dropped");
    lua_rawseti(c->L, -2, ++c->n);
    return 0;
}

static int sec_bans(lua_State *L)
{
    struct flood *fl = flood_of(L);
    lua_newtable(L);
    struct bans_ctx c = {L, 0};
    if (fl)
        flood_bans(fl, push_ban, &c);
    return 1;
}

static int sec_stats(lua_State *L)
{
    struct flood *fl = flood_of(L);
    struct flood_stats st = {0};
    if (fl)
        flood_get_stats(fl, &st);
    lua_createtable(L, 0, 8);
    const struct {
        const char *name;
        double v;
    } f[] = {{"dropped", (double)st.dropped}, {"bans", (double)st.bans},
             {"spared", (double)st.spared},   {"refused", (double)st.refused},
             {"banned", st.banned},           {"connections", st.connections},
             {"silent", st.silent},           {"kernel", st.kernel}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        lua_pushnumber(L, f[i].v);
        lua_setfield(L, -2, f[i].name);
    }
    return 1;
}

static void open_security(lua_State *L, struct luart *rt)
{
    lua_newtable(L);
    api_setfield(L, rt, "ban", sec_ban);
    api_setfield(L, rt, "lift", sec_lift);
    api_setfield(L, rt, "bans", sec_bans);
    api_setfield(L, rt, "stats", sec_stats);
    lua_setglobal(L, "security");
}

static const struct api_help help[] = {
    {"security", "source bans against floods: security.ban/lift/bans/stats",
     "  security.ban(ip[, seconds])  ban a source (default: source_ban); true, or\n"
     "                               nil and a message\n"
     "  security.lift(ip)            true when a ban was lifted\n"
     "  security.bans()              array of { ip, until, dropped }\n"
     "  security.stats()             { dropped, bans, spared, refused, banned,\n"
     "                               connections, silent, kernel }\n"
     "  function on_flood(source, rate)  return false to spare a flooding source\n",
     NULL},
    {NULL, NULL, NULL, NULL},
};

const struct api_module api_security = {
    .name = "security", .help = help, .open = open_security};

/* ---- suspensions ---------------------------------------------------------------- */

static int push_suspension(const char *ip, long long until, uint64_t dropped, void *arg)
{
    struct bans_ctx *c = arg;
    (void)dropped;
    lua_createtable(c->L, 0, 3);
    lua_pushliteral(c->L, "flood");
    lua_setfield(c->L, -2, "kind");
    lua_pushstring(c->L, ip);
    lua_setfield(c->L, -2, "name");
    lua_pushnumber(c->L, (double)until);
    lua_setfield(c->L, -2, "until");
    lua_rawseti(c->L, -2, ++c->n);
    return 0;
}

int security_push_suspensions(lua_State *L, struct luart *rt, int n)
{
    struct flood *fl = luart_host(rt)->flood;
    struct bans_ctx c = {L, n};
    if (fl)
        flood_bans(fl, push_suspension, &c);
    return c.n;
}

struct lines_ctx {
    luaL_Buffer *b;
    long long now;
    int n;
};

static int add_line(const char *ip, long long until, uint64_t dropped, void *arg)
{
    struct lines_ctx *c = arg;
    (void)dropped;
    char line[256];
    snprintf(line, sizeof line, "%-8s %-40s %llds\n", "flood", ip, until - c->now);
    luaL_addstring(c->b, line);
    c->n++;
    return 0;
}

int security_add_suspension_lines(struct luart *rt, luaL_Buffer *b, long long now)
{
    struct flood *fl = luart_host(rt)->flood;
    struct lines_ctx c = {b, now, 0};
    if (fl)
        flood_bans(fl, add_line, &c);
    return c.n;
}

bool security_lift(struct luart *rt, const char *ip)
{
    struct flood *fl = luart_host(rt)->flood;
    return fl && flood_lift(fl, ip) > 0;
}

/* ---- on_flood ------------------------------------------------------------------- */

/* The verdict of the running policy's on_flood: false spares; no hook,
 * anything else or an error bans. */
static bool on_flood_hook(const char *ip, double rate, void *arg)
{
    struct luart *const *current = arg;
    struct luart *rt = *current;
    if (!rt)
        return true;
    lua_State *L = luart_state(rt);
    lua_getglobal(L, "on_flood");
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return true;
    }
    lua_pushstring(L, ip);
    lua_pushnumber(L, rate);
    char err[512];
    if (luart_call(rt, 2, 1, err, sizeof err) < 0) {
        log_error("policy", "on_flood(%s): %s: banned", ip, err);
        return true;
    }
    bool spare = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
    lua_pop(L, 1);
    return !spare;
}

void hooks_attach_flood(struct flood *fl, struct luart *const *current)
{
    flood_set_hook(fl, on_flood_hook, (void *)current);
}
