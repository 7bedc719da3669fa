/* Unit tests for core/store.c: round trips, group commit on the event loop,
 * durability across kill -9, map full, and key validation. */
#include "check.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <lmdb.h>

/* A fresh directory for one case: $MOON_TEST_TMP/store-<pid>-<name>. */
static void test_dir(char *out, size_t size, const char *name)
{
    const char *tmp = getenv("MOON_TEST_TMP");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", tmp);
    for (char *p = path + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0700);
            *p = '/';
        }
    }
    mkdir(path, 0700);
    snprintf(out, size, "%s/store-%ld-%s", tmp, (long)getpid(), name);
}

static void remove_dir(const char *dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
}

static struct event_base *new_base(void)
{
    struct event_base *base = event_base_new();
    CHECK(base != NULL);
    CHECK(event_base_priority_init(base, 3) == 0);
    return base;
}

static int put_str(struct store *s, enum store_db db, const char *key, uint8_t version,
                   const char *val)
{
    return store_put(s, db, key, strlen(key), version, val, strlen(val));
}

/* 1 if `key` in `db` holds `want` with version `ver`. */
static int has_str(struct store *s, enum store_db db, const char *key, uint8_t ver,
                   const char *want)
{
    uint8_t v = 0;
    void *val = NULL;
    size_t len = 0;
    int rc = store_get(s, db, key, strlen(key), &v, &val, &len);
    int ok = rc == 0 && v == ver && len == strlen(want) && memcmp(val, want, len) == 0 &&
             ((char *)val)[len] == '\0';
    free(val);
    return ok;
}

static int absent(struct store *s, enum store_db db, const char *key)
{
    void *val = NULL;
    size_t len = 0;
    int rc = store_get(s, db, key, strlen(key), NULL, &val, &len);
    free(val);
    return rc == -ENOENT && val == NULL;
}

struct visit_log {
    uint64_t keys[16];
    uint8_t versions[16];
    size_t n;
    int bad;
    size_t stop_after; /* return 7 once this many were seen; 0: never */
    struct store *s;
    int write_rc; /* what a write attempted inside the visit returned */
};

static int visit(const void *key, size_t klen, uint8_t version, const void *val,
                 size_t vlen, void *arg)
{
    struct visit_log *log = arg;
    if (klen != 8 || vlen != 3 || memcmp(val, "cdr", 3) != 0 || log->n >= 16) {
        log->bad++;
        return 0;
    }
    log->versions[log->n] = version;
    log->keys[log->n++] = store_key_u64_read(key);
    if (log->s)
        log->write_rc = store_put(log->s, STORE_KV, "x", 1, 1, "y", 1);
    if (log->stop_after && log->n == log->stop_after)
        return 7;
    return 0;
}

