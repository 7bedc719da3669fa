/* SIP from Lua: client transactions (`sip.request{...}`, `tx:wait()`),
 * out-of-dialog requests the core does not handle (`on_request(req)`), and
 * the message objects both use.
 *
 * A transaction object owns its nta client transaction. Waiting yields the
 * calling task; nta's callback stores the answer and wakes the task from the
 * loop. Dropping the object (garbage) destroys the nta transaction, so an
 * abandoned request costs nothing after the next collection.
 *
 * Errors: misuse (a wrong argument) raises, naming the argument; the
 * network (no answer, no route) answers with a status, as nta reports it:
 * 408, 503. */
#define NTA_OUTGOING_MAGIC_T struct ltx

#include "random.h"
#include "hooks.h"
#include "log.h"
#include "module.h"
#include "runtime.h"
#include "sip/agent.h"
#include "sipmsg.h"
#include "strbuf.h"
#include "task.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <sofia-sip/msg.h>
#include <sofia-sip/msg_header.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>

#define MSG_MT "moon.sip.message"
#define TX_MT "moon.sip.transaction"
#define DEFAULT_MAX_PENDING 10000

/* Transactions started from Lua and not yet collected, across runtimes. */
static unsigned pending_transactions;

/* Registry key of a weak-valued table: lightuserdata(struct ltx) -> its
 * object, so nta's callback can find the Lua side without keeping it alive.
 * The on_provisional function hangs off the object's environment table, so
 * a callback that refers to its own transaction makes a cycle the collector
 * can see through. */
static char tx_objects_key;

/* ---- Messages ------------------------------------------------------------ */

/* A server transaction waiting for the policy's answer. Shared by the
 * request object and the task running on_request: freed when both let go. */
struct incoming {
    nta_incoming_t *irq;
    int refs;
    int replied;
};

struct lmsg {
    msg_t *msg; /* a reference of ours */
    sip_t *sip;
    struct incoming *in; /* requests given to on_request */
};

static void incoming_unref(struct incoming *in)
{
    if (in && --in->refs == 0) {
        if (in->irq)
            nta_incoming_destroy(in->irq);
        free(in);
    }
}

/* Push a message object; takes over the reference `msg`. */
static struct lmsg *push_msg(lua_State *L, msg_t *msg, struct incoming *in)
{
    struct lmsg *m = lua_newuserdata(L, sizeof *m);
    m->msg = msg;
    m->sip = msg ? sip_object(msg) : NULL;
    m->in = in;
    if (in)
        in->refs++;
    luaL_getmetatable(L, MSG_MT);
    lua_setmetatable(L, -2);
    return m;
}

static int msg_gc(lua_State *L)
{
    struct lmsg *m = luaL_checkudata(L, 1, MSG_MT);
    if (m->msg)
        msg_destroy(m->msg);
    m->msg = NULL;
    incoming_unref(m->in);
    m->in = NULL;
    return 0;
}

static int is_header_fragment(msg_header_t const *h)
{
    msg_hclass_t const *c = h->sh_class;
    return c && c != sip_request_class && c != sip_status_class &&
           c != sip_separator_class && c != sip_payload_class && c != sip_error_class;
}

/* Does header h answer to `name` (full or compact, any case)? */
static int header_named(msg_header_t const *h, const char *name)
{
    msg_hclass_t const *c = h->sh_class;
    if (c == sip_unknown_class)
        return strcasecmp(((msg_unknown_t const *)h)->un_name, name) == 0;
    if (c->hc_name && strcasecmp(c->hc_name, name) == 0)
        return 1;
    return c->hc_short[0] && name[1] == '\0' &&
           tolower((unsigned char)c->hc_short[0]) == tolower((unsigned char)name[0]);
}

static void push_header_value(lua_State *L, msg_header_t const *h)
{
    if (h->sh_class == sip_unknown_class) {
        lua_pushstring(L, ((msg_unknown_t const *)h)->un_value);
        return;
    }
    char buf[2048];
    issize_t n = msg_header_field_e(buf, sizeof buf, h, 0);
    if (n < 0 || (size_t)n >= sizeof buf)
        n = 0;
    lua_pushlstring(L, buf, (size_t)n);
}

