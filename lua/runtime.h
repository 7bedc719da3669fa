/* A policy runtime: one Lua state holding one loaded, validated policy set,
 * plus the coroutines (tasks) and timers running in it.
 *
 * Every reload builds a new runtime and swaps it in only when it loaded
 * cleanly. The old one is retired: its timers stop, but tasks already
 * running in it (a REPL chunk that sleeps, a call's hook) finish there, and
 * the state is closed when the last of them ends.
 *
 * Everything Lua runs goes through a task: a coroutine entered with
 * lua_resume() from a libevent callback, never from inside a C function that
 * Lua called. A task that waits (sleep, a SIP answer) yields; the event it
 * waits for resumes it. While a task runs it has a time budget; a task that
 * runs past it without yielding is stopped with an error. */
#ifndef MOON_LUA_RUNTIME_H
#define MOON_LUA_RUNTIME_H

#include <stddef.h>

#include <lua.h>

struct event_base;
struct config;
struct outreg_set;
struct registrar;
struct calls;
struct sipagent;
struct store;
struct luart;
struct task;

/* What the runtime can reach in the running switch. Owned by the caller and
 * outliving every runtime. */
struct luahost {
    struct event_base *base;
    struct store *store;
    /* reload(): implemented by the engine. Returns 0 with a summary, or -1
     * with "file:line: message". */
    int (*reload)(void *arg, char *msg, size_t msglen);
    void *reload_arg;
    double budget; /* seconds a task may run without yielding */
    struct outreg_set *outregs; /* NULL until the SIP side is up */
    void *sip_root; /* su_root_t, re-armed after each slice (Lua may touch nta) */
    struct sipagent *agent;     /* for sip.request; NULL until the SIP side is up */
    struct registrar *registrar; /* endpoints(), accounts; NULL until it is up */
    struct calls *calls;         /* calls, cdrs, gateways[].calls (issue 5); NULL until up */
    struct flood *flood;         /* security, flood bans in suspensions; NULL until up */
};

/* `host` must outlive the runtime. Load every *.lua of `dir`, in name order, into a fresh state and validate
 * the definitions. Returns the runtime, or NULL with "file:line: message" in
 * `err`. Nothing global changes on failure. */
struct luart *luart_load(const struct luahost *host, const char *dir, char *err,
                         size_t errlen);

/* The validated policy set. Owned by the runtime. */
const struct config *luart_config(const struct luart *rt);

/* Stop the runtime's timers and close it as soon as no task runs in it.
 * Call once, when it is replaced or at shutdown. */
void luart_retire(struct luart *rt);

/* Shutdown: end the tasks of every runtime, retired ones too, and close
 * them all. */
void luart_close_all(void);

lua_State *luart_state(struct luart *rt);

/* Called when a task ends. `L` holds the results (nres values at the top) on
 * success; on failure `error` is the message and nres is 0. The results are
 * valid only during the call. */
typedef void task_done_h(lua_State *L, int nres, const char *error, void *arg);

/* Run the function on top of rt's stack, with `nargs` arguments above it,
 * as a new task. They are moved into the task's coroutine. The first slice
 * runs now; `done` (may be NULL) is called when the task ends, possibly
 * later. Returns 0, or -1 if the task could not be created (then `done` is
 * called with the error before returning). */
int luart_spawn(struct luart *rt, int nargs, task_done_h *done, void *arg);

/* Call the function below `nargs` arguments on rt's stack, protected and
 * under the time budget, without a task: it may not wait. Leaves `nres`
 * results, or returns -1 with the message in err. For short hooks such as
 * a retry-delay function. */
int luart_call(struct luart *rt, int nargs, int nres, char *err, size_t errlen);

/* Number of tasks alive in this runtime. */
unsigned luart_tasks(const struct luart *rt);

#endif
