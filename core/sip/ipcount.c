/* The counted set of IP texts: see ipcount.h. */
#include "sip/ipcount.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct entry *next;
    uint64_t hash;
    unsigned count;
    unsigned char len;
    char ip[];
};

struct ipcount {
    struct entry **buckets;
    size_t nbuckets; /* a power of 2 */
    size_t n;
};

#define IPCOUNT_FIRST_BUCKETS 64

static uint64_t hash_of(const char *ip, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)ip[i]) * 1099511628211ULL;
    return h;
}

struct ipcount *ipcount_create(void)
{
    struct ipcount *ic = calloc(1, sizeof *ic);
    if (!ic)
        return NULL;
    ic->buckets = calloc(IPCOUNT_FIRST_BUCKETS, sizeof *ic->buckets);
    if (!ic->buckets) {
        free(ic);
        return NULL;
    }
    ic->nbuckets = IPCOUNT_FIRST_BUCKETS;
    return ic;
}

void ipcount_destroy(struct ipcount *ic)
{
    if (!ic)
        return;
    for (size_t i = 0; i < ic->nbuckets; i++)
        for (struct entry *e = ic->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e);
        }
    free(ic->buckets);
    free(ic);
}

/* The link that points at the entry of ip, or at the end of its chain. */
static struct entry **slot(const struct ipcount *ic, const char *ip, size_t len,
                           uint64_t h)
{
    struct entry **p = &ic->buckets[h & (ic->nbuckets - 1)];
    while (*p && !((*p)->hash == h && (*p)->len == len && memcmp((*p)->ip, ip, len) == 0))
        p = &(*p)->next;
    return p;
}

/* Twice the buckets; on failure the table stays as it is (only slower). */
static void grow(struct ipcount *ic)
{
    size_t n = ic->nbuckets * 2;
    struct entry **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (size_t i = 0; i < ic->nbuckets; i++)
        for (struct entry *e = ic->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(ic->buckets);
    ic->buckets = b;
    ic->nbuckets = n;
}

int ipcount_add(struct ipcount *ic, const char *ip, size_t len)
{
    if (len == 0 || len > IPCOUNT_MAX)
        return -EINVAL;
    uint64_t h = hash_of(ip, len);
    struct entry **p = slot(ic, ip, len, h);
    if (*p) {
        (*p)->count++;
        return 0;
    }
    struct entry *e = malloc(sizeof *e + len + 1);
    if (!e)
        return -ENOMEM;
    e->next = NULL;
    e->hash = h;
    e->count = 1;
    e->len = (unsigned char)len;
    memcpy(e->ip, ip, len);
    e->ip[len] = '\0';
    *p = e;
    if (++ic->n > ic->nbuckets)
        grow(ic);
    return 0;
}

void ipcount_del(struct ipcount *ic, const char *ip, size_t len)
{
    if (len == 0 || len > IPCOUNT_MAX)
        return;
    struct entry **p = slot(ic, ip, len, hash_of(ip, len));
    struct entry *e = *p;
    if (!e || --e->count > 0)
        return;
    *p = e->next;
    free(e);
    ic->n--;
}

unsigned ipcount_get(const struct ipcount *ic, const char *ip)
{
    size_t len = strlen(ip);
    if (len == 0 || len > IPCOUNT_MAX)
        return 0;
    struct entry *e = *slot(ic, ip, len, hash_of(ip, len));
    return e ? e->count : 0;
}

size_t ipcount_size(const struct ipcount *ic)
{
    return ic->n;
}
