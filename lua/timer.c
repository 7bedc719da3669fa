/* timer.after(seconds, fn) and timer.every(seconds, fn).
 *
 * Each firing runs fn in a new task, so it may sleep or wait like any hook.
 * A timer lives until it fires (after) or is cancelled (every), even when the
 * policy drops its handle; retiring the runtime (a reload) stops them all:
 * the new policy arms its own. */
#include "log.h"
#include "module.h"
#include "runtime.h"
#include "task.h"

#include <event2/event.h>
#include <math.h>
#include <string.h>

#define TIMER_MT "moon.timer"

struct ltimer {
    struct event *ev;
    struct luart *rt;
    double seconds;
    int periodic;
    int fn_ref;   /* the callback */
    int self_ref; /* anchors the userdata while armed; LUA_NOREF otherwise */
    unsigned fired;
};

/* Registry table of armed timers: [userdata] = true. */
static char armed_key;

static void timer_disarm(lua_State *L, struct ltimer *t)
{
    if (t->self_ref == LUA_NOREF)
        return;
    event_del(t->ev);
    lua_pushlightuserdata(L, &armed_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, t->self_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, t->fn_ref);
    t->self_ref = LUA_NOREF;
    t->fn_ref = LUA_NOREF;
}

static void timer_done(lua_State *L, int nres, const char *error, void *arg)
{
    (void)L;
    (void)nres;
    (void)arg;
    if (error)
        log_error("lua", "timer callback: %s", error);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct ltimer *t = arg;
    (void)fd;
    (void)what;
    lua_State *L = luart_state(t->rt);
    t->fired++;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->self_ref); /* fn(handle) */
    if (!t->periodic)
        timer_disarm(L, t); /* the handle stays valid for fn, unarmed */
    luart_spawn(t->rt, 1, timer_done, NULL);
}

static int timer_new(lua_State *L, int periodic)
{
    struct luart *rt = RT_UPVALUE(L);
    double s = luaL_checknumber(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (!(s >= 0) || (periodic && s < 0.001))
        return luaL_argerror(L, 1,
                             periodic ? "interval must be at least 0.001 s"
                                      : "seconds must be >= 0");
    struct ltimer *t = lua_newuserdata(L, sizeof *t);
    t->ev = NULL;
    t->self_ref = t->fn_ref = LUA_NOREF;
    luaL_getmetatable(L, TIMER_MT);
    lua_setmetatable(L, -2);
    t->rt = rt;
    t->seconds = s;
    t->periodic = periodic;
    t->fired = 0;
    t->ev = event_new(luart_host(rt)->base, -1, periodic ? EV_PERSIST : 0, on_timer, t);
    if (!t->ev)
        return luaL_error(L, "timer: out of memory");
    lua_pushvalue(L, 2);
    t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -1);
    t->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, &armed_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushvalue(L, -2);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    double whole = floor(s);
    struct timeval tv = {.tv_sec = (time_t)whole,
                         .tv_usec = (suseconds_t)((s - whole) * 1e6)};
    event_add(t->ev, &tv);
    return 1;
}

static int l_after(lua_State *L)
{
    return timer_new(L, 0);
}

static int l_every(lua_State *L)
{
    return timer_new(L, 1);
}

static int l_cancel(lua_State *L)
{
    struct ltimer *t = luaL_checkudata(L, 1, TIMER_MT);
    int was_armed = t->self_ref != LUA_NOREF;
    timer_disarm(L, t);
    lua_pushboolean(L, was_armed);
    return 1;
}

static int l_index(lua_State *L)
{
    struct ltimer *t = luaL_checkudata(L, 1, TIMER_MT);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "cancel") == 0)
        lua_pushcfunction(L, l_cancel);
    else if (strcmp(k, "active") == 0)
        lua_pushboolean(L, t->self_ref != LUA_NOREF);
    else if (strcmp(k, "fired") == 0)
        lua_pushinteger(L, t->fired);
    else if (strcmp(k, "interval") == 0)
        lua_pushnumber(L, t->seconds);
    else
        lua_pushnil(L);
    return 1;
}

static int l_tostring(lua_State *L)
{
    struct ltimer *t = luaL_checkudata(L, 1, TIMER_MT);
    lua_pushfstring(L, "timer.%s(%f) %s", t->periodic ? "every" : "after", t->seconds,
                    t->self_ref != LUA_NOREF ? "armed" : "stopped");
    return 1;
}

static int l_gc(lua_State *L)
{
    struct ltimer *t = luaL_checkudata(L, 1, TIMER_MT);
    if (t->ev)
        event_free(t->ev);
    t->ev = NULL;
    return 0;
}

/* Retiring the runtime stops every armed timer. */
static void stop_all(lua_State *L)
{
    lua_pushlightuserdata(L, &armed_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return;
    }
    int armed = lua_gettop(L);
    /* Collect first: disarming edits the table we would be walking. */
    lua_newtable(L);
    int list = lua_gettop(L);
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, armed)) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, list, ++n);
    }
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, list, i);
        timer_disarm(L, lua_touserdata(L, -1));
        lua_pop(L, 1);
    }
    lua_settop(L, armed - 1);
}

static void open_timer(lua_State *L, struct luart *rt)
{
    luaL_newmetatable(L, TIMER_MT);
    lua_pushcfunction(L, l_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    lua_pushlightuserdata(L, &armed_key);
    lua_newtable(L);
    lua_rawset(L, LUA_REGISTRYINDEX);

    lua_newtable(L);
    api_setfield(L, rt, "after", l_after);
    api_setfield(L, rt, "every", l_every);
    lua_setglobal(L, "timer");
}

static const struct api_help help[] = {
    {"timer", "timer.after(s, fn), timer.every(s, fn): run fn later",
     "  timer.after(seconds, fn)     run fn once after seconds; a timer handle\n"
     "  timer.every(seconds, fn)     run fn every seconds until cancelled\n"
     "  t:cancel()                   stop it; true if it was armed\n"
     "  t.active, t.fired, t.interval\n"
     "                               armed or not, firings so far, seconds\n"
     "  (a reload stops every timer of the old policy; print() in fn goes to the log)\n",
     (const char *const[]){TIMER_MT, NULL}},
    {NULL, NULL, NULL, NULL},
};

const struct api_module api_timer = {.name = "timer.after, timer.every",
                                     .help = help,
                                     .open = open_timer,
                                     .retire = stop_all};
