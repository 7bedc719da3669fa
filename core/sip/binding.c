/* Endpoint bindings. See binding.h. */
#include "sip/binding.h"
#include "sip/ipcount.h"
#include "log.h"
#include "sip/digest.h"
#include "sip/keepalive.h"
#include "sip/registrar_internal.h"
#include "store.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <openssl/evp.h>
#include <sofia-sip/url.h>

#define BINDING_VERSION 1

struct binding {
    struct binding_aor *aor;
    struct binding *next; /* the AOR's bindings */
    struct keepalive_node ka;
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
    uint8_t nat : 1, transport : 2, touched : 1; /* transport: enum binding_transport */
    uint8_t indexed : 1; /* its source IP is counted in the set's sources */
};

struct binding_set {
    struct binding **heap; /* min-heap on expires_at; its size is count */
    size_t count, heap_cap;
    struct event *expiry_ev;
    long long armed_for; /* the expiry the timer is armed for; 0: none */
    su_root_t *root;
    struct store *store;
    struct keepalive *ka;
    int expire, nat_expire;
    bool replace;
    struct ipcount *sources; /* the bindings' source IPs, counted */
};

static const char *const transport_names[] = {"udp", "tcp", "tls"};

const char *binding_transport_name(enum binding_transport t)
{
    return transport_names[t <= BINDING_TLS ? t : BINDING_UDP];
}

void binding_aor_init(struct binding_aor *aor, struct binding_set *set, const char *name)
{
    aor->name = name;
    aor->set = set;
    aor->bindings = NULL;
    aor->count = 0;
}

/* ---- Strings ------------------------------------------------------------------ */

const char *binding_contact(const struct binding *b)
{
    return b->strs;
}
static const char *b_call_id(const struct binding *b)
{
    return b->strs + b->off_call_id;
}
const char *binding_source(const struct binding *b)
{
    return b->strs + b->off_source;
}
static const char *b_ua(const struct binding *b)
{
    return b->strs + b->off_ua;
}
const char *binding_aor_name(const struct binding *b)
{
    return b->aor->name;
}
enum binding_transport binding_transport(const struct binding *b)
{
    return b->transport;
}
tport_t *binding_tport(const struct binding *b)
{
    return b->tp;
}
struct keepalive_node *binding_keepalive_node(struct binding *b)
{
    return &b->ka;
}
struct binding *binding_of_keepalive_node(struct keepalive_node *n)
{
    return (struct binding *)((char *)n - offsetof(struct binding, ka));
}
struct keepalive *binding_keepalive(const struct binding *b)
{
    return b->aor->set->ka;
}

/* Replace the binding's strings. Returns 0, -EINVAL (too long) or -ENOMEM
 * (then unchanged). */
static int set_strings(struct binding *b, const char *contact, const char *call_id,
                       const char *source, const char *ua)
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

/* ---- The expiry heap ------------------------------------------------------------ */

static void heap_swap(struct binding_set *s, size_t i, size_t j)
{
    struct binding *t = s->heap[i];
    s->heap[i] = s->heap[j];
    s->heap[j] = t;
    s->heap[i]->heap_idx = (uint32_t)i;
    s->heap[j]->heap_idx = (uint32_t)j;
}

static void heap_up(struct binding_set *s, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (s->heap[p]->expires_at <= s->heap[i]->expires_at)
            break;
        heap_swap(s, i, p);
        i = p;
    }
}

static void heap_down(struct binding_set *s, size_t i)
{
    size_t n = s->count;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && s->heap[l]->expires_at < s->heap[m]->expires_at)
            m = l;
        if (l + 1 < n && s->heap[l + 1]->expires_at < s->heap[m]->expires_at)
            m = l + 1;
        if (m == i)
            break;
        heap_swap(s, i, m);
        i = m;
    }
}

