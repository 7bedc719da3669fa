/* The endpoint registrar. See registrar.h.
 *
 * Layout of the state:
 *   accounts    a sorted array (bsearch by name), rebuilt by apply; each
 *               account owns a short list of its bindings
 *   bindings    one struct and one string block each (~250 bytes with a
 *               typical Contact), in three indexes: the account's list, a
 *               min-heap on expiry time (one libevent timer for its top),
 *               and, behind NAT, a keepalive wheel of one slot per second
 *               (endpoint_keepalive_interval slots, rebuilt when it changes);
 *               each holds a reference to the transport its last REGISTER
 *               came on (the UDP socket or the TCP connection)
 *   guards      failure counters and suspensions, by account name and by
 *               source IP, in one chained hash table (unknown names too:
 *               answers must not depend on whether an account exists)
 *   pending     200s waiting for the turn's commit (group commit)
 *
 * Store records:
 *   bindings   key: account name, NUL, first 16 bytes of SHA-256(Contact)
 *              value v1: u64 expires_at, u32 cseq, u8 nat, u8 transport,
 *              2 bytes reserved, then contact NUL call_id NUL source NUL
 *              user_agent NUL
 *   suspend    key: 'a' + account name, or 's' + source IP
 *              value v1: u64 suspended until (unix seconds)
 *              key "\0secret": the nonce secret (32 bytes) */
#define NTA_OUTGOING_MAGIC_T struct binding

#include "sip/registrar.h"
#include "config.h"
#include "evport.h"
#include "log.h"
#include "sip/digest.h"
#include "sip/nonce.h"
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
#include <openssl/evp.h>
#include <sofia-sip/msg.h>
#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta_stateless.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/nta_tport.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/tport.h>
#include <sofia-sip/url.h>

#define BINDING_VERSION 1
#define SUSPEND_VERSION 1
#define SECRET_VERSION 1
static const char secret_key[] = "\0secret";
#define SECRET_KEY_LEN (sizeof secret_key - 1)

/* Contacts one REGISTER may carry, and the longest Contact URI kept. */
#define MAX_REQ_CONTACTS REGISTRAR_MAX_BINDINGS
#define CONTACT_MAX 256
#define UA_MAX 64
/* Replies waiting for a commit are sent at the end of the turn, or at once
 * when this many are waiting (a busy socket may keep the turn going). */
#define FLUSH_BATCH 256
#define FLUSH_GAP_US 1000
/* Nonce-counts remembered (24 bytes each, allocated at start). */
#define NCTRACK_ENTRIES 65536
/* Failure counters and suspensions kept in memory at most. */
#define GUARD_BUCKETS 4096
#define GUARD_MAX 200000
#define SWEEP_S 60

enum transport { TP_UDP, TP_TCP };
static const char *const transport_names[] = {"udp", "tcp"};

struct registrar;

struct account {
    struct registrar *r;
    char *name, *password, *mapping_gateway;
    struct binding *bindings;
    unsigned nbindings;
    bool kept; /* during registrar_apply() */
};

struct binding {
    struct account *acc;
    struct binding *next;              /* the account's bindings */
    struct binding *ka_prev, *ka_next; /* the keepalive wheel slot */
    nta_outgoing_t *ka_orq;
    /* A reference to the transport the last REGISTER came on: for UDP the
     * listening socket (CRLF keepalives must leave from it to refresh the
     * pinhole), for TCP the connection (held open while the binding lasts).
     * NULL for a binding loaded from the store until its next REGISTER. */
    tport_t *tp;
    char *strs; /* contact NUL call_id NUL source NUL user_agent NUL */
    long long expires_at;
    uint32_t cseq;
    uint32_t heap_idx;
    uint16_t off_call_id, off_source, off_ua;
    uint16_t ka_slot;
    uint8_t nat, transport, misses, in_wheel, touched;
};

struct guard {
    struct guard *next;
    long long last_failure;
    long long until; /* suspended until; 0: not suspended */
    uint64_t last_attempt; /* fingerprint of the last failed credentials */
    unsigned failures;
    char key[]; /* kind ('a' or 's') + name, NUL-terminated */
};

struct pending {
    struct pending *next;
    nta_incoming_t *irq;
    char *contacts; /* the 200's Contact value; NULL: none */
};

struct regcontact {
    const sip_contact_t *m;
    char uri[CONTACT_MAX];
    int granted;
    bool nat;
};

/* What a REGISTER asks, worked out once before the hook and the bindings. */
struct reqinfo {
    char account[128];
    char ip[48];
    char source[64];
    char user_agent[UA_MAX + 1];
    char call_id[128];
    int transport;
    bool star;
    unsigned n;
    struct regcontact c[MAX_REQ_CONTACTS];
};

struct registrar_event {
    struct registrar *r; /* NULL once orphaned by registrar_destroy() */
    struct registrar_event *prev, *next;
    nta_incoming_t *irq; /* NULL once answered (timeout) */
    const sip_t *sip;
    struct event *timeout;
    struct reqinfo info;
};

struct registrar {
    nta_agent_t *nta;
    nta_leg_t *leg; /* for keepalive OPTIONS */
    su_root_t *root;
    struct event_base *base;
    struct store *store;
    unsigned char secret[DIGEST_SECRET_LEN];
    struct nctrack *nct;
    unsigned nonce_ttl;
    /* NAT keepalive (endpoint_keepalive*): enum endpoint_keepalive, period
     * in seconds (the wheel's size, 0 before the first apply), misses. */
    int ka_mode;
    unsigned ka_interval, ka_misses;
    /* switch settings */
    int expire, nat_expire, retry, suspend, digest;
    bool replace;
    bool loaded;

    struct account **acc; /* sorted by name */
    size_t nacc;

    struct binding **heap; /* min-heap on expires_at; its size is nbindings */
    size_t nbindings, heap_cap;
    struct event *expiry_ev;

    struct binding **wheel; /* ka_interval slots */
    unsigned ka_pos;
    struct event *ka_ev;
    bool in_create;
    int create_status;
    char ka_host[80];

    struct guard *guards[GUARD_BUCKETS];
    size_t nguards;
    struct event *sweep_ev;

    struct pending *pending, **pending_tail;
    unsigned npending;
    struct event *flush_ev;
    long long last_flush_us; /* monotonic time of the last paced commit */

    registrar_hook_h *hook;
    void *hook_arg;
    struct registrar_event *events;

    /* The REGISTER the prefilter let through, for the handler that the
     * agent calls right after it with the same sip. */
    struct {
        const sip_t *sip;
        struct reqinfo *info;
        struct account *acc;
    } passed;
};

static void remove_binding(struct registrar *r, struct binding *b, const char *why);

/* nta's timers live in sofia's queue, which the port re-reads only after its
 * own callbacks: after acting from a libevent callback of ours, tell it. */
static void kick(struct registrar *r)
{
    if (r->root)
        evport_rearm(r->root);
}

static long long now_s(void)
{
    return (long long)time(NULL);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void arm_seconds(struct event *ev, double s)
{
    if (s < 0)
        s = 0;
    struct timeval tv = {.tv_sec = (time_t)s,
                         .tv_usec = (suseconds_t)((s - (double)(time_t)s) * 1e6)};
    evtimer_add(ev, &tv);
}

/* ---- Accounts ------------------------------------------------------------- */

static int account_cmp(const void *name, const void *entry)
{
    return strcmp(name, (*(struct account *const *)entry)->name);
}

static struct account *find_account(struct registrar *r, const char *name)
{
    struct account **hit =
        r->nacc ? bsearch(name, r->acc, r->nacc, sizeof *r->acc, account_cmp) : NULL;
    return hit ? *hit : NULL;
}

/* ---- Bindings: strings, heap, wheel, store --------------------------------- */

static const char *b_contact(const struct binding *b)
{
    return b->strs;
}
static const char *b_call_id(const struct binding *b)
{
    return b->strs + b->off_call_id;
}
static const char *b_source(const struct binding *b)
{
    return b->strs + b->off_source;
}
static const char *b_ua(const struct binding *b)
{
    return b->strs + b->off_ua;
}

/* Replace the binding's strings. Returns 0 or -ENOMEM (then unchanged). */
static int binding_set_strings(struct binding *b, const char *contact,
                               const char *call_id, const char *source, const char *ua)
{
    size_t a = strlen(contact) + 1, c = strlen(call_id) + 1, s = strlen(source) + 1,
           u = strlen(ua) + 1;
    if (a + c + s + u > UINT16_MAX)
        return -EINVAL;
    char *strs = malloc(a + c + s + u);
    if (!strs)
        return -ENOMEM;
    memcpy(strs, contact, a);
    memcpy(strs + a, call_id, c);
    memcpy(strs + a + c, source, s);
    memcpy(strs + a + c + s, ua, u);
    free(b->strs);
    b->strs = strs;
    b->off_call_id = (uint16_t)a;
    b->off_source = (uint16_t)(a + c);
    b->off_ua = (uint16_t)(a + c + s);
    return 0;
}

static void heap_swap(struct registrar *r, size_t i, size_t j)
{
    struct binding *t = r->heap[i];
    r->heap[i] = r->heap[j];
    r->heap[j] = t;
    r->heap[i]->heap_idx = (uint32_t)i;
    r->heap[j]->heap_idx = (uint32_t)j;
}

static void heap_up(struct registrar *r, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (r->heap[p]->expires_at <= r->heap[i]->expires_at)
            break;
        heap_swap(r, i, p);
        i = p;
    }
}

