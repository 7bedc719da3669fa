/* SIP capture to Homer, HEP version 3. See hep.h. */
#include "sip/hep.h"
#include "config.h"
#include "log.h"
#include "metrics_server.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta_tport.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_time.h>
#include <sofia-sip/tport.h>
#include <sofia-sip/tport_tag.h>

/* ---- The encoder ------------------------------------------------------------- */

enum {
    CHUNK_FAMILY = 0x0001,
    CHUNK_PROTO = 0x0002,
    CHUNK_SRC4 = 0x0003,
    CHUNK_DST4 = 0x0004,
    CHUNK_SRC6 = 0x0005,
    CHUNK_DST6 = 0x0006,
    CHUNK_SPORT = 0x0007,
    CHUNK_DPORT = 0x0008,
    CHUNK_SEC = 0x0009,
    CHUNK_USEC = 0x000a,
    CHUNK_PROTO_TYPE = 0x000b,
    CHUNK_AGENT_ID = 0x000c,
    CHUNK_PAYLOAD = 0x000f,
    CHUNK_CORRELATION = 0x0011,
};
#define HEP_PROTO_SIP 1
#define HEP_MAX 65535

struct writer {
    uint8_t *out;
    size_t cap, len;
    bool full;
};

static void put(struct writer *w, const void *data, size_t n)
{
    if (w->full || n > w->cap - w->len) {
        w->full = true;
        return;
    }
    memcpy(w->out + w->len, data, n);
    w->len += n;
}

static void put16(struct writer *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    put(w, b, 2);
}

static void put32(struct writer *w, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
                    (uint8_t)v};
    put(w, b, 4);
}

/* A chunk's header: vendor 0 (generic), type, length with the header. */
static void chunk(struct writer *w, uint16_t type, size_t len)
{
    put16(w, 0);
    put16(w, type);
    put16(w, (uint16_t)(len + 6 > 0xffff ? 0xffff : len + 6));
}

static void chunk8(struct writer *w, uint16_t type, uint8_t v)
{
    chunk(w, type, 1);
    put(w, &v, 1);
}

static void chunk16(struct writer *w, uint16_t type, uint16_t v)
{
    chunk(w, type, 2);
    put16(w, v);
}

static void chunk32(struct writer *w, uint16_t type, uint32_t v)
{
    chunk(w, type, 4);
    put32(w, v);
}

size_t hep_encode(uint8_t *out, size_t cap, const struct hep_packet *p)
{
    struct writer w = {out, cap > HEP_MAX ? HEP_MAX : cap, 0, false};
    bool v6 = p->src->sa_family == AF_INET6;
    if (p->dst->sa_family != p->src->sa_family)
        return 0;
    put(&w, "HEP3", 4);
    put16(&w, 0); /* the total length, below */
    chunk8(&w, CHUNK_FAMILY, v6 ? 10 : 2);
    chunk8(&w, CHUNK_PROTO, p->proto);
    uint16_t sport, dport;
    if (v6) {
        const struct sockaddr_in6 *s = (const void *)p->src, *d = (const void *)p->dst;
        chunk(&w, CHUNK_SRC6, 16);
        put(&w, &s->sin6_addr, 16);
        chunk(&w, CHUNK_DST6, 16);
        put(&w, &d->sin6_addr, 16);
        sport = ntohs(s->sin6_port), dport = ntohs(d->sin6_port);
    } else {
        const struct sockaddr_in *s = (const void *)p->src, *d = (const void *)p->dst;
        chunk(&w, CHUNK_SRC4, 4);
        put(&w, &s->sin_addr, 4);
        chunk(&w, CHUNK_DST4, 4);
        put(&w, &d->sin_addr, 4);
        sport = ntohs(s->sin_port), dport = ntohs(d->sin_port);
    }
    chunk16(&w, CHUNK_SPORT, sport);
    chunk16(&w, CHUNK_DPORT, dport);
    chunk32(&w, CHUNK_SEC, p->sec);
    chunk32(&w, CHUNK_USEC, p->usec);
    chunk8(&w, CHUNK_PROTO_TYPE, HEP_PROTO_SIP);
    chunk32(&w, CHUNK_AGENT_ID, p->agent_id);
    if (p->correlation && p->correlation[0]) {
        size_t n = strlen(p->correlation);
        chunk(&w, CHUNK_CORRELATION, n);
        put(&w, p->correlation, n);
    }
    size_t total = 0;
    for (size_t i = 0; i < p->npayload; i++)
        total += p->payload[i].iov_len;
    chunk(&w, CHUNK_PAYLOAD, total);
    for (size_t i = 0; i < p->npayload; i++)
        put(&w, p->payload[i].iov_base, p->payload[i].iov_len);
    if (w.full)
        return 0;
    out[4] = (uint8_t)(w.len >> 8);
    out[5] = (uint8_t)w.len;
    return w.len;
}

