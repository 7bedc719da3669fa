/* Which transport a request the switch starts travels over, and what goes
 * with it: the Request-URI's transport parameter, the Contact on the
 * matching listener, where the calls to a registered endpoint go, and why
 * a TLS connection to a carrier failed.
 *
 * The registration and call code call these in one place each, so the
 * transport rules live here. Everything is computed on demand from nta's
 * transports (a handful of primaries to walk) or from the message given;
 * nothing is kept and nothing is allocated: results go to the caller's
 * buffers. */
#ifndef MOON_SIP_TRANSPORT_H
#define MOON_SIP_TRANSPORT_H

#include <stddef.h>
#include <time.h>

#include <sofia-sip/nta.h>

/* "udp", "tcp", "tls" for enum sip_transport; -1 for an unknown name. */
const char *transport_name(int transport);
int transport_by_name(const char *name);

/* ";transport=tcp" or ";transport=tls"; "" for UDP (the default). */
const char *transport_param(int transport);

/* "sip:[user@]host[:port][;transport=...]" into out; port 0: none written
 * (host may carry its own, "host:port"). Returns the length, or -1 when it
 * does not fit. */
int transport_uri(char *out, size_t len, const char *user, const char *host, int port,
                  int transport);

/* "host:port" where peers reach the switch over `transport`: the first
 * listener of that protocol (with `local_ip`, when not NULL, for its
 * host); for UDP, or with no such listener, nta's own contact address.
 * A client-only TLS transport listens nowhere: then the first listener's
 * host without a port. */
void transport_local(nta_agent_t *nta, int transport, const char *local_ip, char *out,
                     size_t len);

/* The Contact for requests over `transport`: `udp_contact` for UDP,
 * otherwise "<sip:host:port;transport=...>" of transport_local() in buf.
 * Returns the one to use. */
const char *transport_contact(nta_agent_t *nta, int transport, const char *udp_contact,
                              char *buf, size_t len);

/* The transport a request came over (enum sip_transport): UDP, or for a
 * stream TCP, TLS when its Via says so. */
int transport_of_msg(msg_t *msg);

/* Where calls to an endpoint registered over `binding_transport` (a
 * binding's "udp", "tcp", "tls") go: over TLS, down the connection its
 * REGISTER came on, so `target` gets `source` and TRANSPORT_TLS is
 * returned; otherwise TRANSPORT_UDP and `target` is left alone. */
int transport_endpoint(const char *binding_transport, const char *source, char *target,
                       size_t len);

/* Why the last TLS handshake with the registration's destination (`proxy`
 * when set, else server:port) failed since `since`, or NULL (also for
 * other transports). */
const char *transport_tls_failure(int transport, const char *proxy, const char *server,
                                  int port, time_t since);

#endif
