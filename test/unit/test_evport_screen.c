/* Unit tests for what core/evport.c screens before sofia reads: the
 * datagram filter (drops before the wait's callback, sees the first bytes,
 * never wakes the callback for dropped datagrams alone), the batches of
 * datagrams read per wakeup (capped, each seen by the observer, sofia's
 * su_getmsgsize() answered from the peek, a callback that unregisters
 * itself ends its batch), the kernel's
 * blocklist (a BPF socket filter over many addresses), and the hooks of
 * accepted connections (refused ones reach the callback only as a hang-up,
 * silent ones are closed after their deadline, `readable` closes an open
 * one, `closed` is told of each). */
#include "check.h"
#include "dgram.h"
#include "evport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_wait.h>

struct fixture {
    struct event_base *base;
    su_root_t *root;
};

static struct fixture setup(void)
{
    struct fixture f = {0};
    CHECK(su_init() == 0);
    f.base = event_base_new();
    CHECK(event_base_priority_init(f.base, 3) == 0);
    f.root = evport_root_create(f.base, NULL);
    if (!f.root) {
        fprintf(stderr, "evport_root_create() failed: cannot go on\n");
        exit(1);
    }
    return f;
}

static void teardown(struct fixture *f)
{
    su_root_destroy(f->root);
    event_base_free(f->base);
    su_deinit();
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

/* Run the loop until *count reaches target or timeout_ms pass. */
static int run_until(struct event_base *base, const int *count, int target,
                     int timeout_ms)
{
    int expired = 0;
    struct event *guard = evtimer_new(base, on_guard, &expired);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(guard, &tv);
    while (*count < target && !expired)
        if (event_base_loop(base, EVLOOP_ONCE) < 0)
            break;
    event_free(guard);
    return *count >= target;
}

static void run_for(struct event_base *base, int ms)
{
    static const int never = 0;
    run_until(base, &never, 1, ms);
}

static struct sockaddr_in loopback(const char *ip, uint16_t port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &sin.sin_addr);
    return sin;
}

static int bound(int type, const char *ip, uint16_t *port)
{
    int s = socket(AF_INET, type | SOCK_NONBLOCK, 0);
    struct sockaddr_in sin = loopback(ip, 0);
    CHECK(bind(s, (struct sockaddr *)&sin, sizeof sin) == 0);
    socklen_t len = sizeof sin;
    getsockname(s, (struct sockaddr *)&sin, &len);
    if (port)
        *port = ntohs(sin.sin_port);
    return s;
}

/* ---- Datagrams ---------------------------------------------------------------- */

struct reads {
    int calls; /* the wait's callback */
    int got;   /* datagrams it read */
    char last[16];
};

static int on_read_all(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
    (void)magic;
    struct reads *r = (struct reads *)arg;
    r->calls++;
    ssize_t n = recv(w->fd, r->last, sizeof r->last - 1, MSG_DONTWAIT);
    if (n >= 0) {
        r->last[n] = '\0';
        r->got++;
    }
    return 0;
}

struct screen {
    uint16_t blocked_port;
    int calls;
    int heads_ok;
};

static bool drop_port(const struct sockaddr *from, socklen_t len, const char *head,
                      size_t headlen, void *arg)
{
    struct screen *s = arg;
    (void)len;
    s->calls++;
    s->heads_ok += headlen == 5 && memcmp(head, "hello", 5) == 0;
    return ntohs(((const struct sockaddr_in *)from)->sin_port) == s->blocked_port;
}

