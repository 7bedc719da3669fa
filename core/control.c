/* The control socket: see control.h for the wire protocol.
 *
 * Each client is a non-blocking unix stream socket with a read event, a write
 * event, and an input and an output evbuffer. Writes go through
 * send(MSG_NOSIGNAL), so a client that vanished costs an EPIPE, never a
 * SIGPIPE, whatever the process does with that signal.
 *
 * One request per connection is outstanding at a time: while one waits for
 * its answer, the client's read event is off and further input stays in the
 * input buffer or the kernel, so memory per client is bounded by one frame
 * plus one read, plus what the chunk printed that the client has not read
 * yet (at most CONTROL_MAX_PENDING_OUTPUT) and the answer. A client that half-closes
 * (shutdown(SHUT_WR)) still gets the answers to the complete requests it sent; the
 * connection closes once those are written. */
#include "control.h"
#include "log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#define MOD "control"
#define HEADER_LEN 5
#define READ_SIZE 65536
#define WRITE_IOVS 16
#define ACCEPTS_PER_TURN 16
#define ACCEPT_RETRY_SEC 1

struct client;

struct control {
    struct event_base *base;
    char *path;
    int fd;
    dev_t dev; /* identity of the socket file we bound, so control_close */
    ino_t ino; /* never unlinks a file some other process put there */
    struct event *ev_accept;
    struct event *ev_retry; /* re-arms ev_accept after EMFILE and the like */
    control_eval_h *eval;
    void *arg;
    struct client *clients;
};

struct client {
    struct control *ctl;
    struct client *next;
    struct client **pprev;
    int fd;
    struct event *ev_read;
    struct event *ev_write;
    struct event *ev_resume; /* activated by a late control_reply() */
    struct evbuffer *in;
    struct evbuffer *out;
    struct control_request *pending; /* the outstanding request, if any */
    bool eof;                        /* the peer sent its last byte */
    bool closing;    /* protocol error: flush the error answer, then close */
    bool in_process; /* client_process() is on the stack */
    bool dead;       /* freed while in_process: that frame frees the struct */
};

/* A request lives from its frame's arrival until control_reply(); `cl` is
 * NULL once the client is gone, and the answer is then dropped. */
struct control_request {
    struct client *cl;
    size_t dropped; /* output bytes dropped since the last output frame */
};

/* Close the client's socket and free everything but, if client_process() is
 * on the stack for it, the struct itself (that frame frees it). Its
 * outstanding request, if any, is detached and stays valid for
 * control_reply(). */
static void client_free(struct client *cl)
{
    log_debug(MOD, "client %d closed", cl->fd);
    if (cl->pending) {
        cl->pending->cl = NULL;
        cl->pending = NULL;
    }
    if (cl->pprev) {
        *cl->pprev = cl->next;
        if (cl->next)
            cl->next->pprev = cl->pprev;
        cl->pprev = NULL;
        cl->next = NULL;
    }
    if (cl->ev_read)
        event_free(cl->ev_read);
    if (cl->ev_write)
        event_free(cl->ev_write);
    if (cl->ev_resume)
        event_free(cl->ev_resume);
    cl->ev_read = cl->ev_write = cl->ev_resume = NULL;
    if (cl->in)
        evbuffer_free(cl->in);
    if (cl->out)
        evbuffer_free(cl->out);
    cl->in = cl->out = NULL;
    if (cl->fd >= 0)
        close(cl->fd);
    cl->fd = -1;
    cl->ctl = NULL;
    if (cl->in_process)
        cl->dead = true;
    else
        free(cl);
}

/* Write as much of the output buffer as the socket takes. Returns 0 (all of
 * it written, or the socket is full), or -1 if the peer is gone. */
