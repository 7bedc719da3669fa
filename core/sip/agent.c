/* The SIP agent: nta with UA semantics, a default leg for out-of-dialog
 * requests, OPTIONS, and 405/501 for what nobody handles. */
#include "sip/agent.h"
#include "config.h"
#include "sip/answer.h"
#include "sip/invite.h"
#include "evport.h"
#include "log.h"
#include "sip/parsefix.h"
#include "sip/sipmetrics.h"
#include "sip/tls.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta_stateless.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_string.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/url.h>
#include <sofia-sip/url_tag.h>

struct sipagent {
    su_root_t *root; /* the event port's, re-armed after calls into sofia */
    nta_agent_t *nta;
    struct siptls *tls;    /* NULL: no TLS transports */
    nta_leg_t *client_leg; /* for requests we send outside dialogs */
    struct {
        sip_method_t method;
        sipagent_request_h *h; /* NULL: only a prefilter */
        void *arg;
        sipagent_stateless_h *pre;
        void *pre_arg;
    } methods[SIPAGENT_MAX_METHODS];
    unsigned nmethods;
    sipagent_request_h *request_h;
    void *request_arg;
    sipagent_source_filter_h *stream_filter;
    void *stream_arg;
    sipagent_dialog_h *dialog_h; /* requests of the switch's dialogs */
    void *dialog_arg;
    struct answer_cache *answers; /* what was answered without a transaction */
    struct sipinv_set *invites;   /* INVITEs sent through sipagent_invite() */
    su_timer_t *sweep;            /* expires the answer cache when idle */
};

/* How long answers are kept past 64 * T1: a retransmission is sent at
 * most 64 * T1 after the first copy, and may spend up to 5 s (RFC 3261's
 * T4) in the network. */
#define SIPAGENT_ANSWER_SLACK_MS 5000

/* nta's T4: how long it keeps an INVITE server transaction after its ACK
 * (timer I) and a non-INVITE client transaction after its answer (timer K),
 * both only to absorb retransmissions, each with its two parsed messages
 * (8 KB): at 1,000 calls/s the caller's INVITE and our BYE held 5 s were
 * 80 MB. What they absorb is absorbed without them: an ACK or a response
 * that matches no transaction is dropped (the agent), an INVITE sent again
 * finds its record in the answer cache. So they are kept 2 s. */
#define SIPAGENT_T4_MS 2000

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A stream connection that has sent part of a message gets this long to
 * finish it; one that has been silent this long is closed. Without them a
 * peer (or an attacker) holds a descriptor for ever. Registered endpoints on
 * TCP and TLS keep their connections open with their own keepalives. A TLS
 * connection must also finish its handshake within tls.c's deadline. */
#define SIPAGENT_INCOMPLETE_MS 30000
#define SIPAGENT_IDLE_MS 600000

/* UDP receive buffer: the kernel's default (208 KiB) holds ~150 requests,
 * too few for a burst at carrier rates. */
#define SIPAGENT_UDP_RMEM (1024 * 1024)

/* Largest message accepted on any transport. A B2BUA's INVITE with SDP is a
 * few KiB; anything near this is an attack or a broken peer. */
#define SIPAGENT_MAX_MESSAGE (64 * 1024)

/* What the core serves. A policy's on_request may answer more. PRACK
 * (RFC 3262) is not served. */
static const char allow_methods[] =
    "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO, UPDATE";

/* Option tags the core supports (RFC 3261 8.2.2.3): session timers (RFC
 * 4028, call_timer.c); a request that Requires any other gets 420. */
static const char *const supported_tags[] = {"timer", NULL};

/* The Required option tags not in supported_tags, comma-separated into
 * out[outlen] (as many as fit); false when there are none. */
static bool unsupported_tags(const sip_t *sip, char *out, size_t outlen)
{
    size_t len = 0;
    out[0] = '\0';
    for (const sip_require_t *k = sip->sip_require; k; k = k->k_next) {
        for (msg_param_t const *t = k->k_items; t && *t; t++) {
            bool known = false;
            for (size_t i = 0; supported_tags[i]; i++)
                known = known || su_casematch(*t, supported_tags[i]);
            size_t need = strlen(*t) + (len ? 2 : 0);
            if (known || len + need >= outlen)
                continue;
            snprintf(out + len, outlen - len, "%s%s", len ? ", " : "", *t);
            len += need;
        }
    }
    return len > 0;
}

