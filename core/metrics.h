/* metrics: the switch's figures for Prometheus (text exposition format
 * 0.0.4). metrics_server.h serves them over HTTP.
 *
 * Figures come two ways:
 *
 * - Pushed, as things happen: counters, gauges and histograms whose label
 *   values are resolved once, when a handle is first asked for (a gateway's
 *   handle at config load or call setup; a generic series at config load).
 *   After that an update is an increment in memory the handle points at: no
 *   lookup by string, no formatting, no allocation, no system call. The
 *   call figures below are pushed.
 *
 * - Collected, at scrape time: a collector callback prints values it reads
 *   only then (registrations, bindings, heap, LMDB size, Lua memory, loop
 *   lag), so they cost nothing between scrapes.
 *
 * There is one registry per process, like the log: counting needs no
 * context pointer, and counting works whether or not a listener is
 * configured. Single thread: every function runs on the loop thread.
 *
 * Handles live until metrics_free_all(); a gateway or series removed from
 * the policy by a reload keeps its handle and its series (counters must not
 * go backwards; a removed gateway's calls-in-progress gauge reaches 0 as its
 * calls end) until the process restarts. Generic series can be dropped
 * explicitly (metrics_series_drop), for gauges that would otherwise lie.
 *
 * ---- Calls ------------------------------------------------------------------
 *
 * Series (a call's mapping gateway is "" when it matched none; its routing
 * gateway is the last one tried, "" when none was):
 *
 *   moonswitch_calls_total{mapping_gateway, routing_gateway, status}  counter
 *       calls ended, by the final status the caller saw; every pair that
 *       ended a call also shows status="200" (0 if none answered), so that
 *       an ASR ratio never lacks its numerator
 *   moonswitch_calls_active                                            gauge
 *   moonswitch_mapping_gateway_calls_active{mapping_gateway}           gauge
 *   moonswitch_routing_gateway_calls_active{routing_gateway}           gauge
 *       an attempt in progress or an answered call through that gateway
 *   moonswitch_call_attempts_total{routing_gateway, status}            counter
 *       attempts ended, failed over ones included (per-carrier ASR with
 *       failover: status="200" over all)
 *   moonswitch_call_setup_seconds{routing_gateway}                     histogram
 *       post-dial delay: the attempt's INVITE to its first 18x or 200
 *   moonswitch_call_duration_seconds{routing_gateway}                  histogram
 *       answered calls: answer to end
 *
 * The call code embeds a struct metrics_call in each call (24 bytes, zeroed
 * with the call) and tells it, in this order:
 *
 *   metrics_call_begin(&c->m, mgw)          the INVITE is taken for routing;
 *                                           mgw may be NULL (none matched)
 *   metrics_call_attempt(&c->m, rgw)        each B-leg INVITE sent to rgw
 *                                           (its time is noted)
 *   metrics_call_progress(&c->m)            each 18x of the attempt (not
 *                                           100): the first gives the PDD
 *   metrics_call_answered(&c->m)            the attempt's 200 (the PDD if no
 *                                           18x came; the duration starts)
 *   metrics_call_attempt_failed(&c->m, st)  an unanswered attempt ends with
 *                                           st (a final >= 300; 408 for our
 *                                           timeouts) and the call fails over
 *                                           or ends
 *   metrics_call_end(&c->m, status)         the call is over, with the final
 *                                           status the caller saw (200 once
 *                                           answered); closes the attempt
 *                                           still open with that status
 *
 * Each is O(1), reads the monotonic clock at most once (attempt, progress,
 * answered, end) and allocates nothing, except metrics_call_end() the first
 * time a pair of gateways or a status code is seen (one small allocation,
 * then never again for that pair or code); bench/micro.c measures the whole
 * sequence. Calls out of order are ignored: metrics_call_end() on a call
 * that never began, a second metrics_call_end(), attempt_failed() after
 * the answer; so a call freed on any path may call metrics_call_end(). The
 * gateway handles are looked up by name (O(length of the name)): resolve
 * them once per call, or keep them in the gateway's own struct at config
 * load. A call refused before it has a struct (unknown source, loop) can
 * count on a struct metrics_call on the stack: begin, then end.
 */
