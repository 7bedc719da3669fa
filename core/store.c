/* The durable store: one LMDB environment, one named database per record kind.
 *
 * Writes are staged on the loop in a batch (copies of key and value) and
 * indexed in an overlay, a hash of the newest staged or in-flight write of
 * each key, which reads consult before LMDB. A batch goes to the writer
 * thread (store_writer.c) at the end of the turn it was started in, or when
 * the batch in flight is done; the overlay forgets a batch's writes once the
 * writer committed it, when LMDB's own read transaction shows them.
 *
 * Error codes: LMDB reports either a system errno (positive) or one of its own
 * MDB_* codes (already negative, -30799..-30780). We return -errno for the
 * first kind and the MDB_* code unchanged for the second, so every failure is
 * negative and mdb_strerror() still names it. Two codes are translated:
 * MDB_NOTFOUND becomes -ENOENT and MDB_MAP_FULL becomes -ENOSPC.
 *
 * Threads: the store belongs to the thread that runs its event base; only
 * the writer thread's hand-over locks (once per batch). */
#include "store.h"

#include "log.h"
#include "store_writer.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>
#include <lmdb.h>

#if SIZE_MAX > 0xffffffffu
#define STORE_DEFAULT_MAP ((size_t)4 << 30)
#else
#define STORE_DEFAULT_MAP ((size_t)1 << 30)
#endif

/* A batch goes to the writer at the end of the turn that started it (when
 * no batch is in flight), or when the batch before it is done; this
 * deadline is a safety net should higher-priority events hold the turn. */
#define STORE_COMMIT_DEADLINE_MS 5

struct store {
    MDB_env *env;
    MDB_dbi dbi[STORE_DB_COUNT];
    MDB_txn *rtxn;  /* cached read-only transaction, reset when idle */
    int rtxn_users; /* nested readers currently using rtxn */
    int iterating;  /* store_foreach calls in progress */
    struct store_writer *writer;
    struct staged_batch *staging;   /* writes not handed over yet, or NULL */
    struct staged_batch *in_flight; /* with the writer, or NULL */
    struct store_op **buckets;      /* the overlay: newest write per key */
    size_t nbuckets, noverlay;
    bool full;   /* the last commit found the map full */
    int sync_rc; /* the failure store_commit() reports */
    uint64_t commits, commit_us_total;
    struct event *commit_ev;   /* NULL when opened without an event base */
    struct event *deadline_ev; /* hands over STORE_COMMIT_DEADLINE_MS after staging */
    char *dir;
};

static const char *const db_names[STORE_DB_COUNT] = {
    [STORE_KV] = "kv",     [STORE_OUTREG] = "outreg",   [STORE_BINDINGS] = "bindings",
    [STORE_CDRS] = "cdrs", [STORE_SUSPEND] = "suspend",
};

const char *store_db_name(enum store_db db)
{
    if ((unsigned)db >= STORE_DB_COUNT)
        return "?";
    return db_names[db];
}

void store_key_u64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
}

uint64_t store_key_u64_read(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | in[i];
    return v;
}

static int mdb_code(int rc)
{
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    if (rc == MDB_MAP_FULL)
        return -ENOSPC;
    return rc > 0 ? -rc : rc;
}

static size_t map_size_of(struct store *s)
{
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) != 0)
        return 0;
    return info.me_mapsize;
}

/* Name the databases of bit set `dbs`, e.g. "kv,cdrs". */
static const char *db_list(unsigned dbs, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < STORE_DB_COUNT; i++) {
        if (!(dbs & (1u << i)))
            continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? "," : "", db_names[i]);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
    return buf;
}

static void log_map_full(struct store *s, unsigned dbs)
{
    char names[64];
    log_error("store",
              "map full committing to database %s: the %zu-byte map of %s is exhausted; "
              "the batch's writes are discarded, and writes refused until a commit "
              "succeeds. Free records or raise the store's map size",
              db_list(dbs, names, sizeof names), map_size_of(s), s->dir);
}