void sipmsg_push_header(lua_State *L, msg_t *msg, const char *name)
{
    if (msg)
        for (msg_header_t *h = *msg_chain_head(msg); h; h = h->sh_succ)
            if (is_header_fragment(h) && header_named(h, name)) {
                push_header_value(L, h);
                return;
            }
    lua_pushnil(L);
}

void sipmsg_push(lua_State *L, msg_t *msg)
{
    push_msg(L, msg ? msg_ref_create(msg) : NULL, NULL);
}

/* m:header(name): the first value, or nil. O(headers). */
static int msg_header(lua_State *L)
{
    struct lmsg *m = luaL_checkudata(L, 1, MSG_MT);
    sipmsg_push_header(L, m->msg, luaL_checkstring(L, 2));
    return 1;
}

/* m:headers(name): every value, in order (an empty table if none). */
static int msg_headers(lua_State *L)
{
    struct lmsg *m = luaL_checkudata(L, 1, MSG_MT);
    const char *name = luaL_checkstring(L, 2);
    lua_newtable(L);
    int n = 0;
    if (m->msg)
        for (msg_header_t *h = *msg_chain_head(m->msg); h; h = h->sh_succ)
            if (is_header_fragment(h) && header_named(h, name)) {
                push_header_value(L, h);
                lua_rawseti(L, -2, ++n);
            }
    return 1;
}

/* A parsed URI: { uri =, scheme =, user =, host =, port =, params = {...} }
 * plus display and tag for name-addr headers. */
static void push_url(lua_State *L, url_t const *u, const char *display, const char *tag)
{
    char buf[1024];
    lua_createtable(L, 0, 8);
    url_e(buf, sizeof buf, u);
    lua_pushstring(L, buf);
    lua_setfield(L, -2, "uri");
    lua_pushstring(L, u->url_scheme ? u->url_scheme : "sip");
    lua_setfield(L, -2, "scheme");
#define FIELD(v, k)                                                                   \
    if (v) {                                                                          \
        lua_pushstring(L, v);                                                         \
        lua_setfield(L, -2, k);                                                       \
    }
    FIELD(u->url_user, "user");
    FIELD(u->url_host, "host");
    if (display && *display) {
        lua_pushstring(L, display);
        lua_setfield(L, -2, "display");
    }
    FIELD(tag, "tag");
#undef FIELD
    if (u->url_port) {
        lua_pushnumber(L, atoi(u->url_port));
        lua_setfield(L, -2, "port");
    }
    lua_newtable(L);
    if (u->url_params) { /* "a=1;lr;transport=udp" */
        char params[512];
        snprintf(params, sizeof params, "%s", u->url_params);
        char *save = NULL;
        for (char *p = strtok_r(params, ";", &save); p; p = strtok_r(NULL, ";", &save)) {
            char *eq = strchr(p, '=');
            if (eq) {
                *eq = '\0';
                lua_pushstring(L, eq + 1);
            } else {
                lua_pushboolean(L, 1);
            }
            lua_setfield(L, -2, p);
        }
    }
    lua_setfield(L, -2, "params");
}

