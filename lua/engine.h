/* The policy engine: the running policy runtime, reload, and REPL chunks.
 *
 * This is the one object app/moonswitch.c talks to on the Lua side. */
#ifndef MOON_LUA_ENGINE_H
#define MOON_LUA_ENGINE_H

#include <stddef.h>

#include "control.h"
#include "config.h"

struct event_base;
struct store;
struct engine;

/* Told of every successful reload, before the old policy is retired, with
 * what changed. `before` is NULL on first load. */
typedef void engine_reload_h(const struct config *before, const struct config *now,
                             void *arg);

/* Load the policies of `dir`. Returns NULL with "file:line: message" in err.
 * `listen` (may be NULL or empty) are the --listen addresses, which replace
 * the policy's. `budget` is the seconds a hook or chunk may run without
 * yielding. */
struct engine *engine_create(struct event_base *base, struct store *store, const char *dir,
                             const struct strlist *listen, double budget, char *err,
                             size_t errlen);
void engine_destroy(struct engine *e);

/* The listen addresses in force (config_listen() of the first load): a
 * reload does not change them, and registrations' local_ip must name one
 * of them. Owned by the engine. */
const struct strlist *engine_listen(const struct engine *e);

const struct config *engine_config(const struct engine *e);

void engine_set_reload_handler(struct engine *e, engine_reload_h *h, void *arg);

struct outreg_set;
/* Make the outbound registrations visible to policies (`registrations`,
 * `gateways`) and let policies compute their retry delays. `sip_root` is the
 * su_root_t nta runs on, re-armed after each Lua slice. */
void engine_attach_outregs(struct engine *e, struct outreg_set *set, void *sip_root);

struct sipagent;
/* Let policies send requests (sip.request) and answer the out-of-dialog
 * requests the core does not handle (on_request). */
void engine_attach_sip(struct engine *e, struct sipagent *agent);

struct registrar;
/* Make the registrar visible to policies (`endpoints`, `accounts`,
 * `suspensions`) and call the policy's on_register hook, when it has one,
 * for every successful registration. */
void engine_attach_registrar(struct engine *e, struct registrar *r);

struct calls;
/* Make calls visible to policies (`calls`, `cdrs`, gateways[].calls), and
 * route calls through the policy's route(call) hook and callee_rewrite
 * rules through Lua's string.gsub. */
void engine_attach_calls(struct engine *e, struct calls *cs);

struct gw_set;
/* Gateways' run-time state (online, calls) for `gateways[...]`. */
void engine_attach_gateways(struct engine *e, struct gw_set *gws);

struct flood;
/* Hostile traffic: `security` and the flood bans in `suspensions` for
 * policies, and the policy's on_flood hook before each ban. */
void engine_attach_flood(struct engine *e, struct flood *fl);

struct overload;
/* The overload detector, for stats().overload. */
void engine_attach_overload(struct engine *e, struct overload *ov);

/* Reload atomically: load and validate a fresh runtime, and only then swap.
 * Returns 0 with the diff summary in msg, or -1 with the error (the running
 * policy stays). */
int engine_reload(struct engine *e, char *msg, size_t msglen);

/* Bytes the running policy's Lua state holds (what collectgarbage("count")
 * reports, in bytes); states still finishing tasks after a reload are not
 * counted. O(1). */
size_t engine_lua_bytes(const struct engine *e);

/* The control socket's evaluation callback (control_eval_h); arg is the
 * engine. */
void engine_eval(struct control_request *req, enum control_mode mode, const char *chunk,
                 size_t len, void *arg);

#endif