/* Standard methods we know of but do not serve out of dialog get 405;
 * anything else gets 501. */
static int known_method(sip_method_t m)
{
    return m != sip_method_unknown && m != sip_method_invalid;
}

/* Reply without a transaction: nothing is kept once the answer leaves, so
 * a flood of OPTIONS costs no memory; a retransmission is answered again. */
static void reply_stateless(struct sipagent *a, msg_t *msg, int status,
                            const char *phrase, bool with_allow)
{
    nta_msg_treply(a->nta, msg, status, phrase,
                   TAG_IF(with_allow, SIPTAG_ALLOW_STR(allow_methods)), TAG_END());
}

/* The handler of this method, or NULL. */
static int find_method(const struct sipagent *a, sip_method_t method)
{
    for (unsigned i = 0; i < a->nmethods; i++)
        if (a->methods[i].method == method)
            return (int)i;
    return -1;
}

/* The answer cache's key of request `sip` as `kind`. */
static uint64_t request_key(enum answer_kind kind, const sip_t *sip)
{
    return answer_key(kind, sip->sip_call_id ? sip->sip_call_id->i_id : NULL,
                      sip->sip_cseq ? sip->sip_cseq->cs_seq : 0,
                      sip->sip_from ? sip->sip_from->a_tag : NULL,
                      sip->sip_via ? sip->sip_via->v_branch : NULL);
}

/* An INVITE taken: its retransmissions are absorbed once nta lets its
 * transaction go (timer I ends it T4 after the ACK; the caller may still
 * resend it up to 64 * T1 after the first copy). */
static void remember_invite(struct sipagent *a, const sip_t *sip)
{
    answer_put(a->answers, now_ms(), request_key(ANSWER_INVITE, sip), ANSWER_INVITE, 0,
               NULL, 0);
}

/* A stateless final answer to request msg (taken): `text`, when not NULL,
 * holds "PHRASE\r\nHEADER LINES" as sipagent_refuse() stores it (an empty
 * phrase: the standard one). An INVITE's answer carries a To tag made from
 * `key`, so that its retransmissions get the very same answer. */
static void reply_final_text(struct sipagent *a, msg_t *msg, const sip_t *sip,
                             uint64_t key, int status, const char *text, size_t len)
{
    char phrase[128] = "", headers[512] = "";
    if (text) {
        const char *crlf = memchr(text, '\r', len);
        size_t plen = crlf ? (size_t)(crlf - text) : len;
        snprintf(phrase, sizeof phrase, "%.*s", (int)plen, text);
        if (crlf && len - plen > 2)
            snprintf(headers, sizeof headers, "%.*s", (int)(len - plen - 2), crlf + 2);
    }
    sip_to_t *to = NULL;
    if (sip->sip_request->rq_method == sip_method_invite && sip->sip_to &&
        !sip->sip_to->a_tag) {
        char tag[32];
        snprintf(tag, sizeof tag, "tag=sl%016llx", (unsigned long long)key);
        to = sip_to_dup(msg_home(msg), sip->sip_to);
        if (to && sip_to_tag(msg_home(msg), to, tag) < 0)
            to = NULL;
    }
    nta_msg_treply(a->nta, msg, status, phrase[0] ? phrase : sip_status_phrase(status),
                   TAG_IF(to, SIPTAG_TO(to)),
                   TAG_IF(headers[0], SIPTAG_HEADER_STR(headers)), TAG_END());
}

/* A retransmission of a request answered without a transaction (a BYE, a
 * refused INVITE), or of an INVITE whose transaction has ended: answered
 * again, or absorbed. Returns true when msg was taken. */
static bool answered_before(struct sipagent *a, msg_t *msg, sip_t *sip)
{
    sip_method_t method = sip->sip_request->rq_method;
    const struct answer *ans;
    bool invite = method == sip_method_invite && !(sip->sip_to && sip->sip_to->a_tag);
    if (invite && answer_get(a->answers, now_ms(), request_key(ANSWER_INVITE, sip))) {
        msg_destroy(msg);
        return true;
    }
    uint64_t key;
    if ((!invite && method != sip_method_bye) ||
        !(ans = answer_get(a->answers, now_ms(), key = request_key(ANSWER_FINAL, sip))))
        return false;
    reply_final_text(a, msg, sip, key, ans->status, ans->text, ans->len);
    return true;
}

