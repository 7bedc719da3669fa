/* The Lua side of hostile traffic (security.c): the `security` table, the
 * flood bans inside `suspensions`, and the policy's on_flood hook. Internal
 * to lua/. Nothing here allocates beyond the Lua values it pushes; the
 * bans belong to the core's flood module. */
#ifndef MOON_LUA_SECURITY_H
#define MOON_LUA_SECURITY_H

#include <stdbool.h>

#include <lauxlib.h>
#include <lua.h>

struct luart;
struct flood;

/* Set global `security` (ban, lift, bans, stats) in a fresh state. */
void api_open_security(lua_State *L, struct luart *rt);

/* Append { kind = "flood", name = IP, until = } for each ban in force to
 * the array at the top of L's stack, which holds n entries. Returns the
 * new count. O(ban table). */
int security_push_suspensions(lua_State *L, struct luart *rt, int n);

/* Append one printed line per ban to b ("flood IP LEFTs"). Returns how
 * many. */
int security_add_suspension_lines(struct luart *rt, luaL_Buffer *b, long long now);

/* Lift the flood ban of ip; true when there was one. */
bool security_lift(struct luart *rt, const char *ip);

/* Run the policy's on_flood(source, rate) in *current (the engine's
 * running policy) before each ban. */
void security_attach(struct flood *fl, struct luart *const *current);

#endif
