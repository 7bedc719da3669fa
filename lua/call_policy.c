/* The policy's say over calls (hooks.h):
 *
 *   function route(call)            a new call: where to send it
 *   function on_failure(call, attempt)  an attempt failed: what next
 *   function on_call_end(cdr)       a call's record is durable
 *   callee_from / caller_from / peer_number_information = function(req)
 *                                   the number, from the INVITE
 *   callee_rewrite rules            applied with Lua's own string.gsub
 *
 * route() and on_failure() run in a task of their own each, with
 * sip.route_timeout seconds of wall time (waits included): past it the call
 * gets 500 and the error is logged with the file and line where the hook
 * waits. An error gives 500 too. What they read and write is the call
 * object (call_policy_fields); what they return is the decision:
 *
 *   nothing                 route: default routing; on_failure: failover_codes
 *   "continue"              on_failure: the next target, whatever the status
 *   { "a", { gateway = "b", callee = "0044...", timeout = 5 },
 *     { account = "1001" } }    targets in order (on_failure: replacing
 *                               those not tried yet; {} : none left)
 *   { gateway = ... } or { account = ... }   one target
 *   "a", "b"                the names of routing gateways
 *   403, "Blocked"          the caller gets it; the CDR records it
 *
 * on_call_end(cdr) runs in a task per record, after the store's commit
 * that made the records of the last 10 ms durable; a batch is flushed at
 * once when the policy is replaced. The number functions run without a
 * task (they may not wait), as the INVITE is handled. */
#include "calls.h"
#include "cdr.h"
#include "config.h"
#include "hooks.h"
#include "log.h"
#include "module.h"
#include "runtime.h"
#include "sip/call.h"
#include "sipmsg.h"
#include "store.h"
#include "task.h"

#include <lauxlib.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/url.h>

#define CALL_POLICY_MT "moon.call.policy"
#define END_QUEUE_MT "moon.call.end_queue"
#define MAX_TARGETS 32
#define NUM_MAX 128
/* on_call_end: records of this many milliseconds are shipped together. */
#define END_BATCH_MS 10

/* ---- The call object of route() and on_failure() ---------------------------------- */

const char *const call_policy_fields[] = {
    "id",     "direction",  "source",      "mapping_gateway", "caller",
    "callee", "display",    "request_uri", "source_address",  "request",
    "header", "set_header", NULL};

enum {
    P_ID,
    P_DIRECTION,
    P_SOURCE,
    P_MAPPING,
    P_CALLER,
    P_CALLEE,
    P_DISPLAY,
    P_RURI,
    P_ADDRESS,
    P_REQUEST,
    P_HEADER,
    P_SET_HEADER
};

const char *const call_attempt_fields[] = {"gateway", "callee",   "status",
                                           "reason",  "duration", NULL};

/* The object names its query until the decision; then it reads as empty. */
struct qref {
    struct call_query *q;
};

static struct qref *check_qref(lua_State *L)
{
    return luaL_checkudata(L, 1, CALL_POLICY_MT);
}

static int l_header(lua_State *L)
{
    struct qref *r = check_qref(L);
    const char *name = luaL_checkstring(L, 2);
    sipmsg_push_header(L, r->q ? call_query_request(r->q) : NULL, name);
    return 1;
}

static int l_set_header(lua_State *L)
{
    struct qref *r = check_qref(L);
    const char *name = luaL_checkstring(L, 2);
    const char *value = lua_isnoneornil(L, 3) ? NULL : luaL_checkstring(L, 3);
    if (!r->q)
        return luaL_error(L, "set_header: the call was decided already");
    int rc = call_query_set_header(r->q, name, value);
    if (rc == -ENOMEM)
        return luaL_error(L, "set_header: out of memory");
    if (rc < 0)
        return luaL_error(L,
                          "bad 'set_header' argument: header '%s' is the switch's own, "
                          "no token, or its value has CR or LF",
                          name);
    return 0;
}