static int heap_push(struct binding_set *s, struct binding *b)
{
    if (s->count == s->heap_cap) {
        size_t cap = s->heap_cap ? s->heap_cap * 2 : 1024;
        struct binding **grown = realloc(s->heap, cap * sizeof *grown);
        if (!grown)
            return -ENOMEM;
        s->heap = grown;
        s->heap_cap = cap;
    }
    b->heap_idx = (uint32_t)s->count;
    s->heap[s->count++] = b;
    heap_up(s, b->heap_idx);
    return 0;
}

static void heap_remove(struct binding_set *s, struct binding *b)
{
    size_t i = b->heap_idx, last = s->count - 1;
    if (i != last) {
        heap_swap(s, i, last);
        s->count--;
        heap_down(s, i);
        heap_up(s, i);
    } else {
        s->count--;
    }
}

static void heap_update(struct binding_set *s, struct binding *b)
{
    heap_down(s, b->heap_idx);
    heap_up(s, b->heap_idx);
}

/* Re-arm the expiry timer for the earliest binding: one evtimer_add, none
 * when the earliest expiry is the one it is armed for already (most
 * REGISTERs refresh a binding that is not the next to expire). */
static void arm_expiry(struct binding_set *s)
{
    if (!s->expiry_ev)
        return;
    if (s->count == 0) {
        event_del(s->expiry_ev);
        s->armed_for = 0;
        return;
    }
    long long due = s->heap[0]->expires_at;
    if (due == s->armed_for && evtimer_pending(s->expiry_ev, NULL))
        return;
    s->armed_for = due;
    registrar_arm_seconds(s->expiry_ev, (double)(due - registrar_now_s()) + 0.05);
}

void binding_expire(struct binding_set *s, long long now)
{
    while (s->count && s->heap[0]->expires_at <= now)
        binding_remove(s->heap[0], "expired");
    arm_expiry(s);
}

static void on_expiry(evutil_socket_t fd, short what, void *arg)
{
    struct binding_set *s = arg;
    (void)fd;
    (void)what;
    binding_expire(s, registrar_now_s());
    registrar_kick(s->root);
}

/* ---- The store -------------------------------------------------------------------- */

/* Store key: name NUL sha256(contact)[0..16). Returns its length, 0 if the
 * name is too long to be stored. */
static size_t store_key(const char *aor, const char *contact, uint8_t key[STORE_MAX_KEY])
{
    size_t n = strlen(aor);
    if (n + 1 + 16 > STORE_MAX_KEY)
        return 0;
    memcpy(key, aor, n);
    key[n] = 0;
    unsigned char md[32];
    if (digest_sha256(contact, strlen(contact), md) < 0) {
        unsigned len = 0;
        EVP_Digest(contact, strlen(contact), md, &len, EVP_sha256(), NULL);
    }
    memcpy(key + n + 1, md, 16);
    return n + 1 + 16;
}

static void save(struct binding_set *s, const struct binding *b)
{
    if (!s->store)
        return;
    uint8_t key[STORE_MAX_KEY];
    size_t klen = store_key(b->aor->name, binding_contact(b), key);
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
    if (store_put(s->store, STORE_BINDINGS, key, klen, BINDING_VERSION, val, vlen) < 0)
        log_error("registrar", "%s: cannot store the binding %s", b->aor->name,
                  binding_contact(b));
    free(val);
}

static void forget(struct binding_set *s, const char *aor, const char *contact)
{
    if (!s->store)
        return;
    uint8_t key[STORE_MAX_KEY];
    size_t klen = store_key(aor, contact, key);
    if (klen)
        store_del(s->store, STORE_BINDINGS, key, klen);
}

/* ---- The index of source addresses ---------------------------------------------- */

/* The IP of a binding's source: "192.0.2.1:5060" -> "192.0.2.1",
 * "[2001:db8::1]:5060" -> "2001:db8::1"; *len its length. */
static const char *source_ip(const char *source, size_t *len)
{
    if (source[0] == '[') {
        const char *end = strchr(source, ']');
        *len = end ? (size_t)(end - source - 1) : 0;
        return source + 1;
    }
    const char *colon = strrchr(source, ':');
    *len = colon ? (size_t)(colon - source) : strlen(source);
    return source;
}

