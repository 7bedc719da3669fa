/* Unit tests for core/sip/guard.c: `retry` failures suspend the account and
 * the source, a retransmitted attempt counts once, failures age out of the
 * window, a success starts the count again, suspensions end by themselves
 * or are lifted by the operator, and survive a restart in the store. */
#include "check.h"

#include "sip/guard.h"
#include "store.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define NOW 1700000000LL
#define IP "198.51.100.7"

static struct guard *new_guard(struct store *store, int retry, int suspend)
{
    struct guard *g = NULL;
    CHECK(guard_create(&g, NULL, store) == 0);
    guard_set_limits(g, retry, suspend);
    return g;
}

static unsigned failures_of(struct guard *g, const char *name, long long now)
{
    unsigned failures = 0;
    long long until = 0;
    guard_account(g, name, now, &failures, &until);
    return failures;
}

static long long until_of(struct guard *g, const char *name, long long now)
{
    unsigned failures = 0;
    long long until = 0;
    guard_account(g, name, now, &failures, &until);
    return until;
}

static void failures_suspend(void)
{
    struct guard *g = new_guard(NULL, 3, 180);
    CHECK(!guard_failure(g, "1001", IP, NOW, 1));
    CHECK(!guard_failure(g, "1001", IP, NOW + 1, 2));
    CHECK(failures_of(g, "1001", NOW + 1) == 2);
    CHECK(!guard_suspended(g, GUARD_ACCOUNT, "1001", NOW + 1));
    CHECK(guard_failure(g, "1001", IP, NOW + 2, 3)); /* the third */
    CHECK(guard_suspended(g, GUARD_ACCOUNT, "1001", NOW + 3));
    CHECK(guard_suspended(g, GUARD_SOURCE, IP, NOW + 3));
    CHECK(until_of(g, "1001", NOW + 3) == NOW + 2 + 180);
    /* Others are not. */
    CHECK(!guard_suspended(g, GUARD_ACCOUNT, "1002", NOW + 3));
    CHECK(!guard_suspended(g, GUARD_SOURCE, "198.51.100.8", NOW + 3));
    CHECK(!guard_suspended(g, GUARD_SOURCE, "1001", NOW + 3)); /* kinds apart */
    guard_destroy(g);
}

static void unknown_names_count_too(void)
{
    /* Two users from one source: the source reaches the limit first. */
    struct guard *g = new_guard(NULL, 3, 60);
    CHECK(!guard_failure(g, "nobody", IP, NOW, 1));
    CHECK(!guard_failure(g, "1001", IP, NOW, 2));
    CHECK(guard_failure(g, "nobody", IP, NOW, 3));
    CHECK(guard_suspended(g, GUARD_SOURCE, IP, NOW));
    CHECK(!guard_suspended(g, GUARD_ACCOUNT, "nobody", NOW));
    CHECK(!guard_suspended(g, GUARD_ACCOUNT, "1001", NOW));
    guard_destroy(g);
}

static void retransmission_counts_once(void)
{
    struct guard *g = new_guard(NULL, 2, 60);
    CHECK(!guard_failure(g, "1001", IP, NOW, 42));
    CHECK(!guard_failure(g, "1001", IP, NOW, 42));
    CHECK(failures_of(g, "1001", NOW) == 1);
    CHECK(guard_failure(g, "1001", IP, NOW, 43));
    guard_destroy(g);
}

static void window_and_success(void)
{
    struct guard *g = new_guard(NULL, 3, 60);
    CHECK(!guard_failure(g, "1001", IP, NOW, 1));
    CHECK(!guard_failure(g, "1001", IP, NOW, 2));
    /* Out of the window: they are forgotten, this one is the first. */
    long long later = NOW + REGISTRAR_FAILURE_WINDOW + 1;
    CHECK(failures_of(g, "1001", later) == 0);
    CHECK(!guard_failure(g, "1001", "203.0.113.1", later, 3));
    CHECK(failures_of(g, "1001", later) == 1);
    CHECK(!guard_failure(g, "1001", "203.0.113.1", later, 4));
    /* A success: the account starts again. */
    guard_success(g, "1001");
    CHECK(failures_of(g, "1001", later) == 0);
    CHECK(!guard_failure(g, "1001", "203.0.113.2", later, 5));
    CHECK(!guard_failure(g, "1001", "203.0.113.2", later, 6));
    CHECK(!guard_suspended(g, GUARD_ACCOUNT, "1001", later));
    guard_destroy(g);
}

static void suspend_zero_never(void)
{
    struct guard *g = new_guard(NULL, 1, 0);
    for (int i = 0; i < 5; i++)
        CHECK(!guard_failure(g, "1001", IP, NOW, (uint64_t)i));
    CHECK(!guard_suspended(g, GUARD_ACCOUNT, "1001", NOW));
    guard_destroy(g);
}

