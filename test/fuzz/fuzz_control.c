/* libFuzzer harness for core/control.c: the control socket's framing.
 *
 * Input: one byte of options, then the bytes a client sends, over a real
 * unix socket to a control opened on a temporary path. The options choose
 *   bits 0-1  how the evaluation callback answers: at once, later (from the
 *             loop, after the callback returned), or alternating
 *   bits 2-3  how the client ends: half-close and read every answer to the
 *             end, close at once (answers still owed are then dropped), or
 *             close after one loop turn
 *   bits 4-6  the size of the client's writes (1 byte to all at once)
 * The callback answers each chunk with itself (status OK for 'e',
 * INCOMPLETE for 'i'). When the client half-closes, the answers it reads
 * are checked against the protocol of control.h, worked out here
 * independently: one echo per complete frame, in order, and for a bad
 * mode byte or an oversized length one error answer, then the end. */
#include "control.h"
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#define MAX_DEFERRED 64

static struct event_base *base;
static struct control *ctl;
static char path[256];
static unsigned reply_mode;
static unsigned evals;

/* Requests to answer later, from the loop. */
static struct control_request *deferred[MAX_DEFERRED];
static char *deferred_text[MAX_DEFERRED];
static size_t deferred_len[MAX_DEFERRED];
static enum control_status deferred_status[MAX_DEFERRED];
static unsigned ndeferred;

static void on_eval(struct control_request *req, enum control_mode mode,
                    const char *chunk, size_t len, void *arg)
{
    (void)arg;
    if (chunk[len] != '\0')
        abort(); /* control.h: the chunk is NUL-terminated */
    enum control_status st =
        mode == CONTROL_INTERACTIVE ? CONTROL_INCOMPLETE : CONTROL_OK;
    bool later = reply_mode == 1 || (reply_mode == 2 && evals % 2) || reply_mode == 3;
    evals++;
    if (!later || ndeferred == MAX_DEFERRED) {
        control_reply(req, st, chunk, len);
        return;
    }
    deferred[ndeferred] = req;
    deferred_text[ndeferred] = malloc(len + 1);
    memcpy(deferred_text[ndeferred], chunk, len);
    deferred_len[ndeferred] = len;
    deferred_status[ndeferred] = st;
    ndeferred++;
}

static void answer_deferred(void)
{
    for (unsigned i = 0; i < ndeferred; i++) {
        control_reply(deferred[i], deferred_status[i], deferred_text[i], deferred_len[i]);
        free(deferred_text[i]);
    }
    ndeferred = 0;
}

/* The answers a client sending `in` gets, by control.h's protocol. */
static size_t expected_answers(const uint8_t *in, size_t n, uint8_t *out)
{
    size_t at = 0, o = 0;
    for (;;) {
        if (at >= n)
            break;
        if (in[at] != 'e' && in[at] != 'i') {
            static const char bad[] = "bad request";
            uint8_t h[5] = {CONTROL_ERROR, 0, 0, 0, sizeof bad - 1};
            memcpy(out + o, h, 5);
            memcpy(out + o + 5, bad, sizeof bad - 1);
            o += 5 + sizeof bad - 1;
            break;
        }
        if (n - at < 5)
            break;
        uint32_t len = (uint32_t)in[at + 1] << 24 | (uint32_t)in[at + 2] << 16 |
                       (uint32_t)in[at + 3] << 8 | in[at + 4];
        if (len > CONTROL_MAX_CHUNK) {
            static const char big[] = "bad request: chunk too large";
            uint8_t h[5] = {CONTROL_ERROR, 0, 0, 0, sizeof big - 1};
            memcpy(out + o, h, 5);
            memcpy(out + o + 5, big, sizeof big - 1);
            o += 5 + sizeof big - 1;
            break;
        }
        if (n - at - 5 < len)
            break;
        out[o] = in[at] == 'i' ? CONTROL_INCOMPLETE : CONTROL_OK;
        memcpy(out + o + 1, in + at + 1, 4 + len);
        o += 5 + len;
        at += 5 + len;
    }
    return o;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void turn(void)
{
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    answer_deferred();
    event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* At exit: the socket and its directory go. */
static void cleanup(void)
{
    control_close(ctl);
    *strrchr(path, '/') = '\0';
    rmdir(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!getenv("MOON_FUZZ_LOG"))
        log_set_level(LOG_ERROR);
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(path, sizeof path, "%s/fuzz-control.XXXXXX", tmp);
    if (!mkdtemp(path))
        abort();
    strcat(path, "/c.sock");
    base = event_base_new();
    if (control_open(&ctl, base, path, on_eval, NULL) < 0)
        abort();
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 16384)
        return 0;
    unsigned opt = data[0];
    const uint8_t *in = data + 1;
    size_t n = size - 1;
    reply_mode = opt & 3;
    unsigned end_mode = (opt >> 2) & 3;
    static const size_t chunks[] = {1, 2, 3, 5, 7, 64, 1000, 16384};
    size_t chunk = chunks[(opt >> 4) & 7];

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        abort();
    uint8_t *got = malloc(2 * n + 64);
    size_t ngot = 0;
    bool eof = false;
    for (size_t at = 0; at < n;) {
        size_t w = n - at < chunk ? n - at : chunk;
        ssize_t r = send(fd, in + at, w, MSG_NOSIGNAL);
        if (r < 0 && errno != EAGAIN)
            break; /* the switch closed: a protocol error */
        if (r > 0)
            at += (size_t)r;
        turn();
        ssize_t m;
        while (!eof && ngot < 2 * n + 64 &&
               (m = recv(fd, got + ngot, 2 * n + 64 - ngot, MSG_DONTWAIT)) >= 0) {
            ngot += (size_t)m;
            eof = m == 0;
        }
    }
    if (end_mode == 1) {
        close(fd);
        fd = -1;
    } else if (end_mode == 2) {
        turn();
        close(fd);
        fd = -1;
    } else {
        shutdown(fd, SHUT_WR);
    }
    double deadline = now_ms() + 2000;
    while (fd >= 0 && !eof) {
        turn();
        ssize_t m = recv(fd, got + ngot, 2 * n + 64 - ngot, MSG_DONTWAIT);
        if (m == 0 || (m < 0 && errno != EAGAIN) || ngot == 2 * n + 64)
            eof = true;
        else if (m > 0)
            ngot += (size_t)m;
        if (now_ms() > deadline) {
            fprintf(stderr,
                    "fuzz_control: the connection did not end after half-close\n");
            abort();
        }
    }
    for (int i = 0; i < 4; i++)
        turn();
    if (fd >= 0) {
        uint8_t *want = malloc(2 * n + 64);
        size_t nwant = expected_answers(in, n, want);
        if (nwant != ngot || memcmp(want, got, ngot) != 0) {
            fprintf(stderr, "fuzz_control: expected %zu bytes of answers, got %zu\n",
                    nwant, ngot);
            abort();
        }
        free(want);
        close(fd);
        turn();
    }
    answer_deferred(); /* those whose client went: dropped */
    free(got);
    return 0;
}