static void round_trip(void)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof dir, "rt");
    struct event_base *base = new_base();
    struct store *s = NULL;
    CHECK(store_open(&s, base, dir, 0) == 0);
    if (!s)
        return;
    struct stat st;
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);

    CHECK(strcmp(store_db_name(STORE_KV), "kv") == 0);
    CHECK(strcmp(store_db_name(STORE_OUTREG), "outreg") == 0);
    CHECK(strcmp(store_db_name(STORE_BINDINGS), "bindings") == 0);
    CHECK(strcmp(store_db_name(STORE_CDRS), "cdrs") == 0);
    CHECK(strcmp(store_db_name(STORE_SUSPEND), "suspend") == 0);

    /* The same key in every database holds a different value: they are
     * separate databases, and staged values are readable before commit. */
    for (int db = 0; db < STORE_DB_COUNT; db++) {
        char val[32];
        snprintf(val, sizeof val, "value of %s", store_db_name(db));
        CHECK(put_str(s, db, "alice", (uint8_t)(200 + db), val) == 0);
    }
    for (int db = 0; db < STORE_DB_COUNT; db++) {
        char val[32];
        snprintf(val, sizeof val, "value of %s", store_db_name(db));
        CHECK(has_str(s, db, "alice", (uint8_t)(200 + db), val));
        CHECK(store_count(s, db) == 1);
    }
    CHECK(store_commit(s) == 0);
    CHECK(store_commit(s) == 0); /* nothing staged */
    for (int db = 0; db < STORE_DB_COUNT; db++) {
        char val[32];
        snprintf(val, sizeof val, "value of %s", store_db_name(db));
        CHECK(has_str(s, db, "alice", (uint8_t)(200 + db), val));
    }

    /* Overwrite, an empty payload, binary payloads with NULs. */
    CHECK(put_str(s, STORE_KV, "alice", 9, "") == 0);
    CHECK(has_str(s, STORE_KV, "alice", 9, ""));
    const uint8_t bin[4] = {0, 1, 0, 255};
    CHECK(store_put(s, STORE_KV, "bin", 3, 0, bin, sizeof bin) == 0);
    uint8_t ver = 99;
    void *val = NULL;
    size_t len = 0;
    CHECK(store_get(s, STORE_KV, "bin", 3, &ver, &val, &len) == 0);
    CHECK(ver == 0 && len == 4 && val && memcmp(val, bin, 4) == 0);
    free(val);

    /* Delete, staged and then committed. */
    for (int db = 0; db < STORE_DB_COUNT; db++) {
        CHECK(store_del(s, db, "alice", 5) == 0);
        CHECK(absent(s, db, "alice"));
        CHECK(store_del(s, db, "alice", 5) == -ENOENT);
    }
    CHECK(store_count(s, STORE_KV) == 1);
    CHECK(store_count(s, STORE_OUTREG) == 0);
    CHECK(store_commit(s) == 0);
    for (int db = 0; db < STORE_DB_COUNT; db++)
        CHECK(absent(s, db, "alice"));

    /* Big-endian keys walk in numeric order, staged records included. */
    uint8_t k[8];
    store_key_u64(k, 0x0102030405060708ull);
    CHECK(k[0] == 1 && k[7] == 8 && store_key_u64_read(k) == 0x0102030405060708ull);
    const uint64_t seqs[] = {300, 1, 70000, (uint64_t)1 << 40, 5, 256};
    const uint64_t sorted[] = {1, 5, 256, 300, 70000, (uint64_t)1 << 40};
    for (size_t i = 0; i < 3; i++) {
        store_key_u64(k, seqs[i]);
        CHECK(store_put(s, STORE_CDRS, k, 8, (uint8_t)seqs[i], "cdr", 3) == 0);
    }
    CHECK(store_commit(s) == 0);
    for (size_t i = 3; i < 6; i++) {
        store_key_u64(k, seqs[i]);
        CHECK(store_put(s, STORE_CDRS, k, 8, (uint8_t)seqs[i], "cdr", 3) == 0);
    }
    CHECK(store_count(s, STORE_CDRS) == 6);
    struct visit_log log = {0};
    CHECK(store_foreach(s, STORE_CDRS, visit, &log) == 0);
    CHECK(log.n == 6 && log.bad == 0);
    for (size_t i = 0; i < 6 && i < log.n; i++)
        CHECK(log.keys[i] == sorted[i] && log.versions[i] == (uint8_t)sorted[i]);

    /* A visitor stops the walk with its return value. */
    struct visit_log stop = {.stop_after = 2};
    CHECK(store_foreach(s, STORE_CDRS, visit, &stop) == 7);
    CHECK(stop.n == 2);

    /* Writes from inside a walk are refused, on both kinds of transaction. */
    struct visit_log writer = {.s = s, .stop_after = 1};
    CHECK(store_foreach(s, STORE_CDRS, visit, &writer) == 7);
    CHECK(writer.write_rc == -EBUSY);
    CHECK(store_commit(s) == 0);
    writer = (struct visit_log){.s = s, .stop_after = 1};
    CHECK(store_foreach(s, STORE_CDRS, visit, &writer) == 7);
    CHECK(writer.write_rc == -EBUSY);
    CHECK(absent(s, STORE_KV, "x"));

    CHECK(store_count(s, STORE_CDRS) == 6);
    CHECK(store_used_bytes(s) > 0 && store_used_bytes(s) % 4096 == 0);
    CHECK(put_str(s, STORE_SUSPEND, "staged-at-close", 4, "kept") == 0);
    store_close(s); /* commits it */
    store_close(NULL);

    /* Reopened, everything committed is there. */
    CHECK(store_open(&s, base, dir, 0) == 0);
    CHECK(store_count(s, STORE_CDRS) == 6);
    CHECK(has_str(s, STORE_SUSPEND, "staged-at-close", 4, "kept"));
    CHECK(has_str(s, STORE_KV, "alice", 9, "") == 0 && absent(s, STORE_KV, "alice"));
    CHECK(store_get(s, STORE_KV, "bin", 3, &ver, &val, &len) == 0 && len == 4);
    free(val);
    store_close(s);
    event_base_free(base);
    remove_dir(dir);
}

