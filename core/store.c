/* The durable store: one LMDB environment, one named database per record kind,
 * and a group commit driven by a lowest-priority libevent event.
 *
 * Error codes: LMDB reports either a system errno (positive) or one of its own
 * MDB_* codes (already negative, -30799..-30780). We return -errno for the
 * first kind and the MDB_* code unchanged for the second, so every failure is
 * negative and mdb_strerror() still names it. Two codes are translated:
 * MDB_NOTFOUND becomes -ENOENT and MDB_MAP_FULL becomes -ENOSPC.
 *
 * Threads: the store belongs to the thread that runs its event base; nothing
 * here locks. */
#include "store.h"

#include "log.h"

#include <errno.h>
#include <limits.h>
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

/* The group commit runs when the loop is otherwise idle, and at the latest
 * this long after the first staged write: a record is on disk within it
 * even under a load that never lets the loop go idle. */
#define STORE_COMMIT_DEADLINE_MS 5

struct store {
    MDB_env *env;
    MDB_dbi dbi[STORE_DB_COUNT];
    MDB_txn *wtxn;           /* the staged write transaction, or NULL */
    MDB_txn *rtxn;           /* cached read-only transaction, reset when idle */
    int rtxn_users;          /* nested readers currently using rtxn */
    int iterating;           /* store_foreach calls in progress */
    unsigned staged_dbs;     /* bit per database written in wtxn */
    struct event *commit_ev; /* NULL when opened without an event base */
    struct event *deadline_ev; /* commits anyway STORE_COMMIT_DEADLINE_MS after staging */
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

/* Name the databases written in this turn's transaction, e.g. "kv,cdrs". */
static const char *staged_names(struct store *s, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < STORE_DB_COUNT; i++) {
        if (!(s->staged_dbs & (1u << i)))
            continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? "," : "", db_names[i]);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
    return buf;
}

static void log_map_full(struct store *s, const char *when)
{
    char names[64];
    log_error("store",
              "map full %s database %s: the %zu-byte map of %s is exhausted; this "
              "turn's staged writes are discarded. Free records or raise the store's "
              "map size",
              when, staged_names(s, names, sizeof names), map_size_of(s), s->dir);
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

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    store_commit(arg);
}

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
        s->commit_ev = event_new(base, -1, 0, commit_cb, s);
        /* The deadline keeps the default priority, the sockets' one: under a
         * load that keeps them active every turn, the lowest-priority commit
         * would wait until the load stops. */
        s->deadline_ev = evtimer_new(base, commit_cb, s);
        int lowest = event_base_get_npriorities(base) - 1;
        if (!s->commit_ev || !s->deadline_ev ||
            event_priority_set(s->commit_ev, lowest) != 0) {
            log_error("store", "cannot create the commit event for %s", dir);
            store_close(s); /* frees commit_ev too */
            return -ENOMEM;
        }
    }
    log_info("store", "opened %s, map %zu bytes, %zu bytes in use", dir, map_size_of(s),
             store_used_bytes(s));
    *sp = s;
    return 0;
}

/* Costs: the commit (an fsync of data and meta pages) when something is staged,
 * then unmapping. Commit failures are logged and the staged writes lost. */