static int client_flush(struct client *cl)
{
    while (evbuffer_get_length(cl->out) > 0) {
        struct evbuffer_iovec v[WRITE_IOVS];
        int n = evbuffer_peek(cl->out, -1, NULL, v, WRITE_IOVS);
        if (n > WRITE_IOVS)
            n = WRITE_IOVS;
        struct iovec iov[WRITE_IOVS];
        for (int i = 0; i < n; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(cl->fd, &msg, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            log_debug(MOD, "client %d: write: %s", cl->fd, strerror(errno));
            return -1;
        }
        evbuffer_drain(cl->out, (size_t)w);
    }
    return 0;
}

/* Bring the client's events in line with its state, and free it when it has
 * nothing left to do: after a protocol error, or after end of input with no
 * request outstanding, once the output is written. */
static void client_settle(struct client *cl)
{
    bool writing = evbuffer_get_length(cl->out) > 0;
    if (writing)
        event_add(cl->ev_write, NULL);
    else
        event_del(cl->ev_write);
    if (!writing && (cl->closing || (cl->eof && !cl->pending))) {
        if (cl->eof && !cl->closing && evbuffer_get_length(cl->in) > 0)
            log_debug(MOD, "client %d: dropped %zu bytes of an unfinished request",
                      cl->fd, evbuffer_get_length(cl->in));
        client_free(cl);
        return;
    }
    if (!cl->pending && !cl->closing && !cl->eof)
        event_add(cl->ev_read, NULL);
    else
        event_del(cl->ev_read);
}

static void client_answer(struct client *cl, enum control_status status, const char *text,
                          size_t len)
{
    if (len > UINT32_MAX)
        len = UINT32_MAX;
    unsigned char hdr[HEADER_LEN] = {(unsigned char)status, (unsigned char)(len >> 24),
                                     (unsigned char)(len >> 16),
                                     (unsigned char)(len >> 8), (unsigned char)len};
    if (evbuffer_add(cl->out, hdr, sizeof hdr) < 0 ||
        (len > 0 && evbuffer_add(cl->out, text, len) < 0))
        log_error(MOD, "client %d: out of memory queueing an answer", cl->fd);
}

/* Answer a malformed request and close the connection once that is sent. */
static void client_reject(struct client *cl, const char *why)
{
    log_debug(MOD, "client %d: %s", cl->fd, why);
    client_answer(cl, CONTROL_ERROR, why, strlen(why));
    cl->closing = true;
}

/* Hand the complete requests in the input buffer to the eval callback, one
 * at a time: stop as soon as one is outstanding. The callback may answer
 * (control_reply) or even control_close() before it returns; `dead` covers
 * the latter. Costs a copy of each chunk (up to CONTROL_MAX_CHUNK), which
 * gives the callback a NUL-terminated chunk that nothing frees under it. */
static void client_process(struct client *cl)
{
    cl->in_process = true;
    while (!cl->dead && !cl->pending && !cl->closing) {
        size_t avail = evbuffer_get_length(cl->in);
        unsigned char hdr[HEADER_LEN];
        if (avail < 1 || evbuffer_copyout(cl->in, hdr, 1) != 1)
            break;
        if (hdr[0] != CONTROL_EVAL && hdr[0] != CONTROL_INTERACTIVE) {
            client_reject(cl, "bad request");
            break;
        }
        if (avail < HEADER_LEN || evbuffer_copyout(cl->in, hdr, HEADER_LEN) != HEADER_LEN)
            break;
        uint32_t len = (uint32_t)hdr[1] << 24 | (uint32_t)hdr[2] << 16 |
                       (uint32_t)hdr[3] << 8 | (uint32_t)hdr[4];
        if (len > CONTROL_MAX_CHUNK) {
            client_reject(cl, "bad request: chunk too large");
            break;
        }
        if (avail < HEADER_LEN + (size_t)len)
            break;
        char *chunk = malloc((size_t)len + 1);
        struct control_request *req = calloc(1, sizeof *req);
        if (!chunk || !req) {
            free(chunk);
            free(req);
            log_error(MOD, "client %d: out of memory for a %u byte request", cl->fd, len);
            client_reject(cl, "out of memory");
            break;
        }
        evbuffer_drain(cl->in, HEADER_LEN);
        evbuffer_remove(cl->in, chunk, len);
        chunk[len] = '\0';
        req->cl = cl;
        cl->pending = req;
        log_debug(MOD, "client %d: request '%c', %u bytes", cl->fd, hdr[0], len);
        struct control *c = cl->ctl;
        c->eval(req, (enum control_mode)hdr[0], chunk, len, c->arg);
        free(chunk);
    }
    cl->in_process = false;
    if (cl->dead) {
        free(cl);
        return;
    }
    client_settle(cl);
}

static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *cl = arg;
    (void)what;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(cl->in, READ_SIZE, &v, 1) < 1) {
        log_error(MOD, "client %d: out of memory reading", cl->fd);
        client_free(cl);
        return;
    }
    ssize_t n = recv(fd, v.iov_base, v.iov_len, 0);
    if (n < 0) {
        evbuffer_commit_space(cl->in, &v, 0);
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        log_debug(MOD, "client %d: read: %s", cl->fd, strerror(errno));
        client_free(cl);
        return;
    }
    v.iov_len = (size_t)n;
    evbuffer_commit_space(cl->in, &v, 1);
    if (n == 0)
        cl->eof = true;
    client_process(cl);
}