static int msg_index(lua_State *L)
{
    struct lmsg *m = luaL_checkudata(L, 1, MSG_MT);
    const char *k = luaL_checkstring(L, 2);
    sip_t const *sip = m->sip;
    if (strcmp(k, "header") == 0) {
        lua_pushcfunction(L, msg_header);
        return 1;
    }
    if (strcmp(k, "headers") == 0) {
        lua_pushcfunction(L, msg_headers);
        return 1;
    }
    if (strcmp(k, "reply") == 0 && m->in) {
        lua_getfield(L, lua_upvalueindex(1), "reply");
        return 1;
    }
    if (!sip) {
        lua_pushnil(L);
        return 1;
    }
    if (strcmp(k, "method") == 0 && sip->sip_request)
        lua_pushstring(L, sip->sip_request->rq_method_name);
    else if (strcmp(k, "uri") == 0 && sip->sip_request) {
        char buf[1024];
        url_e(buf, sizeof buf, sip->sip_request->rq_url);
        lua_pushstring(L, buf);
    } else if (strcmp(k, "request_uri") == 0 && sip->sip_request)
        push_url(L, sip->sip_request->rq_url, NULL, NULL);
    else if (strcmp(k, "status") == 0 && sip->sip_status)
        lua_pushinteger(L, sip->sip_status->st_status);
    else if (strcmp(k, "reason") == 0 && sip->sip_status)
        lua_pushstring(L, sip->sip_status->st_phrase ? sip->sip_status->st_phrase : "");
    else if (strcmp(k, "body") == 0 && sip->sip_payload)
        lua_pushlstring(L, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
    else if (strcmp(k, "from") == 0 && sip->sip_from)
        push_url(L, sip->sip_from->a_url, sip->sip_from->a_display, sip->sip_from->a_tag);
    else if (strcmp(k, "to") == 0 && sip->sip_to)
        push_url(L, sip->sip_to->a_url, sip->sip_to->a_display, sip->sip_to->a_tag);
    else if (strcmp(k, "contact") == 0 && sip->sip_contact)
        push_url(L, sip->sip_contact->m_url, sip->sip_contact->m_display, NULL);
    else if (strcmp(k, "call_id") == 0 && sip->sip_call_id)
        lua_pushstring(L, sip->sip_call_id->i_id);
    else if (strcmp(k, "cseq") == 0 && sip->sip_cseq)
        lua_pushnumber(L, sip->sip_cseq->cs_seq);
    else
        lua_pushnil(L);
    return 1;
}

static int msg_newindex(lua_State *L)
{
    return luaL_error(L, "SIP messages are read-only (field '%s')", luaL_checkstring(L, 2));
}

static int msg_tostring(lua_State *L)
{
    struct lmsg *m = luaL_checkudata(L, 1, MSG_MT);
    if (m->sip && m->sip->sip_request)
        lua_pushfstring(L, "SIP request %s", m->sip->sip_request->rq_method_name);
    else if (m->sip && m->sip->sip_status)
        lua_pushfstring(L, "SIP response %d %s", m->sip->sip_status->st_status,
                        m->sip->sip_status->st_phrase ? m->sip->sip_status->st_phrase : "");
    else
        lua_pushliteral(L, "SIP message");
    return 1;
}

/* "Name: value\r\n" for each pair of the table at idx, appended to b. */
static void collect_headers(lua_State *L, int idx, const char *what, struct strbuf *b)
{
    if (lua_isnoneornil(L, idx))
        return;
    if (!lua_istable(L, idx)) {
        strbuf_free(b);
        luaL_error(L, "bad '%s' argument: a table of header name = value", what);
    }
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        if (lua_type(L, -2) != LUA_TSTRING ||
            (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)) {
            strbuf_free(b);
            luaL_error(L, "bad '%s' argument: header names and values must be strings", what);
        }
        const char *name = lua_tostring(L, -2), *value = lua_tostring(L, -1);
        if (!*name || strpbrk(name, ":\r\n \t") || strpbrk(value, "\r\n")) {
            strbuf_free(b);
            luaL_error(L, "bad '%s' argument: header '%s' has a forbidden character", what,
                       name);
        }
        strbuf_addf(b, "%s: %s\r\n", name, value);
        lua_pop(L, 1);
    }
}

/* req:reply(code, reason, headers): answer an on_request request, once. */
static int msg_reply(lua_State *L)
{
    struct lmsg *m = luaL_checkudata(L, 1, MSG_MT);
    int code = (int)luaL_checkinteger(L, 2);
    const char *reason = luaL_optstring(L, 3, NULL);
    if (!m->in)
        return luaL_error(L, "reply: only requests given to on_request can be answered");
    if (code < 100 || code > 699)
        return luaL_argerror(L, 2, "a SIP status from 100 to 699");
    if (m->in->replied)
        return luaL_error(L, "reply: this request was already answered");
    struct strbuf b = {0};
    collect_headers(L, 4, "headers", &b);
    if (!reason)
        reason = sip_status_phrase(code) ? sip_status_phrase(code) : "Unknown";
    nta_incoming_treply(m->in->irq, code, reason, TAG_IF(b.len, SIPTAG_HEADER_STR(b.data)),
                        TAG_END());
    strbuf_free(&b);
    if (code >= 200)
        m->in->replied = 1;
    lua_pushboolean(L, 1);
    return 1;
}

/* ---- Client transactions ------------------------------------------------ */

