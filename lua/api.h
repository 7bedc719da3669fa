/* The pieces of the Lua API, each injected into a fresh runtime's state by
 * its own file (dsl.c, timer.c, kv.c, ...). Internal to lua/. */
#ifndef MOON_LUA_API_H
#define MOON_LUA_API_H

#include <stdbool.h>

#include <lauxlib.h>
#include <lua.h>

#include "runtime.h"

struct config;

const struct luahost *luart_host(const struct luart *rt);

/* The runtime whose C closures carry it as upvalue 1. */
#define RT_UPVALUE(L) ((struct luart *)lua_touserdata((L), lua_upvalueindex(1)))

/* Register `fn` as global `name` with the runtime as its upvalue. */
void api_register(lua_State *L, struct luart *rt, const char *name, lua_CFunction fn);
/* Same, as field `name` of the table at the top of the stack. */
void api_setfield(lua_State *L, struct luart *rt, const char *name, lua_CFunction fn);

/* The task running in coroutine L, or NULL when L is not a task's own
 * coroutine (the main state, or a plain Lua coroutine inside a task). */
struct task *task_current(lua_State *L);

/* Resume `t` later, from the loop, with the `nvals` values on top of `from`'s
 * stack (moved into the task). Used by awaitables' event callbacks. */
void task_wake(struct task *t, lua_State *from, int nvals);

/* Raise "NAME: cannot wait here" unless L is a task that may yield. */
struct task *task_check_yieldable(lua_State *L, const char *what);

/* lua_pcall under the time budget (that of the last slice) for Lua code run
 * outside a task's slice, such as __tostring metamethods while a REPL answer
 * is formatted: one that loops is stopped with an error instead of freezing
 * the switch. Calls sharing `deadline` (0 at first: set by the first call)
 * share one budget; once it is spent they fail without running. Inside a
 * slice, a plain lua_pcall. */
int api_pcall_budget(lua_State *L, int nargs, int nres, double *deadline);

/* A libevent timer that wakes task `t` with no values after `seconds`. */
int task_sleep(struct task *t, double seconds);

void api_open_dsl(lua_State *L, struct luart *rt, struct config *cfg);
void api_open_timer(lua_State *L, struct luart *rt);
void api_open_kv(lua_State *L, struct luart *rt);
void api_open_live(lua_State *L, struct luart *rt);
void api_open_sip(lua_State *L, struct luart *rt);       /* sip.c: sip.request, requests */

/* Give an out-of-dialog request to the policy's on_request(req) in a new
 * task. Returns 0 when the hook took it (it answers, or the task's end
 * answers 500), -1 when the policy has no hook. */
typedef struct nta_incoming_s nta_incoming_t;
struct sip_s;
int sip_dispatch_request(struct luart *rt, nta_incoming_t *irq, const struct sip_s *sip);
void api_open_endpoints(lua_State *L, struct luart *rt); /* endpoints.c: the registrar */
void api_open_calls(lua_State *L, struct luart *rt);     /* calls.c: calls, cdrs (issue 5) */
/* Install the on_register hook on the registrar; it runs in *current, the
 * engine's running policy (endpoints.c). */
struct registrar;
void endpoints_attach(struct registrar *r, struct luart *const *current);

/* A read-only global proxy table (live.c): indexed, printed and called
 * through the given functions (any may be NULL), with plain `fields`. */
void api_open_proxy(lua_State *L, struct luart *rt, const char *global, lua_CFunction index,
                    lua_CFunction tostring, lua_CFunction call, const luaL_Reg *fields);

/* Push the live handle of registration `name` (reads state on each access). */
void api_push_registration(lua_State *L, struct luart *rt, const char *name);

/* Stop every timer of the runtime (at retire). */
void timer_stop_all(lua_State *L);

/* Set the file being loaded, for definitions' file:line. */
void dsl_set_file(lua_State *L, const char *file);
/* After loading: definitions are refused from now on (a REPL chunk cannot
 * add to a live policy set; reload() is the way). */
void dsl_seal(lua_State *L);

/* A growable byte buffer for formatted output. */
struct strbuf {
    char *data;
    size_t len, cap;
};
void strbuf_add(struct strbuf *b, const char *s, size_t n);
void strbuf_addf(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_free(struct strbuf *b);

/* Render a Lua value the way moonctl prints it: strings raw, numbers %.14g,
 * booleans, nil, tables as Lua literals (multi-line when long). Appends to
 * `b`. Tables with a __tostring metamethod print through it. */
void api_format_value(lua_State *L, int idx, struct strbuf *b);

#endif
