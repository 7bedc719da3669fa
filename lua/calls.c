/* Calls and CDRs for policies and the REPL:
 *
 *   calls                  prints the calls in progress: id, caller, callee,
 *                          mapping and routing gateway, state, age
 *   calls.count()          calls in progress
 *   calls.list()           an array of call handles, oldest first
 *   calls[id]              one call's handle, or nil
 *   call.id, .state, .direction, .caller, .callee, .routed_callee,
 *   .mapping_gateway, .routing_gateway, .call_id, .start, .answer
 *                          (read on each access; calls_handle_fields)
 *   call:hangup()          end it from the switch (BYE, or 503 + CANCEL)
 *   cdrs.last(n)           the newest n records (default 10), newest first
 *   cdrs.csv(n)            the same as CSV text, oldest first, with a header
 *   cdrs.count()           records stored
 *
 * The policy's call hooks (route, on_failure, on_call_end, number
 * functions, callee_rewrite) are call_policy.c.
 *
 * A call handle names its call by id and looks it up on each access, so a
 * handle kept after the call ended reads state "ended" and nil fields
 * instead of freed memory. O(calls) per lookup: the REPL's pace, not the
 * call path's. */
#include "calls.h"
#include "cdr.h"
#include "log.h"
#include "module.h"
#include "runtime.h"
#include "sip/call.h"
#include "store.h"
#include "task.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CALL_MT "moon.call"
#define CDRS_MAX 100000
#define VIEW_MAX 200 /* rows the `calls` table shows */

struct call_handle {
    struct luart *rt;
    uint64_t id;
};

static struct calls *calls_of(struct luart *rt)
{
    return luart_host(rt)->calls;
}

static void push_call(lua_State *L, struct luart *rt, uint64_t id)
{
    struct call_handle *h = lua_newuserdata(L, sizeof *h);
    h->rt = rt;
    h->id = id;
    luaL_getmetatable(L, CALL_MT);
    lua_setmetatable(L, -2);
}

static int l_count(lua_State *L)
{
    struct calls *cs = calls_of(RT_UPVALUE(L));
    lua_pushinteger(L, cs ? (lua_Integer)calls_count(cs) : 0);
    return 1;
}

struct list_ctx {
    lua_State *L;
    struct luart *rt;
    int n;
};

static int list_one(const struct call_info *info, void *arg)
{
    struct list_ctx *x = arg;
    push_call(x->L, x->rt, info->id);
    lua_rawseti(x->L, -2, ++x->n);
    return 0;
}

static int l_list(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    struct calls *cs = calls_of(rt);
    lua_newtable(L);
    if (cs) {
        struct list_ctx x = {L, rt, 0};
        calls_visit(cs, list_one, &x);
    }
    return 1;
}

/* The table printed for `calls`: the oldest VIEW_MAX calls in progress,
 * one line each. Costs a visit of every call (to count them). */
struct view_ctx {
    luaL_Buffer *b;
    long long now;
    size_t n;
};

static const char *or_dash(const char *s)
{
    return s && *s ? s : "-";
}

static int view_one(const struct call_info *i, void *arg)
{
    struct view_ctx *x = arg;
    if (x->n++ >= VIEW_MAX)
        return 0;
    char line[512];
    long long age = x->now - i->start;
    snprintf(line, sizeof line, "%-6" PRIu64 " %-16s %-16s %-16s %-16s %-10s %6llds\n",
             i->id, or_dash(i->caller), or_dash(i->callee), or_dash(i->mapping_gateway),
             or_dash(i->routing_gateway), i->state, age > 0 ? age : 0);
    luaL_addstring(x->b, line);
    return 0;
}

static int l_calls_tostring(lua_State *L)
{
    struct calls *cs = calls_of(RT_UPVALUE(L));
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char line[256];
    snprintf(line, sizeof line, "%-6s %-16s %-16s %-16s %-16s %-10s %7s\n", "id",
             "caller", "callee", "mapping gateway", "routing gateway", "state", "age");
    luaL_addstring(&b, line);
    struct view_ctx x = {.b = &b, .now = (long long)time(NULL)};
    if (cs)
        calls_visit(cs, view_one, &x);
    if (x.n > VIEW_MAX)
        snprintf(line, sizeof line,
                 "(%zu calls, the oldest %d shown; calls.list() has all)", x.n, VIEW_MAX);
    else
        snprintf(line, sizeof line, "(%zu call%s)", x.n, x.n == 1 ? "" : "s");
    luaL_addstring(&b, line);
    luaL_pushresult(&b);
    return 1;
}

/* calls[id] */
static int l_calls_index(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    struct calls *cs = calls_of(rt);
    struct call_info info;
    if (lua_type(L, 2) != LUA_TNUMBER || !cs ||
        calls_info(cs, (uint64_t)lua_tonumber(L, 2), &info) < 0) {
        lua_pushnil(L);
        return 1;
    }
    push_call(L, rt, info.id);
    return 1;
}

