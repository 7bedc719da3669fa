/* A call's targets and the policy's decisions on them: route() for a new
 * call, on_failure() after a failed attempt (both asked through the
 * query hook, see call.h), default routing when the policy has no such
 * function or leaves it to the switch, and failover_codes after a failure.
 *
 * Default routing: a callee that names an account goes to its binding
 * first; then the routing gateways that serve the callee by prefix and
 * priority (routing_select()). An inbound call that has nowhere at all to
 * go is answered 404 Not Found (480 Temporarily Unavailable when the
 * callee is an account without a binding); an outbound one 503 No Route.
 *
 * The combination after a failed attempt: the policy's on_failure() is
 * asked first; "continue" goes to the next target, a list replaces the
 * targets not tried yet, a status ends the call with it, and nothing (nil)
 * leaves it to failover_codes (the gateway's, else the switch's): a listed
 * status, or one of our own (timeout, nta's 408/503), goes to the next
 * target, any other goes back to the caller. See call_internal.h. */
#include "sip/call_internal.h"
#include "config.h"
#include "log.h"
#include "sip/gateway.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sofia-sip/msg.h>
#include <sofia-sip/msg_addr.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>

/* ---- Targets ----------------------------------------------------------------- */

void call_cands_free(struct call *c, size_t from)
{
    for (size_t i = from; i < c->ncands; i++) {
        free(c->cands[i].name);
        free(c->cands[i].callee);
    }
    if (from < c->ncands)
        c->ncands = from;
    if (from == 0) {
        free(c->cands);
        c->cands = NULL;
        c->ncands = c->next_cand = 0;
    }
}

/* Replace the targets not tried yet by copies of `t` (at most
 * CALL_MAX_CANDIDATES of them). Out of memory drops the rest, logged. */
static void set_targets(struct call *c, const struct call_target *t, size_t n)
{
    call_cands_free(c, c->next_cand);
    if (n > CALL_MAX_CANDIDATES)
        n = CALL_MAX_CANDIDATES;
    if (!n)
        return;
    struct call_cand *v = realloc(c->cands, (c->ncands + n) * sizeof *v);
    if (!v) {
        log_error("call", "%" PRIu64 ": out of memory for the call's targets", c->id);
        return;
    }
    c->cands = v;
    for (size_t i = 0; i < n; i++) {
        const char *name = t[i].account ? t[i].account : t[i].gateway;
        struct call_cand *k = &c->cands[c->ncands];
        *k = (struct call_cand){.name = name ? strdup(name) : NULL,
                                .callee = t[i].callee ? strdup(t[i].callee) : NULL,
                                .timeout = t[i].timeout > 0 ? t[i].timeout : 0,
                                .account = t[i].account != NULL};
        if (!k->name || (t[i].callee && !k->callee)) {
            free(k->name);
            free(k->callee);
            continue;
        }
        c->ncands++;
    }
}

/* The account named by the callee first, then prefix and priority. */
static void route_default(struct call *c)
{
    struct calls *cs = c->cs;
    struct call_target t[CALL_MAX_CANDIDATES] = {{0}};
    size_t n = 0;
    bool account = config_find(cs->cfg, KIND_ACCOUNT, c->rec.callee) != NULL;
    if (account)
        t[n++].account = c->rec.callee;
    const char *names[CALL_MAX_CANDIDATES];
    size_t k = routing_select(cs->cfg, c->rec.callee, names, CALL_MAX_CANDIDATES - n);
    for (size_t i = 0; i < k; i++)
        t[n++].gateway = names[i];
    if (c->inbound && k == 0)
        c->no_route = account ? 480 : 404;
    set_targets(c, t, n);
}

/* ---- Queries ----------------------------------------------------------------- */

/* "ip:port" of the request's source. */
static void source_address(msg_t *msg, char *out, size_t outlen)
{
    *out = '\0';
    su_addrinfo_t *ai = msg ? msg_addrinfo(msg) : NULL;
    if (!ai || !ai->ai_addr)
        return;
    su_sockaddr_t *su = (su_sockaddr_t *)ai->ai_addr;
    char ip[64] = "";
    if (su->su_family == AF_INET)
        inet_ntop(AF_INET, &su->su_sin.sin_addr, ip, sizeof ip);
    else if (su->su_family == AF_INET6)
        inet_ntop(AF_INET6, &su->su_sin6.sin6_addr, ip, sizeof ip);
    snprintf(out, outlen, su->su_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip,
             (unsigned)ntohs(su->su_port));
}

