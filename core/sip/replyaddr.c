/* replyaddr: per-peer choice of where responses go. See replyaddr.h. */
#include "replyaddr.h"
#include "../config.h"
#include "../evport.h"
#include "../log.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* sofia's NTATAG_SERVER_RPORT values we use: 0 ignores rport (responses go
 * to the source IP, or the Via host when it is that IP, at the Via port); 2
 * always replies to the source port, as if every client had asked with
 * rport (RFC 3581). */
enum { RPORT_NEVER = 0, RPORT_ALWAYS = 2 };

struct peer {
    int family;
    unsigned char addr[16];
};

struct replyaddr {
    su_root_t *root;
    nta_agent_t *nta;
    struct peer *via_peers; /* gateways that want the Via port */
    size_t n;
    int current; /* the agent's setting now */
};

static void set_rport(struct replyaddr *ra, int mode)
{
    if (ra->current == mode)
        return;
    nta_agent_set_params(ra->nta, NTATAG_SERVER_RPORT(mode), TAG_END());
    ra->current = mode;
}

static bool peer_match(const struct peer *p, const struct sockaddr *from)
{
    if (from->sa_family == AF_INET && p->family == AF_INET)
        return memcmp(&((const struct sockaddr_in *)from)->sin_addr, p->addr, 4) == 0;
    if (from->sa_family == AF_INET6 && p->family == AF_INET6)
        return memcmp(&((const struct sockaddr_in6 *)from)->sin6_addr, p->addr, 16) == 0;
    return false;
}

static void on_datagram(const struct sockaddr *from, socklen_t fromlen, void *arg)
{
    struct replyaddr *ra = arg;
    (void)fromlen;
    int mode = RPORT_ALWAYS;
    for (size_t i = 0; i < ra->n; i++)
        if (peer_match(&ra->via_peers[i], from)) {
            mode = RPORT_NEVER;
            break;
        }
    set_rport(ra, mode);
}

/* The host of "host:port", "[v6]:port" or "host" as an IP; false for names. */
static bool parse_ip(const char *address, struct peer *out)
{
    char host[64];
    const char *end;
    if (address[0] == '[') {
        address++;
        end = strchr(address, ']');
    } else {
        end = strchr(address, ':');
        if (end && strchr(end + 1, ':'))
            end = NULL; /* a bare IPv6 address */
    }
    size_t len = end ? (size_t)(end - address) : strlen(address);
    if (len >= sizeof host)
        return false;
    memcpy(host, address, len);
    host[len] = '\0';
    if (inet_pton(AF_INET, host, out->addr) == 1)
        return out->family = AF_INET, true;
    if (inet_pton(AF_INET6, host, out->addr) == 1)
        return out->family = AF_INET6, true;
    return false;
}

struct replyaddr *replyaddr_create(su_root_t *root, nta_agent_t *nta)
{
    struct replyaddr *ra = calloc(1, sizeof *ra);
    if (!ra)
        return NULL;
    ra->root = root;
    ra->nta = nta;
    ra->current = -1;
    set_rport(ra, RPORT_ALWAYS);
    return ra;
}

void replyaddr_apply(struct replyaddr *ra, const struct config *cfg)
{
    size_t total = config_count(cfg, KIND_ROUTING_GATEWAY), n = 0;
    struct peer *peers = total ? calloc(total, sizeof *peers) : NULL;
    if (total && !peers) {
        log_error("reply", "out of memory: every response goes to the source socket");
        total = 0;
    }
    for (size_t i = 0; i < total; i++) {
        const struct routing_gateway_def *g =
            (const void *)config_at(cfg, KIND_ROUTING_GATEWAY, i);
        if (g->reply_address == REPLY_SOCKET)
            continue;
        if (!g->address || !parse_ip(g->address, &peers[n])) {
            log_warn("reply", "gateway %s: reply_address needs an IP address, not %s; "
                              "replying to the source socket", g->head.name,
                     g->address ? g->address : "(none)");
            continue;
        }
        n++;
    }
    free(ra->via_peers);
    ra->via_peers = peers;
    ra->n = n;
    evport_set_datagram_observer(ra->root, n ? on_datagram : NULL, ra);
    if (!n)
        set_rport(ra, RPORT_ALWAYS);
}

void replyaddr_destroy(struct replyaddr *ra)
{
    if (!ra)
        return;
    evport_set_datagram_observer(ra->root, NULL, NULL);
    free(ra->via_peers);
    free(ra);
}