static void client_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct client *cl = arg;
    (void)fd;
    (void)what;
    if (client_flush(cl) < 0) {
        client_free(cl);
        return;
    }
    client_settle(cl);
}

static void client_resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    client_process(arg);
}

/* Take ownership of the accepted socket `fd` (closed on failure). */
static void client_new(struct control *c, int fd)
{
    struct client *cl = calloc(1, sizeof *cl);
    if (!cl) {
        log_error(MOD, "out of memory accepting a client");
        close(fd);
        return;
    }
    cl->fd = fd;
    cl->ctl = c;
    cl->in = evbuffer_new();
    cl->out = evbuffer_new();
    cl->ev_read = event_new(c->base, fd, EV_READ | EV_PERSIST, client_read_cb, cl);
    cl->ev_write = event_new(c->base, fd, EV_WRITE | EV_PERSIST, client_write_cb, cl);
    cl->ev_resume = event_new(c->base, -1, 0, client_resume_cb, cl);
    if (!cl->in || !cl->out || !cl->ev_read || !cl->ev_write || !cl->ev_resume ||
        event_add(cl->ev_read, NULL) < 0) {
        log_error(MOD, "out of memory accepting a client");
        client_free(cl);
        return;
    }
    cl->next = c->clients;
    if (cl->next)
        cl->next->pprev = &cl->next;
    cl->pprev = &c->clients;
    c->clients = cl;
    log_debug(MOD, "client %d connected", fd);
}

static void accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    struct control *c = arg;
    (void)what;
    for (int i = 0; i < ACCEPTS_PER_TURN; i++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* EMFILE and friends: the listen socket stays readable, so back
             * off rather than spin. */
            log_error(MOD, "accept on %s: %s; pausing for %d s", c->path, strerror(errno),
                      ACCEPT_RETRY_SEC);
            event_del(c->ev_accept);
            struct timeval tv = {ACCEPT_RETRY_SEC, 0};
            evtimer_add(c->ev_retry, &tv);
            return;
        }
        client_new(c, fd);
    }
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct control *c = arg;
    (void)fd;
    (void)what;
    event_add(c->ev_accept, NULL);
}

/* Is a switch answering on `sa`? 1 yes, 0 no (nobody listens: the file is
 * stale, or gone), or a negative errno if we cannot tell. Never blocks: a
 * live listener with a full backlog answers EAGAIN, which counts as yes. */
static int probe_live(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int r = connect(fd, (const struct sockaddr *)sa, sizeof *sa);
    int err = r < 0 ? errno : 0;
    close(fd);
    if (r == 0 || err == EAGAIN || err == EINPROGRESS)
        return 1;
    if (err == ECONNREFUSED || err == ENOENT)
        return 0;
    return -err;
}

/* Create, bind (mode 0600 from the start: the umask is narrowed around
 * bind()) and listen on `path`, replacing a stale socket file. Returns the
 * listening socket, or a negative errno after logging why. */
