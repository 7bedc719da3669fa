/* Routing: which routing gateways may carry a call, in the order to try
 * them, and the number each of them is sent.
 *
 * Selection is pure: it reads the policy set and nothing else. Whether a
 * gateway can take a call right now (online, under its line limit, its
 * registration active) changes while a call fails over, so it is asked of
 * the gateway module (gateway.h) at the moment the call tries the gateway:
 * routing_next().
 *
 * Prefix match: a gateway serves a callee when one of its prefixes starts
 * the number; a gateway without prefixes serves every number, as the
 * shortest (empty) prefix. Gateways are ordered by their longest matching
 * prefix (longest first), then by priority (lower first), then by name, so
 * the order is stable across reloads.
 *
 * Rewrites: a gateway's callee_rewrite rules are Lua patterns
 * (`{ "^00", "" }`). The core knows nothing of Lua: the engine installs a
 * routing_rewrite_h that runs string.gsub. Without one (tests, --check) the
 * common subset is applied in C: an optional ^ anchor followed by literal
 * characters and %d (one digit), replaced by a literal string. */
#ifndef MOON_ROUTING_H
#define MOON_ROUTING_H

#include <stddef.h>
#include <stdint.h>

struct config;
struct gw_set;
struct rewrite_list;
struct routing_gateway_def;

/* Longest number or gateway name routing handles. */
#define ROUTING_NUMBER_MAX 128

/* Fill `out` (capacity `max`) with the names of the gateways that serve
 * `callee`, in the order to try them. Names point into cfg's definitions and
 * live as long as cfg. Returns the count (at most max). O(g log g) in
 * gateways, O(total prefixes) to match. */
size_t routing_select(const struct config *cfg, const char *callee, const char **out,
                      size_t max);

/* Routing gateway `name` when it can take a call now (gw_usable()): its
 * running definition; else NULL, with why logged for call `id`. */
const struct routing_gateway_def *routing_check(const struct gw_set *gws,
                                                const char *name, uint64_t id);

/* The next gateway of names[*next .. n) that can take a call now
 * (gw_usable()), with *next moved past it: its running definition, or NULL
 * when none is left (*next == n). Each gateway passed over is logged with
 * why, for call `id`. O(gateways) per name. */
const struct routing_gateway_def *routing_next(const struct gw_set *gws,
                                               const char *const *names, size_t n,
                                               size_t *next, uint64_t id);

/* Apply one rule to `in`, writing the result to `out`. Returns 0, or -1 when
 * the rule cannot be applied (then `out` is undefined and the caller keeps
 * the number unchanged). */
typedef int routing_rewrite_h(const char *pattern, const char *replacement, const char *in,
                              char *out, size_t outlen, void *arg);

/* The C subset described above: anchored or not, literal and %d. */
int routing_rewrite_simple(const char *pattern, const char *replacement, const char *in,
                           char *out, size_t outlen, void *arg);

/* Apply every rule of `rules` in order (each to the previous result), with
 * `h` (NULL: routing_rewrite_simple). A rule that fails is skipped. */
void routing_rewrite(const struct rewrite_list *rules, const char *callee,
                     routing_rewrite_h *h, void *arg, char *out, size_t outlen);

#endif
