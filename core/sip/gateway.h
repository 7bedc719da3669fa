/* Gateways at run time: what the switch knows about each gateway beyond its
 * definition, and whether it can take a call now.
 *
 * The module owns, per gateway name:
 *  - the calls in progress through each routing gateway (attempts and
 *    answered calls) and from each mapping gateway, against their
 *    line_limit;
 *  - the OPTIONS health checks of routing gateways with options_check
 *    (gateway_check.h, part of this module);
 *  - the answers that depend on the running policy and on other modules:
 *    whether a routing gateway is usable (known, its registration active
 *    for type "registration", its account registered for type "dynamic",
 *    online per its checks, under its line limit, with an address), where
 *    it is (a dynamic gateway: where its account registered), the privacy
 *    it asks for (its registration's), and which final statuses send a
 *    call on to the next gateway;
 *  - which gateway a request comes from (gw_mapping_by_source(),
 *    gw_routing_by_source()), without allocating.
 *
 * The application creates it and hands it to the call module and to the
 * policies' live objects (`gateways[...]`), and applies each policy set to
 * it as to the others.
 *
 * Counters are a linear array per kind (a handful of gateways; names of
 * removed gateways stay, a few bytes each): O(gateways) per lookup, as is
 * finding a definition in the policy. A dynamic gateway's address costs a
 * registrar lookup (O(log accounts + its bindings)). Nothing here allocates
 * per call.
 * Threads: everything belongs to the loop's thread. */
#ifndef MOON_SIP_GATEWAY_H
#define MOON_SIP_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>

#include <sofia-sip/nta.h>

struct config;
struct event_base;
struct mapping_gateway_def;
struct outreg_set;
struct registrar;
struct routing_gateway_def;
struct gw_set;

/* `nta` and `leg` (the agent's client leg) send the OPTIONS checks; both may
 * be NULL (tests: every check then fails to send). `root` is the evport root,
 * re-armed after sending from our timers (may be NULL). `outregs` answers
 * whether a registration is active; NULL: no registration-type gateway is
 * usable. Returns 0 or -ENOMEM. */
int gw_create(struct gw_set **sp, nta_agent_t *nta, nta_leg_t *leg, su_root_t *root,
              struct event_base *base, struct outreg_set *outregs);

/* Cancel the checks and free. Counters go with it: the call module, which
 * holds them, must be destroyed first. NULL is a no-op. */
void gw_destroy(struct gw_set *s);

/* Follow the policy set `cfg`, which must stay valid until the next call (the
 * engine's running config): checks start, change and stop with it, and
 * every answer below reads it. */
void gw_apply(struct gw_set *s, const struct config *cfg);

/* Shutdown: no more OPTIONS checks. The policy stays for the answers. */
void gw_stop_checks(struct gw_set *s);

/* The registrar whose bindings place dynamic gateways and accounts; NULL
 * (the default): no dynamic gateway is usable. It must outlive the set. */
void gw_set_registrar(struct gw_set *s, struct registrar *r);

/* The running definition of routing gateway `name`, or NULL. */
const struct routing_gateway_def *gw_find(const struct gw_set *s, const char *name);

/* ---- Routing gateways: can it take a call now? ----------------------------- */

enum gw_verdict {
    GW_USABLE,
    GW_UNKNOWN,        /* no routing gateway of that name in the policy */
    GW_NOT_REGISTERED, /* type "registration" and its registration not active,
                          or type "dynamic" and its account without a binding */
    GW_OFFLINE,        /* its OPTIONS checks go unanswered */
    GW_AT_LIMIT,       /* as many calls in progress as its line_limit */
    GW_NO_ADDRESS,     /* nowhere to send the INVITE */
};

/* The first reason, in the order above, why `name` cannot take a call now,
 * or GW_USABLE. */
enum gw_verdict gw_usable(const struct gw_set *s, const char *name);

/* Online: its registration (if any) active, its account (dynamic)
 * registered, and its checks (if any) answered; the line limit does not
 * count. False for unknown names. */
bool gw_online(const struct gw_set *s, const char *name);

/* Where calls to g go, "host:port", in `out`: its address, or for a dynamic
 * gateway where its account registered (gw_account_target()). Returns 0,
 * or -ENOENT (a dynamic gateway not registered). */
int gw_address(const struct gw_set *s, const struct routing_gateway_def *g, char *out,
               size_t outlen);

/* Where a call to account `name` goes, "host:port": its most recent
 * binding's source (behind NAT: the Contact cannot be reached; over TLS:
 * down the REGISTER's connection) or its Contact's host and port.
 * `contact`, when not NULL, gets that binding's Contact URI. Returns the
 * transport to use (enum sip_transport, >= 0), or -ENOENT when it has no
 * binding (or there is no registrar). */
int gw_account_target(const struct gw_set *s, const char *name, char *out, size_t outlen,
                      char *contact, size_t contactlen);

/* A call's attempt through routing gateway `name` begins or ends: each take
 * is followed by one release. */
void gw_routing_take(struct gw_set *s, const char *name);
void gw_routing_release(struct gw_set *s, const char *name);

/* Calls in progress through routing gateway `name`. */
unsigned gw_routing_calls(const struct gw_set *s, const char *name);

/* The privacy routing gateway `g` asks for (enum privacy_mode): a
 * registration-type gateway's registration's (or the switch's
 * user_agent_privacy, inherited); PRIVACY_IGNORE for others. */
int gw_privacy(const struct gw_set *s, const struct routing_gateway_def *g);

/* Whether a final `status` from gateway `name` sends the call to the next
 * one: the gateway's failover_codes, else the switch's (also for names that
 * are no routing gateway, such as a registered endpoint). */
bool gw_failover(const struct gw_set *s, const char *name, int status);

/* The routing gateway a request with Request-URI `ruri` from source
 * `ip`:`port` comes from, or NULL. In this order: a registration gateway
 * whose registration's server (or its own address) is `ip` and whose
 * registered Contact the Request-URI names (user, host and port); a
 * dynamic gateway whose account has a binding from `ip` (any port: NATs
 * move ports); a static gateway whose address is `ip`:`port` (both: the
 * address a carrier sends from is its SIP port, and a customer on the
 * same host must not be taken for it). Reads only; allocates nothing.
 * O(gateways + bindings of the dynamic gateways' accounts). */
const struct routing_gateway_def *gw_routing_by_source(const struct gw_set *s,
                                                       const url_t *ruri, const char *ip,
                                                       unsigned port);

/* ---- Mapping gateways ------------------------------------------------------ */

/* The static mapping gateway with source `ip` among its addresses ("IP" or
 * "IP:PORT"; the port is not compared), or NULL. */
const struct mapping_gateway_def *gw_mapping_by_source(const struct gw_set *s,
                                                       const char *ip);

/* Whether mapping gateway `m` already has line_limit calls in progress. */
bool gw_mapping_full(const struct gw_set *s, const struct mapping_gateway_def *m);

/* A call from mapping gateway `name` begins or ends. */
void gw_mapping_take(struct gw_set *s, const char *name);
void gw_mapping_release(struct gw_set *s, const char *name);

#endif
