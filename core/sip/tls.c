/* SIP over TLS on sofia's tport: contexts, certificates, verification and
 * handshake limits. See tls.h. */
#include "sip/tls.h"
#include "config.h"
#include "log.h"
#include "sip/tlsfiles.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/event.h>
#include <sofia-sip/su_alloc.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* TLS 1.2 suites: ECDHE key exchange and AEAD only (TLS 1.3's are all
 * AEAD with ephemeral keys already). */
#define TLS12_CIPHERS                                                                    \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                         \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                         \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES                                                                     \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* A handshake not finished this long after the connection was made is cut. */
#define HANDSHAKE_DEADLINE_MS 10000
#define VERIFY_DEPTH 6
#define MAX_CTX 16
#define FAILURES 32
#define RATE_SLOTS 1024
#define RATE_PROBES 4

/* One TLS connection (an SSL object sofia made), from SSL_new to SSL_free. */
struct conn {
    struct conn *prev, *next; /* pending handshakes, oldest first */
    SSL *ssl;
    int64_t created_ms;
    bool pending, started, done, server, failed;
    socklen_t peerlen;
    struct sockaddr_storage peer;
};

struct failure {
    time_t at;
    int port;
    char ip[INET6_ADDRSTRLEN];
    char reason[200];
};

struct dest {
    char *host;
    int port;
    bool ip; /* host is an IP literal */
};

/* Counted for the log (refusals as they happen, all at the end). */
struct tls_counts {
    uint64_t handshakes; /* completed */
    uint64_t failed;     /* ended before completion (timeouts included) */
    uint64_t refused;    /* over handshake_rate */
    uint64_t timed_out;  /* shut down after the handshake deadline */
};

struct rate_slot {
    unsigned char addr[16];
    int64_t second;
    unsigned count;
};

struct siptls {
    struct event_base *base;
    struct event *sweep;
    bool sweep_armed;
    /* contexts sofia made, held (up-ref'd) until destroy */
    SSL_CTX *ctx[MAX_CTX];
    size_t nctx;
    bool capturing;
    SSL_CTX *captured[MAX_CTX]; /* made since capture_begin, not yet held */
    size_t ncaptured;
    /* the policy's */
    struct tlsfiles_creds creds;
    X509_STORE *store;
    bool verify_peer;
    int handshake_rate;
    struct dest *dests;
    size_t ndests;
    /* connections whose handshake is pending */
    struct conn *head, *tail;
    struct failure failures[FAILURES];
    unsigned nfailures; /* total recorded; the ring holds the last FAILURES */
    struct rate_slot rates[RATE_SLOTS];
    struct tls_counts stats;
};

/* OpenSSL's callbacks carry no argument of ours. */
static struct siptls *active;
static int ctx_index = -1, ssl_index = -1;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The first error in OpenSSL's queue as text (the queue is then cleared). */
static const char *ssl_error_text(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, len, "%s", reason ? reason : "unknown error");
    ERR_clear_error();
    return buf;
}

/* ---- Failures and names ------------------------------------------------------- */

static bool peer_text(const struct conn *c, char *ip, size_t iplen, int *port)
{
    if (!c || !c->peerlen)
        return false;
    const struct sockaddr *sa = (const void *)&c->peer;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, (socklen_t)iplen);
        *port = ntohs(in->sin_port);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, (socklen_t)iplen);
        *port = ntohs(in6->sin6_port);
        return true;
    }
    return false;
}

static void remember_peer(struct conn *c, SSL *ssl)
{
    if (c->peerlen)
        return;
    int fd = SSL_get_fd(ssl);
    socklen_t len = sizeof c->peer;
    if (fd >= 0 && getpeername(fd, (struct sockaddr *)&c->peer, &len) == 0)
        c->peerlen = len;
}

/* A handshake the switch started (to a carrier) failed: log it and keep
 * the reason for siptls_failure(). Handshakes others start with us fail
 * quietly (debug): strangers must not fill the log. */
