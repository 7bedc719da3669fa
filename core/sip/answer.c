/* The answer cache: see answer.h.
 *
 * Entries and their texts live in chunks of their own, mapped apart from
 * malloc's heap: an entry outlives by far the transactions' allocations
 * around it, and in the heap each one would keep its page mapped for 64*T1
 * after a burst. Entries are allocated and freed in the same order, so a
 * chunk is handed back to the system as soon as its last entry expired. */
#include "sip/answer.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CHUNK_BYTES (256 * 1024)

struct chunk {
    struct chunk *next; /* younger */
    size_t used, cap;   /* bytes of data */
    size_t refs;        /* entries and texts allocated here and alive */
    char data[];
};

struct node {
    struct answer a;
    struct node *fifo;  /* next younger entry */
    struct node *chain; /* next in its bucket */
    struct chunk *in, *text_in;
    uint64_t born_ms;
};

struct answer_cache {
    unsigned ttl_ms;
    struct node *oldest, *youngest;
    struct node **buckets;
    size_t nbuckets; /* a power of 2, or 0 */
    size_t count;
    size_t text_bytes;
    struct chunk *first, *last; /* oldest and newest chunk */
    size_t chunk_bytes;         /* mapped */
};

static void chunk_drop(struct answer_cache *ac, struct chunk *c)
{
    if (--c->refs || c == ac->last)
        return;
    /* Chunks empty out oldest first; one in the middle waits its turn. */
    while (ac->first && ac->first->refs == 0 && ac->first != ac->last) {
        struct chunk *f = ac->first;
        ac->first = f->next;
        ac->chunk_bytes -= sizeof *f + f->cap;
        munmap(f, sizeof *f + f->cap);
    }
}

/* `size` bytes, 16-aligned, from the newest chunk (a new one when full).
 * *in says which chunk, for chunk_drop(). */
static void *chunk_alloc(struct answer_cache *ac, size_t size, struct chunk **in)
{
    size = (size + 15) & ~(size_t)15;
    struct chunk *c = ac->last;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > CHUNK_BYTES - sizeof *c ? size : CHUNK_BYTES - sizeof *c;
        void *m = mmap(NULL, sizeof *c + cap, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        struct chunk *old = ac->last;
        c = m;
        c->next = NULL;
        c->used = 0;
        c->cap = cap;
        c->refs = 0;
        if (old)
            old->next = c;
        else
            ac->first = c;
        ac->last = c;
        ac->chunk_bytes += sizeof *c + cap;
        if (old && old->refs == 0) { /* emptied while it was the newest */
            old->refs = 1;
            chunk_drop(ac, old);
        }
    }
    void *p = c->data + c->used;
    c->used += size;
    c->refs++;
    *in = c;
    return p;
}

struct answer_cache *answer_cache_create(unsigned ttl_ms)
{
    struct answer_cache *ac = calloc(1, sizeof *ac);
    if (ac)
        ac->ttl_ms = ttl_ms;
    return ac;
}

static void text_free(struct answer_cache *ac, struct node *n)
{
    if (n->a.text) {
        ac->text_bytes -= n->a.len;
        chunk_drop(ac, n->text_in);
        n->a.text = NULL;
    }
}

static void node_free(struct answer_cache *ac, struct node *n)
{
    text_free(ac, n);
    chunk_drop(ac, n->in);
}

void answer_cache_destroy(struct answer_cache *ac)
{
    if (!ac)
        return;
    struct chunk *c = ac->first;
    while (c) {
        struct chunk *next = c->next;
        munmap(c, sizeof *c + c->cap);
        c = next;
    }
    free(ac->buckets);
    free(ac);
}

void answer_cache_set_ttl(struct answer_cache *ac, unsigned ttl_ms)
{
    ac->ttl_ms = ttl_ms;
}

static uint64_t fnv(uint64_t h, const char *s)
{
    if (s)
        for (; *s; s++)
            h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return (h ^ 0xff) * 0x100000001b3ULL; /* field separator */
}

