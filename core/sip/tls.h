/* SIP over TLS: the switch's certificate, how peers' certificates are
 * checked, and the limits on handshakes, on top of sofia-sip's tport.
 *
 * sofia's TLS transport makes its own OpenSSL context (SSL_CTX) from a
 * directory of fixed file names and a cipher list of its own, and offers no
 * way to reach it afterwards. This module takes it over through OpenSSL's
 * own hooks, which sofia does not know about: the SSL_CTX ex_data callback
 * tells it of each context made while a TLS transport is being created
 * (siptls_capture_begin/end around nta_agent_add_tport), and the SSL ex_data
 * callbacks of each connection. Each captured context is then set up here:
 * TLS 1.2 and 1.3 only, an ECDHE + AEAD cipher list, no renegotiation, no
 * compression; the certificate is handed to each connection as its
 * handshake starts (SSL_CTX_set_cert_cb), so a reload that loads a renewed
 * certificate serves it to every new connection while open ones keep
 * theirs; peers' certificates are verified against switch.tls.ca and their
 * names against the configured server or address.
 *
 * Limits: a source IP may start switch.tls.handshake_rate handshakes per
 * second (more are refused at their ClientHello, before any public-key
 * work); a connection whose handshake has not finished 10 s after it was
 * made is shut down, whichever side opened it.
 *
 * One instance per process (OpenSSL's callbacks carry no argument of ours).
 * Costs: about 100 bytes per TLS connection for the duration of the
 * connection, a fixed 32 KiB table for the per-source rates, one timer
 * tick a second while a handshake is pending. siptls_destroy() frees
 * everything, the contexts it holds included; call it after the nta agent
 * is gone. */
#ifndef MOON_SIP_TLS_H
#define MOON_SIP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct config;
struct event_base;
struct siptls;

/* Whether the switch needs TLS at all: a tls: listener in `listen`, a
 * certificate in switch.tls, or a registration or routing gateway with
 * transport "tls". */
struct strlist;
bool siptls_wanted(const struct config *cfg, const struct strlist *listen);

/* Create the process's instance, timers on `base`. Returns 0 or -ENOMEM,
 * -EBUSY when one exists already. */
int siptls_create(struct siptls **tp, struct event_base *base);
void siptls_destroy(struct siptls *t);

/* The process's instance, or NULL. */
struct siptls *siptls_instance(void);

/* Take switch.tls and the TLS destinations (registrations and routing
 * gateways with transport "tls") of `cfg`: load the certificate and CAs
 * anew (from disk, even when the paths did not change), and apply them to
 * every context captured so far and to the ones captured later. When the
 * files no longer load, the previous ones stay and -1 is returned (the
 * reason logged); otherwise 0. */
int siptls_apply(struct siptls *t, const struct config *cfg);

/* Whether a certificate is loaded (a TLS listener needs one). */
bool siptls_has_certificate(const struct siptls *t);

/* Bracket the creation of one TLS transport. Returns, at the end, 0 when
 * the transport's context was captured and set up, or -1. */
void siptls_capture_begin(struct siptls *t);
int siptls_capture_end(struct siptls *t);

/* Why the latest handshake with host:port that the switch started failed,
 * if it failed at or after `since`; NULL otherwise. `host` is an IP
 * literal, or a name (then the latest failure on that port counts). The
 * text stays valid until the next handshake failure. */
const char *siptls_failure(const struct siptls *t, const char *host, int port,
                           time_t since);

#endif
