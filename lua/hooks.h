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
struct flood;

/* registrations.c: a registration's `retry_delay` function, called with
 * the registration's handle; runs without a task, so it may not wait. And
 * on_registration(reg, old_state, new_state), in a task of its own per
 * change of a registration's public state, started from the loop in the
 * order of the changes. Returns what hooks_detach_outregs() frees before
 * the set goes (changes not yet run go with it), or NULL when out of
 * memory (then on_registration does not run). */
struct outreg_hooks;
struct event_base;
struct outreg_hooks *hooks_attach_outregs(struct outreg_set *set, struct event_base *base,
                                          struct luart *const *current);
void hooks_detach_outregs(struct outreg_hooks *h);

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

/* security.c: on_flood(source, rate), synchronously and without a task
 * (it may not wait), before each ban; false spares the source. */
void hooks_attach_flood(struct flood *fl, struct luart *const *current);

#endif
