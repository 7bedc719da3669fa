/* Policy runtimes and their tasks. See runtime.h and task.h. */
#include "runtime.h"
#include "config.h"
#include "dsl.h"
#include "module.h"
#include "task.h"
#include "evport.h"
#include "log.h"
#include "strbuf.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>

struct luart {
    struct luart *next_rt; /* every runtime alive, for luart_close_all() */
    struct task *tasks_list;
    lua_State *L;
    const struct luahost *host; /* the engine's; outlives every runtime */
    struct config *cfg;
    unsigned tasks;  /* alive */
    int retired;
    int closing;
};

struct task {
    struct task *prev, *next; /* in rt->tasks_list */
    struct luart *rt;
    lua_State *co;     /* the coroutine; anchored by `ref` */
    int ref;           /* registry reference to the coroutine */
    struct event *ev;  /* resume event, also the sleep timer */
    struct event *deadline; /* luart_spawn_within()'s limit, or NULL */
    double limit;           /* its seconds, for the message */
    int abandoned;          /* past its deadline: ends at its next resume */
    int pending_args;  /* values waiting on co's stack for the next resume */
    task_done_h *done;
    task_output_h *out;    /* NULL: what it prints goes to the log */
    void *done_arg;        /* for done and out */
    struct strbuf printed; /* printed in this slice, not yet given to out */
};

static struct luart *all_runtimes;

static void task_unlink(struct task *t);

/* Registry key of the table coroutine -> task (lightuserdata). */
static char task_map_key;

/* The deadline of the slice running now (0: none). Tasks do not nest: a
 * resume always comes from a libevent callback, so one global suffices. */
static double slice_deadline;
static double slice_budget;

/* The task whose slice runs now, for task_print(); NULL while Lua runs
 * outside a task (loading, luart_call). */
static struct task *slice_task;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The count hook fires every BUDGET_CHECK_EVERY VM instructions; it costs a
 * clock read each time. LuaJIT does not run hooks in compiled traces (a
 * `while true do end` compiles to a loop that never checks), so policy
 * states run with the trace compiler off, in LuaJIT's interpreter: runaway
 * code is stopped with an error instead of freezing the switch. Policies
 * are glue around C; the interpreter is fast enough for them. */
#define BUDGET_CHECK_EVERY 10000

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (slice_deadline > 0 && now_seconds() > slice_deadline) {
        slice_deadline = 0; /* let the error unwind without firing again */
        lua_Debug where;
        if (lua_getstack(L, 0, &where) && lua_getinfo(L, "Sl", &where) &&
            where.currentline > 0)
            luaL_error(L, "%s:%d: exceeded its time budget of %.3g s without yielding",
                       where.short_src, where.currentline, slice_budget);
        luaL_error(L, "exceeded its time budget of %.3g s without yielding", slice_budget);
    }
}

static void slice_begin(const struct luart *rt)
{
    slice_budget = rt->host->budget > 0 ? rt->host->budget : 2.0;
    slice_deadline = now_seconds() + slice_budget;
}

static void slice_end(void)
{
    slice_deadline = 0;
}

int api_pcall_budget(lua_State *L, int nargs, int nres, double *deadline)
{
    if (slice_deadline > 0)
        return lua_pcall(L, nargs, nres, 0);
    if (*deadline == 0)
        *deadline = now_seconds() + (slice_budget > 0 ? slice_budget : 2.0);
    if (now_seconds() > *deadline) {
        lua_pop(L, nargs + 1);
        lua_pushliteral(L, "exceeded its time budget");
        return LUA_ERRRUN;
    }
    slice_deadline = *deadline;
    int rc = lua_pcall(L, nargs, nres, 0);
    slice_deadline = 0;
    return rc;
}

const struct luahost *luart_host(const struct luart *rt)
{
    return rt->host;
}

lua_State *luart_state(struct luart *rt)
{
    return rt->L;
}

const struct config *luart_config(const struct luart *rt)
{
    return rt->cfg;
}

unsigned luart_tasks(const struct luart *rt)
{
    return rt->tasks;
}

/* ---- Closing ------------------------------------------------------------ */

