/* hooks: the policy's hooks on the core's objects.
 *
 * Each function installs the hooks of one core object. A hook runs in
 * *current, the engine's running runtime, read at each call so a reload
 * applies at once; `current` must outlive the object. When the policy does
 * not define the function, a hook costs one global lookup (retry_delay: one
 * registry read) and the core goes on as it would without Lua. Each is
 * implemented beside the Lua objects of the same core object. */
#ifndef MOON_LUA_HOOKS_H
#define MOON_LUA_HOOKS_H

struct luart;
struct outreg_set;
struct sipagent;
struct registrar;
struct calls;

/* registrations.c: a registration's `retry_delay` function, called with
 * the registration's handle; runs without a task, so it may not wait. */
void hooks_attach_outregs(struct outreg_set *set, struct luart *const *current);

/* sip.c: on_request(req), in a task of its own, for the out-of-dialog
 * requests no core module took. */
void hooks_attach_sip(struct sipagent *agent, struct luart *const *current);

/* endpoints.c: on_register(reg), in a task of its own; the REGISTER is
 * answered when it ends. */
void hooks_attach_registrar(struct registrar *r, struct luart *const *current);

/* call_policy.c: route(call) and on_failure(call, attempt), each in a task
 * of its own with sip.route_timeout seconds, which the call waits for;
 * on_call_end(cdr) in a task per record once it is durable; number
 * functions (callee_from, caller_from, peer_number_information) and a
 * gateway's callee_rewrite rules, each one call without a task. */
void hooks_attach_calls(struct calls *cs, struct luart *const *current);

#endif