/* Whether another process sees `key` in the "kv" database of `dir`, read with
 * raw LMDB read-only (so it neither creates anything nor takes the writer
 * lock the parent may hold). 1 present, 0 absent, -1 error. */
static int committed_elsewhere(const char *dir, const char *key)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key}, v;
        if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 8) ||
            mdb_env_open(env, dir, MDB_RDONLY, 0600) ||
            mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) ||
            mdb_dbi_open(txn, "kv", 0, &dbi))
            _exit(2);
        int rc = mdb_get(txn, dbi, &k, &v);
        _exit(rc == 0 ? 1 : rc == MDB_NOTFOUND ? 0 : 2);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    int code = WEXITSTATUS(status);
    return code == 2 ? -1 : code;
}

struct durable {
    int calls, rc, order; /* order: the value of *seq when called */
    int *seq;
};

static void on_durable(void *arg, int rc)
{
    struct durable *d = arg;
    d->calls++;
    d->rc = rc;
    if (d->seq)
        d->order = ++*d->seq;
}

/* Run the loop until `d` was called (at most 5 s); 1 if it was, once. */
static int run_until_called(struct event_base *base, struct durable *d)
{
    for (int i = 0; i < 500 && !d->calls; i++) {
        struct timeval tv = {0, 10000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    return d->calls == 1;
}

/* Run the loop until everything staged so far is durable; 1 if it is. */
static int run_until_durable(struct event_base *base, struct store *s)
{
    struct durable d = {.rc = -1};
    if (store_when_durable(s, on_durable, &d) != 0)
        return 0;
    CHECK(d.calls == 0); /* never called before store_when_durable returns */
    return run_until_called(base, &d) && d.rc == 0;
}

struct mid_turn {
    const char *dir;
    int seen; /* what a priority-1 event saw of the staged write */
};

static void mid_turn_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct mid_turn *m = arg;
    m->seen = committed_elsewhere(m->dir, "gc-0");
}

static void group_commit(void)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof dir, "gc");
    struct event_base *base = new_base();
    struct store *s = NULL;
    CHECK(store_open(&s, base, dir, 0) == 0);
    if (!s)
        return;
    for (int i = 0; i < 5; i++) {
        char key[16];
        snprintf(key, sizeof key, "gc-%d", i);
        CHECK(put_str(s, STORE_KV, key, 1, "staged") == 0);
    }
    /* Staged, not yet visible to another process. */
    CHECK(committed_elsewhere(dir, "gc-0") == 0);

    /* An event of a higher priority in the same turn still runs before the
     * hand-over, which has the default priority. */
    struct mid_turn m = {.dir = dir, .seen = -2};
    struct event *mid = event_new(base, -1, 0, mid_turn_cb, &m);
    CHECK(event_priority_set(mid, 0) == 0);
    event_active(mid, 0, 0);

    CHECK(event_base_loop(base, EVLOOP_NONBLOCK) >= 0);
    CHECK(m.seen == 0);
    /* The turn handed the batch to the writer thread, which commits it. */
    CHECK(run_until_durable(base, s));
    for (int i = 0; i < 5; i++) {
        char key[16];
        snprintf(key, sizeof key, "gc-%d", i);
        CHECK(committed_elsewhere(dir, key) == 1);
    }

    /* A second turn commits again; an explicit commit first leaves the event
     * nothing to do. */
    CHECK(put_str(s, STORE_KV, "gc-late", 1, "x") == 0);
    CHECK(committed_elsewhere(dir, "gc-late") == 0);
    CHECK(store_commit(s) == 0);
    CHECK(committed_elsewhere(dir, "gc-late") == 1);
    CHECK(event_base_loop(base, EVLOOP_NONBLOCK) >= 0);
    CHECK(put_str(s, STORE_KV, "gc-next", 1, "x") == 0);
    CHECK(run_until_durable(base, s));
    CHECK(committed_elsewhere(dir, "gc-next") == 1);

    event_free(mid);
    store_close(s);
    event_base_free(base);
    remove_dir(dir);
}