/* Count the binding's source IP in its set (b->aor set). */
static void index_source(struct binding *b)
{
    size_t len;
    const char *ip = source_ip(binding_source(b), &len);
    b->indexed = ipcount_add(b->aor->set->sources, ip, len) == 0;
}

static void unindex_source(struct binding *b)
{
    if (!b->indexed)
        return;
    size_t len;
    const char *ip = source_ip(binding_source(b), &len);
    ipcount_del(b->aor->set->sources, ip, len);
    b->indexed = 0;
}

bool binding_set_has_source(const struct binding_set *s, const char *ip)
{
    return ipcount_get(s->sources, ip) > 0;
}

size_t binding_set_sources(const struct binding_set *s)
{
    return ipcount_size(s->sources);
}

/* ---- Life of one binding ------------------------------------------------------- */

static void link_new(struct binding_aor *aor, struct binding *b)
{
    b->aor = aor;
    b->next = aor->bindings;
    aor->bindings = b;
    aor->count++;
}

static void binding_free(struct binding *b)
{
    unindex_source(b);
    keepalive_release(b->aor ? b->aor->set->ka : NULL, &b->ka);
    tport_unref(b->tp); /* a TCP connection nobody else uses then idles out */
    free(b->strs);
    free(b);
}

void binding_remove(struct binding *b, const char *why)
{
    struct binding_aor *aor = b->aor;
    struct binding_set *s = aor->set;
    for (struct binding **p = &aor->bindings; *p; p = &(*p)->next)
        if (*p == b) {
            *p = b->next;
            break;
        }
    aor->count--;
    heap_remove(s, b);
    forget(s, aor->name, binding_contact(b));
    if (why)
        log_info("registrar", "%s: binding %s removed (%s)", aor->name,
                 binding_contact(b), why);
    binding_free(b);
}

/* Compare a stored Contact with a request's, by RFC 3261 URI equality of
 * scheme, user, host and port (sofia's url_cmp). */
static bool contact_matches(const char *stored, const url_t *url)
{
    char buf[BINDING_CONTACT_MAX];
    size_t n = strlen(stored);
    if (n >= sizeof buf)
        return false;
    memcpy(buf, stored, n + 1);
    url_t u[1];
    if (url_d(u, buf) < 0)
        return false;
    return url_cmp(u, url) == 0;
}

static struct binding *find(const struct binding_aor *aor, const url_t *url)
{
    for (struct binding *b = aor->bindings; b; b = b->next)
        if (contact_matches(binding_contact(b), url))
            return b;
    return NULL;
}

/* ---- The set ------------------------------------------------------------------------
 */

int binding_set_create(struct binding_set **sp, struct event_base *base, su_root_t *root,
                       struct store *store)
{
    struct binding_set *s = calloc(1, sizeof *s);
    *sp = NULL;
    if (!s)
        return -ENOMEM;
    s->root = root;
    s->store = store;
    s->expire = 3600;
    s->nat_expire = 300;
    s->replace = true;
    s->sources = ipcount_create();
    if (!s->sources || (base && !(s->expiry_ev = evtimer_new(base, on_expiry, s)))) {
        ipcount_destroy(s->sources);
        free(s);
        return -ENOMEM;
    }
    *sp = s;
    return 0;
}

void binding_set_destroy(struct binding_set *s)
{
    if (!s)
        return;
    if (s->expiry_ev)
        event_free(s->expiry_ev);
    free(s->heap);
    ipcount_destroy(s->sources);
    free(s);
}

void binding_set_attach_keepalive(struct binding_set *s, struct keepalive *ka)
{
    s->ka = ka;
}

void binding_set_configure(struct binding_set *s, int expire, int nat_expire,
                           bool replace)
{
    s->expire = expire;
    s->nat_expire = nat_expire;
    s->replace = replace;
}

