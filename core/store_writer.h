/* The store's writer thread: the one place where LMDB write transactions
 * begin and commit, so the loop never waits for a disk.
 *
 * The loop hands over a batch of writes (store_batch, built by store.c);
 * the thread applies them in one write transaction and commits it, which
 * syncs (LMDB's data pages, fsync, then its meta page, fsync: the order that
 * keeps the file consistent through a power cut). Then it queues the batch
 * back and wakes the loop through an eventfd; store_writer_reap() runs on
 * the loop and hands each finished batch to the store's `done` callback.
 *
 * One batch is in flight at a time: while the disk syncs one, the loop
 * stages the next, so a batch holds what arrived during one commit (a group
 * commit sized to the disk's latency, with no timer to tune).
 *
 * Costs on the loop: store_writer_submit() a mutex and a condition signal;
 * the wake-up one eventfd read per finished batch. The thread does the
 * B-tree work, the writes and the fsyncs. Nothing here logs from the thread:
 * failures travel back in the batch and are logged by the loop.
 *
 * Ownership: a submitted batch belongs to the thread until `done` is called
 * with it on the loop; `done` then owns it. */
#ifndef MOON_STORE_WRITER_H
#define MOON_STORE_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "store.h"

struct event_base;
struct store_writer;

/* One staged write. rec holds the key, then (puts only) the version byte
 * and the value. */
struct store_op {
    struct store_op *next;  /* in its batch, in staging order */
    struct store_op *chain; /* next in its overlay bucket (store.c) */
    struct store_batch *batch;
    uint32_t hash;
    uint8_t db;
    uint8_t del;        /* a delete: no value */
    uint8_t in_overlay; /* still the newest write of its key */
    uint16_t klen;
    uint32_t vlen; /* version byte + value */
    uint8_t rec[];
};

struct store_waiter {
    struct store_waiter *next;
    store_durable_h *fn;
    void *arg;
};

struct store_batch {
    struct store_batch *next; /* in the writer's queues */
    struct store_op *ops, **tail;
    size_t nops;
    unsigned dbs; /* bit per database written */
    struct store_waiter *waiters;
    /* Filled in by the thread: */
    int rc;              /* 0, or the LMDB code of the failure */
    int failed_db;       /* the database of the failing write, or -1 */
    long long commit_us; /* what applying and committing took */
};

typedef void store_writer_done_h(struct store_batch *b, void *arg);

/* Start the thread writing to `env`'s databases `dbi` (the array must
 * outlive the writer). With a `base`, finished batches are reaped on the
 * loop by an event of the default priority; without one, only
 * store_writer_wait() reaps. Returns 0 or -errno. */
int store_writer_start(struct store_writer **wp, MDB_env *env, const MDB_dbi *dbi,
                       struct event_base *base, store_writer_done_h *done, void *arg);

/* Wait for what is in flight, then stop and join the thread. NULL is a
 * no-op. */
void store_writer_stop(struct store_writer *w);

/* Hand over `b`. Only when nothing is in flight: the store submits the
 * next batch from `done`. */
void store_writer_submit(struct store_writer *w, struct store_batch *b);

/* Block the loop until the batch in flight is finished, and reap it. */
void store_writer_wait(struct store_writer *w);

#endif