static void datagram_filter(void)
{
    struct fixture f = setup();
    uint16_t rport, aport, bport;
    int r = bound(SOCK_DGRAM, "127.0.0.1", &rport);
    int a = bound(SOCK_DGRAM, "127.0.0.1", &aport);
    int b = bound(SOCK_DGRAM, "127.0.0.1", &bport);
    struct sockaddr_in to = loopback("127.0.0.1", rport);
    struct reads rd = {0};
    su_wait_t w;
    CHECK(su_wait_create(&w, r, SU_WAIT_IN) == 0);
    int index = su_root_register(f.root, &w, on_read_all, (su_wakeup_arg_t *)&rd, 0);
    struct screen sc = {.blocked_port = aport};
    evport_set_datagram_filter(f.root, drop_port, &sc);
    /* Only dropped datagrams waiting: the callback is not woken. */
    for (int i = 0; i < 100; i++)
        CHECK(sendto(a, "hello", 5, 0, (struct sockaddr *)&to, sizeof to) == 5);
    CHECK(run_until(f.base, &sc.calls, 100, 1000));
    run_for(f.base, 50);
    CHECK(rd.calls == 0 && sc.heads_ok == 100);
    /* Mixed: the others' reach the callback, in order. */
    CHECK(sendto(a, "hello", 5, 0, (struct sockaddr *)&to, sizeof to) == 5);
    CHECK(sendto(b, "hello", 5, 0, (struct sockaddr *)&to, sizeof to) == 5);
    CHECK(sendto(a, "hello", 5, 0, (struct sockaddr *)&to, sizeof to) == 5);
    CHECK(sendto(b, "hellp", 5, 0, (struct sockaddr *)&to, sizeof to) == 5);
    CHECK(run_until(f.base, &rd.got, 2, 1000));
    run_for(f.base, 50);
    CHECK(rd.got == 2 && strcmp(rd.last, "hellp") == 0);
    /* Removed: everything goes through. */
    evport_set_datagram_filter(f.root, NULL, NULL);
    CHECK(sendto(a, "hello", 5, 0, (struct sockaddr *)&to, sizeof to) == 5);
    CHECK(run_until(f.base, &rd.got, 3, 1000));
    CHECK(su_root_deregister(f.root, index) == index);
    teardown(&f);
    close(r);
    close(a);
    close(b);
}

/* A callback reading one datagram per call, as sofia's UDP transport does,
 * after asking its length. */
struct batch {
    su_root_t *root;
    su_wait_t *wait;
    int calls, sizes_ok, socket_ok, observed;
    int unregister_at; /* unregister itself on this call (0: never) */
};

static int on_read_one(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
    (void)magic;
    struct batch *b = (struct batch *)arg;
    b->calls++;
    char buf[64];
    issize_t size = su_getmsgsize(w->fd);
    ssize_t n = recv(w->fd, buf, sizeof buf, MSG_DONTWAIT);
    b->sizes_ok += n > 0 && size == n;
    b->socket_ok += dgram_socket() == w->fd;
    if (b->calls == b->unregister_at)
        su_root_unregister(b->root, b->wait, on_read_one, arg);
    return 0;
}

static void count_observed(const struct sockaddr *from, socklen_t len, void *arg)
{
    (void)from;
    (void)len;
    ((struct batch *)arg)->observed++;
}

static void datagram_batches(void)
{
    struct fixture f = setup();
    uint16_t rport;
    int r = bound(SOCK_DGRAM, "127.0.0.1", &rport);
    int a = bound(SOCK_DGRAM, "127.0.0.1", NULL);
    struct sockaddr_in to = loopback("127.0.0.1", rport);
    su_wait_t w;
    CHECK(su_wait_create(&w, r, SU_WAIT_IN) == 0);
    struct batch b = {.root = f.root, .wait = &w};
    int index = su_root_register(f.root, &w, on_read_one, (su_wakeup_arg_t *)&b, 0);
    evport_set_datagram_observer(f.root, count_observed, &b);
    /* More than a batch waiting, of lengths 1 to 9: one loop turn reads a
     * batch, the next the rest; each length answered from the peek. */
    int more = EVPORT_READ_BATCH + 8;
    for (int i = 0; i < more; i++)
        CHECK(sendto(a, "123456789", (size_t)(1 + i % 9), 0, (struct sockaddr *)&to,
                     sizeof to) == 1 + i % 9);
    usleep(20000);
    CHECK(event_base_loop(f.base, EVLOOP_ONCE) == 0);
    CHECK(b.calls == EVPORT_READ_BATCH);
    CHECK(run_until(f.base, &b.calls, more, 1000));
    run_for(f.base, 20);
    CHECK(b.calls == more && b.sizes_ok == more && b.socket_ok == more);
    CHECK(b.observed == more);
    CHECK(dgram_socket() == -1);
    /* A callback that unregisters itself ends the batch. */
    b.unregister_at = b.calls + 2;
    for (int i = 0; i < 5; i++)
        CHECK(sendto(a, "hello", 5, 0, (struct sockaddr *)&to, sizeof to) == 5);
    usleep(20000);
    run_for(f.base, 50);
    CHECK(b.calls == more + 2);
    CHECK(evport_waits(f.root) == 0);
    (void)index;
    evport_set_datagram_observer(f.root, NULL, NULL);
    teardown(&f);
    close(r);
    close(a);
}

