/* handle: a Lua userdata that names a core object instead of pointing at it.
 *
 * Registrations, gateways and accounts are handed to Lua as handles: the
 * runtime and the object's name. Each access looks the object up again by
 * name (what the core's find costs: a binary search for registrations and
 * accounts), so a handle kept across a reload that removed its object finds
 * nothing and reads as removed, never as freed memory. A handle is one
 * userdata of the struct plus the name, collected by Lua; it holds no
 * reference to the object. */
#ifndef MOON_LUA_HANDLE_H
#define MOON_LUA_HANDLE_H

#include <lua.h>

struct luart;

struct handle {
    struct luart *rt;
    char name[1]; /* allocated to fit */
};

/* Push a new handle to `name` with the metatable registered as `mt`. */
struct handle *handle_push(lua_State *L, struct luart *rt, const char *name,
                           const char *mt);

/* The handle at `idx`; raises unless it has metatable `mt`. */
struct handle *handle_check(lua_State *L, int idx, const char *mt);

#endif