static void record_failure(struct siptls *t, struct conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void record_failure(struct siptls *t, struct conn *c, const char *fmt, ...)
{
    if (!c || c->failed)
        return;
    c->failed = true;
    t->stats.failed++;
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    peer_text(c, ip, sizeof ip, &port);
    char reason[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (c->server) {
        log_debug("tls", "handshake from %s:%d failed: %s", ip, port, reason);
        return;
    }
    log_warn("tls", "handshake with %s:%d failed: %s", ip, port, reason);
    struct failure *f = &t->failures[t->nfailures++ % FAILURES];
    f->at = time(NULL);
    f->port = port;
    snprintf(f->ip, sizeof f->ip, "%s", ip);
    snprintf(f->reason, sizeof f->reason, "%s", reason);
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

const char *siptls_failure(const struct siptls *t, const char *host, int port,
                           time_t since)
{
    if (!t || !host)
        return NULL;
    char bare[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(host);
    if (host[0] == '[' && n > 2 && host[n - 1] == ']' && n - 2 < sizeof bare) {
        memcpy(bare, host + 1, n - 2);
        bare[n - 2] = '\0';
        host = bare;
    }
    bool ip = is_ip_literal(host);
    unsigned count = t->nfailures < FAILURES ? t->nfailures : FAILURES;
    for (unsigned i = 0; i < count; i++) {
        const struct failure *f = &t->failures[(t->nfailures - 1 - i) % FAILURES];
        if (f->at < since)
            break;
        if (f->port == port && (!ip || strcmp(f->ip, host) == 0))
            return f->reason;
    }
    /* A connection reset mid-handshake reaches nta (and the caller) before
     * sofia lets go of the connection: still pending here. */
    for (const struct conn *c = t->head; c; c = c->next) {
        char peer[INET6_ADDRSTRLEN];
        int peer_port;
        if (!c->server && c->started && !c->done &&
            peer_text(c, peer, sizeof peer, &peer_port) && peer_port == port &&
            (!ip || strcmp(peer, host) == 0))
            return "connection closed during the TLS handshake";
    }
    return NULL;
}

static void subject_of(X509 *cert, char *buf, size_t len)
{
    buf[0] = '\0';
    if (cert)
        X509_NAME_oneline(X509_get_subject_name(cert), buf, (int)len);
}

static bool name_matches(X509 *cert, const struct dest *d)
{
    if (d->ip && X509_check_ip_asc(cert, d->host, 0) == 1)
        return true;
    /* A name, or an IP written as the certificate's common name. */
    return X509_check_host(cert, d->host, 0, 0, NULL) == 1;
}

/* Does the certificate name the peer we connected to? The connection does
 * not say which name it was opened for (sofia keeps that to itself), so
 * the peer's address decides: a destination configured with that IP and
 * port; else those configured by name on that port (one must match); else
 * the IP itself. `expected` gets what was looked for. */
static bool peer_named(struct siptls *t, struct conn *c, X509 *cert, char *expected,
                       size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "";
    int port = 0;
    if (!peer_text(c, ip, sizeof ip, &port)) {
        snprintf(expected, len, "(unknown peer)");
        return false;
    }
    for (size_t i = 0; i < t->ndests; i++) {
        const struct dest *d = &t->dests[i];
        if (d->ip && d->port == port && strcmp(d->host, ip) == 0) {
            snprintf(expected, len, "%s", d->host);
            return name_matches(cert, d);
        }
    }
    expected[0] = '\0';
    bool named = false;
    for (size_t i = 0; i < t->ndests; i++) {
        const struct dest *d = &t->dests[i];
        if (d->ip || d->port != port)
            continue;
        named = true;
        size_t used = strlen(expected);
        snprintf(expected + used, len - used, "%s%s", used ? " or " : "", d->host);
        if (name_matches(cert, d))
            return true;
    }
    if (named)
        return false;
    struct dest self = {.host = ip, .port = port, .ip = true};
    snprintf(expected, len, "%s", ip);
    return name_matches(cert, &self);
}

/* ---- OpenSSL callbacks ------------------------------------------------------------ */

static struct conn *conn_of(const SSL *ssl)
{
    return ssl_index >= 0 ? SSL_get_ex_data(ssl, ssl_index) : NULL;
}

static void pending_remove(struct siptls *t, struct conn *c)
{
    if (!c->pending)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        t->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        t->tail = c->prev;
    c->prev = c->next = NULL;
    c->pending = false;
}

static void arm_sweep(struct siptls *t)
{
    if (t->sweep_armed || !t->head)
        return;
    struct timeval tv = {1, 0};
    if (event_add(t->sweep, &tv) == 0)
        t->sweep_armed = true;
}

/* Every SSL object (sofia makes one per TLS connection, either way). */
static void on_ssl_new(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                       void *argp)
{
    (void)parent;
    (void)ptr;
    (void)argl;
    (void)argp;
    struct siptls *t = active;
    if (!t)
        return;
    struct conn *c = calloc(1, sizeof *c);
    if (!c || !CRYPTO_set_ex_data(ad, idx, c)) {
        free(c);
        return;
    }
    c->ssl = parent;
    c->created_ms = now_ms();
    c->pending = true;
    c->prev = t->tail;
    if (t->tail)
        t->tail->next = c;
    else
        t->head = c;
    t->tail = c;
    arm_sweep(t);
}

static void on_ssl_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                        void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    struct conn *c = ptr;
    if (!c)
        return;
    struct siptls *t = active;
    if (t) {
        if (c->started && !c->done)
            record_failure(t, c, "connection closed during the TLS handshake");
        pending_remove(t, c);
    }
    free(c);
}

/* Every SSL_CTX: while a transport is being created, it is sofia's. */
static void on_ctx_new(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                       void *argp)
{
    (void)ptr;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    struct siptls *t = active;
    if (t && t->capturing && t->ncaptured < MAX_CTX)
        t->captured[t->ncaptured++] = parent;
}

static void on_ctx_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                        void *argp)
{
    (void)ptr;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    struct siptls *t = active;
    if (!t)
        return;
    for (size_t i = 0; i < t->ncaptured; i++)
        if (t->captured[i] == parent)
            t->captured[i] = NULL; /* freed before it was held */
}

/* Handshakes per second per source IP: a fixed table, a few probes. */
static bool rate_allows(struct siptls *t, const struct conn *c)
{
    if (t->handshake_rate <= 0 || !c->peerlen)
        return true;
    unsigned char addr[16] = {0};
    const struct sockaddr *sa = (const void *)&c->peer;
    if (sa->sa_family == AF_INET)
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    else if (sa->sa_family == AF_INET6)
        memcpy(addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 16; i++)
        h = (h ^ addr[i]) * 1099511628211ull;
    int64_t second = now_ms() / 1000;
    struct rate_slot *slot = NULL, *stale = NULL;
    for (unsigned p = 0; p < RATE_PROBES; p++) {
        struct rate_slot *s = &t->rates[(h + p) % RATE_SLOTS];
        if (memcmp(s->addr, addr, sizeof addr) == 0) {
            slot = s;
            break;
        }
        if (!stale || s->second < stale->second)
            stale = s;
    }
    if (!slot) {
        slot = stale;
        memcpy(slot->addr, addr, sizeof addr);
        slot->count = 0;
        slot->second = second;
    }
    if (slot->second != second) {
        slot->second = second;
        slot->count = 0;
    }
    return ++slot->count <= (unsigned)t->handshake_rate;
}

/* Servers only, at the ClientHello, before any public-key work: refuse a
 * source over its rate, and ask no certificate of those connecting in. */
static int on_client_hello(SSL *ssl, int *alert, void *arg)
{
    (void)arg;
    struct siptls *t = active;
    struct conn *c = conn_of(ssl);
    SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
    if (!t || !c)
        return SSL_CLIENT_HELLO_SUCCESS;
    remember_peer(c, ssl);
    if (rate_allows(t, c))
        return SSL_CLIENT_HELLO_SUCCESS;
    t->stats.refused++;
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    peer_text(c, ip, sizeof ip, &port);
    /* At most one line per 10 s, whoever floods. */
    static int64_t last_log;
    int64_t second = now_ms() / 1000;
    if (second - last_log >= 10) {
        last_log = second;
        log_warn("tls", "%s is over %d handshakes a second: refused (%llu so far)", ip,
                 t->handshake_rate, (unsigned long long)t->stats.refused);
    }
    c->failed = true; /* counted as refused, not failed */
    *alert = SSL_AD_HANDSHAKE_FAILURE;
    return SSL_CLIENT_HELLO_ERROR;
}

/* sofia's own check after each handshake it starts lists the peer's
 * subjectAltNames and never frees that list (a few hundred bytes a
 * connection). The names were checked already (on_verify) and nothing
 * reads them afterwards: they leave the peer's certificate object first. */
static void drop_alt_names(SSL *ssl)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    int i;
    while (peer && (i = X509_get_ext_by_NID(peer, NID_subject_alt_name, -1)) >= 0)
        X509_EXTENSION_free(X509_delete_ext(peer, i));
}

static void on_info(const SSL *ssl, int where, int ret)
{
    struct siptls *t = active;
    struct conn *c = conn_of(ssl);
    if (!t || !c || c->done)
        return;
    if (where & SSL_CB_HANDSHAKE_START) {
        c->started = true;
        c->server = SSL_is_server(ssl);
        remember_peer(c, (SSL *)ssl);
    }
    if (where & SSL_CB_HANDSHAKE_DONE) {
        c->done = true;
        t->stats.handshakes++;
        pending_remove(t, c);
        if (!c->server)
            drop_alt_names((SSL *)ssl);
        return;
    }
    if ((where & SSL_CB_ALERT) && (where & SSL_CB_READ))
        record_failure(t, c, "%s sent alert \"%s\"", c->server ? "client" : "server",
                       SSL_alert_desc_string_long(ret));
    else if ((where & SSL_CB_ALERT) && (where & SSL_CB_WRITE))
        record_failure(t, c, "alert \"%s\" sent", SSL_alert_desc_string_long(ret));
    else if ((where & SSL_CB_EXIT) && ret <= 0 && ERR_peek_error()) {
        char why[160];
        unsigned long e = ERR_peek_error();
        const char *reason = ERR_reason_error_string(e);
        snprintf(why, sizeof why, "%s", reason ? reason : "protocol error");
        record_failure(t, c, "%s", why);
    }
}

/* Peers the switch connects to, when verify_peer is on: the chain against
 * the CAs, then the name against the destination. */
static int on_verify(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct siptls *t = active;
    if (!t || !ssl || SSL_is_server(ssl) || !t->verify_peer)
        return 1;
    struct conn *c = conn_of(ssl);
    if (c)
        remember_peer(c, ssl);
    X509 *cert = X509_STORE_CTX_get_current_cert(store);
    int depth = X509_STORE_CTX_get_error_depth(store);
    char subject[256];
    if (!ok) {
        int err = X509_STORE_CTX_get_error(store);
        subject_of(cert, subject, sizeof subject);
        record_failure(t, c, "certificate not trusted: %s (depth %d, subject %s)",
                       X509_verify_cert_error_string(err), depth, subject);
        return 0;
    }
    if (depth > 0)
        return 1;
    char expected[300];
    if (peer_named(t, c, cert, expected, sizeof expected))
        return 1;
    subject_of(cert, subject, sizeof subject);
    X509_STORE_CTX_set_error(store, X509_V_ERR_HOSTNAME_MISMATCH);
    record_failure(t, c, "certificate does not name %s (subject %s)", expected, subject);
    return 0;
}

/* Each handshake gets the certificate loaded last (servers always; clients
 * when the server asks for one). */
static int on_cert(SSL *ssl, void *arg)
{
    (void)arg;
    struct siptls *t = active;
    if (!t || !t->creds.cert)
        return 1;
    SSL_certs_clear(ssl);
    return SSL_use_cert_and_key(ssl, t->creds.cert, t->creds.key, t->creds.chain, 1) == 1;
}

/* What the policy and this module decide, on one of sofia's contexts. */
static void ctx_apply(struct siptls *t, SSL_CTX *ctx)
{
    SSL_CTX_set_verify(ctx, t->verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                       on_verify);
    SSL_CTX_set_verify_depth(ctx, VERIFY_DEPTH);
    if (t->store)
        SSL_CTX_set1_cert_store(ctx, t->store);
}

static int ctx_setup(struct siptls *t, SSL_CTX *ctx)
{
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, 0) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1)
        return -1;
    /* A peer that closes without close_notify (most do) is an end of
     * stream, not an error to log. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_cert_cb(ctx, on_cert, NULL);
    SSL_CTX_set_client_hello_cb(ctx, on_client_hello, NULL);
    SSL_CTX_set_info_callback(ctx, on_info);
    /* sofia set its own CA list from its directory: nothing to announce. */
    SSL_CTX_set_client_CA_list(ctx, NULL);
    ctx_apply(t, ctx);
    return 0;
}