static int key_ok(struct store *s, enum store_db db, const void *key, size_t klen)
{
    return s && (unsigned)db < STORE_DB_COUNT && key && klen > 0 && klen <= STORE_MAX_KEY;
}

/* mkdir -p with mode 0700 for the directories it creates. Existing
 * directories keep their mode. Returns 0 or -errno. */
static int mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof path)
        return -ENAMETOOLONG;
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        return -errno;
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

static void commit_cb(evutil_socket_t fd, short what, void *arg);
static void batch_done(struct store_batch *b, void *arg);

/* Costs: a mkdir per missing path component, one mmap of map_size (sparse,
 * address space only), and one write transaction to create the databases,
 * which syncs. Fails with the reason logged: -errno for the directory or
 * LMDB system errors, an MDB_* code otherwise, -ENOMEM. On failure nothing is
 * left open and *sp is NULL. The store copies `dir`; `base` must outlive the
 * store. A NULL base is allowed for tools: then nothing commits by itself and
 * the caller must call store_commit(). */
int store_open(struct store **sp, struct event_base *base, const char *dir,
               size_t map_size)
{
    *sp = NULL;
    if (!dir || !*dir)
        return -EINVAL;
    int rc = mkdir_p(dir);
    if (rc < 0) {
        log_error("store", "cannot create data directory %s: %s", dir, strerror(-rc));
        return rc;
    }
    struct store *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        log_error("store", "out of memory opening %s", dir);
        return -ENOMEM;
    }
    if (map_size == 0)
        map_size = STORE_DEFAULT_MAP;

    MDB_txn *txn = NULL;
    const char *step = "mdb_env_create";
    rc = mdb_env_create(&s->env);
    if (rc == 0) {
        step = "mdb_env_set_maxdbs";
        rc = mdb_env_set_maxdbs(s->env, STORE_DB_COUNT + 2);
    }
    if (rc == 0) {
        step = "mdb_env_set_mapsize";
        rc = mdb_env_set_mapsize(s->env, map_size);
    }
    if (rc == 0) {
        step = "mdb_env_open";
        rc = mdb_env_open(s->env, dir, 0, 0600);
    }
    if (rc == 0) {
        step = "mdb_txn_begin";
        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    }
    for (int i = 0; rc == 0 && i < STORE_DB_COUNT; i++) {
        step = db_names[i];
        rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &s->dbi[i]);
    }
    if (rc == 0) {
        step = "mdb_txn_commit";
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc == 0) {
        step = "mdb_txn_begin (read)";
        rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn);
        if (rc == 0)
            mdb_txn_reset(s->rtxn);
    }
    if (rc != 0) {
        log_error("store", "cannot open store in %s (%s): %s", dir, step,
                  mdb_strerror(rc));
        if (txn)
            mdb_txn_abort(txn);
        if (s->env)
            mdb_env_close(s->env);
        free(s->dir);
        free(s);
        return mdb_code(rc);
    }

    if (base) {
        /* The hand-over keeps the default priority, the sockets' one: made
         * active by a turn's first write, it runs after the events already
         * active in that turn and before the next poll, so a batch holds a
         * turn's writes and never waits behind sockets that stay busy. (At
         * the lowest priority it would wait for the deadline under load, and
         * a closed loop of REGISTERs would pay that wait for each batch.) */
        s->commit_ev = event_new(base, -1, 0, commit_cb, s);
        s->deadline_ev = evtimer_new(base, commit_cb, s);
        if (!s->commit_ev || !s->deadline_ev) {
            log_error("store", "cannot create the commit event for %s", dir);
            store_close(s); /* frees commit_ev too */
            return -ENOMEM;
        }
    }
    rc = store_writer_start(&s->writer, s->env, s->dbi, base, batch_done, s);
    if (rc < 0) {
        log_error("store", "cannot start the writer thread for %s: %s", dir,
                  strerror(-rc));
        store_close(s);
        return rc;
    }
    log_info("store", "opened %s, map %zu bytes, %zu bytes in use", dir, map_size_of(s),
             store_used_bytes(s));
    *sp = s;
    return 0;
}