static void heap_down(struct registrar *r, size_t i)
{
    size_t n = r->nbindings;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && r->heap[l]->expires_at < r->heap[m]->expires_at)
            m = l;
        if (l + 1 < n && r->heap[l + 1]->expires_at < r->heap[m]->expires_at)
            m = l + 1;
        if (m == i)
            break;
        heap_swap(r, i, m);
        i = m;
    }
}

static int heap_push(struct registrar *r, struct binding *b)
{
    if (r->nbindings == r->heap_cap) {
        size_t cap = r->heap_cap ? r->heap_cap * 2 : 1024;
        struct binding **grown = realloc(r->heap, cap * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        r->heap = grown;
        r->heap_cap = cap;
    }
    b->heap_idx = (uint32_t)r->nbindings;
    r->heap[r->nbindings++] = b;
    heap_up(r, b->heap_idx);
    return 0;
}

static void heap_remove(struct registrar *r, struct binding *b)
{
    size_t i = b->heap_idx, last = r->nbindings - 1;
    if (i != last) {
        heap_swap(r, i, last);
        r->nbindings--;
        heap_down(r, i);
        heap_up(r, i);
    } else {
        r->nbindings--;
    }
}

static void heap_update(struct registrar *r, struct binding *b)
{
    heap_down(r, b->heap_idx);
    heap_up(r, b->heap_idx);
}

/* Re-arm the expiry timer for the earliest binding. One evtimer_add. */
static void arm_expiry(struct registrar *r)
{
    if (!r->expiry_ev)
        return;
    if (r->nbindings == 0) {
        event_del(r->expiry_ev);
        return;
    }
    arm_seconds(r->expiry_ev, (double)(r->heap[0]->expires_at - now_s()) + 0.05);
}

static void wheel_remove(struct registrar *r, struct binding *b)
{
    if (!b->in_wheel)
        return;
    if (b->ka_prev)
        b->ka_prev->ka_next = b->ka_next;
    else
        r->wheel[b->ka_slot] = b->ka_next;
    if (b->ka_next)
        b->ka_next->ka_prev = b->ka_prev;
    b->ka_prev = b->ka_next = NULL;
    b->in_wheel = 0;
}

static void wheel_link(struct registrar *r, struct binding *b, unsigned slot)
{
    b->ka_slot = (uint16_t)slot;
    b->ka_prev = NULL;
    b->ka_next = r->wheel[slot];
    if (b->ka_next)
        b->ka_next->ka_prev = b;
    r->wheel[slot] = b;
    b->in_wheel = 1;
}

/* The first keepalive goes out about one interval from now. */
static void wheel_insert(struct registrar *r, struct binding *b)
{
    if (!r->wheel || b->in_wheel)
        return;
    wheel_link(r, b, (r->ka_pos + r->ka_interval - 1) % r->ka_interval);
}

/* Rebuild the wheel with `interval` slots (a reload changed the interval).
 * Each binding keeps its place in the round, scaled: one due in d of the
 * old n seconds is due in ceil(d * interval / n) of the new, so the pings
 * stay spread as they were and no binding goes longer than the longer of
 * the two intervals without one. O(NAT bindings), once per change. Returns
 * 0, or -ENOMEM with the old wheel kept. */
static int wheel_resize(struct registrar *r, unsigned interval)
{
    struct binding **fresh = calloc(interval, sizeof *fresh);
    if (!fresh)
        return -ENOMEM;
    struct binding **old = r->wheel;
    unsigned n = r->ka_interval, pos = r->ka_pos;
    r->wheel = fresh;
    r->ka_interval = interval;
    r->ka_pos = 0;
    for (unsigned s = 0; old && s < n; s++) {
        struct binding *b = old[s];
        while (b) {
            struct binding *next = b->ka_next;
            /* Ticks until its ping, 1..n, then scaled: 1..interval. Slot k
             * of the new wheel fires at tick k + 1. */
            unsigned long long due = (s + n - pos) % n + 1;
            unsigned scaled = (unsigned)((due * interval + n - 1) / n);
            wheel_link(r, b, scaled - 1);
            b = next;
        }
    }
    free(old);
    return 0;
}

/* Store key: name NUL sha256(contact)[0..16). Returns its length, 0 if the
 * name is too long to be stored. */
static size_t binding_key(const char *aor, const char *contact,
                          uint8_t key[STORE_MAX_KEY])
{
    size_t n = strlen(aor);
    if (n + 1 + 16 > STORE_MAX_KEY)
        return 0;
    memcpy(key, aor, n);
    key[n] = 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_Digest(contact, strlen(contact), md, &len, EVP_sha256(), NULL);
    memcpy(key + n + 1, md, 16);
    return n + 1 + 16;
}

static void save_binding(struct registrar *r, const struct binding *b)
{
    if (!r->store)
        return;
    uint8_t key[STORE_MAX_KEY];
    size_t klen = binding_key(b->acc->name, b_contact(b), key);
    if (!klen)
        return;
    size_t slen = (size_t)b->off_ua + strlen(b_ua(b)) + 1;
    size_t vlen = 16 + slen;
    uint8_t *val = malloc(vlen);
    if (!val)
        return;
    store_key_u64(val, (uint64_t)b->expires_at);
    uint8_t be[8];
    store_key_u64(be, b->cseq);
    memcpy(val + 8, be + 4, 4);
    val[12] = b->nat;
    val[13] = b->transport;
    val[14] = val[15] = 0;
    memcpy(val + 16, b->strs, slen);
    if (store_put(r->store, STORE_BINDINGS, key, klen, BINDING_VERSION, val, vlen) < 0)
        log_error("registrar", "%s: cannot store the binding %s", b->acc->name,
                  b_contact(b));
    free(val);
}

static void forget_binding(struct registrar *r, const char *aor, const char *contact)
{
    if (!r->store)
        return;
    uint8_t key[STORE_MAX_KEY];
    size_t klen = binding_key(aor, contact, key);
    if (klen)
        store_del(r->store, STORE_BINDINGS, key, klen);
}

static void binding_free(struct binding *b)
{
    if (b->ka_orq)
        nta_outgoing_destroy(b->ka_orq);
    tport_unref(b->tp); /* a TCP connection nobody else uses then idles out */
    free(b->strs);
    free(b);
}

/* Unlink from every index and free; the store record goes too. */
static void remove_binding(struct registrar *r, struct binding *b, const char *why)
{
    struct account *acc = b->acc;
    for (struct binding **p = &acc->bindings; *p; p = &(*p)->next)
        if (*p == b) {
            *p = b->next;
            break;
        }
    acc->nbindings--;
    heap_remove(r, b);
    wheel_remove(r, b);
    forget_binding(r, acc->name, b_contact(b));
    if (why)
        log_info("registrar", "%s: binding %s removed (%s)", acc->name, b_contact(b),
                 why);
    binding_free(b);
}

/* Compare a stored Contact with a request's, by RFC 3261 URI equality of
 * scheme, user, host and port (sofia's url_cmp). */
static bool contact_matches(const char *stored, const url_t *url)
{
    char buf[CONTACT_MAX];
    size_t n = strlen(stored);
    if (n >= sizeof buf)
        return false;
    memcpy(buf, stored, n + 1);
    url_t u[1];
    if (url_d(u, buf) < 0)
        return false;
    return url_cmp(u, url) == 0;
}

static struct binding *find_binding(struct account *acc, const url_t *url)
{
    for (struct binding *b = acc->bindings; b; b = b->next)
        if (contact_matches(b_contact(b), url))
            return b;
    return NULL;
}

/* ---- Guards: failures and suspensions --------------------------------------- */

static unsigned guard_hash(const char *key)
{
    unsigned h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h & (GUARD_BUCKETS - 1);
}

static struct guard *guard_get(struct registrar *r, char kind, const char *name,
                               bool create)
{
    char key[160];
    int n = snprintf(key, sizeof key, "%c%s", kind, name);
    if (n < 0 || (size_t)n >= sizeof key)
        return NULL;
    unsigned h = guard_hash(key);
    for (struct guard *g = r->guards[h]; g; g = g->next)
        if (strcmp(g->key, key) == 0)
            return g;
    if (!create || r->nguards >= GUARD_MAX)
        return NULL;
    struct guard *g = calloc(1, sizeof *g + (size_t)n + 1);
    if (!g)
        return NULL;
    memcpy(g->key, key, (size_t)n + 1);
    g->next = r->guards[h];
    r->guards[h] = g;
    r->nguards++;
    return g;
}

static void guard_persist(struct registrar *r, const struct guard *g)
{
    if (!r->store)
        return;
    size_t klen = strlen(g->key);
    if (g->until) {
        uint8_t v[8];
        store_key_u64(v, (uint64_t)g->until);
        store_put(r->store, STORE_SUSPEND, g->key, klen, SUSPEND_VERSION, v, 8);
    } else {
        store_del(r->store, STORE_SUSPEND, g->key, klen);
    }
}

static const char *kind_name(char kind)
{
    return kind == 'a' ? "account" : "source";
}

/* Is the name (kind 'a') or IP (kind 's') suspended now? An expired
 * suspension is lifted on the way. */
static bool suspended(struct registrar *r, char kind, const char *name, long long now)
{
    struct guard *g = guard_get(r, kind, name, false);
    if (!g || !g->until)
        return false;
    if (g->until > now)
        return true;
    g->until = 0;
    g->failures = 0;
    guard_persist(r, g);
    log_info("registrar", "%s %s: suspension over", kind_name(kind), name);
    return false;
}

/* Count a failure of `attempt` (a fingerprint of the credentials tried).
 * Failures are answered statelessly, so a UDP retransmission of the same
 * request (its answer lost) comes again: the same attempt as the last one
 * counts once. */
static bool count_failure(struct registrar *r, char kind, const char *name, long long now,
                          uint64_t attempt)
{
    struct guard *g = guard_get(r, kind, name, true);
    if (!g)
        return false;
    if (now - g->last_failure > REGISTRAR_FAILURE_WINDOW)
        g->failures = 0;
    else if (g->failures > 0 && g->last_attempt == attempt)
        return false;
    g->last_attempt = attempt;
    g->failures++;
    g->last_failure = now;
    if ((int)g->failures < r->retry || r->suspend <= 0)
        return false;
    g->until = now + r->suspend;
    g->failures = 0;
    guard_persist(r, g);
    log_warn("registrar", "%s %s suspended for %d s after %d failed authentications",
             kind_name(kind), name, r->suspend, r->retry);
    return true;
}

/* A failed authentication by `user` from `ip`. Returns true when either is
 * suspended now. */
static bool record_failure(struct registrar *r, const char *user, const char *ip,
                           long long now, uint64_t attempt)
{
    bool a = count_failure(r, 'a', user, now, attempt);
    bool s = count_failure(r, 's', ip, now, attempt);
    return a || s;
}

/* FNV-1a over the fields that make one attempt: a retransmission repeats
 * them all, a new attempt has a new nonce, nonce-count or cnonce. */
static uint64_t attempt_fingerprint(const struct digest_credentials *c)
{
    const char *fields[] = {c->username, c->nonce, c->nc, c->cnonce, c->response};
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        for (const char *p = fields[i] ? fields[i] : ""; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ 0xff) * 1099511628211ULL;
    }
    return h;
}

