/* evport: an su_port on libevent. See evport.h for the why.
 *
 * Modelled on sofia-sip's GLib port (su_source.c), with three differences:
 * each wait object is its own libevent event (no array of pollfds to scan),
 * the exact revents are read with poll(fd, 0) when libevent reports
 * readiness (tport needs POLLERR/POLLHUP, or one ICMP unreachable spins a
 * UDP transport), and sofia's timers feed one relative libevent timer. */
#include "evport.h"
#include "bpfblock.h"
#include "dgram.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_alloc.h>
#include <sofia-sip/su_time.h>
#include <sofia-sip/su_wait.h>

/* ---- The port ABI of the installed libsofia-sip-ua ------------------------
 * sofia-sip installs no su_port.h. These declarations mirror the one of the
 * Debian build (1.12.11+20110422): its su_base_port_t carries three 64-bit
 * stamps between the vtable and the prepoll fields, which later forks
 * dropped. evport_layout_check() verifies the offsets at run time. */

enum su_port_thread_op {
    su_port_thread_op_is_obtained,
    su_port_thread_op_release,
    su_port_thread_op_obtain
};

struct _GSource;

typedef struct su_port_vtable {
    unsigned su_vtable_size;
    void (*su_port_lock)(su_port_t *port, char const *who);
    void (*su_port_unlock)(su_port_t *port, char const *who);
    void (*su_port_incref)(su_port_t *port, char const *who);
    void (*su_port_decref)(su_port_t *port, int block, char const *who);
    struct _GSource *(*su_port_gsource)(su_port_t *port);
    int (*su_port_send)(su_port_t *self, su_msg_r rmsg);
    int (*su_port_register)(su_port_t *self, su_root_t *root, su_wait_t *wait,
                            su_wakeup_f callback, su_wakeup_arg_t *arg, int priority);
    int (*su_port_unregister)(su_port_t *port, su_root_t *root, su_wait_t *wait,
                              su_wakeup_f callback, su_wakeup_arg_t *arg);
    int (*su_port_deregister)(su_port_t *self, int i);
    int (*su_port_unregister_all)(su_port_t *self, su_root_t *root);
    int (*su_port_eventmask)(su_port_t *self, int index, int socket, int events);
    void (*su_port_run)(su_port_t *self);
    void (*su_port_break)(su_port_t *self);
    su_duration_t (*su_port_step)(su_port_t *self, su_duration_t tout);
    int (*su_port_thread)(su_port_t *port, enum su_port_thread_op op);
    int (*su_port_add_prepoll)(su_port_t *port, su_root_t *root, su_prepoll_f *,
                               su_prepoll_magic_t *);
    int (*su_port_remove_prepoll)(su_port_t *port, su_root_t *root);
    su_timer_queue_t *(*su_port_timers)(su_port_t *port);
    int (*su_port_multishot)(su_port_t *port, int multishot);
    int (*su_port_wait_events)(su_port_t *port, su_duration_t timeout);
    int (*su_port_getmsgs)(su_port_t *port);
    int (*su_port_getmsgs_from)(su_port_t *port, su_port_t *cloneport);
    char const *(*su_port_name)(su_port_t const *port);
    int (*su_port_start_shared)(su_root_t *root, su_clone_r return_clone,
                                su_root_magic_t *magic, su_root_init_f init,
                                su_root_deinit_f deinit);
    void (*su_port_wait)(su_clone_r rclone);
    int (*su_port_execute)(su_task_r const task, int (*function)(void *), void *arg,
                           int *return_value);
    su_timer_queue_t *(*su_port_deferrable)(su_port_t *port);
    int (*su_port_max_defer)(su_port_t *port, su_duration_t *return_duration,
                             su_duration_t *set_duration);
    int (*su_port_wakeup)(su_port_t *port);
    int (*su_port_is_running)(su_port_t const *port);
    su_time64_t (*su_port_stamp64)(su_port_t *port);
    su_dur64_t (*su_port_stamp64_offset)(su_port_t *port);
} su_port_vtable_t;
_Static_assert(sizeof(su_port_vtable_t) == 0x108, "vtable size of the Debian build");

typedef struct su_base_port_s {
    su_home_t sup_home[1];
    su_port_vtable_t const *sup_vtable;
    uint64_t sup_stamp[3]; /* only in the 2011 snapshot Debian ships */
    su_prepoll_f *sup_prepoll;
    su_prepoll_magic_t *sup_pp_magic;
    su_root_t *sup_pp_root;
    su_msg_t *sup_head, **sup_tail;
    su_timer_queue_t sup_timers, sup_deferrable;
    su_duration_t sup_max_defer;
    unsigned sup_running;
} su_base_port_t;

