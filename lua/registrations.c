/* Outbound registrations in Lua: `registrations`, their handles, the
 * policy's retry_delay functions and its on_registration hook.
 *
 *   registrations                  prints name, state, status, expires, next
 *                                  refresh, last error
 *   registrations()                an array of handles, in name order
 *   registrations["carrier-a"]     a handle (handle.h), or nil: .name, .state,
 *                                  .status, .expires, .failures, .contact,
 *                                  .next_refresh, .public_address,
 *                                  .last_error, .call_id, .cseq, .server,
 *                                  .username, .tracing; :refresh(),
 *                                  :disable(), :enable(), :trace(on)
 *
 *   function on_registration(reg, old_state, new_state)
 *                                  the policy's hook (hooks.h), in a task per
 *                                  change of reg.state, in order
 *
 * A handle whose registration was removed reads state "removed". The
 * password is never readable. */
#include "hooks.h"
#include "handle.h"
#include "log.h"
#include "module.h"
#include "runtime.h"
#include "sip/outreg.h"
#include "task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#define REG_MT "moon.registration"

static struct outreg *reg_of(lua_State *L, int idx)
{
    struct handle *h = handle_check(L, idx, REG_MT);
    struct outreg_set *set = luart_host(h->rt)->outregs;
    return set ? outreg_find(set, h->name) : NULL;
}

static int reg_refresh(lua_State *L)
{
    struct outreg *r = reg_of(L, 1);
    if (!r)
        return luaL_error(L, "registration \"%s\" no longer exists",
                          ((struct handle *)lua_touserdata(L, 1))->name);
    outreg_refresh(r);
    lua_pushboolean(L, 1);
    return 1;
}

static int reg_disable(lua_State *L)
{
    struct outreg *r = reg_of(L, 1);
    if (!r)
        return luaL_error(L, "registration no longer exists");
    outreg_disable(r);
    lua_pushboolean(L, 1);
    return 1;
}

static int reg_enable(lua_State *L)
{
    struct outreg *r = reg_of(L, 1);
    if (!r)
        return luaL_error(L, "registration no longer exists");
    outreg_enable(r);
    lua_pushboolean(L, 1);
    return 1;
}

static int reg_trace(lua_State *L)
{
    struct outreg *r = reg_of(L, 1);
    if (!r)
        return luaL_error(L, "registration no longer exists");
    outreg_trace(r, lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2));
    lua_pushboolean(L, outreg_tracing(r));
    return 1;
}

static int reg_index(lua_State *L)
{
    struct handle *h = handle_check(L, 1, REG_MT);
    const char *k = luaL_checkstring(L, 2);
    static const struct {
        const char *name;
        lua_CFunction fn;
    } methods[] = {{"refresh", reg_refresh},
                   {"disable", reg_disable},
                   {"enable", reg_enable},
                   {"trace", reg_trace}};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(k, methods[i].name) == 0) {
            lua_pushcfunction(L, methods[i].fn);
            return 1;
        }
    if (strcmp(k, "name") == 0) {
        lua_pushstring(L, h->name);
        return 1;
    }
    struct outreg *r = reg_of(L, 1);
    if (!r) {
        if (strcmp(k, "state") == 0)
            lua_pushliteral(L, "removed");
        else
            lua_pushnil(L);
        return 1;
    }
    if (strcmp(k, "state") == 0)
        lua_pushstring(L, outreg_state_name(outreg_state(r)));
    else if (strcmp(k, "status") == 0)
        outreg_status(r) ? lua_pushinteger(L, outreg_status(r)) : lua_pushnil(L);
    else if (strcmp(k, "expires") == 0)
        lua_pushinteger(L, outreg_expires(r));
    else if (strcmp(k, "failures") == 0)
        lua_pushinteger(L, outreg_failures(r));
    else if (strcmp(k, "contact") == 0)
        api_push_string(L, outreg_contact(r));
    else if (strcmp(k, "next_refresh") == 0)
        outreg_next_refresh(r) ? lua_pushnumber(L, (double)outreg_next_refresh(r))
                               : lua_pushnil(L);
    else if (strcmp(k, "public_address") == 0)
        api_push_string(L, outreg_public_address(r));
    else if (strcmp(k, "last_error") == 0)
        api_push_string(L, outreg_last_error(r));
    else if (strcmp(k, "call_id") == 0)
        lua_pushstring(L, outreg_call_id(r));
    else if (strcmp(k, "cseq") == 0)
        lua_pushnumber(L, outreg_cseq(r));
    else if (strcmp(k, "server") == 0)
        lua_pushstring(L, outreg_server(r));
    else if (strcmp(k, "username") == 0)
        lua_pushstring(L, outreg_username(r));
    else if (strcmp(k, "tracing") == 0)
        lua_pushboolean(L, outreg_tracing(r));
    else
        lua_pushnil(L); /* the password is never readable */
    return 1;
}

