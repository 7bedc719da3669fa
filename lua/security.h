/* The flood bans inside `suspensions` (security.c, which also opens the
 * `security` table, api_security, and installs on_flood, hooks.h), for
 * endpoints.c. Internal to lua/. Nothing here allocates beyond the Lua
 * values it pushes; the bans belong to the core's flood module. */
#ifndef MOON_LUA_SECURITY_H
#define MOON_LUA_SECURITY_H

#include <stdbool.h>

#include <lauxlib.h>
#include <lua.h>

struct luart;

/* Append { kind = "flood", name = IP, until = } for each ban in force to
 * the array at the top of L's stack, which holds n entries. Returns the
 * new count. O(ban table). */
int security_push_suspensions(lua_State *L, struct luart *rt, int n);

/* Append one printed line per ban to b ("flood IP LEFTs"). Returns how
 * many. */
int security_add_suspension_lines(struct luart *rt, luaL_Buffer *b, long long now);

/* Lift the flood ban of ip; true when there was one. */
bool security_lift(struct luart *rt, const char *ip);

#endif
