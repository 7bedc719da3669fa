/* overload: whether the switch is behind on the SIP it receives, so that
 * new calls are refused (503) until it has caught up.
 *
 * What it measures: every OVERLOAD_TICK_MS a timer reads, for each
 * datagram socket the event port serves (sofia's UDP transports), how full
 * the kernel's receive queue is (SO_MEMINFO: the bytes allocated to queued
 * datagrams over the socket's receive buffer, the fullest socket counting)
 * and how many datagrams the kernel dropped from it for want of room. At a
 * steady load the switch reads datagrams as they come and the queue holds
 * a few (under 2 % of a 2 MiB buffer at 1,500 calls/s); a hiccup (a slow
 * write, the CPU taken by another process) queues more for a moment, and
 * the switch works it off; once the switch is behind for good the queue
 * stays full and the kernel drops what does not fit: the senders'
 * retransmissions of what was lost come on top of the backlog. The
 * timer's own lateness (the loop's lag) is kept too, for stats, but
 * decides nothing: the event port reads one datagram per wakeup and runs
 * timers in between, so a loop far behind on its sockets is seldom late
 * on its timers.
 *
 * The decision has hysteresis: overloaded once OVERLOAD_ENTER_TICKS
 * samples in a row reach OVERLOAD_ENTER_FILL and at least one of them saw
 * datagrams dropped; no longer once OVERLOAD_LEAVE_TICKS samples in a row
 * stay under OVERLOAD_LEAVE_FILL. Each change is logged (warn,
 * rate-limited) and shown in /metrics (moonswitch_overload_active, with
 * moonswitch_calls_shed_total, moonswitch_sip_receive_queue_fill and
 * moonswitch_sip_receive_queue_drops_total) and in stats().overload.
 *
 * What it costs: per tick one getsockopt() per datagram socket and the
 * walk of the port's wait objects (a handful); nothing per message. Callers
 * test overload_shedding() (two loads) for each new INVITE and tell
 * overload_shed() of each one they refused, an increment.
 *
 * The caller owns the object: overload_create(), overload_destroy(). Loop
 * thread only. */
#ifndef MOON_OVERLOAD_H
#define MOON_OVERLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include <sofia-sip/su_wait.h>

struct event_base;
struct overload;

#define OVERLOAD_TICK_MS 100
#define OVERLOAD_ENTER_FILL 0.50
#define OVERLOAD_ENTER_TICKS 8
#define OVERLOAD_LEAVE_FILL 0.10
#define OVERLOAD_LEAVE_TICKS 5

/* Retry-After (seconds) of the 503 given to new calls while overloaded. */
#define OVERLOAD_RETRY_AFTER 2

/* Start sampling the datagram sockets of `root` on `base`. With base NULL
 * nothing is sampled: samples come from overload_sample() only (tests).
 * Returns NULL when out of memory. */
struct overload *overload_create(struct event_base *base, su_root_t *root);
void overload_destroy(struct overload *ov);

/* Whether the switch is overloaded now. NULL: never. O(1). */
bool overload_active(const struct overload *ov);

/* Whether new calls must be refused now: overloaded, and shedding on
 * (the default; overload_set_shedding()). NULL: never. O(1). */
bool overload_shedding(const struct overload *ov);
void overload_set_shedding(struct overload *ov, bool on);

/* A new call was refused because of overload_active(). O(1). */
void overload_shed(struct overload *ov);

/* One sample: the receive queue's fill (0..1), the datagrams dropped since
 * the last sample, and the loop's lag (s). Returns true when the state
 * changed. The timer calls it; tests too. */
bool overload_sample(struct overload *ov, double fill, uint64_t dropped, double lag_s);

struct overload_stats {
    bool active;
    uint64_t shed;     /* new calls refused while overloaded, since start */
    uint64_t episodes; /* times the switch became overloaded */
    double fill;       /* the last sample's receive queue fill, 0..1 */
    uint64_t dropped;  /* datagrams the kernel dropped for want of room, seen so far */
    double fill_max;   /* the largest of the last 10 to 20 s */
    double lag_max;    /* the timer's largest lateness (s), same window */
};
void overload_stats(const struct overload *ov, struct overload_stats *st);

#endif
