/* The globals about the task and the switch itself:
 *
 *   sleep(seconds)     yield the running task for that long
 *   reload()           load the policies again; true, summary or nil, error
 *   stats()            heap, Lua memory, tasks, registrations, store size,
 *                      the counters rates are made of (top() in repl.c), and
 *                      `sip`: transactions and answer records held, by kind;
 *                      `overload`: whether new calls are shed, and why
 */
#include "cdr.h"
#include "module.h"
#include "overload.h"
#include "runtime.h"
#include "sip/agent.h"
#include "sip/call.h"
#include "sip/outreg.h"
#include "sip/registrar.h"
#include "store.h"
#include "task.h"

#include <malloc.h>
#include <time.h>

#include <sofia-sip/nta_tag.h>

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

static void set_number(lua_State *L, const char *field, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, field);
}

/* The counters of stats() that only grow, and the clock to divide them by:
 * what top() turns into rates. Each is left out while its module is not
 * up. */
static void push_counters(lua_State *L, const struct luahost *host)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    set_number(L, "monotonic", (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
    if (host->calls) {
        set_number(L, "calls", (double)calls_count(host->calls));
        set_number(L, "calls_started", (double)calls_started(host->calls));
    }
    if (host->store)
        set_number(L, "cdrs", (double)cdr_last_seq(host->store));
    if (host->registrar) {
        set_number(L, "bindings", (double)registrar_binding_count(host->registrar));
        set_number(L, "registers_accepted",
                   (double)registrar_registers_accepted(host->registrar));
    }
    if (host->agent) {
        usize_t in = 0, out = 0;
        nta_agent_get_stats(sipagent_nta(host->agent), NTATAG_S_RECV_MSG_REF(in),
                            NTATAG_S_SENT_MSG_REF(out), TAG_END());
        set_number(L, "sip_received", (double)in);
        set_number(L, "sip_sent", (double)out);
    }
}

/* stats().overload: the detector's state (overload.h). */
static void push_overload(lua_State *L, const struct overload *ov)
{
    struct overload_stats st;
    overload_stats(ov, &st);
    lua_createtable(L, 0, 7);
    lua_pushboolean(L, st.active);
    lua_setfield(L, -2, "active");
    set_number(L, "shed", (double)st.shed);
    set_number(L, "episodes", (double)st.episodes);
    set_number(L, "queue_fill", st.fill);
    set_number(L, "queue_fill_max", st.fill_max);
    set_number(L, "queue_drops", (double)st.dropped);
    set_number(L, "lag_max", st.lag_max);
    lua_setfield(L, -2, "overload");
}

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
    lua_createtable(L, 0, 16);
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
    if (host->overload)
        push_overload(L, host->overload);
    if (host->store) {
        lua_pushnumber(L, (double)store_used_bytes(host->store));
        lua_setfield(L, -2, "store_bytes");
        uint64_t commits, commit_us;
        store_commit_stats(host->store, &commits, &commit_us);
        lua_pushnumber(L, (double)commits);
        lua_setfield(L, -2, "store_commits");
        lua_pushnumber(L, (double)commit_us / 1e6);
        lua_setfield(L, -2, "store_commit_seconds");
    }
    push_counters(L, host);
    return 1;
}

static void open_globals(lua_State *L, struct luart *rt)
{
    api_register(L, rt, "sleep", l_sleep);
    api_register(L, rt, "reload", l_reload);
    api_register(L, rt, "stats", l_stats);
}

static const struct api_help help[] = {
    {"sleep", "sleep(seconds): this task waits; SIP and other tasks go on", NULL, NULL},
    {"reload", "reload(): load the policies again; true, summary or nil, error",
     "  reload()                     true, \"1 added, 0 changed, ...\", or\n"
     "                               nil, \"file:line: ...\" (the policy stays)\n",
     NULL},
    {"stats", "stats(): memory, tasks, and the counters top() makes rates of",
     "  stats().heap_in_use          malloc's bytes in use (heap_mapped: mapped)\n"
     "  stats().lua_bytes            this policy state's Lua memory\n"
     "  stats().tasks                tasks alive in this policy state\n"
     "  stats().registrations        outbound registrations\n"
     "  stats().store_bytes          LMDB pages in use, in bytes\n"
     "  stats().store_commits        batches committed (store_commit_seconds: time)\n"
     "  stats().calls, .bindings     calls in progress, endpoint bindings\n"
     "  stats().calls_started, .cdrs, .registers_accepted, .sip_received, .sip_sent\n"
     "                               counts since the start (top() shows their rates)\n"
     "  stats().monotonic            a clock in seconds, to divide them by\n"
     "  stats().overload             active (new calls get 503), shed (calls refused\n"
     "                               so), episodes, queue_fill (UDP receive queue,\n"
     "                               0..1; _max: of the last 10-20 s), queue_drops\n"
     "                               (datagrams the kernel dropped), lag_max (s)\n",
     NULL},
    {NULL, NULL, NULL, NULL},
};

const struct api_module api_globals = {
    .name = "sleep, reload, stats", .help = help, .open = open_globals};