static void clear_failures(struct registrar *r, const char *user)
{
    struct guard *g = guard_get(r, 'a', user, false);
    if (g)
        g->failures = 0;
}

/* Drop counters that have aged out and suspensions that are over. O(guards). */
static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct registrar *r = arg;
    (void)fd;
    (void)what;
    long long now = now_s();
    for (unsigned h = 0; h < GUARD_BUCKETS; h++) {
        struct guard **p = &r->guards[h];
        while (*p) {
            struct guard *g = *p;
            if (g->until && g->until <= now) {
                g->until = 0;
                g->failures = 0;
                guard_persist(r, g);
                log_info("registrar", "%s %s: suspension over", kind_name(g->key[0]),
                         g->key + 1);
            }
            if (!g->until && now - g->last_failure > REGISTRAR_FAILURE_WINDOW) {
                *p = g->next;
                free(g);
                r->nguards--;
                continue;
            }
            p = &g->next;
        }
    }
}

/* ---- Replies ------------------------------------------------------------------ */

static void http_date(char *out, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Send what waits for the commit: 200s after a successful commit, 500s if
 * it failed (the bindings are then not durable, so not acknowledged). */
static void flush(struct registrar *r)
{
    if (!r->pending)
        return;
    int rc = r->store ? store_commit(r->store) : 0;
    struct pending *p = r->pending;
    r->pending = NULL;
    r->pending_tail = &r->pending;
    r->npending = 0;
    char date[64];
    http_date(date, sizeof date);
    while (p) {
        struct pending *next = p->next;
        if (rc == 0)
            nta_incoming_treply(p->irq, SIP_200_OK,
                                TAG_IF(p->contacts, SIPTAG_CONTACT_STR(p->contacts)),
                                SIPTAG_DATE_STR(date), TAG_END());
        else
            nta_incoming_treply(p->irq, 500, "Bindings Not Stored", TAG_END());
        nta_incoming_destroy(p->irq);
        free(p->contacts);
        free(p);
        p = next;
    }
    if (rc != 0)
        log_error("registrar", "commit failed: REGISTERs answered 500");
}

static long long monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The group commit's pace: at most one every FLUSH_GAP_US. A commit blocks
 * the loop for its fsync (about 0.1-0.2 ms on a VM disk); committing after
 * every loop turn under load spends a third of the time there. Waiting up to
 * FLUSH_GAP_US for more REGISTERs to join costs each one at most that much
 * latency and bounds the fsyncs to 1/FLUSH_GAP_US per second. */
static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct registrar *r = arg;
    (void)fd;
    (void)what;
    long long now = monotonic_us(), wait = r->last_flush_us + FLUSH_GAP_US - now;
    if (wait > 0 && r->pending) {
        struct timeval tv = {0, (suseconds_t)wait};
        event_add(r->flush_ev, &tv);
        return;
    }
    r->last_flush_us = now;
    flush(r);
    kick(r);
}

/* "<c1>;expires=N, <c2>;expires=M" for the 200, or NULL with no bindings. */
static char *contacts_value(const struct account *acc, long long now)
{
    if (!acc->bindings)
        return NULL;
    size_t len = 1;
    for (const struct binding *b = acc->bindings; b; b = b->next)
        len += strlen(b_contact(b)) + 32;
    char *out = malloc(len), *p = out;
    if (!out)
        return NULL;
    for (const struct binding *b = acc->bindings; b; b = b->next) {
        long long left = b->expires_at - now;
        p += sprintf(p, "%s<%s>;expires=%lld", p == out ? "" : ", ", b_contact(b),
                     left > 0 ? left : 0);
    }
    return out;
}

static void queue_ok(struct registrar *r, nta_incoming_t *irq, const struct account *acc)
{
    struct pending *p = malloc(sizeof *p);
    if (!p) {
        nta_incoming_treply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
        nta_incoming_destroy(irq);
        return;
    }
    p->next = NULL;
    p->irq = irq;
    p->contacts = contacts_value(acc, now_s());
    *r->pending_tail = p;
    r->pending_tail = &p->next;
    if (++r->npending >= FLUSH_BATCH)
        flush(r);
    else if (r->npending == 1 && r->flush_ev)
        event_active(r->flush_ev, 0, 0);
}

static void reply_once(nta_incoming_t *irq, int status, const char *phrase)
{
    nta_incoming_treply(irq, status, phrase, TAG_END());
}

/* Where the answers of authentication and REGISTER checks go: a server
 * transaction, or (stateless, from the prefilter) the request message
 * itself, which the answer consumes. Either way one answer per request. */
struct replyto {
    nta_incoming_t *irq; /* NULL: stateless */
    nta_agent_t *nta;
    msg_t *msg;
};

static void answer(const struct replyto *to, int status, const char *phrase, tag_type_t tag,
                   tag_value_t value, ...)
{
    ta_list ta;
    ta_start(ta, tag, value);
    if (to->irq)
        nta_incoming_treply(to->irq, status, phrase, ta_tags(ta));
    else
        nta_msg_treply(to->nta, to->msg, status, phrase, ta_tags(ta));
    ta_end(ta);
}

/* ---- Digest --------------------------------------------------------------------- */

/* The algorithms offered, most preferred first (endpoint_digest). */
static unsigned offered(const struct registrar *r, enum digest_alg algs[2])
{
    switch (r->digest) {
    case ENDPOINT_DIGEST_MD5_SHA256:
        algs[0] = DIGEST_MD5;
        algs[1] = DIGEST_SHA256;
        return 2;
    case ENDPOINT_DIGEST_MD5:
        algs[0] = DIGEST_MD5;
        return 1;
    case ENDPOINT_DIGEST_SHA256:
        algs[0] = DIGEST_SHA256;
        return 1;
    default:
        algs[0] = DIGEST_SHA256;
        algs[1] = DIGEST_MD5;
        return 2;
    }
}

static bool is_offered(const struct registrar *r, enum digest_alg alg)
{
    enum digest_alg algs[2];
    unsigned n = offered(r, algs);
    for (unsigned i = 0; i < n; i++)
        if (algs[i] == alg)
            return true;
    return false;
}

/* A fresh nonce, one challenge per algorithm offered (RFC 8760: in order of
 * preference, as separate headers). */
static int challenge(struct registrar *r, const struct replyto *to, bool proxy, bool stale)
{
    char nonce[DIGEST_NONCE_MAX], one[2][256], hdr[640];
    digest_nonce_make(r->secret, now_ms(), nonce);
    enum digest_alg algs[2];
    unsigned n = offered(r, algs);
    for (unsigned i = 0; i < n; i++)
        digest_challenge_format(algs[i], REGISTRAR_REALM, nonce, stale, one[i],
                                sizeof one[i]);
    const char *name = proxy ? "Proxy-Authenticate" : "WWW-Authenticate";
    if (n == 2)
        snprintf(hdr, sizeof hdr, "%s: %s\r\n%s: %s", name, one[0], name, one[1]);
    else
        snprintf(hdr, sizeof hdr, "%s: %s", name, one[0]);
    int status = proxy ? 407 : 401;
    answer(to, status, proxy ? "Proxy Authentication Required" : "Unauthorized",
           SIPTAG_HEADER_STR(hdr), TAG_END());
    return status;
}

static int forbid(const struct replyto *to)
{
    answer(to, SIP_403_FORBIDDEN, TAG_END());
    return 403;
}

/* The peer's address: "ip" and "ip:port" (IPv6 in brackets there), and the
 * transport. Returns 0 or -1. */
