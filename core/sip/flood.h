/* flood: hostile traffic. Per-source rate limits, bans, connection caps and
 * the cap on calls in progress (the policy's `switch { security = {...} }`).
 *
 * A source address that is not trusted (a gateway: a mapping gateway's
 * addresses, a routing gateway's address, a registration's server and
 * proxy, plus whatever the trusted callback says, e.g. the sources of
 * endpoint bindings) may send `source_rate` requests a second, from a token
 * bucket holding FLOOD_BURST(source_rate) tokens. Over it, the source is
 * banned for `source_ban` seconds: its datagrams are dropped by the event
 * port before sofia reads them (and, for IPv4, from the next loop turn on,
 * by the kernel's socket filter: evport_set_datagram_blocklist(), so they
 * cost the switch nothing and leave the receive buffer to others), its
 * connections are refused, and nothing is answered or kept. Every UDP datagram but a
 * response counts (requests, keepalives, garbage: a response answers something the switch
 * sent, and only a banned source's is dropped); over TCP every request outside a dialog
 * counts, as sofia hands it over. A ban is logged once when it starts and once when it
 * ends (both through a rate-limited log line), and lives in the store (STORE_SUSPEND, key
 * 'f' + IP), so it survives a restart.
 *
 * Before banning, the decision hook (the policy's on_flood) may spare the
 * source: it is then not counted for `source_ban` seconds. Trusted sources
 * are looked up only when a source runs out of tokens, and a positive
 * answer is cached for FLOOD_TRUST_CACHE_S.
 *
 * Owns: a fixed table of FLOOD_BUCKETS token buckets (open addressing,
 * FLOOD_PROBE slots per source, the least recently seen one evicted when
 * all are taken; allocated once: no allocation per packet), the ban table
 * (grows on a new ban up to FLOOD_MAX_BANS), the per-source connection
 * counts and the trusted set. Costs: a datagram is one hash and at most
 * FLOOD_PROBE compares in each table; a new over-rate source adds the
 * trusted look-up, the hook and a store write.
 *
 * Connections (TCP and TLS, seen through the event port's connection
 * hooks): a banned source's connections are refused at accept and closed
 * at their next read; a source that is not trusted may hold
 * FLOOD_CONN_PER_SOURCE connections at once; a connection from a source not
 * known as trusted must send its first byte within FLOOD_CONN_SILENT_MS, and
 * at most FLOOD_CONN_SILENT_MAX such silent connections are held at once.
 *
 * Everything runs on the loop's thread. Strings passed in are copied. */
#ifndef MOON_SIP_FLOOD_H
#define MOON_SIP_FLOOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>

struct config;
struct event_base;
struct store;
struct flood;

/* Tokens a source may spend at once: one second's worth, at least 10. */
#define FLOOD_BURST(rate) ((rate) > 10 ? (rate) : 10)
#define FLOOD_BUCKETS 8192
#define FLOOD_PROBE 8
#define FLOOD_MAX_BANS 65536
#define FLOOD_TRUST_CACHE_S 10
#define FLOOD_CONN_PER_SOURCE 256
#define FLOOD_CONN_SILENT_MS 10000
#define FLOOD_CONN_SILENT_MAX 1024
/* Retry-After of the 503 given above max_calls. */
#define FLOOD_CALLS_RETRY_AFTER 5

/* Loads the bans still in force from `store` (may be NULL). Returns 0 or
 * -ENOMEM. Until flood_attach(), nothing is filtered. */
int flood_create(struct flood **fp, struct event_base *base, struct store *store);

/* Removes the port's hooks (when attached) and frees everything. Call it
 * after nta is destroyed (closing connections reports to it) and before the
 * root. NULL is a no-op. */
void flood_destroy(struct flood *fl);

/* Install the datagram filter and the connection hooks on root's port, and
 * keep `nta` for the stateless 503 of flood_prefilter_invite(). */
void flood_attach(struct flood *fl, su_root_t *root, nta_agent_t *nta);

/* Take source_rate, source_ban, max_calls and the gateways' addresses (IP
 * literals; names are skipped) from `cfg`. At start and on each reload. */