/* Every request outside a dialog comes here, without a transaction.
 * OPTIONS and the errors are answered statelessly, and so is whatever a
 * method's prefilter answers; a request a handler takes becomes a server
 * transaction (nta then absorbs retransmissions) owned by that handler. */
static int on_message(nta_agent_magic_t *magic, nta_agent_t *nta, msg_t *msg, sip_t *sip)
{
    struct sipagent *a = (struct sipagent *)magic;
    (void)nta;
    if (a->stream_filter && sip && sip->sip_request) {
        su_addrinfo_t const *ai = msg_addrinfo(msg);
        if (ai && ai->ai_socktype != SOCK_DGRAM && ai->ai_addr &&
            !a->stream_filter(ai->ai_addr, (socklen_t)ai->ai_addrlen, a->stream_arg)) {
            msg_destroy(msg);
            return 0;
        }
    }
    if (!sip || !sip->sip_request) {
        /* An answer to one of our INVITEs that nta no longer holds, or a
         * retransmission the answer cache knows the ACK of; else a
         * response nobody asked for. */
        if (sip && sip->sip_status && sipinv_set_response(a->invites, msg, sip))
            return 0;
        msg_destroy(msg);
        return 0;
    }
    sipmetrics_request_received(sip->sip_request->rq_method);
    /* RFC 3261 8.2.2.1: only SIP URIs here. */
    enum url_type_e scheme = sip->sip_request->rq_url->url_type;
    if (scheme != url_sip && scheme != url_sips) {
        reply_stateless(a, msg, SIP_416_UNSUPPORTED_URI, false);
        return 0;
    }
    sip_method_t method = sip->sip_request->rq_method;
    if (answered_before(a, msg, sip))
        return 0;
    /* RFC 3261 8.2.2.3: an extension we lack is refused with 420, naming
     * it; ACK and CANCEL are exempt. */
    char unsupported[256];
    if (method != sip_method_ack && method != sip_method_cancel &&
        unsupported_tags(sip, unsupported, sizeof unsupported)) {
        nta_msg_treply(a->nta, msg, SIP_420_BAD_EXTENSION,
                       SIPTAG_UNSUPPORTED_STR(unsupported), TAG_END());
        return 0;
    }
    nta_leg_t *leg;
    if (sip->sip_to && sip->sip_to->a_tag && a->dialog_h && sip->sip_call_id &&
        (leg = nta_leg_by_dialog(a->nta, NULL, sip->sip_call_id,
                                 sip->sip_from ? sip->sip_from->a_tag : NULL, NULL,
                                 sip->sip_to->a_tag, NULL))) {
        a->dialog_h(a->dialog_arg, leg, msg, sip);
        return 0;
    }
    switch (method) {
    case sip_method_bye:
    case sip_method_cancel:
    case sip_method_prack:
    case sip_method_update:
        /* In-dialog methods reaching us match no dialog or transaction
         * (RFC 3261 15.1.2, 9.2). */
        reply_stateless(a, msg, SIP_481_NO_TRANSACTION, false);
        return 0;
    case sip_method_options:
        nta_msg_treply(a->nta, msg, SIP_200_OK, SIPTAG_ALLOW_STR(allow_methods),
                       SIPTAG_ACCEPT_STR("application/sdp"), TAG_END());
        return 0;
    case sip_method_ack:
        msg_destroy(msg); /* an ACK out of dialog has nothing to match */
        return 0;
    default:
        break;
    }

    int m = find_method(a, method);
    /* The method's prefilter answers what needs no transaction. */
    if (m >= 0 && a->methods[m].pre &&
        a->methods[m].pre(msg, sip, a->methods[m].pre_arg) == 0)
        return 0;
    if (m >= 0 && !a->methods[m].h)
        m = -1;
    if (m < 0 && !a->request_h) {
        reply_stateless(a, msg, known_method(method) ? 405 : 501,
                        known_method(method) ? "Method Not Allowed" : "Not Implemented",
                        true);
        return 0;
    }
    nta_incoming_t *irq = nta_incoming_create(a->nta, NULL, msg, sip, TAG_END());
    if (!irq)
        return 0; /* nta dropped the message */
    if (method == sip_method_invite)
        remember_invite(a, sip);
    int rc = -1;
    if (m >= 0)
        rc = a->methods[m].h(irq, sip, a->methods[m].arg);
    if (rc < 0 && a->request_h)
        rc = a->request_h(irq, sip, a->request_arg);
    if (rc == 0)
        return 0; /* the handler owns irq now */
    if (rc > 0)
        nta_incoming_treply(irq, rc, sip_status_phrase(rc), TAG_END());
    else if (known_method(method))
        nta_incoming_treply(irq, SIP_405_METHOD_NOT_ALLOWED,
                            SIPTAG_ALLOW_STR(allow_methods), TAG_END());
    else
        nta_incoming_treply(irq, SIP_501_NOT_IMPLEMENTED, SIPTAG_ALLOW_STR(allow_methods),
                            TAG_END());
    nta_incoming_destroy(irq);
    return 0;
}