/* Writes staged while a batch is with the writer wait for it, go in the
 * next batch, and are read back at once meanwhile; callbacks come in
 * order, each after its writes are visible to another process. */
static void staged_behind_flight(void)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof dir, "flight");
    struct event_base *base = new_base();
    struct store *s = NULL;
    CHECK(store_open(&s, base, dir, 0) == 0);
    if (!s)
        return;
    int seq = 0;
    struct durable first = {.rc = -1, .seq = &seq}, second = {.rc = -1, .seq = &seq};
    CHECK(put_str(s, STORE_KV, "first", 1, "1") == 0);
    CHECK(store_when_durable(s, on_durable, &first) == 0);
    CHECK(event_base_loop(base, EVLOOP_NONBLOCK) >= 0); /* hands "first" over */
    CHECK(put_str(s, STORE_KV, "second", 1, "2") == 0);
    CHECK(put_str(s, STORE_KV, "first", 1, "one") == 0); /* overwrites a write in flight */
    CHECK(store_del(s, STORE_KV, "second", 6) == 0);
    CHECK(store_del(s, STORE_KV, "second", 6) == -ENOENT);
    CHECK(put_str(s, STORE_KV, "second", 1, "two") == 0);
    CHECK(store_when_durable(s, on_durable, &second) == 0);
    /* Nothing reaps while the loop does not run: the second batch is still
     * on the loop, its writes readable here and nowhere else. */
    CHECK(has_str(s, STORE_KV, "second", 1, "two"));
    CHECK(has_str(s, STORE_KV, "first", 1, "one"));
    CHECK(committed_elsewhere(dir, "second") == 0);
    CHECK(run_until_called(base, &second));
    CHECK(first.calls == 1 && first.rc == 0 && second.rc == 0);
    CHECK(first.order == 1 && second.order == 2);
    CHECK(committed_elsewhere(dir, "second") == 1);
    CHECK(has_str(s, STORE_KV, "first", 1, "one"));
    CHECK(has_str(s, STORE_KV, "second", 1, "two"));
    uint64_t commits = 0, us = 0;
    store_commit_stats(s, &commits, &us);
    CHECK(commits >= 2);
    /* A callback with nothing staged still comes, later. */
    CHECK(run_until_durable(base, s));
    store_close(s);
    event_base_free(base);
    remove_dir(dir);
}

static void crash_reopen(void)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof dir, "crash");
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        struct event_base *base = event_base_new();
        if (!base || event_base_priority_init(base, 3) != 0)
            _exit(2);
        struct store *s;
        if (store_open(&s, base, dir, 0) != 0)
            _exit(2);
        for (int i = 0; i < 100; i++) {
            uint8_t k[8];
            store_key_u64(k, (uint64_t)i);
            if (store_put(s, STORE_CDRS, k, 8, 3, "committed", 9) != 0)
                _exit(2);
        }
        if (put_str(s, STORE_BINDINGS, "bob", 2, "sip:bob@10.0.0.1") != 0 ||
            store_commit(s) != 0)
            _exit(2);
        if (put_str(s, STORE_BINDINGS, "carol", 2, "uncommitted") != 0 ||
            store_del(s, STORE_BINDINGS, "bob", 3) != 0)
            _exit(2);
        raise(SIGKILL);
        _exit(3);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    struct event_base *base = new_base();
    struct store *s = NULL;
    CHECK(store_open(&s, base, dir, 0) == 0);
    if (!s)
        return;
    CHECK(store_count(s, STORE_CDRS) == 100);
    for (int i = 0; i < 100; i++) {
        uint8_t k[8], ver = 0;
        store_key_u64(k, (uint64_t)i);
        void *val = NULL;
        size_t len = 0;
        CHECK(store_get(s, STORE_CDRS, k, 8, &ver, &val, &len) == 0);
        CHECK(ver == 3 && len == 9 && val && memcmp(val, "committed", 9) == 0);
        free(val);
    }
    CHECK(has_str(s, STORE_BINDINGS, "bob", 2, "sip:bob@10.0.0.1"));
    CHECK(absent(s, STORE_BINDINGS, "carol"));
    CHECK(store_count(s, STORE_BINDINGS) == 1);
    /* And it is writable: the dead writer's lock was recovered. */
    CHECK(put_str(s, STORE_BINDINGS, "carol", 2, "later") == 0);
    CHECK(store_commit(s) == 0);
    store_close(s);
    event_base_free(base);
    remove_dir(dir);
}

