/* module: how a piece of the Lua API puts its globals into a policy runtime.
 *
 * Each file giving policies part of the API (kv.c, timer.c, sip.c, ...)
 * exports one `const struct api_module`, and module.c lists them all in one
 * table. A fresh runtime opens each of them in its new Lua state
 * (api_open_all), and tells each when it is retired (api_retire_all) so that
 * nothing armed there runs Lua in a policy that was replaced. A module
 * reaches the switch through runtime.h (luart_host) and waits through
 * task.h; it needs nothing else of the runtime.
 *
 * Each module also says what it opens, for help() (repl.c): one entry per
 * global, with the line `help` shows and what `help(x)` adds. The unit
 * tests check that every global a module opens has its entry, so a new
 * module or global cannot go without one.
 *
 * Opening costs a table or a closure per global, once per runtime (at start
 * and at each reload); all of it lives in the Lua state and goes with it.
 * The helpers below make C closures that carry the runtime as upvalue 1. */
#ifndef MOON_LUA_MODULE_H
#define MOON_LUA_MODULE_H

#include <lauxlib.h>
#include <lua.h>

struct luart;

/* Help for one global. Static text. */
struct api_help {
    const char *global; /* its name; NULL ends a module's list */
    const char *line;   /* what it is, one line without a newline */
    /* NULL, or what help(x) adds: its fields, methods and calls, one per
     * line, each line ending with a newline */
    const char *detail;
    /* NULL, or the metatables (luaL_newmetatable names, NULL-terminated)
     * of the objects it hands out, so that help(obj) finds this entry */
    const char *const *mts;
};

struct api_module {
    const char *name; /* what it provides, for people reading the table */
    const struct api_help *help; /* every global it opens; never NULL */
    /* Create its globals and metatables in a fresh state. Raises only when
     * out of memory (loading the runtime then fails). */
    void (*open)(lua_State *L, struct luart *rt);
    /* NULL, or stop what the module armed (timers): the runtime is retired
     * or closing. Called once or twice, before lua_close(). */
    void (*retire)(lua_State *L);
};

/* Open every module of the table, in its order. */
void api_open_all(lua_State *L, struct luart *rt);
/* Call every module's retire. */
void api_retire_all(lua_State *L);

/* The table, in the order modules are opened; *n gets its length. */
const struct api_module *const *api_modules(size_t *n);

/* The runtime whose C closures carry it as upvalue 1. */
#define RT_UPVALUE(L) ((struct luart *)lua_touserdata((L), lua_upvalueindex(1)))

/* Register `fn` as global `name` with the runtime as its upvalue. */
void api_register(lua_State *L, struct luart *rt, const char *name, lua_CFunction fn);
/* Same, as field `name` of the table at the top of the stack. */
void api_setfield(lua_State *L, struct luart *rt, const char *name, lua_CFunction fn);

/* A read-only global proxy table: indexed, printed and called through the
 * given functions (any may be NULL), with plain `fields` (functions, may be
 * NULL). Its metatable is hidden. */
void api_open_proxy(lua_State *L, struct luart *rt, const char *global,
                    lua_CFunction index, lua_CFunction tostring, lua_CFunction call,
                    const luaL_Reg *fields);

/* Push `s`, or nil when it is NULL or empty. */
void api_push_string(lua_State *L, const char *s);

#endif