/* "udp:127.0.0.1:5060" -> "sip:127.0.0.1:5060;transport=udp"; *tls tells a
 * TLS listener, whose URL is sips: (nta binds TLS only for sips:). */
static int listen_url(const char *spec, char *out, size_t outlen, bool *tls)
{
    char proto[8], host[64];
    int port;
    if (config_parse_listen(spec, proto, sizeof proto, host, sizeof host, &port) < 0)
        return -EINVAL;
    *tls = strcmp(proto, "tls") == 0;
    int v6 = strchr(host, ':') != NULL;
    snprintf(out, outlen, "%s:%s%s%s:%d;transport=%s", *tls ? "sips" : "sip",
             v6 ? "[" : "", host, v6 ? "]" : "", port, proto);
    return 0;
}

/* Whether any listener is TLS (parsefix then leaves stream Vias alone). */
static bool listens_tls(const struct strlist *listen)
{
    char proto[8], host[64];
    int port;
    for (size_t i = 0; i < listen->n; i++) {
        if (config_parse_listen(listen->v[i], proto, sizeof proto, host, sizeof host,
                                &port) == 0 &&
            strcmp(proto, "tcp") != 0 && strcmp(proto, "udp") != 0)
            return true;
    }
    return false;
}

/* sofia's TLS transport loads agent.pem and cafile.pem from a directory;
 * tls.c sets up each TLS context itself instead, so sofia is pointed at a
 * directory that cannot exist (a child of a file) and loads nothing. */
#define SIPAGENT_NO_TLS_FILES "/dev/null/moonswitch"

/* What TLS transports get besides the stream limits: sofia's files (none),
 * and (SDWN_ERROR) a connection that closes under pending requests fails
 * them at once; without it a failed handshake would leave the request
 * waiting for timer F. Every listener says which it wants: the first one's
 * tags are also the defaults of those made after it. */
#define SIPAGENT_TLS_TAGS(tls)                                                           \
    TAG_IF(tls, TPTAG_CERTIFICATE(SIPAGENT_NO_TLS_FILES)), TPTAG_SDWN_ERROR(tls)

/* One listener on `url`; the first one creates the agent. A TLS one has
 * its context set up by tls.c. Returns 0 or a negative errno. */
static int add_listener(struct sipagent *a, su_root_t *root, const char *url,
                        const char *ident, bool tls)
{
    if (tls)
        siptls_capture_begin(a->tls);
    errno = 0;
    int rc = 0;
    if (!a->nta) {
        /* SERVER_RPORT(2): responses go to the source IP:port even when
         * the request did not ask with rport (reply_address "socket",
         * the default; replyaddr.c switches it per gateway). */
        a->nta = nta_agent_create(
            root, URL_STRING_MAKE(url), on_message, (nta_agent_magic_t *)a, NTATAG_UA(1),
            NTATAG_SERVER_RPORT(2), NTATAG_CLIENT_RPORT(1),
            NTATAG_MAXSIZE(SIPAGENT_MAX_MESSAGE), TPTAG_TIMEOUT(SIPAGENT_INCOMPLETE_MS),
            TPTAG_IDLE(SIPAGENT_IDLE_MS), TPTAG_UDP_RMEM(SIPAGENT_UDP_RMEM),
            TPTAG_IDENT(ident), SIPAGENT_TLS_TAGS(tls), TAG_END());
        if (!a->nta)
            rc = errno ? -errno : -EIO;
    } else if (nta_agent_add_tport(a->nta, URL_STRING_MAKE(url),
                                   TPTAG_TIMEOUT(SIPAGENT_INCOMPLETE_MS),
                                   TPTAG_IDLE(SIPAGENT_IDLE_MS), TPTAG_IDENT(ident),
                                   TAG_IF(!ident, TPTAG_SERVER(0)),
                                   SIPAGENT_TLS_TAGS(tls), TAG_END()) < 0) {
        rc = errno ? -errno : -EIO;
    }
    if (tls && siptls_capture_end(a->tls) < 0 && rc == 0) {
        log_error("sip", "no TLS context was made for %s", url);
        rc = -EPROTONOSUPPORT;
    }
    return rc;
}