enum tx_state { TX_CALLING, TX_PROCEEDING, TX_COMPLETED, TX_TERMINATED };
static const char *const tx_state_names[] = {"calling", "proceeding", "completed",
                                              "terminated"};

struct ltx {
    struct luart *rt;
    nta_outgoing_t *orq;
    nta_leg_t *leg;        /* INVITE only: to ACK and BYE a 2xx */
    enum tx_state state;
    int is_invite;
    struct event *timer;   /* the caller's timeout */
    msg_t *response;       /* the final answer (a reference of ours) */
    int status;            /* the final status, or 0 */
    char reason[64];       /* for answers nta or we made up */
    struct task *waiter;   /* the task in tx:wait() */
    int has_provisional;   /* tx:on_provisional(fn): fn lives in the object's env */
    unsigned *counted;     /* &pending_transactions while counted */
};

struct ltx_ud {
    struct ltx *tx;
};

/* Requests go through the agent's helpers (sip/agent.h): answers never
 * come before sipagent_request() returns, and the event port is re-armed
 * after calls into sofia from our own timers. */
static struct sipagent *agent_of(struct ltx *tx)
{
    return luart_host(tx->rt)->agent;
}

static void tx_finish(struct ltx *tx, int status, const char *reason, msg_t *response);
static void push_response(lua_State *L, struct ltx *tx);

static void tx_uncount(struct ltx *tx)
{
    if (tx->counted) {
        (*tx->counted)--;
        tx->counted = NULL;
    }
}

static void tx_free(struct ltx *tx)
{
    if (tx->orq)
        nta_outgoing_destroy(tx->orq);
    if (tx->leg)
        nta_leg_destroy(tx->leg);
    if (tx->timer)
        event_free(tx->timer);
    if (tx->response)
        msg_destroy(tx->response);
    tx_uncount(tx);
    free(tx);
}

static void provisional_done(lua_State *L, int nres, const char *error, void *arg)
{
    (void)L;
    (void)nres;
    (void)arg;
    if (error)
        log_error("lua", "on_provisional: %s", error);
}

/* A 2xx to an INVITE from Lua: the transaction is a probe, not a call.
 * ACK it and hang up at once. */
static void hang_up_probe(struct ltx *tx, sip_t const *sip)
{
    if (!tx->leg || !sip->sip_to || !sip->sip_to->a_tag)
        return;
    nta_leg_rtag(tx->leg, sip->sip_to->a_tag);
    nta_leg_client_route(tx->leg, sip->sip_record_route, sip->sip_contact);
    url_t const *target = sip->sip_contact ? sip->sip_contact->m_url : NULL;
    nta_outgoing_t *ack = sipagent_request(agent_of(tx), NULL, tx->leg, NULL, NULL, NULL,
                                           SIP_METHOD_ACK, (url_string_t const *)target,
                                           TAG_END());
    if (ack)
        nta_outgoing_destroy(ack);
    nta_outgoing_t *bye = sipagent_request(agent_of(tx), NULL, tx->leg, NULL, NULL, NULL,
                                           SIP_METHOD_BYE, (url_string_t const *)target,
                                           TAG_END());
    if (bye)
        nta_outgoing_destroy(bye);
}

/* Push tx's Lua object, or nil if it was collected. */
static void push_tx_object(lua_State *L, struct ltx *tx)
{
    lua_pushlightuserdata(L, &tx_objects_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, tx);
    lua_rawget(L, -2);
    lua_remove(L, -2);
}

static int on_tx_response(struct ltx *tx, nta_outgoing_t *orq, sip_t const *sip)
{
    int status = sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (status < 200) {
        tx->state = TX_PROCEEDING;
        if (tx->has_provisional) {
            lua_State *L = luart_state(tx->rt);
            push_tx_object(L, tx);
            if (lua_isuserdata(L, -1)) {
                lua_getfenv(L, -1);
                lua_getfield(L, -1, "on_provisional");
                lua_remove(L, -2); /* env */
                lua_remove(L, -2); /* object */
                push_msg(L, nta_outgoing_getresponse(orq), NULL);
                luart_spawn(tx->rt, 1, provisional_done, NULL);
            } else {
                lua_pop(L, 1);
            }
        }
        return 0;
    }
    if (tx->is_invite && status >= 200 && status < 300 && sip)
        hang_up_probe(tx, sip);
    msg_t *response = nta_outgoing_getresponse(orq);
    char reason[64];
    snprintf(reason, sizeof reason, "%s",
             sip && sip->sip_status && sip->sip_status->st_phrase ? sip->sip_status->st_phrase
                                                                  : "");
    tx->orq = NULL;
    nta_outgoing_destroy(orq);
    tx_finish(tx, status, reason, response);
    return 0;
}

