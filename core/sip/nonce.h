/* Nonce-count tracking for the registrar's digest nonces (RFC 7616 3.4.5):
 * the highest nc seen for each nonce in use, so a request replayed with a
 * nonce-count already seen is refused.
 *
 * Nonces are stateless (see digest_nonce_make), so this table is only a
 * memory of the nonces that were answered, bounded to a fixed number of
 * entries allocated up front (24 bytes each plus 4 of index). When it is
 * full the oldest-used entry is forgotten, and the table remembers the
 * newest issue time it has forgotten (the watermark): a nonce it does not
 * know and that was issued at or before the watermark may have been used
 * already, so it is reported as forgotten and the caller answers it as
 * stale (the client simply retries with a fresh nonce). A nonce issued
 * after the watermark and never seen is new. Nothing is ever accepted twice.
 *
 * Not thread-safe; belongs to the loop's thread. */
#ifndef MOON_SIP_NONCE_H
#define MOON_SIP_NONCE_H

struct nctrack;

enum nctrack_verdict {
    NCTRACK_OK,        /* a nonce-count higher than any seen for this nonce */
    NCTRACK_REPLAY,    /* this nonce-count, or a higher one, was seen */
    NCTRACK_FORGOTTEN, /* cannot tell: the nonce may have been used and forgotten */
};

/* A table of `capacity` entries (rounded up to a power of two, at least 16).
 * Nonces issued at or before `since` (any clock, the same as the issue times
 * given to nctrack_use; say the start time in milliseconds: nonces of an
 * earlier run may have been used) count as forgotten. Returns
 * NULL when out of memory. */
struct nctrack *nctrack_create(unsigned capacity, long long since);
void nctrack_destroy(struct nctrack *t);

/* Record the use of nonce `id` (issued at `issued`) with nonce-count `nc`.
 * O(1) on average. */
enum nctrack_verdict nctrack_use(struct nctrack *t, unsigned long long id,
                                 long long issued, unsigned long nc);

/* Entries in use, for stats. */
unsigned nctrack_count(const struct nctrack *t);

#endif
