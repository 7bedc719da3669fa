/* sipmsg: SIP message objects (sip.c) for the other Lua modules.
 *
 * A message object is the read-only view `on_request` and `tx:wait()` give
 * policies (m.method, m.uri, m.from, m:header(name), ...). Other modules
 * hand the core's messages to hooks the same way: pushing one takes a new
 * reference to the message (msg_ref_create), which the object drops when
 * Lua collects it, so it may outlive whatever gave it. Costs one userdata. */
#ifndef MOON_LUA_SIPMSG_H
#define MOON_LUA_SIPMSG_H

#include <lua.h>

#include <sofia-sip/msg.h>

/* Push a read-only message object for `msg` (NULL: one without fields). */
void sipmsg_push(lua_State *L, msg_t *msg);

/* Push the first value of header `name` in `msg` (full or compact name, any
 * case), or nil. O(headers). */
void sipmsg_push_header(lua_State *L, msg_t *msg, const char *name);

#endif