/* Costs: the commit (an fsync of data and meta pages) when something is staged,
 * joining the writer thread, then unmapping. Commit failures are logged and
 * the staged writes lost. */
void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->writer) {
        store_commit(s);
        store_writer_stop(s->writer);
    }
    free(s->buckets);
    if (s->commit_ev)
        event_free(s->commit_ev);
    if (s->deadline_ev)
        event_free(s->deadline_ev);
    if (s->rtxn)
        mdb_txn_abort(s->rtxn);
    for (int i = 0; i < STORE_DB_COUNT; i++)
        mdb_dbi_close(s->env, s->dbi[i]);
    mdb_env_close(s->env);
    free(s->dir);
    free(s);
}

/* A transaction to read committed records from: the cached read-only
 * transaction, renewed (no allocation). Pair with read_done(). Returns 0 or
 * a negative code (logged). */
static int read_txn(struct store *s, MDB_txn **txn)
{
    if (s->rtxn_users == 0) {
        int rc = mdb_txn_renew(s->rtxn);
        if (rc != 0) {
            log_error("store", "cannot begin a read transaction in %s: %s", s->dir,
                      mdb_strerror(rc));
            return mdb_code(rc);
        }
    }
    s->rtxn_users++;
    *txn = s->rtxn;
    return 0;
}

static void read_done(struct store *s, MDB_txn *txn)
{
    if (txn == s->rtxn && --s->rtxn_users == 0)
        mdb_txn_reset(s->rtxn);
}

/* ---- Staged writes --------------------------------------------------------------- */

/* Ops live in chunks owned by their batch, freed with it: one malloc per
 * STORE_CHUNK bytes of writes rather than one per write. */
#define STORE_CHUNK 16384

struct store_chunk {
    struct store_chunk *next;
    size_t used, size;
    _Alignas(max_align_t) uint8_t mem[];
};

/* A batch with its chunk list; store_writer.h's struct is what the thread
 * sees, this wrapper what only the loop touches. */
struct staged_batch {
    struct store_batch b;
    struct store_chunk *chunks;
};

static struct staged_batch *batch_of(struct store_batch *b)
{
    return (struct staged_batch *)((char *)b - offsetof(struct staged_batch, b));
}

