/* Unit tests for core/sip/tlsfiles.c and the pure parts of
 * core/sip/transport.c: certificate files that load, that do not, and keys
 * that do not match, each refused with the field named; transport names,
 * parameters and URIs; where calls to a binding go. */
#include "check.h"
#include "config.h"
#include "sip/tlsfiles.h"
#include "sip/transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static char dir[512];

/* A self-signed P-256 certificate and its key in dir/name-{cert,key}.pem. */
static void make_cert(const char *name)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_sign(x, key, EVP_sha256());
    char path[700];
    snprintf(path, sizeof path, "%s/%s-cert.pem", dir, name);
    FILE *f = fopen(path, "w");
    PEM_write_X509(f, x);
    fclose(f);
    snprintf(path, sizeof path, "%s/%s-key.pem", dir, name);
    f = fopen(path, "w");
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(key);
}

static const char *path_of(const char *name, const char *kind)
{
    static char paths[4][700];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, sizeof paths[0], "%s/%s-%s.pem", dir, name, kind);
    return p;
}

static void test_files(void)
{
    char err[512];
    CHECK(tlsfiles_check(NULL, NULL, NULL, err, sizeof err) == 0);
    CHECK(tlsfiles_check(path_of("a", "cert"), path_of("a", "key"), NULL, err,
                         sizeof err) == 0);
    /* The certificate file as the CA list: it is one. */
    CHECK(tlsfiles_check(NULL, NULL, path_of("a", "cert"), err, sizeof err) == 0);

    CHECK(tlsfiles_check(path_of("a", "cert"), path_of("b", "key"), NULL, err,
                         sizeof err) < 0);
    CHECK_STR_CONTAINS(err, "does not match the certificate");
    CHECK(tlsfiles_check(path_of("a", "cert"), NULL, NULL, err, sizeof err) < 0);
    CHECK_STR_CONTAINS(err, "tls.key is missing");
    CHECK(tlsfiles_check(NULL, path_of("a", "key"), NULL, err, sizeof err) < 0);
    CHECK_STR_CONTAINS(err, "tls.certificate is missing");
    CHECK(tlsfiles_check("/nonexistent/c.pem", path_of("a", "key"), NULL, err,
                         sizeof err) < 0);
    CHECK_STR_CONTAINS(err,
                       "tls.certificate: cannot read '/nonexistent/c.pem': No such file");
    CHECK(tlsfiles_check(path_of("a", "key"), path_of("a", "key"), NULL, err,
                         sizeof err) < 0);
    CHECK_STR_CONTAINS(err, "tls.certificate: no PEM certificate");
    CHECK(tlsfiles_check(path_of("a", "cert"), path_of("a", "cert"), NULL, err,
                         sizeof err) < 0);
    CHECK_STR_CONTAINS(err, "tls.key: no unencrypted PEM private key");
    CHECK(tlsfiles_check(NULL, NULL, "/nonexistent/ca", err, sizeof err) < 0);
    CHECK_STR_CONTAINS(err, "tls.ca: cannot read");

    struct tlsfiles_creds c = {0};
    CHECK(tlsfiles_load_creds(&c, path_of("a", "cert"), path_of("a", "key"), err,
                              sizeof err) == 0);
    CHECK(c.cert && c.key && c.chain && sk_X509_num(c.chain) == 0);
    tlsfiles_free_creds(&c);
    CHECK(!c.cert && !c.key && !c.chain);
}

static void test_transport_names(void)
{
    CHECK(strcmp(transport_name(TRANSPORT_TLS), "tls") == 0);
    CHECK(transport_by_name("TLS") == TRANSPORT_TLS &&
          transport_by_name("udp") == TRANSPORT_UDP);
    CHECK(transport_by_name("sctp") == -1 && transport_by_name(NULL) == -1);
    CHECK(strcmp(transport_param(TRANSPORT_UDP), "") == 0);
    CHECK(strcmp(transport_param(TRANSPORT_TCP), ";transport=tcp") == 0);

    char uri[64];
    CHECK(transport_uri(uri, sizeof uri, NULL, "203.0.113.10", 5061, TRANSPORT_TLS) > 0);
    CHECK(strcmp(uri, "sip:203.0.113.10:5061;transport=tls") == 0);
    CHECK(transport_uri(uri, sizeof uri, "1555", "gw.example:5060", 0, TRANSPORT_UDP) >
          0);
    CHECK(strcmp(uri, "sip:1555@gw.example:5060") == 0);
    CHECK(transport_uri(uri, 10, NULL, "203.0.113.10", 5061, TRANSPORT_TLS) == -1);
}

static void test_endpoint_target(void)
{
    char target[64] = "10.0.0.9:5060";
    CHECK(transport_endpoint("udp", "198.51.100.7:40000", target, sizeof target) ==
          TRANSPORT_UDP);
    CHECK(strcmp(target, "10.0.0.9:5060") == 0); /* untouched */
    CHECK(transport_endpoint("tcp", "198.51.100.7:40000", target, sizeof target) ==
          TRANSPORT_UDP);
    CHECK(transport_endpoint("tls", "198.51.100.7:40000", target, sizeof target) ==
          TRANSPORT_TLS);
    CHECK(strcmp(target, "198.51.100.7:40000") == 0);
    CHECK(transport_endpoint("tls", "", target, sizeof target) == TRANSPORT_UDP);
}

static void setup(void)
{
    const char *tmp = getenv("MOON_TEST_TMP");
    mkdir(tmp ? tmp : "/tmp", 0700);
    snprintf(dir, sizeof dir, "%s/tlsfiles-%d", tmp ? tmp : "/tmp", (int)getpid());
    mkdir(dir, 0700);
    make_cert("a");
    make_cert("b");
}

static void files_load_or_are_refused(void)
{
    setup();
    test_files();
    const char *names[] = {"a", "b"}, *kinds[] = {"cert", "key"};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++)
            unlink(path_of(names[i], kinds[k]));
    rmdir(dir);
}

TEST_MAIN(CASE(files_load_or_are_refused), CASE(test_transport_names),
          CASE(test_endpoint_target))