/* ---- sofia's tls_free() ------------------------------------------------------------ */

/* Debian's sofia-sip (the 1.12.11 snapshot of 2011) ends a connection's TLS
 * state without SSL_free(): every TLS connection would leak its SSL object
 * and buffers (40 KB after a handshake). It also leaves a failed
 * handshake's errors in OpenSSL's error queue, where the next connection's
 * SSL_get_error() takes them for its own and sofia drops that connection
 * too. sofia calls tls_free() through its PLT, so this definition, which
 * the executable exports (CMakeLists.txt), replaces sofia's own. The
 * struct is sofia's (tport_tls.c); before it is trusted, its context must
 * be one this module captured and its SSL one of that context's. When not,
 * sofia's own tls_free() runs, leak and all. */
struct sofia_tls {
    su_home_t home[1];
    SSL_CTX *ctx; /* a connection's is its transport's, not a reference */
    SSL *con;     /* NULL for a transport's master */
    BIO *bio_con; /* NULL for a transport's master */
};

void tls_free(struct sofia_tls *tls);

static bool ctx_known(const struct siptls *t, const SSL_CTX *ctx)
{
    for (size_t i = 0; ctx && i < t->nctx; i++)
        if (t->ctx[i] == ctx)
            return true;
    return false;
}

void tls_free(struct sofia_tls *tls)
{
    if (!tls)
        return;
    struct siptls *t = active;
    if (!t || !ctx_known(t, tls->ctx) ||
        (tls->con && SSL_get_SSL_CTX(tls->con) != tls->ctx)) {
        static void (*sofia_tls_free)(struct sofia_tls *);
        if (!sofia_tls_free)
            *(void **)&sofia_tls_free = dlsym(RTLD_NEXT, "tls_free");
        if (sofia_tls_free)
            sofia_tls_free(tls);
        ERR_clear_error();
        return;
    }
    /* (sofia's own "type" bit says master for connections too.) */
    bool master = !tls->con && !tls->bio_con;
    if (tls->con) {
        if (SSL_is_init_finished(tls->con))
            SSL_shutdown(tls->con); /* close_notify, as sofia's does */
        SSL_free(tls->con);         /* its BIO and its context reference too */
    } else if (tls->bio_con) {
        BIO_free(tls->bio_con);
    }
    if (tls->ctx && master)
        SSL_CTX_free(tls->ctx);
    su_home_unref(tls->home);
    ERR_clear_error();
}

