/* The SIP agent: nta with UA semantics, a default leg for out-of-dialog
 * requests, OPTIONS, and 405/501 for what nobody handles. */
#include "sip/agent.h"
#include "config.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/nta_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/url.h>

struct sipagent {
    nta_agent_t *nta;
    nta_leg_t *default_leg;
    struct {
        sip_method_t method;
        sipagent_request_h *h;
        void *arg;
    } methods[SIPAGENT_MAX_METHODS];
    unsigned nmethods;
    sipagent_request_h *request_h;
    void *request_arg;
};

/* A stream connection that has sent part of a message gets this long to
 * finish it; one that has been silent this long is closed. Without them a
 * peer (or an attacker) holds a descriptor for ever. Registered endpoints on
 * TCP keep their connections open with their own keepalives. */
#define SIPAGENT_INCOMPLETE_MS 30000
#define SIPAGENT_IDLE_MS 600000

/* Largest message accepted on any transport. A B2BUA's INVITE with SDP is a
 * few KiB; anything near this is an attack or a broken peer. */
#define SIPAGENT_MAX_MESSAGE (64 * 1024)

static const char allow_methods[] =
    "INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, INFO, UPDATE, PRACK, REFER, NOTIFY, "
    "MESSAGE, SUBSCRIBE";

const char *sipagent_allow(void)
{
    return allow_methods;
}

/* Standard methods we know of but do not serve out of dialog get 405;
 * anything else gets 501. */
static int known_method(sip_method_t m)
{
    return m != sip_method_unknown && m != sip_method_invalid;
}

static int on_default_leg(nta_leg_magic_t *magic, nta_leg_t *leg, nta_incoming_t *irq,
                          sip_t const *sip)
{
    struct sipagent *a = (struct sipagent *)magic;
    (void)leg;

    /* RFC 3261 8.2.2.1: only SIP URIs here. */
    enum url_type_e scheme = sip->sip_request->rq_url->url_type;
    if (scheme != url_sip && scheme != url_sips) {
        nta_incoming_treply(irq, SIP_416_UNSUPPORTED_URI, TAG_END());
        return 0;
    }

    switch (sip->sip_request->rq_method) {
    case sip_method_bye:
    case sip_method_cancel:
    case sip_method_prack:
    case sip_method_update:
        /* In-dialog methods reaching the default leg match no dialog or
         * transaction (RFC 3261 15.1.2, 9.2). */
        nta_incoming_treply(irq, SIP_481_NO_TRANSACTION, TAG_END());
        return 0;
    case sip_method_options:
        nta_incoming_treply(irq, SIP_200_OK, SIPTAG_ALLOW_STR(allow_methods),
                            SIPTAG_ACCEPT_STR("application/sdp"),
                            SIPTAG_SUPPORTED_STR("timer"), TAG_END());
        return 0;
    case sip_method_ack:
        return 0; /* an ACK out of dialog has nothing to match: drop it */
    default:
        break;
    }

    sip_method_t method = sip->sip_request->rq_method;
    for (unsigned i = 0; i < a->nmethods; i++) {
        if (a->methods[i].method == method) {
            int rc = a->methods[i].h(irq, sip, a->methods[i].arg);
            if (rc >= 0)
                return rc;
            break;
        }
    }
    if (a->request_h) {
        int rc = a->request_h(irq, sip, a->request_arg);
        if (rc >= 0)
            return rc;
    }
    if (known_method(sip->sip_request->rq_method)) {
        nta_incoming_treply(irq, SIP_405_METHOD_NOT_ALLOWED,
                            SIPTAG_ALLOW_STR(allow_methods), TAG_END());
        return 0;
    }
    nta_incoming_treply(irq, SIP_501_NOT_IMPLEMENTED, SIPTAG_ALLOW_STR(allow_methods),
                        TAG_END());
    return 0;
}