void store_close(struct store *s)
{
    if (!s)
        return;
    store_commit(s);
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

/* Drop the staged transaction after a failure inside it. */
static void abort_write(struct store *s)
{
    if (s->wtxn) {
        mdb_txn_abort(s->wtxn);
        s->wtxn = NULL;
    }
    s->staged_dbs = 0;
}

/* The staged write transaction, begun on first use in a turn; beginning it
 * schedules the commit event. Returns 0 or a negative code (logged). */
static int write_txn(struct store *s, MDB_txn **txn)
{
    if (!s->wtxn) {
        int rc = mdb_txn_begin(s->env, NULL, 0, &s->wtxn);
        if (rc != 0) {
            s->wtxn = NULL;
            log_error("store", "cannot begin a write transaction in %s: %s", s->dir,
                      mdb_strerror(rc));
            return mdb_code(rc);
        }
        if (s->commit_ev)
            event_active(s->commit_ev, 0, 0);
        if (s->deadline_ev) {
            struct timeval tv = {0, STORE_COMMIT_DEADLINE_MS * 1000};
            event_add(s->deadline_ev, &tv);
        }
    }
    *txn = s->wtxn;
    return 0;
}

static void staged(struct store *s, enum store_db db)
{
    s->staged_dbs |= 1u << db;
}

/* What a put or a delete checks first: the key, no iteration in progress,
 * the staged transaction (begun if need be), db marked as written. */
static int begin_write(struct store *s, enum store_db db, const void *key, size_t klen,
                       MDB_txn **txn)
{
    if (!key_ok(s, db, key, klen))
        return -EINVAL;
    if (s->iterating)
        return -EBUSY;
    int rc = write_txn(s, txn);
    if (rc == 0)
        staged(s, db);
    return rc;
}

/* A transaction to read from: the staged write transaction if there is one,
 * else the cached read transaction, renewed (no allocation). Pair with
 * read_done(). Returns 0 or a negative code (logged). */
static int read_txn(struct store *s, MDB_txn **txn)
{
    if (s->wtxn) {
        *txn = s->wtxn;
        return 0;
    }
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

/* A staged put or delete failed: LMDB cannot go on with the transaction, so
 * this turn's staged writes are discarded, and said so. Returns -ENOSPC for
 * a full map, else the LMDB code. */
static int write_failed(struct store *s, enum store_db db, int rc, const char *map_full_verb,
                        const char *what)
{
    if (rc == MDB_MAP_FULL) {
        log_map_full(s, map_full_verb);
        abort_write(s);
        return -ENOSPC;
    }
    log_error("store",
              "%s database \"%s\" in %s failed: %s; this turn's staged writes are "
              "discarded",
              what, db_names[db], s->dir, mdb_strerror(rc));
    abort_write(s);
    return mdb_code(rc);
}

/* Costs: a B-tree insert into the staged transaction (no syscall, no
 * allocation of ours: the value is written in place with MDB_RESERVE). Fails
 * with -EINVAL for a bad key or database, -EBUSY inside store_foreach(),
 * -ENOSPC on map full, other negative codes from LMDB; on map full and on any
 * LMDB failure the whole staged transaction is aborted. The caller keeps
 * ownership of key and val. */
int store_put(struct store *s, enum store_db db, const void *key, size_t klen,
              uint8_t version, const void *val, size_t vlen)
{
    if ((vlen && !val) || vlen == SIZE_MAX)
        return -EINVAL;
    MDB_txn *txn;
    int rc = begin_write(s, db, key, klen, &txn);
    if (rc < 0)
        return rc;
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    MDB_val v = {.mv_size = vlen + 1, .mv_data = NULL};
    rc = mdb_put(txn, s->dbi[db], &k, &v, MDB_RESERVE);
    if (rc != 0)
        return write_failed(s, db, rc, "writing to", "write to");
    uint8_t *out = v.mv_data;
    out[0] = version;
    if (vlen)
        memcpy(out + 1, val, vlen);
    return 0;
}

/* Costs: a B-tree delete in the staged transaction. An absent key gives
 * -ENOENT and leaves the transaction intact; other LMDB failures abort it. */
int store_del(struct store *s, enum store_db db, const void *key, size_t klen)
{
    MDB_txn *txn;
    int rc = begin_write(s, db, key, klen, &txn);
    if (rc < 0)
        return rc;
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    rc = mdb_del(txn, s->dbi[db], &k, NULL);
    if (rc == MDB_NOTFOUND)
        return -ENOENT;
    if (rc != 0)
        return write_failed(s, db, rc, "deleting from", "delete from");
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

/* Costs: when something is staged, writing the dirty pages and two fsyncs;
 * nothing otherwise. The write is durable when this returns 0. On failure
 * (-ENOSPC for map full, another negative code otherwise; logged) the staged
 * writes are lost. -EBUSY inside store_foreach(), with nothing done. */
int store_commit(struct store *s)
{
    if (!s || !s->wtxn)
        return 0;
    if (s->iterating)
        return -EBUSY;
    if (s->deadline_ev)
        event_del(s->deadline_ev);
    int rc = mdb_txn_commit(s->wtxn);
    s->wtxn = NULL; /* freed by LMDB whether or not the commit succeeded */
    if (rc == MDB_MAP_FULL)
        log_map_full(s, "committing to");
    s->staged_dbs = 0;
    if (rc == MDB_MAP_FULL)
        return -ENOSPC;
    if (rc != 0) {
        log_error("store",
                  "commit in %s failed: %s; this turn's staged writes are "
                  "lost",
                  s->dir, mdb_strerror(rc));
        return mdb_code(rc);
    }
    return 0;
}

size_t store_count(struct store *s, enum store_db db)
{
    if (!s || (unsigned)db >= STORE_DB_COUNT)
        return 0;
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