int su_base_port_init(su_port_t *, su_port_vtable_t const *);
void su_base_port_deinit(su_port_t *self);
void su_base_port_incref(su_port_t *self, char const *who);
int su_base_port_decref(su_port_t *self, int blocking, char const *who);
struct _GSource *su_base_port_gsource(su_port_t *self);
int su_base_port_send(su_port_t *self, su_msg_r rmsg);
int su_base_port_getmsgs(su_port_t *self);
int su_base_port_getmsgs_from(su_port_t *self, su_port_t *from);
int su_base_port_add_prepoll(su_port_t *self, su_root_t *root, su_prepoll_f *,
                             su_prepoll_magic_t *);
int su_base_port_remove_prepoll(su_port_t *self, su_root_t *root);
su_timer_queue_t *su_base_port_timers(su_port_t *self);
int su_base_port_multishot(su_port_t *self, int multishot);
int su_base_port_start_shared(su_root_t *parent, su_clone_r return_clone,
                              su_root_magic_t *magic, su_root_init_f init,
                              su_root_deinit_f deinit);
void su_base_port_wait(su_clone_r rclone);
su_timer_queue_t *su_base_port_deferrable(su_port_t *self);
int su_base_port_max_defer(su_port_t *self, su_duration_t *return_duration,
                           su_duration_t *set_duration);
int su_base_port_is_running(su_port_t const *self);
su_time64_t su_base_port_stamp64(su_port_t *self);
su_dur64_t su_base_port_stamp64_offset(su_port_t *self);
su_duration_t su_timer_next_expires(su_timer_queue_t const *timers, su_time_t now);
su_root_t *su_root_create_with_port(su_root_magic_t *magic, su_port_t *port);

/* ---- Our port ------------------------------------------------------------ */

/* One registered wait object. Slots are allocated one by one so a pointer to
 * a slot's su_wait_t stays valid while its callback runs, even if the
 * callback registers more waits (which may grow the index). */
struct wait_slot {
    su_port_t *port;
    su_wait_t wait; /* fd, events, revents: what sofia registered */
    su_wakeup_f callback;
    su_wakeup_arg_t *arg;
    su_root_t *root;
    struct event *ev;
    int index;        /* 1-based, as sofia sees it */
    int dispatching;  /* the callback is on the stack */
    int datagram;     /* a datagram socket: the observer may peek */
    int unregistered; /* freed once the callback returns */
    int listener;     /* a listening stream socket */
    int accepted;     /* a connection accepted while connection hooks were set */
    int watched;      /* accepted, silent so far, deadline armed */
    int refused;      /* shut down by the port: drained, then a hang-up for sofia */
    struct sockaddr_storage *peer; /* accepted connections only */
    socklen_t peerlen;
    struct event *silent_ev; /* the watched connection's deadline */
};

struct su_port_s {
    su_base_port_t base; /* must be first: sofia casts */
    struct event_base *evbase;
    struct event *timer_ev;   /* sofia's next timer */
    struct event *msg_ev;     /* a su_msg was queued by this thread */
    struct event *eventfd_ev; /* ... or by another thread */
    struct event *step_ev;    /* su_root_step()'s timeout */
    int eventfd;
    pthread_t owner;
    int owned;
    pthread_mutex_t msg_lock; /* guards base.sup_head for cross-thread sends */
    struct wait_slot **slots; /* index - 1 -> slot, NULL when free */
    unsigned nslots, nwaits;
    int break_requested;
    unsigned in_callback;        /* > 0 while sofia code runs from this port */
    evport_datagram_f *observer; /* sees each datagram's source before sofia */
    void *observer_arg;
    evport_datagram_filter_f *filter; /* may drop a datagram before sofia */
    void *filter_arg;
    struct sock_filter *block;     /* the blocklist program, NULL: none */
    unsigned short nblock;         /* its instructions */
    struct evport_conn_hooks conn; /* valid while conn_set */
    int conn_set;
    unsigned accepting; /* > 0 while a listening socket's callback runs */
};

static su_port_t *port_of_root(su_root_t *root);
static void port_dispatch_timers(su_port_t *self);
static void port_expire_deferrable(su_port_t *self);
static void port_arm_timer(su_port_t *self);

static char const *port_name(su_port_t const *self)
{
    (void)self;
    return "libevent";
}

static void port_lock(su_port_t *self, char const *who)
{
    (void)who;
    pthread_mutex_lock(&self->msg_lock);
}

static void port_unlock(su_port_t *self, char const *who)
{
    (void)who;
    pthread_mutex_unlock(&self->msg_lock);
}

static void port_decref(su_port_t *self, int blocking, char const *who)
{
    su_base_port_decref(self, blocking, who);
}

