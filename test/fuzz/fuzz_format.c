/* libFuzzer harness for lua/format.c: how the REPL prints values.
 *
 * The input is a small program that builds Lua values on the stack of a
 * policy runtime's state (as REPL answers are), one operation per byte (arguments follow
 * it): 0 nil   1 boolean   2 number from 8 raw bytes (NaN, inf, -0 ...) 3 small integer
 * (2 bytes)   4 string (length byte, then its bytes) 5 new table   6 t[k] = v (t, k, v
 * the top three; k, v popped) 7 t[#t+1] = v   8 copy of the value n below the top (n:
 * next byte; with 6 this makes cycles)   9 a metatable with __tostring on the top table
 * or userdata, of the kind the next byte chooses (a string, an error, a non-string, not a
 * function, recursing through tostring, clearing the value being printed, a __tostring
 * that is itself a table with __call)   10 a function, userdata, thread or light userdata
 * 11 pop Every value left on the stack is then printed with format_value(), as
 * moonctl's answers are, and the text must be NUL-terminated at its length (the length
 * counts embedded NULs). No Lua source from the input is run; a __tostring that loops (a
 * tail call to tostring() of itself) is stopped by the runtime's time budget, 5 ms here.
 */
#include "format.h"
#include "runtime.h"
#include "strbuf.h"
#include "log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include <lauxlib.h>
#include <lualib.h>

#define MAX_STACK 200

/* __tostring functions, compiled once per state. */
static const char *const tostrings[] = {
    "return function(v) return 'custom' end",
    "return function(v) error('boom') end",
    "return function(v) return {} end",
    "return 'not a function'",
    "return function(v) return tostring(v) end",
    "return function(v) local t = FUZZ_ROOT if type(t) == 'table' then for k in next, t "
    "do "
    "rawset(t, k, nil) end end return 'cleared' end",
    "return setmetatable({}, {__call = function() return 'called' end})",
    "return function(v) return nil end",
};
#define NTOSTRINGS (sizeof tostrings / sizeof tostrings[0])

static int c_function(lua_State *L)
{
    (void)L;
    return 0;
}

static void set_tostring(lua_State *L, unsigned kind)
{
    int t = lua_gettop(L);
    if (!lua_istable(L, t) && !lua_isuserdata(L, t))
        return;
    lua_newtable(L);
    if (luaL_loadstring(L, tostrings[kind % NTOSTRINGS]) != 0 ||
        lua_pcall(L, 0, 1, 0) != 0) {
        lua_pop(L, 2);
        return;
    }
    lua_setfield(L, -2, "__tostring");
    lua_setmetatable(L, t);
}

static void push_other(lua_State *L, unsigned kind)
{
    switch (kind % 4) {
    case 0:
        lua_pushcfunction(L, c_function);
        break;
    case 1:
        lua_newuserdata(L, 16);
        break;
    case 2:
        lua_newthread(L);
        break;
    default:
        lua_pushlightuserdata(L, (void *)L);
        break;
    }
}

/* t[k] = v with the top three; k and v popped. Keys Lua refuses are
 * skipped (rawset would raise outside any pcall). */
static void set_field(lua_State *L)
{
    int top = lua_gettop(L);
    if (top < 3 || !lua_istable(L, top - 2)) {
        lua_pop(L, top >= 2 ? 2 : top);
        return;
    }
    if (lua_isnil(L, top - 1) || (lua_type(L, top - 1) == LUA_TNUMBER &&
                                  lua_tonumber(L, top - 1) != lua_tonumber(L, top - 1))) {
        lua_pop(L, 2);
        return;
    }
    lua_rawset(L, top - 2);
}

static void run(lua_State *L, const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned op = p[i++] % 12;
        if (lua_gettop(L) >= MAX_STACK && op != 6 && op != 7 && op != 11)
            op = 11;
        switch (op) {
        case 0:
            lua_pushnil(L);
            break;
        case 1:
            lua_pushboolean(L, i < n ? p[i++] & 1 : 0);
            break;
        case 2: {
            double d = 0;
            if (n - i >= sizeof d) {
                memcpy(&d, p + i, sizeof d);
                i += sizeof d;
            }
            lua_pushnumber(L, d);
            break;
        }
        case 3: {
            int v = 0;
            if (n - i >= 2) {
                v = (int)(p[i] | p[i + 1] << 8) - 256;
                i += 2;
            }
            lua_pushinteger(L, v);
            break;
        }
        case 4: {
            size_t len = i < n ? p[i++] : 0;
            if (len > n - i)
                len = n - i;
            lua_pushlstring(L, (const char *)p + i, len);
            i += len;
            break;
        }
        case 5:
            lua_newtable(L);
            break;
        case 6:
            set_field(L);
            break;
        case 7:
            if (lua_gettop(L) >= 2 && lua_istable(L, -2))
                lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
            else if (lua_gettop(L) >= 1)
                lua_pop(L, 1);
            break;
        case 8: {
            int k = i < n ? p[i++] : 0;
            int top = lua_gettop(L);
            if (top > 0)
                lua_pushvalue(L, top - (k % top));
            break;
        }
        case 9:
            set_tostring(L, i < n ? p[i++] : 0);
            break;
        case 10:
            push_other(L, i < n ? p[i++] : 0);
            break;
        default:
            if (lua_gettop(L) > 0)
                lua_pop(L, 1);
            break;
        }
    }
}

static struct luart *rt;
static struct luahost host;

/* At exit the runtime closes, with the events its modules made. */
static void close_runtime(void)
{
    luart_close_all();
}

/* A runtime of one empty policy file, so that its state has the time
 * budget's hook and its last slice the harness's budget. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!getenv("MOON_FUZZ_LOG"))
        log_set_level(LOG_ERROR);
    char dir[256], file[300], err[512];
    snprintf(dir, sizeof dir, "%s/fuzz-format.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(file, sizeof file, "%s/00-empty.lua", dir);
    FILE *f = fopen(file, "w");
    if (!f)
        abort();
    fputs("-- nothing\n", f);
    fclose(f);
    host.base = event_base_new();
    host.budget = 0.005;
    rt = luart_load(&host, dir, err, sizeof err);
    atexit(close_runtime);
    unlink(file);
    rmdir(dir);
    if (!rt) {
        fprintf(stderr, "fuzz_format: %s\n", err);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static unsigned runs;
    if (size > 4096)
        return 0;
    lua_State *L = luart_state(rt);
    lua_settop(L, 0);
    run(L, data, size);
    int n = lua_gettop(L);
    if (n > 0) {
        lua_pushvalue(L, 1);
        lua_setglobal(L, "FUZZ_ROOT");
    }
    for (int i = 1; i <= n; i++) {
        struct strbuf b = {0};
        format_value(L, i, &b);
        if (lua_gettop(L) != n)
            abort(); /* the stack must be as it was */
        if (b.data && b.data[b.len] != '\0')
            abort();
        strbuf_free(&b);
    }
    lua_settop(L, 0);
    lua_pushnil(L);
    lua_setglobal(L, "FUZZ_ROOT");
    if (++runs % 64 == 0)
        lua_gc(L, LUA_GCCOLLECT, 0);
    return 0;
}