uint64_t answer_key(enum answer_kind kind, const char *call_id, uint32_t cseq,
                    const char *tag, const char *branch)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    h = (h ^ (unsigned)kind) * 0x100000001b3ULL;
    h = (h ^ cseq) * 0x100000001b3ULL;
    h = fnv(h, call_id);
    h = fnv(h, tag);
    return fnv(h, branch);
}

static struct node **slot(const struct answer_cache *ac, uint64_t key)
{
    return &ac->buckets[(key ^ (key >> 29)) & (ac->nbuckets - 1)];
}

/* Double the buckets when entries outnumber them. */
static int grow(struct answer_cache *ac)
{
    if (ac->count < ac->nbuckets)
        return 0;
    size_t n = ac->nbuckets ? ac->nbuckets * 2 : 256;
    struct node **b = calloc(n, sizeof *b);
    if (!b)
        return ac->nbuckets ? 0 : -1; /* longer chains, still correct */
    struct node **old = ac->buckets;
    size_t oldn = ac->nbuckets;
    ac->buckets = b;
    ac->nbuckets = n;
    for (size_t i = 0; i < oldn; i++) {
        struct node *e = old[i];
        while (e) {
            struct node *next = e->chain;
            struct node **s = slot(ac, e->a.key);
            e->chain = *s;
            *s = e;
            e = next;
        }
    }
    free(old);
    return 0;
}

static struct node *find(const struct answer_cache *ac, uint64_t key)
{
    if (!ac->nbuckets)
        return NULL;
    for (struct node *e = *slot(ac, key); e; e = e->chain)
        if (e->a.key == key)
            return e;
    return NULL;
}

static void unchain(struct answer_cache *ac, struct node *n)
{
    for (struct node **p = slot(ac, n->a.key); *p; p = &(*p)->chain)
        if (*p == n) {
            *p = n->chain;
            return;
        }
}

size_t answer_expire(struct answer_cache *ac, uint64_t now_ms)
{
    size_t gone = 0;
    struct node *n;
    while ((n = ac->oldest) && now_ms - n->born_ms >= ac->ttl_ms) {
        ac->oldest = n->fifo;
        if (!ac->oldest)
            ac->youngest = NULL;
        unchain(ac, n);
        ac->count--;
        node_free(ac, n);
        gone++;
    }
    return gone;
}

int answer_put(struct answer_cache *ac, uint64_t now_ms, uint64_t key,
               enum answer_kind kind, int status, const char *text, size_t len)
{
    answer_expire(ac, now_ms);
    struct node *n = find(ac, key);
    bool fresh = !n;
    if (fresh) {
        struct chunk *in;
        if (grow(ac) < 0 || !(n = chunk_alloc(ac, sizeof *n, &in)))
            return -1;
        memset(n, 0, sizeof *n);
        n->in = in;
    } else {
        /* Replaced in place: it keeps its place in the FIFO (a little
         * earlier expiry than a new entry would get, never later). */
        text_free(ac, n);
    }
    char *copy = NULL;
    if (text && (copy = chunk_alloc(ac, len + 1, &n->text_in))) {
        memcpy(copy, text, len);
        copy[len] = '\0';
        ac->text_bytes += len;
    }
    n->a = (struct answer){
        .key = key, .kind = kind, .status = status, .text = copy, .len = copy ? len : 0};
    if (!fresh)
        return 0;
    n->born_ms = now_ms;
    struct node **s = slot(ac, key);
    n->chain = *s;
    *s = n;
    if (ac->youngest)
        ac->youngest->fifo = n;
    else
        ac->oldest = n;
    ac->youngest = n;
    ac->count++;
    return 0;
}

const struct answer *answer_get(struct answer_cache *ac, uint64_t now_ms, uint64_t key)
{
    answer_expire(ac, now_ms);
    struct node *n = find(ac, key);
    return n ? &n->a : NULL;
}

size_t answer_count(const struct answer_cache *ac)
{
    return ac->count;
}

size_t answer_bytes(const struct answer_cache *ac)
{
    return ac->chunk_bytes + ac->nbuckets * sizeof(struct node *);
}