static int source_of(msg_t *msg, char *ip, size_t iplen, char *source, size_t srclen,
                     int *transport)
{
    if (!msg)
        return -1;
    su_addrinfo_t *ai = msg_addrinfo(msg);
    int rc = -1;
    if (ai && ai->ai_addr) {
        const struct sockaddr *sa = (const struct sockaddr *)ai->ai_addr;
        unsigned port = 0;
        if (sa->sa_family == AF_INET) {
            const struct sockaddr_in *in = (const void *)sa;
            inet_ntop(AF_INET, &in->sin_addr, ip, (socklen_t)iplen);
            port = ntohs(in->sin_port);
            snprintf(source, srclen, "%s:%u", ip, port);
            rc = 0;
        } else if (sa->sa_family == AF_INET6) {
            const struct sockaddr_in6 *in6 = (const void *)sa;
            inet_ntop(AF_INET6, &in6->sin6_addr, ip, (socklen_t)iplen);
            port = ntohs(in6->sin6_port);
            snprintf(source, srclen, "[%s]:%u", ip, port);
            rc = 0;
        }
        *transport = ai->ai_protocol == IPPROTO_TCP ? TP_TCP : TP_UDP;
    }
    return rc;
}

/* The same, for a transaction's request. */
static int irq_source_of(nta_incoming_t *irq, char *ip, size_t iplen, char *source,
                         size_t srclen, int *transport)
{
    msg_t *msg = nta_incoming_getrequest(irq);
    int rc = source_of(msg, ip, iplen, source, srclen, transport);
    msg_destroy(msg);
    return rc;
}

/* The Digest credentials for our realm, from the header the method uses. */
static bool find_credentials(const sip_t *sip, bool proxy, struct digest_credentials *c)
{
    const msg_auth_t *lists[2] = {proxy ? sip->sip_proxy_authorization
                                        : sip->sip_authorization,
                                  proxy ? sip->sip_authorization : NULL};
    for (int i = 0; i < 2; i++)
        for (const msg_auth_t *au = lists[i]; au; au = au->au_next) {
            if (!au->au_scheme || strcasecmp(au->au_scheme, "Digest") != 0)
                continue;
            if (digest_credentials_parse(c, (const char *const *)au->au_params) < 0)
                continue;
            if (strcmp(c->realm, REGISTRAR_REALM) == 0)
                return true;
        }
    return false;
}

static bool digest_uri_matches(const char *uri, const url_t *ruri)
{
    char buf[512];
    size_t n = strlen(uri);
    if (n >= sizeof buf)
        return false;
    memcpy(buf, uri, n + 1);
    url_t u[1];
    return url_d(u, buf) >= 0 && url_cmp(u, ruri) == 0;
}

/* The one authentication path, for REGISTER and everything else. Returns 0
 * with *accp set, or the status it answered with. */
static int authenticate(struct registrar *r, const struct replyto *to, const sip_t *sip,
                        const char *ip, struct account **accp)
{
    *accp = NULL;
    bool proxy = sip->sip_request->rq_method != sip_method_register;
    long long now = now_s();
    if (suspended(r, 's', ip, now))
        return forbid(to);
    struct digest_credentials c;
    /* No credentials for us, or an answer without qop (so without a
     * nonce-count to check): the first challenge, not a failure. */
    if (!find_credentials(sip, proxy, &c) || !c.qop || c.ncount == 0 ||
        !is_offered(r, c.alg))
        return challenge(r, to, proxy, false);
    if (suspended(r, 'a', c.username, now))
        return forbid(to);
    long long issued;
    unsigned long long id;
    enum digest_nonce_state ns =
        digest_nonce_check(r->secret, c.nonce, now_ms(), r->nonce_ttl, &issued, &id);
    if (ns == DIGEST_NONCE_INVALID) /* never ours: nothing was tried */
        return challenge(r, to, proxy, false);
    if (!digest_uri_matches(c.uri, sip->sip_request->rq_url)) {
        answer(to, 400, "Digest URI Mismatch", TAG_END());
        return 400;
    }
    struct account *acc = find_account(r, c.username);
    /* An unknown user is checked against a password nobody has, so that the
     * work, the counting and the answer are the same as for a wrong one. */
    bool ok = digest_check(&c, acc ? acc->password : "\x01unknown\x01",
                           sip->sip_request->rq_method_name) &&
              acc;
    if (!ok) {
        log_info("registrar", "authentication failed for \"%.64s\" from %s", c.username,
                 ip);
        if (record_failure(r, c.username, ip, now, attempt_fingerprint(&c)))
            return forbid(to);
        return challenge(r, to, proxy, false);
    }
    if (ns == DIGEST_NONCE_STALE)
        return challenge(r, to, proxy, true);
    if (r->nct && nctrack_use(r->nct, id, issued, c.ncount) != NCTRACK_OK) {
        log_info("registrar", "%s: nonce-count %08lx refused (seen, or nonce forgotten)",
                 acc->name, c.ncount);
        return challenge(r, to, proxy, true);
    }
    clear_failures(r, acc->name);
    *accp = acc;
    return 0;
}

int registrar_authenticate(struct registrar *r, nta_incoming_t *irq, const sip_t *sip,
                           const char **account)
{
    char ip[48], source[64];
    int transport;
    *account = NULL;
    if (irq_source_of(irq, ip, sizeof ip, source, sizeof source, &transport) < 0) {
        reply_once(irq, SIP_500_INTERNAL_SERVER_ERROR);
        return 500;
    }
    struct account *acc;
    const struct replyto to = {.irq = irq};
    int status = authenticate(r, &to, sip, ip, &acc);
    if (status == 0)
        *account = acc->name;
    return status;
}

/* ---- REGISTER ------------------------------------------------------------------ */

static int default_port(const url_t *u)
{
    if (u->url_type == url_sips)
        return 5061;
    return 5060;
}

/* Behind NAT: the Contact does not name the address the request came from. */
static bool behind_nat(const url_t *u, const char *ip, const char *source)
{
    if (!u->url_host)
        return true;
    char host[64];
    size_t n = strlen(u->url_host);
    if (n >= sizeof host)
        return true;
    if (u->url_host[0] == '[' && n > 2) {
        memcpy(host, u->url_host + 1, n - 2);
        host[n - 2] = '\0';
    } else {
        memcpy(host, u->url_host, n + 1);
    }
    int port = u->url_port && *u->url_port ? atoi(u->url_port) : default_port(u);
    const char *colon = strrchr(source, ':');
    int src_port = colon ? atoi(colon + 1) : 0;
    return strcasecmp(host, ip) != 0 || port != src_port;
}

/* Work out what the REGISTER asks. Returns 0, or the status answered. */
static int parse_register(struct registrar *r, const struct replyto *to, const sip_t *sip,
                          struct reqinfo *info)
{
    info->star = false;
    info->n = 0;
    for (const sip_contact_t *m = sip->sip_contact; m; m = m->m_next) {
        if (m->m_url->url_type == url_any) {
            info->star = true;
            continue;
        }
        if (info->n == MAX_REQ_CONTACTS) {
            answer(to, 400, "Too Many Contacts", TAG_END());
            return 400;
        }
        struct regcontact *c = &info->c[info->n];
        c->m = m;
        if (url_e(c->uri, sizeof c->uri, m->m_url) >= (issize_t)sizeof c->uri - 1) {
            answer(to, 400, "Contact Too Long", TAG_END());
            return 400;
        }
        c->uri[sizeof c->uri - 1] = '\0';
        long requested;
        if (m->m_expires)
            requested = strtol(m->m_expires, NULL, 10);
        else if (sip->sip_expires)
            requested = (long)sip->sip_expires->ex_delta;
        else
            requested = r->expire;
        if (requested < 0)
            requested = 0;
        if (requested > 0 && requested < REGISTRAR_MIN_EXPIRES) {
            char min[16];
            snprintf(min, sizeof min, "%d", REGISTRAR_MIN_EXPIRES);
            answer(to, SIP_423_INTERVAL_TOO_BRIEF, SIPTAG_MIN_EXPIRES_STR(min), TAG_END());
            return 423;
        }
        c->nat = behind_nat(m->m_url, info->ip, info->source);
        long cap = c->nat ? r->nat_expire : r->expire;
        c->granted = (int)(requested < cap ? requested : cap);
        info->n++;
    }
    if (info->star &&
        (info->n > 0 || !sip->sip_expires || sip->sip_expires->ex_delta != 0)) {
        answer(to, 400, "Wildcard Contact Needs Expires 0", TAG_END());
        return 400;
    }
    return 0;
}

/* RFC 3261 10.3 step 6/7: a binding of the same Call-ID must be changed by a
 * higher CSeq only. */
static bool out_of_order(struct account *acc, const sip_t *sip,
                         const struct reqinfo *info)
{
    const char *call_id = sip->sip_call_id->i_id;
    uint32_t cseq = sip->sip_cseq->cs_seq;
    if (info->star) {
        for (struct binding *b = acc->bindings; b; b = b->next)
            if (strcmp(b_call_id(b), call_id) == 0 && cseq <= b->cseq)
                return true;
        return false;
    }
    for (unsigned i = 0; i < info->n; i++) {
        struct binding *b = find_binding(acc, info->c[i].m->m_url);
        if (b && strcmp(b_call_id(b), call_id) == 0 && cseq <= b->cseq)
            return true;
    }
    return false;
}

/* The binding closest to expiry that this request did not touch. */
static struct binding *eviction_victim(struct account *acc)
{
    struct binding *v = NULL;
    for (struct binding *b = acc->bindings; b; b = b->next)
        if (!b->touched && (!v || b->expires_at < v->expires_at))
            v = b;
    return v;
}

