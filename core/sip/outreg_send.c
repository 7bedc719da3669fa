/* Outbound registration: what goes on the wire. Call-ID, From tag and CSeq
 * (kept in the store), the Contact, the REGISTER sent through the agent,
 * and its final answer read back into a struct outreg_response for the
 * state machine. See outreg_internal.h. */
#define NTA_OUTGOING_MAGIC_T struct outreg

#include "config.h"
#include "log.h"
#include "random.h"
#include "sip/agent.h"
#include "sip/outreg_internal.h"
#include "sip/transport.h"
#include "store.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <sofia-sip/msg.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/nta_tport.h>
#include <sofia-sip/tport.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>

/* CSeq values reserved in the store at a time: one write per this many
 * REGISTERs, and a restart continues above the reservation. */
#define CSEQ_RESERVE 100
#define OUTREG_RECORD_VERSION 1

/* ---- Call-ID, From tag, CSeq ---------------------------------------------- */

/* Record v1: call_id NUL from_tag NUL u32 cseq_reserved (big-endian). */
static void save_ids(struct outreg *r)
{
    if (!r->set->store)
        return;
    char buf[sizeof r->call_id + sizeof r->from_tag + 4];
    size_t a = strlen(r->call_id) + 1, b = strlen(r->from_tag) + 1;
    memcpy(buf, r->call_id, a);
    memcpy(buf + a, r->from_tag, b);
    uint8_t be[8];
    store_key_u64(be, r->cseq_reserved);
    memcpy(buf + a + b, be + 4, 4);
    if (store_put(r->set->store, STORE_OUTREG, r->name, strlen(r->name),
                  OUTREG_RECORD_VERSION, buf, a + b + 4) < 0)
        log_error("outreg", "%s: cannot save Call-ID and CSeq", r->name);
}

void outreg_ids_load(struct outreg *r)
{
    uint8_t version;
    void *val = NULL;
    size_t len = 0;
    if (r->set->store && store_get(r->set->store, STORE_OUTREG, r->name, strlen(r->name),
                                   &version, &val, &len) == 0) {
        const char *p = val;
        size_t a = strnlen(p, len);
        size_t b = a < len ? strnlen(p + a + 1, len - a - 1) : 0;
        if (version == OUTREG_RECORD_VERSION && a + 1 + b + 1 + 4 == len &&
            a < sizeof r->call_id && b < sizeof r->from_tag) {
            memcpy(r->call_id, p, a + 1);
            memcpy(r->from_tag, p + a + 1, b + 1);
            uint8_t be[8] = {0};
            memcpy(be + 4, p + a + b + 2, 4);
            r->cseq = (uint32_t)store_key_u64_read(be);
            r->cseq_reserved = r->cseq;
            free(val);
            log_debug("outreg", "%s: resuming Call-ID %s at CSeq %u", r->name, r->call_id,
                      r->cseq);
            return;
        }
        log_warn("outreg", "%s: unreadable stored state, starting afresh", r->name);
        free(val);
    }
    random_hex(r->call_id, 16);
    strcat(r->call_id, "@moonswitch");
    random_hex(r->from_tag, 8);
    r->cseq = 0;
    r->cseq_reserved = 0;
}

void outreg_ids_forget(struct outreg *r)
{
    if (r->set->store)
        store_del(r->set->store, STORE_OUTREG, r->name, strlen(r->name));
}

uint32_t outreg_next_cseq(struct outreg *r)
{
    r->cseq++;
    if (r->cseq >= r->cseq_reserved) {
        r->cseq_reserved = r->cseq + CSEQ_RESERVE;
        save_ids(r);
    }
    return r->cseq;
}

/* ---- The REGISTER ------------------------------------------------------------ */

/* The UDP listener REGISTERs leave from when the entry has a local_ip: the
 * one on that IP, else one on every address of its family (the policy was
 * refused unless there is one). NULL without local_ip: nta takes its first
 * UDP listener; NULL over TCP and TLS: nta opens or reuses a connection.
 * Walks the handful of listeners. */