static int query_index(lua_State *L)
{
    struct qref *r = check_qref(L);
    int f = api_field_index(call_policy_fields, luaL_checkstring(L, 2));
    if (f == P_HEADER || f == P_SET_HEADER) {
        lua_pushcfunction(L, f == P_HEADER ? l_header : l_set_header);
        return 1;
    }
    if (!r->q) {
        lua_pushnil(L);
        return 1;
    }
    const struct call_query_info *i = call_query_info(r->q);
    msg_t *msg = call_query_request(r->q);
    sip_t const *sip = msg ? sip_object(msg) : NULL;
    char buf[1024];
    switch (f) {
    case P_ID:
        lua_pushnumber(L, (double)i->id);
        break;
    case P_DIRECTION:
        lua_pushstring(L, i->inbound ? "inbound" : "outbound");
        break;
    case P_SOURCE:
    case P_MAPPING:
        api_push_string(L, i->source);
        break;
    case P_CALLER:
        lua_pushstring(L, i->caller);
        break;
    case P_CALLEE:
        lua_pushstring(L, i->callee);
        break;
    case P_DISPLAY:
        api_push_string(L, i->display);
        break;
    case P_RURI:
        if (sip && sip->sip_request &&
            url_e(buf, sizeof buf, sip->sip_request->rq_url) > 0)
            lua_pushstring(L, buf);
        else
            lua_pushnil(L);
        break;
    case P_ADDRESS:
        api_push_string(L, i->source_address);
        break;
    case P_REQUEST:
        sipmsg_push(L, msg);
        break;
    default:
        lua_pushnil(L);
        break;
    }
    return 1;
}

static int query_newindex(lua_State *L)
{
    struct qref *r = check_qref(L);
    const char *k = luaL_checkstring(L, 2);
    int f = api_field_index(call_policy_fields, k);
    if (f != P_CALLER && f != P_CALLEE && f != P_DISPLAY)
        return luaL_error(L, "call.%s cannot be set (caller, callee and display can)", k);
    if (!r->q)
        return luaL_error(L, "call.%s: the call was decided already", k);
    if (lua_type(L, 3) != LUA_TSTRING && lua_type(L, 3) != LUA_TNUMBER)
        return luaL_error(L, "bad 'call.%s' value: a string, not %s", k,
                          luaL_typename(L, 3));
    const char *v = lua_tostring(L, 3);
    enum call_query_field which = f == P_CALLER   ? CALL_FIELD_CALLER
                                  : f == P_CALLEE ? CALL_FIELD_CALLEE
                                                  : CALL_FIELD_DISPLAY;
    if (call_query_set(r->q, which, v) < 0)
        return luaL_error(
            L,
            which == CALL_FIELD_DISPLAY
                ? "bad 'call.%s' value \"%s\": printable, without quotes or "
                  "backslashes"
                : "bad 'call.%s' value \"%s\": 1 to 127 of letters, digits and "
                  "+ * # . - _",
            k, v);
    return 0;
}

static int query_tostring(lua_State *L)
{
    struct qref *r = check_qref(L);
    if (!r->q) {
        lua_pushliteral(L, "call (decided)");
        return 1;
    }
    const struct call_query_info *i = call_query_info(r->q);
    lua_pushfstring(L, "call %d: %s %s -> %s from %s", (int)i->id,
                    i->inbound ? "inbound" : "outbound", i->caller, i->callee, i->source);
    return 1;
}

static void push_attempt(lua_State *L, const struct call_query_info *i)
{
    lua_createtable(L, 0, 5);
    lua_pushstring(L, i->gateway);
    lua_setfield(L, -2, "gateway");
    api_push_string(L, i->routed_callee);
    lua_setfield(L, -2, "callee");
    lua_pushinteger(L, i->status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, i->reason);
    lua_setfield(L, -2, "reason");
    lua_pushnumber(L, floor(i->duration * 1000 + 0.5) / 1000);
    lua_setfield(L, -2, "duration");
}

/* ---- Decisions ------------------------------------------------------------------ */

/* What a decision points at while it is handed over: the targets, and
 * copies of numbers and reasons (a number converted to a string lives
 * only on the stack). */