#ifndef MOON_METRICS_H
#define MOON_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

/* ---- Calls --------------------------------------------------------------- */

struct metrics_gateway;

/* The handle of a routing or mapping gateway's call series, created on
 * first use; NULL name means "" (none). Returns NULL only when out of
 * memory; every function below accepts NULL handles (counted under ""). */
struct metrics_gateway *metrics_routing_gateway(const char *name);
struct metrics_gateway *metrics_mapping_gateway(const char *name);

struct metrics_call {
    struct metrics_gateway *mapping;
    struct metrics_gateway *routing; /* the current or last attempt's */
    uint32_t stamp_ms;               /* private: the attempt's or answer's time */
    uint8_t flags;                   /* private */
};

void metrics_call_begin(struct metrics_call *mc, struct metrics_gateway *mapping);
void metrics_call_attempt(struct metrics_call *mc, struct metrics_gateway *routing);
void metrics_call_progress(struct metrics_call *mc);
void metrics_call_answered(struct metrics_call *mc);
void metrics_call_attempt_failed(struct metrics_call *mc, int status);
void metrics_call_end(struct metrics_call *mc, int status);

/* Calls begun and not ended. */
long metrics_calls_active(void);

/* ---- Generic series ------------------------------------------------------ */

struct metrics_family;
struct metrics_series;

/* Declare a family with no label or one label (`label` NULL: none). A
 * histogram takes `nbuckets` ascending upper bounds (+Inf is implicit).
 * Declaring a name again returns the first declaration. Returns NULL when
 * out of memory. Config-load time: O(families). */
struct metrics_family *metrics_family(const char *name, const char *help,
                                      enum metrics_type type, const char *label,
                                      const double *buckets, unsigned nbuckets);

/* The series of `label_value` (ignored without a label), created on first
 * use with its value escaped once. O(length of the value). NULL when out
 * of memory; the update functions accept NULL. */
struct metrics_series *metrics_series(struct metrics_family *f, const char *label_value);

/* O(1): a counter's metrics_inc/metrics_add; a gauge's metrics_set/add/inc;
 * a histogram's metrics_observe (O(buckets)). */
void metrics_inc(struct metrics_series *s);
void metrics_add(struct metrics_series *s, double v);
void metrics_set(struct metrics_series *s, double v);
void metrics_observe(struct metrics_series *s, double v);
double metrics_value(const struct metrics_series *s);

/* Remove a series from the output and free it; its handle dies. */
void metrics_series_drop(struct metrics_series *s);

/* ---- Collectors ------------------------------------------------------------ */

struct metrics_out;

/* Called at each scrape, after the pushed families, in the order added:
 * prints whole families with metrics_out_family() followed by their
 * samples. Must not add or remove collectors. */
typedef void metrics_collect_f(struct metrics_out *out, void *arg);

/* Returns 0 or -ENOMEM. */
int metrics_collector_add(metrics_collect_f *fn, void *arg);
void metrics_collector_remove(metrics_collect_f *fn, void *arg);

/* "# HELP" and "# TYPE" of a family (counters' names end in _total). */
void metrics_out_family(struct metrics_out *out, const char *name, const char *help,
                        enum metrics_type type);

/* One sample: `name`, then label name/value pairs ending with NULL (values
 * escaped here), then nothing else: the value is `v`.
 *   metrics_out_sample(out, "moonswitch_registration_up", 1, "registration", name, NULL);
 */
void metrics_out_sample(struct metrics_out *out, const char *name, double v, ...)
    __attribute__((sentinel));

/* ---- Output ---------------------------------------------------------------- */

/* Append the whole exposition (pushed families, then collectors) to `buf`.
 * O(series). */
void metrics_render(struct evbuffer *buf);

/* Append `s` to buf escaped as a label value (\\, \", \n). */
void metrics_escape_label(struct evbuffer *buf, const char *s);

/* Free every handle, family and collector. Call last, after every module
 * that holds handles is gone; counting afterwards starts a fresh registry. */
void metrics_free_all(void);

#endif
