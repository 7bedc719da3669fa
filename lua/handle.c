/* Name-checked userdata handles. See handle.h. */
#include "handle.h"

#include <lauxlib.h>

#include <string.h>

struct handle *handle_push(lua_State *L, struct luart *rt, const char *name,
                           const char *mt)
{
    size_t n = strlen(name);
    struct handle *h = lua_newuserdata(L, sizeof *h + n);
    h->rt = rt;
    memcpy(h->name, name, n + 1);
    luaL_getmetatable(L, mt);
    lua_setmetatable(L, -2);
    return h;
}

struct handle *handle_check(lua_State *L, int idx, const char *mt)
{
    return luaL_checkudata(L, idx, mt);
}