/* Once a second: the answer cache lets go of what expired, even when no
 * new answer comes to push it out. */
static void on_sweep(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic;
    (void)t;
    struct sipagent *a = (struct sipagent *)arg;
    answer_expire(a->answers, now_ms());
}

int sipagent_create(struct sipagent **ap, su_root_t *root, const struct strlist *listen,
                    unsigned t1_ms, struct siptls *tls)
{
    struct sipagent *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->tls = tls;
    if (listen->n == 0) {
        log_error("sip", "no listen address");
        free(a);
        return -EINVAL;
    }
    a->root = root;
    char url[128], ident[24];
    int rc = 0;
    parsefix_check();
    /* Streams may be TLS with a tls: listener or a TLS client transport. */
    parsefix_set_streams_tcp(!tls && !listens_tls(listen));
    bool tls_listener = false;
    /* The agent is made with the first listener that is not TLS, when
     * there is one: its address is nta's own contact, which the UDP and TCP
     * requests we send carry. */
    size_t first = 0;
    while (first < listen->n && strncmp(listen->v[first], "tls:", 4) == 0)
        first++;
    if (first == listen->n)
        first = 0;
    for (size_t k = 0; k < listen->n; k++) {
        size_t i = k == 0 ? first : k <= first ? k - 1 : k;
        /* Each listener its own ident: nta picks a UDP listener for a
         * request by ident, and the registrar's NAT keepalives must leave
         * from the one the REGISTER came to (NTATAG_TPORT). */
        snprintf(ident, sizeof ident, "l%zu", i);
        bool is_tls;
        rc = listen_url(listen->v[i], url, sizeof url, &is_tls);
        if (rc < 0) {
            log_error("sip", "listen %s: not udp:IP:PORT, tcp:IP:PORT or tls:IP:PORT",
                      listen->v[i]);
            goto fail;
        }
        if (is_tls && (!tls || !siptls_has_certificate(tls))) {
            rc = -EINVAL;
            log_error("sip", "listen %s: needs switch.tls with a certificate and key",
                      listen->v[i]);
            goto fail;
        }
        rc = add_listener(a, root, url, ident, is_tls);
        if (rc < 0) {
            log_error("sip", "cannot listen on %s: %s", listen->v[i], strerror(-rc));
            goto fail;
        }
        tls_listener |= is_tls;
        log_info("sip", "listening on %s", listen->v[i]);
    }
    /* TLS to carriers without a TLS listener: a client-only transport. */
    if (tls && !tls_listener) {
        rc = add_listener(a, root, "sips:*:*;transport=tls", NULL, true);
        if (rc < 0) {
            log_error("sip", "cannot create the TLS client transport: %s", strerror(-rc));
            goto fail;
        }
        log_info("sip", "TLS to peers only: no tls: listener, peers cannot connect in");
    }
    a->answers = answer_cache_create(64 * t1_ms + SIPAGENT_ANSWER_SLACK_MS);
    a->invites = a->answers ? sipinv_set_create(a->nta, a->answers, now_ms) : NULL;
    a->sweep = su_timer_create(su_root_task(root), 1000);
    if (!a->invites || !a->sweep || su_timer_set_for_ever(a->sweep, on_sweep, a) < 0) {
        rc = -ENOMEM;
        goto fail;
    }
    sipagent_set_t1(a, t1_ms);
    /* nta sends requests on a leg. Without a default leg (requests come to
     * on_message instead), out-of-dialog requests we send need one that no
     * incoming request can match: a dialogless leg for a method that does
     * not exist, at a host that does not either. */
    a->client_leg = nta_leg_tcreate(
        a->nta, NULL, NULL, NTATAG_NO_DIALOG(1), NTATAG_METHOD("X-MOONSWITCH-CLIENT"),
        URLTAG_URL("sip:client.moonswitch.invalid"), TAG_END());
    if (!a->client_leg) {
        rc = -ENOMEM;
        goto fail;
    }
    *ap = a;
    return 0;
fail:
    sipagent_destroy(a);
    return rc ? rc : -EIO;
}

