/* Answers written as text. See rawreply.h. */
#include "sip/rawreply.h"
#include "dgram.h"
#include "sip/hep.h"
#include "sip/sipmetrics.h"
#include "sip/statuscount.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <sofia-sip/msg.h>
#include <sofia-sip/msg_addr.h>
#include <sofia-sip/msg_header.h>
#include <sofia-sip/nta_stateless.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/nta_tport.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_string.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/tport_tag.h>

/* ---- Where ----------------------------------------------------------------------- */

static int copy_str(char *out, size_t size, const char *s)
{
    size_t n = strlen(s);
    if (n >= size)
        return -1;
    memcpy(out, s, n + 1);
    return 0;
}

/* The source port of msg, or 0. */
static unsigned source_port(msg_t *msg)
{
    const su_addrinfo_t *ai = msg_addrinfo(msg);
    const struct sockaddr *sa = ai ? (const struct sockaddr *)ai->ai_addr : NULL;
    if (sa && sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa && sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}

/* The port of a port string: digits only, 1..65535; 0 if not. */
static unsigned numeric_port(const char *s)
{
    unsigned long v = 0;
    if (!*s)
        return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || (v = v * 10 + (unsigned)(*s - '0')) > 65535)
            return 0;
    }
    return (unsigned)v;
}

/* Over UDP, when the request is a datagram read from socket dgram_socket()
 * by tp now (tport_delivered_by() answers only while the request is being
 * delivered) and the destination is a numeric address of the socket's
 * family: the socket and the address, for sendto(). Otherwise d->fd stays
 * -1 and the answer takes tport's way. The socket lives as long as tp: a
 * primary transport, made with the agent, closed with it. */
static void direct_dest(struct rawreply_dest *d, tport_t *tp)
{
    static int sofia_log = -1; /* sofia's message log shows what tport sends */
    if (sofia_log < 0)
        sofia_log = getenv("TPORT_LOG") != NULL;
    d->fd = -1;
    int fd = sofia_log ? -1 : dgram_socket();
    const su_addrinfo_t *local = tport_get_address(tp);
    unsigned port = numeric_port(d->port);
    if (fd < 0 || !tport_is_udp(tp) || !local || !port)
        return;
    char host[sizeof d->host];
    size_t n = strlen(d->host);
    if (n >= 2 && d->host[0] == '[' && d->host[n - 1] == ']') {
        memcpy(host, d->host + 1, n - 2);
        host[n - 2] = '\0';
    } else {
        memcpy(host, d->host, n + 1);
    }
    memset(&d->to, 0, sizeof d->to);
    if (local->ai_family == AF_INET &&
        inet_pton(AF_INET, host, &d->to.in.sin_addr) == 1) {
        d->to.in.sin_family = AF_INET;
        d->to.in.sin_port = htons((uint16_t)port);
        d->tolen = sizeof d->to.in;
    } else if (local->ai_family == AF_INET6 &&
               inet_pton(AF_INET6, host, &d->to.in6.sin6_addr) == 1) {
        d->to.in6.sin6_family = AF_INET6;
        d->to.in6.sin6_port = htons((uint16_t)port);
        d->tolen = sizeof d->to.in6;
    } else {
        return;
    }
    d->fd = fd;
}

/* nta's choice (nta_tpn_by_via() and mreply()): the maddr, else the
 * received address, else the Via host; over UDP the rport when the agent
 * uses rport (NTATAG_SERVER_RPORT), else the Via port. Asking the agent
 * costs more than the rest of an answer; the Via tells instead: an agent
 * that uses rport wrote the source port there on arrival, over any value
 * the client gave, so an rport equal to the source port is the one to use
 * (the same port either way when the client wrote it), and any other means
 * the agent left it alone. */
