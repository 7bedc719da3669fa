/* The store's writer thread. See store_writer.h. */
#include "store_writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

struct store_writer {
    MDB_env *env;
    const MDB_dbi *dbi;
    store_writer_done_h *done;
    void *done_arg;

    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work;     /* the thread waits here for a batch or stop */
    pthread_cond_t finished; /* store_writer_wait() waits here */
    /* Under mu: */
    struct store_batch *todo;           /* handed over, not yet taken */
    struct store_batch *finished_batch; /* committed, not yet reaped */
    bool stopping;

    /* Loop side only: */
    bool in_flight;
    int efd;
    struct event *wake_ev;
};

static long long monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Apply every write of `b` in one transaction and commit it. A delete of
 * an absent key is not a failure (the loop already answered -ENOENT when it
 * knew the key to be absent). */
static void apply(struct store_writer *w, struct store_batch *b)
{
    long long t0 = monotonic_us();
    b->rc = 0;
    b->failed_db = -1;
    if (!b->ops) {
        b->commit_us = 0;
        return;
    }
    MDB_txn *txn = NULL;
    int rc = mdb_txn_begin(w->env, NULL, 0, &txn);
    for (struct store_op *op = b->ops; rc == 0 && op; op = op->next) {
        MDB_val k = {.mv_size = op->klen, .mv_data = op->rec};
        if (op->del) {
            rc = mdb_del(txn, w->dbi[op->db], &k, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0;
        } else {
            MDB_val v = {.mv_size = op->vlen, .mv_data = NULL};
            rc = mdb_put(txn, w->dbi[op->db], &k, &v, MDB_RESERVE);
            if (rc == 0)
                memcpy(v.mv_data, op->rec + op->klen, op->vlen);
        }
        if (rc != 0)
            b->failed_db = op->db;
    }
    if (rc == 0) {
        rc = mdb_txn_commit(txn); /* frees txn either way */
    } else if (txn) {
        mdb_txn_abort(txn);
    }
    b->rc = rc;
    b->commit_us = monotonic_us() - t0;
}

static void *run(void *arg)
{
    struct store_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->todo && !w->stopping)
            pthread_cond_wait(&w->work, &w->mu);
        if (!w->todo)
            break; /* stopping, and nothing left */
        struct store_batch *b = w->todo;
        w->todo = NULL;
        pthread_mutex_unlock(&w->mu);
        apply(w, b);
        pthread_mutex_lock(&w->mu);
        w->finished_batch = b;
        pthread_cond_signal(&w->finished);
        if (w->efd >= 0) {
            uint64_t one = 1;
            ssize_t n = write(w->efd, &one, sizeof one);
            (void)n; /* a full counter still wakes the loop */
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Hand the finished batch to `done`, on the loop. */
static void reap(struct store_writer *w)
{
    pthread_mutex_lock(&w->mu);
    struct store_batch *b = w->finished_batch;
    w->finished_batch = NULL;
    pthread_mutex_unlock(&w->mu);
    if (!b)
        return;
    w->in_flight = false;
    w->done(b, w->done_arg);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    uint64_t n;
    ssize_t r = read(fd, &n, sizeof n);
    (void)r;
    reap(arg);
}

/* Release what store_writer_start() made; the thread, if any, is joined. */
static void writer_free(struct store_writer *w)
{
    if (w->wake_ev)
        event_free(w->wake_ev);
    if (w->efd >= 0)
        close(w->efd);
    pthread_cond_destroy(&w->finished);
    pthread_cond_destroy(&w->work);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

int store_writer_start(struct store_writer **wp, MDB_env *env, const MDB_dbi *dbi,
                       struct event_base *base, store_writer_done_h *done, void *arg)
{
    *wp = NULL;
    struct store_writer *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->env = env;
    w->dbi = dbi;
    w->done = done;
    w->done_arg = arg;
    w->efd = -1;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->work, NULL);
    pthread_cond_init(&w->finished, NULL);
    int rc = 0;
    if (base) {
        w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->efd < 0)
            rc = -errno;
        else if (!(w->wake_ev =
                       event_new(base, w->efd, EV_READ | EV_PERSIST, on_wake, w)) ||
                 event_add(w->wake_ev, NULL) != 0)
            rc = -ENOMEM;
    }
    if (rc == 0)
        rc = -pthread_create(&w->thread, NULL, run, w);
    if (rc != 0) {
        writer_free(w);
        return rc;
    }
    *wp = w;
    return 0;
}

void store_writer_stop(struct store_writer *w)
{
    if (!w)
        return;
    store_writer_wait(w);
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    writer_free(w);
}

void store_writer_submit(struct store_writer *w, struct store_batch *b)
{
    w->in_flight = true;
    pthread_mutex_lock(&w->mu);
    w->todo = b;
    pthread_cond_signal(&w->work);
    pthread_mutex_unlock(&w->mu);
}

void store_writer_wait(struct store_writer *w)
{
    if (!w->in_flight)
        return;
    pthread_mutex_lock(&w->mu);
    while (!w->finished_batch)
        pthread_cond_wait(&w->finished, &w->mu);
    pthread_mutex_unlock(&w->mu);
    reap(w);
}