static tport_t *local_listener(const struct outreg *r)
{
    if (!r->local_ip || !r->set->agent || r->transport != TRANSPORT_UDP)
        return NULL;
    int family = strchr(r->local_ip, ':') ? AF_INET6 : AF_INET;
    tport_t *any = NULL;
    for (tport_t *tp = tport_primaries(nta_agent_tports(sipagent_nta(r->set->agent))); tp;
         tp = tport_next(tp)) {
        const tp_name_t *n = tport_name(tp);
        if (!n || !n->tpn_proto || strcasecmp(n->tpn_proto, "udp") != 0 || !n->tpn_host)
            continue;
        if (config_ip_equal(n->tpn_host, r->local_ip))
            return tp;
        su_addrinfo_t const *ai = tport_get_address(tp);
        if (!any && config_ip_any(n->tpn_host) && ai && ai->ai_family == family)
            any = tp;
    }
    return any;
}

void outreg_compute_contact(struct outreg *r)
{
    char hostport[128];
    if (r->mode == REG_MODE_DYNAMIC && r->public_address) {
        snprintf(hostport, sizeof hostport, "%s", r->public_address);
    } else if (r->transport != TRANSPORT_UDP && r->set->agent) {
        /* The listener of the entry's transport. */
        transport_local(sipagent_nta(r->set->agent), r->transport, r->local_ip, hostport,
                        sizeof hostport);
    } else {
        struct sipagent *agent = r->set->agent;
        sip_contact_t const *m = agent ? nta_agent_contact(sipagent_nta(agent)) : NULL;
        const char *host =
            r->local_ip ? r->local_ip : (m ? m->m_url->url_host : "127.0.0.1");
        const char *port = m && m->m_url->url_port ? m->m_url->url_port : "5060";
        tport_t *tp = local_listener(r); /* the port of the listener it leaves from */
        if (tp && tport_name(tp)->tpn_port)
            port = tport_name(tp)->tpn_port;
        bool v6 = strchr(host, ':') && host[0] != '[';
        snprintf(hostport, sizeof hostport, "%s%s%s:%s", v6 ? "[" : "", host,
                 v6 ? "]" : "", port);
    }
    char contact[300];
    snprintf(contact, sizeof contact, "sip:%s@%s%s", r->username, hostport,
             transport_param(r->transport));
    outreg_set_str(&r->contact, contact);
}

void outreg_register_uri(const struct outreg *r, char *out, size_t len)
{
    transport_uri(out, len, NULL, r->server, r->port, r->transport);
}

/* The route to the proxy, over the entry's transport unless the proxy
 * names one. */
static void proxy_route(const struct outreg *r, char *route, size_t len)
{
    const char *scheme = strncmp(r->proxy, "sip:", 4) ? "sip:" : "";
    const char *param =
        strstr(r->proxy, ";transport=") ? "" : transport_param(r->transport);
    snprintf(route, len, "%s%s%s", scheme, r->proxy, param);
}

/* Log the request (or the response) of `orq` in full, when tracing. The
 * nta getters hand out a new reference to the message: dropped here. */
static void trace_msg(struct outreg *r, const char *dir, nta_outgoing_t *orq,
                      bool response)
{
    if (!r->trace)
        return;
    msg_t *msg = response ? nta_outgoing_getresponse(orq) : nta_outgoing_getrequest(orq);
    if (!msg)
        return;
    size_t len = 0;
    su_home_t home[1] = {SU_HOME_INIT(home)};
    char *text = msg_as_string(home, msg, NULL, 0, &len);
    if (text)
        log_write(LOG_INFO, "trace", "%s %s:\n%.*s", r->name, dir, (int)len, text);
    su_home_deinit(home);
    msg_destroy(msg);
}

static int on_answer(struct outreg *r, nta_outgoing_t *orq, sip_t const *sip);

