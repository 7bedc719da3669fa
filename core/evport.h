/* evport: sofia-sip's reactor (su_port) implemented on a libevent base.
 *
 * sofia-sip normally runs its own poll loop. This port lets one libevent
 * event_base drive everything instead: each su_wait_t registration becomes a
 * libevent event, sofia's timer queue is mapped onto one libevent timer, and
 * a wakeup (a su_msg sent to the port) becomes event_active() on the loop's
 * thread, or a write to an eventfd from any other thread.
 *
 * The port's header is not installed by Debian's libsofia-sip-ua, so the base
 * port's layout is declared here to match the installed library. evport
 * checks it at start-up (evport_layout_check()) and refuses to run if it does
 * not match. */
#ifndef MOON_EVPORT_H
#define MOON_EVPORT_H

#include <sofia-sip/su_wait.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct event_base;

/* Check that the su_base_port_t layout compiled here matches the installed
 * libsofia-sip-ua. Returns 0, or -1 with the reason written to `why`. */
int evport_layout_check(char *why, size_t whylen);

/* Create a su_root driven by `base`. The root owns the port; destroy it with
 * su_root_destroy() before freeing the base. Returns NULL on failure. */
su_root_t *evport_root_create(struct event_base *base, su_root_magic_t *magic);

/* Re-arm the loop's timer for sofia's next timer. sofia does not tell the
 * port when a timer is set, so any code that calls into sofia from outside a
 * port callback (Lua, the REPL) calls this afterwards. Costs one
 * su_timer_next_expires() and at most one evtimer_add(). */
void evport_rearm(su_root_t *root);

/* Number of wait objects registered (for tests and status). */
unsigned evport_waits(su_root_t *root);

/* The descriptors of the datagram sockets registered now (sofia's UDP
 * transports), at most `max` of them into `fds`. Returns how many there
 * are. O(wait objects). */
size_t evport_datagram_fds(su_root_t *root, int *fds, size_t max);

/* Called with the source address of each datagram about to be read from a
 * datagram socket registered by sofia, just before sofia reads it. The
 * observer may change sofia's settings for that one message (the agent uses
 * it to choose where responses go per peer). */
typedef void evport_datagram_f(const struct sockaddr *from, socklen_t fromlen, void *arg);

/* Set (or with fn NULL, clear) the datagram observer of root's port. It
 * costs no system call: the port peeks at each datagram anyway (below). */
void evport_set_datagram_observer(su_root_t *root, evport_datagram_f *fn, void *arg);

/* Called with the source of each datagram waiting on a datagram socket
 * registered by sofia, and its first EVPORT_PEEK_HEAD bytes (fewer for a
 * shorter datagram), before the observer and before sofia reads it.
 * Returning true drops the datagram: the port reads it into a one-byte
 * buffer and discards it, sofia never sees it (no parsing, no allocation).
 * Up to EVPORT_DROP_BATCH datagrams are dropped per wakeup. */
#define EVPORT_PEEK_HEAD 8
typedef bool evport_datagram_filter_f(const struct sockaddr *from, socklen_t fromlen,
                                      const char *head, size_t headlen, void *arg);
#define EVPORT_DROP_BATCH 64

/* A readable datagram socket is read until it is empty, up to
 * EVPORT_READ_BATCH datagrams per wakeup (then timers and other sockets
 * run, and the loop comes back). Each datagram costs one
 * recvfrom(MSG_PEEK | MSG_TRUNC), which tells its source, first bytes and
 * length (dgram.h), and sofia's recvmsg(); each wakeup one poll() for the
 * exact events (sofia needs POLLERR) and the peek that finds it empty. */
#define EVPORT_READ_BATCH 32

/* Set (or with fn NULL, clear) the datagram filter of root's port. A
 * dropped datagram costs the port's peek and one recv(). */
void evport_set_datagram_filter(su_root_t *root, evport_datagram_filter_f *fn, void *arg);

/* Sources whose datagrams the kernel drops before they reach any IPv4
 * datagram socket registered by sofia (now or later): a classic BPF socket
 * filter, a balanced search over the sorted addresses (about 3 compares per
 * level: ~30 instructions per datagram for 512 addresses). A dropped
 * datagram costs the switch nothing and does not fill the socket's receive
 * buffer, so the traffic of others still gets through. `v4` holds IPv4
 * addresses in network byte order; n 0 removes the filter. At most
 * EVPORT_BLOCK_MAX (more: the first EVPORT_BLOCK_MAX). Returns the number
 * installed, or -1 when a socket refused the filter (logged). O(n log n). */
#define EVPORT_BLOCK_MAX 512
int evport_set_datagram_blocklist(su_root_t *root, const uint32_t *v4, size_t n);

/* Connections accepted by sofia's listening stream sockets (TCP, and TLS
 * beneath its handshake). The port recognises them as the wait objects
 * registered while a listening socket's callback runs, keeps their peer
 * address (one small allocation per connection), and asks these hooks:
 *
 *   accepted  once, at registration: ACCEPT, WATCH (accepted, but closed
 *             unless its first byte arrives within silent_ms), or REFUSE
 *   readable  before each read: true closes the connection unread
 *   spoke     a watched connection's first byte arrived
 *   closed    the connection's wait object went (sofia closed it);
 *             `watched` when it was still watched (silent) then
 *
 * A connection is closed by shutdown(2) on its socket: its pending bytes are
 * read and discarded by the port, and sofia is told of a hang-up, so it
 * frees the connection without parsing anything from it. */
enum evport_conn_verdict { EVPORT_CONN_ACCEPT, EVPORT_CONN_WATCH, EVPORT_CONN_REFUSE };
struct evport_conn_hooks {
    enum evport_conn_verdict (*accepted)(const struct sockaddr *peer, socklen_t len,
                                         void *arg);
    bool (*readable)(const struct sockaddr *peer, socklen_t len, void *arg);
    void (*spoke)(const struct sockaddr *peer, socklen_t len, void *arg);
    void (*closed)(const struct sockaddr *peer, socklen_t len, bool watched, void *arg);
    unsigned silent_ms; /* a watched connection's deadline for its first byte */
    void *arg;
};

/* Install the hooks (copied), or with NULL remove them. Connections accepted
 * before stay unwatched; `closed` is still called for those accepted while
 * the hooks were set, as long as hooks are set. */
void evport_set_connection_hooks(su_root_t *root, const struct evport_conn_hooks *hooks);

#endif