static void datagram_blocklist(void)
{
    struct fixture f = setup();
    uint16_t rport;
    int r = bound(SOCK_DGRAM, "127.0.0.1", &rport);
    struct sockaddr_in to = loopback("127.0.0.1", rport);
    struct reads rd = {0};
    su_wait_t w;
    CHECK(su_wait_create(&w, r, SU_WAIT_IN) == 0);
    int index = su_root_register(f.root, &w, on_read_all, (su_wakeup_arg_t *)&rd, 0);
    /* 300 addresses, 127.1.0.0 to 127.1.1.43 stepping by 1, and 127.0.0.2. */
    uint32_t v[301];
    for (int i = 0; i < 300; i++)
        v[i] = htonl((127u << 24) | (1u << 16) | (uint32_t)i);
    v[300] = htonl((127u << 24) | 2u);
    CHECK(evport_set_datagram_blocklist(f.root, v, 301) == 301);
    const char *blocked[] = {"127.0.0.2", "127.1.0.0", "127.1.0.150", "127.1.1.43"};
    const char *passed[] = {"127.0.0.3", "127.1.1.44", "127.0.255.255"};
    for (size_t i = 0; i < 4; i++) {
        int s = bound(SOCK_DGRAM, blocked[i], NULL);
        CHECK(sendto(s, "hello", 5, 0, (struct sockaddr *)&to, sizeof to) == 5);
        close(s);
    }
    for (size_t i = 0; i < 3; i++) {
        int s = bound(SOCK_DGRAM, passed[i], NULL);
        CHECK(sendto(s, "hello", 5, 0, (struct sockaddr *)&to, sizeof to) == 5);
        close(s);
    }
    CHECK(run_until(f.base, &rd.got, 3, 1000));
    run_for(f.base, 50);
    CHECK(rd.got == 3);
    /* Emptied: the kernel lets everything through again. */
    CHECK(evport_set_datagram_blocklist(f.root, NULL, 0) == 0);
    int s = bound(SOCK_DGRAM, "127.0.0.2", NULL);
    CHECK(sendto(s, "hello", 5, 0, (struct sockaddr *)&to, sizeof to) == 5);
    close(s);
    CHECK(run_until(f.base, &rd.got, 4, 1000));
    CHECK(su_root_deregister(f.root, index) == index);
    teardown(&f);
    close(r);
}

/* ---- Accepted connections ----------------------------------------------------- */

struct conn_log {
    su_root_t *root;
    int accepted, readable, spoke, closed, closed_watched;
    int bytes;          /* read by the connections' callback */
    int hangups;        /* callbacks with POLLHUP and no POLLIN */
    int close_readable; /* `readable` closes from now on */
};

static struct conn_log clog;

static enum evport_conn_verdict hook_accepted(const struct sockaddr *peer, socklen_t len,
                                              void *arg)
{
    (void)len;
    (void)arg;
    clog.accepted++;
    char ip[32];
    inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, ip, sizeof ip);
    if (strcmp(ip, "127.0.0.2") == 0)
        return EVPORT_CONN_REFUSE;
    if (strcmp(ip, "127.0.0.3") == 0)
        return EVPORT_CONN_WATCH;
    return EVPORT_CONN_ACCEPT;
}

static bool hook_readable(const struct sockaddr *peer, socklen_t len, void *arg)
{
    (void)peer;
    (void)len;
    (void)arg;
    clog.readable++;
    return clog.close_readable;
}

static void hook_spoke(const struct sockaddr *peer, socklen_t len, void *arg)
{
    (void)peer;
    (void)len;
    (void)arg;
    clog.spoke++;
}

static void hook_closed(const struct sockaddr *peer, socklen_t len, bool watched,
                        void *arg)
{
    (void)peer;
    (void)len;
    (void)arg;
    clog.closed++;
    clog.closed_watched += watched;
}

static void conn_close(su_wait_t *w)
{
    int fd = w->fd;
    su_root_unregister(clog.root, w, NULL, NULL);
    close(fd);
}

/* Like tport: read what there is; on a hang-up or EOF, close. */
static int on_conn(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
    (void)magic;
    (void)arg;
    if ((w->revents & POLLHUP) && !(w->revents & POLLIN)) {
        clog.hangups++;
        conn_close(w);
        return 0;
    }
    char buf[256];
    ssize_t n = recv(w->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0)
        clog.bytes += (int)n;
    else if (n == 0)
        conn_close(w);
    return 0;
}

