/* calls: what the call objects (calls.c) share with the policy's call
 * hooks (call_policy.c) and with the documentation test: a CDR as a Lua
 * table, and the names of the fields each object answers to. The lists
 * are NULL-terminated and are what the objects' __index functions look
 * up, so a field cannot be added without appearing here. */
#ifndef MOON_LUA_CALLS_H
#define MOON_LUA_CALLS_H

#include <lua.h>

struct cdr;

/* Push a CDR as a table: seq, call_id, caller, callee, original_callee,
 * routed_callee, mapping_gateway, routing_gateway, start, answer (absent
 * when never answered), stop, duration, status, reason, hangup,
 * direction. */
void api_push_cdr(lua_State *L, const struct cdr *r);

/* Index of `k` in `fields`, or -1. O(fields). */
int api_field_index(const char *const *fields, const char *k);

/* calls[id] and calls.list()'s handles (calls.c). */
extern const char *const calls_handle_fields[];
/* The call given to route() and on_failure() (call_policy.c). */
extern const char *const call_policy_fields[];
/* on_failure()'s attempt table (call_policy.c). */
extern const char *const call_attempt_fields[];
/* gateways[name] handles (gateways.c). */
extern const char *const gateway_handle_fields[];

#endif