static int port_thread(su_port_t *self, enum su_port_thread_op op)
{
    pthread_t me = pthread_self();
    switch (op) {
    case su_port_thread_op_is_obtained:
        if (!self->owned)
            return 0;
        return pthread_equal(self->owner, me) ? 2 : 1;
    case su_port_thread_op_release:
        if (!self->owned || !pthread_equal(self->owner, me))
            return errno = EALREADY, -1;
        self->owned = 0;
        return 0;
    case su_port_thread_op_obtain:
        self->owner = me;
        self->owned = 1;
        return 0;
    }
    return errno = ENOSYS, -1;
}

/* Called by su_base_port_send() when a message lands in an empty queue.
 * On the loop's own thread, activating an event is enough; another thread
 * must go through the eventfd (libevent is not thread-safe here). */
static int port_wakeup(su_port_t *self)
{
    if (self->owned && pthread_equal(self->owner, pthread_self())) {
        event_active(self->msg_ev, EV_READ, 0);
        return 0;
    }
    uint64_t one = 1;
    ssize_t n = write(self->eventfd, &one, sizeof one);
    return n == (ssize_t)sizeof one || errno == EAGAIN ? 0 : -1;
}

static void on_msg(evutil_socket_t fd, short what, void *arg)
{
    su_port_t *self = arg;
    (void)what;
    if (fd >= 0) {
        uint64_t count;
        if (read(fd, &count, sizeof count) < 0 && errno != EAGAIN)
            log_warn("evport", "eventfd read: %s", strerror(errno));
    }
    self->in_callback++;
    if (self->base.sup_head)
        su_base_port_getmsgs(self);
    port_expire_deferrable(self);
    self->in_callback--;
    port_arm_timer(self);
}

/* Map sofia's wanted events to libevent's, and back with exact revents. */
static short ev_flags(int events)
{
    short what = EV_PERSIST;
    if (events & (POLLIN | POLLPRI))
        what |= EV_READ;
    if (events & POLLOUT)
        what |= EV_WRITE;
    /* sofia always wants errors and hang-ups; those show up as readable. */
    if (!(what & (EV_READ | EV_WRITE)))
        what |= EV_READ | EV_ET;
    return what;
}

/* ---- The kernel's blocklist (bpfblock.h) ---------------------------------- */

/* Attach the port's blocklist to one socket (or detach it). */
static int block_attach(su_port_t *self, int fd)
{
    return bpfblock_attach(fd, self->block, self->nblock);
}

int evport_set_datagram_blocklist(su_root_t *root, const uint32_t *v4, size_t n)
{
    su_port_t *self = port_of_root(root);
    if (!self)
        return -1;
    if (n > EVPORT_BLOCK_MAX)
        n = EVPORT_BLOCK_MAX;
    free(self->block);
    self->block = bpfblock_compile(v4, n, &self->nblock);
    if (n && !self->block) {
        log_error("evport", "out of memory: no kernel blocklist");
        n = 0;
    }
    int rc = (int)n;
    for (unsigned i = 0; i < self->nslots; i++) {
        struct wait_slot *slot = self->slots[i];
        if (slot && slot->datagram && block_attach(self, slot->wait.fd) < 0) {
            log_error("evport", "socket %d refuses the blocklist filter: %s",
                      slot->wait.fd, strerror(errno));
            rc = -1;
        }
    }
    return rc;
}

/* ---- Accepted connections ------------------------------------------------- */

static struct log_limit silent_limit;

static void slot_free(struct wait_slot *slot)
{
    if (slot->silent_ev)
        event_free(slot->silent_ev);
    free(slot->peer);
    free(slot);
}

/* The deadline's event is only deleted here (this may run from its own
 * callback); slot_free() frees it. */
static void conn_unwatch(struct wait_slot *slot)
{
    slot->watched = 0;
    if (slot->silent_ev)
        event_del(slot->silent_ev);
}

/* Shut the connection down; its next wakeup drains it and tells sofia of a
 * hang-up (see on_wait_ready). The deadline, if any, is no longer needed. */
static void conn_refuse(struct wait_slot *slot)
{
    if (slot->silent_ev)
        event_del(slot->silent_ev);
    slot->refused = 1;
    shutdown(slot->wait.fd, SHUT_RDWR);
}

static void on_silent(evutil_socket_t fd, short what, void *arg)
{
    struct wait_slot *slot = arg;
    (void)fd;
    (void)what;
    char host[64] = "?";
    const struct sockaddr *sa = (const struct sockaddr *)slot->peer;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host,
                  sizeof host);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, host,
                  sizeof host);
    log_limited(&silent_limit, LOG_INFO, "evport",
                "connection from %s closed: nothing received within %u ms", host,
                slot->port->conn.silent_ms);
    conn_refuse(slot);
}