static int reg_tostring(lua_State *L)
{
    struct handle *h = handle_check(L, 1, REG_MT);
    struct outreg *r = reg_of(L, 1);
    if (!r)
        lua_pushfstring(L, "registration \"%s\" (removed)", h->name);
    else
        lua_pushfstring(L, "registration \"%s\": %s, status %d, expires %d", h->name,
                        outreg_state_name(outreg_state(r)), outreg_status(r),
                        outreg_expires(r));
    return 1;
}

/* registrations[name] */
static int regs_index(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    const char *name = luaL_checkstring(L, 2);
    struct outreg_set *set = luart_host(rt)->outregs;
    if (!set || !outreg_find(set, name)) {
        lua_pushnil(L);
        return 1;
    }
    handle_push(L, rt, name, REG_MT);
    return 1;
}

/* registrations(): an array of handles, in name order. */
static int regs_call(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    struct outreg_set *set = luart_host(rt)->outregs;
    size_t n = set ? outreg_set_count(set) : 0;
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        handle_push(L, rt, outreg_name(outreg_set_at(set, i)), REG_MT);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

/* The status table printed for `registrations` in the REPL. The password is
 * not part of it, nor readable anywhere. */
static int regs_tostring(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    struct outreg_set *set = luart_host(rt)->outregs;
    size_t n = set ? outreg_set_count(set) : 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char line[512];
    snprintf(line, sizeof line, "%-24s %-12s %6s %8s %12s  %s\n", "name", "state",
             "status", "expires", "next refresh", "last error");
    luaL_addstring(&b, line);
    time_t now = time(NULL);
    for (size_t i = 0; i < n; i++) {
        struct outreg *r = outreg_set_at(set, i);
        char next[32] = "-";
        if (outreg_next_refresh(r))
            snprintf(next, sizeof next, "in %lds", (long)(outreg_next_refresh(r) - now));
        char status[16] = "-";
        if (outreg_status(r))
            snprintf(status, sizeof status, "%d", outreg_status(r));
        snprintf(line, sizeof line, "%-24s %-12s %6s %8d %12s  %s\n", outreg_name(r),
                 outreg_state_name(outreg_state(r)), status, outreg_expires(r), next,
                 outreg_last_error(r));
        luaL_addstring(&b, line);
    }
    snprintf(line, sizeof line, "(%zu registrations)", n);
    luaL_addstring(&b, line);
    luaL_pushresult(&b);
    return 1;
}

/* ---- The retry_delay hook -------------------------------------------------- */

/* A registration's retry_delay function: called with the registration's
 * handle, returns seconds (the core holds them to 30..600). Runs under the
 * time budget and may not wait; on any error the switch setting applies. */
static double retry_hook(struct outreg *reg, int ref, void *arg)
{
    struct luart *const *current = arg;
    struct luart *rt = *current;
    lua_State *L = luart_state(rt);
    char err[512];
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return -1;
    }
    handle_push(L, rt, outreg_name(reg), REG_MT);
    if (luart_call(rt, 1, 1, err, sizeof err) < 0) {
        log_error("policy", "registration \"%s\": retry_delay: %s", outreg_name(reg),
                  err);
        return -1;
    }
    double d = lua_tonumber(L, -1);
    int ok = lua_type(L, -1) == LUA_TNUMBER && !isnan(d);
    lua_pop(L, 1);
    if (!ok) {
        log_error("policy", "registration \"%s\": retry_delay must return seconds",
                  outreg_name(reg));
        return -1;
    }
    return d < 0 ? 0 : d;
}

/* ---- The on_registration hook ------------------------------------------------ */

/* A change of state waiting for its task: the registration's name and the
 * two public states. */
struct reg_change {
    struct reg_change *next;
    enum outreg_state was, now;
    char name[]; /* allocated to fit */
};

