/* The switch's TLS files: its certificate chain and private key, and the
 * CAs it trusts, read and checked with OpenSSL.
 *
 * Used at policy load (tlsfiles_check: a mistake is refused with the
 * policy's file and line, nothing kept) and when a policy is applied
 * (tls.c loads what the handshakes then use). Each load reads the files
 * anew: a certificate renewed on disk is what the next load gets. Costs a
 * few file reads and one signature check; the caller owns what it loads
 * and frees it with tlsfiles_free_creds() / X509_STORE_free(). */
#ifndef MOON_SIP_TLSFILES_H
#define MOON_SIP_TLSFILES_H

#include <stddef.h>

#include <openssl/x509.h>

/* The certificate (the switch's own, first in its file), the rest of the
 * chain after it, and the key. */
struct tlsfiles_creds {
    X509 *cert;
    STACK_OF(X509) * chain;
    EVP_PKEY *key;
};

/* Both files load (PEM; an encrypted key does not) and the key matches the
 * certificate. Returns 0, or -1 with a message naming the field
 * ("tls.key: ...") in `err` and *out untouched. */
int tlsfiles_load_creds(struct tlsfiles_creds *out, const char *certificate,
                        const char *key, char *err, size_t errlen);
void tlsfiles_free_creds(struct tlsfiles_creds *c);

/* A store of the CAs in `ca` (a PEM file, or a directory as c_rehash
 * leaves it), or of the system's when NULL. NULL with `err` when none
 * loads. */
X509_STORE *tlsfiles_load_store(const char *ca, char *err, size_t errlen);

/* What switch.tls names, checked: certificate and key (both or neither,
 * as tlsfiles_load_creds) and the CAs. Returns 0 or -1 with `err`. */
int tlsfiles_check(const char *certificate, const char *key, const char *ca, char *err,
                   size_t errlen);

/* Log the certificate's subject and end of validity (a warning once it
 * has expired). */
void tlsfiles_log(const struct tlsfiles_creds *c, const char *path);

#endif
