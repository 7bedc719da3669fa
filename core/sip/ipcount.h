/* ipcount: a counted set of IP addresses as text ("192.0.2.1", "2001:db8::1"),
 * for "is anything of ours at this address?" asked by the hot path (the
 * registrar's index of its bindings' source addresses, which the flood
 * module's trust check reads).
 *
 * Owns: a chained hash table and one entry per distinct address (about 40
 * bytes plus the text); the table doubles when it holds more entries than
 * buckets. Costs: add, del and count are O(1) expected (one FNV-1a hash of
 * the text and a short chain); the table's growth is O(entries) once per
 * doubling. Texts are copied; compared byte for byte (give them as
 * inet_ntop() writes them). Not thread-safe: the loop's thread. */
#ifndef MOON_SIP_IPCOUNT_H
#define MOON_SIP_IPCOUNT_H

#include <stddef.h>

struct ipcount;

/* NULL when out of memory. */
struct ipcount *ipcount_create(void);
void ipcount_destroy(struct ipcount *ic); /* NULL is a no-op */

/* One more use of the `len` bytes at `ip`. Returns 0, -EINVAL (empty or
 * longer than IPCOUNT_MAX) or -ENOMEM (nothing counted). */
#define IPCOUNT_MAX 63
int ipcount_add(struct ipcount *ic, const char *ip, size_t len);

/* One use less; the address goes at 0. An address not counted is a no-op. */
void ipcount_del(struct ipcount *ic, const char *ip, size_t len);

/* The uses of `ip` (a NUL-terminated text), 0 when none. */
unsigned ipcount_get(const struct ipcount *ic, const char *ip);

/* Distinct addresses counted. */
size_t ipcount_size(const struct ipcount *ic);

#endif