/* ---- Handshake deadline ---------------------------------------------------------- */

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct siptls *t = arg;
    t->sweep_armed = false;
    int64_t cutoff = now_ms() - HANDSHAKE_DEADLINE_MS;
    /* The list is in creation order; each one cut leaves it. */
    while (t->head && t->head->created_ms <= cutoff) {
        struct conn *c = t->head;
        pending_remove(t, c);
        t->stats.timed_out++;
        remember_peer(c, c->ssl);
        record_failure(t, c, "handshake not finished within %d s",
                       HANDSHAKE_DEADLINE_MS / 1000);
        c->done = true; /* nothing more to count for it */
        /* The SSL object and its socket are sofia's. Shut down, the socket
         * reads as closed; sofia's handshake step fails and closes it. */
        int sock = SSL_get_fd(c->ssl);
        if (sock >= 0)
            shutdown(sock, SHUT_RDWR);
    }
    arm_sweep(t);
}

/* ---- Life ------------------------------------------------------------------------ */

int siptls_create(struct siptls **tp, struct event_base *base)
{
    if (active)
        return -EBUSY;
    struct siptls *t = calloc(1, sizeof *t);
    if (!t)
        return -ENOMEM;
    t->base = base;
    t->sweep = evtimer_new(base, on_sweep, t);
    if (!t->sweep) {
        free(t);
        return -ENOMEM;
    }
    OPENSSL_init_ssl(0, NULL);
    if (ctx_index < 0)
        ctx_index = SSL_CTX_get_ex_new_index(0, NULL, on_ctx_new, NULL, on_ctx_free);
    if (ssl_index < 0)
        ssl_index = SSL_get_ex_new_index(0, NULL, on_ssl_new, NULL, on_ssl_free);
    if (ctx_index < 0 || ssl_index < 0) {
        event_free(t->sweep);
        free(t);
        return -ENOMEM;
    }
    t->handshake_rate = 20;
    active = t;
    *tp = t;
    return 0;
}