struct parsed {
    struct call_decision d;
    struct call_target t[MAX_TARGETS];
    char callee[MAX_TARGETS][NUM_MAX];
    char reason[128];
    char err[256];
};

static int bad(struct parsed *p, const char *fmt, const char *what)
{
    snprintf(p->err, sizeof p->err, fmt, what);
    return -1;
}

/* One target from the table at idx: { gateway = | account =, callee =,
 * timeout = }. */
static int parse_target(lua_State *L, int idx, struct parsed *p, size_t k)
{
    struct call_target *t = &p->t[k];
    *t = (struct call_target){0};
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        if (strcmp(key, "gateway") && strcmp(key, "account") && strcmp(key, "callee") &&
            strcmp(key, "timeout")) {
            lua_pop(L, 1);
            return bad(p, "a target takes gateway, account, callee and timeout, not '%s'",
                       *key ? key : "a non-string key");
        }
    }
    lua_getfield(L, idx, "gateway");
    lua_getfield(L, idx, "account");
    lua_getfield(L, idx, "callee");
    lua_getfield(L, idx, "timeout");
    int base = lua_gettop(L) - 4, rc = 0;
    bool gw = lua_type(L, base + 1) == LUA_TSTRING,
         acc = lua_type(L, base + 2) == LUA_TSTRING;
    if (gw == acc || (!gw && !lua_isnil(L, base + 1)) ||
        (!acc && !lua_isnil(L, base + 2)))
        rc = bad(p, "a target names a gateway or an account (a string)%s", "");
    t->gateway = gw ? lua_tostring(L, base + 1) : NULL; /* anchored by the table */
    t->account = acc ? lua_tostring(L, base + 2) : NULL;
    int ct = lua_type(L, base + 3);
    if (rc == 0 && (ct == LUA_TSTRING || ct == LUA_TNUMBER)) {
        snprintf(p->callee[k], NUM_MAX, "%s", lua_tostring(L, base + 3));
        t->callee = p->callee[k];
    } else if (rc == 0 && ct != LUA_TNIL) {
        rc = bad(p, "a target's callee is a string, not %s", lua_typename(L, ct));
    }
    if (rc == 0 && !lua_isnil(L, base + 4)) {
        double s = lua_tonumber(L, base + 4);
        if (lua_type(L, base + 4) != LUA_TNUMBER || s < 1 || s > 300 || s != floor(s))
            rc = bad(p, "a target's timeout is whole seconds from 1 to 300%s", "");
        t->timeout = (int)s;
    }
    lua_pop(L, 4);
    return rc;
}

/* An array of targets (names or tables), or one target table. */
static int parse_targets(lua_State *L, int idx, struct parsed *p, bool route)
{
    lua_getfield(L, idx, "gateway");
    lua_getfield(L, idx, "account");
    bool single = !lua_isnil(L, -1) || !lua_isnil(L, -2);
    lua_pop(L, 2);
    p->d.verdict = CALL_TARGETS;
    p->d.targets = p->t;
    if (single) {
        p->d.n = 1;
        return parse_target(L, idx, p, 0);
    }
    size_t n = lua_objlen(L, idx);
    if (n == 0 && route) {
        p->d.verdict = CALL_DEFAULT; /* an empty list: prefix and priority */
        return 0;
    }
    if (n > MAX_TARGETS)
        n = MAX_TARGETS;
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, idx, (int)i + 1);
        int rc = 0;
        if (lua_type(L, -1) == LUA_TSTRING)
            p->t[i] = (struct call_target){.gateway = lua_tostring(L, -1)};
        else if (lua_istable(L, -1))
            rc = parse_target(L, lua_gettop(L), p, i);
        else
            rc = bad(p, "a target is a gateway name or a table, not %s",
                     luaL_typename(L, -1));
        lua_pop(L, 1); /* the table anchors its strings */
        if (rc < 0)
            return rc;
    }
    p->d.n = n;
    return 0;
}

/* The hook's results (nres on top of L) as a decision. Returns 0, or -1
 * with p->err. */