/* The final answer is in: keep it, stop the clock, wake the waiter. */
static void tx_finish(struct ltx *tx, int status, const char *reason, msg_t *response)
{
    if (tx->state >= TX_COMPLETED) {
        if (response)
            msg_destroy(response);
        return;
    }
    /* "completed" with a response from the network; "terminated" when it
     * ended without one (our timeout, a transport error). */
    tx->state = response ? TX_COMPLETED : TX_TERMINATED;
    tx->status = status;
    snprintf(tx->reason, sizeof tx->reason, "%s", reason ? reason : "");
    tx->response = response;
    event_del(tx->timer);
    tx_uncount(tx);
    if (tx->waiter) {
        struct task *t = tx->waiter;
        tx->waiter = NULL;
        lua_State *L = luart_state(tx->rt);
        push_response(L, tx);
        task_wake(t, L, 1); /* tx:wait() returns it */
    }
}

/* The caller's own timeout: give up, answer 408 locally. */
static void on_tx_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct ltx *tx = arg;
    (void)fd;
    (void)what;
    if (tx->orq) {
        if (tx->is_invite && tx->state == TX_PROCEEDING)
            sipagent_cancel(agent_of(tx), tx->orq);
        nta_outgoing_destroy(tx->orq);
        tx->orq = NULL;
    }
    tx_finish(tx, 408, "Request Timeout (no answer in time)", NULL);
    sipagent_after_sofia(agent_of(tx));
}

static struct ltx *check_tx(lua_State *L, int idx)
{
    struct ltx_ud *ud = luaL_checkudata(L, idx, TX_MT);
    if (!ud->tx)
        luaL_error(L, "transaction is gone");
    return ud->tx;
}

/* Push the response object of a finished transaction. */
static void push_response(lua_State *L, struct ltx *tx)
{
    if (tx->response) {
        push_msg(L, msg_ref_create(tx->response), NULL);
        return;
    }
    /* nta or we answered without a message (a timeout): a small table that
     * reads like a response. */
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, tx->status);
    lua_setfield(L, -2, "status");
    lua_pushstring(L, tx->reason);
    lua_setfield(L, -2, "reason");
    luaL_getmetatable(L, "moon.sip.synthetic");
    lua_setmetatable(L, -2);
}

static int synthetic_header(lua_State *L)
{
    lua_pushnil(L);
    return 1;
}

static int synthetic_tostring(lua_State *L)
{
    lua_getfield(L, 1, "status");
    lua_getfield(L, 1, "reason");
    lua_pushfstring(L, "SIP response %d %s (made by the switch)", (int)lua_tointeger(L, -2),
                    lua_tostring(L, -1));
    return 1;
}

static int synthetic_headers(lua_State *L)
{
    lua_newtable(L);
    return 1;
}

/* tx:wait(): the final response; yields until it comes. */
static int tx_wait(lua_State *L)
{
    struct ltx *tx = check_tx(L, 1);
    if (tx->state >= TX_COMPLETED) {
        push_response(L, tx);
        return 1;
    }
    struct task *t = task_check_yieldable(L, "tx:wait");
    if (tx->waiter && tx->waiter != t)
        return luaL_error(L, "tx:wait: another task is already waiting for this transaction");
    tx->waiter = t;
    /* tx_finish() resumes us with the response as our result. */
    return lua_yield(L, 0);
}

/* tx:cancel(): CANCEL a pending INVITE. Returns true if one was sent. */
static int tx_cancel(lua_State *L)
{
    struct ltx *tx = check_tx(L, 1);
    if (!tx->is_invite || !tx->orq || tx->state >= TX_COMPLETED) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_pushboolean(L, sipagent_cancel(agent_of(tx), tx->orq));
    return 1;
}