/* Run `fn` with stderr sent to a file, and return what it wrote (static). */
static const char *capture_stderr(const char *dir, int *rc, int (*fn)(void *), void *arg)
{
    static char text[8192];
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s.stderr", dir);
    fflush(stderr);
    int saved = dup(2);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 2);
    *rc = fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    fputs(text, stderr); /* still show it */
    return text;
}

struct filler {
    struct store *s;
    int puts; /* records committed before the failure */
};

/* Put 4 KiB records, committing every 4, until something fails. */
static int fill(void *arg)
{
    struct filler *f = arg;
    static char big[4096];
    memset(big, 'z', sizeof big);
    for (int i = 0; i < 100000; i++) {
        uint8_t k[8];
        store_key_u64(k, (uint64_t)i);
        int rc = store_put(f->s, STORE_CDRS, k, 8, 1, big, sizeof big);
        if (rc == 0 && i % 4 == 3)
            rc = store_commit(f->s);
        if (rc != 0)
            return rc;
        if (i % 4 == 3)
            f->puts = i + 1;
    }
    return 0;
}

static void map_full(void)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof dir, "full");
    struct event_base *base = new_base();
    struct store *s = NULL;
    CHECK(store_open(&s, base, dir, 1 << 20) == 0);
    if (!s)
        return;
    CHECK(put_str(s, STORE_KV, "keep", 1, "me") == 0);
    CHECK(store_commit(s) == 0);

    struct filler f = {.s = s};
    int rc = 0;
    const char *err = capture_stderr(dir, &rc, fill, &f);
    CHECK(rc == -ENOSPC);
    CHECK(f.puts > 0);
    CHECK_STR_CONTAINS(err, "map full");
    CHECK_STR_CONTAINS(err, "cdrs");
    CHECK_STR_CONTAINS(err, "1048576");
    CHECK_STR_CONTAINS(err, dir);

    /* Everything committed before the failure is still readable, the failed
     * turn's records are gone, and the store is still writable once space is
     * freed. */
    CHECK(has_str(s, STORE_KV, "keep", 1, "me"));
    CHECK(store_count(s, STORE_CDRS) == (size_t)f.puts);
    uint8_t k[8];
    store_key_u64(k, (uint64_t)f.puts);
    void *val = NULL;
    size_t len = 0;
    CHECK(store_get(s, STORE_CDRS, k, 8, NULL, &val, &len) == -ENOENT);
    store_key_u64(k, 0);
    CHECK(store_get(s, STORE_CDRS, k, 8, NULL, &val, &len) == 0 && len == 4096);
    free(val);
    for (int i = 0; i < f.puts / 2; i++) {
        store_key_u64(k, (uint64_t)i);
        CHECK(store_del(s, STORE_CDRS, k, 8) == 0);
    }
    CHECK(store_commit(s) == 0);
    CHECK(put_str(s, STORE_KV, "after", 1, "full") == 0);
    CHECK(store_commit(s) == 0);
    CHECK(has_str(s, STORE_KV, "after", 1, "full"));
    CHECK(store_used_bytes(s) <= (1 << 20));
    store_close(s);

    CHECK(store_open(&s, base, dir, 1 << 20) == 0);
    CHECK(has_str(s, STORE_KV, "keep", 1, "me") &&
          has_str(s, STORE_KV, "after", 1, "full"));
    store_close(s);
    event_base_free(base);
    remove_dir(dir);
}

