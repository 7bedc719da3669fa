/* Endpoint bindings: the Contacts registered to each account (its address
 * of record), the rules of RFC 3261 10.3 that change them, their expiry and
 * their store records. Part of the registrar (see registrar.h); nothing
 * outside core/sip/ includes it.
 *
 * Owns: struct binding_set, holding every binding in a min-heap on expiry
 * time with one libevent timer for its top, and an index of the bindings'
 * source IPs with their counts (ipcount.h); each binding is one struct
 * (88 bytes) and one block of its strings, linked in its AOR's list. The
 * AOR (struct binding_aor) is embedded in its owner (the account), which
 * sets it up with binding_aor_init() and empties it with binding_clear() or
 * binding_release() before freeing it. NAT bindings are also linked in the
 * keepalive's rounds (keepalive.h) when a keepalive is attached.
 *
 * Costs: an add, refresh or removal is O(log bindings) in the heap plus
 * O(bindings of the AOR) to match its Contact (RFC 3261 URI comparison);
 * every change is staged in the store (one put or delete); the caller
 * commits before acknowledging. binding_set_load() is O(stored records).
 *
 * Store records (STORE_BINDINGS):
 *   key: account name, NUL, first 16 bytes of SHA-256(Contact)
 *   value v1: u64 expires_at, u32 cseq, u8 nat, u8 transport, 2 bytes
 *             reserved, then contact NUL call_id NUL source NUL user_agent NUL
 *
 * Threads: the loop's. */
#ifndef MOON_SIP_BINDING_H
#define MOON_SIP_BINDING_H

#include "sip/registrar.h"

#include <stdbool.h>
#include <stdint.h>

#include <sofia-sip/sip.h>
#include <sofia-sip/tport.h>

struct event_base;
struct store;
struct keepalive;
struct keepalive_node;
struct binding;
struct binding_set;

/* Contacts one REGISTER may carry, and the longest Contact URI kept. */
#define BINDING_MAX_CONTACTS REGISTRAR_MAX_BINDINGS
#define BINDING_CONTACT_MAX 256

/* The values of enum sip_transport (transport_of_msg() gives them). */
enum binding_transport { BINDING_UDP, BINDING_TCP, BINDING_TLS };
const char *binding_transport_name(enum binding_transport t); /* "udp", "tcp", "tls" */

/* The bindings of one address of record. Read-only outside binding.c. */
struct binding_aor {
    const char *name; /* the owner's, outliving the AOR */
    struct binding_set *set;
    struct binding *bindings;
    unsigned count;
};

void binding_aor_init(struct binding_aor *aor, struct binding_set *set, const char *name);

/* ---- The set ---------------------------------------------------------------- */

/* `base` runs the expiry timer; `root` (may be NULL) is re-armed after it
 * acts; `store` may be NULL (nothing durable). Returns 0 or -ENOMEM. */
int binding_set_create(struct binding_set **sp, struct event_base *base, su_root_t *root,
                       struct store *store);
/* Frees the heap and the timer; the AORs must have been emptied first.
 * NULL is a no-op. */
void binding_set_destroy(struct binding_set *s);

/* The keepalive NAT bindings join; NULL (the default) for none. */
void binding_set_attach_keepalive(struct binding_set *s, struct keepalive *ka);

/* endpoint_expire, endpoint_nat_expire, endpoint_register_replace (defaults
 * 3600, 300, true). */
void binding_set_configure(struct binding_set *s, int expire, int nat_expire,
                           bool replace);

size_t binding_set_count(const struct binding_set *s);

/* Whether some binding's REGISTER came from `ip` (text, as inet_ntop()
 * writes it, no port or brackets), and how many distinct addresses the
 * bindings came from. O(1): an index of the bindings' source addresses
 * (ipcount.h), counted as bindings are added, refreshed from elsewhere and
 * removed. */
bool binding_set_has_source(const struct binding_set *s, const char *ip);
size_t binding_set_sources(const struct binding_set *s);

/* Call fn on every binding, in no order; fn must not add or remove. */
void binding_set_visit(struct binding_set *s, void (*fn)(struct binding *b, void *arg),
                       void *arg);

/* Load the stored bindings, once at start: those of AORs that `find` does
 * not know, expired ones and unreadable ones are deleted from the store. */
typedef struct binding_aor *binding_find_h(const char *name, void *arg);
void binding_set_load(struct binding_set *s, binding_find_h *find, void *arg);

/* Remove every binding due at or before `now`; the timer calls it. */
void binding_expire(struct binding_set *s, long long now);