/* Make the request's changes to acc's bindings (memory and store). `tp` is
 * the transport the request came on (borrowed; each binding takes its own
 * reference). */
static void update_bindings(struct registrar *r, struct account *acc, const sip_t *sip,
                            const struct reqinfo *info, tport_t *tp)
{
    long long now = now_s();
    if (info->star) {
        while (acc->bindings)
            remove_binding(r, acc->bindings, "unregistered with *");
        return;
    }
    const char *call_id = sip->sip_call_id->i_id;
    uint32_t cseq = sip->sip_cseq->cs_seq;
    bool added = false;
    for (struct binding *b = acc->bindings; b; b = b->next)
        b->touched = 0;
    for (unsigned i = 0; i < info->n; i++) {
        const struct regcontact *c = &info->c[i];
        struct binding *b = find_binding(acc, c->m->m_url);
        if (c->granted == 0) {
            if (b)
                remove_binding(r, b, "unregistered");
            continue;
        }
        bool fresh = b == NULL;
        if (fresh) {
            if (!r->replace && acc->nbindings >= REGISTRAR_MAX_BINDINGS) {
                struct binding *v = eviction_victim(acc);
                if (!v)
                    continue;
                remove_binding(r, v, "replaced: too many bindings");
            }
            b = calloc(1, sizeof *b);
            if (!b || binding_set_strings(b, c->uri, call_id, info->source,
                                          info->user_agent) < 0) {
                free(b);
                log_error("registrar", "%s: out of memory adding a binding", acc->name);
                continue;
            }
            b->acc = acc;
            b->expires_at = now + c->granted;
            if (heap_push(r, b) < 0) {
                binding_free(b);
                continue;
            }
            b->next = acc->bindings;
            acc->bindings = b;
            acc->nbindings++;
            added = true;
            log_info("registrar", "%s: binding %s from %s%s, %d s", acc->name, c->uri,
                     info->source, c->nat ? " (NAT)" : "", c->granted);
        } else {
            if (strcmp(b_contact(b), c->uri) != 0)
                forget_binding(r, acc->name, b_contact(b));
            if (strcmp(b_contact(b), c->uri) != 0 || strcmp(b_call_id(b), call_id) != 0 ||
                strcmp(b_source(b), info->source) != 0 ||
                strcmp(b_ua(b), info->user_agent) != 0)
                binding_set_strings(b, c->uri, call_id, info->source, info->user_agent);
            b->expires_at = now + c->granted;
            heap_update(r, b);
        }
        b->cseq = cseq;
        b->nat = c->nat;
        b->transport = (uint8_t)info->transport;
        b->misses = 0;
        b->touched = 1;
        if (b->tp != tp) { /* a new connection, or loaded from the store */
            tport_unref(b->tp);
            b->tp = tport_ref(tp);
        }
        if (b->nat)
            wheel_insert(r, b);
        else
            wheel_remove(r, b);
        save_binding(r, b);
    }
    if (added && r->replace) {
        struct binding *v;
        while ((v = eviction_victim(acc)))
            remove_binding(r, v, "replaced by a new registration");
    }
    arm_expiry(r);
}

/* After authentication (and the hook): check order, change, queue the 200. */
static void finish_register(struct registrar *r, nta_incoming_t *irq, const sip_t *sip,
                            struct account *acc, const struct reqinfo *info)
{
    if (out_of_order(acc, sip, info)) {
        reply_once(irq, 500, "Out Of Order CSeq");
        nta_incoming_destroy(irq);
        return;
    }
    tport_t *tp = nta_incoming_transport(r->nta, irq, NULL);
    update_bindings(r, acc, sip, info, tp);
    tport_unref(tp);
    queue_ok(r, irq, acc);
}

static void on_hook_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct registrar_event *ev = arg;
    (void)fd;
    (void)what;
    if (!ev->irq)
        return;
    log_error("registrar", "%s: on_register did not decide within %d s: answering 500",
              ev->info.account, REGISTRAR_HOOK_TIMEOUT);
    reply_once(ev->irq, 500, "Policy Timeout");
    nta_incoming_destroy(ev->irq);
    ev->irq = NULL;
    kick(ev->r);
}

static void event_unlink(struct registrar *r, struct registrar_event *ev)
{
    if (ev->prev)
        ev->prev->next = ev->next;
    else
        r->events = ev->next;
    if (ev->next)
        ev->next->prev = ev->prev;
    ev->prev = ev->next = NULL;
}

/* Hand the registration to the policy hook. True when it took it. */
static bool run_hook(struct registrar *r, nta_incoming_t *irq, const sip_t *sip,
                     const struct reqinfo *info)
{
    if (!r->hook)
        return false;
    bool adds = false;
    for (unsigned i = 0; i < info->n; i++)
        if (info->c[i].granted > 0)
            adds = true;
    if (!adds)
        return false;
    struct registrar_event *ev = calloc(1, sizeof *ev);
    if (!ev)
        return false;
    ev->r = r;
    ev->irq = irq;
    ev->sip = sip;
    ev->info = *info;
    ev->timeout = evtimer_new(r->base, on_hook_timeout, ev);
    if (!ev->timeout) {
        free(ev);
        return false;
    }
    ev->next = r->events;
    if (ev->next)
        ev->next->prev = ev;
    r->events = ev;
    arm_seconds(ev->timeout, REGISTRAR_HOOK_TIMEOUT);
    if (r->hook(ev, r->hook_arg))
        return true; /* ev may be gone already (decided at once) */
    event_unlink(r, ev);
    event_free(ev->timeout);
    free(ev);
    return false;
}

void registrar_event_done(struct registrar_event *ev, int status, const char *reason)
{
    struct registrar *r = ev->r;
    if (r)
        event_unlink(r, ev);
    if (ev->timeout)
        event_free(ev->timeout);
    if (!r || !ev->irq) {
        free(ev);
        return;
    }
    if (status >= 300 && status <= 699) {
        log_info("registrar", "%s: registration refused by the policy (%d)",
                 ev->info.account, status);
        const char *phrase = reason && *reason ? reason : sip_status_phrase(status);
        nta_incoming_treply(ev->irq, status, phrase ? phrase : "Refused", TAG_END());
        nta_incoming_destroy(ev->irq);
    } else {
        struct account *acc = find_account(r, ev->info.account);
        if (!acc) { /* removed by a reload while the hook ran */
            reply_once(ev->irq, SIP_403_FORBIDDEN);
            nta_incoming_destroy(ev->irq);
        } else {
            finish_register(r, ev->irq, ev->sip, acc, &ev->info);
        }
    }
    free(ev);
}

/* Everything checked before a REGISTER may change bindings: the source,
 * the authentication, the AOR, the Contacts. Returns 0 with *accp and info
 * filled, or the status answered through `to` (stateless: msg and sip are
 * gone then). msg is the request, for its source address. */