int rawreply_dest(struct rawreply_dest *d, nta_agent_t *nta, msg_t *msg, const sip_t *sip)
{
    memset(d, 0, sizeof *d);
    d->fd = -1;
    const sip_via_t *v = sip->sip_via;
    tport_t *tp = tport_delivered_by(nta_agent_tports(nta), msg);
    if (!v || !v->v_host || !tp)
        return -1;
    const char *port = sip_via_port(v, NULL);
    bool udp = v->v_protocol == sip_transport_udp ||
               su_casematch(v->v_protocol, sip_transport_udp);
    if (udp && v->v_rport && v->v_rport[0] && !v->v_maddr &&
        strtoul(v->v_rport, NULL, 10) == source_port(msg))
        port = v->v_rport;
    const char *host = v->v_maddr      ? v->v_maddr
                       : v->v_received ? v->v_received
                                       : v->v_host;
    if (copy_str(d->proto, sizeof d->proto, sip_via_transport(v)) < 0 ||
        copy_str(d->host, sizeof d->host, host) < 0 || !port ||
        copy_str(d->port, sizeof d->port, port) < 0)
        return -1;
    d->tpn.tpn_proto = d->proto;
    d->tpn.tpn_canon = d->tpn.tpn_host = d->host;
    d->tpn.tpn_port = d->port;
    d->tp = tport_ref(tp);
    if (udp)
        direct_dest(d, tp);
    return 0;
}

void rawreply_dest_release(struct rawreply_dest *d)
{
    if (d->tp)
        tport_unref(d->tp);
    d->tp = NULL;
}

/* The status of an answer's text ("SIP/2.0 401 ..."), or 0. */
static int status_of(const char *text, size_t len)
{
    if (len < 12 || memcmp(text, "SIP/2.0 ", 8) != 0)
        return 0;
    int status = 0;
    for (int i = 8; i < 11; i++) {
        if (text[i] < '0' || text[i] > '9')
            return 0;
        status = status * 10 + (text[i] - '0');
    }
    return status;
}

/* sendto() on the request's socket. A first failure may be a pending
 * socket error (an ICMP report, which tport reads from the error queue),
 * returned instead of sending and cleared: one more try. */