static int tx_on_provisional(lua_State *L)
{
    struct ltx *tx = check_tx(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_getfenv(L, 1);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "on_provisional");
    lua_pop(L, 1);
    tx->has_provisional = 1;
    lua_pushvalue(L, 1);
    return 1;
}

static int tx_index(lua_State *L)
{
    struct ltx *tx = check_tx(L, 1);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "wait") == 0)
        lua_pushcfunction(L, tx_wait);
    else if (strcmp(k, "cancel") == 0)
        lua_pushcfunction(L, tx_cancel);
    else if (strcmp(k, "on_provisional") == 0)
        lua_pushcfunction(L, tx_on_provisional);
    else if (strcmp(k, "state") == 0)
        lua_pushstring(L, tx_state_names[tx->state]);
    else if (strcmp(k, "status") == 0)
        tx->status ? lua_pushinteger(L, tx->status) : lua_pushnil(L);
    else
        lua_pushnil(L);
    return 1;
}

static int tx_gc(lua_State *L)
{
    struct ltx_ud *ud = luaL_checkudata(L, 1, TX_MT);
    if (ud->tx) {
        tx_free(ud->tx);
        ud->tx = NULL;
    }
    return 0;
}

static int valid_method(const char *m)
{
    if (!*m || strlen(m) > 32)
        return 0;
    for (const char *p = m; *p; p++)
        if (!isupper((unsigned char)*p) && *p != '-' && *p != '_')
            return 0;
    return 1;
}

static unsigned max_pending(lua_State *L)
{
    lua_getglobal(L, "sip");
    lua_getfield(L, -1, "max_pending");
    double v = lua_tonumber(L, -1);
    lua_pop(L, 2);
    return v >= 1 ? (unsigned)v : DEFAULT_MAX_PENDING;
}

