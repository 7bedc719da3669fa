/* The registrar in Lua: `endpoints`, `accounts`, `suspensions`, and the
 * optional policy hook `on_register`.
 *
 *   endpoints("1001")               array of { contact=, expires=, source=,
 *                                   nat=, transport=, user_agent=,
 *                                   keepalive_misses= }
 *   endpoints.remove("1001", uri)   remove one binding (uri nil: all of them);
 *                                   returns how many went
 *   endpoints.count()               bindings in the switch
 *   accounts                        prints account, bindings, suspended
 *   accounts["1001"]                a live handle: .bindings, .suspended,
 *                                   .suspended_until, .failures, .endpoints,
 *                                   .mapping_gateway; :unsuspend(),
 *                                   :unregister() (removes every binding)
 *   suspensions                     prints what is suspended (accounts and
 *                                   source IPs); suspensions() is an array
 *   suspensions.lift("1001")        lift an account's or an IP's suspension
 *                                   (an IP's flood ban too: security.c)
 *
 *   function on_register(reg)       called for every successful REGISTER
 *     -- reg.account, reg.contact, reg.expires, reg.source, reg.nat,
 *     -- reg.transport, reg.user_agent, reg.call_id, reg.contacts
 *     return false, "reason"        -- refuse with 403
 *     return 488                    -- refuse with that status
 *   end                             -- nothing or true: accept
 *
 * Account handles (handle.h) look their account up on each access, so a
 * handle kept across a reload that removed the account reads as gone. Misuse raises
 * an error; "no such account" returns nil and a message. */
#include "handle.h"
#include "hooks.h"
#include "log.h"
#include "module.h"
#include "runtime.h"
#include "security.h"
#include "sip/registrar.h"
#include "task.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ACCOUNT_MT "moon.account"

static struct registrar *registrar_of(lua_State *L)
{
    return luart_host(RT_UPVALUE(L))->registrar;
}

/* ---- endpoints ---------------------------------------------------------------- */

struct push_ctx {
    lua_State *L;
    int n;
    long long now;
};

static int push_binding(const struct registrar_binding *b, void *arg)
{
    struct push_ctx *c = arg;
    lua_State *L = c->L;
    lua_createtable(L, 0, 7);
    lua_pushstring(L, b->contact);
    lua_setfield(L, -2, "contact");
    long long left = b->expires_at - c->now;
    lua_pushinteger(L, (lua_Integer)(left > 0 ? left : 0));
    lua_setfield(L, -2, "expires");
    lua_pushstring(L, b->source);
    lua_setfield(L, -2, "source");
    lua_pushboolean(L, b->nat);
    lua_setfield(L, -2, "nat");
    lua_pushstring(L, b->transport);
    lua_setfield(L, -2, "transport");
    /* OPTIONS keepalives unanswered in a row (always 0 in crlf mode) */
    lua_pushinteger(L, (lua_Integer)b->keepalive_misses);
    lua_setfield(L, -2, "keepalive_misses");
    if (*b->user_agent) {
        lua_pushstring(L, b->user_agent);
        lua_setfield(L, -2, "user_agent");
    }
    lua_rawseti(L, -2, ++c->n);
    return 0;
}

/* An array of the account's bindings; empty when it has none (or the
 * registrar is not up yet, as while checking policies). */
static void push_endpoints(lua_State *L, struct registrar *r, const char *aor)
{
    lua_newtable(L);
    if (!r)
        return;
    struct push_ctx c = {.L = L, .n = 0, .now = (long long)time(NULL)};
    registrar_bindings(r, aor, push_binding, &c);
}

/* endpoints(aor) */
static int eps_call(lua_State *L)
{
    const char *aor = luaL_checkstring(L, 2);
    push_endpoints(L, registrar_of(L), aor);
    return 1;
}

