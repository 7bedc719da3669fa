/* flood: per-source rate limits, bans and connection caps. See flood.h.
 *
 * Addresses are kept as 16 bytes (IPv4 as ::ffff:a.b.c.d), hashed with a
 * random seed so that nobody can aim at a probe window.
 *
 * Store (STORE_SUSPEND, beside the registrar's suspensions):
 *   key 'f' + IP text, value v1: u64 banned until (unix seconds) */
#include "sip/flood.h"
#include "config.h"
#include "evport.h"
#include "log.h"
#include "store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <event2/event.h>
#include <sofia-sip/nta_stateless.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/sip_tag.h>

#define BAN_VERSION 1
#define BAN_KEY 'f'
#define MAP_MIN 64

struct src {
    uint8_t a[16];
};

/* One source's token bucket. last_us 0: the slot was never used. */
struct bucket {
    struct src src;
    uint64_t last_us; /* last datagram (refill reference) */
    uint64_t win_us;  /* start of the current one-second window */
    float tokens;
    uint32_t win_count;    /* datagrams in the window, for the rate reported */
    uint32_t exempt_until; /* monotonic seconds: trusted or spared until */
    uint32_t pad;
};

/* An entry of the open-addressing maps (bans, connection counts). */
struct aent {
    struct src src;
    int64_t a;  /* bans: until (unix s); connections: count */
    uint64_t b; /* bans: datagrams dropped */
    uint8_t used;
};

struct amap {
    struct aent *v;
    uint32_t cap, n; /* cap: a power of two, or 0 */
};

struct flood {
    struct event_base *base;
    struct store *store;
    su_root_t *root;
    nta_agent_t *nta;
    struct event *sweep;
    struct event *kernel_ev; /* rebuilds the kernel's blocklist once a loop turn */
    uint64_t seed;
    int rate, ban_s, max_calls;
    struct bucket *buckets; /* FLOOD_BUCKETS */
    struct amap bans, conns;
    struct src *trusted; /* sorted */
    size_t ntrusted;
    flood_trusted_h *trusted_fn;
    void *trusted_arg;
    flood_decide_h *hook;
    void *hook_arg;
    flood_calls_h *count_fn;
    void *count_arg;
    int filtering; /* the port's datagram filter is installed */
    struct flood_stats st;
};

static struct log_limit ban_limit, end_limit, spare_limit, full_limit, refuse_limit,
    calls_limit;

/* ---- Addresses --------------------------------------------------------------- */