/* "udp:127.0.0.1:5060" -> "sip:127.0.0.1:5060;transport=udp" */
static int listen_url(const char *spec, char *out, size_t outlen)
{
    char proto[8], host[64];
    int port;
    if (config_parse_listen(spec, proto, sizeof proto, host, sizeof host, &port) < 0)
        return -EINVAL;
    if (strcmp(proto, "tls") == 0)
        return -EPROTONOSUPPORT;
    int v6 = strchr(host, ':') != NULL;
    snprintf(out, outlen, "sip:%s%s%s:%d;transport=%s", v6 ? "[" : "", host, v6 ? "]" : "",
             port, proto);
    return 0;
}

int sipagent_create(struct sipagent **ap, su_root_t *root, const struct strlist *listen,
                    unsigned t1_ms)
{
    struct sipagent *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    if (listen->n == 0) {
        log_error("sip", "no listen address");
        free(a);
        return -EINVAL;
    }
    char url[128];
    int rc = 0;
    for (size_t i = 0; i < listen->n; i++) {
        rc = listen_url(listen->v[i], url, sizeof url);
        if (rc == -EPROTONOSUPPORT) {
            log_error("sip", "listen %s: tls is not supported yet", listen->v[i]);
            goto fail;
        }
        if (rc < 0) {
            log_error("sip", "listen %s: not udp:IP:PORT or tcp:IP:PORT", listen->v[i]);
            goto fail;
        }
        if (!a->nta) {
            a->nta = nta_agent_create(root, URL_STRING_MAKE(url), NULL, NULL, NTATAG_UA(1),
                                      NTATAG_SERVER_RPORT(1), NTATAG_CLIENT_RPORT(1),
                                      NTATAG_MAXSIZE(SIPAGENT_MAX_MESSAGE),
                                      TPTAG_TIMEOUT(SIPAGENT_INCOMPLETE_MS),
                                      TPTAG_IDLE(SIPAGENT_IDLE_MS), TAG_END());
            if (!a->nta) {
                rc = errno ? -errno : -EIO;
                log_error("sip", "cannot listen on %s: %s", listen->v[i], strerror(-rc));
                goto fail;
            }
        } else if (nta_agent_add_tport(a->nta, URL_STRING_MAKE(url),
                                       TPTAG_TIMEOUT(SIPAGENT_INCOMPLETE_MS),
                                       TPTAG_IDLE(SIPAGENT_IDLE_MS), TAG_END()) < 0) {
            rc = errno ? -errno : -EIO;
            log_error("sip", "cannot listen on %s: %s", listen->v[i], strerror(-rc));
            goto fail;
        }
        log_info("sip", "listening on %s", listen->v[i]);
    }
    sipagent_set_t1(a, t1_ms);
    a->default_leg =
        nta_leg_tcreate(a->nta, on_default_leg, (nta_leg_magic_t *)a, NTATAG_NO_DIALOG(1),
                        TAG_END());
    if (!a->default_leg) {
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
    if (a->default_leg)
        nta_leg_destroy(a->default_leg);
    if (a->nta)
        nta_agent_destroy(a->nta);
    free(a);
}

int sipagent_set_method_handler(struct sipagent *a, sip_method_t method,
                                sipagent_request_h *h, void *arg)
{
    unsigned i = 0;
    while (i < a->nmethods && a->methods[i].method != method)
        i++;
    if (i == SIPAGENT_MAX_METHODS)
        return -ENOSPC;
    a->methods[i].method = method;
    a->methods[i].h = h;
    a->methods[i].arg = arg;
    if (i == a->nmethods)
        a->nmethods++;
    return 0;
}

void sipagent_set_request_handler(struct sipagent *a, sipagent_request_h *h, void *arg)
{
    a->request_h = h;
    a->request_arg = arg;
}

/* T1 drives every retransmission and timeout: timer F is 64 * T1, and T2
 * (the cap on non-INVITE retransmission intervals) stays at RFC 3261's 4 s
 * unless T1 is so large that it must grow. */
void sipagent_set_t1(struct sipagent *a, unsigned t1_ms)
{
    unsigned t2 = t1_ms * 8 > 4000 ? t1_ms * 8 : 4000;
    nta_agent_set_params(a->nta, NTATAG_SIP_T1(t1_ms), NTATAG_SIP_T1X64(64 * t1_ms),
                         NTATAG_SIP_T2(t2), TAG_END());
}

nta_agent_t *sipagent_nta(struct sipagent *a)
{
    return a->nta;
}
