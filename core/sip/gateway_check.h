/* Gateway health: OPTIONS checks of routing gateways (`options_check = N`).
 * Part of the gateway module: only gateway.c includes this header; everyone
 * else asks gateway.h (gw_online(), gw_usable()).
 *
 * Each routing gateway with options_check sends an OPTIONS to its address
 * every N seconds. Each check has its own timeout, min(N, 5) s, run by our
 * own timer (nta's timer F, 64*T1, is far too long): when it fires the
 * transaction is destroyed and the check counts as a miss. A 408 or 503 that
 * nta makes up itself (nta_sip_is_internal: a timeout, a transport error)
 * is a miss too; any real response, even 404 or 405, shows the gateway is
 * alive. A gateway goes offline after GW_CHECK_MISSES misses in a row and
 * back online after one answer. A gateway starts online (the switch does
 * not refuse calls while the first check is out) and a change of address
 * or interval starts it over.
 *
 * Gateways without options_check have no entry and count as online.
 * Whether a gateway takes calls also depends on its registration (for
 * registration-type gateways) and its line limit: that is gw_usable()'s
 * business (gateway.h).
 *
 * Memory: one entry (~150 bytes + two libevent timers) per checked gateway,
 * plus one transaction while a check is out.
 * Threads: everything belongs to the loop's thread. */
#ifndef MOON_SIP_GATEWAY_CHECK_H
#define MOON_SIP_GATEWAY_CHECK_H

#include <stdbool.h>

#include <sofia-sip/nta.h>

struct config;
struct event_base;
struct gw_checks;

#define GW_CHECK_MISSES 2
#define GW_CHECK_TIMEOUT_MAX 5 /* seconds */

/* `leg` is the agent's client leg (sipagent_client_leg()); `root` the evport
 * root, re-armed after sending from our timers. Returns 0 or -ENOMEM. */
int gw_check_create(struct gw_checks **sp, nta_agent_t *nta, nta_leg_t *leg,
                    su_root_t *root, struct event_base *base);

/* Cancel every check and free. NULL is a no-op. */
void gw_check_destroy(struct gw_checks *s);

/* Follow the routing gateways of `cfg`: start checks for new gateways (the
 * first OPTIONS goes out at once), drop removed ones, start over those whose
 * address or interval changed. cfg is only read during the call. */
void gw_check_apply(struct gw_checks *s, const struct config *cfg);

/* False only while gateway `name` is checked and its checks fail. */
bool gw_check_alive(const struct gw_checks *s, const char *name);

/* Whether gateway `name` is checked at all. */
bool gw_check_checked(const struct gw_checks *s, const char *name);

#endif