static bool src_from_sa(const struct sockaddr *sa, struct src *out)
{
    if (sa->sa_family == AF_INET) {
        memset(out->a, 0, 10);
        out->a[10] = out->a[11] = 0xff;
        memcpy(out->a + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(out->a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

static bool src_is_v4(const struct src *s)
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(s->a, prefix, 12) == 0;
}

static void src_text(const struct src *s, char *out, size_t outlen)
{
    if (src_is_v4(s))
        inet_ntop(AF_INET, s->a + 12, out, (socklen_t)outlen);
    else
        inet_ntop(AF_INET6, s->a, out, (socklen_t)outlen);
}

/* An IP literal, bracketed or not, with or without ":port" (IPv4 and
 * bracketed IPv6 only), or a sip: URI's host. False for names. */
static bool src_parse(const char *text, struct src *out)
{
    char host[64];
    if (strncmp(text, "sip:", 4) == 0)
        text += 4;
    const char *end;
    if (text[0] == '[') {
        text++;
        end = strchr(text, ']');
    } else {
        end = strchr(text, ':');
        if (end && strchr(end + 1, ':'))
            end = NULL; /* a bare IPv6 address */
        if (!end)
            end = strchr(text, ';');
    }
    size_t len = end ? (size_t)(end - text) : strlen(text);
    if (len == 0 || len >= sizeof host)
        return false;
    memcpy(host, text, len);
    host[len] = '\0';
    /* An IPv4 address is kept v4-mapped, as src_from_sa() keeps it. (Not
     * through a struct sockaddr_in cast to struct sockaddr: read through
     * the other type, an optimising compiler may see sin_family unset.) */
    struct in_addr v4;
    if (inet_pton(AF_INET, host, &v4) == 1) {
        memset(out->a, 0, 10);
        out->a[10] = out->a[11] = 0xff;
        memcpy(out->a + 12, &v4, 4);
        return true;
    }
    return inet_pton(AF_INET6, host, out->a) == 1;
}

static uint32_t src_hash(const struct flood *fl, const struct src *s)
{
    uint64_t x, y;
    memcpy(&x, s->a, 8);
    memcpy(&y, s->a + 8, 8);
    uint64_t h = (x ^ fl->seed) * 0x9E3779B97F4A7C15ULL;
    h = (h ^ (h >> 31) ^ y) * 0xC2B2AE3D27D4EB4FULL;
    h ^= h >> 29;
    h *= 0x165667B19E3779F9ULL;
    return (uint32_t)(h >> 32);
}

static int src_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(struct src));
}

/* ---- Maps: open addressing, linear probing, backward-shift deletion ---------- */

static struct aent *amap_find(const struct flood *fl, const struct amap *m,
                              const struct src *k)
{
    if (!m->n)
        return NULL;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = src_hash(fl, k) & mask;; i = (i + 1) & mask) {
        struct aent *e = &m->v[i];
        if (!e->used)
            return NULL;
        if (memcmp(&e->src, k, sizeof *k) == 0)
            return e;
    }
}

static int amap_grow(const struct flood *fl, struct amap *m)
{
    uint32_t cap = m->cap ? m->cap * 2 : MAP_MIN;
    struct aent *v = calloc(cap, sizeof *v);
    if (!v)
        return -ENOMEM;
    for (uint32_t i = 0; i < m->cap; i++) {
        if (!m->v[i].used)
            continue;
        uint32_t j = src_hash(fl, &m->v[i].src) & (cap - 1);
        while (v[j].used)
            j = (j + 1) & (cap - 1);
        v[j] = m->v[i];
    }
    free(m->v);
    m->v = v;
    m->cap = cap;
    return 0;
}

/* Find or add (zeroed). NULL when out of memory. */
static struct aent *amap_insert(const struct flood *fl, struct amap *m,
                                const struct src *k)
{
    struct aent *e = amap_find(fl, m, k);
    if (e)
        return e;
    if ((m->n + 1) * 2 > m->cap && amap_grow(fl, m) < 0)
        return NULL;
    uint32_t mask = m->cap - 1, i = src_hash(fl, k) & mask;
    while (m->v[i].used)
        i = (i + 1) & mask;
    e = &m->v[i];
    memset(e, 0, sizeof *e);
    e->src = *k;
    e->used = 1;
    m->n++;
    return e;
}

static void amap_remove(const struct flood *fl, struct amap *m, struct aent *e)
{
    uint32_t mask = m->cap - 1, hole = (uint32_t)(e - m->v);
    m->v[hole].used = 0;
    m->n--;
    for (uint32_t j = (hole + 1) & mask; m->v[j].used; j = (j + 1) & mask) {
        uint32_t home = src_hash(fl, &m->v[j].src) & mask;
        /* Move j into the hole unless its home lies cyclically in (hole, j]. */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays)
            continue;
        m->v[hole] = m->v[j];
        m->v[j].used = 0;
        hole = j;
    }
}

/* ---- Clocks ------------------------------------------------------------------- */

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- Bans ----------------------------------------------------------------------- */

static void on_datagram_filter_update(struct flood *fl);

/* The IPv4 bans (the first EVPORT_BLOCK_MAX of the table) go to the
 * kernel's socket filter: their datagrams never reach the switch. */
