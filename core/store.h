/* The switch's durable state: one LMDB environment in the data directory,
 * with one named database per kind of record.
 *
 * Writes are grouped and committed off the loop: store_put()/store_del()
 * stage a copy on the loop (reads see it at once), and a writer thread
 * commits each batch in one LMDB transaction, synced (the environment is
 * opened without MDB_NOSYNC). A batch is handed over when the turn that
 * started it is done, or when the batch before it is on disk: while the disk
 * syncs one batch the loop fills the next (group commit), and the loop never
 * waits for the disk unless it asks to.
 *
 * Anything that is about to be acknowledged to the outside (a SIP 200, a
 * REPL answer) waits for its writes first: store_when_durable() calls back
 * on the loop once they are on disk, store_commit() blocks until then. So
 * an acknowledged write survives kill -9 and a power cut.
 *
 * Every value starts with a version byte that says how to read the rest;
 * store_get() hands it back separately.
 *
 * Ownership: values returned by store_get() are malloc'd copies owned by the
 * caller (LMDB's own pointers die with the transaction). */
#ifndef MOON_STORE_H
#define MOON_STORE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;

enum store_db {
    STORE_KV,       /* key-value pairs written by policies (kv.put) */
    STORE_OUTREG,   /* outbound registration state: Call-ID, CSeq */
    STORE_BINDINGS, /* endpoint registrations */
    STORE_CDRS,     /* call detail records, key = big-endian u64 sequence */
    STORE_SUSPEND,  /* suspended accounts and sources */
    STORE_DB_COUNT
};

/* LMDB keys stop at 511 bytes. */
#define STORE_MAX_KEY 511

/* Open (creating if missing) the environment in `dir`, with a sparse map of
 * `map_size` bytes (0: the default, 4 GiB). The commit event is created on
 * `base` at its default priority. Returns 0, or a negative errno / LMDB code
 * with the reason logged. */
int store_open(struct store **sp, struct event_base *base, const char *dir,
               size_t map_size);

/* Commit what is staged, then close. NULL is a no-op. */
void store_close(struct store *s);

/* Stage a write. Returns 0, -ENOSPC while the map is full (the last commit
 * failed for it: that batch's writes were lost and logged; deletes still go
 * through and the first successful commit ends it), or another negative
 * code. Keys over STORE_MAX_KEY give -EINVAL. Whether the map has room is
 * known at the commit: a put that fills it returns 0, and its batch fails. */
int store_put(struct store *s, enum store_db db, const void *key, size_t klen,
              uint8_t version, const void *val, size_t vlen);

/* Stage a delete. Returns 0, or -ENOENT when the key is absent. */
int store_del(struct store *s, enum store_db db, const void *key, size_t klen);

/* Read a value, seeing this turn's staged writes. On success *val is a
 * malloc'd copy of the payload (without the version byte; NUL-terminated for
 * convenience, the terminator not counted in *vlen). Returns 0 or -ENOENT. */
int store_get(struct store *s, enum store_db db, const void *key, size_t klen,
              uint8_t *version, void **val, size_t *vlen);

/* Visit every record of `db` in key order (after waiting for the commit of
 * what is staged in it). Stop early when `fn` returns
 * non-zero, and return that value. Pointers are valid only during the call. */
typedef int store_visit_h(const void *key, size_t klen, uint8_t version,
                          const void *val, size_t vlen, void *arg);
int store_foreach(struct store *s, enum store_db db, store_visit_h *fn, void *arg);

/* Block until every write staged so far is committed. Returns 0 (also when
 * nothing was staged), -ENOSPC on map full, or another negative code;
 * failures are logged. For the loop's hot paths, store_when_durable(). */
int store_commit(struct store *s);

/* Call fn(arg, rc) on the loop once every write staged so far is on disk
 * (rc 0) or its batch failed (rc -ENOSPC or another negative code, logged).
 * Never calls fn before returning. Costs one small malloc. Returns 0 or
 * -ENOMEM (then fn is never called). With a store opened without an event
 * base, fn runs inside a later store_commit(). */
typedef void store_durable_h(void *arg, int rc);
int store_when_durable(struct store *s, store_durable_h *fn, void *arg);

/* Batches committed so far, and the microseconds the writer spent on them
 * (its B-tree work, writes and fsyncs). */
void store_commit_stats(struct store *s, uint64_t *commits, uint64_t *commit_us);

/* Number of records in a database (waits for the commit of what is
 * staged in it, as store_foreach() does), and bytes of the map in use. */
size_t store_count(struct store *s, enum store_db db);
size_t store_used_bytes(struct store *s);
const char *store_db_name(enum store_db db);

/* Big-endian u64, so byte order equals numeric order in keys. */
void store_key_u64(uint8_t out[8], uint64_t v);
uint64_t store_key_u64_read(const uint8_t in[8]);

#endif