static int parse_decision(lua_State *L, int nres, bool route, struct parsed *p)
{
    int v = lua_gettop(L) - nres + 1;
    p->d = (struct call_decision){.verdict = CALL_DEFAULT};
    if (nres == 0 || lua_isnil(L, v))
        return 0;
    switch (lua_type(L, v)) {
    case LUA_TNUMBER: {
        double s = lua_tonumber(L, v);
        if (s != floor(s) || s < 300 || s > 699)
            return bad(p, "a status is a whole number from 300 to 699%s", "");
        p->d = (struct call_decision){.verdict = CALL_REFUSE, .status = (int)s};
        if (nres >= 2 && !lua_isnil(L, v + 1)) {
            const char *r = lua_tostring(L, v + 1);
            if (!r || strpbrk(r, "\r\n") || strlen(r) >= sizeof p->reason)
                return bad(p, "a reason is one line of text%s", "");
            snprintf(p->reason, sizeof p->reason, "%s", r);
            p->d.reason = p->reason;
        }
        return 0;
    }
    case LUA_TSTRING:
        if (!route && strcmp(lua_tostring(L, v), "continue") == 0) {
            p->d.verdict = CALL_CONTINUE;
            return 0;
        }
        p->d = (struct call_decision){.verdict = CALL_TARGETS, .targets = p->t};
        for (int i = 0; i < nres && p->d.n < MAX_TARGETS; i++)
            if (lua_type(L, v + i) == LUA_TSTRING)
                p->t[p->d.n++] = (struct call_target){.gateway = lua_tostring(L, v + i)};
        return 0;
    case LUA_TTABLE:
        return parse_targets(L, v, p, route);
    default:
        return bad(p, "it returned %s: a list of targets, a status, or nothing",
                   luaL_typename(L, v));
    }
}

/* ---- The route and on_failure hooks --------------------------------------------- */

struct ask {
    struct luart *rt;
    struct call_query *q;
    struct qref *obj; /* the call object, anchored by `ref` */
    int ref;
    bool route;
};

static void ask_done(lua_State *L, int nres, const char *error, void *arg)
{
    struct ask *a = arg;
    const char *fn = a->route ? "route" : "on_failure";
    struct parsed *p = calloc(1, sizeof *p);
    struct call_decision fail = {.verdict = CALL_ERROR};
    a->obj->q = NULL;
    if (error) {
        log_error("policy", "%s(): %s: the call gets 500", fn, error);
    } else if (!p) {
        log_error("policy", "%s(): out of memory: the call gets 500", fn);
    } else if (parse_decision(L, nres, a->route, p) < 0) {
        log_error("policy", "%s(): bad result: %s: the call gets 500", fn, p->err);
        p->d = fail;
    }
    call_query_done(a->q, error || !p ? &fail : &p->d);
    luaL_unref(luart_state(a->rt), LUA_REGISTRYINDEX, a->ref);
    free(p);
    free(a);
}

/* Ask route(call) or on_failure(call, attempt), when the policy has it. */
static bool query_hook(struct call_query *q, void *arg)
{
    struct luart *const *current = arg;
    struct luart *rt = *current;
    lua_State *L = luart_state(rt);
    const struct call_query_info *info = call_query_info(q);
    bool route = info->kind == CALL_QUERY_ROUTE;
    lua_getglobal(L, route ? "route" : "on_failure");
    struct ask *a = lua_isfunction(L, -1) ? calloc(1, sizeof *a) : NULL;
    if (!a) {
        lua_pop(L, 1);
        return false;
    }
    a->rt = rt;
    a->q = q;
    a->route = route;
    a->obj = lua_newuserdata(L, sizeof *a->obj); /* fn obj */
    a->obj->q = q;
    luaL_getmetatable(L, CALL_POLICY_MT);
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    a->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (!route)
        push_attempt(L, info); /* fn obj attempt */
    const struct config *cfg = luart_config(rt);
    double budget = cfg ? config_switch(cfg)->sip.route_timeout : 5;
    luart_spawn_within(rt, route ? 1 : 2, budget, ask_done, a); /* done follows */
    return true;
}