static int check_register(struct registrar *r, const struct replyto *to, msg_t *msg,
                          const sip_t *sip, struct reqinfo *info, struct account **accp)
{
    if (source_of(msg, info->ip, sizeof info->ip, info->source, sizeof info->source,
                  &info->transport) < 0) {
        answer(to, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
        return 500;
    }
    struct account *acc;
    int status = authenticate(r, to, sip, info->ip, &acc);
    if (status != 0)
        return status;
    const char *to_user =
        sip->sip_to && sip->sip_to->a_url->url_user ? sip->sip_to->a_url->url_user : NULL;
    if (!to_user || strcmp(to_user, acc->name) != 0) {
        log_info("registrar", "%s tried to register the AOR %.64s", acc->name,
                 to_user ? to_user : "(none)");
        answer(to, 403, "Not Your Address Of Record", TAG_END());
        return 403;
    }
    snprintf(info->account, sizeof info->account, "%s", acc->name);
    info->user_agent[0] = '\0';
    if (sip->sip_user_agent && sip->sip_user_agent->g_string)
        snprintf(info->user_agent, sizeof info->user_agent, "%s",
                 sip->sip_user_agent->g_string);
    snprintf(info->call_id, sizeof info->call_id, "%s", sip->sip_call_id->i_id);
    status = parse_register(r, to, sip, info);
    if (status != 0)
        return status;
    *accp = acc;
    return 0;
}

static void drop_passed(struct registrar *r)
{
    free(r->passed.info);
    r->passed.info = NULL;
    r->passed.sip = NULL;
    r->passed.acc = NULL;
}

int registrar_prefilter_register(msg_t *msg, sip_t *sip, void *arg)
{
    struct registrar *r = arg;
    drop_passed(r);
    struct reqinfo *info = malloc(sizeof *info);
    if (!info)
        return -1; /* the transaction path answers 500 */
    const struct replyto to = {.nta = r->nta, .msg = msg};
    struct account *acc;
    if (check_register(r, &to, msg, sip, info, &acc) != 0) {
        free(info); /* answered statelessly: nothing kept */
        return 0;
    }
    /* Authenticated and well-formed: the REGISTER becomes a transaction,
     * given at once to registrar_on_register() with this sip. */
    r->passed.sip = sip;
    r->passed.info = info;
    r->passed.acc = acc;
    return -1;
}

int registrar_on_register(nta_incoming_t *irq, const sip_t *sip, void *arg)
{
    struct registrar *r = arg;
    struct reqinfo *info;
    struct account *acc;
    if (r->passed.info && r->passed.sip == sip) {
        /* Checked by the prefilter a moment ago, in the same call from
         * the agent: nothing can have changed since. */
        info = r->passed.info;
        acc = r->passed.acc;
        r->passed.info = NULL;
        r->passed.sip = NULL;
        r->passed.acc = NULL;
    } else {
        /* No prefilter installed: every check answers in the transaction. */
        drop_passed(r);
        info = malloc(sizeof *info);
        if (!info) {
            reply_once(irq, SIP_500_INTERNAL_SERVER_ERROR);
            nta_incoming_destroy(irq);
            return 0;
        }
        const struct replyto to = {.irq = irq};
        msg_t *msg = nta_incoming_getrequest(irq);
        int status = check_register(r, &to, msg, sip, info, &acc);
        msg_destroy(msg);
        if (status != 0) {
            nta_incoming_destroy(irq);
            free(info);
            return 0;
        }
    }
    if (!run_hook(r, irq, sip, info))
        finish_register(r, irq, sip, acc, info);
    free(info);
    return 0;
}

/* ---- Hook accessors -------------------------------------------------------------- */

void registrar_set_hook(struct registrar *r, registrar_hook_h *h, void *arg)
{
    r->hook = h;
    r->hook_arg = arg;
}

const char *registrar_event_account(const struct registrar_event *ev)
{
    return ev->info.account;
}
unsigned registrar_event_contacts(const struct registrar_event *ev)
{
    return ev->info.n;
}
const char *registrar_event_contact(const struct registrar_event *ev, unsigned i)
{
    return i < ev->info.n ? ev->info.c[i].uri : NULL;
}
int registrar_event_expires(const struct registrar_event *ev, unsigned i)
{
    return i < ev->info.n ? ev->info.c[i].granted : 0;
}
bool registrar_event_nat(const struct registrar_event *ev, unsigned i)
{
    return i < ev->info.n && ev->info.c[i].nat;
}
const char *registrar_event_source(const struct registrar_event *ev)
{
    return ev->info.source;
}
const char *registrar_event_transport(const struct registrar_event *ev)
{
    return transport_names[ev->info.transport];
}
const char *registrar_event_user_agent(const struct registrar_event *ev)
{
    return ev->info.user_agent;
}
const char *registrar_event_call_id(const struct registrar_event *ev)
{
    return ev->info.call_id;
}

/* ---- Timers: expiry and keepalive ---------------------------------------------- */

static void on_expiry(evutil_socket_t fd, short what, void *arg)
{
    struct registrar *r = arg;
    (void)fd;
    (void)what;
    long long now = now_s();
    while (r->nbindings && r->heap[0]->expires_at <= now)
        remove_binding(r, r->heap[0], "expired");
    arm_expiry(r);
    kick(r);
}

static int on_keepalive(struct binding *b, nta_outgoing_t *orq, const sip_t *sip)
{
    struct registrar *r = b->acc->r;
    int status =
        sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (status < 200)
        return 0;
    if (r->in_create) {
        r->create_status = status;
        nta_outgoing_destroy(orq);
        return 0;
    }
    b->ka_orq = NULL;
    nta_outgoing_destroy(orq);
    if (r->ka_mode != ENDPOINT_KEEPALIVE_OPTIONS)
        return 0; /* sent before a reload changed the mode: not counted */
    if (sip && !nta_sip_is_internal(sip)) {
        b->misses = 0;
        return 0;
    }
    if (++b->misses >= r->ka_misses)
        remove_binding(r, b, "keepalives unanswered");
    return 0;
}

static void send_keepalive(struct registrar *r, struct binding *b)
{
    char route[128], from[160], to[CONTACT_MAX + 4], call_id[48];
    snprintf(route, sizeof route, "sip:%s;transport=%s", b_source(b),
             transport_names[b->transport]);
    unsigned char rnd[12];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        memset(rnd, 0, sizeof rnd);
    snprintf(from, sizeof from, "<sip:keepalive@%s>;tag=%02x%02x%02x%02x", r->ka_host,
             rnd[0], rnd[1], rnd[2], rnd[3]);
    snprintf(to, sizeof to, "<%s>", b_contact(b));
    snprintf(call_id, sizeof call_id, "ka-%02x%02x%02x%02x%02x%02x%02x%02x@moonswitch",
             rnd[4], rnd[5], rnd[6], rnd[7], rnd[8], rnd[9], rnd[10], rnd[11]);
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sip_cseq_t *cs = sip_cseq_create(home, 1, SIP_METHOD_OPTIONS);
    r->in_create = true;
    r->create_status = 0;
    /* From the binding's own transport: the NAT lets the OPTIONS in only
     * from the IP:port the REGISTER went to. nta sends on a TCP connection
     * given here (a dead one is a miss, not a new connection the NAT would
     * refuse); of a UDP listener it takes only the ident (agent.c gives
     * each one its own), otherwise it would pick the protocol's first. */
    nta_outgoing_t *orq = nta_outgoing_tcreate(
        r->leg, on_keepalive, b, URL_STRING_MAKE(route), SIP_METHOD_OPTIONS,
        URL_STRING_MAKE(b_contact(b)), SIPTAG_FROM_STR(from), SIPTAG_TO_STR(to),
        SIPTAG_CALL_ID_STR(call_id), SIPTAG_CSEQ(cs), TAG_IF(b->tp, NTATAG_TPORT(b->tp)),
        TAG_END());
    r->in_create = false;
    su_home_deinit(home);
    if (!orq || r->create_status) {
        if (++b->misses >= r->ka_misses)
            remove_binding(r, b, "keepalives cannot be sent");
        return;
    }
    b->ka_orq = orq;
}

/* "\r\n\r\n" as a message tport can send. tport writes only msg_t, and a
 * message is encoded from its chain of fragments; parsing a request whose
 * body is CRLF and dropping its request line and Content-Length leaves the
 * chain separator + body: CRLF CRLF. Public msg API only; about 1 us and a
 * few hundred bytes, freed once sent. NULL when out of memory. */
static msg_t *crlf_message(void)
{
    static const char text[] = "OPTIONS sip:keepalive.invalid SIP/2.0\r\n"
                               "Content-Length: 2\r\n\r\n\r\n";
    msg_t *msg = msg_make(sip_default_mclass(), 0, text, sizeof text - 1);
    sip_t *sip = sip_object(msg);
    if (!sip || !sip->sip_request || !sip->sip_content_length || !sip->sip_payload ||
        msg_header_remove(msg, NULL, (msg_header_t *)sip->sip_request) < 0 ||
        msg_header_remove(msg, NULL, (msg_header_t *)sip->sip_content_length) < 0) {
        msg_destroy(msg);
        return NULL;
    }
    return msg;
}

/* "ip:port" or "[ip6]:port" into the IP (no brackets) and the port. */
static int split_source(const char *source, char *host, size_t hostlen, char *port,
                        size_t portlen)
{
    const char *colon = strrchr(source, ':');
    if (!colon)
        return -1;
    const char *h = source;
    size_t n = (size_t)(colon - source);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    size_t p = strlen(colon + 1);
    if (n == 0 || n >= hostlen || p == 0 || p >= portlen)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    memcpy(port, colon + 1, p + 1);
    return 0;
}

/* RFC 5626 4.4.1 CRLF keepalive to the binding's source, written by tport on
 * the switch's own socket: over UDP the one the REGISTER came to (the NAT
 * only refreshes the pinhole for packets from that IP:port), over TCP the
 * REGISTER's connection.
 * Over UDP nothing answers a CRLF ping (the pong of RFC 5626 goes the other
 * way, to a UA that pinged), so this only keeps the pinhole open: misses
 * cannot be counted, and a phone that is gone stays until its binding
 * expires (endpoint_nat_expire). Over TCP a connection that is closed or
 * shut down, or a write that fails, removes the binding. */
static void send_crlf(struct registrar *r, struct binding *b)
{
    tport_t *tp = b->tp;
    bool tcp = b->transport == TP_TCP;
    if (tcp && (!tp || tport_is_shutdown(tp) || !tport_is_clear_to_send(tp))) {
        /* Checked first: given a dead connection, tport_tsend() would open
         * a new one, which a NAT does not let in. A binding loaded from the
         * store has none: its connection went with the last run. */
        remove_binding(r, b,
                       tp ? "connection closed" : "no connection since the restart");
        return;
    }
    char host[48], port[8];
    if (split_source(b_source(b), host, sizeof host, port, sizeof port) < 0)
        return;
    tp_name_t tpn = {0};
    tpn.tpn_proto = transport_names[b->transport];
    tpn.tpn_canon = tpn.tpn_host = host;
    tpn.tpn_port = port;
    if (!tp) /* loaded from the store: the first UDP socket of the family */
        tp = tport_primary_by_name(nta_agent_tports(r->nta), &tpn);
    msg_t *msg = crlf_message();
    tport_t *sent = tp && msg ? tport_tsend(tp, msg, &tpn, TAG_END()) : NULL;
    msg_destroy(msg); /* tport keeps its own reference while it queues */
    if (sent)
        return;
    if (tcp)
        remove_binding(r, b, "keepalive cannot be sent");
    else
        log_debug("registrar", "%s: cannot send a CRLF keepalive to %s", b->acc->name,
                  b_source(b));
}

/* One wheel slot a second: each NAT binding is pinged once per interval. In
 * options mode a binding whose last ping is still unanswered waits for nta's
 * verdict. */
static void on_keepalive_tick(evutil_socket_t fd, short what, void *arg)
{
    struct registrar *r = arg;
    (void)fd;
    (void)what;
    if (!r->wheel || r->ka_mode == ENDPOINT_KEEPALIVE_OFF)
        return;
    unsigned slot = r->ka_pos;
    r->ka_pos = (r->ka_pos + 1) % r->ka_interval;
    struct binding *b = r->wheel[slot];
    while (b) {
        struct binding *next = b->ka_next; /* b may go */
        if (r->ka_mode == ENDPOINT_KEEPALIVE_CRLF)
            send_crlf(r, b);
        else if (!b->ka_orq)
            send_keepalive(r, b);
        b = next;
    }
    kick(r);
}

/* The policy's keepalive settings. A new interval rebuilds the wheel; a new
 * mode applies from each binding's next slot. */
static void apply_keepalive(struct registrar *r, const struct sip_settings *s)
{
    unsigned interval = (unsigned)s->endpoint_keepalive_interval;
    unsigned misses = (unsigned)s->endpoint_keepalive_misses;
    bool changed = s->endpoint_keepalive != r->ka_mode || interval != r->ka_interval ||
                   misses != r->ka_misses;
    if (interval != r->ka_interval && wheel_resize(r, interval) < 0)
        log_error("registrar", "out of memory resizing the keepalive wheel: keeping %u s",
                  r->ka_interval);
    if (s->endpoint_keepalive != r->ka_mode)
        for (size_t i = 0; i < r->nbindings; i++)
            r->heap[i]->misses = 0; /* counted under the old mode */
    r->ka_mode = s->endpoint_keepalive;
    r->ka_misses = misses;
    if (r->ka_mode == ENDPOINT_KEEPALIVE_OFF || !r->wheel) {
        event_del(r->ka_ev);
    } else if (!event_pending(r->ka_ev, EV_TIMEOUT, NULL)) {
        struct timeval second = {1, 0};
        event_add(r->ka_ev, &second);
    }
    if (!changed)
        return;
    if (r->ka_mode == ENDPOINT_KEEPALIVE_OPTIONS)
        log_info("registrar",
                 "NAT keepalive: options every %u s, removed after %u misses",
                 r->ka_interval, r->ka_misses);
    else if (r->ka_mode == ENDPOINT_KEEPALIVE_CRLF)
        log_info("registrar", "NAT keepalive: crlf every %u s", r->ka_interval);
    else
        log_info("registrar", "NAT keepalive: off");
}

/* ---- Lifetime --------------------------------------------------------------------- */

static unsigned env_unsigned(const char *name, unsigned def, unsigned max)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    unsigned long n = strtoul(v, &end, 10);
    if (*end || n > max) {
        log_warn("registrar", "ignoring %s=%s", name, v);
        return def;
    }
    log_info("registrar", "%s=%lu", name, n);
    return (unsigned)n;
}

