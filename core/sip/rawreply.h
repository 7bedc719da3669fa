/* rawreply: answers written as text and handed to the transport the
 * request came over, without sofia's message objects.
 *
 * nta_msg_treply() and nta_incoming_treply() copy every header of the
 * request into a new message, parse the extra headers from strings, encode
 * all of it again and allocate the lot in a fresh home: tens of thousands
 * of instructions for a 401 or a 200. Here the answer's first lines (status,
 * Via, From, To with a tag, Call-ID, CSeq) are encoded once from the
 * request's parsed headers into a caller's buffer, the caller appends what
 * it wants as text, and the text goes out on the request's transport to
 * where nta would have sent it (RFC 3261 18.2.2 and rport, as the agent's
 * NTATAG_SERVER_RPORT says at that moment).
 *
 * Over UDP, to a numeric address, for a request read as a datagram by the
 * port (dgram.h), the text goes out with one sendto() on the socket the
 * request came in on, and the module does what tport would have done after
 * sending: count the response by status (statuscount.h) and capture it for
 * Homer (hep.h). Otherwise (TCP, TLS, a host name, the request's
 * processing deferred past its delivery, a failed sendto(), sofia's own
 * message log on: TPORT_LOG) the text goes through tport.
 *
 * Costs: rawreply_head() O(header text), no allocation; rawreply_dest()
 * takes a reference to the transport, which rawreply_dest_release() drops;
 * rawreply_send() costs one system call by sendto(), else allocates one
 * message for the text (freed once tport has sent it). Loop thread only. */
#ifndef MOON_SIP_RAWREPLY_H
#define MOON_SIP_RAWREPLY_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <sofia-sip/nta.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/tport.h>

/* Where an answer goes: the request's transport (referenced) and the
 * address nta would answer to, with its strings copied here; for sendto(),
 * the socket and that address. */
struct rawreply_dest {
    tport_t *tp; /* NULL: nowhere (the request came from no transport) */
    tp_name_t tpn;
    char proto[8], host[64], port[8];
    int fd; /* -1: through tport */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } to;
    socklen_t tolen;
};

/* The destination of answers to request `msg` (its top Via, as nta fixed
 * it on arrival). Returns 0, or -1 when it has none (nothing to release). */
int rawreply_dest(struct rawreply_dest *d, nta_agent_t *nta, msg_t *msg,
                  const sip_t *sip);
void rawreply_dest_release(struct rawreply_dest *d);

/* "SIP/2.0 status phrase", the Vias, the Record-Routes when `record_route`,
 * From, To (with a new tag when it has none), Call-ID and CSeq, each ending
 * in CRLF, into buf[size]. Returns the length, or 0 when it does not fit. */
size_t rawreply_head(char *buf, size_t size, const sip_t *sip, int status,
                     const char *phrase, bool record_route);

/* Send `text` (a whole message) to `d`. Counted as a response sent, and by
 * its status. Returns 0 or -1. */
int rawreply_send(const struct rawreply_dest *d, const char *text, size_t len);

/* Answer request `msg` statelessly: head + `headers` (more header lines,
 * each ending in CRLF; may be NULL) + Content-Length: 0. Takes msg (as
 * nta_msg_treply() does). Returns 0 or -1. */
int rawreply_answer(nta_agent_t *nta, msg_t *msg, const sip_t *sip, int status,
                    const char *phrase, const char *headers);

#endif