static void kernel_update(struct flood *fl)
{
    uint32_t v[EVPORT_BLOCK_MAX];
    size_t n = 0;
    for (uint32_t i = 0; i < fl->bans.cap && n < EVPORT_BLOCK_MAX; i++)
        if (fl->bans.v[i].used && src_is_v4(&fl->bans.v[i].src))
            memcpy(&v[n++], fl->bans.v[i].src.a + 12, 4);
    int rc = evport_set_datagram_blocklist(fl->root, v, n);
    fl->st.kernel = rc > 0 ? (unsigned)rc : 0;
}

static void on_kernel_update(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kernel_update(arg);
}

/* After a ban starts or ends: rebuild once this loop turn is over. */
static void kernel_schedule(struct flood *fl)
{
    if (!fl->root)
        return;
    if (!fl->kernel_ev)
        kernel_update(fl);
    else if (!event_pending(fl->kernel_ev, EV_TIMEOUT, NULL))
        event_active(fl->kernel_ev, EV_TIMEOUT, 0);
}

static void ban_persist(struct flood *fl, const struct src *k, long long until)
{
    if (!fl->store)
        return;
    char key[1 + INET6_ADDRSTRLEN];
    key[0] = BAN_KEY;
    src_text(k, key + 1, sizeof key - 1);
    size_t klen = strlen(key);
    if (until) {
        uint8_t v[8];
        store_key_u64(v, (uint64_t)until);
        store_put(fl->store, STORE_SUSPEND, key, klen, BAN_VERSION, v, sizeof v);
    } else {
        store_del(fl->store, STORE_SUSPEND, key, klen);
    }
}

static void sweep_arm(struct flood *fl)
{
    if (fl->sweep && fl->bans.n && !evtimer_pending(fl->sweep, NULL)) {
        struct timeval tv = {1, 0};
        event_add(fl->sweep, &tv);
    }
}

/* End the ban of entry e: log, forget, unstore. */
static void ban_end(struct flood *fl, struct aent *e, const char *how)
{
    char ip[INET6_ADDRSTRLEN];
    src_text(&e->src, ip, sizeof ip);
    log_limited(&end_limit, LOG_INFO, "flood", "%s: ban %s (%llu datagrams dropped)", ip,
                how, (unsigned long long)e->b);
    ban_persist(fl, &e->src, 0);
    amap_remove(fl, &fl->bans, e);
    fl->st.banned = fl->bans.n;
    if (!fl->bans.n && fl->sweep)
        event_del(fl->sweep);
    on_datagram_filter_update(fl);
    kernel_schedule(fl);
}

static int ban_src(struct flood *fl, const struct src *k, long seconds, const char *why)
{
    struct aent *e = amap_find(fl, &fl->bans, k);
    bool fresh = !e;
    if (fresh) {
        if (fl->bans.n >= FLOOD_MAX_BANS) {
            log_limited(&full_limit, LOG_WARN, "flood",
                        "%d bans in force: no more can be added", FLOOD_MAX_BANS);
            return -ENOSPC;
        }
        if (!(e = amap_insert(fl, &fl->bans, k)))
            return -ENOMEM;
        fl->st.bans++;
    }
    e->a = (int64_t)time(NULL) + seconds;
    fl->st.banned = fl->bans.n;
    ban_persist(fl, k, e->a);
    char ip[INET6_ADDRSTRLEN];
    src_text(k, ip, sizeof ip);
    log_limited(&ban_limit, LOG_WARN, "flood", "%s %s for %ld s: %s", ip,
                fresh ? "banned" : "ban extended", seconds, why ? why : "");
    sweep_arm(fl);
    on_datagram_filter_update(fl);
    if (fresh)
        kernel_schedule(fl);
    return 0;
}

