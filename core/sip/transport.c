/* Transport selection for the requests the switch starts. See transport.h. */
#include "sip/transport.h"
#include "config.h"
#include "sip/tls.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta_tport.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_protos.h>
#include <sofia-sip/tport.h>

static const char *const names[] = {"udp", "tcp", "tls"};

const char *transport_name(int transport)
{
    return transport >= 0 && transport <= TRANSPORT_TLS ? names[transport] : "udp";
}

int transport_by_name(const char *name)
{
    for (int i = 0; name && i <= TRANSPORT_TLS; i++)
        if (strcasecmp(name, names[i]) == 0)
            return i;
    return -1;
}

const char *transport_param(int transport)
{
    return transport == TRANSPORT_TLS   ? ";transport=tls"
           : transport == TRANSPORT_TCP ? ";transport=tcp"
                                        : "";
}

int transport_uri(char *out, size_t len, const char *user, const char *host, int port,
                  int transport)
{
    char portbuf[16] = "";
    if (port > 0)
        snprintf(portbuf, sizeof portbuf, ":%d", port);
    int n = snprintf(out, len, "sip:%s%s%s%s%s", user ? user : "", user ? "@" : "", host,
                     portbuf, transport_param(transport));
    return n < 0 || (size_t)n >= len ? -1 : n;
}

/* The first primary transport of `proto` that listens somewhere. */
static const tp_name_t *listener(nta_agent_t *nta, const char *proto)
{
    for (tport_t *tp = tport_primaries(nta_agent_tports(nta)); tp; tp = tport_next(tp)) {
        const tp_name_t *n = tport_name(tp);
        if (n && n->tpn_proto && strcasecmp(n->tpn_proto, proto) == 0 && n->tpn_host &&
            strcmp(n->tpn_host, "*") != 0)
            return n;
    }
    return NULL;
}

void transport_local(nta_agent_t *nta, int transport, const char *local_ip, char *out,
                     size_t len)
{
    sip_contact_t const *m = nta_agent_contact(nta);
    const char *host = m ? m->m_url->url_host : "127.0.0.1";
    const char *port = m && m->m_url->url_port ? m->m_url->url_port : "5060";
    const tp_name_t *n =
        transport == TRANSPORT_UDP ? NULL : listener(nta, names[transport]);
    if (n) {
        host = n->tpn_host;
        port = n->tpn_port;
    } else if (transport == TRANSPORT_TLS) {
        port = NULL; /* no TLS listener: no port of ours to give */
    }
    if (local_ip)
        host = local_ip;
    bool v6 = strchr(host, ':') && host[0] != '[';
    snprintf(out, len, "%s%s%s%s%s", v6 ? "[" : "", host, v6 ? "]" : "", port ? ":" : "",
             port ? port : "");
}

const char *transport_contact(nta_agent_t *nta, int transport, const char *udp_contact,
                              char *buf, size_t len)
{
    if (transport == TRANSPORT_UDP)
        return udp_contact;
    char hostport[128];
    transport_local(nta, transport, NULL, hostport, sizeof hostport);
    snprintf(buf, len, "<sip:%s%s>", hostport, transport_param(transport));
    return buf;
}

int transport_of_msg(msg_t *msg)
{
    su_addrinfo_t *ai = msg ? msg_addrinfo(msg) : NULL;
    if (!ai || ai->ai_protocol != IPPROTO_TCP)
        return TRANSPORT_UDP;
    sip_t const *sip = sip_object(msg);
    sip_via_t const *via = sip ? sip->sip_via : NULL;
    if (via && via->v_protocol && strcasecmp(via->v_protocol, sip_transport_tls) == 0)
        return TRANSPORT_TLS;
    return TRANSPORT_TCP;
}

int transport_endpoint(const char *binding_transport, const char *source, char *target,
                       size_t len)
{
    if (transport_by_name(binding_transport) != TRANSPORT_TLS || !source || !*source)
        return TRANSPORT_UDP;
    snprintf(target, len, "%s", source);
    return TRANSPORT_TLS;
}

const char *transport_tls_failure(int transport, const char *proxy, const char *server,
                                  int port, time_t since)
{
    if (transport != TRANSPORT_TLS)
        return NULL;
    char host[256];
    if (proxy) {
        /* "sip:host:port;...", "host:port" or "host" */
        const char *h = strncasecmp(proxy, "sip:", 4) == 0 ? proxy + 4 : proxy;
        size_t n = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":;>");
        if (n >= sizeof host)
            return NULL;
        memcpy(host, h, n);
        host[n] = '\0';
        port = h[n] == ':' ? atoi(h + n + 1) : 5061;
        server = host;
    }
    return siptls_failure(siptls_instance(), server, port, since);
}