void sipagent_destroy(struct sipagent *a)
{
    if (!a)
        return;
    if (a->sweep)
        su_timer_destroy(a->sweep);
    sipinv_set_destroy(a->invites);
    if (a->client_leg)
        nta_leg_destroy(a->client_leg);
    if (a->nta)
        nta_agent_destroy(a->nta);
    answer_cache_destroy(a->answers);
    free(a);
}

/* The slot of `method`, a new one if it has none; -ENOSPC when full. */
static int method_slot(struct sipagent *a, sip_method_t method)
{
    unsigned i = 0;
    while (i < a->nmethods && a->methods[i].method != method)
        i++;
    if (i == SIPAGENT_MAX_METHODS)
        return -ENOSPC;
    if (i == a->nmethods) {
        memset(&a->methods[i], 0, sizeof a->methods[i]);
        a->methods[i].method = method;
        a->nmethods++;
    }
    return (int)i;
}

int sipagent_set_method_handler(struct sipagent *a, sip_method_t method,
                                sipagent_request_h *h, void *arg)
{
    int i = method_slot(a, method);
    if (i < 0)
        return i;
    a->methods[i].h = h;
    a->methods[i].arg = arg;
    return 0;
}

int sipagent_set_method_prefilter(struct sipagent *a, sip_method_t method,
                                  sipagent_stateless_h *pre, void *arg)
{
    int i = method_slot(a, method);
    if (i < 0)
        return i;
    a->methods[i].pre = pre;
    a->methods[i].pre_arg = arg;
    return 0;
}

void sipagent_set_request_handler(struct sipagent *a, sipagent_request_h *h, void *arg)
{
    a->request_h = h;
    a->request_arg = arg;
}

void sipagent_set_dialog_handler(struct sipagent *a, sipagent_dialog_h *h, void *arg)
{
    a->dialog_h = h;
    a->dialog_arg = arg;
}

void sipagent_reply_final(struct sipagent *a, msg_t *msg, const sip_t *sip, int status,
                          const char *phrase)
{
    if (sip->sip_request->rq_method == sip_method_bye)
        answer_put(a->answers, now_ms(), request_key(ANSWER_FINAL, sip), ANSWER_FINAL,
                   status, NULL, 0);
    nta_msg_treply(a->nta, msg, status, phrase ? phrase : sip_status_phrase(status),
                   TAG_END());
}

void sipagent_refuse(struct sipagent *a, msg_t *msg, const sip_t *sip, int status,
                     const char *phrase, const char *headers)
{
    uint64_t key = request_key(ANSWER_FINAL, sip);
    char text[640];
    size_t len = 0;
    if (phrase && strcmp(phrase, sip_status_phrase(status)) == 0)
        phrase = NULL;
    if (phrase || headers) {
        int n = snprintf(text, sizeof text, "%.127s\r\n%.500s", phrase ? phrase : "",
                         headers ? headers : "");
        len = n > 0 && (size_t)n < sizeof text ? (size_t)n : 0;
    }
    answer_put(a->answers, now_ms(), key, ANSWER_FINAL, status, len ? text : NULL, len);
    reply_final_text(a, msg, sip, key, status, len ? text : NULL, len);
}

struct sipinv_set *sipagent_invites(struct sipagent *a)
{
    return a->invites;
}

/* T1 drives every retransmission and timeout: timer F is 64 * T1, and T2
 * (the cap on non-INVITE retransmission intervals) stays at RFC 3261's 4 s
 * unless T1 is so large that it must grow. */