/* The ban of k, lifted on the way when it is over. */
static struct aent *ban_of(struct flood *fl, const struct src *k)
{
    struct aent *e = amap_find(fl, &fl->bans, k);
    if (e && e->a <= (int64_t)time(NULL)) {
        ban_end(fl, e, "over");
        return NULL;
    }
    return e;
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct flood *fl = arg;
    (void)fd;
    (void)what;
    int64_t now = (int64_t)time(NULL);
    /* After a removal the slot holds a shifted entry: look at it again. */
    for (uint32_t i = 0; i < fl->bans.cap && fl->bans.n;) {
        struct aent *e = &fl->bans.v[i];
        if (e->used && e->a <= now) {
            ban_end(fl, e, "over");
            continue;
        }
        i++;
    }
    sweep_arm(fl);
}

int flood_ban(struct flood *fl, const char *ip, long seconds, const char *why)
{
    struct src k;
    if (!ip || !src_parse(ip, &k) || seconds <= 0)
        return -EINVAL;
    return ban_src(fl, &k, seconds, why);
}

int flood_lift(struct flood *fl, const char *ip)
{
    struct src k;
    if (!ip || !src_parse(ip, &k))
        return -EINVAL;
    struct aent *e = amap_find(fl, &fl->bans, &k);
    if (!e)
        return 0;
    ban_end(fl, e, e->a > (int64_t)time(NULL) ? "lifted" : "over");
    return 1;
}

long long flood_banned_until(struct flood *fl, const char *ip)
{
    struct src k;
    if (!ip || !src_parse(ip, &k))
        return 0;
    struct aent *e = ban_of(fl, &k);
    return e ? (long long)e->a : 0;
}

