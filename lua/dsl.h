/* dsl: the definition globals of a policy (`switch`, `registration`,
 * `routing_gateway`, `mapping_gateway`, `account`).
 *
 * Each definition is checked against core's schema (config.c) when the
 * policy calls it and converted at once into a C struct added to the
 * runtime's `struct config`, so an error names the file and line that
 * caused it. The runtime owns the config; the DSL keeps a pointer to it in
 * the state's registry until dsl_seal(). A definition costs its C struct
 * and, for a function field (retry_delay), a registry reference. */
#ifndef MOON_LUA_DSL_H
#define MOON_LUA_DSL_H

#include <lua.h>

struct config;

/* Install the definition globals in a fresh state; they add to `cfg`. */
void dsl_open(lua_State *L, struct config *cfg);

/* Set the file being loaded, for definitions' file:line. */
void dsl_set_file(lua_State *L, const char *file);

/* After loading: definitions are refused from now on (a REPL chunk cannot
 * add to a live policy set; reload() is the way). */
void dsl_seal(lua_State *L);

#endif