/* ---- Number functions and callee rewrites ---------------------------------------- */

/* callee_from, caller_from or peer_number_information as a function of the
 * INVITE: its number, without a task. */
static int number_hook(int ref, msg_t *msg, char *out, size_t outlen, void *arg)
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
    sipmsg_push(L, msg);
    if (luart_call(rt, 1, 1, err, sizeof err) < 0) {
        log_error("policy", "number function: %s", err);
        return -1;
    }
    int t = lua_type(L, -1), rc = -1;
    if (t == LUA_TSTRING || t == LUA_TNUMBER) {
        snprintf(out, outlen, "%s", lua_tostring(L, -1));
        rc = 0;
    } else if (t != LUA_TNIL) {
        log_error("policy", "number function returned %s, not a string",
                  lua_typename(L, t));
    }
    lua_pop(L, 1);
    return rc;
}

/* A gateway's callee_rewrite rule, with Lua's own string.gsub so that the
 * rules mean what they mean in Lua. Runs under the time budget. */
static int rewrite_hook(const char *pattern, const char *replacement, const char *in,
                        char *out, size_t outlen, void *arg)
{
    struct luart *const *current = arg;
    struct luart *rt = *current;
    lua_State *L = luart_state(rt);
    char err[256];
    lua_getglobal(L, "string");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return -1;
    }
    lua_getfield(L, -1, "gsub");
    lua_remove(L, -2);
    lua_pushstring(L, in);
    lua_pushstring(L, pattern);
    lua_pushstring(L, replacement);
    if (luart_call(rt, 3, 1, err, sizeof err) < 0) {
        log_error("policy", "callee_rewrite { \"%s\", \"%s\" }: %s", pattern, replacement,
                  err);
        return -1;
    }
    const char *s = lua_tostring(L, -1);
    int rc = s && strlen(s) < outlen ? 0 : -1;
    if (rc == 0)
        memcpy(out, s, strlen(s) + 1);
    lua_pop(L, 1);
    return rc;
}

/* ---- on_call_end ------------------------------------------------------------------ */

/* Records waiting for their commit, per policy state: a userdata (this)
 * whose environment table holds the CDR tables in order. A batch of them
 * goes to the store every END_BATCH_MS; on_call_end runs for each once the
 * store says the batch is on disk (the loop does not wait for the disk). */
struct end_queue {
    struct event *ev; /* the batch's timer; NULL without an event loop */
    struct luart *rt;
    bool armed;
    unsigned flights; /* batches handed to the store, not yet called back */
};

/* One batch waiting for the store: its records' table, referenced from the
 * registry. */
struct end_flight {
    struct end_queue *e;
    int ref;
};

static char end_queue_key;