static int on_listen(su_root_magic_t *magic, su_wait_t *w, su_wakeup_arg_t *arg)
{
    (void)magic;
    (void)arg;
    int c = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK);
    if (c < 0)
        return 0;
    su_wait_t cw;
    su_wait_create(&cw, c, SU_WAIT_IN);
    su_root_register(clog.root, &cw, on_conn, NULL, 0);
    return 0;
}

static int connect_from(const char *ip, uint16_t port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in src = loopback(ip, 0), dst = loopback("127.0.0.1", port);
    CHECK(bind(s, (struct sockaddr *)&src, sizeof src) == 0);
    CHECK(connect(s, (struct sockaddr *)&dst, sizeof dst) == 0);
    return s;
}

/* Whether the switch side closed s (EOF or reset) within the loop's ms. */
static bool closed_within(struct fixture *f, int s, int ms)
{
    for (int t = 0; t < ms; t += 10) {
        run_for(f->base, 10);
        char b;
        ssize_t n = recv(s, &b, 1, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            return true;
    }
    return false;
}

static void connection_hooks(void)
{
    struct fixture f = setup();
    memset(&clog, 0, sizeof clog);
    clog.root = f.root;
    uint16_t port;
    int l = bound(SOCK_STREAM, "127.0.0.1", &port);
    CHECK(listen(l, 16) == 0);
    const struct evport_conn_hooks hooks = {.accepted = hook_accepted,
                                            .readable = hook_readable,
                                            .spoke = hook_spoke,
                                            .closed = hook_closed,
                                            .silent_ms = 500};
    evport_set_connection_hooks(f.root, &hooks);
    su_wait_t lw;
    CHECK(su_wait_create(&lw, l, SU_WAIT_IN) == 0);
    int lindex = su_root_register(f.root, &lw, on_listen, NULL, 0);

    /* Refused: what it sends is never read; the callback sees a hang-up. */
    int refused = connect_from("127.0.0.2", port);
    CHECK(send(refused, "INVITE", 6, 0) == 6);
    CHECK(closed_within(&f, refused, 1000));
    /* The peer sees the shutdown before the callback has closed its end. */
    CHECK(run_until(f.base, &clog.closed, 1, 1000));
    CHECK(clog.accepted == 1 && clog.bytes == 0 && clog.hangups == 1);
    CHECK(clog.closed == 1 && clog.closed_watched == 0);
    close(refused);

    /* Watched and silent: closed after its deadline, still watched. */
    int silent = connect_from("127.0.0.3", port);
    CHECK(!closed_within(&f, silent, 100));
    CHECK(closed_within(&f, silent, 2000));
    CHECK(run_until(f.base, &clog.closed, 2, 1000));
    CHECK(clog.closed == 2 && clog.closed_watched == 1 && clog.spoke == 0);
    close(silent);

    /* Watched, and it speaks in time: read, and watched no more. */
    int talker = connect_from("127.0.0.3", port);
    CHECK(send(talker, "REGISTER", 8, 0) == 8);
    CHECK(run_until(f.base, &clog.bytes, 8, 1000));
    CHECK(clog.spoke == 1);
    CHECK(!closed_within(&f, talker, 300));

    /* Accepted; `readable` then closes it unread. */
    int open = connect_from("127.0.0.4", port);
    CHECK(send(open, "OPTIONS", 7, 0) == 7);
    CHECK(run_until(f.base, &clog.bytes, 15, 1000));
    clog.close_readable = 1;
    CHECK(send(open, "OPTIONS", 7, 0) == 7);
    CHECK(closed_within(&f, open, 1000));
    CHECK(run_until(f.base, &clog.closed, 3, 1000));
    CHECK(clog.bytes == 15 && clog.closed == 3);
    close(open);
    close(talker);
    CHECK(run_until(f.base, &clog.closed, 4, 1000));
    CHECK(clog.closed == 4 && clog.closed_watched == 1);

    CHECK(su_root_deregister(f.root, lindex) == lindex);
    evport_set_connection_hooks(f.root, NULL);
    teardown(&f);
}

TEST_MAIN(CASE(datagram_filter), CASE(datagram_batches), CASE(datagram_blocklist),
          CASE(connection_hooks))