/* sip.request{ method =, uri =, headers = {}, body =, timeout = } */
static int l_request(lua_State *L)
{
    struct luart *rt = RT_UPVALUE(L);
    const struct luahost *host = luart_host(rt);
    if (!lua_istable(L, 1))
        return luaL_error(L, "sip.request: table expected: { method = ..., uri = ... }");
    lua_getfield(L, 1, "method");
    const char *method = lua_tostring(L, -1);
    if (lua_type(L, -1) != LUA_TSTRING || !valid_method(method) ||
        sip_method_code(method) == sip_method_unknown)
        return luaL_error(L, "bad 'method' argument: a SIP method such as \"OPTIONS\" "
                             "(INVITE, BYE, OPTIONS, REGISTER, INFO, UPDATE, PRACK, REFER, "
                             "NOTIFY, MESSAGE, SUBSCRIBE, PUBLISH)");
    lua_getfield(L, 1, "uri");
    const char *uri = lua_tostring(L, -1);
    if (lua_type(L, -1) != LUA_TSTRING ||
        (strncasecmp(uri, "sip:", 4) != 0 && strncasecmp(uri, "sips:", 5) != 0))
        return luaL_error(L, "bad 'uri' argument: a sip: or sips: URI");
    lua_getfield(L, 1, "body");
    if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "bad 'body' argument: a string");
    size_t body_len = 0;
    const char *body = lua_tolstring(L, -1, &body_len);
    lua_getfield(L, 1, "timeout");
    double timeout = 0;
    if (!lua_isnil(L, -1)) {
        timeout = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(timeout > 0 && timeout <= 86400))
            return luaL_error(L, "bad 'timeout' argument: seconds, more than 0 and at most "
                                 "86400");
    }
    if (strcmp(method, "ACK") == 0 || strcmp(method, "CANCEL") == 0)
        return luaL_error(L, "bad 'method' argument: %s is sent by the transaction itself "
                             "(see tx:cancel())",
                          method);
    if (!host->agent)
        return luaL_error(L, "sip.request: the SIP agent is not running");
    unsigned cap = max_pending(L);
    if (pending_transactions >= cap) {
        return luaL_error(L, "sip.request: %u transactions are pending, the cap "
                             "(sip.max_pending = %u); wait for some to finish",
                          pending_transactions, cap);
    }
    /* Last of the checks that raise: from here on, only failures that
     * answer with a status, and the buffer is freed on every path. */
    lua_getfield(L, 1, "headers");
    struct strbuf hb = {0};
    collect_headers(L, lua_gettop(L), "headers", &hb);
    const char *extra = hb.data ? hb.data : "";

    nta_agent_t *nta = sipagent_nta(host->agent);
    struct ltx_ud *ud = lua_newuserdata(L, sizeof *ud);
    ud->tx = NULL;
    luaL_getmetatable(L, TX_MT);
    lua_setmetatable(L, -2);
    lua_newtable(L); /* its environment: on_provisional */
    lua_setfenv(L, -2);
    struct ltx *tx = calloc(1, sizeof *tx);
    if (!tx) {
        strbuf_free(&hb);
        return luaL_error(L, "sip.request: out of memory");
    }
    ud->tx = tx;
    tx->rt = rt;
    lua_pushlightuserdata(L, &tx_objects_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_pushlightuserdata(L, tx);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    tx->timer = evtimer_new(host->base, on_tx_timeout, tx);

    sip_method_t code = sip_method_code(method);
    tx->is_invite = code == sip_method_invite;
    char from[256], tag[17], call_id[48];
    random_hex(tag, 8);
    random_hex(call_id, 16);
    sip_contact_t const *me = nta_agent_contact(nta);
    char contact[256] = "";
    if (me) {
        char mine[200];
        url_e(mine, sizeof mine, me->m_url);
        snprintf(contact, sizeof contact, "<%s>", mine);
        snprintf(from, sizeof from, "<sip:moonswitch@%s>;tag=%s", me->m_url->url_host, tag);
    } else {
        snprintf(from, sizeof from, "<sip:moonswitch@localhost>;tag=%s", tag);
    }
    nta_leg_t *leg = sipagent_client_leg(host->agent);
    if (tx->is_invite) {
        tx->leg = nta_leg_tcreate(nta, NULL, NULL, SIPTAG_FROM_STR(from), SIPTAG_TO_STR(uri),
                                  SIPTAG_CALL_ID_STR(call_id), TAG_END());
        if (tx->leg)
            leg = tx->leg;
    }
    const char *content_type = NULL;
    if (body && !strcasestr(extra, "content-type:"))
        content_type = "application/sdp";
    int refused = 503;
    tx->orq = sipagent_request(
        host->agent, &refused, leg, on_tx_response, tx, NULL, code, method,
        URL_STRING_MAKE(uri),
        TAG_IF(!tx->is_invite, SIPTAG_FROM_STR(from)),
        TAG_IF(!tx->is_invite, SIPTAG_TO_STR(uri)),
        TAG_IF(!tx->is_invite, SIPTAG_CALL_ID_STR(call_id)), SIPTAG_MAX_FORWARDS_STR("70"),
        TAG_IF(*contact, SIPTAG_CONTACT_STR(contact)), TAG_IF(*extra, SIPTAG_HEADER_STR(extra)),
        TAG_IF(content_type, SIPTAG_CONTENT_TYPE_STR(content_type)),
        TAG_IF(body, SIPTAG_PAYLOAD_STR(body)), TAG_END());
    (void)body_len;
    strbuf_free(&hb);
    if (!tx->orq) {
        /* Could not even build or send it: answer like the network would. */
        char reason[64];
        const char *phrase = sip_status_phrase(refused);
        snprintf(reason, sizeof reason, "%s (cannot send)", phrase ? phrase : "Error");
        tx_finish(tx, refused, reason, NULL);
    } else {
        pending_transactions++;
        tx->counted = &pending_transactions;
        if (timeout > 0) {
            struct timeval tv = {.tv_sec = (time_t)timeout,
                                 .tv_usec = (suseconds_t)((timeout - floor(timeout)) * 1e6)};
            evtimer_add(tx->timer, &tv);
        }
    }
    return 1;
}

/* ---- on_request ------------------------------------------------------------ */

struct hook_run {
    struct incoming *in;
    char where[256]; /* the hook's file:line, for the automatic 500 */
};