/* endpoints.remove(aor [, contact]) */
static int eps_remove(lua_State *L)
{
    const char *aor = luaL_checkstring(L, 1);
    const char *contact = luaL_optstring(L, 2, NULL);
    struct registrar *r = registrar_of(L);
    int n = r ? registrar_remove(r, aor, contact) : -ENOENT;
    if (n == -ENOENT) {
        lua_pushnil(L);
        lua_pushfstring(L, "no account \"%s\"", aor);
        return 2;
    }
    lua_pushinteger(L, n);
    return 1;
}

static int eps_count(lua_State *L)
{
    struct registrar *r = registrar_of(L);
    lua_pushinteger(L, r ? (lua_Integer)registrar_binding_count(r) : 0);
    return 1;
}

#define LIST_MAX_ROWS 200

struct list_ctx {
    luaL_Buffer *b;
    long long now;
    size_t rows;
};

static int list_binding(const struct registrar_binding *b, void *arg)
{
    struct list_ctx *c = arg;
    if (c->rows++ >= LIST_MAX_ROWS)
        return 0;
    char line[512];
    long long left = b->expires_at - c->now;
    snprintf(line, sizeof line, "%-16s %-44s %7lld  %-22s %-4s %s\n", b->aor, b->contact,
             left > 0 ? left : 0, b->source, b->transport, b->nat ? "yes" : "no");
    luaL_addstring(c->b, line);
    return 0;
}

static int eps_tostring(lua_State *L)
{
    struct registrar *r = registrar_of(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char line[256];
    snprintf(line, sizeof line, "%-16s %-44s %7s  %-22s %-4s %s\n", "account", "contact",
             "expires", "source", "tp", "nat");
    luaL_addstring(&b, line);
    struct list_ctx c = {.b = &b, .now = (long long)time(NULL)};
    if (r)
        registrar_bindings(r, NULL, list_binding, &c);
    if (c.rows > LIST_MAX_ROWS)
        snprintf(line, sizeof line,
                 "(%zu bindings, the first %d shown; endpoints(\"name\") "
                 "lists one account)",
                 c.rows, LIST_MAX_ROWS);
    else
        snprintf(line, sizeof line, "(%zu bindings)", c.rows);
    luaL_addstring(&b, line);
    luaL_pushresult(&b);
    return 1;
}

/* ---- accounts ------------------------------------------------------------------ */

static void push_account(lua_State *L, struct luart *rt, const char *name)
{
    handle_push(L, rt, name, ACCOUNT_MT);
}

static struct registrar *handle_registrar(struct handle *h)
{
    return luart_host(h->rt)->registrar;
}

static int acc_unsuspend(lua_State *L)
{
    struct handle *h = handle_check(L, 1, ACCOUNT_MT);
    struct registrar *r = handle_registrar(h);
    lua_pushboolean(L, r && registrar_unsuspend(r, h->name) > 0);
    return 1;
}

static int acc_unregister(lua_State *L)
{
    struct handle *h = handle_check(L, 1, ACCOUNT_MT);
    struct registrar *r = handle_registrar(h);
    int n = r ? registrar_remove(r, h->name, NULL) : -ENOENT;
    if (n < 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "no account \"%s\"", h->name);
        return 2;
    }
    lua_pushinteger(L, n);
    return 1;
}

static int acc_index(lua_State *L)
{
    struct handle *h = handle_check(L, 1, ACCOUNT_MT);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "unsuspend") == 0) {
        lua_pushcfunction(L, acc_unsuspend);
        return 1;
    }
    if (strcmp(k, "unregister") == 0) {
        lua_pushcfunction(L, acc_unregister);
        return 1;
    }
    if (strcmp(k, "name") == 0) {
        lua_pushstring(L, h->name);
        return 1;
    }
    struct registrar *r = handle_registrar(h);
    struct registrar_account a;
    if (!r || registrar_account_find(r, h->name, &a) < 0) {
        lua_pushnil(L);
        return 1;
    }
    if (strcmp(k, "bindings") == 0)
        lua_pushinteger(L, a.bindings);
    else if (strcmp(k, "suspended") == 0)
        lua_pushboolean(L, a.suspended_until != 0);
    else if (strcmp(k, "suspended_until") == 0)
        a.suspended_until ? lua_pushnumber(L, (double)a.suspended_until) : lua_pushnil(L);
    else if (strcmp(k, "failures") == 0)
        lua_pushinteger(L, a.failures);
    else if (strcmp(k, "mapping_gateway") == 0)
        lua_pushstring(L, a.mapping_gateway);
    else if (strcmp(k, "endpoints") == 0)
        push_endpoints(L, r, h->name);
    else
        lua_pushnil(L); /* the password is never readable */
    return 1;
}