static bool send_direct(const struct rawreply_dest *d, const char *text, size_t len)
{
    for (int i = 0; i < 2; i++) {
        ssize_t n =
            sendto(d->fd, text, len, MSG_NOSIGNAL | MSG_DONTWAIT, &d->to.sa, d->tolen);
        if (n == (ssize_t)len)
            return true;
        if (n >= 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            return false;
    }
    return false;
}

/* What tport does after sending (tport_sent_message(), tport_log_msg()). */
static void sent_as_tport_would(const struct rawreply_dest *d, const char *text,
                                size_t len)
{
    statuscount_add(false, status_of(text, len));
    hep_sent_text(d->tp, &d->to.sa, text, len);
}

int rawreply_send(const struct rawreply_dest *d, const char *text, size_t len)
{
    if (!d->tp)
        return -1;
    if (d->fd >= 0 && send_direct(d, text, len)) {
        sent_as_tport_would(d, text, len);
        sipmetrics_response_sent();
        return 0;
    }
    /* A message of the text alone, as its payload: sofia makes the chain
     * of fragments it sends only from a first line, which goes again once
     * the chain holds the payload. */
    msg_t *m = msg_create(sip_default_mclass(), 0);
    su_home_t *home = msg_home(m);
    sip_payload_t *pl = m ? sip_payload_create(home, text, (isize_t)len) : NULL;
    sip_status_t *st = pl ? sip_status_create(home, 200, "", NULL) : NULL;
    if (!st || msg_header_insert(m, msg_object(m), (msg_header_t *)st) < 0 ||
        msg_header_insert(m, msg_object(m), (msg_header_t *)pl) < 0 ||
        msg_serialize(m, msg_object(m)) < 0 ||
        msg_header_remove(m, msg_object(m), (msg_header_t *)st) < 0) {
        msg_destroy(m);
        return -1;
    }
    tport_t *sent = tport_tsend(d->tp, m, &d->tpn, TPTAG_MTU(INT_MAX), TAG_END());
    msg_destroy(m); /* tport holds its own reference while it queues */
    if (!sent)
        return -1;
    /* tport counts by status from the message's status line, which is not
     * there: its text is all payload. */
    statuscount_add(false, status_of(text, len));
    sipmetrics_response_sent();
    return 0;
}

/* ---- What ------------------------------------------------------------------------ */

/* A To tag: 60 bits of a 64-bit mix (splitmix64) of a counter started at
 * a random value, 12 characters. Unique within a run; unguessable enough
 * for a tag, which is no secret. */
static void new_tag(char out[13])
{
    static uint64_t state;
    static int seeded;
    if (!seeded) {
        if (getrandom(&state, sizeof state, 0) != (ssize_t)sizeof state)
            state = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ULL;
        seeded = 1;
    }
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuv";
    for (int i = 0; i < 12; i++, z >>= 5)
        out[i] = alphabet[z & 31];
    out[12] = '\0';
}

struct out {
    char *buf;
    size_t size, len;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full || o->size - o->len <= n) {
        o->full = true;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_uint(struct out *o, unsigned long v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, tmp + i, sizeof tmp - i);
}

/* One header as sofia encodes it (name, value, CRLF). */
static void put_header(struct out *o, const void *h)
{
    if (o->full)
        return;
    issize_t n = msg_header_e(o->buf + o->len, (isize_t)(o->size - o->len),
                              (const msg_header_t *)h, 0);
    if (n < 0 || (size_t)n >= o->size - o->len) {
        o->full = true;
        return;
    }
    o->len += (size_t)n;
}

size_t rawreply_head(char *buf, size_t size, const sip_t *sip, int status,
                     const char *phrase, bool record_route)
{
    struct out o = {.buf = buf, .size = size};
    if (!sip->sip_via || !sip->sip_from || !sip->sip_to || !sip->sip_call_id ||
        !sip->sip_cseq || status < 100 || status > 699 || size == 0)
        return 0;
    buf[0] = '\0';
    puts_(&o, "SIP/2.0 ");
    put_uint(&o, (unsigned long)status);
    put(&o, " ", 1);
    puts_(&o, phrase ? phrase : "");
    put(&o, "\r\n", 2);
    for (const sip_via_t *v = sip->sip_via; v; v = v->v_next)
        put_header(&o, v);
    if (record_route)
        for (const sip_record_route_t *rr = sip->sip_record_route; rr; rr = rr->r_next)
            put_header(&o, rr);
    put_header(&o, sip->sip_from);
    put_header(&o, sip->sip_to);
    if (!sip->sip_to->a_tag && !o.full && o.len >= 2) {
        char tag[13];
        new_tag(tag);
        o.len -= 2; /* before the CRLF */
        put(&o, ";tag=", 5);
        put(&o, tag, 12);
        put(&o, "\r\n", 2);
    }
    puts_(&o, "Call-ID: ");
    puts_(&o, sip->sip_call_id->i_id);
    puts_(&o, "\r\nCSeq: ");
    put_uint(&o, sip->sip_cseq->cs_seq);
    put(&o, " ", 1);
    puts_(&o, sip->sip_cseq->cs_method_name);
    put(&o, "\r\n", 2);
    return o.full ? 0 : o.len;
}

int rawreply_answer(nta_agent_t *nta, msg_t *msg, const sip_t *sip, int status,
                    const char *phrase, const char *headers)
{
    char text[4096];
    struct rawreply_dest d;
    size_t n = rawreply_head(text, sizeof text, sip, status, phrase, true);
    size_t extra = headers ? strlen(headers) : 0;
    static const char tail[] = "Content-Length: 0\r\n\r\n";
    if (n == 0 || n + extra + sizeof tail > sizeof text ||
        rawreply_dest(&d, nta, msg, sip) < 0) {
        /* Too big or nowhere to go by this path: nta's way. */
        char hdr[2048];
        size_t h = extra < sizeof hdr ? extra : 0;
        memcpy(hdr, headers ? headers : "", h);
        while (h >= 2 && hdr[h - 2] == '\r' && hdr[h - 1] == '\n')
            h -= 2;
        hdr[h] = '\0';
        return nta_msg_treply(nta, msg, status, phrase, TAG_IF(h, SIPTAG_HEADER_STR(hdr)),
                              TAG_END());
    }
    if (extra)
        memcpy(text + n, headers, extra);
    memcpy(text + n + extra, tail, sizeof tail);
    int rc = rawreply_send(&d, text, n + extra + sizeof tail - 1);
    rawreply_dest_release(&d);
    msg_destroy(msg);
    return rc;
}