static void dests_free(struct siptls *t)
{
    for (size_t i = 0; i < t->ndests; i++)
        free(t->dests[i].host);
    free(t->dests);
    t->dests = NULL;
    t->ndests = 0;
}

void siptls_destroy(struct siptls *t)
{
    if (!t)
        return;
    log_info("tls",
             "%llu handshakes, %llu failed (%llu timed out), %llu refused over the rate",
             (unsigned long long)t->stats.handshakes, (unsigned long long)t->stats.failed,
             (unsigned long long)t->stats.timed_out,
             (unsigned long long)t->stats.refused);
    for (size_t i = 0; i < t->nctx; i++)
        SSL_CTX_free(t->ctx[i]);
    /* Connections still known are sofia's to free; forget them. */
    while (t->head)
        pending_remove(t, t->head);
    active = NULL;
    tlsfiles_free_creds(&t->creds);
    X509_STORE_free(t->store);
    dests_free(t);
    event_free(t->sweep);
    free(t);
}

bool siptls_wanted(const struct config *cfg, const struct strlist *listen)
{
    for (size_t i = 0; i < listen->n; i++)
        if (strncmp(listen->v[i], "tls:", 4) == 0)
            return true;
    if (config_switch(cfg)->tls.certificate)
        return true;
    for (size_t i = 0; i < config_count(cfg, KIND_REGISTRATION); i++)
        if (((const struct registration_def *)config_at(cfg, KIND_REGISTRATION, i))
                ->transport == TRANSPORT_TLS)
            return true;
    for (size_t i = 0; i < config_count(cfg, KIND_ROUTING_GATEWAY); i++)
        if (((const struct routing_gateway_def *)config_at(cfg, KIND_ROUTING_GATEWAY, i))
                ->transport == TRANSPORT_TLS)
            return true;
    return false;
}

