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

/* Called with the source address of each datagram about to be read from a
 * datagram socket registered by sofia, just before sofia reads it. The
 * observer may change sofia's settings for that one message (the agent uses
 * it to choose where responses go per peer). */
typedef void evport_datagram_f(const struct sockaddr *from, socklen_t fromlen, void *arg);

/* Set (or with fn NULL, clear) the datagram observer of root's port. While
 * set, each datagram costs one extra recvfrom(MSG_PEEK) system call. */
void evport_set_datagram_observer(su_root_t *root, evport_datagram_f *fn, void *arg);

#endif