size_t binding_set_count(const struct binding_set *s)
{
    return s->count;
}

void binding_set_visit(struct binding_set *s, void (*fn)(struct binding *b, void *arg),
                       void *arg)
{
    for (size_t i = 0; i < s->count; i++)
        fn(s->heap[i], arg);
}

struct load_ctx {
    struct binding_set *s;
    binding_find_h *find;
    void *arg;
    long long now;
};

static enum registrar_load load_one(const void *key, size_t klen, uint8_t version,
                                    const void *val, size_t vlen, void *arg)
{
    struct load_ctx *lc = arg;
    const uint8_t *v = val;
    const char *name_in_key = key;
    size_t alen = strnlen(name_in_key, klen);
    char name[STORE_MAX_KEY + 1];
    memcpy(name, name_in_key, alen);
    name[alen] = '\0';
    struct binding_aor *aor =
        version == BINDING_VERSION && vlen > 16 ? lc->find(name, lc->arg) : NULL;
    long long expires_at = vlen >= 8 ? (long long)store_key_u64_read(v) : 0;
    if (!aor || expires_at <= lc->now || v[vlen - 1] != '\0')
        return REGISTRAR_LOAD_DROP;
    const char *strs[4];
    size_t off = 16;
    for (int i = 0; i < 4; i++) {
        if (off >= vlen)
            return REGISTRAR_LOAD_DROP;
        strs[i] = (const char *)v + off;
        off += strlen(strs[i]) + 1;
    }
    struct binding *b = calloc(1, sizeof *b);
    if (!b || set_strings(b, strs[0], strs[1], strs[2], strs[3]) < 0) {
        free(b);
        return REGISTRAR_LOAD_KEEP;
    }
    b->expires_at = expires_at;
    uint8_t be[8] = {0};
    memcpy(be + 4, v + 8, 4);
    b->cseq = (uint32_t)store_key_u64_read(be);
    b->nat = v[12] ? 1 : 0;
    b->transport = v[13] <= BINDING_TLS ? v[13] : BINDING_UDP;
    if (heap_push(lc->s, b) < 0) {
        binding_free(b);
        return REGISTRAR_LOAD_KEEP;
    }
    link_new(aor, b);
    index_source(b);
    if (b->nat)
        keepalive_refresh(lc->s->ka, &b->ka, true);
    return REGISTRAR_LOAD_COUNTED;
}

void binding_set_load(struct binding_set *s, binding_find_h *find, void *arg)
{
    if (s->store) {
        struct load_ctx lc = {.s = s, .find = find, .arg = arg, .now = registrar_now_s()};
        registrar_store_load(s->store, STORE_BINDINGS, load_one, &lc);
    }
    arm_expiry(s);
}

/* ---- What a REGISTER asks ------------------------------------------------------------
 */

int binding_grant(const struct binding_set *s, long requested, bool nat)
{
    long cap = nat ? s->nat_expire : s->expire;
    return (int)(requested < cap ? requested : cap);
}

static int default_port(const url_t *u)
{
    if (u->url_type == url_sips)
        return 5061;
    return 5060;
}

bool binding_behind_nat(const url_t *u, const char *ip, const char *source)
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