static bool nta_send(struct outreg *r, int expires, int cred_status, const char *cred)
{
    char ruri[300], from[300], to[300], contact[260], exp[16], route[300];
    outreg_register_uri(r, ruri, sizeof ruri);
    const char *domain = r->hostname ? r->hostname : r->server;
    snprintf(from, sizeof from, "<sip:%s@%s>;tag=%s", r->username, domain, r->from_tag);
    snprintf(to, sizeof to, "<sip:%s@%s>", r->username, domain);
    snprintf(contact, sizeof contact, "<%s>", r->contact);
    snprintf(exp, sizeof exp, "%d", expires);
    if (r->proxy)
        proxy_route(r, route, sizeof route);
    int privacy = outreg_privacy(r);
    const char *privacy_str = privacy == PRIVACY_ID     ? "id"
                              : privacy == PRIVACY_NONE ? "none"
                                                        : NULL;

    /* From local_ip's listener: nta takes a UDP listener's ident (agent.c
     * gives each its own), so the source address is that listener's. */
    tport_t *tp = local_listener(r);

    su_home_t home[1] = {SU_HOME_INIT(home)};
    sip_cseq_t *cs = sip_cseq_create(home, r->cseq, SIP_METHOD_REGISTER);
    int refused = 0;
    nta_outgoing_t *orq = sipagent_request(
        r->set->agent, &refused, NULL, on_answer, r,
        r->proxy ? URL_STRING_MAKE(route) : NULL, SIP_METHOD_REGISTER,
        URL_STRING_MAKE(ruri), SIPTAG_FROM_STR(from), SIPTAG_TO_STR(to),
        SIPTAG_CALL_ID_STR(r->call_id), SIPTAG_CSEQ(cs), SIPTAG_CONTACT_STR(contact),
        SIPTAG_EXPIRES_STR(exp),
        TAG_IF(r->user_agent, SIPTAG_USER_AGENT_STR(r->user_agent)),
        TAG_IF(privacy_str, SIPTAG_PRIVACY_STR(privacy_str)),
        TAG_IF(cred && cred_status == 401, SIPTAG_AUTHORIZATION_STR(cred)),
        TAG_IF(cred && cred_status == 407, SIPTAG_PROXY_AUTHORIZATION_STR(cred)),
        TAG_IF(tp, NTATAG_TPORT(tp)), TAG_END());
    su_home_deinit(home);
    if (!orq) {
        outreg_set_error(r, "cannot send REGISTER to %.100s (%d)", ruri, refused);
        return false;
    }
    r->orq = orq;
    trace_msg(r, "sends", orq, false);
    return true;
}

static void nta_abandon(struct outreg *r)
{
    if (r->orq) {
        nta_outgoing_destroy(r->orq);
        r->orq = NULL;
    }
}

const struct outreg_transport outreg_nta_transport = {.send = nta_send,
                                                      .abandon = nta_abandon};

/* ---- The answer ----------------------------------------------------------------- */

/* The expiry the registrar granted: our Contact's expires parameter first
 * (or the only Contact's), then the Expires header; -1 when neither. */
static int granted_expires(const struct outreg *r, sip_t const *sip)
{
    for (sip_contact_t const *m = sip->sip_contact; m; m = m->m_next) {
        if (!m->m_expires)
            continue;
        char uri[256];
        url_e(uri, sizeof uri, m->m_url);
        if ((r->contact && strstr(uri, r->contact)) || !sip->sip_contact->m_next)
            return atoi(m->m_expires);
    }
    if (sip->sip_expires)
        return (int)sip->sip_expires->ex_delta;
    return -1;
}

/* Where the registrar saw the REGISTER come from: the top Via's received
 * and rport, else its sent-by. */
static void seen_at(sip_t const *sip, char *out, size_t len)
{
    out[0] = '\0';
    sip_via_t const *v = sip->sip_via;
    if (!v)
        return;
    const char *host = v->v_received ? v->v_received : v->v_host;
    const char *port = v->v_rport && *v->v_rport ? v->v_rport : v->v_port;
    if (host)
        snprintf(out, len, "%s:%s", host, port ? port : "5060");
}

static void read_answer(const struct outreg *r, int status, sip_t const *sip,
                        struct outreg_response *res)
{
    res->status = status;
    res->internal = sip == NULL || nta_sip_is_internal(sip);
    res->phrase = sip && sip->sip_status && sip->sip_status->st_phrase
                      ? sip->sip_status->st_phrase
                      : "";
    res->granted = -1;
    res->min_expires = -1;
    res->seen_at[0] = '\0';
    res->challenged = false;
    if (!sip)
        return;
    if (status >= 200 && status < 300) {
        res->granted = granted_expires(r, sip);
        seen_at(sip, res->seen_at, sizeof res->seen_at);
    } else if (status == 401 || status == 407) {
        res->challenged = outreg_auth_pick(status == 401 ? sip->sip_www_authenticate
                                                         : sip->sip_proxy_authenticate,
                                           &res->challenge);
    } else if (status == 423 && sip->sip_min_expires) {
        res->min_expires = (int)sip->sip_min_expires->me_delta;
    }
}

static int on_answer(struct outreg *r, nta_outgoing_t *orq, sip_t const *sip)
{
    int status =
        sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (status < 200)
        return 0;
    trace_msg(r, "receives", orq, true);
    r->orq = NULL;
    struct outreg_response res;
    read_answer(r, status, sip, &res);
    outreg_answered(r, &res); /* r may be gone after this */
    nta_outgoing_destroy(orq);
    return 0;
}
