/* What the person at the REPL reads: print, help and top.
 *
 *   print(...)        like Lua's print, into the output of the task that runs
 *                     it: a REPL chunk prints to the moonctl that sent it
 *                     (even after it waited), anything else (hooks, timers,
 *                     policy files) logs at info, module "lua"
 *   help              prints one line per global of the API (the `help`
 *                     entries of the modules in module.c)
 *   help(x)           prints what x is, with its fields and methods; x is a
 *                     global, its name, a function of one, or an object one
 *                     hands out (a registration, a call, a transaction ...)
 *   top(n, interval)  prints a line of rates every `interval` seconds
 *                     (default 1), `n` times (default 1): calls started and
 *                     ended, REGISTERs accepted, SIP messages in and out per
 *                     second, from the counters of stats()
 *
 * help costs a walk of the module table (a few dozen entries); help(x) with
 * an object also compares its metatable with each entry's. top is Lua (a
 * loop around sleep), loaded once per runtime. */
#include "module.h"
#include "task.h"

#include <stdlib.h>
#include <string.h>

/* ---- print ---------------------------------------------------------------- */

/* Lua's print, through task_print: tostring of each argument, tabs between,
 * a newline at the end. */
static int l_print(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checkstack(L, 2 * n + 2, "print: too many arguments");
    lua_getglobal(L, "tostring");
    int tostring = lua_gettop(L);
    int pieces = 0;
    for (int i = 1; i <= n; i++) {
        if (i > 1) {
            lua_pushliteral(L, "\t");
            pieces++;
        }
        lua_pushvalue(L, tostring);
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        if (!lua_isstring(L, -1))
            return luaL_error(L, "'tostring' must return a string to 'print'");
        pieces++;
    }
    lua_pushliteral(L, "\n");
    lua_concat(L, pieces + 1);
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    task_print(text, len);
    return 0;
}

/* ---- help ----------------------------------------------------------------- */

#define NAME_WIDTH 14

static int by_global(const void *a, const void *b)
{
    const struct api_help *x = *(const struct api_help *const *)a;
    const struct api_help *y = *(const struct api_help *const *)b;
    return strcmp(x->global, y->global);
}

/* Push the listing: every entry of every module, by name. */
static void push_listing(lua_State *L)
{
    size_t nmod, n = 0;
    const struct api_module *const *mods = api_modules(&nmod);
    for (size_t m = 0; m < nmod; m++)
        for (const struct api_help *h = mods[m]->help; h && h->global; h++)
            n++;
    const struct api_help **all = lua_newuserdata(L, (n ? n : 1) * sizeof *all);
    n = 0;
    for (size_t m = 0; m < nmod; m++)
        for (const struct api_help *h = mods[m]->help; h && h->global; h++)
            all[n++] = h;
    qsort(all, n, sizeof *all, by_global);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "Live objects and functions (help(x) tells more of x):\n");
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(all[i]->global);
        luaL_addstring(&b, "  ");
        luaL_addstring(&b, all[i]->global);
        for (size_t k = len; k < NAME_WIDTH; k++)
            luaL_addchar(&b, ' ');
        luaL_addchar(&b, ' ');
        luaL_addstring(&b, all[i]->line);
        luaL_addchar(&b, '\n');
    }
    luaL_addstring(&b, "Policy hooks a policy may define: route(call), on_register(reg), "
                       "on_request(req).");
    luaL_pushresult(&b);
    lua_remove(L, -2); /* the array */
}

/* Does the value at idx belong to entry h: h's global itself, a function
 * field of it, or an object with one of h's metatables? */