static int count_suspension(const char *kind, const char *name, long long until,
                            unsigned failures, void *arg)
{
    (void)name;
    (void)until;
    (void)failures;
    int *n = arg;
    n[strcmp(kind, "account") == 0 ? 0 : 1]++;
    return 0;
}

static void expiry_and_lift(void)
{
    struct guard *g = new_guard(NULL, 1, 100);
    CHECK(guard_failure(g, "1001", IP, NOW, 1));
    int n[2] = {0, 0};
    guard_suspensions(g, NOW + 1, count_suspension, n);
    CHECK(n[0] == 1 && n[1] == 1);
    /* Over by itself: lifted when asked, gone from the list. */
    CHECK(guard_suspended(g, GUARD_ACCOUNT, "1001", NOW + 99));
    CHECK(!guard_suspended(g, GUARD_ACCOUNT, "1001", NOW + 100));
    n[0] = n[1] = 0;
    guard_suspensions(g, NOW + 100, count_suspension, n);
    CHECK(n[0] == 0 && n[1] == 0);
    CHECK(guard_lift(g, IP, NOW + 100) == 0); /* nothing in force */
    CHECK(!guard_suspended(g, GUARD_SOURCE, IP, NOW + 100));

    /* Lifted by the operator, by name and by IP. */
    CHECK(guard_failure(g, "1002", "203.0.113.9", NOW + 200, 2));
    CHECK(guard_lift(g, "1002", NOW + 201) == 1);
    CHECK(!guard_suspended(g, GUARD_ACCOUNT, "1002", NOW + 201));
    CHECK(guard_suspended(g, GUARD_SOURCE, "203.0.113.9", NOW + 201));
    CHECK(guard_lift(g, "203.0.113.9", NOW + 201) == 1);
    CHECK(!guard_suspended(g, GUARD_SOURCE, "203.0.113.9", NOW + 201));
    CHECK(guard_lift(g, "203.0.113.9", NOW + 201) == 0);

    /* The sweep ends suspensions and forgets what aged out. */
    CHECK(guard_failure(g, "1003", "203.0.113.10", NOW + 300, 3));
    guard_sweep(g, NOW + 400);
    CHECK(until_of(g, "1003", NOW + 300) == 0);
    guard_sweep(g, NOW + 400 + REGISTRAR_FAILURE_WINDOW + 1);
    n[0] = n[1] = 0;
    guard_suspensions(g, NOW, count_suspension, n);
    CHECK(n[0] == 0 && n[1] == 0);
    guard_destroy(g);
}

/* ---- The store across a restart ------------------------------------------------ */

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
    snprintf(out, size, "%s/guard-%ld-%s", tmp, (long)getpid(), name);
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

static void survives_restart(void)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof dir, "restart");
    struct event_base *base = event_base_new();
    CHECK(event_base_priority_init(base, 3) == 0);
    struct store *st = NULL;
    CHECK(store_open(&st, base, dir, 0) == 0);
    long long now = (long long)time(NULL);

    struct guard *g = new_guard(st, 1, 600);
    CHECK(guard_failure(g, "1001", IP, now, 1));
    /* Suspended long ago: over by the restart. */
    CHECK(guard_failure(g, "1002", "203.0.113.9", now - 1000, 2));
    CHECK(store_commit(st) == 0);
    CHECK(store_count(st, STORE_SUSPEND) == 4);
    guard_destroy(g);

    g = new_guard(st, 1, 600);
    CHECK(store_commit(st) == 0);
    CHECK(store_count(st, STORE_SUSPEND) == 2);
    CHECK(guard_suspended(g, GUARD_ACCOUNT, "1001", now));
    CHECK(guard_suspended(g, GUARD_SOURCE, IP, now));
    CHECK(until_of(g, "1001", now) == now + 600);
    CHECK(!guard_suspended(g, GUARD_ACCOUNT, "1002", now));
    /* Lifting deletes the records. */
    CHECK(guard_lift(g, "1001", now) == 1);
    CHECK(guard_lift(g, IP, now) == 1);
    CHECK(store_commit(st) == 0);
    CHECK(store_count(st, STORE_SUSPEND) == 0);
    guard_destroy(g);
    store_close(st);
    event_base_free(base);
    remove_dir(dir);
}

TEST_MAIN(CASE(failures_suspend), CASE(unknown_names_count_too),
          CASE(retransmission_counts_once), CASE(window_and_success),
          CASE(suspend_zero_never), CASE(expiry_and_lift), CASE(survives_restart))