static void rt_close(struct luart *rt)
{
    if (rt->closing)
        return;
    rt->closing = 1;
    for (struct luart **p = &all_runtimes; *p; p = &(*p)->next_rt)
        if (*p == rt) {
            *p = rt->next_rt;
            break;
        }
    api_retire_all(rt->L);
    lua_close(rt->L);
    config_free(rt->cfg);
    free(rt);
}

static void rt_maybe_close(struct luart *rt)
{
    if (rt->retired && rt->tasks == 0)
        rt_close(rt);
}

void luart_retire(struct luart *rt)
{
    if (!rt)
        return;
    rt->retired = 1;
    api_retire_all(rt->L);
    rt_maybe_close(rt);
}

/* At shutdown: end every task of every runtime (their `done` hears "the
 * switch is stopping") and close all states. */
void luart_close_all(void)
{
    while (all_runtimes) {
        struct luart *rt = all_runtimes;
        rt->retired = 1;
        while (rt->tasks_list) {
            struct task *t = rt->tasks_list;
            task_unlink(t);
            if (t->done)
                t->done(t->co, 0, "stopped: the switch is shutting down", t->done_arg);
            event_free(t->ev);
            strbuf_free(&t->printed);
            if (t->deadline)
                event_free(t->deadline);
            free(t);
            rt->tasks--;
        }
        rt_close(rt);
    }
}

/* ---- Tasks --------------------------------------------------------------- */

