/* The control socket, driven from raw client sockets in this process: each
 * wait interleaves event_base_loop(EVLOOP_NONBLOCK) with polling the client,
 * so the server and the client take turns on one thread. */
#include "check.h"
#include "control.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <linux/sockios.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define WAIT_MS 5000
#define DEFER_MS 200

static struct event_base *base;
static int evals;         /* eval callbacks so far */
static int deferred_live; /* deferred answers not yet sent */
static char last_chunk[64];

/* ---- the eval callback ---------------------------------------------------- */

/* Chunks starting with "sleep" are answered DEFER_MS later from a timer, as a
 * chunk that sleeps would be; "close" answers and then closes the whole
 * control socket from inside the callback; anything else is echoed at once,
 * prefixed with the mode character. A chunk with "print" in it prints "one"
 * and "two" at once (and "three" before a deferred answer); "flood" prints
 * 6 MiB at once. */
struct deferred {
    struct event *ev;
    struct control_request *req;
    char *text;
    size_t len;
    bool print;
};

#define FLOOD_PIECE (1u << 20)

static struct control *ctl_for_close;

static void deferred_cb(evutil_socket_t fd, short what, void *arg)
{
    struct deferred *d = arg;
    (void)fd;
    (void)what;
    if (d->print)
        control_output(d->req, "three\n", 6);
    control_reply(d->req, CONTROL_OK, d->text, d->len);
    event_free(d->ev);
    free(d->text);
    free(d);
    deferred_live--;
}

static void eval(struct control_request *req, enum control_mode mode, const char *chunk,
                 size_t len, void *arg)
{
    (void)arg;
    evals++;
    snprintf(last_chunk, sizeof last_chunk, "%.*s", (int)(len < 63 ? len : 63), chunk);
    char *text = malloc(len + 1);
    text[0] = (char)mode;
    memcpy(text + 1, chunk, len);
    bool print = strstr(chunk, "print") != NULL;
    if (print) {
        control_output(req, "one\n", 4);
        control_output(req, "two\n", 4);
    }
    if (len == 5 && memcmp(chunk, "flood", 5) == 0) {
        char *big = malloc(FLOOD_PIECE);
        memset(big, 'x', FLOOD_PIECE);
        for (int i = 0; i < 6; i++)
            control_output(req, big, FLOOD_PIECE);
        free(big);
    }
    if (len >= 5 && memcmp(chunk, "sleep", 5) == 0) {
        struct deferred *d = calloc(1, sizeof *d);
        d->print = print;
        d->req = req;
        d->text = text;
        d->len = len + 1;
        d->ev = evtimer_new(base, deferred_cb, d);
        struct timeval tv = {0, DEFER_MS * 1000};
        evtimer_add(d->ev, &tv);
        deferred_live++;
        return;
    }
    control_reply(req, CONTROL_OK, text, len + 1);
    free(text);
    if (len == 5 && memcmp(chunk, "close", 5) == 0 && ctl_for_close) {
        control_close(ctl_for_close);
        ctl_for_close = NULL;
    }
}

/* ---- helpers -------------------------------------------------------------- */

static char tmpdir[64];

static void make_tmpdir(void)
{
    const char *t = getenv("MOON_TEST_TMP");
    if (!t || !*t || strlen(t) > 60)
        t = "/tmp";
    snprintf(tmpdir, sizeof tmpdir, "%s", t);
    for (char *p = tmpdir + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(tmpdir, 0700);
            *p = '/';
        }
    }
    mkdir(tmpdir, 0700);
}