static int acc_tostring(lua_State *L)
{
    struct handle *h = handle_check(L, 1, ACCOUNT_MT);
    struct registrar *r = handle_registrar(h);
    struct registrar_account a;
    if (!r || registrar_account_find(r, h->name, &a) < 0) {
        lua_pushfstring(L, "account \"%s\" (removed)", h->name);
        return 1;
    }
    lua_pushfstring(L, "account \"%s\": %d bindings%s", h->name, (int)a.bindings,
                    a.suspended_until ? ", suspended" : "");
    return 1;
}

/* accounts[name]: a handle, or nil for a name that is not an account. */
static int accs_index(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    const char *name = luaL_checkstring(L, 2);
    struct registrar *r = luart_host(rt)->registrar;
    struct registrar_account a;
    if (!r || registrar_account_find(r, name, &a) < 0) {
        lua_pushnil(L);
        return 1;
    }
    push_account(L, rt, name);
    return 1;
}

/* accounts(): an array of handles, in name order. */
static int accs_call(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    struct registrar *r = luart_host(rt)->registrar;
    size_t n = r ? registrar_account_count(r) : 0;
    lua_createtable(L, (int)n, 0);
    struct registrar_account a;
    for (size_t i = 0; i < n && registrar_account_at(r, i, &a) == 0; i++) {
        push_account(L, rt, a.name);
        lua_rawseti(L, -2, (int)i + 1);
    }
    return 1;
}

static int accs_tostring(lua_State *L)
{
    struct registrar *r = registrar_of(L);
    size_t n = r ? registrar_account_count(r) : 0;
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char line[256];
    snprintf(line, sizeof line, "%-24s %8s  %-9s %8s  %s\n", "account", "bindings",
             "suspended", "failures", "mapping gateway");
    luaL_addstring(&b, line);
    long long now = (long long)time(NULL);
    struct registrar_account a;
    for (size_t i = 0; i < n && registrar_account_at(r, i, &a) == 0; i++) {
        char susp[32] = "no";
        if (a.suspended_until)
            snprintf(susp, sizeof susp, "%llds", a.suspended_until - now);
        snprintf(line, sizeof line, "%-24s %8u  %-9s %8u  %s\n", a.name, a.bindings, susp,
                 a.failures, a.mapping_gateway);
        luaL_addstring(&b, line);
    }
    snprintf(line, sizeof line, "(%zu accounts, %zu bindings)", n,
             r ? registrar_binding_count(r) : 0);
    luaL_addstring(&b, line);
    luaL_pushresult(&b);
    return 1;
}

/* ---- suspensions -------------------------------------------------------------- */

struct susp_ctx {
    lua_State *L;
    luaL_Buffer *b;
    long long now;
    int n;
};

static int susp_push(const char *kind, const char *name, long long until,
                     unsigned failures, void *arg)
{
    struct susp_ctx *c = arg;
    (void)failures;
    lua_State *L = c->L;
    lua_createtable(L, 0, 3);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
    lua_pushnumber(L, (double)until);
    lua_setfield(L, -2, "until");
    lua_rawseti(L, -2, ++c->n);
    return 0;
}

