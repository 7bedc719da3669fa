/* task: a coroutine running policy code, and how C code waits in one.
 *
 * Every hook, timer callback and REPL chunk runs as a task of a runtime.
 * runtime.c implements tasks because a task lives and dies with its
 * runtime: a retired runtime closes when its last task ends. A task is
 * resumed only from libevent callbacks, never from inside a C function that
 * Lua called, and each resume (a slice) runs under the runtime's time
 * budget: a slice that runs past it without yielding is stopped with an
 * error. A task costs a Lua thread, a registry reference and one libevent
 * event while alive; it frees them itself when its function returns or
 * raises.
 *
 * An awaitable (sleep, tx:wait) finds its task with task_check_yieldable(),
 * arranges for a task_wake() or task_sleep(), and yields. */
#ifndef MOON_LUA_TASK_H
#define MOON_LUA_TASK_H

#include <stddef.h>

#include <lua.h>

struct luart;
struct task;

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

/* Given what a task printed (print()), `len` > 0 bytes valid during the
 * call only. */
typedef void task_output_h(const char *text, size_t len, void *arg);

/* luart_spawn, and what the task prints goes to `out` (with `arg`, as
 * `done`): at the end of each slice that printed, in order, and always
 * before `done`; a slice that prints more than 64 KiB hands it over in
 * pieces as it goes. A REPL chunk's task prints to its client this way. */
int luart_spawn_output(struct luart *rt, int nargs, task_done_h *done, task_output_h *out,
                       void *arg);

/* Print `text` for the Lua code running now: into the output of the task
 * whose slice runs, when it was spawned with one; otherwise (hooks, timer
 * callbacks, policy files loading, luart_call) to the log at info, module
 * "lua", one record per line. Copies the text. */
void task_print(const char *text, size_t len);

/* As luart_spawn(), with a limit of `seconds` of wall time, waits included.
 * When it passes with the task still waiting, `done` is called at once with
 * the error "FILE:LINE: still waiting after its time budget of N s" (where
 * the task waits), and the task is abandoned: it ends at its next resume
 * without running further (at once when it is asleep). For hooks whose
 * caller cannot wait for ever (a call's route). One more libevent timer. */
int luart_spawn_within(struct luart *rt, int nargs, double seconds, task_done_h *done,
                       void *arg);

/* Call the function below `nargs` arguments on rt's stack, protected and
 * under the time budget, without a task: it may not wait. Leaves `nres`
 * results, or returns -1 with the message in err. For short hooks such as
 * a retry-delay function. */
int luart_call(struct luart *rt, int nargs, int nres, char *err, size_t errlen);

/* The task running in coroutine L, or NULL when L is not a task's own
 * coroutine (the main state, or a plain Lua coroutine inside a task).
 * Two registry lookups. */
struct task *task_current(lua_State *L);

/* Raise "WHAT: cannot wait here" unless L is a task that may yield. */
struct task *task_check_yieldable(lua_State *L, const char *what);

/* Resume `t` later, from the loop, with the `nvals` values on top of `from`'s
 * stack (moved into the task). Used by awaitables' event callbacks. */
void task_wake(struct task *t, lua_State *from, int nvals);

/* Wake task `t` with no values after `seconds`, on the task's own event.
 * Returns 0, or -1 when the timer cannot be armed. */
int task_sleep(struct task *t, double seconds);

/* lua_pcall under the time budget (that of the last slice) for Lua code run
 * outside a task's slice, such as __tostring metamethods while a REPL answer
 * is formatted: one that loops is stopped with an error instead of freezing
 * the switch. Calls sharing `deadline` (0 at first: set by the first call)
 * share one budget; once it is spent they fail without running. Inside a
 * slice, a plain lua_pcall. */
int api_pcall_budget(lua_State *L, int nargs, int nres, double *deadline);

#endif
