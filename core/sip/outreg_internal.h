/* Outbound registration, inside: what the three files of the module share.
 * Not for use outside core/sip/outreg*.c and their unit test.
 *
 *   outreg.c       the state machines, the set that follows the policy, and
 *                  the public API of outreg.h;
 *   outreg_send.c  what goes on the wire: Call-ID, From tag and CSeq (kept
 *                  in the store), the Contact, the REGISTER and its nta
 *                  transaction, and the answer read back into a struct
 *                  outreg_response (the transport);
 *   outreg_auth.c  digest: the strongest challenge offered, the credentials
 *                  that answer it, and the challenge remembered so that each
 *                  refresh answers it up front.
 *
 * The state machine reaches the network only through a struct
 * outreg_transport, which a unit test replaces with a double. Entries and
 * everything they hold belong to the set (outreg.c frees them). Everything
 * here is O(1) per REGISTER or answer, with one store write per 100 CSeqs
 * and one digest hash per credentials built. */
#ifndef MOON_SIP_OUTREG_INTERNAL_H
#define MOON_SIP_OUTREG_INTERNAL_H

#include "sip/digest.h"
#include "sip/outreg.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <sofia-sip/msg_types.h>
#include <sofia-sip/nta.h>

struct event;
struct outreg_auth;
struct sipagent;

/* Longest credentials header value we build. */
#define OUTREG_CRED_MAX 2048

/* How REGISTERs leave and their answers come back: outreg_nta_transport
 * (outreg_send.c) or a test double. */
struct outreg_transport {
    /* Send r's REGISTER for `expires` seconds (0: un-REGISTER), with CSeq
     * r->cseq and Contact r->contact, carrying `cred` (NULL: none) in an
     * Authorization (cred_status 401) or Proxy-Authorization (407) header.
     * Returns false, with r's last error set, when nothing went out. The
     * final answer goes to outreg_answered(), never from inside send(). */
    bool (*send)(struct outreg *r, int expires, int cred_status, const char *cred);
    /* Drop the REGISTER in flight: its answer is never reported. */
    void (*abandon)(struct outreg *r);
};

extern const struct outreg_transport outreg_nta_transport;

/* The final answer to a REGISTER, as the state machine needs it. */
struct outreg_response {
    int status;
    const char *phrase; /* "" when none; valid during outreg_answered() */
    bool internal;      /* made up by the SIP stack (no answer, no route) */
    int granted;        /* 2xx: seconds granted (our Contact's expires, then
                         * Expires); -1 when the answer says nothing */
    int min_expires;    /* 423: Min-Expires; -1 when absent */
    char seen_at[80];   /* "host:port" the registrar saw us at (top Via's
                         * received and rport), "" when unknown */
    bool challenged;    /* 401/407 with a Digest challenge we can answer: */
    struct digest_challenge challenge; /* the strongest one offered */
};

struct outreg_set {
    struct sipagent *agent; /* NULL in unit tests */
    const struct outreg_transport *tp;
    struct event_base *base;
    struct store *store;
    struct outreg **v; /* sorted by name */
    size_t n;
    outreg_retry_h *retry_h;
    void *retry_arg;
    outreg_observer_h *observer;
    void *observer_arg;
    /* switch settings */
    int default_expires;     /* CONFIG_AUTO or seconds */
    int default_retry_delay; /* seconds */
    int default_privacy;
    bool send_unregister;
    unsigned t1_ms;
    unsigned auth_retry; /* challenges answered in a row (sip.authentication_retry) */
    /* entries that were removed and are unregistering */
    struct outreg **leaving;
    size_t nleaving;
    /* shutdown */
    void (*shutdown_done)(void *arg);
    void *shutdown_arg;
    unsigned shutdown_pending;
};

struct outreg {
    struct outreg_set *set;
    struct outreg_auth *auth; /* outreg_auth.c's */
    char *name;
    /* From the definition (copied: the policy that defined it may go). */
    char *server, *username, *password, *auth_username, *hostname, *proxy, *local_ip,
        *user_agent;
    int port, expires_cfg, retry_delay_cfg, hook_ref, mode, privacy;
    int transport; /* enum sip_transport */
    bool enabled_cfg;

    int state;      /* outreg.c's file-local enum state */
    unsigned answering; /* fresh challenges answered in a row, the REGISTER in
                           flight answering the last one (0: none) */
    bool leaving;   /* removed from the policy: freed once unregistered */
    bool trace;
    bool retry_clamped; /* said once that retry_delay's value was clamped */
    int status;
    int granted;
    unsigned failures;
    int requested; /* expiry asked for in the REGISTER in flight */
    /* Heap strings, NULL until set: most entries never need an error or a
     * public address, and 10,000 entries should cost little. */
    char *contact;
    char *public_address;
    char *last_error;
    char call_id[64];
    char from_tag[24];
    uint32_t cseq, cseq_reserved;
    time_t next_refresh;
    nta_outgoing_t *orq;  /* outreg_send.c: the REGISTER in flight */
    struct event *timer;  /* next REGISTER, or the watchdog while one is in flight */
    struct event *expiry; /* the granted expiry running out */
};

/* ---- outreg.c ------------------------------------------------------------ */

/* The final answer to r's REGISTER in flight (from the transport). May free
 * r (a removed entry done unregistering). */
void outreg_answered(struct outreg *r, const struct outreg_response *res);

/* Send REGISTERs through `tp` instead of nta (unit tests). */
void outreg_set_transport(struct outreg_set *s, const struct outreg_transport *tp);

/* Replace a heap string; NULL or "" clears it. */
void outreg_set_str(char **slot, const char *value);
void outreg_set_error(struct outreg *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- outreg_send.c ---------------------------------------------------------- */

/* Call-ID, From tag and CSeq from the store, or new ones. */
void outreg_ids_load(struct outreg *r);
/* Forget them (the entry is removed from the policy). */
void outreg_ids_forget(struct outreg *r);
/* The CSeq of the next REGISTER; reserves a block in the store as needed. */
uint32_t outreg_next_cseq(struct outreg *r);

/* Set r->contact: the switch's own address (static mode, or dynamic mode
 * before the registrar said where it sees us), or the learned public one. */
void outreg_compute_contact(struct outreg *r);

/* The REGISTER's Request-URI, also its digest URI: the server over the
 * entry's transport. */
void outreg_register_uri(const struct outreg *r, char *out, size_t len);

/* ---- outreg_auth.c ------------------------------------------------------------- */

/* An empty memory for one challenge, with room reserved up front. NULL
 * when out of memory (then nothing is remembered). */
struct outreg_auth *outreg_auth_new(void);
void outreg_auth_free(struct outreg_auth *a);

/* The strongest Digest challenge we support in `list` (SHA-256 before MD5)
 * parsed into `best`. Returns false when there is none. */
bool outreg_auth_pick(const msg_auth_t *list, struct digest_challenge *best);

/* Credentials answering the fresh challenge `c` of a `status` (401/407)
 * answer, into `value` (OUTREG_CRED_MAX). The challenge is remembered for
 * later REGISTERs. Returns false when they cannot be built. */
bool outreg_auth_answer(struct outreg *r, int status, const struct digest_challenge *c,
                        char *value, size_t len);

/* Credentials from the remembered challenge (its next nonce-count), for a
 * REGISTER sent before any challenge. Returns the challenge's status (401
 * or 407), or 0 when none is remembered. */
int outreg_auth_cached(struct outreg *r, char *value, size_t len);

/* Forget the remembered challenge (the credentials changed). */
void outreg_auth_forget(struct outreg *r);

#endif