/* ---- What a REGISTER asks ----------------------------------------------------- */

struct binding_contact {
    const url_t *url;              /* the request's Contact URI (borrowed) */
    char uri[BINDING_CONTACT_MAX]; /* the same, as text */
    int granted;                   /* seconds; 0 removes the binding */
    bool nat;                      /* the Contact is not the source address */
};

struct binding_request {
    bool star; /* Contact: * (with Expires: 0; n is then 0) */
    unsigned n;
    struct binding_contact c[BINDING_MAX_CONTACTS];
};

/* Read a REGISTER's Contacts: each one's requested expiry (its expires
 * parameter, else Expires, else endpoint_expire), clamped by
 * binding_grant(). `ip` and `source` ("ip:port") are where it came from.
 * Returns 0, or the status to answer with `*phrase`: 400 (too many
 * Contacts, one too long, `*` with other Contacts or without Expires: 0) or
 * 423 (under REGISTRAR_MIN_EXPIRES: the answer needs Min-Expires). The
 * request keeps pointers into `sip`. */
int binding_parse(const struct binding_set *s, const sip_t *sip, const char *ip,
                  const char *source, struct binding_request *req, const char **phrase);

/* `requested` seconds clamped to endpoint_expire, or to endpoint_nat_expire
 * for a binding behind NAT. */
int binding_grant(const struct binding_set *s, long requested, bool nat);

/* Behind NAT: the Contact does not name the address the request came from
 * (its host is not `ip`, or its port, 5060/5061 by default, is not the port
 * of `source`). */
bool binding_behind_nat(const url_t *contact, const char *ip, const char *source);

/* Who asks: the REGISTER's dialog and transport. */
struct binding_origin {
    const char *call_id;
    uint32_t cseq;
    const char *source;     /* "ip:port" */
    const char *user_agent; /* "" if none */
    enum binding_transport transport;
    tport_t *tp; /* borrowed; each binding takes its own reference; may be NULL */
};

/* RFC 3261 10.3 steps 6-7: true when a binding of the same Call-ID has a
 * CSeq at or above this one (the request must be refused). */
bool binding_out_of_order(const struct binding_aor *aor,
                          const struct binding_request *req, const char *call_id,
                          uint32_t cseq);

/* Make the request's changes at `now`: `*` removes every binding; a Contact
 * granted 0 removes its binding; others are added or refreshed. A new one
 * beyond REGISTRAR_MAX_BINDINGS (accumulating) replaces the binding closest
 * to expiry; with endpoint_register_replace, a request that adds one
 * removes every binding it did not name. Staged in the store. */
void binding_update(struct binding_aor *aor, const struct binding_request *req,
                    const struct binding_origin *o, long long now);

/* ---- Removal and reading -------------------------------------------------------- */

/* Unlink from every index, free, and delete the store record; `why` (NULL:
 * silent) is logged. */
void binding_remove(struct binding *b, const char *why);

/* Remove every binding of the AOR (store too), or those matching `contact`
 * (RFC 3261 URI comparison). Return the number removed. */
unsigned binding_clear(struct binding_aor *aor, const char *why);
unsigned binding_remove_matching(struct binding_aor *aor, const url_t *contact,
                                 const char *why);

/* Free the AOR's bindings, leaving the store as it is (shutdown). */
void binding_release(struct binding_aor *aor);

/* Visit an AOR's bindings as the registrar shows them; stop when fn returns
 * non-zero, and return that. */
int binding_visit(const struct binding_aor *aor, registrar_binding_h *fn, void *arg);

/* "<c1>;expires=N, <c2>;expires=M" for a 200, malloc'd (the caller frees),
 * or NULL with no bindings or no memory. */
char *binding_contacts_header(const struct binding_aor *aor, long long now);

/* The same as header lines, "Contact: <c1>;expires=N\r\n" each (sofia
 * writes one line per Contact), malloc'd; "" with no bindings, NULL with
 * no memory. */
char *binding_contact_lines(const struct binding_aor *aor, long long now);

/* For the keepalive: a binding's parts and its node. */
const char *binding_contact(const struct binding *b);
const char *binding_source(const struct binding *b);
const char *binding_aor_name(const struct binding *b);
enum binding_transport binding_transport(const struct binding *b);
tport_t *binding_tport(const struct binding *b); /* NULL: loaded from the store */
struct keepalive_node *binding_keepalive_node(struct binding *b);
struct binding *binding_of_keepalive_node(struct keepalive_node *n);
struct keepalive *binding_keepalive(const struct binding *b);

#endif