/* The state machine tells of a change from inside itself, where Lua must
 * not run (a hook could call back into the entry half-way through a
 * transition, or a Lua call of ours be on the stack): changes queue here,
 * and one event of the loop starts their tasks, in order. */
struct outreg_hooks {
    struct luart *const *current;
    struct outreg_set *set;
    struct event *ev;
    struct reg_change *head, **tail;
};

static void on_registration_done(lua_State *L, int nres, const char *error, void *arg)
{
    (void)L;
    (void)nres;
    (void)arg;
    if (error)
        log_error("policy", "on_registration(): %s", error);
}

/* Start one task per change queued before this turn, in order; changes
 * their hooks cause wait for the next turn. Without the function in the
 * running policy, changes cost their allocation and nothing more. */
static void run_changes(evutil_socket_t fd, short what, void *arg)
{
    struct outreg_hooks *h = arg;
    (void)fd;
    (void)what;
    struct reg_change *c = h->head;
    h->head = NULL;
    h->tail = &h->head;
    while (c) {
        struct reg_change *next = c->next;
        struct luart *rt = *h->current;
        lua_State *L = rt ? luart_state(rt) : NULL;
        if (L) {
            lua_getglobal(L, "on_registration");
            if (lua_isfunction(L, -1)) {
                handle_push(L, rt, c->name, REG_MT);
                lua_pushstring(L, outreg_state_name(c->was));
                lua_pushstring(L, outreg_state_name(c->now));
                luart_spawn(rt, 3, on_registration_done, NULL);
            } else {
                lua_pop(L, 1);
            }
        }
        free(c);
        c = next;
    }
}

static void on_change(struct outreg *r, enum outreg_state was, enum outreg_state now,
                      void *arg)
{
    struct outreg_hooks *h = arg;
    const char *name = outreg_name(r);
    size_t len = strlen(name) + 1;
    struct reg_change *c = malloc(sizeof *c + len);
    if (!c) {
        log_error("policy", "out of memory: on_registration(\"%s\") not run", name);
        return;
    }
    c->next = NULL;
    c->was = was;
    c->now = now;
    memcpy(c->name, name, len);
    *h->tail = c;
    h->tail = &c->next;
    event_active(h->ev, EV_TIMEOUT, 1);
}

struct outreg_hooks *hooks_attach_outregs(struct outreg_set *set, struct event_base *base,
                                          struct luart *const *current)
{
    outreg_set_retry_hook(set, retry_hook, (void *)current);
    struct outreg_hooks *h = calloc(1, sizeof *h);
    if (h)
        h->ev = event_new(base, -1, 0, run_changes, h);
    if (!h || !h->ev) {
        log_error("policy", "out of memory: on_registration will not run");
        free(h);
        return NULL;
    }
    h->current = current;
    h->set = set;
    h->tail = &h->head;
    outreg_set_observer(set, on_change, h);
    return h;
}

void hooks_detach_outregs(struct outreg_hooks *h)
{
    if (!h)
        return;
    outreg_set_observer(h->set, NULL, NULL);
    event_free(h->ev);
    while (h->head) {
        struct reg_change *next = h->head->next;
        free(h->head);
        h->head = next;
    }
    free(h);
}

/* ---- Opening ------------------------------------------------------------------ */

static void open_registrations(lua_State *L, struct luart *rt)
{
    luaL_newmetatable(L, REG_MT);
    lua_pushcfunction(L, reg_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, reg_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    api_open_proxy(L, rt, "registrations", regs_index, regs_tostring, regs_call, NULL);
}

static const struct api_help help[] = {
    {"registrations", "outbound registrations to carriers; prints their states",
     "  registrations                the table: name, state, status, expires, next\n"
     "                               refresh, last error\n"
     "  registrations()              an array of handles, in name order\n"
     "  registrations[\"name\"]        a handle, or nil:\n"
     "    .name .state .status .expires .failures .contact .next_refresh\n"
     "    .public_address .last_error .call_id .cseq .server .username .tracing\n"
     "    :refresh()  :disable()  :enable()  :trace(on)  (log the REGISTER exchange)\n"
     "  function on_registration(reg, old_state, new_state)\n"
     "                               a policy's hook: a task per change of state\n",
     (const char *const[]){REG_MT, NULL}},
    {NULL, NULL, NULL, NULL},
};

const struct api_module api_registrations = {
    .name = "registrations", .help = help, .open = open_registrations};