void flood_apply(struct flood *fl, const struct config *cfg);

/* Replace the static trusted set with `n` IP literals (flood_apply() calls
 * it with the gateways). Invalid ones are skipped. Returns how many were
 * taken, or -ENOMEM. */
int flood_set_trusted(struct flood *fl, const char *const *ips, size_t n);

/* Trust decided elsewhere (the sources of endpoint bindings): asked with
 * the IP text when a source outside the static set runs out of tokens or
 * would be capped. May be NULL. */
typedef bool flood_trusted_h(const char *ip, void *arg);
void flood_set_trusted_fn(struct flood *fl, flood_trusted_h *fn, void *arg);

/* Asked before a ban with the source and its rate over the current second
 * (requests/s): return false to spare the source for source_ban seconds.
 * Runs synchronously, at most once per source per ban period. It may call
 * flood_ban() and flood_lift(). May be NULL. */
typedef bool flood_decide_h(const char *ip, double rate, void *arg);
void flood_set_hook(struct flood *fl, flood_decide_h *fn, void *arg);

/* The per-datagram (and per-request) check, with the monotonic clock in
 * microseconds: true admits, false drops (banned, or banned now). The
 * port's filter calls it; tests call it with their own clock. */
bool flood_check(struct flood *fl, const struct sockaddr *from, uint64_t now_us);

/* Same, on the monotonic clock (arg: the flood), shaped as sipagent's
 * stream filter: requests over stream transports, which the port's filter
 * does not see. */
bool flood_admit(const struct sockaddr *from, socklen_t fromlen, void *arg);

/* Ban `ip` for `seconds` (> 0) from now, or extend its ban. `why` goes to
 * the log. Returns 0, -EINVAL for no IP literal, -ENOSPC when
 * FLOOD_MAX_BANS are in force. */
int flood_ban(struct flood *fl, const char *ip, long seconds, const char *why);

/* Lift the ban of `ip`. Returns 1 when it was banned, 0 when not, -EINVAL
 * for no IP literal. */
int flood_lift(struct flood *fl, const char *ip);

/* Unix seconds the ban of `ip` ends, or 0 when not banned. */
long long flood_banned_until(struct flood *fl, const char *ip);

/* Visit the bans in force (in table order). Stops when fn returns
 * non-zero, and returns that. fn must not ban or lift. */
typedef int flood_ban_h(const char *ip, long long until, uint64_t dropped, void *arg);
int flood_bans(struct flood *fl, flood_ban_h *fn, void *arg);

struct flood_stats {
    uint64_t dropped;     /* dropped in the switch from banned sources (not those
                           * the kernel's filter dropped: it counts none) */
    uint64_t bans;        /* bans started (rate, policy and operator) */
    uint64_t spared;      /* sources the hook spared */
    uint64_t refused;     /* connections refused or closed unread */
    unsigned banned;      /* bans in force */
    unsigned kernel;      /* of them, in the kernel's socket filter */
    unsigned connections; /* accepted connections tracked */
    unsigned silent;      /* of them, silent so far */
};
void flood_get_stats(const struct flood *fl, struct flood_stats *out);

/* max_calls: true when a new call must be refused with 503 and
 * Retry-After: FLOOD_CALLS_RETRY_AFTER, given the calls in progress. */
bool flood_calls_over(const struct flood *fl, size_t calls_in_progress);

/* A new call was refused for max_calls (by flood_prefilter_invite() or by
 * a prefilter that runs flood_calls_over() itself): the rate-limited
 * warning. */
void flood_calls_refused(struct flood *fl);

/* The calls in progress, for flood_prefilter_invite(). */
typedef size_t flood_calls_h(void *arg);
void flood_set_call_counter(struct flood *fl, flood_calls_h *count, void *arg);

/* A sipagent_stateless_h for INVITE (arg: the flood): answers 503 with
 * Retry-After, statelessly, while flood_calls_over(); else returns -1. */
int flood_prefilter_invite(msg_t *msg, sip_t *sip, void *arg);

#endif