static const char *sock_path(const char *name)
{
    static char path[160];
    if (!tmpdir[0])
        make_tmpdir();
    snprintf(path, sizeof path, "%s/c%d-%s", tmpdir, (int)getpid(), name);
    unlink(path);
    return path;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/* One loop turn for the server, then up to 5 ms for the client. */
static void turn(int fd, short events)
{
    event_base_loop(base, EVLOOP_NONBLOCK);
    struct pollfd p = {.fd = fd, .events = events};
    poll(&p, fd >= 0 ? 1 : 0, 5);
}

static void pump(int ms)
{
    long end = now_ms() + ms;
    while (now_ms() < end)
        turn(-1, 0);
}

static int dial(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Send all of buf without blocking the server out: it reads as we write. */
static bool send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    long end = now_ms() + WAIT_MS;
    while (len > 0 && now_ms() < end) {
        ssize_t w = send(fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            len -= (size_t)w;
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
            return false;
        }
        if (len > 0)
            turn(fd, POLLOUT);
    }
    return len == 0;
}

static size_t frame(unsigned char *out, int mode, const char *chunk, size_t len)
{
    out[0] = (unsigned char)mode;
    out[1] = (unsigned char)(len >> 24);
    out[2] = (unsigned char)(len >> 16);
    out[3] = (unsigned char)(len >> 8);
    out[4] = (unsigned char)len;
    memcpy(out + 5, chunk, len);
    return len + 5;
}

static bool request(int fd, int mode, const char *chunk)
{
    unsigned char buf[256];
    size_t n = frame(buf, mode, chunk, strlen(chunk));
    return send_all(fd, buf, n);
}

/* A client's receive side: bytes read so far, which may hold several
 * replies. */
struct conn {
    int fd;
    unsigned char *buf;
    size_t len, cap;
    bool eof;
};

/* Wait for one reply. Returns 1 with *status and a malloc'd *text, 0 if the
 * server closed the connection first, -1 on timeout. */
static int get_reply(struct conn *c, int *status, char **text)
{
    long end = now_ms() + WAIT_MS;
    for (;;) {
        if (c->len >= 5) {
            size_t n = (size_t)c->buf[1] << 24 | (size_t)c->buf[2] << 16 |
                       (size_t)c->buf[3] << 8 | c->buf[4];
            if (c->len >= 5 + n) {
                *status = c->buf[0];
                *text = malloc(n + 1);
                memcpy(*text, c->buf + 5, n);
                (*text)[n] = '\0';
                memmove(c->buf, c->buf + 5 + n, c->len - 5 - n);
                c->len -= 5 + n;
                return 1;
            }
        }
        if (c->eof)
            return 0;
        if (now_ms() >= end)
            return -1;
        if (c->cap - c->len < 65536) {
            c->cap = c->cap * 2 + 65536;
            c->buf = realloc(c->buf, c->cap);
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT);
        if (r > 0)
            c->len += (size_t)r;
        else if (r == 0 || (errno != EAGAIN && errno != EINTR))
            c->eof = true;
        else
            turn(c->fd, POLLIN);
    }
}

/* Expect one reply with this status and text. */
static void expect(struct conn *c, int status, const char *text)
{
    int st = -1;
    char *t = NULL;
    int r = get_reply(c, &st, &t);
    CHECK(r == 1);
    CHECK(st == status);
    CHECK_STR_CONTAINS(t, text);
    free(t);
}

/* The server closes the connection (no more replies). */
static bool expect_eof(struct conn *c)
{
    int st;
    char *t = NULL;
    int r = get_reply(c, &st, &t);
    free(t);
    return r == 0;
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static struct control *open_ok(const char *path)
{
    struct control *c = NULL;
    int r = control_open(&c, base, path, eval, NULL);
    CHECK(r == 0);
    CHECK(c != NULL);
    return c;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    c->fd = -1;
    c->buf = NULL;
}

static void setup(void)
{
    base = event_base_new();
    evals = 0;
    deferred_live = 0;
}

static void teardown(void)
{
    /* Let every deferred answer fire, so nothing is left for ASan. */
    long end = now_ms() + WAIT_MS;
    while (deferred_live > 0 && now_ms() < end)
        turn(-1, 0);
    CHECK(deferred_live == 0);
    event_base_free(base);
    base = NULL;
}

/* ---- cases ---------------------------------------------------------------- */

static void socket_is_private(void)
{
    setup();
    mode_t old = umask(0); /* the widest umask: the module must not rely on ours */
    const char *path = sock_path("mode");
    struct control *c = open_ok(path);
    mode_t during = umask(old); /* and control_open put ours back */
    CHECK(during == 0);
    struct stat st;
    CHECK(lstat(path, &st) == 0);
    CHECK(S_ISSOCK(st.st_mode));
    CHECK((st.st_mode & 07777) == 0600);
    control_close(c);
    CHECK(lstat(path, &st) < 0 && errno == ENOENT);
    teardown();
}

static void round_trip(void)
{
    setup();
    const char *path = sock_path("rt");
    struct control *c = open_ok(path);
    struct conn k = {.fd = dial(path)};
    CHECK(k.fd >= 0);
    CHECK(request(k.fd, 'e', "return 1+1"));
    expect(&k, CONTROL_OK, "ereturn 1+1");
    CHECK(strcmp(last_chunk, "return 1+1") == 0);
    /* same connection, interactive mode, then an empty chunk */
    CHECK(request(k.fd, 'i', "x"));
    expect(&k, CONTROL_OK, "ix");
    CHECK(request(k.fd, 'e', ""));
    int st = -1;
    char *t = NULL;
    CHECK(get_reply(&k, &st, &t) == 1);
    CHECK(st == CONTROL_OK && t && strcmp(t, "e") == 0);
    free(t);
    CHECK(evals == 3);
    conn_close(&k);
    control_close(c);
    teardown();
}

/* A chunk of exactly CONTROL_MAX_CHUNK bytes goes through, both ways, in
 * many partial reads and writes. */
static void largest_chunk(void)
{
    setup();
    const char *path = sock_path("big");
    struct control *c = open_ok(path);
    struct conn k = {.fd = dial(path)};
    size_t n = CONTROL_MAX_CHUNK;
    unsigned char *buf = malloc(n + 5);
    memset(buf + 5, 'a', n);
    buf[5 + n - 1] = 'z';
    buf[0] = 'e';
    buf[1] = (unsigned char)(n >> 24);
    buf[2] = (unsigned char)(n >> 16);
    buf[3] = (unsigned char)(n >> 8);
    buf[4] = (unsigned char)n;
    CHECK(send_all(k.fd, buf, n + 5));
    int st = -1;
    char *t = NULL;
    CHECK(get_reply(&k, &st, &t) == 1);
    CHECK(st == CONTROL_OK);
    CHECK(t && strlen(t) == n + 1 && t[0] == 'e' && t[1] == 'a' && t[n] == 'z');
    free(t);
    free(buf);
    conn_close(&k);
    control_close(c);
    teardown();
}

/* Two requests in one write: answered in order, and the second is not
 * evaluated until the first (deferred) one is answered. */
static void pipelined_in_order(void)
{
    setup();
    const char *path = sock_path("pipe");
    struct control *c = open_ok(path);
    struct conn k = {.fd = dial(path)};
    unsigned char buf[64];
    size_t n = frame(buf, 'e', "sleep1", 6);
    n += frame(buf + n, 'i', "second", 6);
    n += frame(buf + n, 'e', "third", 5);
    CHECK(send_all(k.fd, buf, n));
    /* well before the deferred answer: only the first was evaluated */
    pump(DEFER_MS / 2);
    CHECK(evals == 1);
    CHECK(strcmp(last_chunk, "sleep1") == 0);
    expect(&k, CONTROL_OK, "esleep1");
    expect(&k, CONTROL_OK, "isecond");
    expect(&k, CONTROL_OK, "ethird");
    CHECK(evals == 3);
    conn_close(&k);
    control_close(c);
    teardown();
}

/* Input that arrives while an answer is outstanding stays with the kernel:
 * the server does not read then, so a client cannot make it buffer without
 * bound. */
static void no_reading_while_pending(void)
{
    setup();
    const char *path = sock_path("bp");
    struct control *c = open_ok(path);
    struct conn k = {.fd = dial(path)};
    CHECK(request(k.fd, 'e', "sleep1"));
    pump(DEFER_MS / 4);
    CHECK(evals == 1);
    CHECK(request(k.fd, 'e', "second"));
    pump(DEFER_MS / 4);
    int unread = 0;
    CHECK(ioctl(k.fd, SIOCOUTQ, &unread) == 0);
    CHECK(unread > 0);
    expect(&k, CONTROL_OK, "esleep1");
    expect(&k, CONTROL_OK, "esecond");
    CHECK(ioctl(k.fd, SIOCOUTQ, &unread) == 0);
    CHECK(unread == 0);
    CHECK(evals == 2);
    conn_close(&k);
    control_close(c);
    teardown();
}

static void deferred_reply(void)
{
    setup();
    const char *path = sock_path("late");
    struct control *c = open_ok(path);
    struct conn k = {.fd = dial(path)};
    long t0 = now_ms();
    CHECK(request(k.fd, 'e', "sleep a while"));
    expect(&k, CONTROL_OK, "esleep a while");
    CHECK(now_ms() - t0 >= DEFER_MS - 5);
    /* the connection is still good afterwards */
    CHECK(request(k.fd, 'e', "after"));
    expect(&k, CONTROL_OK, "eafter");
    conn_close(&k);
    control_close(c);
    teardown();
}

/* What a chunk prints comes as output frames, in order, before its answer,
 * also when the answer comes later. */
static void output_before_answer(void)
{
    setup();
    const char *path = sock_path("print");
    struct control *c = open_ok(path);
    struct conn k = {.fd = dial(path)};
    CHECK(request(k.fd, 'e', "print now"));
    expect(&k, CONTROL_OUTPUT, "one\n");
    expect(&k, CONTROL_OUTPUT, "two\n");
    expect(&k, CONTROL_OK, "eprint now");
    CHECK(request(k.fd, 'i', "sleep, then print"));
    expect(&k, CONTROL_OUTPUT, "one\n");
    expect(&k, CONTROL_OUTPUT, "two\n");
    expect(&k, CONTROL_OUTPUT, "three\n");
    expect(&k, CONTROL_OK, "isleep, then print");
    conn_close(&k);
    control_close(c);
    teardown();
}

/* Output beyond CONTROL_MAX_PENDING_OUTPUT waiting for the client is
 * dropped, and the client told how much, before the answer. Output for a
 * client that left is dropped without harm. */
static void output_dropped(void)
{
    setup();
    const char *path = sock_path("flood");
    struct control *c = open_ok(path);
    struct conn k = {.fd = dial(path)};
    CHECK(request(k.fd, 'e', "flood"));
    for (int i = 0; i < 3; i++) {
        int st = -1;
        char *t = NULL;
        CHECK(get_reply(&k, &st, &t) == 1);
        CHECK(st == CONTROL_OUTPUT);
        CHECK(t && strlen(t) == FLOOD_PIECE);
        free(t);
    }
    expect(&k, CONTROL_OUTPUT, "[3145728 bytes of output dropped");
    expect(&k, CONTROL_OK, "eflood");
    struct conn gone = {.fd = dial(path)};
    CHECK(request(gone.fd, 'e', "sleep, print, nobody reads"));
    pump(20);
    conn_close(&gone);
    conn_close(&k);
    long end = now_ms() + WAIT_MS; /* the deferred output and answer find no client */
    while (deferred_live > 0 && now_ms() < end)
        turn(-1, 0);
    control_close(c);
    teardown();
}

/* The client leaves before its deferred answer: the answer is dropped, the
 * server's socket is closed, and other clients carry on. */
static void client_leaves_early(void)
{
    setup();
    const char *path = sock_path("gone");
    struct control *c = open_ok(path);
    pump(10);
    int fds_before = count_fds();
    struct conn k = {.fd = dial(path)};
    CHECK(request(k.fd, 'e', "sleep then nobody"));
    /* a second request stays queued behind it */
    CHECK(request(k.fd, 'e', "queued"));
    pump(DEFER_MS / 2);
    CHECK(evals == 1);
    conn_close(&k);
    pump(DEFER_MS * 3);
    CHECK(deferred_live == 0);
    CHECK(count_fds() == fds_before);
    struct conn k2 = {.fd = dial(path)};
    CHECK(request(k2.fd, 'e', "still here"));
    expect(&k2, CONTROL_OK, "estill here");
    conn_close(&k2);
    control_close(c);
    teardown();
}

/* control_close with an answer outstanding: the client sees the connection
 * close; the request stays valid and its later answer is dropped. */
static void close_with_pending(void)
{
    setup();
    const char *path = sock_path("cp");
    struct control *c = open_ok(path);
    struct conn k = {.fd = dial(path)};
    CHECK(request(k.fd, 'e', "sleep past close"));
    pump(DEFER_MS / 2);
    CHECK(evals == 1);
    CHECK(deferred_live == 1);
    control_close(c);
    CHECK(expect_eof(&k));
    pump(DEFER_MS * 3);
    CHECK(deferred_live == 0);
    conn_close(&k);
    teardown();
}

/* control_close from inside the eval callback, with the answer given. */
static void close_from_eval(void)
{
    setup();
    const char *path = sock_path("ce");
    struct control *c = open_ok(path);
    ctl_for_close = c;
    struct conn k = {.fd = dial(path)};
    unsigned char buf[64];
    size_t n = frame(buf, 'e', "close", 5);
    n += frame(buf + n, 'e', "never", 5);
    CHECK(send_all(k.fd, buf, n));
    pump(20);
    CHECK(ctl_for_close == NULL);
    CHECK(evals == 1);
    /* the answer was queued but the connection closed with the control */
    CHECK(expect_eof(&k));
    struct stat st;
    CHECK(lstat(path, &st) < 0);
    conn_close(&k);
    teardown();
}

/* A client that sends its request and then shuts down its sending side still
 * gets the answer. */
static void half_close(void)
{
    setup();
    const char *path = sock_path("half");
    struct control *c = open_ok(path);
    struct conn k = {.fd = dial(path)};
    CHECK(request(k.fd, 'e', "sleep then eof"));
    CHECK(request(k.fd, 'e', "then this"));
    shutdown(k.fd, SHUT_WR);
    expect(&k, CONTROL_OK, "esleep then eof");
    expect(&k, CONTROL_OK, "ethen this");
    CHECK(expect_eof(&k));
    conn_close(&k);
    control_close(c);
    teardown();
}

static void bad_mode(void)
{
    setup();
    const char *path = sock_path("bad");
    struct control *c = open_ok(path);
    struct conn k = {.fd = dial(path)};
    /* a good request first, then a bad one in the same write */
    unsigned char buf[64];
    size_t n = frame(buf, 'e', "ok", 2);
    n += frame(buf + n, 'x', "nope", 4);
    CHECK(send_all(k.fd, buf, n));
    expect(&k, CONTROL_OK, "eok");
    expect(&k, CONTROL_ERROR, "bad request");
    CHECK(expect_eof(&k));
    CHECK(evals == 1);
    conn_close(&k);
    control_close(c);
    teardown();
}

static void oversized(void)
{
    setup();
    const char *path = sock_path("huge");
    struct control *c = open_ok(path);
    struct conn k = {.fd = dial(path)};
    unsigned char hdr[5];
    uint32_t n = CONTROL_MAX_CHUNK + 1;
    hdr[0] = 'e';
    hdr[1] = (unsigned char)(n >> 24);
    hdr[2] = (unsigned char)(n >> 16);
    hdr[3] = (unsigned char)(n >> 8);
    hdr[4] = (unsigned char)n;
    CHECK(send_all(k.fd, hdr, 5));
    expect(&k, CONTROL_ERROR, "bad request");
    CHECK(expect_eof(&k));
    CHECK(evals == 0);
    conn_close(&k);
    control_close(c);
    teardown();
}

/* A socket file with no listener (a switch killed with -9) is replaced. */
static void stale_socket_replaced(void)
{
    setup();
    const char *path = sock_path("stale");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    close(fd);
    struct stat st;
    CHECK(lstat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    CHECK(dial(path) < 0); /* nobody answers */
    struct control *c = open_ok(path);
    struct conn k = {.fd = dial(path)};
    CHECK(k.fd >= 0);
    CHECK(request(k.fd, 'e', "fresh"));
    expect(&k, CONTROL_OK, "efresh");
    conn_close(&k);
    control_close(c);
    teardown();
}

/* A second control_open on a path a live switch answers on fails, and leaves
 * the first one working. */
static void live_socket_kept(void)
{
    setup();
    const char *path = sock_path("live");
    struct control *c = open_ok(path);
    struct control *c2 = (struct control *)&c2;
    CHECK(control_open(&c2, base, path, eval, NULL) == -EADDRINUSE);
    CHECK(c2 == NULL);
    struct conn k = {.fd = dial(path)};
    CHECK(request(k.fd, 'e', "first"));
    expect(&k, CONTROL_OK, "efirst");
    conn_close(&k);
    control_close(c);
    teardown();
}

static void refuses_other_files(void)
{
    setup();
    const char *path = sock_path("file");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    struct control *c = NULL;
    CHECK(control_open(&c, base, path, eval, NULL) == -EEXIST);
    struct stat st;
    CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
    unlink(path);

    char longp[200];
    memset(longp, 'x', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    CHECK(control_open(&c, base, longp, eval, NULL) == -ENAMETOOLONG);
    CHECK(c == NULL);
    teardown();
}

/* Many clients at once, each with a deferred answer outstanding. */
static void many_clients(void)
{
    setup();
    const char *path = sock_path("many");
    struct control *c = open_ok(path);
    enum { N = 20 };
    struct conn k[N];
    for (int i = 0; i < N; i++) {
        k[i] = (struct conn){.fd = dial(path)};
        turn(-1, 0); /* accept it: a blocking connect waits once the backlog is full */
        char chunk[32];
        snprintf(chunk, sizeof chunk, "%s%d", i % 2 ? "sleep" : "now", i);
        CHECK(request(k[i].fd, 'e', chunk));
    }
    for (int i = N - 1; i >= 0; i--) {
        char want[32];
        snprintf(want, sizeof want, "e%s%d", i % 2 ? "sleep" : "now", i);
        expect(&k[i], CONTROL_OK, want);
        conn_close(&k[i]);
    }
    control_close(c);
    teardown();
}

TEST_MAIN(CASE(socket_is_private), CASE(round_trip), CASE(largest_chunk),
          CASE(pipelined_in_order), CASE(no_reading_while_pending), CASE(deferred_reply),
          CASE(output_before_answer), CASE(output_dropped), CASE(client_leaves_early),
          CASE(close_with_pending), CASE(close_from_eval), CASE(half_close),
          CASE(bad_mode), CASE(oversized), CASE(stale_socket_replaced),
          CASE(live_socket_kept), CASE(refuses_other_files), CASE(many_clients))
