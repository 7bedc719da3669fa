/* The globals about the task and the switch itself:
 *
 *   sleep(seconds)     yield the running task for that long
 *   reload()           load the policies again; true, summary or nil, error
 *   stats()            heap, Lua memory, tasks, registrations, store size, and
 *                      `sip`: transactions and answer records held, by kind
 */
#include "module.h"
#include "runtime.h"
#include "sip/agent.h"
#include "sip/outreg.h"
#include "store.h"
#include "task.h"

#include <malloc.h>

/* ---- sleep ---------------------------------------------------------------- */

static int l_sleep(lua_State *L)
{
    double s = luaL_checknumber(L, 1);
    if (s < 0 || s != s)
        return luaL_argerror(L, 1, "seconds must be >= 0");
    struct task *t = task_check_yieldable(L, "sleep");
    if (task_sleep(t, s) < 0)
        return luaL_error(L, "sleep: cannot arm a timer");
    return lua_yield(L, 0);
}

/* ---- reload ------------------------------------------------------------------ */

static int l_reload(lua_State *L)
{
    const struct luahost *host = luart_host(RT_UPVALUE(L));
    char msg[1024];
    if (!host->reload) {
        lua_pushnil(L);
        lua_pushliteral(L, "reload is not available here");
        return 2;
    }
    if (host->reload(host->reload_arg, msg, sizeof msg) < 0) {
        lua_pushnil(L);
        lua_pushstring(L, msg);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_pushstring(L, msg);
    return 2;
}

/* ---- stats ------------------------------------------------------------------ */

/* stats(): what the switch holds now. heap_in_use is malloc's count of
 * live bytes (what benchmarks divide by entries); heap_mapped includes
 * freed memory glibc has not returned yet. stats().sip: nta's server and
 * client transactions (answered ones kept for retransmissions included)
 * and their estimated bytes, dialogs, INVITEs in flight (and of them those
 * nta no longer holds), the answer cache's records and their bytes. */
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
    lua_pushnumber(L,
                   (double)lua_gc(L, LUA_GCCOUNT, 0) * 1024 + lua_gc(L, LUA_GCCOUNTB, 0));
    lua_setfield(L, -2, "lua_bytes");
    lua_pushinteger(L, luart_tasks(rt));
    lua_setfield(L, -2, "tasks");
    lua_pushinteger(L, host->outregs ? (lua_Integer)outreg_set_count(host->outregs) : 0);
    lua_setfield(L, -2, "registrations");
    if (host->agent) {
        /* What the SIP side holds for transactions, by kind (see
         * sipagent_stats() in core/sip/agent.h). */
        struct sipagent_stats st;
        sipagent_stats(host->agent, &st);
        lua_createtable(L, 0, 8);
        const struct {
            const char *name;
            size_t v;
        } f[] = {{"server_transactions", st.server_tr},
                 {"client_transactions", st.client_tr},
                 {"transaction_bytes", st.tr_bytes},
                 {"dialogs", st.dialogs},
                 {"invites", st.invites},
                 {"invites_light", st.invites_light},
                 {"answers", st.answers},
                 {"answer_bytes", st.answer_bytes}};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
            lua_pushnumber(L, (double)f[i].v);
            lua_setfield(L, -2, f[i].name);
        }
        lua_setfield(L, -2, "sip");
    }
    if (host->store) {
        lua_pushnumber(L, (double)store_used_bytes(host->store));
        lua_setfield(L, -2, "store_bytes");
    }
    return 1;
}

static void open_globals(lua_State *L, struct luart *rt)
{
    api_register(L, rt, "sleep", l_sleep);
    api_register(L, rt, "reload", l_reload);
    api_register(L, rt, "stats", l_stats);
}

const struct api_module api_globals = {.name = "sleep, reload, stats",
                                       .open = open_globals};