struct task *task_current(lua_State *L)
{
    lua_pushlightuserdata(L, &task_map_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushthread(L);
    lua_rawget(L, -2);
    struct task *t = lua_touserdata(L, -1);
    lua_pop(L, 2);
    return (t && t->co == L) ? t : NULL;
}

struct task *task_check_yieldable(lua_State *L, const char *what)
{
    struct task *t = task_current(L);
    if (!t)
        luaL_error(L, "%s: cannot wait here (only inside a policy hook, a timer "
                      "callback or a REPL chunk, not in a plain coroutine or while "
                      "loading)",
                   what);
    return t;
}

static void task_unlink(struct task *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        t->rt->tasks_list = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

static void task_free(struct task *t)
{
    struct luart *rt = t->rt;
    lua_State *L = rt->L;
    task_unlink(t);
    lua_pushlightuserdata(L, &task_map_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushthread(t->co);
    lua_xmove(t->co, L, 1);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, t->ref);
    if (t->ev)
        event_free(t->ev);
    strbuf_free(&t->printed);
    if (t->deadline)
        event_free(t->deadline);
    free(t);
    rt->tasks--;
    rt_maybe_close(rt);
}

/* Hand what `t` printed to its output handler. */
static void task_flush_printed(struct task *t)
{
    if (t->printed.len == 0)
        return;
    t->out(t->printed.data, t->printed.len, t->done_arg);
    t->printed.len = 0;
}

/* Printed text is handed over at the end of each slice, or once this much
 * is waiting, so that a chunk printing in a loop holds little of it. */
#define PRINTED_FLUSH_AT 65536

void task_print(const char *text, size_t len)
{
    struct task *t = slice_task;
    if (t && t->out) {
        strbuf_add(&t->printed, text, len);
        if (t->printed.len >= PRINTED_FLUSH_AT)
            task_flush_printed(t);
        return;
    }
    if (!log_enabled(LOG_INFO))
        return;
    /* One log record per line. */
    while (len > 0) {
        const char *nl = memchr(text, '\n', len);
        size_t n = nl ? (size_t)(nl - text) : len;
        log_info("lua", "%.*s", (int)(n > 65535 ? 65535 : n), text);
        text += n;
        len -= n;
        if (nl) {
            text++;
            len--;
        }
    }
}

/* Run one slice of `t`: resume with the values waiting on its stack. On
 * completion or error call `done` and free the task. What it printed goes
 * to its output handler before either. */
static void task_run(struct task *t)
{
    if (t->abandoned) {
        task_free(t); /* its caller has its answer already */
        return;
    }
    int nargs = t->pending_args;
    t->pending_args = 0;
    struct task *outer = slice_task;
    slice_task = t;
    slice_begin(t->rt);
    int status = lua_resume(t->co, nargs);
    slice_end();
    slice_task = outer;
    if (t->rt->host->sip_root)
        evport_rearm(t->rt->host->sip_root);
    if (t->out)
        task_flush_printed(t);
    if (status == LUA_YIELD)
        return; /* an awaitable holds it; it wakes us */
    if (status == 0) {
        if (t->done)
            t->done(t->co, lua_gettop(t->co), NULL, t->done_arg);
    } else {
        const char *msg = lua_tostring(t->co, -1);
        if (!msg)
            msg = "(error object is not a string)";
        if (t->done)
            t->done(t->co, 0, msg, t->done_arg);
        else
            log_error("lua", "%s", msg);
    }
    task_free(t);
}

static void on_task_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    task_run(arg);
}

void task_wake(struct task *t, lua_State *from, int nvals)
{
    if (nvals > 0)
        lua_xmove(from, t->co, nvals);
    t->pending_args += nvals;
    event_del(t->ev);
    event_active(t->ev, EV_TIMEOUT, 0);
}

int task_sleep(struct task *t, double seconds)
{
    if (seconds < 0)
        seconds = 0;
    struct timeval tv = {.tv_sec = (time_t)seconds,
                         .tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    return evtimer_add(t->ev, &tv);
}

/* Where a suspended coroutine waits: the innermost Lua frame with a line,
 * as "file:line", or "" when there is none. */
static void waiting_at(lua_State *co, char *out, size_t outlen)
{
    lua_Debug ar;
    *out = '\0';
    for (int level = 0; lua_getstack(co, level, &ar); level++)
        if (lua_getinfo(co, "Sl", &ar) && ar.currentline > 0) {
            snprintf(out, outlen, "%s:%d", ar.short_src, ar.currentline);
            return;
        }
}

/* A task's deadline passed while it waits: its caller hears it now, and the
 * task is ended without running further. A task asleep (its own timer) or
 * already woken holds nobody else's pointer and goes at once; one waiting
 * on something else (tx:wait) goes when that wakes it. */
static void on_task_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct task *t = arg;
    char where[512], msg[700];
    waiting_at(t->co, where, sizeof where);
    snprintf(msg, sizeof msg, "%s%sstill waiting after its time budget of %.3g s", where,
             where[0] ? ": " : "", t->limit);
    task_done_h *done = t->done;
    t->done = NULL;
    t->abandoned = 1;
    if (done)
        done(t->co, 0, msg, t->done_arg);
    if (event_pending(t->ev, EV_TIMEOUT, NULL))
        task_free(t);
}

/* A new task; `limit` > 0: luart_spawn_within()'s wall-time limit; `out`:
 * luart_spawn_output()'s printed-text handler. */
static int spawn(struct luart *rt, int nargs, double limit, task_done_h *done,
                 task_output_h *out, void *arg)
{
    lua_State *L = rt->L;
    struct task *t = calloc(1, sizeof *t);
    if (t)
        t->ev = event_new(rt->host->base, -1, 0, on_task_event, t);
    if (t && t->ev && limit > 0) {
        t->limit = limit;
        t->deadline = evtimer_new(rt->host->base, on_task_deadline, t);
        struct timeval tv = {.tv_sec = (time_t)limit,
                             .tv_usec =
                                 (suseconds_t)((limit - (double)(time_t)limit) * 1e6)};
        if (t->deadline && evtimer_add(t->deadline, &tv) < 0) {
            event_free(t->deadline);
            t->deadline = NULL;
        }
        if (!t->deadline) {
            event_free(t->ev);
            t->ev = NULL;
        }
    }
    if (!t || !t->ev) {
        if (t)
            free(t);
        lua_pop(L, nargs + 1);
        if (done)
            done(L, 0, "out of memory", arg);
        return -1;
    }
    t->rt = rt;
    t->done = done;
    t->out = out;
    t->done_arg = arg;
    t->co = lua_newthread(L);                       /* fn args co */
    lua_pushvalue(L, -1);                           /* fn args co co */
    t->ref = luaL_ref(L, LUA_REGISTRYINDEX);        /* fn args co */
    lua_pushlightuserdata(L, &task_map_key);
    lua_rawget(L, LUA_REGISTRYINDEX);               /* fn args co map */
    lua_insert(L, -2);                              /* fn args map co */
    lua_pushlightuserdata(L, t);
    lua_rawset(L, -3);                              /* fn args map */
    lua_pop(L, 1);                                  /* fn args */
    lua_xmove(L, t->co, nargs + 1);                 /* (moved to co) */
    t->pending_args = nargs;
    t->next = rt->tasks_list;
    if (t->next)
        t->next->prev = t;
    rt->tasks_list = t;
    rt->tasks++;
    task_run(t);
    return 0;
}

int luart_spawn_output(struct luart *rt, int nargs, task_done_h *done, task_output_h *out,
                       void *arg)
{
    return spawn(rt, nargs, 0, done, out, arg);
}

int luart_spawn(struct luart *rt, int nargs, task_done_h *done, void *arg)
{
    return spawn(rt, nargs, 0, done, NULL, arg);
}

int luart_spawn_within(struct luart *rt, int nargs, double seconds, task_done_h *done,
                       void *arg)
{
    return spawn(rt, nargs, seconds > 0 ? seconds : 0.001, done, NULL, arg);
}

int luart_call(struct luart *rt, int nargs, int nres, char *err, size_t errlen)
{
    lua_State *L = rt->L;
    struct task *outer = slice_task;
    slice_task = NULL;
    slice_begin(rt);
    int rc = lua_pcall(L, nargs, nres, 0);
    slice_end();
    slice_task = outer;
    if (rc != 0) {
        const char *msg = lua_tostring(L, -1);
        snprintf(err, errlen, "%s", msg ? msg : "(error object is not a string)");
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* ---- Loading ---------------------------------------------------------------- */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.lua files of dir, sorted. Returns the count, or -1. */
static int list_policy_files(const char *dir, char ***out, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "%s: cannot open policy directory: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".lua") != 0 || e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(names, (size_t)cap * sizeof *grown);
            if (!grown)
                break;
            names = grown;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n > 1)
        qsort(names, (size_t)n, sizeof *names, cmp_names);
    *out = names;
    return n;
}

/* Load one file in a protected call with the time budget. */
static int load_file(struct luart *rt, const char *path, char *err, size_t errlen)
{
    lua_State *L = rt->L;
    dsl_set_file(L, path);
    if (luaL_loadfile(L, path) != 0) {
        snprintf(err, errlen, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    struct task *outer = slice_task;
    slice_task = NULL; /* a reload() from a REPL chunk: its files print to the log */
    slice_begin(rt);
    int rc = lua_pcall(L, 0, 0, 0);
    slice_end();
    slice_task = outer;
    if (rc != 0) {
        const char *msg = lua_tostring(L, -1);
        snprintf(err, errlen, "%s", msg ? msg : "(error object is not a string)");
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

struct luart *luart_load(const struct luahost *host, const char *dir, char *err,
                         size_t errlen)
{
    struct luart *rt = calloc(1, sizeof *rt);
    if (!rt) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rt->host = host;
    rt->next_rt = all_runtimes;
    all_runtimes = rt;
    rt->cfg = config_new();
    rt->L = luaL_newstate();
    if (!rt->cfg || !rt->L) {
        snprintf(err, errlen, "out of memory");
        config_free(rt->cfg);
        if (rt->L)
            lua_close(rt->L);
        free(rt);
        return NULL;
    }
    lua_State *L = rt->L;
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, BUDGET_CHECK_EVERY);

    lua_pushlightuserdata(L, &task_map_key);
    lua_newtable(L);
    lua_rawset(L, LUA_REGISTRYINDEX);

    dsl_open(L, rt->cfg);
    api_open_all(L, rt);

    char **files = NULL;
    int n = list_policy_files(dir, &files, err, errlen);
    int rc = n < 0 ? -1 : 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (rc == 0 && load_file(rt, path, err, errlen) < 0)
            rc = -1;
        free(files[i]);
    }
    free(files);
    dsl_set_file(L, NULL);
    dsl_seal(L);
    if (rc == 0 && (config_finish(rt->cfg, err, errlen) < 0 ||
                    config_check_local_ips(rt->cfg, config_listen(rt->cfg, host->listen),
                                           err, errlen) < 0))
        rc = -1;
    if (rc < 0) {
        rt->retired = 1;
        rt_close(rt);
        return NULL;
    }
    /* The definition tables are C structs now; drop their Lua copies. */
    lua_gc(L, LUA_GCCOLLECT, 0);
    return rt;
}