static int susps_call(lua_State *L)
{
    struct registrar *r = registrar_of(L);
    lua_newtable(L);
    struct susp_ctx c = {.L = L};
    if (r)
        registrar_suspensions(r, susp_push, &c);
    security_push_suspensions(L, RT_UPVALUE(L), c.n); /* flood bans */
    return 1;
}

static int susp_line(const char *kind, const char *name, long long until,
                     unsigned failures, void *arg)
{
    struct susp_ctx *c = arg;
    (void)failures;
    char line[256];
    snprintf(line, sizeof line, "%-8s %-40s %lds\n", kind, name, (long)(until - c->now));
    luaL_addstring(c->b, line);
    c->n++;
    return 0;
}

static int susps_tostring(lua_State *L)
{
    struct registrar *r = registrar_of(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    char line[128];
    snprintf(line, sizeof line, "%-8s %-40s %s\n", "kind", "name", "left");
    luaL_addstring(&b, line);
    struct susp_ctx c = {.L = L, .b = &b, .now = (long long)time(NULL)};
    if (r)
        registrar_suspensions(r, susp_line, &c);
    c.n += security_add_suspension_lines(RT_UPVALUE(L), &b, c.now); /* flood bans */
    snprintf(line, sizeof line, "(%d suspended)", c.n);
    luaL_addstring(&b, line);
    luaL_pushresult(&b);
    return 1;
}

/* suspensions.lift(name_or_ip): true when something was lifted. */
static int susps_lift(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    struct registrar *r = registrar_of(L);
    bool lifted = r && registrar_unsuspend(r, name) > 0;
    lifted |= security_lift(RT_UPVALUE(L), name); /* a flood ban */
    lua_pushboolean(L, lifted);
    return 1;
}

/* ---- The on_register hook ---------------------------------------------------- */

/* The verdict of on_register: nothing or true accepts; false refuses with
 * 403 (a second value is the reason); a number is the status to answer. An
 * error refuses with 500: a broken policy must not open the door. */
static void hook_done(lua_State *L, int nres, const char *error, void *arg)
{
    struct registrar_event *ev = arg;
    if (error) {
        log_error("policy", "on_register(\"%s\"): %s", registrar_event_account(ev),
                  error);
        registrar_event_done(ev, 500, "Policy Error");
        return;
    }
    int base = lua_gettop(L) - nres;
    int status = 0;
    const char *reason = NULL;
    if (nres >= 1) {
        int t = lua_type(L, base + 1);
        if (t == LUA_TBOOLEAN && !lua_toboolean(L, base + 1))
            status = 403;
        else if (t == LUA_TNUMBER)
            status = (int)lua_tointeger(L, base + 1);
        if (nres >= 2 && lua_type(L, base + 2) == LUA_TSTRING)
            reason = lua_tostring(L, base + 2);
    }
    if (status && (status < 200 || status > 699)) {
        log_error("policy", "on_register(\"%s\") returned status %d: not 200..699",
                  registrar_event_account(ev), status);
        status = 500;
        reason = "Policy Error";
    }
    registrar_event_done(ev, status, reason);
}

static void push_reg(lua_State *L, struct registrar_event *ev)
{
    lua_createtable(L, 0, 10);
    lua_pushstring(L, registrar_event_account(ev));
    lua_setfield(L, -2, "account");
    unsigned n = registrar_event_contacts(ev);
    lua_createtable(L, (int)n, 0);
    int first = -1;
    for (unsigned i = 0; i < n; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, registrar_event_contact(ev, i));
        lua_setfield(L, -2, "contact");
        lua_pushinteger(L, registrar_event_expires(ev, i));
        lua_setfield(L, -2, "expires");
        lua_pushboolean(L, registrar_event_nat(ev, i));
        lua_setfield(L, -2, "nat");
        lua_rawseti(L, -2, (int)i + 1);
        if (first < 0 && registrar_event_expires(ev, i) > 0)
            first = (int)i;
    }
    lua_setfield(L, -2, "contacts");
    if (first >= 0) {
        lua_pushstring(L, registrar_event_contact(ev, (unsigned)first));
        lua_setfield(L, -2, "contact");
        lua_pushinteger(L, registrar_event_expires(ev, (unsigned)first));
        lua_setfield(L, -2, "expires");
        lua_pushboolean(L, registrar_event_nat(ev, (unsigned)first));
        lua_setfield(L, -2, "nat");
    }
    lua_pushstring(L, registrar_event_source(ev));
    lua_setfield(L, -2, "source");
    lua_pushstring(L, registrar_event_transport(ev));
    lua_setfield(L, -2, "transport");
    lua_pushstring(L, registrar_event_user_agent(ev));
    lua_setfield(L, -2, "user_agent");
    lua_pushstring(L, registrar_event_call_id(ev));
    lua_setfield(L, -2, "call_id");
}

