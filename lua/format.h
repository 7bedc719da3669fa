/* format: a Lua value as moonctl prints it.
 *
 * Strings raw at the top level (quoted inside tables), numbers in %.14g,
 * booleans, nil, and tables as Lua literals: arrays in order, other keys
 * sorted, one line when short, one field per line otherwise; cycles print
 * as {...}. A value with a __tostring metamethod prints through it. O(size
 * of the value), with an insertion sort of each table's keys: meant for
 * what a REPL shows, not for bulk data. Uses a few stack slots per level of
 * nesting and leaves the stack as it found it. */
#ifndef MOON_LUA_FORMAT_H
#define MOON_LUA_FORMAT_H

#include <lua.h>

#include "strbuf.h"

/* Append the value at `idx` to `b`. */
void format_value(lua_State *L, int idx, struct strbuf *b);

#endif