static int load_secret(struct registrar *r)
{
    uint8_t version;
    void *val = NULL;
    size_t len = 0;
    if (r->store && store_get(r->store, STORE_SUSPEND, secret_key, SECRET_KEY_LEN,
                              &version, &val, &len) == 0) {
        if (version == SECRET_VERSION && len == DIGEST_SECRET_LEN) {
            memcpy(r->secret, val, DIGEST_SECRET_LEN);
            free(val);
            return 0;
        }
        free(val);
    }
    if (getrandom(r->secret, sizeof r->secret, 0) != (ssize_t)sizeof r->secret) {
        log_error("registrar", "no randomness for the nonce secret");
        return -EIO;
    }
    if (!r->store)
        return 0;
    int rc = store_put(r->store, STORE_SUSPEND, secret_key, SECRET_KEY_LEN,
                       SECRET_VERSION, r->secret, DIGEST_SECRET_LEN);
    if (rc == 0)
        rc = store_commit(r->store);
    return rc;
}

struct load_ctx {
    struct registrar *r;
    long long now;
    uint8_t (*dead)[STORE_MAX_KEY + 2]; /* keys to delete: 2-byte length + key */
    size_t ndead, capdead;
    size_t loaded;
};

static void load_dead(struct load_ctx *lc, const void *key, size_t klen)
{
    if (lc->ndead == lc->capdead) {
        size_t cap = lc->capdead ? lc->capdead * 2 : 64;
        void *grown = realloc(lc->dead, cap * sizeof *lc->dead);
        if (!grown)
            return;
        lc->dead = grown;
        lc->capdead = cap;
    }
    lc->dead[lc->ndead][0] = (uint8_t)(klen >> 8);
    lc->dead[lc->ndead][1] = (uint8_t)klen;
    memcpy(lc->dead[lc->ndead] + 2, key, klen);
    lc->ndead++;
}

static int load_binding(const void *key, size_t klen, uint8_t version, const void *val,
                        size_t vlen, void *arg)
{
    struct load_ctx *lc = arg;
    struct registrar *r = lc->r;
    const uint8_t *v = val;
    const char *aor = key;
    size_t alen = strnlen(aor, klen);
    char name[STORE_MAX_KEY + 1];
    memcpy(name, aor, alen);
    name[alen] = '\0';
    struct account *acc =
        version == BINDING_VERSION && vlen > 16 ? find_account(r, name) : NULL;
    long long expires_at = vlen >= 8 ? (long long)store_key_u64_read(v) : 0;
    if (!acc || expires_at <= lc->now || v[vlen - 1] != '\0') {
        load_dead(lc, key, klen);
        return 0;
    }
    const char *strs[4];
    size_t off = 16;
    for (int i = 0; i < 4; i++) {
        if (off >= vlen) {
            load_dead(lc, key, klen);
            return 0;
        }
        strs[i] = (const char *)v + off;
        off += strlen(strs[i]) + 1;
    }
    struct binding *b = calloc(1, sizeof *b);
    if (!b || binding_set_strings(b, strs[0], strs[1], strs[2], strs[3]) < 0) {
        free(b);
        return 0;
    }
    b->acc = acc;
    b->expires_at = expires_at;
    uint8_t be[8] = {0};
    memcpy(be + 4, v + 8, 4);
    b->cseq = (uint32_t)store_key_u64_read(be);
    b->nat = v[12] ? 1 : 0;
    b->transport = v[13] == TP_TCP ? TP_TCP : TP_UDP;
    if (heap_push(r, b) < 0) {
        binding_free(b);
        return 0;
    }
    b->next = acc->bindings;
    acc->bindings = b;
    acc->nbindings++;
    if (b->nat)
        wheel_insert(r, b);
    lc->loaded++;
    return 0;
}

static int load_suspension(const void *key, size_t klen, uint8_t version, const void *val,
                           size_t vlen, void *arg)
{
    struct load_ctx *lc = arg;
    const char *k = key;
    if (klen < 2 || (k[0] != 'a' && k[0] != 's'))
        return 0; /* the secret, or not ours */
    long long until =
        version == SUSPEND_VERSION && vlen == 8 ? (long long)store_key_u64_read(val) : 0;
    if (until <= lc->now) {
        load_dead(lc, key, klen);
        return 0;
    }
    char name[STORE_MAX_KEY];
    size_t n = klen - 1 < sizeof name - 1 ? klen - 1 : sizeof name - 1;
    memcpy(name, k + 1, n);
    name[n] = '\0';
    struct guard *g = guard_get(lc->r, k[0], name, true);
    if (g) {
        g->until = until;
        g->last_failure = lc->now;
    }
    return 0;
}

static void load_store(struct registrar *r, enum store_db db, store_visit_h *fn)
{
    struct load_ctx lc = {.r = r, .now = now_s()};
    store_foreach(r->store, db, fn, &lc);
    for (size_t i = 0; i < lc.ndead; i++)
        store_del(r->store, db, lc.dead[i] + 2,
                  (size_t)lc.dead[i][0] << 8 | lc.dead[i][1]);
    if (lc.ndead || lc.loaded)
        log_info("registrar", "%s: %zu loaded, %zu expired or unknown dropped",
                 store_db_name(db), lc.loaded, lc.ndead);
    free(lc.dead);
}

int registrar_create(struct registrar **rp, nta_agent_t *nta, nta_leg_t *leg,
                     su_root_t *root, struct event_base *base, struct store *store)
{
    *rp = NULL;
    struct registrar *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->nta = nta;
    r->leg = leg;
    r->root = root;
    r->base = base;
    r->store = store;
    r->pending_tail = &r->pending;
    r->expire = 3600;
    r->nat_expire = 300;
    r->retry = 6;
    r->suspend = 180;
    r->replace = true;
    r->nonce_ttl = env_unsigned("MOON_NONCE_TTL", REGISTRAR_NONCE_TTL, 86400);
    /* Keepalives start with the policy's settings in registrar_apply(),
     * before any binding exists. */
    r->ka_mode = ENDPOINT_KEEPALIVE_OFF;
    int rc = load_secret(r);
    if (rc < 0)
        goto fail;
    rc = -ENOMEM;
    r->nct = nctrack_create(NCTRACK_ENTRIES, now_ms());
    if (!r->nct)
        goto fail;
    r->expiry_ev = evtimer_new(base, on_expiry, r);
    r->sweep_ev = event_new(base, -1, EV_PERSIST, on_sweep, r);
    r->flush_ev = event_new(base, -1, 0, on_flush, r);
    r->ka_ev = event_new(base, -1, EV_PERSIST, on_keepalive_tick, r);
    if (!r->expiry_ev || !r->sweep_ev || !r->flush_ev || !r->ka_ev)
        goto fail;
    /* flush_ev keeps the default priority: on_flush() paces itself, and a
     * lowest-priority flush would starve while requests keep arriving. */
    struct timeval sweep = {SWEEP_S, 0};
    event_add(r->sweep_ev, &sweep);
    sip_contact_t const *m = nta ? nta_agent_contact(nta) : NULL;
    snprintf(r->ka_host, sizeof r->ka_host, "%s",
             m && m->m_url->url_host ? m->m_url->url_host : "moonswitch.invalid");
    if (store)
        load_store(r, STORE_SUSPEND, load_suspension);
    *rp = r;
    return 0;
fail:
    registrar_destroy(r);
    return rc;
}

