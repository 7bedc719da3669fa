/* Call detail records: one per call, written to the store when the call
 * ends.
 *
 * Keys are big-endian u64 sequence numbers from 1, so LMDB's order is the
 * order calls ended. Key 0 holds the last sequence used, which makes "the
 * newest n" n direct reads instead of a scan of the whole table.
 *
 * Value (version 2): the fields as text, each terminated by NUL, in the
 * order of struct cdr below; numbers in decimal, an absent answer time as
 * "". Text so that a record stays readable with mdb_dump and a new field is
 * a new version, not a migration: version 1 ends before `direction` (its
 * calls were all outbound).
 *
 * Durability: cdr_write() stages the record in the loop turn's write
 * transaction, whose group commit runs at the end of that turn; the record
 * is on disk milliseconds after the call ends, whatever happens to the
 * process afterwards (kill -9). Nothing waits for it: a CDR is not
 * acknowledged to anyone, so the fsync is shared by every call that ended
 * in the same turn. */
#ifndef MOON_CDR_H
#define MOON_CDR_H

#include <stddef.h>
#include <stdint.h>

struct store;

#define CDR_FIELD_MAX 128

struct cdr {
    uint64_t seq; /* filled by cdr_write() and cdr_read() */
    char call_id[CDR_FIELD_MAX]; /* the caller's Call-ID */
    char caller[CDR_FIELD_MAX];
    char callee[CDR_FIELD_MAX];          /* routed on: the caller's, or route()'s */
    char original_callee[CDR_FIELD_MAX]; /* the number as the caller sent it */
    char routed_callee[CDR_FIELD_MAX];   /* after the gateway's callee_rewrite; "" */
    char mapping_gateway[CDR_FIELD_MAX]; /* the gateway the call came through */
    char routing_gateway[CDR_FIELD_MAX]; /* the last one tried; "" when none */
    long long start, answer, stop;       /* unix seconds; answer 0: never */
    long long duration;                  /* seconds answered, 0 if never */
    int status;                          /* final status the caller saw */
    char reason[CDR_FIELD_MAX];
    char hangup[16];                     /* "caller", "callee", "switch" */
    char direction[12];                  /* "outbound", "inbound" (from a routing
                                            gateway) */
};

/* Stage `c` under the next sequence number (written into c->seq). Returns
 * 0, or a negative store error (logged). `store` may be NULL: no-op. */
int cdr_write(struct store *store, struct cdr *c);

/* The last sequence number written, 0 when there are none. */
uint64_t cdr_last_seq(struct store *store);

/* Read record `seq`. Returns 0 or -ENOENT. */
int cdr_read(struct store *store, uint64_t seq, struct cdr *out);

/* The call's one info line, at its end, with the record's fields as
 * key=value (values quoted when empty or holding spaces, quotes or '='):
 *   12 ended: status=200 reason=OK hangup=caller duration=58 caller=4420...
 *     callee=... routed_callee=... mapping_gateway=... routing_gateway=...
 *     start=... answer=... stop=... call_id=...
 * `call` is the call's id (what `calls` shows). Nothing below --log-level
 * info; otherwise one formatting pass into the log's buffer (under a
 * microsecond, bench/micro.c) and no system call of its own. */
void cdr_log(const struct cdr *c, uint64_t call);

#endif