static struct call_query *query_new(struct call *c, enum call_query_kind kind)
{
    struct call_query *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    if (c->headers[0] && !(q->headers = strdup(c->headers))) {
        free(q);
        return NULL;
    }
    q->call = c;
    q->request = c->a_msg ? msg_ref_create(c->a_msg) : NULL;
    sip_t const *a = q->request ? sip_object(q->request) : NULL;
    snprintf(q->caller, sizeof q->caller, "%s", c->rec.caller);
    snprintf(q->callee, sizeof q->callee, "%s", c->rec.callee);
    snprintf(q->source, sizeof q->source, "%s", c->rec.mapping_gateway);
    if (c->display[0])
        snprintf(q->display, sizeof q->display, "%s", c->display);
    else
        call_identity_display(a ? a->sip_from : NULL, q->display, sizeof q->display);
    source_address(q->request, q->source_address, sizeof q->source_address);
    q->info = (struct call_query_info){.kind = kind,
                                       .id = c->id,
                                       .inbound = c->inbound,
                                       .source = q->source,
                                       .caller = q->caller,
                                       .callee = q->callee,
                                       .display = q->display,
                                       .source_address = q->source_address,
                                       .gateway = q->gateway,
                                       .routed_callee = q->routed_callee,
                                       .reason = q->reason};
    return q;
}

static void query_free(struct call_query *q)
{
    if (q->request)
        msg_destroy(q->request);
    free(q->headers);
    free(q);
}

/* Ask the policy; true when it took the query (call_query_done() follows). */
static bool ask(struct call *c, struct call_query *q)
{
    struct calls *cs = c->cs;
    if (!q)
        return false;
    c->query = q;
    if (cs->query_h(q, cs->query_arg))
        return true; /* the answer may have come already, and c be gone */
    c->query = NULL;
    query_free(q);
    return false;
}

const struct call_query_info *call_query_info(const struct call_query *q)
{
    return &q->info;
}

msg_t *call_query_request(const struct call_query *q)
{
    return q->request;
}

static bool display_valid(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == '"' || *s == '\\')
            return false;
    return true;
}

int call_query_set(struct call_query *q, enum call_query_field f, const char *value)
{
    switch (f) {
    case CALL_FIELD_CALLER:
    case CALL_FIELD_CALLEE:
        if (!call_identity_valid_number(value))
            return -EINVAL;
        snprintf(f == CALL_FIELD_CALLER ? q->caller : q->callee, CALL_NUM, "%s", value);
        return 0;
    case CALL_FIELD_DISPLAY:
        if (strlen(value) >= sizeof q->display || !display_valid(value))
            return -EINVAL;
        snprintf(q->display, sizeof q->display, "%s", value);
        return 0;
    }
    return -EINVAL;
}

/* The headers the switch writes itself, full and compact names. */
static const char *const own_headers[] = {"via",
                                          "v",
                                          "from",
                                          "f",
                                          "to",
                                          "t",
                                          "call-id",
                                          "i",
                                          "cseq",
                                          "contact",
                                          "m",
                                          "max-forwards",
                                          "route",
                                          "record-route",
                                          "content-type",
                                          "c",
                                          "content-length",
                                          "l",
                                          "content-encoding",
                                          "e",
                                          "allow",
                                          "authorization",
                                          "proxy-authorization",
                                          "privacy",
                                          "p-asserted-identity",
                                          NULL};