static void account_free(struct registrar *r, struct account *acc, bool forget)
{
    while (acc->bindings) {
        if (forget) {
            remove_binding(r, acc->bindings, "account removed");
        } else {
            struct binding *b = acc->bindings;
            acc->bindings = b->next;
            binding_free(b);
        }
    }
    free(acc->name);
    free(acc->password);
    free(acc->mapping_gateway);
    free(acc);
}

void registrar_destroy(struct registrar *r)
{
    if (!r)
        return;
    flush(r);
    while (r->events) {
        struct registrar_event *ev = r->events;
        event_unlink(r, ev);
        if (ev->irq) {
            reply_once(ev->irq, SIP_503_SERVICE_UNAVAILABLE);
            nta_incoming_destroy(ev->irq);
            ev->irq = NULL;
        }
        event_free(ev->timeout);
        ev->timeout = NULL;
        ev->r = NULL; /* freed by registrar_event_done() */
    }
    for (size_t i = 0; i < r->nacc; i++)
        account_free(r, r->acc[i], false);
    free(r->acc);
    free(r->heap);
    free(r->wheel);
    for (unsigned h = 0; h < GUARD_BUCKETS; h++)
        while (r->guards[h]) {
            struct guard *g = r->guards[h];
            r->guards[h] = g->next;
            free(g);
        }
    if (r->expiry_ev)
        event_free(r->expiry_ev);
    if (r->sweep_ev)
        event_free(r->sweep_ev);
    if (r->flush_ev)
        event_free(r->flush_ev);
    if (r->ka_ev)
        event_free(r->ka_ev);
    nctrack_destroy(r->nct);
    drop_passed(r);
    free(r);
}

static int acc_by_name(const void *a, const void *b)
{
    return strcmp((*(struct account *const *)a)->name,
                  (*(struct account *const *)b)->name);
}

static char *dup_str(const char *s)
{
    return strdup(s ? s : "");
}

void registrar_apply(struct registrar *r, const struct config *cfg)
{
    const struct switch_def *sw = config_switch(cfg);
    r->expire = sw->sip.endpoint_expire;
    r->nat_expire = sw->sip.endpoint_nat_expire;
    r->retry = sw->sip.endpoint_register_retry;
    r->suspend = sw->sip.endpoint_register_suspend;
    r->replace = sw->sip.endpoint_register_replace;
    r->digest = sw->sip.endpoint_digest;
    apply_keepalive(r, &sw->sip);
    drop_passed(r); /* its account may go */

    size_t n = config_count(cfg, KIND_ACCOUNT);
    struct account **next = calloc(n ? n : 1, sizeof *next);
    if (!next) {
        log_error("registrar", "out of memory applying the policy");
        return;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        const struct account_def *d = (const void *)config_at(cfg, KIND_ACCOUNT, i);
        const struct mapping_gateway_def *g =
            (const void *)config_find(cfg, KIND_MAPPING_GATEWAY, d->mapping_gateway);
        if (!g || g->type != MGW_REGISTER)
            continue;
        struct account *acc = find_account(r, d->head.name);
        if (acc) {
            /* kept: take the new password and gateway */
            char *pw = dup_str(d->password), *gw = dup_str(d->mapping_gateway);
            if (pw && gw) {
                free(acc->password);
                free(acc->mapping_gateway);
                acc->password = pw;
                acc->mapping_gateway = gw;
            } else {
                free(pw);
                free(gw);
            }
            acc->kept = true;
        } else {
            acc = calloc(1, sizeof *acc);
            if (!acc || !(acc->name = strdup(d->head.name)) ||
                !(acc->password = dup_str(d->password)) ||
                !(acc->mapping_gateway = dup_str(d->mapping_gateway))) {
                if (acc) {
                    free(acc->name);
                    free(acc->password);
                    free(acc);
                }
                log_error("registrar", "out of memory adding account %s", d->head.name);
                continue;
            }
            acc->r = r;
        }
        next[m++] = acc;
    }
    /* Accounts no longer defined lose their bindings. */
    size_t removed = 0;
    for (size_t i = 0; i < r->nacc; i++) {
        struct account *acc = r->acc[i];
        if (acc->kept) {
            acc->kept = false;
            continue;
        }
        /* Still findable by the old array while its bindings go. */
        account_free(r, acc, true);
        removed++;
    }
    qsort(next, m, sizeof *next, acc_by_name);
    free(r->acc);
    r->acc = next;
    r->nacc = m;
    if (removed)
        log_info("registrar", "%zu accounts removed with their bindings", removed);
    if (!r->loaded && r->store) {
        load_store(r, STORE_BINDINGS, load_binding);
    }
    r->loaded = true;
    arm_expiry(r);
    kick(r);
}

/* ---- Introspection and operator actions ----------------------------------------- */

static void fill_binding(struct registrar_binding *out, const struct binding *b)
{
    out->aor = b->acc->name;
    out->contact = b_contact(b);
    out->call_id = b_call_id(b);
    out->source = b_source(b);
    out->user_agent = b_ua(b);
    out->transport = transport_names[b->transport];
    out->cseq = b->cseq;
    out->expires_at = b->expires_at;
    out->nat = b->nat;
    out->keepalive_misses = b->misses;
}

int registrar_bindings(struct registrar *r, const char *aor, registrar_binding_h *fn,
                       void *arg)
{
    struct registrar_binding info;
    for (size_t i = 0; i < r->nacc; i++) {
        struct account *acc = aor ? find_account(r, aor) : r->acc[i];
        if (!acc)
            return 0;
        for (const struct binding *b = acc->bindings; b; b = b->next) {
            fill_binding(&info, b);
            int rc = fn(&info, arg);
            if (rc)
                return rc;
        }
        if (aor)
            break;
    }
    return 0;
}

int registrar_remove(struct registrar *r, const char *aor, const char *contact)
{
    struct account *acc = find_account(r, aor);
    if (!acc)
        return -ENOENT;
    int removed = 0;
    if (!contact) {
        while (acc->bindings) {
            remove_binding(r, acc->bindings, "removed by the operator");
            removed++;
        }
    } else {
        char buf[CONTACT_MAX + 2];
        size_t n = strlen(contact);
        if (n >= 2 && contact[0] == '<' && contact[n - 1] == '>') {
            contact++;
            n -= 2;
        }
        if (n >= sizeof buf)
            return 0;
        memcpy(buf, contact, n);
        buf[n] = '\0';
        url_t u[1];
        if (url_d(u, buf) < 0)
            return 0;
        struct binding *b;
        while ((b = find_binding(acc, u))) {
            remove_binding(r, b, "removed by the operator");
            removed++;
        }
    }
    arm_expiry(r);
    kick(r);
    return removed;
}

size_t registrar_binding_count(const struct registrar *r)
{
    return r->nbindings;
}

size_t registrar_account_count(const struct registrar *r)
{
    return r->nacc;
}

static void fill_account(struct registrar *r, const struct account *acc,
                         struct registrar_account *out)
{
    out->name = acc->name;
    out->mapping_gateway = acc->mapping_gateway;
    out->bindings = acc->nbindings;
    long long now = now_s();
    struct guard *g = guard_get(r, 'a', acc->name, false);
    out->failures =
        g && now - g->last_failure <= REGISTRAR_FAILURE_WINDOW ? g->failures : 0;
    out->suspended_until = g && g->until > now ? g->until : 0;
}

int registrar_account_at(struct registrar *r, size_t i, struct registrar_account *out)
{
    if (i >= r->nacc)
        return -ENOENT;
    fill_account(r, r->acc[i], out);
    return 0;
}

int registrar_account_find(struct registrar *r, const char *name,
                           struct registrar_account *out)
{
    struct account *acc = find_account(r, name);
    if (!acc)
        return -ENOENT;
    fill_account(r, acc, out);
    return 0;
}

int registrar_suspensions(struct registrar *r, registrar_suspension_h *fn, void *arg)
{
    long long now = now_s();
    for (unsigned h = 0; h < GUARD_BUCKETS; h++)
        for (struct guard *g = r->guards[h]; g; g = g->next) {
            if (g->until <= now)
                continue;
            int rc = fn(kind_name(g->key[0]), g->key + 1, g->until, g->failures, arg);
            if (rc)
                return rc;
        }
    return 0;
}

int registrar_unsuspend(struct registrar *r, const char *name)
{
    int lifted = 0;
    const char kinds[] = {'a', 's'};
    for (int i = 0; i < 2; i++) {
        struct guard *g = guard_get(r, kinds[i], name, false);
        if (!g)
            continue;
        if (g->until > now_s())
            lifted++;
        bool was = g->until != 0;
        g->until = 0;
        g->failures = 0;
        if (was)
            guard_persist(r, g);
    }
    if (lifted)
        log_info("registrar", "%s: suspension lifted by the operator", name);
    return lifted;
}