/* A stream socket registered while a listener's callback runs is a
 * connection it accepted: ask the hooks. */
static void conn_accepted(su_port_t *self, struct wait_slot *slot)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(slot->wait.fd, (struct sockaddr *)&ss, &len) < 0 || len == 0)
        return;
    if (!(slot->peer = malloc(sizeof ss)))
        return;
    memcpy(slot->peer, &ss, sizeof ss);
    slot->peerlen = len;
    slot->accepted = 1;
    enum evport_conn_verdict v =
        self->conn.accepted
            ? self->conn.accepted((struct sockaddr *)slot->peer, len, self->conn.arg)
            : EVPORT_CONN_ACCEPT;
    if (v == EVPORT_CONN_REFUSE) {
        conn_refuse(slot);
        return;
    }
    if (v != EVPORT_CONN_WATCH)
        return;
    slot->watched = 1;
    unsigned ms = self->conn.silent_ms ? self->conn.silent_ms : 10000;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    slot->silent_ev = evtimer_new(self->evbase, on_silent, slot);
    if (slot->silent_ev)
        evtimer_add(slot->silent_ev, &tv);
}

/* Before sofia reads an accepted connection: a refused one is drained and
 * reported as hung up; a watched one that has spoken is watched no more. */
static void conn_screen(su_port_t *self, struct wait_slot *slot, struct pollfd *pfd)
{
    const struct sockaddr *peer = (const struct sockaddr *)slot->peer;
    if (!slot->refused && (pfd->revents & POLLIN) && self->conn.readable &&
        self->conn.readable(peer, slot->peerlen, self->conn.arg))
        conn_refuse(slot);
    if (slot->refused) {
        char sink[2048];
        for (int i = 0; i < 64; i++)
            if (recv(slot->wait.fd, sink, sizeof sink, MSG_DONTWAIT) <= 0)
                break;
        pfd->revents = POLLHUP;
        return;
    }
    if (slot->watched && (pfd->revents & POLLIN)) {
        conn_unwatch(slot);
        if (self->conn.spoke)
            self->conn.spoke(peer, slot->peerlen, self->conn.arg);
    }
}

/* Run sofia's callback of `slot` with `revents`. Returns false when the
 * callback unregistered the slot (freed now). */
static bool slot_dispatch(su_port_t *self, struct wait_slot *slot, short revents)
{
    slot->wait.revents = revents;
    slot->dispatching = 1;
    su_root_magic_t *magic = slot->root ? su_root_magic(slot->root) : NULL;
    self->in_callback++;
    self->accepting += slot->listener;
    slot->callback(magic, &slot->wait, slot->arg);
    self->accepting -= slot->listener;
    self->in_callback--;
    slot->dispatching = 0;
    if (slot->unregistered) {
        slot_free(slot);
        return false;
    }
    slot->wait.revents = 0;
    return true;
}

/* A readable datagram socket: sofia's UDP transport reads one datagram per
 * callback, so the callback runs once per datagram waiting, up to
 * EVPORT_READ_BATCH, with no loop turn (epoll_wait, timer update, poll) in
 * between. Before each, one dgram_peek() says whether a datagram is left,
 * and shows its source and first bytes to the filter (which may drop it:
 * read into one byte and discarded, up to EVPORT_DROP_BATCH) and to the
 * observer; sofia then takes its length from the peek (dgram.h). The first
 * callback gets `revents` as poll() gave them (POLLERR with the first
 * datagram), the others POLLIN. A peek that returns a pending socket error
 * (an ICMP report answering a datagram of ours) cleared it; the report
 * stays in the error queue and POLLERR in the next poll(), for sofia. */
static void read_datagrams(su_port_t *self, struct wait_slot *slot, int fd, short revents)
{
    unsigned delivered = 0, dropped = 0, errors = 0;
    while (delivered < EVPORT_READ_BATCH && (slot->wait.events & POLLIN)) {
        struct sockaddr_storage from;
        socklen_t fromlen;
        char head[EVPORT_PEEK_HEAD];
        ssize_t n = dgram_peek(fd, &from, &fromlen, head, sizeof head);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && ++errors < 4)
            continue; /* a datagram must not reach sofia unscreened: look again */
        if (n < 0)
            break;
        const struct sockaddr *sa = (const struct sockaddr *)&from;
        if (fromlen > 0 && self->filter &&
            self->filter(sa, fromlen, head,
                         (size_t)n < sizeof head ? (size_t)n : sizeof head,
                         self->filter_arg)) {
            (void)recv(fd, head, 1, MSG_DONTWAIT); /* takes the whole datagram */
            if (++dropped >= EVPORT_DROP_BATCH)
                break; /* libevent calls again */
            continue;
        }
        if (fromlen > 0 && self->observer)
            self->observer(sa, fromlen, self->observer_arg);
        dgram_reading(fd, (size_t)n);
        bool alive = slot_dispatch(self, slot, revents);
        dgram_done();
        if (!alive)
            return;
        delivered++;
        revents = POLLIN;
    }
    /* Nothing to read (dropped, or raced), but an error or a hang-up. */
    if (!delivered && (revents & ~POLLIN))
        slot_dispatch(self, slot, (short)(revents & ~POLLIN));
}