int binding_parse(const struct binding_set *s, const sip_t *sip, const char *ip,
                  const char *source, struct binding_request *req, const char **phrase)
{
    req->star = false;
    req->n = 0;
    for (const sip_contact_t *m = sip->sip_contact; m; m = m->m_next) {
        if (m->m_url->url_type == url_any) {
            req->star = true;
            continue;
        }
        if (req->n == BINDING_MAX_CONTACTS) {
            *phrase = "Too Many Contacts";
            return 400;
        }
        struct binding_contact *c = &req->c[req->n];
        c->url = m->m_url;
        if (url_e(c->uri, sizeof c->uri, m->m_url) >= (issize_t)sizeof c->uri - 1) {
            *phrase = "Contact Too Long";
            return 400;
        }
        c->uri[sizeof c->uri - 1] = '\0';
        long requested;
        if (m->m_expires)
            requested = strtol(m->m_expires, NULL, 10);
        else if (sip->sip_expires)
            requested = (long)sip->sip_expires->ex_delta;
        else
            requested = s->expire;
        if (requested < 0)
            requested = 0;
        if (requested > 0 && requested < REGISTRAR_MIN_EXPIRES) {
            *phrase = "Interval Too Brief";
            return 423;
        }
        c->nat = binding_behind_nat(m->m_url, ip, source);
        c->granted = binding_grant(s, requested, c->nat);
        req->n++;
    }
    if (req->star &&
        (req->n > 0 || !sip->sip_expires || sip->sip_expires->ex_delta != 0)) {
        *phrase = "Wildcard Contact Needs Expires 0";
        return 400;
    }
    return 0;
}

bool binding_out_of_order(const struct binding_aor *aor,
                          const struct binding_request *req, const char *call_id,
                          uint32_t cseq)
{
    if (req->star) {
        for (struct binding *b = aor->bindings; b; b = b->next)
            if (strcmp(b_call_id(b), call_id) == 0 && cseq <= b->cseq)
                return true;
        return false;
    }
    for (unsigned i = 0; i < req->n; i++) {
        struct binding *b = find(aor, req->c[i].url);
        if (b && strcmp(b_call_id(b), call_id) == 0 && cseq <= b->cseq)
            return true;
    }
    return false;
}

/* ---- Changing bindings ------------------------------------------------------------- */

/* The binding closest to expiry that this request did not touch. */
static struct binding *eviction_victim(struct binding_aor *aor)
{
    struct binding *v = NULL;
    for (struct binding *b = aor->bindings; b; b = b->next)
        if (!b->touched && (!v || b->expires_at < v->expires_at))
            v = b;
    return v;
}

/* A new binding for `c`, in the heap and the AOR. NULL when out of memory
 * (logged) or when accumulating and nothing may be replaced. */
static struct binding *add(struct binding_set *s, struct binding_aor *aor,
                           const struct binding_contact *c,
                           const struct binding_origin *o, long long now)
{
    if (!s->replace && aor->count >= REGISTRAR_MAX_BINDINGS) {
        struct binding *v = eviction_victim(aor);
        if (!v)
            return NULL;
        binding_remove(v, "replaced: too many bindings");
    }
    struct binding *b = calloc(1, sizeof *b);
    if (!b || set_strings(b, c->uri, o->call_id, o->source, o->user_agent) < 0) {
        free(b);
        log_error("registrar", "%s: out of memory adding a binding", aor->name);
        return NULL;
    }
    b->expires_at = now + c->granted;
    if (heap_push(s, b) < 0) {
        binding_free(b);
        return NULL;
    }
    link_new(aor, b);
    index_source(b);
    log_info("registrar", "%s: binding %s from %s%s, %d s", aor->name, c->uri, o->source,
             c->nat ? " (NAT)" : "", c->granted);
    return b;
}

static void refresh(struct binding_set *s, struct binding *b,
                    const struct binding_contact *c, const struct binding_origin *o,
                    long long now)
{
    if (strcmp(binding_contact(b), c->uri) != 0)
        forget(s, b->aor->name, binding_contact(b));
    if (strcmp(binding_contact(b), c->uri) != 0 ||
        strcmp(b_call_id(b), o->call_id) != 0 ||
        strcmp(binding_source(b), o->source) != 0 || strcmp(b_ua(b), o->user_agent) != 0) {
        unindex_source(b);
        set_strings(b, c->uri, o->call_id, o->source, o->user_agent);
        index_source(b);
    }
    b->expires_at = now + c->granted;
    heap_update(s, b);
}