static struct end_queue *end_queue_get(lua_State *L)
{
    lua_pushlightuserdata(L, &end_queue_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    struct end_queue *e = lua_touserdata(L, -1); /* queue */
    return e;
}

static void end_task_done(lua_State *L, int nres, const char *error, void *arg)
{
    (void)L;
    (void)nres;
    (void)arg;
    if (error)
        log_error("policy", "on_call_end(): %s", error);
}

/* One task per record of the table registry[ref], which is released. */
static void end_run(struct end_queue *e, int ref)
{
    struct luart *rt = e->rt;
    lua_State *L = luart_state(rt);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    luaL_unref(L, LUA_REGISTRYINDEX, ref);
    int records = lua_gettop(L);
    size_t n = lua_objlen(L, records);
    for (size_t i = 1; i <= n; i++) {
        lua_getglobal(L, "on_call_end");
        if (!lua_isfunction(L, -1)) {
            lua_pop(L, 1);
            break;
        }
        lua_rawgeti(L, records, (int)i);
        luart_spawn(rt, 1, end_task_done, NULL);
    }
    lua_pop(L, 1);
}

/* The store committed the batch (or failed to, which it logged: the
 * records still go to on_call_end, the one copy left). */
static void end_durable(void *arg, int rc)
{
    (void)rc;
    struct end_flight *f = arg;
    f->e->flights--;
    end_run(f->e, f->ref);
    free(f);
}

/* The waiting records become a batch: on_call_end runs for them once they
 * are durable. Costs a registry reference and a small malloc per batch. */
static void end_flush(struct end_queue *e)
{
    struct luart *rt = e->rt;
    lua_State *L = luart_state(rt);
    struct store *store = luart_host(rt)->store;
    e->armed = false;
    lua_pushlightuserdata(L, &end_queue_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_getfenv(L, -1); /* ud queue */
    if (lua_objlen(L, -1) == 0) {
        lua_pop(L, 2);
        return;
    }
    int ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the queue */
    lua_newtable(L);
    lua_setfenv(L, -2); /* the next batch starts empty */
    lua_pop(L, 1);
    struct end_flight *f = store ? malloc(sizeof *f) : NULL;
    if (f) {
        *f = (struct end_flight){.e = e, .ref = ref};
        if (store_when_durable(store, end_durable, f) == 0) {
            e->flights++;
            return;
        }
        free(f);
    }
    store_commit(store); /* no store, or no memory: wait here */
    end_run(e, ref);
}

static void on_end_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    end_flush(arg);
}

static void end_hook(const struct cdr *r, void *arg)
{
    struct luart *const *current = arg;
    struct luart *rt = *current;
    lua_State *L = luart_state(rt);
    lua_getglobal(L, "on_call_end");
    bool wanted = lua_isfunction(L, -1);
    lua_pop(L, 1);
    struct end_queue *e = wanted ? end_queue_get(L) : NULL;
    if (!e)
        return;
    lua_getfenv(L, -1); /* ud queue */
    api_push_cdr(L, r);
    lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
    lua_pop(L, 2);
    if (!e->armed && e->ev) {
        struct timeval tv = {0, END_BATCH_MS * 1000};
        e->armed = evtimer_add(e->ev, &tv) == 0;
    }
}

static int end_queue_gc(lua_State *L)
{
    struct end_queue *e = lua_touserdata(L, 1);
    if (e->ev)
        event_free(e->ev);
    e->ev = NULL;
    return 0;
}

/* The policy is replaced (or the switch stops): its pending records go to
 * its on_call_end now, the first time. */
static void retire_call_policy(lua_State *L)
{
    struct end_queue *e = end_queue_get(L);
    lua_pop(L, 1);
    if (!e)
        return;
    if (e->armed) {
        event_del(e->ev);
        end_flush(e);
    }
    /* The batches the store has not called back for run in this state
     * while it still lives. */
    if (e->flights)
        store_commit(luart_host(e->rt)->store);
}

void hooks_attach_calls(struct calls *cs, struct luart *const *current)
{
    calls_set_query_hook(cs, query_hook, (void *)current);
    calls_set_rewrite_hook(cs, rewrite_hook, (void *)current);
    calls_set_number_hook(cs, number_hook, (void *)current);
    calls_set_end_hook(cs, end_hook, (void *)current);
}

/* ---- Opening ------------------------------------------------------------------------
 */

static void open_call_policy(lua_State *L, struct luart *rt)
{
    luaL_newmetatable(L, CALL_POLICY_MT);
    lua_pushcfunction(L, query_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, query_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, query_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    lua_pushlightuserdata(L, &end_queue_key);
    struct end_queue *e = lua_newuserdata(L, sizeof *e);
    *e = (struct end_queue){.rt = rt};
    struct event_base *base = luart_host(rt)->base;
    if (base)
        e->ev = evtimer_new(base, on_end_timer, e);
    lua_newtable(L);
    lua_pushcfunction(L, end_queue_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_newtable(L);
    lua_setfenv(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
}

/* It opens no global: the call and attempt objects reach the hooks as
 * arguments (documented in docs/scripting.md). */
static const struct api_help no_globals[] = {{NULL, NULL, NULL, NULL}};

const struct api_module api_call_policy = {.name = "route, on_failure, on_call_end",
                                           .help = no_globals,
                                           .open = open_call_policy,
                                           .retire = retire_call_policy};
