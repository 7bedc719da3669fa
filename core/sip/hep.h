/* hep: SIP capture to a Homer server, HEP version 3 over UDP
 * (switch.hep = { address = "IP:PORT", id = N }).
 *
 * Every SIP message sofia's transports receive or send (requests and
 * responses, retransmissions, stateless answers, over UDP, TCP and TLS),
 * and every answer the switch sends past them (hep_sent_text()), becomes
 * one HEP packet sent to `address`: IP family, protocol (UDP 17,
 * TCP 6, also for TLS), source and destination IP and port, the time in
 * seconds and microseconds, protocol type 1 (SIP), capture agent id N, the
 * message as it was on the wire, and for the B-leg of a call a correlation
 * id (chunk 0x0011) that is the A-leg's Call-ID, as Homer joins the legs.
 *
 * The hook is sofia's own message log: tport_log_msg(), which tport calls
 * through its PLT for each message it delivers or has sent while its log is
 * on. This module turns the log on (TPTAG_LOG: the parser then keeps each
 * received header's text as it came) while switch.hep is set, and defines
 * tport_log_msg(), which the executable exports (CMakeLists.txt) so that it
 * replaces sofia's. With switch.hep unset the log is off, sofia never calls
 * it, and nothing here runs. Local addresses are the transports' bound
 * ones (0.0.0.0 for a wildcard listener; a connection the switch opened
 * shows its listener's port, not its ephemeral one).
 *
 * Correlation: the call module names each B-leg Call-ID's A-leg Call-ID
 * (hep_correlate()). The pair is kept while nta holds a dialog with that
 * Call-ID, then 32 s more (late answers, retransmissions): a sweep every
 * 30 s, only while pairs exist. About 100 bytes a call, only while
 * capturing.
 *
 * Costs while capturing: the log's header copies, msg_iovec(), one copy
 * into a fixed 64 KiB buffer and one send() per message; no allocation.
 * One instance per process (sofia's hook carries no argument of ours).
 * Destroy it before the nta agent. */
#ifndef MOON_SIP_HEP_H
#define MOON_SIP_HEP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <sofia-sip/nta.h>
#include <sofia-sip/tport.h>

struct config;
struct event_base;
struct hep;

/* What one packet says. `src` and `dst` are AF_INET or AF_INET6, the same
 * family; `correlation` may be NULL. */
struct hep_packet {
    const struct sockaddr *src, *dst;
    uint8_t proto; /* IPPROTO_UDP or IPPROTO_TCP */
    uint32_t sec, usec;
    uint32_t agent_id;
    const struct iovec *payload;
    size_t npayload;
    const char *correlation;
};

/* Encode p into out (cap bytes). Returns the packet's length, or 0 when it
 * does not fit (HEP's length field is 16 bits: at most 65535). */
size_t hep_encode(uint8_t *out, size_t cap, const struct hep_packet *p);

/* Create the process's instance for nta's transports, its sweep timer on
 * `base`. Captures nothing until applied. Returns 0, -ENOMEM, or -EBUSY
 * when one exists. */
int hep_create(struct hep **hp, nta_agent_t *nta, struct event_base *base);
void hep_destroy(struct hep *h);

/* Take switch.hep from cfg (start and reload): start, move or stop the
 * capture, and the agent id. Returns 0, or -1 when the socket could not be
 * made (logged; capture is then off). */
int hep_apply(struct hep *h, const struct config *cfg);

/* A message the switch sent itself on tp's socket to `to`, past tport
 * (sip/rawreply.c): captured as tport's are. Does nothing unless capturing;
 * then O(len) to find its Call-ID. */
void hep_sent_text(tport_t *tp, const struct sockaddr *to, const char *text, size_t len);

/* Messages with Call-ID `call_id` get `correlation` as their correlation
 * id (both copied). Does nothing unless capturing. O(1). */
void hep_correlate(const char *call_id, const char *correlation);

/* Whether `h` sends captures now (switch.hep set and its socket open). */
bool hep_capturing(const struct hep *h);
/* Whether sofia's transport ever called the executable's tport_log_msg()
 * (it does for each message while capturing; a sofia built otherwise
 * would not, and capture would miss all but the switch's own answers). */
bool hep_hooked(void);

#endif