/* The registrar's hook: run on_register, when the running policy has one,
 * as a task; the REGISTER is answered when it ends. Without the function
 * this costs one global lookup. */
static bool on_register_hook(struct registrar_event *ev, void *arg)
{
    struct luart *const *current = arg;
    struct luart *rt = *current;
    if (!rt)
        return false;
    lua_State *L = luart_state(rt);
    lua_getglobal(L, "on_register");
    if (!lua_isfunction(L, -1) || !ev) {
        bool defined = lua_isfunction(L, -1);
        lua_pop(L, 1);
        return defined;
    }
    push_reg(L, ev);
    luart_spawn(rt, 1, hook_done, ev);
    return true;
}

void hooks_attach_registrar(struct registrar *r, struct luart *const *current)
{
    registrar_set_hook(r, on_register_hook, (void *)current);
}

/* ---- Opening ------------------------------------------------------------------ */

static void open_endpoints(lua_State *L, struct luart *rt)
{
    luaL_newmetatable(L, ACCOUNT_MT);
    lua_pushcfunction(L, acc_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, acc_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
    static const luaL_Reg ep_fields[] = {
        {"remove", eps_remove}, {"count", eps_count}, {NULL, NULL}};
    static const luaL_Reg susp_fields[] = {{"lift", susps_lift}, {NULL, NULL}};
    api_open_proxy(L, rt, "endpoints", NULL, eps_tostring, eps_call, ep_fields);
    api_open_proxy(L, rt, "accounts", accs_index, accs_tostring, accs_call, NULL);
    api_open_proxy(L, rt, "suspensions", NULL, susps_tostring, susps_call, susp_fields);
}

static const struct api_help help[] = {
    {"endpoints", "endpoints(\"1001\"): the bindings of a registered account",
     "  endpoints(\"1001\")            array of { contact, expires, source, nat,\n"
     "                               transport, user_agent, keepalive_misses }\n"
     "  endpoints.remove(\"1001\", uri) remove a binding (uri nil: all); the count\n"
     "  endpoints.count()            bindings in the switch\n",
     NULL},
    {"accounts", "endpoint accounts; prints account, bindings, suspended",
     "  accounts                     the table: account, bindings, suspended\n"
     "  accounts[\"1001\"]             a handle: .name .bindings .suspended\n"
     "    .suspended_until .failures .endpoints .mapping_gateway\n"
     "    :unsuspend()  :unregister()  (removes every binding)\n",
     (const char *const[]){ACCOUNT_MT, NULL}},
    {"suspensions", "suspended accounts and source IPs, flood bans; prints them",
     "  suspensions                  the table: kind, name, seconds left\n"
     "  suspensions()                an array of { kind, name, until }; kind is\n"
     "                               \"account\", \"source\" or \"flood\"\n"
     "  suspensions.lift(\"1001\")     lift an account's or an IP's suspension\n"
     "                               (or an IP's flood ban)\n",
     NULL},
    {NULL, NULL, NULL, NULL},
};

const struct api_module api_endpoints = {
    .name = "endpoints, accounts, suspensions", .help = help, .open = open_endpoints};