static void invalid_keys(void)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof dir, "keys");
    struct event_base *base = new_base();
    struct store *s = NULL;
    CHECK(store_open(&s, base, dir, 0) == 0);
    if (!s)
        return;
    static char key[STORE_MAX_KEY + 1];
    memset(key, 'k', sizeof key);
    void *val = NULL;
    size_t len = 0;

    CHECK(store_put(s, STORE_KV, "", 0, 1, "v", 1) == -EINVAL);
    CHECK(store_put(s, STORE_KV, key, STORE_MAX_KEY + 1, 1, "v", 1) == -EINVAL);
    CHECK(store_del(s, STORE_KV, "", 0) == -EINVAL);
    CHECK(store_del(s, STORE_KV, key, STORE_MAX_KEY + 1) == -EINVAL);
    CHECK(store_get(s, STORE_KV, "", 0, NULL, &val, &len) == -EINVAL);
    CHECK(store_get(s, STORE_KV, key, STORE_MAX_KEY + 1, NULL, &val, &len) == -EINVAL);
    CHECK(val == NULL);
    CHECK(store_count(s, STORE_KV) == 0);

    /* The longest key LMDB takes works. */
    CHECK(store_put(s, STORE_KV, key, STORE_MAX_KEY, 1, "v", 1) == 0);
    CHECK(store_commit(s) == 0);
    CHECK(store_get(s, STORE_KV, key, STORE_MAX_KEY, NULL, &val, &len) == 0 && len == 1);
    free(val);

    CHECK(store_del(s, STORE_KV, "missing", 7) == -ENOENT);
    CHECK(store_get(s, STORE_KV, "missing", 7, NULL, &val, &len) == -ENOENT);
    /* A failed delete does not spoil the turn's other writes. */
    CHECK(put_str(s, STORE_KV, "a", 1, "b") == 0);
    CHECK(store_del(s, STORE_KV, "missing", 7) == -ENOENT);
    CHECK(store_commit(s) == 0);
    CHECK(has_str(s, STORE_KV, "a", 1, "b"));
    store_close(s);
    event_base_free(base);
    remove_dir(dir);
}

/* A load that keeps a higher-priority event active every turn would starve
 * the lowest-priority commit; the deadline timer commits anyway. */
struct busy {
    struct event *ev;
    int turns;
};

static void busy_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct busy *b = arg;
    b->turns++;
    struct timeval now = {0, 0};
    event_add(b->ev, &now); /* active again next turn, for ever */
}

static void commit_deadline_under_load(void)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof dir, "deadline");
    struct event_base *base = new_base();
    struct store *s = NULL;
    CHECK(store_open(&s, base, dir, 0) == 0);
    if (!s)
        return;
    struct busy b = {0};
    b.ev = evtimer_new(base, busy_cb, &b);
    CHECK(event_priority_set(b.ev, 1) == 0); /* the default: what sockets get */
    struct timeval now = {0, 0};
    event_add(b.ev, &now);
    CHECK(put_str(s, STORE_KV, "under-load", 1, "x") == 0);
    /* 100 ms of that load: the lowest-priority commit never gets a turn. */
    struct timeval run = {0, 100000};
    CHECK(event_base_loopexit(base, &run) == 0);
    CHECK(event_base_dispatch(base) == 0);
    int committed = committed_elsewhere(dir, "under-load") == 1;
    CHECK(committed);
    CHECK(b.turns > 1); /* the load really ran meanwhile */
    event_free(b.ev);
    store_close(s);
    event_base_free(base);
    remove_dir(dir);
}

TEST_MAIN(CASE(round_trip), CASE(group_commit), CASE(staged_behind_flight), CASE(crash_reopen), CASE(map_full),
          CASE(invalid_keys), CASE(commit_deadline_under_load))