static void on_wait_ready(evutil_socket_t fd, short what, void *arg)
{
    struct wait_slot *slot = arg;
    su_port_t *self = slot->port;

    /* libevent says readable or writable; sofia (tport) needs to know about
     * POLLERR and POLLHUP too. Ask the kernel for the exact set. */
    struct pollfd pfd = {.fd = fd, .events = slot->wait.events, .revents = 0};
    if (poll(&pfd, 1, 0) <= 0) {
        /* Raced: nothing is pending any more. Report what libevent saw. */
        pfd.revents = 0;
        if (what & EV_READ)
            pfd.revents |= POLLIN;
        if (what & EV_WRITE)
            pfd.revents |= POLLOUT;
        pfd.revents &= slot->wait.events;
        if (!pfd.revents)
            return;
    }
    if (slot->datagram && (pfd.revents & POLLIN)) {
        read_datagrams(self, slot, fd, pfd.revents);
    } else {
        if (slot->accepted && self->conn_set)
            conn_screen(self, slot, &pfd);
        slot_dispatch(self, slot, pfd.revents);
    }
    port_expire_deferrable(self);
    port_arm_timer(self);
}

static void slot_release(su_port_t *self, struct wait_slot *slot)
{
    self->slots[slot->index - 1] = NULL;
    self->nwaits--;
    event_free(slot->ev);
    slot->ev = NULL;
    if (slot->accepted && self->conn_set && self->conn.closed)
        self->conn.closed((const struct sockaddr *)slot->peer, slot->peerlen,
                          slot->watched != 0, self->conn.arg);
    conn_unwatch(slot);
    slot->accepted = 0;
    if (slot->dispatching)
        slot->unregistered = 1; /* freed by on_wait_ready() after the callback */
    else
        slot_free(slot);
}

/* Register a wait object; returns its 1-based index or -1. O(number of
 * slots) to find a free index; sofia registers a handful (one per
 * transport socket and connection). */
static int port_register(su_port_t *self, su_root_t *root, su_wait_t *wait,
                         su_wakeup_f callback, su_wakeup_arg_t *arg, int priority)
{
    (void)priority; /* libevent has priorities, sofia's are advisory */
    unsigned i;
    for (i = 0; i < self->nslots; i++)
        if (!self->slots[i])
            break;
    if (i == self->nslots) {
        unsigned n = self->nslots ? self->nslots * 2 : 16;
        struct wait_slot **grown = realloc(self->slots, n * sizeof *grown);
        if (!grown)
            return errno = ENOMEM, -1;
        memset(grown + self->nslots, 0, (n - self->nslots) * sizeof *grown);
        self->slots = grown;
        self->nslots = n;
    }
    struct wait_slot *slot = calloc(1, sizeof *slot);
    if (!slot)
        return errno = ENOMEM, -1;
    slot->port = self;
    slot->wait = *wait;
    slot->wait.revents = 0;
    slot->callback = callback;
    slot->arg = arg;
    slot->root = root;
    slot->index = (int)i + 1;
    int type = 0;
    socklen_t typelen = sizeof type;
    int typed = getsockopt(wait->fd, SOL_SOCKET, SO_TYPE, &type, &typelen) == 0;
    slot->datagram = typed && type == SOCK_DGRAM;
    if (typed && type == SOCK_STREAM) {
        int on = 0;
        socklen_t onlen = sizeof on;
        slot->listener =
            getsockopt(wait->fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &onlen) == 0 && on;
    }
    slot->ev =
        event_new(self->evbase, wait->fd, ev_flags(wait->events), on_wait_ready, slot);
    if (!slot->ev || event_add(slot->ev, NULL) < 0) {
        if (slot->ev)
            event_free(slot->ev);
        free(slot);
        return errno = ENOMEM, -1;
    }
    self->slots[i] = slot;
    self->nwaits++;
    if (!slot->listener && !slot->datagram && self->accepting && self->conn_set)
        conn_accepted(self, slot);
    if (slot->datagram && self->block && block_attach(self, wait->fd) < 0)
        log_error("evport", "socket %d refuses the blocklist filter: %s", wait->fd,
                  strerror(errno));
    return slot->index;
}

