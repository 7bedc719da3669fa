/* The registrar's Lua objects. (Filled by the registrar work.) */
#include "api.h"

void api_open_endpoints(lua_State *L, struct luart *rt)
{
    (void)L;
    (void)rt;
}