static void *batch_alloc(struct staged_batch *sb, size_t n)
{
    n = (n + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
    struct store_chunk *c = sb->chunks;
    if (!c || c->size - c->used < n) {
        size_t size = n > STORE_CHUNK / 2 ? n : STORE_CHUNK;
        c = malloc(sizeof *c + size);
        if (!c)
            return NULL;
        c->used = 0;
        c->size = size;
        /* A big op gets a chunk of its own behind the current one, so the
         * current one keeps filling. */
        if (size > STORE_CHUNK && sb->chunks) {
            c->next = sb->chunks->next;
            sb->chunks->next = c;
        } else {
            c->next = sb->chunks;
            sb->chunks = c;
        }
    }
    void *p = c->mem + c->used;
    c->used += n;
    return p;
}

static void batch_free(struct staged_batch *sb)
{
    while (sb->chunks) {
        struct store_chunk *next = sb->chunks->next;
        free(sb->chunks);
        sb->chunks = next;
    }
    while (sb->b.waiters) {
        struct store_waiter *next = sb->b.waiters->next;
        free(sb->b.waiters);
        sb->b.waiters = next;
    }
    free(sb);
}

/* FNV-1a over the database number and the key. */
static uint32_t key_hash(enum store_db db, const void *key, size_t klen)
{
    uint32_t h = 2166136261u ^ (uint32_t)db;
    const uint8_t *p = key;
    for (size_t i = 0; i < klen; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* The newest staged or in-flight write of a key, or NULL. O(1) expected. */
static struct store_op *overlay_find(struct store *s, enum store_db db, const void *key,
                                     size_t klen, uint32_t hash)
{
    if (!s->noverlay)
        return NULL;
    for (struct store_op *op = s->buckets[hash & (s->nbuckets - 1)]; op; op = op->chain)
        if (op->hash == hash && op->db == db && op->klen == klen &&
            memcmp(op->rec, key, klen) == 0)
            return op;
    return NULL;
}

static void overlay_unlink(struct store *s, struct store_op *op)
{
    struct store_op **pp = &s->buckets[op->hash & (s->nbuckets - 1)];
    while (*pp && *pp != op)
        pp = &(*pp)->chain;
    if (*pp)
        *pp = op->chain;
    op->in_overlay = 0;
    s->noverlay--;
}

/* Double the buckets when the overlay holds more ops than buckets. Returns
 * 0 or -ENOMEM (then the table keeps its size, only slower). */
static int overlay_grow(struct store *s)
{
    size_t n = s->nbuckets ? s->nbuckets * 2 : 1024;
    struct store_op **b = calloc(n, sizeof *b);
    if (!b)
        return s->nbuckets ? 0 : -ENOMEM;
    for (size_t i = 0; i < s->nbuckets; i++) {
        struct store_op *op = s->buckets[i];
        while (op) {
            struct store_op *next = op->chain;
            op->chain = b[op->hash & (n - 1)];
            b[op->hash & (n - 1)] = op;
            op = next;
        }
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
    return 0;
}

/* Make `op` the newest write of its key. */
static int overlay_insert(struct store *s, struct store_op *op)
{
    if (s->noverlay >= s->nbuckets && overlay_grow(s) < 0)
        return -ENOMEM;
    struct store_op *old = overlay_find(s, op->db, op->rec, op->klen, op->hash);
    if (old)
        overlay_unlink(s, old);
    struct store_op **head = &s->buckets[op->hash & (s->nbuckets - 1)];
    op->chain = *head;
    *head = op;
    op->in_overlay = 1;
    s->noverlay++;
    return 0;
}

/* The batch being staged, made on first use; making it schedules its hand
 * over: at the end of the turn, and at the latest after
 * STORE_COMMIT_DEADLINE_MS. NULL on -ENOMEM. */
static struct staged_batch *staging(struct store *s)
{
    if (s->staging)
        return s->staging;
    struct staged_batch *sb = calloc(1, sizeof *sb);
    if (!sb)
        return NULL;
    sb->b.tail = &sb->b.ops;
    s->staging = sb;
    if (s->commit_ev)
        event_active(s->commit_ev, 0, 0);
    if (s->deadline_ev) {
        struct timeval tv = {0, STORE_COMMIT_DEADLINE_MS * 1000};
        event_add(s->deadline_ev, &tv);
    }
    return sb;
}

/* Stage one write. Costs: a hash, a copy of key and value into the batch's
 * chunk (a malloc per STORE_CHUNK bytes), an overlay insert. */
static int stage(struct store *s, enum store_db db, const void *key, size_t klen,
                 bool del, uint8_t version, const void *val, size_t vlen)
{
    struct staged_batch *sb = staging(s);
    size_t rec = klen + (del ? 0 : 1 + vlen);
    struct store_op *op = sb ? batch_alloc(sb, sizeof *op + rec) : NULL;
    if (!op) {
        log_error("store", "out of memory staging a write to database \"%s\" of %s",
                  db_names[db], s->dir);
        return -ENOMEM;
    }
    memset(op, 0, sizeof *op);
    op->batch = &sb->b;
    op->hash = key_hash(db, key, klen);
    op->db = (uint8_t)db;
    op->del = del;
    op->klen = (uint16_t)klen;
    memcpy(op->rec, key, klen);
    if (!del) {
        op->vlen = (uint32_t)(vlen + 1);
        op->rec[klen] = version;
        if (vlen)
            memcpy(op->rec + klen + 1, val, vlen);
    }
    if (overlay_insert(s, op) < 0) {
        log_error("store", "out of memory staging a write to database \"%s\" of %s",
                  db_names[db], s->dir);
        return -ENOMEM;
    }
    *sb->b.tail = op;
    sb->b.tail = &op->next;
    sb->b.nops++;
    sb->b.dbs |= 1u << db;
    return 0;
}

/* ---- Commits --------------------------------------------------------------------- */

static void submit(struct store *s)
{
    if (s->deadline_ev)
        event_del(s->deadline_ev);
    s->in_flight = s->staging;
    s->staging = NULL;
    store_writer_submit(s->writer, &s->in_flight->b);
}

/* Hand over what is staged unless a batch is in flight (then it goes when
 * that one is done). */
static void kick(struct store *s)
{
    if (s->staging && !s->in_flight)
        submit(s);
}

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kick(arg);
}

/* The writer finished `b`, on the loop: its ops leave the overlay (reads go
 * to LMDB again, or to a newer staged write), the next batch goes, then the
 * waiters learn the outcome. */
static void batch_done(struct store_batch *b, void *arg)
{
    struct store *s = arg;
    struct staged_batch *sb = batch_of(b);
    s->in_flight = NULL;
    s->commits++;
    s->commit_us_total += (uint64_t)b->commit_us;
    int rc = 0;
    if (b->rc == MDB_MAP_FULL) {
        log_map_full(s, b->dbs);
        rc = -ENOSPC;
    } else if (b->rc != 0) {
        log_error("store",
                  "commit in %s failed (database \"%s\"): %s; %zu staged writes "
                  "are lost",
                  s->dir, b->failed_db >= 0 ? db_names[b->failed_db] : "?",
                  mdb_strerror(b->rc), b->nops);
        rc = mdb_code(b->rc);
    }
    if (b->ops)
        s->full = rc == -ENOSPC;
    if (rc != 0)
        s->sync_rc = rc;
    for (struct store_op *op = b->ops; op; op = op->next)
        if (op->in_overlay)
            overlay_unlink(s, op);
    kick(s);
    for (struct store_waiter *w = b->waiters; w; w = w->next)
        w->fn(w->arg, rc);
    batch_free(sb);
}

/* ---- Writes ---------------------------------------------------------------------- */

/* What a put or a delete checks first. */
static int write_check(struct store *s, enum store_db db, const void *key, size_t klen)
{
    if (!key_ok(s, db, key, klen))
        return -EINVAL;
    if (s->iterating)
        return -EBUSY;
    return 0;
}

/* Costs: see stage(); no syscall. Fails with -EINVAL for a bad key or
 * database, -EBUSY inside store_foreach(), -ENOSPC while the map is full
 * (the last commit found it full; deletes still go through, and a
 * successful commit ends it), -ENOMEM. The caller keeps key and val. */
int store_put(struct store *s, enum store_db db, const void *key, size_t klen,
              uint8_t version, const void *val, size_t vlen)
{
    if ((vlen && !val) || vlen >= UINT32_MAX)
        return -EINVAL;
    int rc = write_check(s, db, key, klen);
    if (rc < 0)
        return rc;
    if (s->full)
        return -ENOSPC;
    return stage(s, db, key, klen, false, version, val, vlen);
}

/* Costs: a lookup (overlay, else a B-tree read) to answer -ENOENT for an
 * absent key, then see stage(). */
int store_del(struct store *s, enum store_db db, const void *key, size_t klen)
{
    int rc = write_check(s, db, key, klen);
    if (rc < 0)
        return rc;
    struct store_op *op = overlay_find(s, db, key, klen, key_hash(db, key, klen));
    if (op && op->del)
        return -ENOENT;
    if (!op) {
        MDB_txn *txn;
        rc = read_txn(s, &txn);
        if (rc < 0)
            return rc;
        MDB_val k = {.mv_size = klen, .mv_data = (void *)key}, v;
        rc = mdb_get(txn, s->dbi[db], &k, &v);
        read_done(s, txn);
        if (rc == MDB_NOTFOUND)
            return -ENOENT;
        if (rc != 0)
            return mdb_code(rc);
    }
    return stage(s, db, key, klen, true, 0, NULL, 0);
}

/* Whether writes to `db` are staged or in flight. */
static bool pending_in(const struct store *s, enum store_db db)
{
    return (s->staging && (s->staging->b.dbs & (1u << db))) ||
           (s->in_flight && (s->in_flight->b.dbs & (1u << db)));
}

void store_commit_stats(struct store *s, uint64_t *commits, uint64_t *commit_us)
{
    *commits = s ? s->commits : 0;
    *commit_us = s ? s->commit_us_total : 0;
}

int store_when_durable(struct store *s, store_durable_h *fn, void *arg)
{
    struct store_waiter *w = malloc(sizeof *w);
    /* Everything staged so far is in the staging batch, or (nothing staged
     * since) in the one in flight. */
    struct store_batch *b = s->staging     ? &s->staging->b
                            : s->in_flight ? &s->in_flight->b
                                           : NULL;
    if (w && !b) {
        struct staged_batch *sb = staging(s); /* empty: a commit of nothing */
        b = sb ? &sb->b : NULL;
    }
    if (!w || !b) {
        free(w);
        return -ENOMEM;
    }
    w->fn = fn;
    w->arg = arg;
    w->next = NULL;
    struct store_waiter **pp = &b->waiters; /* in order: a handful per batch */
    while (*pp)
        pp = &(*pp)->next;
    *pp = w;
    return 0;
}

/* Costs: a B-tree lookup and one malloc of vlen+1 for the copy, which the
 * caller frees. Fails with -ENOENT, -EINVAL for a bad key, -ENOMEM, -EIO for a
 * record too short to hold its version byte (logged). */
int store_get(struct store *s, enum store_db db, const void *key, size_t klen,
              uint8_t *version, void **val, size_t *vlen)
{
    *val = NULL;
    *vlen = 0;
    if (!key_ok(s, db, key, klen))
        return -EINVAL;
    struct store_op *op = overlay_find(s, db, key, klen, key_hash(db, key, klen));
    if (op) {
        if (op->del)
            return -ENOENT;
        size_t n = op->vlen - 1;
        char *copy = malloc(n + 1);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, op->rec + op->klen + 1, n);
        copy[n] = '\0';
        if (version)
            *version = op->rec[op->klen];
        *val = copy;
        *vlen = n;
        return 0;
    }
    MDB_txn *txn;
    int rc = read_txn(s, &txn);
    if (rc < 0)
        return rc;
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    MDB_val v;
    rc = mdb_get(txn, s->dbi[db], &k, &v);
    if (rc == 0 && v.mv_size == 0) {
        log_error("store", "empty record in database \"%s\" of %s", db_names[db], s->dir);
        rc = -EIO;
    } else if (rc == 0) {
        size_t n = v.mv_size - 1;
        char *copy = malloc(n + 1);
        if (!copy) {
            rc = -ENOMEM;
        } else {
            memcpy(copy, (const uint8_t *)v.mv_data + 1, n);
            copy[n] = '\0';
            if (version)
                *version = *(const uint8_t *)v.mv_data;
            *val = copy;
            *vlen = n;
        }
    } else {
        if (rc != MDB_NOTFOUND)
            log_error("store", "read from database \"%s\" in %s failed: %s", db_names[db],
                      s->dir, mdb_strerror(rc));
        rc = mdb_code(rc);
    }
    read_done(s, txn);
    return rc;
}

/* Costs: one cursor (LMDB allocates it) and a step per record. `fn` may read
 * the store (store_get, store_count, nested store_foreach) but must not write
 * or commit: store_put, store_del and store_commit return -EBUSY while a visit
 * is in progress, because the cursor lives in the transaction they would
 * change. Returns fn's first non-zero value, 0 after the last record, or a
 * negative code from LMDB (logged). Records too short to hold a version byte
 * are logged and skipped. */
int store_foreach(struct store *s, enum store_db db, store_visit_h *fn, void *arg)
{
    if (!s || (unsigned)db >= STORE_DB_COUNT || !fn)
        return -EINVAL;
    if (pending_in(s, db))
        store_commit(s); /* LMDB's cursor sees committed records only */
    MDB_txn *txn;
    int rc = read_txn(s, &txn);
    if (rc < 0)
        return rc;
    MDB_cursor *cur;
    rc = mdb_cursor_open(txn, s->dbi[db], &cur);
    if (rc != 0) {
        log_error("store", "cannot open a cursor on database \"%s\" in %s: %s",
                  db_names[db], s->dir, mdb_strerror(rc));
        read_done(s, txn);
        return mdb_code(rc);
    }
    s->iterating++;
    MDB_val k, v;
    int ret = 0;
    MDB_cursor_op op = MDB_FIRST;
    while ((rc = mdb_cursor_get(cur, &k, &v, op)) == 0) {
        op = MDB_NEXT;
        if (v.mv_size == 0) {
            log_warn("store", "skipping an empty record in database \"%s\" of %s",
                     db_names[db], s->dir);
            continue;
        }
        const uint8_t *p = v.mv_data;
        ret = fn(k.mv_data, k.mv_size, p[0], p + 1, v.mv_size - 1, arg);
        if (ret != 0)
            break;
    }
    if (ret == 0 && rc != MDB_NOTFOUND) {
        log_error("store", "walking database \"%s\" in %s failed: %s", db_names[db],
                  s->dir, mdb_strerror(rc));
        ret = mdb_code(rc);
    }
    s->iterating--;
    mdb_cursor_close(cur);
    read_done(s, txn);
    return ret;
}

/* Costs: when something is staged or in flight, waiting for the writer:
 * its B-tree work, the writes and two fsyncs per batch; nothing otherwise.
 * Everything staged before the call is durable when this returns 0. On
 * failure (-ENOSPC for map full, another negative code otherwise; logged)
 * the failed batch's writes are lost. -EBUSY inside store_foreach(), with
 * nothing done. */
int store_commit(struct store *s)
{
    if (!s || !s->writer)
        return 0;
    if (s->iterating)
        return -EBUSY;
    s->sync_rc = 0;
    while (s->in_flight || s->staging) {
        kick(s);
        store_writer_wait(s->writer);
    }
    return s->sync_rc;
}

size_t store_count(struct store *s, enum store_db db)
{
    if (!s || (unsigned)db >= STORE_DB_COUNT)
        return 0;
    if (pending_in(s, db) && !s->iterating)
        store_commit(s); /* LMDB counts committed records only */
    MDB_txn *txn;
    if (read_txn(s, &txn) < 0)
        return 0;
    MDB_stat st;
    int rc = mdb_stat(txn, s->dbi[db], &st);
    read_done(s, txn);
    return rc == 0 ? st.ms_entries : 0;
}

/* Pages up to the last one used by the last commit, times the page size. */
size_t store_used_bytes(struct store *s)
{
    if (!s)
        return 0;
    MDB_envinfo info;
    MDB_stat st;
    if (mdb_env_info(s->env, &info) != 0 || mdb_env_stat(s->env, &st) != 0)
        return 0;
    return ((size_t)info.me_last_pgno + 1) * st.ms_psize;
}