static int port_unregister(su_port_t *self, su_root_t *root, su_wait_t *wait,
                           su_wakeup_f callback, su_wakeup_arg_t *arg)
{
    (void)root;
    (void)callback;
    for (unsigned i = 0; i < self->nslots; i++) {
        struct wait_slot *slot = self->slots[i];
        if (slot && SU_WAIT_CMP(slot->wait, wait[0]) == 0 && (!arg || slot->arg == arg)) {
            int index = slot->index;
            slot_release(self, slot);
            return index;
        }
    }
    return errno = ENOENT, -1;
}

static int port_deregister(su_port_t *self, int index)
{
    if (index <= 0 || (unsigned)index > self->nslots || !self->slots[index - 1])
        return errno = EBADF, -1;
    struct wait_slot *slot = self->slots[index - 1];
    /* deregister closes the socket, as sofia's own ports do. */
    su_wait_destroy(&slot->wait);
    slot_release(self, slot);
    return index;
}

static int port_unregister_all(su_port_t *self, su_root_t *root)
{
    int n = 0;
    for (unsigned i = 0; i < self->nslots; i++) {
        struct wait_slot *slot = self->slots[i];
        if (slot && slot->root == root) {
            slot_release(self, slot);
            n++;
        }
    }
    return n;
}

static int port_eventmask(su_port_t *self, int index, int socket, int events)
{
    if (index <= 0 || (unsigned)index > self->nslots || !self->slots[index - 1])
        return errno = EBADF, -1;
    struct wait_slot *slot = self->slots[index - 1];
    if (slot->wait.fd != socket)
        return errno = EBADF, -1;
    if (slot->wait.events == events)
        return 0;
    slot->wait.events = (short)events;
    /* libevent cannot change an event's flags in place. */
    event_del(slot->ev);
    if (event_assign(slot->ev, self->evbase, socket, ev_flags(events), on_wait_ready,
                     slot) < 0 ||
        event_add(slot->ev, NULL) < 0)
        return -1;
    return 0;
}

/* Time until sofia's next timer, deferrable timers included, in ms, or -1
 * when there is none. Rounded up to 1 ms: su_timer_next_expires() rounds
 * down, and a 0 for a timer due in 0.4 ms would spin the loop. */
static long next_timeout_ms(su_port_t *self)
{
    su_base_port_t *b = &self->base;
    if (!b->sup_timers && !b->sup_deferrable)
        return -1;
    su_time_t now = su_now();
    su_duration_t tout = SU_DURATION_MAX;
    if (b->sup_timers)
        tout = su_timer_next_expires(&b->sup_timers, now);
    if (b->sup_deferrable) {
        su_duration_t defer = su_timer_next_expires(&b->sup_deferrable, now);
        if (defer < b->sup_max_defer)
            defer = b->sup_max_defer;
        if (defer < tout)
            tout = defer;
    }
    if (tout == SU_DURATION_MAX || tout < 0)
        return tout < 0 ? 1 : -1;
    return tout == 0 ? 1 : (long)tout;
}

static void port_arm_timer(su_port_t *self)
{
    long ms = next_timeout_ms(self);
    if (ms < 0) {
        event_del(self->timer_ev);
        return;
    }
    /* sofia's clock is CLOCK_REALTIME; libevent's is monotonic. Only a
     * relative duration crosses between them. */
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(self->timer_ev, &tv);
}

static void port_dispatch_timers(su_port_t *self)
{
    su_base_port_t *b = &self->base;
    su_duration_t tout = SU_DURATION_MAX;
    su_time_t now = su_now();
    if (b->sup_timers)
        su_timer_expire(&b->sup_timers, &tout, now);
    if (b->sup_deferrable)
        su_timer_expire(&b->sup_deferrable, &tout, now);
}

static void port_expire_deferrable(su_port_t *self)
{
    su_duration_t tout = SU_DURATION_MAX;
    if (self->base.sup_deferrable)
        su_timer_expire(&self->base.sup_deferrable, &tout, su_now());
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    su_port_t *self = arg;
    (void)fd;
    (void)what;
    self->in_callback++;
    port_dispatch_timers(self);
    if (self->base.sup_head)
        su_base_port_getmsgs(self);
    self->in_callback--;
    port_arm_timer(self);
}

/* su_root_run()/su_root_step() on this port run the libevent loop. The
 * switch itself calls event_base_dispatch(); these exist for sofia code and
 * tests that drive a root directly. */
static void port_run(su_port_t *self)
{
    self->base.sup_running = 1;
    self->break_requested = 0;
    port_arm_timer(self);
    while (self->base.sup_running && !self->break_requested)
        if (event_base_loop(self->evbase, EVLOOP_ONCE) != 0)
            break;
    self->base.sup_running = 0;
}

