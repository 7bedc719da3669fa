/* metrics_server: the HTTP listener that serves the metrics registry
 * (metrics.h) to Prometheus, and the figures of the process itself.
 *
 * One evhttp on the switch's event_base, so scrapes run on the loop thread
 * like everything else: GET (or HEAD) /metrics answers 200 with the text
 * exposition format 0.0.4; any other path gets 404, other methods 405
 * (501 for those libevent refuses itself, such as PATCH). A scrape
 * renders every series in one go, O(series): about 250 ns a series
 * (bench/micro.c), so 2.5 ms for 10,000 registrations, during which the
 * loop waits. Plain HTTP without authentication: listen on a loopback or
 * private address.
 *
 * While it listens, the server also measures the event loop's lag: a timer
 * due every 250 ms notes how late it fired (an idle switch wakes 4 times a
 * second for it), into moonswitch_event_loop_lag_seconds (a histogram) and
 * moonswitch_event_loop_lag_max_seconds (the largest of the last 10 to 20
 * seconds). Its collector adds, read at scrape time: heap in use and mapped
 * (mallinfo2, O(free chunks)), and the standard process_* series (RSS, CPU
 * seconds, open and maximum descriptors, start time).
 *
 * The server owns its evhttp and timer; metrics_server_destroy() frees
 * them. */
#ifndef MOON_METRICS_SERVER_H
#define MOON_METRICS_SERVER_H

#include <stddef.h>

struct event_base;
struct metrics_server;

/* Parse "IP:PORT" (IPv4) or "[IPv6]:PORT" into `host` (without brackets)
 * and `port`. Returns 0 or -1. */
int metrics_parse_address(const char *address, char *host, size_t hostlen, int *port);

/* Returns NULL when out of memory. Listens nowhere until applied. */
struct metrics_server *metrics_server_create(struct event_base *base);

/* Listen on `address` ("IP:PORT"; NULL: stop listening). An address equal
 * to the current one changes nothing; another one is bound first and the
 * old socket closed after, so a reload that moves the listener never leaves
 * it unbound. Returns 0, or -1 with the reason logged: then the previous
 * listener (if any) stays. */
int metrics_server_apply(struct metrics_server *s, const char *address);

/* The address listened on, or NULL. */
const char *metrics_server_address(const struct metrics_server *s);

/* Close the listener and the lag timer. NULL is a no-op. */
void metrics_server_destroy(struct metrics_server *s);

#endif
