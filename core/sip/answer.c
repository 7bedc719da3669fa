/* The answer cache: see answer.h. */
#include "sip/answer.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct node {
    struct answer a;
    struct node *fifo;  /* next younger entry */
    struct node *chain; /* next in its bucket */
    uint64_t born_ms;
};

struct answer_cache {
    unsigned ttl_ms;
    struct node *oldest, *youngest;
    struct node **buckets;
    size_t nbuckets; /* a power of 2, or 0 */
    size_t count;
    size_t text_bytes;
};

struct answer_cache *answer_cache_create(unsigned ttl_ms)
{
    struct answer_cache *ac = calloc(1, sizeof *ac);
    if (ac)
        ac->ttl_ms = ttl_ms;
    return ac;
}

static void node_free(struct answer_cache *ac, struct node *n)
{
    if (n->a.text) {
        ac->text_bytes -= n->a.len;
        free(n->a.text);
    }
    free(n);
}

void answer_cache_destroy(struct answer_cache *ac)
{
    if (!ac)
        return;
    struct node *n = ac->oldest;
    while (n) {
        struct node *next = n->fifo;
        node_free(ac, n);
        n = next;
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
    char *copy = NULL;
    if (text) {
        if (!(copy = malloc(len + 1)))
            return -1;
        memcpy(copy, text, len);
        copy[len] = '\0';
    }
    struct node *n = find(ac, key);
    if (n) {
        /* Replaced in place: it keeps its place in the FIFO (a little
         * earlier expiry than a new entry would get, never later). */
        if (n->a.text) {
            ac->text_bytes -= n->a.len;
            free(n->a.text);
        }
        n->a.kind = kind;
        n->a.status = status;
        n->a.text = copy;
        n->a.len = copy ? len : 0;
        ac->text_bytes += n->a.len;
        return 0;
    }
    if (grow(ac) < 0 || !(n = calloc(1, sizeof *n))) {
        free(copy);
        return -1;
    }
    n->a = (struct answer){
        .key = key, .kind = kind, .status = status, .text = copy, .len = copy ? len : 0};
    n->born_ms = now_ms;
    ac->text_bytes += n->a.len;
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
    /* Each entry is one malloc'd node (plus malloc's 16-byte header). */
    return ac->count * (sizeof(struct node) + 16) + ac->text_bytes +
           ac->nbuckets * sizeof(struct node *);
}