static bool header_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64 ||
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789-.!%*_+`'~") != n)
        return false;
    for (size_t i = 0; own_headers[i]; i++)
        if (strcasecmp(name, own_headers[i]) == 0)
            return false;
    return true;
}

/* Remove the lines of header `name` from a text of "Name: value\r\n" lines. */
static void headers_remove(char *text, const char *name)
{
    size_t n = strlen(name);
    char *line = text;
    while (*line) {
        char *end = strstr(line, "\r\n");
        end = end ? end + 2 : line + strlen(line);
        if (strncasecmp(line, name, n) == 0 && line[n] == ':')
            memmove(line, end, strlen(end) + 1);
        else
            line = end;
    }
}

int call_query_set_header(struct call_query *q, const char *name, const char *value)
{
    if (!header_name_ok(name) ||
        (value && (strpbrk(value, "\r\n") || strlen(value) > 1024)))
        return -EINVAL;
    if (q->headers)
        headers_remove(q->headers, name);
    if (!value)
        return 0;
    size_t have = q->headers ? strlen(q->headers) : 0;
    size_t add = strlen(name) + strlen(value) + 4;
    if (have + add > 8192)
        return -EINVAL; /* more than any INVITE should carry */
    char *grown = realloc(q->headers, have + add + 1);
    if (!grown)
        return -ENOMEM;
    snprintf(grown + have, add + 1, "%s: %s\r\n", name, value);
    q->headers = grown;
    return 0;
}

/* ---- Decisions --------------------------------------------------------------- */

void call_route_start(struct call *c)
{
    if (c->cs->query_h && ask(c, query_new(c, CALL_QUERY_ROUTE)))
        return;
    route_default(c);
    call_try_next(c); /* may end c */
}

/* No decision from the policy after a failure: failover_codes decide. */
static void failover_default(struct call *c, bool internal)
{
    int status = c->last_status;
    if (internal || gw_failover(c->cs->gws, c->rec.routing_gateway, status)) {
        log_info("call", "%" PRIu64 ": %s answered %d%s, trying the next gateway", c->id,
                 c->rec.routing_gateway, status, internal ? " (local)" : "");
        call_try_next(c);
        return;
    }
    /* A final answer about the callee (404, 486, ...): relay it. */
    call_fail(c, status, c->last_reason[0] ? c->last_reason : NULL, "callee");
}

void call_route_failed(struct call *c, int status, bool internal)
{
    struct calls *cs = c->cs;
    metrics_call_attempt_failed(&c->metrics, status);
    c->state = ST_ROUTING;
    if (cs->query_h) {
        struct call_query *q = query_new(c, CALL_QUERY_FAILURE);
        if (q) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            snprintf(q->gateway, sizeof q->gateway, "%s", c->rec.routing_gateway);
            snprintf(q->routed_callee, sizeof q->routed_callee, "%s",
                     c->rec.routed_callee);
            snprintf(q->reason, sizeof q->reason, "%s",
                     c->last_reason[0]           ? c->last_reason
                     : sip_status_phrase(status) ? sip_status_phrase(status)
                                                 : "");
            q->info.status = status;
            q->info.duration =
                (double)now.tv_sec + (double)now.tv_nsec * 1e-9 - c->b_started;
            q->failure_internal = internal;
        }
        if (ask(c, q))
            return;
    }
    failover_default(c, internal);
}

/* Hand the policy's changes to the call. */
static void apply_changes(struct call *c, struct call_query *q)
{
    struct call_record *r = &c->rec;
    if (strcmp(q->caller, r->caller) != 0 || strcmp(q->callee, r->callee) != 0) {
        log_info("call", "%" PRIu64 ": the policy made it %s -> %s", c->id, q->caller,
                 q->callee);
        call_set_fixed(r, r->call_id, q->caller, q->callee, r->mapping_gateway,
                       r->original_callee);
    }
    char display[CALL_NUM];
    sip_t const *a = c->a_msg ? sip_object(c->a_msg) : NULL;
    call_identity_display(a ? a->sip_from : NULL, display, sizeof display);
    if (strcmp(q->display, c->display[0] ? c->display : display) != 0)
        call_set_text(&c->display, q->display);
    call_set_text(&c->headers, q->headers);
}

void call_query_done(struct call_query *q, const struct call_decision *d)
{
    struct call *c = q->call;
    if (!c) {
        query_free(q);
        return;
    }
    struct calls *cs = c->cs;
    c->query = NULL;
    apply_changes(c, q);
    bool failure = q->info.kind == CALL_QUERY_FAILURE, internal = q->failure_internal;
    query_free(q);
    switch (d->verdict) {
    case CALL_CONTINUE:
        if (failure) {
            call_try_next(c);
            break;
        }
        __attribute__((fallthrough)); /* route: nothing to continue */
    case CALL_DEFAULT:
        if (failure) {
            failover_default(c, internal);
        } else {
            route_default(c);
            call_try_next(c);
        }
        break;
    case CALL_TARGETS:
        set_targets(c, d->targets, d->n);
        call_try_next(c);
        break;
    case CALL_REFUSE:
        if (d->status < 300 || d->status > 699) {
            call_fail(c, 500, NULL, "switch");
            break;
        }
        log_info("call", "%" PRIu64 ": the policy answers %d %s", c->id, d->status,
                 d->reason ? d->reason : "");
        call_fail(c, d->status, d->reason, "switch");
        break;
    case CALL_ERROR:
        call_fail(c, 500, d->reason, "switch");
        break;
    }
    call_kick(cs); /* c may be gone */
}
