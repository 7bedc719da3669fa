/* The switch's durable state: one LMDB environment in the data directory,
 * with one named database per kind of record.
 *
 * Writes are grouped: store_put()/store_del() stage into the write
 * transaction of the current loop turn, and a lowest-priority libevent event
 * commits it once the turn's other work is done (group commit). Anything that
 * is about to be acknowledged to the outside (a SIP 200, a REPL answer) calls
 * store_commit() first, so an acknowledged write survives kill -9: the
 * environment is opened without MDB_NOSYNC, so a commit is on disk when it
 * returns.
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
 * `base` at its lowest priority. Returns 0, or a negative errno / LMDB code
 * with the reason logged. */
int store_open(struct store **sp, struct event_base *base, const char *dir,
               size_t map_size);

/* Commit what is staged, then close. NULL is a no-op. */
void store_close(struct store *s);

/* Stage a write. Returns 0, -ENOSPC when the map is full (logged, and the
 * staged transaction of this turn is aborted: its earlier writes are lost and
 * so also reported), or another negative code. Keys over STORE_MAX_KEY give
 * -EINVAL. */
int store_put(struct store *s, enum store_db db, const void *key, size_t klen,
              uint8_t version, const void *val, size_t vlen);

/* Stage a delete. Returns 0, or -ENOENT when the key is absent. */
int store_del(struct store *s, enum store_db db, const void *key, size_t klen);

/* Read a value, seeing this turn's staged writes. On success *val is a
 * malloc'd copy of the payload (without the version byte; NUL-terminated for
 * convenience, the terminator not counted in *vlen). Returns 0 or -ENOENT. */
int store_get(struct store *s, enum store_db db, const void *key, size_t klen,
              uint8_t *version, void **val, size_t *vlen);

/* Visit every record of `db` in key order. Stop early when `fn` returns
 * non-zero, and return that value. Pointers are valid only during the call. */
typedef int store_visit_h(const void *key, size_t klen, uint8_t version,
                          const void *val, size_t vlen, void *arg);
int store_foreach(struct store *s, enum store_db db, store_visit_h *fn, void *arg);

/* Commit the staged transaction now. Returns 0 (also when nothing was
 * staged), -ENOSPC on map full, or another negative code; failures are
 * logged. */
int store_commit(struct store *s);

/* Number of records in a database, and bytes of the map in use. */
size_t store_count(struct store *s, enum store_db db);
size_t store_used_bytes(struct store *s);
const char *store_db_name(enum store_db db);

/* Big-endian u64, so byte order equals numeric order in keys. */
void store_key_u64(uint8_t out[8], uint64_t v);
uint64_t store_key_u64_read(const uint8_t in[8]);

#endif