static void port_break(su_port_t *self)
{
    self->base.sup_running = 0;
    self->break_requested = 1;
    event_base_loopbreak(self->evbase);
}

static void on_step_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Whether sofia code is running from one of this port's callbacks. nta
 * calls su_root_yield() (which lands in port_wait_events) every fifth
 * retransmission of a busy timer pass, to read packets in between; libevent's
 * loop cannot be re-entered from its own callback ("reentrant invocation",
 * once per pass under overload), so then the packets wait for the next loop
 * turn. (libevent's event_base_get_running_event() cannot tell: it crashes
 * outside the loop in 2.1.12.) */
static bool port_in_dispatch(const su_port_t *self)
{
    return self->in_callback > 0;
}

static su_duration_t port_step(su_port_t *self, su_duration_t tout)
{
    if (port_in_dispatch(self)) {
        long next = next_timeout_ms(self);
        return next < 0 ? SU_WAIT_FOREVER : next;
    }
    if (self->base.sup_head)
        su_base_port_getmsgs(self);
    port_dispatch_timers(self);
    port_arm_timer(self);
    if (tout > 0) {
        struct timeval tv = {.tv_sec = tout / 1000, .tv_usec = (tout % 1000) * 1000};
        if (!self->step_ev)
            self->step_ev = evtimer_new(self->evbase, on_step_timeout, self);
        evtimer_add(self->step_ev, &tv);
        event_base_loop(self->evbase, EVLOOP_ONCE);
        event_del(self->step_ev);
    } else {
        event_base_loop(self->evbase, EVLOOP_NONBLOCK);
    }
    long next = next_timeout_ms(self);
    return next < 0 ? SU_WAIT_FOREVER : next;
}

static int port_wait_events(su_port_t *self, su_duration_t tout)
{
    port_step(self, tout);
    return 0;
}

static int port_is_running(su_port_t const *self)
{
    return self->base.sup_running != 0;
}

static const su_port_vtable_t evport_vtable = {
    .su_vtable_size = sizeof(su_port_vtable_t),
    .su_port_lock = port_lock,
    .su_port_unlock = port_unlock,
    .su_port_incref = su_base_port_incref,
    .su_port_decref = port_decref,
    .su_port_gsource = su_base_port_gsource,
    .su_port_send = su_base_port_send,
    .su_port_register = port_register,
    .su_port_unregister = port_unregister,
    .su_port_deregister = port_deregister,
    .su_port_unregister_all = port_unregister_all,
    .su_port_eventmask = port_eventmask,
    .su_port_run = port_run,
    .su_port_break = port_break,
    .su_port_step = port_step,
    .su_port_thread = port_thread,
    .su_port_add_prepoll = su_base_port_add_prepoll,
    .su_port_remove_prepoll = su_base_port_remove_prepoll,
    .su_port_timers = su_base_port_timers,
    .su_port_multishot = su_base_port_multishot,
    .su_port_wait_events = port_wait_events,
    .su_port_getmsgs = su_base_port_getmsgs,
    .su_port_getmsgs_from = su_base_port_getmsgs_from,
    .su_port_name = port_name,
    .su_port_start_shared = su_base_port_start_shared,
    .su_port_wait = su_base_port_wait,
    .su_port_execute = NULL,
    .su_port_deferrable = su_base_port_deferrable,
    .su_port_max_defer = su_base_port_max_defer,
    .su_port_wakeup = port_wakeup,
    .su_port_is_running = port_is_running,
    .su_port_stamp64 = su_base_port_stamp64,
    .su_port_stamp64_offset = su_base_port_stamp64_offset,
};

/* Destructor run by su_home when the last reference goes. */
static void port_deinit(void *arg)
{
    su_port_t *self = arg;
    for (unsigned i = 0; i < self->nslots; i++)
        if (self->slots[i])
            slot_release(self, self->slots[i]);
    free(self->slots);
    self->slots = NULL;
    free(self->block);
    self->block = NULL;
    if (self->timer_ev)
        event_free(self->timer_ev);
    if (self->step_ev)
        event_free(self->step_ev);
    if (self->msg_ev)
        event_free(self->msg_ev);
    if (self->eventfd_ev)
        event_free(self->eventfd_ev);
    if (self->eventfd >= 0)
        close(self->eventfd);
    su_base_port_deinit(self);
    pthread_mutex_destroy(&self->msg_lock);
}