/* ---- Correlation ------------------------------------------------------------- */

/* A B-leg Call-ID and its correlation, in one allocation. */
struct pair {
    struct pair *next; /* in its bucket */
    struct pair *all;  /* every pair, for the sweep */
    uint64_t hash;
    double retire_at; /* monotonic seconds; 0 while nta holds the dialog */
    const char *correlation;
    char call_id[];
};

#define SWEEP_S 30
#define LINGER_S 32.0
#define BUCKETS_MIN 256

struct hep {
    nta_agent_t *nta;
    struct event_base *base;
    int fd; /* connected UDP socket; -1: not capturing */
    char address[80];
    uint32_t agent_id;
    bool sofia_log; /* TPORT_LOG or MSG_STREAM_LOG: sofia's own log too */
    struct pair **buckets;
    size_t nbuckets, npairs;
    struct pair *pairs;
    struct event *sweep;
    uint8_t buf[HEP_MAX];
};

static struct hep *active;
static bool log_hooked; /* sofia's transport called tport_log_msg() below */

static uint64_t hash_of(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *correlation_of(const struct hep *h, const char *call_id)
{
    if (!h->npairs || !call_id)
        return NULL;
    uint64_t hash = hash_of(call_id);
    for (struct pair *p = h->buckets[hash & (h->nbuckets - 1)]; p; p = p->next)
        if (p->hash == hash && strcmp(p->call_id, call_id) == 0)
            return p->correlation;
    return NULL;
}

static void grow(struct hep *h)
{
    size_t n = h->nbuckets ? h->nbuckets * 2 : BUCKETS_MIN;
    struct pair **b = calloc(n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (struct pair *p = h->pairs; p; p = p->all) {
        p->next = b[p->hash & (n - 1)];
        b[p->hash & (n - 1)] = p;
    }
    free(h->buckets);
    h->buckets = b;
    h->nbuckets = n;
}

void hep_correlate(const char *call_id, const char *correlation)
{
    struct hep *h = active;
    if (!h || h->fd < 0 || !call_id || !correlation || !correlation[0])
        return;
    if (h->npairs >= h->nbuckets)
        grow(h);
    if (!h->buckets)
        return;
    size_t a = strlen(call_id) + 1, b = strlen(correlation) + 1;
    struct pair *p = malloc(sizeof *p + a + b);
    if (!p)
        return;
    memcpy(p->call_id, call_id, a);
    memcpy(p->call_id + a, correlation, b);
    p->correlation = p->call_id + a;
    p->hash = hash_of(call_id);
    p->retire_at = 0;
    size_t i = p->hash & (h->nbuckets - 1);
    p->next = h->buckets[i];
    h->buckets[i] = p;
    p->all = h->pairs;
    h->pairs = p;
    if (!h->npairs++) {
        struct timeval every = {SWEEP_S, 0};
        event_add(h->sweep, &every);
    }
}

static void unlink_bucket(struct hep *h, struct pair *p)
{
    struct pair **pp = &h->buckets[p->hash & (h->nbuckets - 1)];
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
}

/* Pairs whose dialog nta no longer holds retire, LINGER_S later they go. */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hep *h = arg;
    double now = now_mono();
    for (struct pair **pp = &h->pairs; *pp;) {
        struct pair *p = *pp;
        if (!p->retire_at) {
            if (!nta_leg_by_call_id(h->nta, p->call_id))
                p->retire_at = now + LINGER_S;
        } else if (p->retire_at <= now) {
            *pp = p->all;
            unlink_bucket(h, p);
            free(p);
            h->npairs--;
            continue;
        }
        pp = &p->all;
    }
    if (h->npairs) {
        struct timeval every = {SWEEP_S, 0};
        event_add(h->sweep, &every);
    }
}

static void free_pairs(struct hep *h)
{
    while (h->pairs) {
        struct pair *p = h->pairs;
        h->pairs = p->all;
        free(p);
    }
    free(h->buckets);
    h->buckets = NULL;
    h->nbuckets = h->npairs = 0;
    if (h->sweep)
        event_del(h->sweep);
}

/* ---- Capture ------------------------------------------------------------------ */

/* sofia's (tport_logging.c), not in its installed headers. */
void tport_log_msg(tport_t *self, msg_t *msg, char const *what, char const *via,
                   su_time_t now);

static void sofia_log_msg(tport_t *self, msg_t *msg, char const *what, char const *via,
                          su_time_t now)
{
    static void (*sofia)(tport_t *, msg_t *, char const *, char const *, su_time_t);
    if (!sofia)
        *(void **)&sofia = dlsym(RTLD_NEXT, "tport_log_msg");
    if (sofia)
        sofia(self, msg, what, via, now);
}

/* The transport's bound address in the family of the peer's (a zero
 * address with its port when they differ). */
static void local_address(tport_t *tp, int family, struct sockaddr_storage *out)
{
    tport_t *primary = tport_is_secondary(tp) ? tport_parent(tp) : tp;
    su_addrinfo_t const *ai = primary ? tport_get_address(primary) : NULL;
    memset(out, 0, sizeof *out);
    out->ss_family = (sa_family_t)family;
    if (!ai || !ai->ai_addr)
        return;
    in_port_t port =
        ai->ai_family == AF_INET6
            ? ((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_port
            : ((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_port;
    if (ai->ai_family == family && ai->ai_addrlen <= sizeof *out)
        memcpy(out, ai->ai_addr, ai->ai_addrlen);
    else if (family == AF_INET6)
        ((struct sockaddr_in6 *)out)->sin6_port = port;
    else
        ((struct sockaddr_in *)out)->sin_port = port;
}

#define IOV_STACK 128

/* One packet of the message in iov[n], exchanged with `remote` over tp. */
static void capture_iov(struct hep *h, tport_t *tp, const struct sockaddr *remote,
                        const struct iovec *iov, size_t n, bool received, su_time_t now,
                        const char *call_id)
{
    static struct log_limit too_big, send_failed;
    struct sockaddr_storage local;
    local_address(tp, remote->sa_family, &local);
    struct hep_packet p = {
        .src = received ? remote : (const struct sockaddr *)&local,
        .dst = received ? (const struct sockaddr *)&local : remote,
        .proto = tport_is_dgram(tp) ? IPPROTO_UDP : IPPROTO_TCP,
        .sec = (uint32_t)(now.tv_sec - SU_TIME_EPOCH),
        .usec = (uint32_t)now.tv_usec,
        .agent_id = h->agent_id,
        .payload = iov,
        .npayload = n,
        .correlation = correlation_of(h, call_id),
    };
    size_t len = hep_encode(h->buf, sizeof h->buf, &p);
    if (!len) {
        log_limited(&too_big, LOG_WARN, "hep",
                    "a message too big for HEP is not captured");
        return;
    }
    if (send(h->fd, h->buf, len, MSG_DONTWAIT) < 0 && errno != ECONNREFUSED)
        log_limited(&send_failed, LOG_WARN, "hep", "sending to %s: %s", h->address,
                    strerror(errno));
}

static void capture(struct hep *h, tport_t *tp, msg_t *msg, bool received, su_time_t now)
{
    static struct log_limit too_big;
    su_sockaddr_t const *peer = msg_addr(msg);
    if (!peer || (peer->su_family != AF_INET && peer->su_family != AF_INET6))
        return;
    msg_iovec_t mv[IOV_STACK];
    struct iovec iov[IOV_STACK];
    isize_t n = msg_iovec(msg, mv, IOV_STACK);
    if (n <= 0)
        return;
    if ((size_t)n > IOV_STACK) {
        log_limited(&too_big, LOG_WARN, "hep",
                    "a message of more than %d pieces is not captured", IOV_STACK);
        return;
    }
    for (isize_t i = 0; i < n; i++)
        iov[i] = (struct iovec){mv[i].mv_base, mv[i].mv_len};
    sip_t const *sip = sip_object(msg);
    capture_iov(h, tp, &peer->su_sa, iov, (size_t)n, received, now,
                sip && sip->sip_call_id ? sip->sip_call_id->i_id : NULL);
}

/* The Call-ID of a message's text (long or compact form) into out, or
 * false when it has none before the body. */
static bool call_id_of(const char *text, size_t len, char *out, size_t size)
{
    const char *end = text + len;
    for (const char *line = text; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        if (eol - line <= 1)
            return false; /* the empty line: the head is over */
        const char *colon = memchr(line, ':', (size_t)(eol - line));
        size_t name = colon ? (size_t)(colon - line) : 0;
        while (name && (line[name - 1] == ' ' || line[name - 1] == '\t'))
            name--;
        if (colon && ((name == 7 && strncasecmp(line, "call-id", 7) == 0) ||
                      (name == 1 && (line[0] == 'i' || line[0] == 'I')))) {
            const char *v = colon + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if ((size_t)(ve - v) >= size)
                return false;
            memcpy(out, v, (size_t)(ve - v));
            out[ve - v] = '\0';
            return true;
        }
        line = eol + 1;
    }
    return false;
}

void hep_sent_text(tport_t *tp, const struct sockaddr *to, const char *text, size_t len)
{
    struct hep *h = active;
    if (!h || h->fd < 0 || !tp || !to ||
        (to->sa_family != AF_INET && to->sa_family != AF_INET6))
        return;
    char call_id[256];
    struct iovec iov = {(void *)text, len};
    capture_iov(h, tp, to, &iov, 1, false, su_now(),
                call_id_of(text, len, call_id, sizeof call_id) ? call_id : NULL);
}

/* Replaces sofia's: tport calls it for each message delivered ("recv") and
 * each one sent ("send") while its log is on. */
void tport_log_msg(tport_t *self, msg_t *msg, char const *what, char const *via,
                   su_time_t now)
{
    struct hep *h = active;
    log_hooked = true;
    if (h && h->fd >= 0 && self && msg && what)
        capture(h, self, msg, what[0] == 'r', now);
    if (!h || h->fd < 0 || h->sofia_log)
        sofia_log_msg(self, msg, what, via, now);
}

bool hep_capturing(const struct hep *h)
{
    return h && h->fd >= 0;
}

bool hep_hooked(void)
{
    return log_hooked;
}

/* ---- Life ---------------------------------------------------------------------- */

int hep_create(struct hep **hp, nta_agent_t *nta, struct event_base *base)
{
    *hp = NULL;
    if (active)
        return -EBUSY;
    struct hep *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    h->nta = nta;
    h->base = base;
    h->fd = -1;
    h->sofia_log = getenv("TPORT_LOG") || getenv("MSG_STREAM_LOG");
    h->sweep = evtimer_new(base, on_sweep, h);
    if (!h->sweep) {
        free(h);
        return -ENOMEM;
    }
    active = h;
    *hp = h;
    return 0;
}

static void set_sofia_log(struct hep *h, bool on)
{
    tport_t *master = h->nta ? nta_agent_tports(h->nta) : NULL;
    if (master)
        tport_set_params(master, TPTAG_LOG(on || h->sofia_log), TAG_END());
}

static void stop(struct hep *h)
{
    if (h->fd < 0)
        return;
    set_sofia_log(h, false);
    close(h->fd);
    h->fd = -1;
    h->address[0] = '\0';
    free_pairs(h);
    log_info("hep", "SIP capture stopped");
}

void hep_destroy(struct hep *h)
{
    if (!h)
        return;
    stop(h);
    free_pairs(h);
    event_free(h->sweep);
    if (active == h)
        active = NULL;
    free(h);
}

/* A UDP socket connected to address, non-blocking; -1 (logged) if not. */
static int open_socket(const char *address)
{
    char host[64];
    int port;
    if (metrics_parse_address(address, host, sizeof host, &port) < 0) {
        log_error("hep", "'%s' is not IP:PORT", address);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
        ((struct sockaddr_in *)&ss)->sin_family = AF_INET;
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
        len = sizeof(struct sockaddr_in);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_pton(AF_INET6, host, &s6->sin6_addr);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        len = sizeof *s6;
    }
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) < 0) {
        log_error("hep", "cannot send to %s: %s", address, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int sndbuf = 1 << 20; /* bursts of a busy loop turn */
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    return fd;
}

int hep_apply(struct hep *h, const struct config *cfg)
{
    const struct hep_settings *s = &config_switch(cfg)->hep;
    if (!s->address) {
        stop(h);
        return 0;
    }
    h->agent_id = (uint32_t)s->id;
    if (h->fd >= 0 && strcmp(h->address, s->address) == 0)
        return 0;
    int fd = open_socket(s->address);
    if (fd < 0) {
        stop(h);
        return -1;
    }
    bool was = h->fd >= 0;
    if (was)
        close(h->fd);
    h->fd = fd;
    snprintf(h->address, sizeof h->address, "%s", s->address);
    if (!was)
        set_sofia_log(h, true);
    log_info("hep", "SIP capture to %s, agent id %u", h->address, h->agent_id);
    return 0;
}
