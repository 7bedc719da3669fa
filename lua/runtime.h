/* A policy runtime: one Lua state holding one loaded, validated policy set,
 * plus the coroutines (tasks) and timers running in it.
 *
 * Every reload builds a new runtime and swaps it in only when it loaded
 * cleanly. The old one is retired: its timers stop, but tasks already
 * running in it (a REPL chunk that sleeps, a call's hook) finish there, and
 * the state is closed when the last of them ends.
 *
 * Everything Lua runs goes through a task (task.h), under the runtime's time
 * budget. A fresh state gets the policy DSL (dsl.h) and every API module of
 * the table in module.c. A runtime owns its Lua state (with the standard
 * libraries) and its policy set's C structs, and frees both when it
 * closes. */
#ifndef MOON_LUA_RUNTIME_H
#define MOON_LUA_RUNTIME_H

#include <stddef.h>

#include <lua.h>

struct event_base;
struct config;
struct outreg_set;
struct registrar;
struct calls;
struct gw_set;
struct sipagent;
struct store;
struct strlist;
struct luart;

/* What the runtime can reach in the running switch. Owned by the caller and
 * outliving every runtime. */
struct luahost {
    struct event_base *base;
    struct store *store;
    /* reload(): implemented by the engine. Returns 0 with a summary, or -1
     * with "file:line: message". */
    int (*reload)(void *arg, char *msg, size_t msglen);
    void *reload_arg;
    double budget;              /* seconds a task may run without yielding */
    /* The listen addresses in force, which registrations' local_ip must
     * name; NULL: the policy's own (config_listen()). */
    const struct strlist *listen;
    struct outreg_set *outregs; /* NULL until the SIP side is up */
    void *sip_root;         /* su_root_t, re-armed after each slice (Lua may touch nta) */
    struct sipagent *agent; /* for sip.request; NULL until the SIP side is up */
    struct registrar *registrar; /* endpoints(), accounts; NULL until it is up */
    struct calls *calls;         /* calls, cdrs; NULL until it is up */
    struct gw_set *gateways;     /* gateways[].online, .calls; NULL until up */
    struct flood *flood;         /* security, flood bans in suspensions; NULL until up */
    struct overload *overload;   /* stats().overload; NULL until up */
};

/* `host` must outlive the runtime. Load every *.lua of `dir`, in name
 * order, into a fresh state and validate the definitions. Returns the
 * runtime, or NULL with "file:line: message" in `err`. Nothing global
 * changes on failure. */
struct luart *luart_load(const struct luahost *host, const char *dir, char *err,
                         size_t errlen);

/* The validated policy set. Owned by the runtime. */
const struct config *luart_config(const struct luart *rt);

/* Stop what its modules armed (timers), and close it as soon as no task
 * runs in it. Call once, when it is replaced or at shutdown. */
void luart_retire(struct luart *rt);

/* Shutdown: end the tasks of every runtime, retired ones too, and close
 * them all. */
void luart_close_all(void);

lua_State *luart_state(struct luart *rt);

/* What the runtime reaches in the switch (the engine's; outlives it). */
const struct luahost *luart_host(const struct luart *rt);

/* Number of tasks alive in this runtime. */
unsigned luart_tasks(const struct luart *rt);

#endif