bool siptls_has_certificate(const struct siptls *t)
{
    return t && t->creds.cert;
}

struct siptls *siptls_instance(void)
{
    return active;
}

void siptls_capture_begin(struct siptls *t)
{
    t->capturing = true;
    t->ncaptured = 0;
}

int siptls_capture_end(struct siptls *t)
{
    t->capturing = false;
    int rc = -1;
    for (size_t i = 0; i < t->ncaptured; i++) {
        SSL_CTX *ctx = t->captured[i];
        if (!ctx || t->nctx == MAX_CTX)
            continue;
        if (ctx_setup(t, ctx) < 0) {
            char why[160];
            log_error("tls", "cannot set up a TLS context: %s",
                      ssl_error_text(why, sizeof why));
            continue;
        }
        SSL_CTX_up_ref(ctx);
        t->ctx[t->nctx++] = ctx;
        rc = 0;
    }
    t->ncaptured = 0;
    /* sofia's attempts at its own files leave errors queued; a stale one
     * would be taken for the next connection's. */
    ERR_clear_error();
    return rc;
}

/* Where a registration or gateway connects: "host:port", "sip:host:port;..."
 * or "[v6]:port"; `def_port` when none is written. */
static int dest_add(struct siptls *t, const char *where, int def_port)
{
    const char *h = where;
    if (strncmp(h, "sip:", 4) == 0 || strncmp(h, "sips:", 5) == 0)
        h = strchr(h, ':') + 1;
    const char *at = strchr(h, '@');
    if (at)
        h = at + 1;
    char host[256];
    int port = def_port;
    size_t n;
    const char *rest;
    if (*h == '[') {
        const char *close = strchr(h, ']');
        if (!close)
            return 0;
        n = (size_t)(close - h - 1);
        h++;
        rest = close + 1;
    } else {
        n = strcspn(h, ":;>");
        rest = h + n;
    }
    if (n == 0 || n >= sizeof host)
        return 0;
    memcpy(host, h, n);
    host[n] = '\0';
    if (*rest == ':')
        port = atoi(rest + 1);
    struct dest *grown = realloc(t->dests, (t->ndests + 1) * sizeof *grown);
    if (!grown)
        return -ENOMEM;
    t->dests = grown;
    struct dest *d = &t->dests[t->ndests];
    if (!(d->host = strdup(host)))
        return -ENOMEM;
    d->port = port;
    d->ip = is_ip_literal(host);
    t->ndests++;
    return 0;
}