void binding_update(struct binding_aor *aor, const struct binding_request *req,
                    const struct binding_origin *o, long long now)
{
    struct binding_set *s = aor->set;
    if (req->star) {
        binding_clear(aor, "unregistered with *");
        return;
    }
    bool added = false;
    for (struct binding *b = aor->bindings; b; b = b->next)
        b->touched = 0;
    for (unsigned i = 0; i < req->n; i++) {
        const struct binding_contact *c = &req->c[i];
        struct binding *b = find(aor, c->url);
        if (c->granted == 0) {
            if (b)
                binding_remove(b, "unregistered");
            continue;
        }
        if (b) {
            refresh(s, b, c, o, now);
        } else {
            if (!(b = add(s, aor, c, o, now)))
                continue;
            added = true;
        }
        b->cseq = o->cseq;
        b->nat = c->nat;
        b->transport = o->transport;
        b->touched = 1;
        if (b->tp != o->tp) { /* a new connection, or loaded from the store */
            tport_unref(b->tp);
            b->tp = tport_ref(o->tp);
        }
        keepalive_refresh(s->ka, &b->ka, b->nat);
        save(s, b);
    }
    if (added && s->replace) {
        struct binding *v;
        while ((v = eviction_victim(aor)))
            binding_remove(v, "replaced by a new registration");
    }
    arm_expiry(s);
}

/* ---- Removal and reading ------------------------------------------------------------
 */

unsigned binding_clear(struct binding_aor *aor, const char *why)
{
    unsigned removed = 0;
    while (aor->bindings) {
        binding_remove(aor->bindings, why);
        removed++;
    }
    arm_expiry(aor->set);
    return removed;
}

unsigned binding_remove_matching(struct binding_aor *aor, const url_t *contact,
                                 const char *why)
{
    unsigned removed = 0;
    struct binding *b;
    while ((b = find(aor, contact))) {
        binding_remove(b, why);
        removed++;
    }
    arm_expiry(aor->set);
    return removed;
}

void binding_release(struct binding_aor *aor)
{
    while (aor->bindings) {
        struct binding *b = aor->bindings;
        aor->bindings = b->next;
        aor->count--;
        binding_free(b);
    }
}

int binding_visit(const struct binding_aor *aor, registrar_binding_h *fn, void *arg)
{
    struct registrar_binding info;
    for (const struct binding *b = aor->bindings; b; b = b->next) {
        info.aor = aor->name;
        info.contact = binding_contact(b);
        info.call_id = b_call_id(b);
        info.source = binding_source(b);
        info.user_agent = b_ua(b);
        info.transport = binding_transport_name(b->transport);
        info.cseq = b->cseq;
        info.expires_at = b->expires_at;
        info.nat = b->nat;
        info.keepalive_misses = b->ka.misses;
        int rc = fn(&info, arg);
        if (rc)
            return rc;
    }
    return 0;
}

char *binding_contacts_header(const struct binding_aor *aor, long long now)
{
    if (!aor->bindings)
        return NULL;
    size_t len = 1;
    for (const struct binding *b = aor->bindings; b; b = b->next)
        len += strlen(binding_contact(b)) + 32;
    char *out = malloc(len), *p = out;
    if (!out)
        return NULL;
    for (const struct binding *b = aor->bindings; b; b = b->next) {
        long long left = b->expires_at - now;
        p += sprintf(p, "%s<%s>;expires=%lld", p == out ? "" : ", ", binding_contact(b),
                     left > 0 ? left : 0);
    }
    return out;
}

char *binding_contact_lines(const struct binding_aor *aor, long long now)
{
    size_t len = 1;
    for (const struct binding *b = aor->bindings; b; b = b->next)
        len += strlen(binding_contact(b)) + 48;
    char *out = malloc(len), *p = out;
    if (!out)
        return NULL;
    *p = '\0';
    for (const struct binding *b = aor->bindings; b; b = b->next) {
        long long left = b->expires_at - now;
        p += sprintf(p, "Contact: <%s>;expires=%lld\r\n", binding_contact(b),
                     left > 0 ? left : 0);
    }
    return out;
}
