/* The switch's TLS files, read with OpenSSL. See tlsfiles.h. */
#include "sip/tlsfiles.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

/* The reason of the last error in OpenSSL's queue (the queue is then
 * cleared). */
static const char *ssl_error_text(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, len, "%s", reason ? reason : "unknown error");
    ERR_clear_error();
    return buf;
}

static void subject_of(X509 *cert, char *buf, size_t len)
{
    buf[0] = '\0';
    if (cert)
        X509_NAME_oneline(X509_get_subject_name(cert), buf, (int)len);
}

/* Never prompt for a passphrase on a terminal: encrypted keys do not load. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

void tlsfiles_free_creds(struct tlsfiles_creds *c)
{
    X509_free(c->cert);
    EVP_PKEY_free(c->key);
    sk_X509_pop_free(c->chain, X509_free);
    memset(c, 0, sizeof *c);
}

static BIO *open_file(const char *field, const char *path, char *err, size_t errlen)
{
    BIO *bio = BIO_new_file(path, "r");
    if (!bio) {
        int e = errno;
        snprintf(err, errlen, "tls.%s: cannot read '%s': %s", field, path,
                 e ? strerror(e) : "cannot open");
        ERR_clear_error();
    }
    return bio;
}

/* Load the chain (the switch's certificate first) and the key, and check
 * that they belong together. Returns 0 or -1 with `err`. */
int tlsfiles_load_creds(struct tlsfiles_creds *out, const char *certificate,
                        const char *key, char *err, size_t errlen)
{
    struct tlsfiles_creds c = {0};
    char why[160];
    BIO *bio = open_file("certificate", certificate, err, errlen);
    if (!bio)
        return -1;
    c.cert = PEM_read_bio_X509_AUX(bio, NULL, no_passphrase, NULL);
    if (!c.cert) {
        snprintf(err, errlen, "tls.certificate: no PEM certificate in '%s' (%s)",
                 certificate, ssl_error_text(why, sizeof why));
        BIO_free(bio);
        return -1;
    }
    c.chain = sk_X509_new_null();
    X509 *x;
    while (c.chain && (x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)))
        if (!sk_X509_push(c.chain, x))
            X509_free(x);
    ERR_clear_error(); /* the end of the file reads as an error */
    BIO_free(bio);
    if (!(bio = open_file("key", key, err, errlen))) {
        tlsfiles_free_creds(&c);
        return -1;
    }
    c.key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (!c.key) {
        snprintf(err, errlen, "tls.key: no unencrypted PEM private key in '%s' (%s)", key,
                 ssl_error_text(why, sizeof why));
        tlsfiles_free_creds(&c);
        return -1;
    }
    if (X509_check_private_key(c.cert, c.key) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "tls.key: '%s' does not match the certificate in '%s'", key,
                 certificate);
        tlsfiles_free_creds(&c);
        return -1;
    }
    *out = c;
    return 0;
}

/* A store of the CAs in `ca` (a PEM file or a hashed directory), or of
 * the system's when NULL. Returns NULL with `err`. */
X509_STORE *tlsfiles_load_store(const char *ca, char *err, size_t errlen)
{
    X509_STORE *store = X509_STORE_new();
    if (!store) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct stat st;
    int ok;
    if (!ca) {
        ok = X509_STORE_set_default_paths(store);
    } else if (stat(ca, &st) < 0) {
        snprintf(err, errlen, "tls.ca: cannot read '%s': %s", ca, strerror(errno));
        X509_STORE_free(store);
        return NULL;
    } else if (S_ISDIR(st.st_mode)) {
        ok = X509_STORE_load_path(store, ca);
    } else {
        ok = X509_STORE_load_file(store, ca);
    }
    if (ok != 1) {
        char why[160];
        snprintf(err, errlen, "tls.ca: no PEM certificate in '%s' (%s)",
                 ca ? ca : "(system)", ssl_error_text(why, sizeof why));
        X509_STORE_free(store);
        return NULL;
    }
    ERR_clear_error();
    return store;
}

int tlsfiles_check(const char *certificate, const char *key, const char *ca, char *err,
                   size_t errlen)
{
    if (!certificate != !key) {
        snprintf(err, errlen, "tls.%s is missing: 'certificate' and 'key' go together",
                 certificate ? "key" : "certificate");
        return -1;
    }
    if (certificate) {
        struct tlsfiles_creds c;
        if (tlsfiles_load_creds(&c, certificate, key, err, errlen) < 0)
            return -1;
        tlsfiles_free_creds(&c);
    }
    if (ca) {
        X509_STORE *store = tlsfiles_load_store(ca, err, errlen);
        if (!store)
            return -1;
        X509_STORE_free(store);
    }
    return 0;
}

void tlsfiles_log(const struct tlsfiles_creds *c, const char *path)
{
    char subject[256];
    subject_of(c->cert, subject, sizeof subject);
    const ASN1_TIME *until = X509_get0_notAfter(c->cert);
    struct tm tm;
    char when[32] = "?";
    if (until && ASN1_TIME_to_tm(until, &tm) == 1)
        strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", &tm);
    log_info("tls", "certificate %s: %s, valid until %s", path, subject, when);
    if (X509_cmp_current_time(until) < 0)
        log_warn("tls", "certificate %s expired on %s", path, when);
}