void sipagent_set_t1(struct sipagent *a, unsigned t1_ms)
{
    unsigned t2 = t1_ms * 8 > 4000 ? t1_ms * 8 : 4000;
    nta_agent_set_params(a->nta, NTATAG_SIP_T1(t1_ms), NTATAG_SIP_T1X64(64 * t1_ms),
                         NTATAG_SIP_T2(t2), NTATAG_SIP_T4(SIPAGENT_T4_MS), TAG_END());
    if (a->answers)
        answer_cache_set_ttl(a->answers, 64 * t1_ms + SIPAGENT_ANSWER_SLACK_MS);
}

void sipagent_stats(struct sipagent *a, struct sipagent_stats *st)
{
    usize_t irq = 0, orq = 0, leg = 0, recv = 0, sent = 0, rretry = 0, qretry = 0,
            sretry = 0, trq = 0, trs = 0;
    nta_agent_get_stats(
        a->nta, NTATAG_S_IRQ_HASH_USED_REF(irq), NTATAG_S_ORQ_HASH_USED_REF(orq),
        NTATAG_S_LEG_HASH_USED_REF(leg), NTATAG_S_RECV_MSG_REF(recv),
        NTATAG_S_SENT_MSG_REF(sent), NTATAG_S_RECV_RETRY_REF(rretry),
        NTATAG_S_RETRY_REQUEST_REF(qretry), NTATAG_S_RETRY_RESPONSE_REF(sretry),
        NTATAG_S_TRLESS_REQUEST_REF(trq), NTATAG_S_TRLESS_RESPONSE_REF(trs), TAG_END());
    *st = (struct sipagent_stats){.server_tr = irq,
                                  .client_tr = orq,
                                  .dialogs = leg,
                                  .recv_msg = recv,
                                  .sent_msg = sent,
                                  .recv_retry = rretry,
                                  .retry_request = qretry,
                                  .retry_response = sretry,
                                  .trless_request = trq,
                                  .trless_response = trs};
    st->tr_bytes = (st->server_tr + st->client_tr) * SIPAGENT_TR_BYTES;
    st->invites = sipinv_set_count(a->invites, &st->invites_light);
    st->answers = answer_count(a->answers);
    st->answer_bytes = answer_bytes(a->answers);
}

void sipagent_set_stream_filter(struct sipagent *a, sipagent_source_filter_h *fn,
                                void *arg)
{
    a->stream_filter = fn;
    a->stream_arg = arg;
}

nta_agent_t *sipagent_nta(struct sipagent *a)
{
    return a->nta;
}

nta_leg_t *sipagent_client_leg(struct sipagent *a)
{
    return a->client_leg;
}

/* ---- Sending requests ---------------------------------------------------- */

int sipagent_answer_while_creating(nta_outgoing_magic_t *magic, nta_outgoing_t *orq,
                                   sip_t const *sip)
{
    int *status = (int *)magic;
    int st =
        sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (st >= 200)
        *status = st;
    return 0;
}

nta_outgoing_t *sipagent_request(struct sipagent *a, int *refused, nta_leg_t *leg,
                                 nta_response_f *callback, nta_outgoing_magic_t *magic,
                                 url_string_t const *route, sip_method_t method,
                                 char const *name, url_string_t const *request_uri,
                                 tag_type_t tag, tag_value_t value, ...)
{
    int answered = 0;
    ta_list ta;
    ta_start(ta, tag, value);
    nta_outgoing_t *orq = nta_outgoing_tcreate(
        leg ? leg : a->client_leg, sipagent_answer_while_creating,
        (nta_outgoing_magic_t *)&answered, route, method, name, request_uri, ta_tags(ta));
    ta_end(ta);
    if (orq && answered) {
        nta_outgoing_destroy(orq);
        orq = NULL;
    } else if (orq) {
        nta_outgoing_bind(orq, callback, magic);
    }
    if (!orq && refused)
        *refused = answered ? answered : 503;
    evport_rearm(a->root);
    return orq;
}

bool sipagent_cancel(struct sipagent *a, nta_outgoing_t *orq)
{
    nta_outgoing_t *cancel = nta_outgoing_tcancel(orq, NULL, NULL, TAG_END());
    if (cancel)
        nta_outgoing_destroy(cancel);
    evport_rearm(a->root);
    return cancel != NULL;
}

void sipagent_after_sofia(struct sipagent *a)
{
    evport_rearm(a->root);
}