static int listen_on(const char *path, struct stat *st_out)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        log_error(MOD,
                  "control socket path is %zu bytes, longer than the %zu a unix "
                  "socket allows: %s",
                  strlen(path), sizeof sa.sun_path - 1, path);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);

    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            log_error(MOD, "%s exists and is not a socket; not replacing it", path);
            return -EEXIST;
        }
        int live = probe_live(&sa);
        if (live > 0) {
            log_error(MOD, "another switch answers on %s", path);
            return -EADDRINUSE;
        }
        if (live < 0) {
            log_error(MOD, "cannot probe %s: %s", path, strerror(-live));
            return live;
        }
        log_info(MOD, "replacing stale control socket %s", path);
        if (unlink(path) < 0 && errno != ENOENT) {
            int err = errno;
            log_error(MOD, "cannot remove stale %s: %s", path, strerror(err));
            return -err;
        }
    } else if (errno != ENOENT) {
        int err = errno;
        log_error(MOD, "%s: %s", path, strerror(err));
        return -err;
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int err = errno;
        log_error(MOD, "socket: %s", strerror(err));
        return -err;
    }
    mode_t old = umask(0177);
    int r = bind(fd, (const struct sockaddr *)&sa, sizeof sa);
    int err = errno;
    umask(old);
    if (r < 0) {
        log_error(MOD, "bind %s: %s", path, strerror(err));
        close(fd);
        return -err;
    }
    if (chmod(path, 0600) < 0 || lstat(path, st_out) < 0 || listen(fd, 16) < 0) {
        err = errno;
        log_error(MOD, "setting up %s: %s", path, strerror(err));
        unlink(path);
        close(fd);
        return -err;
    }
    return fd;
}

int control_open(struct control **cp, struct event_base *base, const char *path,
                 control_eval_h *eval, void *arg)
{
    *cp = NULL;
    struct control *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        log_error(MOD, "out of memory");
        return -ENOMEM;
    }
    c->base = base;
    c->eval = eval;
    c->arg = arg;
    struct stat st;
    c->fd = listen_on(path, &st);
    if (c->fd < 0) {
        int err = c->fd;
        free(c->path);
        free(c);
        return err;
    }
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    c->ev_accept = event_new(base, c->fd, EV_READ | EV_PERSIST, accept_cb, c);
    c->ev_retry = evtimer_new(base, accept_retry_cb, c);
    if (!c->ev_accept || !c->ev_retry || event_add(c->ev_accept, NULL) < 0) {
        log_error(MOD, "out of memory");
        control_close(c);
        return -ENOMEM;
    }
    log_info(MOD, "listening on %s", path);
    *cp = c;
    return 0;
}

void control_close(struct control *c)
{
    if (!c)
        return;
    while (c->clients)
        client_free(c->clients);
    if (c->ev_accept)
        event_free(c->ev_accept);
    if (c->ev_retry)
        event_free(c->ev_retry);
    if (c->fd >= 0) {
        close(c->fd);
        struct stat st;
        if (lstat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino)
            unlink(c->path);
    }
    log_debug(MOD, "closed %s", c->path);
    free(c->path);
    free(c);
}

/* Tell the client how much of its output was dropped, if any. */
static void client_note_dropped(struct client *cl, struct control_request *req)
{
    if (!req->dropped)
        return;
    char note[96];
    int n = snprintf(note, sizeof note,
                     "[%zu bytes of output dropped: the client did not read them]\n",
                     req->dropped);
    client_answer(cl, CONTROL_OUTPUT, note, (size_t)n);
    req->dropped = 0;
}

void control_output(struct control_request *req, const char *text, size_t len)
{
    struct client *cl = req->cl;
    if (!cl || len == 0)
        return;
    if (evbuffer_get_length(cl->out) + len > CONTROL_MAX_PENDING_OUTPUT) {
        req->dropped += len;
        return;
    }
    client_note_dropped(cl, req);
    client_answer(cl, CONTROL_OUTPUT, text, len);
    event_add(cl->ev_write, NULL);
}

void control_reply(struct control_request *req, enum control_status status,
                   const char *text, size_t len)
{
    struct client *cl = req->cl;
    if (cl)
        client_note_dropped(cl, req);
    free(req);
    if (!cl)
        return;
    cl->pending = NULL;
    client_answer(cl, status, text, len);
    event_add(cl->ev_write, NULL);
    /* Answered from outside the eval callback: pick up buffered requests on
     * the next loop turn rather than calling eval re-entrantly from here. */
    if (!cl->in_process)
        event_active(cl->ev_resume, EV_TIMEOUT, 1);
}