static int belongs(lua_State *L, int idx, const struct api_help *h)
{
    int found = 0;
    lua_getglobal(L, h->global);
    if (lua_rawequal(L, -1, idx)) {
        found = 1;
    } else if (lua_istable(L, -1) && lua_isfunction(L, idx)) {
        lua_pushnil(L);
        while (!found && lua_next(L, -2)) {
            found = lua_rawequal(L, -1, idx);
            lua_pop(L, 1);
        }
        if (found)
            lua_pop(L, 1); /* the key lua_next left */
    }
    lua_pop(L, 1);
    if (found || !h->mts || !lua_getmetatable(L, idx))
        return found;
    for (const char *const *mt = h->mts; *mt && !found; mt++) {
        luaL_getmetatable(L, *mt);
        found = lua_rawequal(L, -1, -2);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return found;
}

static const struct api_help *find_help(lua_State *L, int idx)
{
    size_t nmod;
    const struct api_module *const *mods = api_modules(&nmod);
    const char *name = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
    for (size_t m = 0; m < nmod; m++)
        for (const struct api_help *h = mods[m]->help; h && h->global; h++)
            if (name ? strcmp(name, h->global) == 0 : belongs(L, idx, h))
                return h;
    return NULL;
}

/* Push what help(x) prints. */
static void push_detail(lua_State *L, int idx)
{
    const struct api_help *h = find_help(L, idx);
    if (!h) {
        if (lua_type(L, idx) == LUA_TSTRING)
            lua_pushfstring(L, "no help for \"%s\"; help lists what there is",
                            lua_tostring(L, idx));
        else
            lua_pushfstring(L, "no help for this %s; help lists what there is",
                            luaL_typename(L, idx));
        return;
    }
    lua_pushfstring(L, "%s: %s\n%s", h->global, h->line, h->detail ? h->detail : "");
}

static void print_top(lua_State *L)
{
    size_t len;
    const char *text = lua_tolstring(L, -1, &len);
    task_print(text, len);
    if (len == 0 || text[len - 1] != '\n')
        task_print("\n", 1);
    lua_pop(L, 1);
}

/* help(x): prints; returns nothing, so that the REPL shows the text once. */
static int l_help_call(lua_State *L)
{
    if (lua_isnoneornil(L, 2))
        push_listing(L);
    else
        push_detail(L, 2);
    print_top(L);
    return 0;
}

/* `help` as a value prints the listing. */
static int l_help_tostring(lua_State *L)
{
    push_listing(L);
    return 1;
}

/* ---- top ------------------------------------------------------------------ */

/* Run once per runtime; returns top. Reads stats, sleep and print when the
 * runtime opens, so a policy that assigns those names does not change it. */
static const char top_source[] =
    "local stats, sleep, print, fmt, date = stats, sleep, print, string.format, os.date\n"
    "local header = fmt('%-8s %6s %8s %8s %7s %8s %9s %9s %5s %8s', 'time', 'calls',\n"
    "  'new/s', 'ended/s', 'reg/s', 'bindings', 'sip in/s', 'sip out/s', 'tasks',\n"
    "  'heap MiB')\n"
    "return function(n, interval)\n"
    "  n = n == nil and 1 or n\n"
    "  interval = interval == nil and 1 or interval\n"
    "  if type(n) ~= 'number' or n < 1 or n % 1 ~= 0 then\n"
    "    error('top: n must be a whole number of samples, 1 or more', 2)\n"
    "  end\n"
    "  if type(interval) ~= 'number' or interval < 0.1 or interval > 3600 then\n"
    "    error('top: interval must be 0.1 to 3600 seconds', 2)\n"
    "  end\n"
    "  print(header)\n"
    "  local a = stats()\n"
    "  for _ = 1, n do\n"
    "    sleep(interval)\n"
    "    local b = stats()\n"
    "    local dt = b.monotonic - a.monotonic\n"
    "    local function rate(k) return ((b[k] or 0) - (a[k] or 0)) / dt end\n"
    "    print(fmt('%-8s %6d %8.1f %8.1f %7.1f %8d %9.1f %9.1f %5d %8.1f',\n"
    "      date('%H:%M:%S'), b.calls or 0, rate('calls_started'), rate('cdrs'),\n"
    "      rate('registers_accepted'), b.bindings or 0, rate('sip_received'),\n"
    "      rate('sip_sent'), b.tasks, b.heap_in_use / 1048576))\n"
    "    a = b\n"
    "  end\n"
    "end\n";

static void open_top(lua_State *L)
{
    if (luaL_loadbuffer(L, top_source, sizeof top_source - 1, "=top") != 0)
        lua_error(L); /* a bug in top_source: loading the runtime fails */
    lua_call(L, 0, 1);
    lua_setglobal(L, "top");
}

/* ---- Opening -------------------------------------------------------------- */

static void open_repl(lua_State *L, struct luart *rt)
{
    api_register(L, rt, "print", l_print);
    api_open_proxy(L, rt, "help", NULL, l_help_tostring, l_help_call, NULL);
    open_top(L);
}

static const struct api_help help[] = {
    {"print", "print(...): to the REPL that ran the chunk, else to the log",
     "  print(a, b, ...)             tostring of each, tab-separated, one line\n"
     "                               a REPL chunk's print reaches its moonctl, before\n"
     "                               its values, even after sleep(); hooks, timer\n"
     "                               callbacks and policy files log it (info, \"lua\")\n",
     NULL},
    {"help", "help: this list; help(x): what x is, its fields and methods",
     "  help                         one line per live object and function\n"
     "  help(x)                      x: a global (help(calls)), its name\n"
     "                               (help\"calls\"), one of its functions, or an\n"
     "                               object it hands out (help(calls.list()[1]))\n",
     NULL},
    {"top", "top(n, interval): calls, REGISTERs, SIP messages per second",
     "  top(n, interval)             print a header, then every `interval` seconds\n"
     "                               (default 1, 0.1 to 3600) one line, n times\n"
     "                               (default 1); the chunk waits meanwhile\n"
     "  columns: time; calls in progress; calls started (new/s) and ended (ended/s)\n"
     "           per second; REGISTERs accepted per second (reg/s); endpoint\n"
     "           bindings; SIP messages received and sent per second (sip in/s,\n"
     "           sip out/s, retransmissions included); tasks; heap in use, MiB\n",
     NULL},
    {NULL, NULL, NULL, NULL},
};

const struct api_module api_repl = {
    .name = "print, help, top", .help = help, .open = open_repl};