static int l_hangup(lua_State *L)
{
    struct call_handle *h = luaL_checkudata(L, 1, CALL_MT);
    struct calls *cs = calls_of(h->rt);
    if (!cs || calls_hangup(cs, h->id) < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "the call has ended");
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static void push_str(lua_State *L, const char *s)
{
    if (s && *s)
        lua_pushstring(L, s);
    else
        lua_pushnil(L);
}

const char *const calls_handle_fields[] = {
    "id",      "state",         "direction",       "caller",
    "callee",  "routed_callee", "mapping_gateway", "routing_gateway",
    "call_id", "start",         "answer",          "hangup",
    NULL};

enum {
    F_ID,
    F_STATE,
    F_DIRECTION,
    F_CALLER,
    F_CALLEE,
    F_ROUTED,
    F_MAPPING,
    F_ROUTING,
    F_CALL_ID,
    F_START,
    F_ANSWER,
    F_HANGUP
};

/* Index of `k` in a NULL-terminated list of names, or -1. */
int api_field_index(const char *const *fields, const char *k)
{
    for (int i = 0; fields[i]; i++)
        if (strcmp(fields[i], k) == 0)
            return i;
    return -1;
}

static int call_index(lua_State *L)
{
    struct call_handle *h = luaL_checkudata(L, 1, CALL_MT);
    int f = api_field_index(calls_handle_fields, luaL_checkstring(L, 2));
    if (f == F_HANGUP) {
        lua_pushcfunction(L, l_hangup);
        return 1;
    }
    if (f == F_ID) {
        lua_pushnumber(L, (double)h->id);
        return 1;
    }
    struct calls *cs = calls_of(h->rt);
    struct call_info i;
    if (!cs || calls_info(cs, h->id, &i) < 0) {
        if (f == F_STATE)
            lua_pushliteral(L, "ended");
        else
            lua_pushnil(L);
        return 1;
    }
    switch (f) {
    case F_STATE:
        lua_pushstring(L, i.state);
        break;
    case F_DIRECTION:
        lua_pushstring(L, i.direction);
        break;
    case F_CALLER:
        push_str(L, i.caller);
        break;
    case F_CALLEE:
        push_str(L, i.callee);
        break;
    case F_ROUTED:
        push_str(L, i.routed_callee);
        break;
    case F_MAPPING:
        push_str(L, i.mapping_gateway);
        break;
    case F_ROUTING:
        push_str(L, i.routing_gateway);
        break;
    case F_CALL_ID:
        push_str(L, i.call_id);
        break;
    case F_START:
        lua_pushnumber(L, (double)i.start);
        break;
    case F_ANSWER:
        i.answer ? lua_pushnumber(L, (double)i.answer) : lua_pushnil(L);
        break;
    default:
        lua_pushnil(L);
        break;
    }
    return 1;
}

static int call_tostring(lua_State *L)
{
    struct call_handle *h = luaL_checkudata(L, 1, CALL_MT);
    struct calls *cs = calls_of(h->rt);
    struct call_info i;
    if (!cs || calls_info(cs, h->id, &i) < 0)
        lua_pushfstring(L, "call %d (ended)", (int)h->id);
    else
        lua_pushfstring(L, "call %d: %s -> %s via %s, %s", (int)h->id, i.caller,
                        *i.routed_callee ? i.routed_callee : i.callee,
                        *i.routing_gateway ? i.routing_gateway : "-", i.state);
    return 1;
}

/* ---- CDRs ------------------------------------------------------------------ */

void api_push_cdr(lua_State *L, const struct cdr *r)
{
    lua_createtable(L, 0, 17);
    lua_pushnumber(L, (double)r->seq);
    lua_setfield(L, -2, "seq");
#define S(f)                                                                                   \
    lua_pushstring(L, r->f);                                                                   \
    lua_setfield(L, -2, #f)
    S(call_id);
    S(caller);
    S(callee);
    S(original_callee);
    S(routed_callee);
    S(mapping_gateway);
    S(routing_gateway);
    S(reason);
    S(hangup);
    S(direction);
#undef S
    lua_pushnumber(L, (double)r->start);
    lua_setfield(L, -2, "start");
    if (r->answer) {
        lua_pushnumber(L, (double)r->answer);
        lua_setfield(L, -2, "answer");
    }
    lua_pushnumber(L, (double)r->stop);
    lua_setfield(L, -2, "stop");
    lua_pushnumber(L, (double)r->duration);
    lua_setfield(L, -2, "duration");
    lua_pushinteger(L, r->status);
    lua_setfield(L, -2, "status");
}

static int count_arg(lua_State *L)
{
    lua_Integer n = luaL_optinteger(L, 1, 10);
    if (n < 0 || n > CDRS_MAX)
        luaL_argerror(L, 1, "expected 0 to 100000");
    return (int)n;
}

static int l_cdrs_last(lua_State *L)
{
    struct store *st = luart_host(RT_UPVALUE(L))->store;
    int n = count_arg(L);
    lua_createtable(L, n, 0);
    uint64_t seq = cdr_last_seq(st);
    struct cdr r;
    for (int i = 1; i <= n && seq > 0; seq--) {
        if (cdr_read(st, seq, &r) < 0)
            continue;
        api_push_cdr(L, &r);
        lua_rawseti(L, -2, i++);
    }
    return 1;
}

static void csv_field(luaL_Buffer *b, const char *s)
{
    if (strpbrk(s, ",\"\r\n")) {
        luaL_addchar(b, '"');
        for (; *s; s++) {
            if (*s == '"')
                luaL_addchar(b, '"');
            luaL_addchar(b, *s);
        }
        luaL_addchar(b, '"');
    } else {
        luaL_addstring(b, s);
    }
}

static int l_cdrs_csv(lua_State *L)
{
    struct store *st = luart_host(RT_UPVALUE(L))->store;
    int n = count_arg(L);
    uint64_t last = cdr_last_seq(st);
    uint64_t first = last > (uint64_t)n ? last - (uint64_t)n + 1 : 1;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b,
                   "seq,call_id,caller,callee,original_callee,routed_callee,"
                   "mapping_gateway,routing_gateway,start,answer,stop,duration,status,"
                   "reason,hangup,direction\n");
    struct cdr r;
    for (uint64_t seq = first; last && seq <= last; seq++) {
        if (cdr_read(st, seq, &r) < 0)
            continue;
        char num[32];
        snprintf(num, sizeof num, "%llu,", (unsigned long long)r.seq);
        luaL_addstring(&b, num);
        const char *text[] = {r.call_id,         r.caller,         r.callee,
                              r.original_callee, r.routed_callee,  r.mapping_gateway,
                              r.routing_gateway};
        for (size_t i = 0; i < sizeof text / sizeof text[0]; i++) {
            csv_field(&b, text[i]);
            luaL_addchar(&b, ',');
        }
        char answer[24] = "";
        if (r.answer)
            snprintf(answer, sizeof answer, "%lld", r.answer);
        char nums[128];
        snprintf(nums, sizeof nums, "%lld,%s,%lld,%lld,%d,", r.start, answer, r.stop,
                 r.duration, r.status);
        luaL_addstring(&b, nums);
        csv_field(&b, r.reason);
        luaL_addchar(&b, ',');
        csv_field(&b, r.hangup);
        luaL_addchar(&b, ',');
        csv_field(&b, r.direction);
        luaL_addchar(&b, '\n');
    }
    luaL_pushresult(&b);
    return 1;
}

static int l_cdrs_count(lua_State *L)
{
    struct store *st = luart_host(RT_UPVALUE(L))->store;
    size_t n = st ? store_count(st, STORE_CDRS) : 0;
    lua_pushinteger(L, n ? (lua_Integer)n - 1 : 0); /* key 0 is the sequence */
    return 1;
}

/* ---- Opening ------------------------------------------------------------------ */

static void open_calls(lua_State *L, struct luart *rt)
{
    luaL_newmetatable(L, CALL_MT);
    lua_pushcfunction(L, call_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, call_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    lua_newtable(L); /* calls */
    api_setfield(L, rt, "count", l_count);
    api_setfield(L, rt, "list", l_list);
    lua_newtable(L); /* calls mt */
    api_setfield(L, rt, "__index", l_calls_index);
    api_setfield(L, rt, "__tostring", l_calls_tostring);
    lua_setmetatable(L, -2);
    lua_setglobal(L, "calls");

    lua_newtable(L); /* cdrs */
    api_setfield(L, rt, "last", l_cdrs_last);
    api_setfield(L, rt, "csv", l_cdrs_csv);
    api_setfield(L, rt, "count", l_cdrs_count);
    lua_setglobal(L, "cdrs");
}

static const struct api_help help[] = {
    {"calls", "calls in progress; prints caller, callee, gateways, state, age",
     "  calls                        the table: id, caller, callee, mapping gateway,\n"
     "                               routing gateway, state, age (oldest 200)\n"
     "  calls.count()                calls in progress\n"
     "  calls.list()                 an array of call handles, oldest first\n"
     "  calls[id]                    one call's handle, or nil:\n"
     "    .id .state .caller .callee .routed_callee .mapping_gateway\n"
     "    .routing_gateway .call_id .start .answer\n"
     "    :hangup()                  end it from the switch (BYE, or 503 + CANCEL)\n"
     "  state: routing, calling, proceeding, answered, ending (\"ended\" once gone)\n",
     (const char *const[]){CALL_MT, NULL}},
    {"cdrs", "call detail records: cdrs.last(n), cdrs.csv(n), cdrs.count()",
     "  cdrs.last(n)                 the newest n records (default 10), newest first:\n"
     "    .caller .callee .original_callee .routed_callee .mapping_gateway\n"
     "    .routing_gateway .start .answer .stop .duration .status .reason .hangup\n"
     "  cdrs.csv(n)                  the same as CSV, oldest first, with a header\n"
     "  cdrs.count()                 records stored\n",
     NULL},
    {NULL, NULL, NULL, NULL},
};

const struct api_module api_calls = {
    .name = "calls, cdrs", .help = help, .open = open_calls};
