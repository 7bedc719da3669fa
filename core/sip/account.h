/* The registrar's accounts and their digest authentication. Part of the
 * registrar (see registrar.h for the rules on the wire); nothing outside
 * core/sip/ includes it.
 *
 * Owns: struct accounts, a sorted array of struct account (name, password,
 * mapping gateway and the bindings of its address of record) rebuilt by
 * accounts_apply(); the nonce secret (32 bytes, kept in STORE_SUSPEND under
 * the key "\0secret", value v1: the secret); and the nonce-count table
 * (nonce.h, 65,536 entries of 24 bytes, allocated at creation).
 *
 * Costs: accounts_find() is a binary search; accounts_apply() is
 * O(n log n) in accounts; accounts_authenticate() makes at most one
 * challenge or one HMAC and one digest check, O(1) otherwise. Unknown users
 * cost the same work as wrong passwords.
 *
 * A nonce stays fresh REGISTRAR_NONCE_TTL seconds. The environment variable
 * MOON_NONCE_TTL (seconds, read once by accounts_create()) overrides it: a
 * test-only knob, so that the integration tests can see a nonce go stale in
 * a second; it is not part of the policy and production runs leave it
 * unset.
 *
 * Threads: the loop's. */
#ifndef MOON_SIP_ACCOUNT_H
#define MOON_SIP_ACCOUNT_H

#include <stddef.h>

#include <sofia-sip/sip.h>

struct config;
struct store;
struct guard;
struct binding_set;
struct binding_aor;
struct registrar_reply;
struct account;
struct accounts;

/* `store` may be NULL (the secret is then new at each start). Failures
 * count in `guard`; accounts' bindings live in `set`. Returns 0, -ENOMEM,
 * -EIO (no randomness for the secret) or a store error. */
int accounts_create(struct accounts **ap, struct store *store, struct guard *guard,
                    struct binding_set *set);

/* Free every account, and their bindings without touching the store.
 * NULL is a no-op. */
void accounts_destroy(struct accounts *a);

/* Follow the policy: the digest algorithms offered (endpoint_digest), and
 * the accounts whose mapping gateway is of type "register": added, changed
 * (a new password applies to the next authentication) or removed (their
 * bindings go, from the store too). Pointers to accounts that remain stay
 * valid. */
void accounts_apply(struct accounts *a, const struct config *cfg);

struct account *accounts_find(struct accounts *a, const char *name);
size_t accounts_count(const struct accounts *a);
struct account *accounts_at(struct accounts *a, size_t i); /* name order */

const char *account_name(const struct account *acc);
const char *account_mapping_gateway(const struct account *acc);
struct binding_aor *account_aor(struct account *acc);

/* Authenticate a request from `ip` (REGISTER: WWW-Authenticate and 401;
 * other methods: Proxy-Authenticate and 407). Returns 0 with *accp set, or
 * the status it answered through `to`: a challenge (none or foreign
 * credentials, a nonce not ours, stale or replayed, a wrong password), 403
 * (account or source suspended, or just now), 400 (digest URI not the
 * Request-URI). Failures are counted in the guard. */
int accounts_authenticate(struct accounts *a, const struct registrar_reply *to,
                          const sip_t *sip, const char *ip, struct account **accp);

#endif