int evport_layout_check(char *why, size_t whylen)
{
    static const su_port_vtable_t probe_vtable = {
        .su_vtable_size = sizeof(su_port_vtable_t),
        .su_port_thread = port_thread,
    };
    /* A scratch port, never used: su_base_port_init() writes the message
     * tail pointer and the default max_defer at the offsets the library was
     * built with. If ours differ, they land elsewhere. */
    union {
        su_port_t port;
        unsigned char bytes[sizeof(su_port_t) + 256];
    } probe;
    memset(&probe, 0, sizeof probe);
    if (su_base_port_init(&probe.port, &probe_vtable) != 0) {
        snprintf(why, whylen, "su_base_port_init failed");
        return -1;
    }
    su_base_port_t *b = &probe.port.base;
    if (b->sup_vtable != &probe_vtable) {
        snprintf(why, whylen, "sup_vtable is not where this build expects it");
        return -1;
    }
    if (b->sup_tail != &b->sup_head) {
        snprintf(why, whylen,
                 "sup_tail does not point at sup_head (offset %zu): "
                 "libsofia-sip-ua's su_base_port_t differs from this build's",
                 (size_t)((char *)&b->sup_head - (char *)b));
        return -1;
    }
    if (b->sup_max_defer != 15000) {
        snprintf(why, whylen, "sup_max_defer reads %ld, not 15000: layout mismatch",
                 (long)b->sup_max_defer);
        return -1;
    }
    return 0;
}

su_root_t *evport_root_create(struct event_base *evbase, su_root_magic_t *magic)
{
    char why[200];
    if (evport_layout_check(why, sizeof why) != 0) {
        log_error("evport", "refusing to start: %s", why);
        return NULL;
    }
    su_port_t *self = su_home_new(sizeof *self);
    if (!self)
        return NULL;
    self->evbase = evbase;
    self->eventfd = -1;
    pthread_mutex_init(&self->msg_lock, NULL);
    if (su_home_destructor(self->base.sup_home, port_deinit) < 0)
        goto fail;
    if (su_base_port_init(self, &evport_vtable) < 0 ||
        su_home_threadsafe(self->base.sup_home) < 0)
        goto fail;
    self->eventfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->timer_ev = evtimer_new(evbase, on_timer, self);
    self->msg_ev = event_new(evbase, -1, 0, on_msg, self);
    if (self->eventfd >= 0)
        self->eventfd_ev =
            event_new(evbase, self->eventfd, EV_READ | EV_PERSIST, on_msg, self);
    if (self->eventfd < 0 || !self->timer_ev || !self->msg_ev || !self->eventfd_ev ||
        event_add(self->eventfd_ev, NULL) < 0)
        goto fail;
    su_root_t *root = su_root_create_with_port(magic, self);
    if (!root)
        return NULL; /* su_root_create_with_port dropped our reference */
    /* Everything runs on this thread; sofia must not start clones. */
    su_root_threading(root, 0);
    return root;
fail:
    log_error("evport", "cannot create the port: %s", strerror(errno));
    su_home_unref(self->base.sup_home);
    return NULL;
}

static su_port_t *port_of_root(su_root_t *root)
{
    _su_task_r task = su_root_task(root);
    return task ? task->sut_port : NULL;
}

void evport_rearm(su_root_t *root)
{
    su_port_t *self = port_of_root(root);
    if (self)
        port_arm_timer(self);
}

unsigned evport_waits(su_root_t *root)
{
    su_port_t *self = port_of_root(root);
    return self ? self->nwaits : 0;
}

size_t evport_datagram_fds(su_root_t *root, int *fds, size_t max)
{
    su_port_t *self = port_of_root(root);
    size_t n = 0;
    for (unsigned i = 0; self && i < self->nslots; i++)
        if (self->slots[i] && self->slots[i]->datagram && n++ < max)
            fds[n - 1] = self->slots[i]->wait.fd;
    return n;
}

void evport_set_datagram_observer(su_root_t *root, evport_datagram_f *fn, void *arg)
{
    su_port_t *self = port_of_root(root);
    if (!self)
        return;
    self->observer = fn;
    self->observer_arg = fn ? arg : NULL;
}

void evport_set_datagram_filter(su_root_t *root, evport_datagram_filter_f *fn, void *arg)
{
    su_port_t *self = port_of_root(root);
    if (!self)
        return;
    self->filter = fn;
    self->filter_arg = fn ? arg : NULL;
}

void evport_set_connection_hooks(su_root_t *root, const struct evport_conn_hooks *hooks)
{
    su_port_t *self = port_of_root(root);
    if (!self)
        return;
    if (!hooks) {
        /* Connections watched now stay open; nobody counts them any more. */
        for (unsigned i = 0; i < self->nslots; i++)
            if (self->slots[i]) {
                conn_unwatch(self->slots[i]);
                self->slots[i]->accepted = 0;
            }
        memset(&self->conn, 0, sizeof self->conn);
        self->conn_set = 0;
        return;
    }
    self->conn = *hooks;
    self->conn_set = 1;
}