int flood_bans(struct flood *fl, flood_ban_h *fn, void *arg)
{
    int64_t now = (int64_t)time(NULL);
    for (uint32_t i = 0; i < fl->bans.cap; i++) {
        const struct aent *e = &fl->bans.v[i];
        if (!e->used || e->a <= now)
            continue;
        char ip[INET6_ADDRSTRLEN];
        src_text(&e->src, ip, sizeof ip);
        int rc = fn(ip, (long long)e->a, e->b, arg);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- Buckets ------------------------------------------------------------------ */

static void bucket_init(struct flood *fl, struct bucket *b, const struct src *k,
                        uint64_t now_us)
{
    memset(b, 0, sizeof *b);
    b->src = *k;
    b->last_us = now_us ? now_us : 1;
    b->win_us = now_us;
    b->tokens = (float)FLOOD_BURST(fl->rate);
}

/* The bucket of k, or NULL. */
static struct bucket *bucket_find(struct flood *fl, const struct src *k)
{
    uint32_t h = src_hash(fl, k);
    for (unsigned i = 0; i < FLOOD_PROBE; i++) {
        struct bucket *b = &fl->buckets[(h + i) & (FLOOD_BUCKETS - 1)];
        if (!b->last_us)
            return NULL;
        if (memcmp(&b->src, k, sizeof *k) == 0)
            return b;
    }
    return NULL;
}

/* The bucket of k, taking an empty slot of its probe window or the least
 * recently seen one. Slots are never emptied, so a source's bucket always
 * lies before the first empty slot of its window. */
static struct bucket *bucket_get(struct flood *fl, const struct src *k, uint64_t now_us)
{
    uint32_t h = src_hash(fl, k);
    struct bucket *victim = NULL;
    for (unsigned i = 0; i < FLOOD_PROBE; i++) {
        struct bucket *b = &fl->buckets[(h + i) & (FLOOD_BUCKETS - 1)];
        if (!b->last_us) {
            bucket_init(fl, b, k, now_us);
            return b;
        }
        if (memcmp(&b->src, k, sizeof *k) == 0)
            return b;
        if (!victim || b->last_us < victim->last_us)
            victim = b;
    }
    bucket_init(fl, victim, k, now_us);
    return victim;
}

/* ---- Trust ---------------------------------------------------------------------- */

static bool trusted_static(const struct flood *fl, const struct src *k)
{
    return fl->ntrusted && bsearch(k, fl->trusted, fl->ntrusted, sizeof *k, src_cmp);
}

static bool trusted(const struct flood *fl, const struct src *k, const char *ip)
{
    return trusted_static(fl, k) ||
           (fl->trusted_fn && fl->trusted_fn(ip, fl->trusted_arg));
}

int flood_set_trusted(struct flood *fl, const char *const *ips, size_t n)
{
    struct src *v = n ? calloc(n, sizeof *v) : NULL;
    if (n && !v)
        return -ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (ips[i] && src_parse(ips[i], &v[m]))
            m++;
    if (m)
        qsort(v, m, sizeof *v, src_cmp);
    free(fl->trusted);
    fl->trusted = v;
    fl->ntrusted = m;
    return (int)m;
}

void flood_set_trusted_fn(struct flood *fl, flood_trusted_h *fn, void *arg)
{
    fl->trusted_fn = fn;
    fl->trusted_arg = arg;
}

void flood_set_hook(struct flood *fl, flood_decide_h *fn, void *arg)
{
    fl->hook = fn;
    fl->hook_arg = arg;
}

/* ---- The check ------------------------------------------------------------------ */

/* Source k (bucket b) ran out of tokens: trusted, spared, or banned now. */
static bool over_rate(struct flood *fl, struct bucket *b, const struct src *k,
                      uint64_t now_us)
{
    uint32_t now_s = (uint32_t)(now_us / 1000000u);
    char ip[INET6_ADDRSTRLEN];
    src_text(k, ip, sizeof ip);
    if (trusted(fl, k, ip)) {
        b->exempt_until = now_s + FLOOD_TRUST_CACHE_S;
        b->tokens = (float)FLOOD_BURST(fl->rate);
        return true;
    }
    double secs = (double)(now_us - b->win_us) / 1e6;
    double rate = (double)b->win_count / (secs < 0.05 ? 0.05 : secs);
    int ban_s = fl->ban_s;
    /* The hook may ban or lift (the ban table), never touch buckets. */
    if (fl->hook && !fl->hook(ip, rate, fl->hook_arg)) {
        b->exempt_until = now_s + (uint32_t)ban_s;
        fl->st.spared++;
        log_limited(
            &spare_limit, LOG_WARN, "flood",
            "%s sends %.0f requests/s, over source_rate %d: spared by on_flood for %d s",
            ip, rate, fl->rate, ban_s);
        return true;
    }
    char why[96];
    snprintf(why, sizeof why, "%.0f requests/s, over source_rate %d", rate, fl->rate);
    ban_src(fl, k, ban_s, why);
    fl->st.dropped++;
    return false;
}

bool flood_check(struct flood *fl, const struct sockaddr *from, uint64_t now_us)
{
    struct src k;
    if (!src_from_sa(from, &k))
        return true;
    if (fl->bans.n) {
        struct aent *e = ban_of(fl, &k);
        if (e) {
            e->b++;
            fl->st.dropped++;
            return false;
        }
    }
    if (fl->rate <= 0)
        return true;
    struct bucket *b = bucket_get(fl, &k, now_us);
    if (now_us > b->last_us) {
        float tokens =
            b->tokens + (float)((double)(now_us - b->last_us) * fl->rate / 1e6);
        float burst = (float)FLOOD_BURST(fl->rate);
        b->tokens = tokens < burst ? tokens : burst;
        b->last_us = now_us;
    }
    if (now_us - b->win_us >= 1000000u) {
        b->win_us = now_us;
        b->win_count = 0;
    }
    b->win_count++;
    if (b->exempt_until > now_us / 1000000u)
        return true;
    if (b->tokens >= 1.0f) {
        b->tokens -= 1.0f;
        return true;
    }
    return over_rate(fl, b, &k, now_us);
}

bool flood_admit(const struct sockaddr *from, socklen_t fromlen, void *arg)
{
    (void)fromlen;
    return flood_check(arg, from, mono_us());
}

/* A response answers something we sent: only a banned source's is dropped.
 * Requests and anything else (garbage, keepalives) take a token. */
static bool on_datagram(const struct sockaddr *from, socklen_t fromlen, const char *head,
                        size_t headlen, void *arg)
{
    struct flood *fl = arg;
    (void)fromlen;
    if (headlen >= 8 && strncasecmp(head, "SIP/2.0 ", 8) == 0) {
        struct src k;
        struct aent *e;
        if (!fl->bans.n || !src_from_sa(from, &k) || !(e = ban_of(fl, &k)))
            return false;
        e->b++;
        fl->st.dropped++;
        return true;
    }
    return !flood_check(fl, from, mono_us());
}

/* The filter costs a peek per datagram: installed only while it can drop. */
static void on_datagram_filter_update(struct flood *fl)
{
    int want = fl->root && (fl->rate > 0 || fl->bans.n > 0);
    if (want == fl->filtering)
        return;
    evport_set_datagram_filter(fl->root, want ? on_datagram : NULL, fl);
    fl->filtering = want;
}

/* ---- Connections ------------------------------------------------------------------ */

static bool conn_trusted_cheap(struct flood *fl, const struct src *k)
{
    if (trusted_static(fl, k))
        return true;
    struct bucket *b = bucket_find(fl, k);
    return b && b->exempt_until > mono_us() / 1000000u;
}

static enum evport_conn_verdict conn_refuse(struct flood *fl, const struct src *k,
                                            const char *why)
{
    char ip[INET6_ADDRSTRLEN];
    src_text(k, ip, sizeof ip);
    fl->st.refused++;
    log_limited(&refuse_limit, LOG_WARN, "flood", "connection from %s refused: %s", ip,
                why);
    return EVPORT_CONN_REFUSE;
}

static enum evport_conn_verdict on_conn_accepted(const struct sockaddr *peer,
                                                 socklen_t len, void *arg)
{
    struct flood *fl = arg;
    (void)len;
    struct src k;
    if (!src_from_sa(peer, &k))
        return EVPORT_CONN_ACCEPT;
    /* Counted whatever the verdict: closed() is called for each. */
    struct aent *e = amap_insert(fl, &fl->conns, &k);
    int64_t held = e ? e->a : 0;
    if (e)
        e->a++;
    fl->st.connections = fl->conns.n;
    if (fl->bans.n && ban_of(fl, &k))
        return conn_refuse(fl, &k, "banned");
    if (conn_trusted_cheap(fl, &k))
        return EVPORT_CONN_ACCEPT;
    char ip[INET6_ADDRSTRLEN];
    src_text(&k, ip, sizeof ip);
    bool sure = false, trust = false;
    if (held >= FLOOD_CONN_PER_SOURCE) {
        sure = true;
        if (!(trust = trusted(fl, &k, ip)))
            return conn_refuse(fl, &k, "too many connections from it");
    }
    if (fl->st.silent >= FLOOD_CONN_SILENT_MAX) {
        if (!sure)
            trust = trusted(fl, &k, ip);
        if (!trust)
            return conn_refuse(fl, &k, "too many silent connections");
    }
    if (trust)
        return EVPORT_CONN_ACCEPT;
    fl->st.silent++;
    return EVPORT_CONN_WATCH;
}

static bool on_conn_readable(const struct sockaddr *peer, socklen_t len, void *arg)
{
    struct flood *fl = arg;
    (void)len;
    struct src k;
    if (!fl->bans.n || !src_from_sa(peer, &k) || !ban_of(fl, &k))
        return false;
    conn_refuse(fl, &k, "banned");
    return true;
}

static void on_conn_spoke(const struct sockaddr *peer, socklen_t len, void *arg)
{
    struct flood *fl = arg;
    (void)peer;
    (void)len;
    if (fl->st.silent)
        fl->st.silent--;
}

static void on_conn_closed(const struct sockaddr *peer, socklen_t len, bool watched,
                           void *arg)
{
    struct flood *fl = arg;
    (void)len;
    if (watched && fl->st.silent)
        fl->st.silent--;
    struct src k;
    if (!src_from_sa(peer, &k))
        return;
    struct aent *e = amap_find(fl, &fl->conns, &k);
    if (e && --e->a <= 0)
        amap_remove(fl, &fl->conns, e);
    fl->st.connections = fl->conns.n;
}

/* ---- Calls ---------------------------------------------------------------------- */

bool flood_calls_over(const struct flood *fl, size_t calls_in_progress)
{
    return fl && fl->max_calls > 0 && calls_in_progress >= (size_t)fl->max_calls;
}

void flood_set_call_counter(struct flood *fl, flood_calls_h *count, void *arg)
{
    fl->count_fn = count;
    fl->count_arg = arg;
}

void flood_calls_refused(struct flood *fl)
{
    log_limited(&calls_limit, LOG_WARN, "flood",
                "max_calls %d reached: new calls get 503", fl->max_calls);
}

int flood_prefilter_invite(msg_t *msg, sip_t *sip, void *arg)
{
    struct flood *fl = arg;
    (void)sip;
    if (!fl->nta || !fl->count_fn || !flood_calls_over(fl, fl->count_fn(fl->count_arg)))
        return -1;
    flood_calls_refused(fl);
    char retry[16];
    snprintf(retry, sizeof retry, "%d", FLOOD_CALLS_RETRY_AFTER);
    nta_msg_treply(fl->nta, msg, SIP_503_SERVICE_UNAVAILABLE,
                   SIPTAG_RETRY_AFTER_STR(retry), TAG_END());
    return 0;
}

/* ---- Life ---------------------------------------------------------------------- */

struct load_ctx {
    struct flood *fl;
    int64_t now;
    struct src dead[64]; /* over while the switch was down: unstored after */
    unsigned ndead;
};

static int load_ban(const void *key, size_t klen, uint8_t version, const void *val,
                    size_t vlen, void *arg)
{
    struct load_ctx *lc = arg;
    const char *kc = key;
    char ip[INET6_ADDRSTRLEN + 1];
    if (klen < 2 || kc[0] != BAN_KEY || klen - 1 >= sizeof ip)
        return 0; /* the registrar's */
    memcpy(ip, kc + 1, klen - 1);
    ip[klen - 1] = '\0';
    struct src k;
    if (!src_parse(ip, &k))
        return 0;
    int64_t until =
        version == BAN_VERSION && vlen == 8 ? (int64_t)store_key_u64_read(val) : 0;
    if (until <= lc->now) {
        if (lc->ndead < sizeof lc->dead / sizeof lc->dead[0])
            lc->dead[lc->ndead++] = k;
        return 0;
    }
    if (lc->fl->bans.n >= FLOOD_MAX_BANS)
        return 0;
    struct aent *e = amap_insert(lc->fl, &lc->fl->bans, &k);
    if (e)
        e->a = until;
    return 0;
}

int flood_create(struct flood **fp, struct event_base *base, struct store *store)
{
    struct flood *fl = calloc(1, sizeof *fl);
    if (!fl || !(fl->buckets = calloc(FLOOD_BUCKETS, sizeof *fl->buckets))) {
        free(fl);
        return -ENOMEM;
    }
    fl->base = base;
    fl->store = store;
    fl->rate = 100;
    fl->ban_s = 600;
    if (getrandom(&fl->seed, sizeof fl->seed, 0) != (ssize_t)sizeof fl->seed)
        fl->seed = (uint64_t)mono_us() * 0x9E3779B97F4A7C15ULL;
    if (base) {
        fl->sweep = evtimer_new(base, on_sweep, fl);
        fl->kernel_ev = event_new(base, -1, 0, on_kernel_update, fl);
    }
    if (store) {
        struct load_ctx lc = {.fl = fl, .now = (int64_t)time(NULL)};
        store_foreach(store, STORE_SUSPEND, load_ban, &lc);
        for (unsigned i = 0; i < lc.ndead; i++)
            ban_persist(fl, &lc.dead[i], 0);
        if (fl->bans.n)
            log_info("flood", "%u bans in force from the store", fl->bans.n);
    }
    fl->st.banned = fl->bans.n;
    sweep_arm(fl);
    *fp = fl;
    return 0;
}

void flood_destroy(struct flood *fl)
{
    if (!fl)
        return;
    if (fl->root) {
        evport_set_datagram_filter(fl->root, NULL, NULL);
        evport_set_connection_hooks(fl->root, NULL);
        evport_set_datagram_blocklist(fl->root, NULL, 0);
    }
    if (fl->sweep)
        event_free(fl->sweep);
    if (fl->kernel_ev)
        event_free(fl->kernel_ev);
    free(fl->buckets);
    free(fl->bans.v);
    free(fl->conns.v);
    free(fl->trusted);
    free(fl);
}

void flood_attach(struct flood *fl, su_root_t *root, nta_agent_t *nta)
{
    fl->root = root;
    fl->nta = nta;
    const struct evport_conn_hooks hooks = {
        .accepted = on_conn_accepted,
        .readable = on_conn_readable,
        .spoke = on_conn_spoke,
        .closed = on_conn_closed,
        .silent_ms = FLOOD_CONN_SILENT_MS,
        .arg = fl,
    };
    evport_set_connection_hooks(root, &hooks);
    fl->filtering = -1;
    on_datagram_filter_update(fl);
    if (fl->bans.n)
        kernel_schedule(fl); /* bans from the store */
}

/* Room for one more address in a growing array of strings. */
static int push_address(const char ***v, size_t *n, size_t *cap, const char *s)
{
    if (!s)
        return 0;
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 16;
        const char **g = realloc(*v, c * sizeof *g);
        if (!g)
            return -ENOMEM;
        *v = g;
        *cap = c;
    }
    (*v)[(*n)++] = s;
    return 0;
}

void flood_apply(struct flood *fl, const struct config *cfg)
{
    const struct security_settings *sec = &config_switch(cfg)->security;
    fl->rate = sec->source_rate;
    fl->ban_s = sec->source_ban > 0 ? sec->source_ban : 600;
    fl->max_calls = sec->max_calls;
    const char **v = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (size_t i = 0; i < config_count(cfg, KIND_MAPPING_GATEWAY); i++) {
        const struct mapping_gateway_def *g =
            (const void *)config_at(cfg, KIND_MAPPING_GATEWAY, i);
        for (size_t j = 0; j < g->addresses.n; j++)
            rc |= push_address(&v, &n, &cap, g->addresses.v[j]);
    }
    for (size_t i = 0; i < config_count(cfg, KIND_ROUTING_GATEWAY); i++) {
        const struct routing_gateway_def *g =
            (const void *)config_at(cfg, KIND_ROUTING_GATEWAY, i);
        rc |= push_address(&v, &n, &cap, g->address);
    }
    for (size_t i = 0; i < config_count(cfg, KIND_REGISTRATION); i++) {
        const struct registration_def *r =
            (const void *)config_at(cfg, KIND_REGISTRATION, i);
        rc |= push_address(&v, &n, &cap, r->server);
        rc |= push_address(&v, &n, &cap, r->proxy);
    }
    if (rc || flood_set_trusted(fl, v, n) < 0)
        log_error("flood", "out of memory: the gateways are not exempt from source_rate");
    free(v);
    on_datagram_filter_update(fl);
}

void flood_get_stats(const struct flood *fl, struct flood_stats *out)
{
    *out = fl->st;
}