static void dests_load(struct siptls *t, const struct config *cfg)
{
    dests_free(t);
    for (size_t i = 0; i < config_count(cfg, KIND_REGISTRATION); i++) {
        const struct registration_def *r =
            (const void *)config_at(cfg, KIND_REGISTRATION, i);
        if (r->transport != TRANSPORT_TLS)
            continue;
        char where[300];
        if (r->proxy)
            snprintf(where, sizeof where, "%s", r->proxy);
        else
            snprintf(where, sizeof where, "%s:%d", r->server, r->port);
        dest_add(t, where, 5061);
    }
    for (size_t i = 0; i < config_count(cfg, KIND_ROUTING_GATEWAY); i++) {
        const struct routing_gateway_def *g =
            (const void *)config_at(cfg, KIND_ROUTING_GATEWAY, i);
        if (g->transport == TRANSPORT_TLS && g->address)
            dest_add(t, g->address, 5061);
    }
}

int siptls_apply(struct siptls *t, const struct config *cfg)
{
    const struct tls_settings *s = &config_switch(cfg)->tls;
    char err[512];
    int rc = 0;
    struct tlsfiles_creds c = {0};
    if (s->certificate &&
        tlsfiles_load_creds(&c, s->certificate, s->key, err, sizeof err) < 0) {
        log_error("tls", "%s: the previous certificate stays", err);
        rc = -1;
    } else {
        tlsfiles_free_creds(&t->creds);
        t->creds = c;
        if (c.cert)
            tlsfiles_log(&c, s->certificate);
    }
    /* The system's CAs are read only when something is verified. */
    X509_STORE *store = NULL;
    if (s->ca || s->verify_peer) {
        store = tlsfiles_load_store(s->ca, err, sizeof err);
        if (!store) {
            log_error("tls", "%s: the previous CAs stay", err);
            rc = -1;
        }
    }
    if (store) {
        X509_STORE_free(t->store);
        t->store = store;
    }
    t->verify_peer = s->verify_peer;
    t->handshake_rate = s->handshake_rate;
    dests_load(t, cfg);
    for (size_t i = 0; i < t->nctx; i++)
        ctx_apply(t, t->ctx[i]);
    return rc;
}
