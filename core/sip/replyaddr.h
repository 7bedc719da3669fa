/* replyaddr: where responses to a peer's requests go (a routing gateway's
 * `reply_address`).
 *
 *   socket    the source IP and port the request came from (the default, and
 *             what every peer without a setting gets: phones behind NAT, too)
 *   via_port  the source IP with the port of the top Via
 *   via       the top Via's host and port; sofia's transaction layer applies
 *             RFC 3261 §18.2.2 (`received` wins over the Via host), so this
 *             differs from via_port only in the port, never in the host
 *
 * sofia decides where a response goes when the request arrives, from one
 * agent-wide setting (NTATAG_SERVER_RPORT). To make it per peer, replyaddr
 * watches each UDP datagram's source just before sofia reads it (an evport
 * observer) and switches that setting for gateways that want the Via port.
 * Over TCP and TLS responses always go back on the connection. Only IP
 * literals in gateway addresses are matched; a gateway given by name is
 * logged and replied to on the socket. */
#ifndef MOON_SIP_REPLYADDR_H
#define MOON_SIP_REPLYADDR_H

#include <sofia-sip/nta.h>

struct config;
struct replyaddr;

/* Returns NULL when out of memory. Nothing is observed until an applied
 * policy has a gateway whose reply_address is not "socket". */
struct replyaddr *replyaddr_create(su_root_t *root, nta_agent_t *nta);

/* Take the routing gateways' reply_address from `cfg` (start and reload).
 * O(gateways); the observer costs one recvfrom(MSG_PEEK) per datagram and a
 * scan of the non-socket gateways, and is installed only when there are any. */
void replyaddr_apply(struct replyaddr *ra, const struct config *cfg);

/* Removes the observer. NULL is allowed. */
void replyaddr_destroy(struct replyaddr *ra);

#endif