static void on_request_done(lua_State *L, int nres, const char *error, void *arg)
{
    struct hook_run *run = arg;
    (void)L;
    (void)nres;
    if (error)
        log_error("policy", "on_request: %s", error);
    if (!run->in->replied) {
        if (!error)
            log_error("policy", "%s: on_request returned without answering; sent 500",
                      run->where);
        nta_incoming_treply(run->in->irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
        run->in->replied = 1;
    }
    incoming_unref(run->in);
    free(run);
}

/* Give an out-of-dialog request to the policy's on_request(req) in a new
 * task. Returns 0 when the hook took it (it answers, or the task's end
 * answers 500), -1 when the policy has no hook, 500 when out of memory. */
static int sip_dispatch_request(struct luart *rt, nta_incoming_t *irq, const sip_t *sip)
{
    (void)sip;
    lua_State *L = luart_state(rt);
    lua_getglobal(L, "on_request");
    if (!lua_isfunction(L, -1)) {
        lua_pop(L, 1);
        return -1;
    }
    struct hook_run *run = calloc(1, sizeof *run);
    struct incoming *in = calloc(1, sizeof *in);
    msg_t *msg = nta_incoming_getrequest(irq);
    if (!run || !in || !msg) {
        free(run);
        free(in);
        if (msg)
            msg_destroy(msg);
        lua_pop(L, 1);
        return 500;
    }
    lua_Debug ar;
    lua_pushvalue(L, -1);
    if (lua_getinfo(L, ">S", &ar))
        snprintf(run->where, sizeof run->where, "%s:%d", ar.short_src, ar.linedefined);
    in->irq = irq;
    in->refs = 1; /* the run's */
    run->in = in;
    push_msg(L, msg, in);
    luart_spawn(rt, 1, on_request_done, run);
    return 0;
}

/* Out-of-dialog requests no core module took: the current policy's
 * on_request hook, if it has one. */
static int on_request(nta_incoming_t *irq, const sip_t *sip, void *arg)
{
    struct luart *const *current = arg;
    return sip_dispatch_request(*current, irq, sip);
}

void hooks_attach_sip(struct sipagent *agent, struct luart *const *current)
{
    sipagent_set_request_handler(agent, on_request, (void *)current);
}

/* ---- Opening ------------------------------------------------------------------ */

static void open_sip(lua_State *L, struct luart *rt)
{
    lua_newtable(L); /* methods of messages, looked up by msg_index */
    lua_pushcfunction(L, msg_reply);
    lua_setfield(L, -2, "reply");
    int methods = lua_gettop(L);

    luaL_newmetatable(L, MSG_MT);
    lua_pushvalue(L, methods);
    lua_pushcclosure(L, msg_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, msg_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, msg_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, msg_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 2);

    luaL_newmetatable(L, "moon.sip.synthetic");
    lua_newtable(L);
    lua_pushcfunction(L, synthetic_header);
    lua_setfield(L, -2, "header");
    lua_pushcfunction(L, synthetic_headers);
    lua_setfield(L, -2, "headers");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, msg_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, synthetic_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    lua_pushlightuserdata(L, &tx_objects_key);
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);

    luaL_newmetatable(L, TX_MT);
    lua_pushcfunction(L, tx_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, tx_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    lua_newtable(L);
    api_setfield(L, rt, "request", l_request);
    lua_pushinteger(L, DEFAULT_MAX_PENDING);
    lua_setfield(L, -2, "max_pending");
    lua_setglobal(L, "sip");
}

static const struct api_help help[] = {
    {"sip", "sip.request{...}: send a SIP request; tx:wait() for its answer",
     "  sip.request{ method =, uri =, headers =, body =, timeout = }\n"
     "                               a client transaction tx, sent at once\n"
     "  tx:wait()                    the final response (waits)\n"
     "  tx.state, tx.status          \"calling\", \"proceeding\", \"completed\",\n"
     "                               \"terminated\"; the final status or nil\n"
     "  tx:on_provisional(fn)        fn(res) for each 1xx, in a task of its own\n"
     "  tx:cancel()                  INVITE: CANCEL while no final answer came\n"
     "  sip.max_pending              requests in flight allowed from Lua\n"
     "  messages: .status .reason .method .uri .request_uri .from .to .contact\n"
     "            .call_id .cseq .body :header(name) :headers(name)\n"
     "            req:reply(code, reason, headers) in on_request(req)\n",
     (const char *const[]){TX_MT, MSG_MT, NULL}},
    {NULL, NULL, NULL, NULL},
};

const struct api_module api_sip = {
    .name = "sip.request, SIP messages", .help = help, .open = open_sip};
