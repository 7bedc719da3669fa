/* libFuzzer harness for the SIP message path: bytes in exactly as UDP
 * datagrams arrive, through sofia's parser, nta and the agent's dispatcher,
 * with the registrar (REGISTER, its stateless prefilter, digest) and calls
 * (the B2BUA: INVITE from a static mapping gateway or an authenticated
 * endpoint, B-leg to a routing gateway, in-dialog requests) behind it.
 *
 * The switch (switch_build()) is built anew every 256 inputs, and for the
 * first, so an input that crashes does so again on its own (when it does
 * not, MOON_FUZZ_FRESH=1 tells). Three UDP sockets of
 * the harness talk to the switch's UDP listener on 127.0.0.1:
 *   pbx      127.0.0.1, the static mapping gateway "pbx"
 *   phone    127.0.0.2, an endpoint: accounts 1001 and 1002 (password
 *            "secret") of the register-type mapping gateway "phones"
 *   carrier  127.0.0.1, where routing gateways "carrier-a" and "carrier-b"
 *            (prefix 1, priorities 1 and 2: failover; a's callee rewrite
 *            rules, b's request_address "contact") send their INVITEs
 *   pbx2     127.0.0.3, the static mapping gateway "pbx2": the callee from
 *            the Request-Line, the caller from P-Asserted-Identity
 *
 * Input: datagrams separated by a line "%%" (that is "\n%%\n"). A datagram
 * whose first byte is 'p', 'e', 'c' or 'q' is sent, without that byte, from
 * the pbx, the phone, the carrier or pbx2; any other is sent whole from the pbx (so
 * the messages of test/corpus are seeds as they are). Before sending, placeholders are
 * replaced:
 *   $PORT        the switch's port          $LPORT   the sender's port
 *   $TRANSPORT   UDP                        $BRANCH  a fresh branch each datagram
 *   $BRANCH0     the branch of the input's first datagram (for its CANCEL)
 *   $TAG, $CALLID  tokens of this input (as test/corpus/README describes)
 *   $REQHDRS     Via, From, To (tagged), Call-ID and CSeq lines of the last
 *                request the switch sent to this sender: a response to it
 *   $REVHDRS     From, To and Call-ID lines for a request from this sender
 *                in the dialog of the last INVITE the switch sent it (a BYE)
 *   $TOTAG       the To tag of the last response the switch sent this sender
 *   $AUTH, $AUTH2  Digest credentials of account 1001 (1002) answering the
 *                last challenge this sender got, for the datagram's method
 *                and Request-URI
 * After each datagram the loop runs until the switch has read it, and the
 * answers are collected. Timers (retransmissions, invite_timeout) do not get
 * to fire: that is time, not input.
 *
 * The switch is assembled in switch_build() from the public headers only
 * (agent.h, registrar.h, call.h, evport.h, config.h), as app/moonswitch.c
 * does, minus the store, outbound registrations, reply addresses and Lua. */
#include "config.h"
#include "evport.h"
#include "log.h"
#include "sip/agent.h"
#include "sip/call.h"
#include "sip/digest.h"
#include "sip/gateway.h"
#include "sip/registrar.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_alloc.h>

#define SEPARATOR "\n%%\n"
#define MAX_DATAGRAM 65536

enum { PBX, PHONE, CARRIER, PBX2, NPEERS };

struct peer {
    const char *ip;
    int fd;
    int port;
    char reqhdrs[4096]; /* of the last request received */
    char revhdrs[4096]; /* From, To, Call-ID of a request back in its INVITE's dialog */
    char totag[256];    /* of the last response received */
    char challenge[2048];
};

struct sw {
    struct config *cfg;
    su_root_t *root;
    struct sipagent *agent;
    struct registrar *registrar;
    struct gw_set *gateways;
    struct calls *calls;
    int port;
};

static struct event_base *base;
static struct peer peers[NPEERS] = {
    {.ip = "127.0.0.1"}, {.ip = "127.0.0.2"}, {.ip = "127.0.0.1"}, {.ip = "127.0.0.3"}};
static unsigned datagrams_read; /* by the switch, from the evport observer */
static unsigned nc;
/* Inputs run so far. The switch is built anew every rebuild_every inputs
 * (building costs milliseconds: the registrar's nonce-count table); in
 * between, $CALLID, $TAG and $BRANCH are unique per input, so one input's
 * calls and transactions are not the next one's. MOON_FUZZ_FRESH=1 builds
 * it for every input (to tell whether a crash needs an earlier input). */
static unsigned runs;
static unsigned rebuild_every = 256;
static bool trace; /* MOON_FUZZ_TRACE set: print each datagram's first line */
static const char *const peer_names[] = {"pbx", "phone", "carrier", "pbx2"};

/* ---- The switch ------------------------------------------------------------ */

static char **strv(const char *a, const char *b)
{
    char **v = calloc(2, sizeof *v);
    v[0] = strdup(a);
    v[1] = b ? strdup(b) : NULL;
    return v;
}

static void add_def(struct config *cfg, struct def_head *d)
{
    char err[512];
    if (config_def_check(d, err, sizeof err) < 0 ||
        config_add(cfg, d, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_sip: bad definition: %s\n", err);
        abort();
    }
}

/* The policy: what a scripts/run user would write in Lua. */
/* Replace a definition's string field with a copy of `value`. */
static void set_string(char **slot, const char *value)
{
    free(*slot);
    *slot = strdup(value);
}

static struct config *make_config(int switch_port, int carrier_port)
{
    struct config *cfg = config_new();
    struct switch_def *sw = (void *)config_def_new(KIND_SWITCH, NULL, "fuzz", 1);
    char listen[64], addr[64];
    snprintf(listen, sizeof listen, "udp:127.0.0.1:%d", switch_port);
    sw->listen = (struct strlist){1, strv(listen, NULL)};
    /* Short timers: what the inputs leave behind ends within seconds. */
    sw->sip.resend_interval = 100;
    sw->sip.invite_timeout = 1;
    sw->sip.call_progress_timeout = 2;
    sw->sip.no_timer_reinvite_interval = 2;
    add_def(cfg, &sw->head);

    struct mapping_gateway_def *pbx =
        (void *)config_def_new(KIND_MAPPING_GATEWAY, "pbx", "fuzz", 2);
    pbx->type = MGW_STATIC;
    pbx->addresses = (struct strlist){1, strv("127.0.0.1", NULL)};
    add_def(cfg, &pbx->head);
    struct mapping_gateway_def *phones =
        (void *)config_def_new(KIND_MAPPING_GATEWAY, "phones", "fuzz", 3);
    phones->type = MGW_REGISTER;
    add_def(cfg, &phones->head);
    struct mapping_gateway_def *pbx2 =
        (void *)config_def_new(KIND_MAPPING_GATEWAY, "pbx2", "fuzz", 4);
    pbx2->type = MGW_STATIC;
    pbx2->addresses = (struct strlist){1, strv("127.0.0.3:5060", NULL)};
    pbx2->callee_from = CALLEE_FROM_REQUEST_LINE;
    pbx2->caller_from = CALLER_FROM_PAI;
    pbx2->line_limit = 2;
    add_def(cfg, &pbx2->head);

    snprintf(addr, sizeof addr, "127.0.0.1:%d", carrier_port);
    for (int i = 0; i < 2; i++) {
        struct routing_gateway_def *g = (void *)config_def_new(
            KIND_ROUTING_GATEWAY, i ? "carrier-b" : "carrier-a", "fuzz", 4 + i);
        g->type = RGW_STATIC;
        set_string(&g->address, addr);
        g->prefixes = (struct strlist){1, strv("1", NULL)};
        g->priority = i + 1;
        g->request_address = i ? REQUEST_CONTACT : REQUEST_SOCKET;
        if (i == 0) {
            struct rewrite_rule *r = calloc(2, sizeof *r);
            r[0] = (struct rewrite_rule){strdup("^1555"), strdup("001555")};
            r[1] = (struct rewrite_rule){strdup("^%+"), strdup("00")};
            g->callee_rewrite = (struct rewrite_list){2, r};
            g->invite_use_contact = TRI_ON;
        }
        add_def(cfg, &g->head);
    }
    const char *accounts[] = {"1001", "1002"};
    for (int i = 0; i < 2; i++) {
        struct account_def *a =
            (void *)config_def_new(KIND_ACCOUNT, accounts[i], "fuzz", 6 + i);
        set_string(&a->password, "secret");
        set_string(&a->mapping_gateway, "phones");
        add_def(cfg, &a->head);
    }
    char err[512];
    if (config_finish(cfg, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_sip: bad policy: %s\n", err);
        abort();
    }
    return cfg;
}

static void on_datagram(const struct sockaddr *from, socklen_t fromlen, void *arg)
{
    (void)from;
    (void)fromlen;
    (void)arg;
    datagrams_read++;
}

/* A UDP port free on 127.0.0.1 now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        abort();
    close(fd);
    return ntohs(sa.sin_port);
}

/* Everything app/moonswitch.c wires for SIP, minus the store, outbound
 * registrations, reply addresses and the policy engine. Returns 0 or -1. */
static int switch_build(struct sw *s)
{
    memset(s, 0, sizeof *s);
    s->root = evport_root_create(base, NULL);
    if (!s->root)
        return -1;
    for (int attempt = 0; attempt < 10 && !s->agent; attempt++) {
        s->port = free_port();
        config_free(s->cfg);
        s->cfg = make_config(s->port, peers[CARRIER].port);
        sipagent_create(&s->agent, s->root, &config_switch(s->cfg)->listen,
                        (unsigned)config_switch(s->cfg)->sip.resend_interval, NULL);
    }
    if (!s->agent)
        return -1;
    if (registrar_create(&s->registrar, sipagent_nta(s->agent),
                         sipagent_client_leg(s->agent), s->root, base, NULL) < 0)
        return -1;
    registrar_apply(s->registrar, s->cfg);
    sipagent_set_method_handler(s->agent, sip_method_register, registrar_on_register,
                                s->registrar);
    sipagent_set_method_prefilter(s->agent, sip_method_register,
                                  registrar_prefilter_register, s->registrar);
    if (gw_create(&s->gateways, sipagent_nta(s->agent), sipagent_client_leg(s->agent), s->root,
                  base, NULL) < 0)
        return -1;
    gw_apply(s->gateways, s->cfg);
    if (calls_create(&s->calls, s->agent, s->root, base, NULL, s->gateways) < 0)
        return -1;
    calls_apply(s->calls, s->cfg);
    calls_set_registrar(s->calls, s->registrar);
    sipagent_set_method_handler(s->agent, sip_method_invite, calls_on_invite, s->calls);
    sipagent_set_method_prefilter(s->agent, sip_method_invite, calls_prefilter_invite,
                                  s->calls);
    evport_set_datagram_observer(s->root, on_datagram, NULL);
    evport_rearm(s->root);
    return 0;
}

static void switch_destroy(struct sw *s)
{
    calls_destroy(s->calls);
    gw_destroy(s->gateways);
    registrar_destroy(s->registrar);
    sipagent_destroy(s->agent);
    if (s->root)
        su_root_destroy(s->root);
    config_free(s->cfg);
}

/* ---- The harness's peers ------------------------------------------------------ */

static void peer_open(struct peer *p)
{
    p->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, p->ip, &sa.sin_addr);
    socklen_t len = sizeof sa;
    if (p->fd < 0 || bind(p->fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        getsockname(p->fd, (struct sockaddr *)&sa, &len) < 0) {
        fprintf(stderr, "fuzz_sip: cannot bind %s: %s\n", p->ip, strerror(errno));
        abort();
    }
    p->port = ntohs(sa.sin_port);
}

/* Copy the value of the first header line named `name` (or its compact
 * form) from the message text into out. */
static int header_value(const char *msg, const char *name, char compact, char *out,
                        size_t outlen)
{
    size_t nlen = strlen(name);
    for (const char *l = msg; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        const char *v = NULL;
        if (strncasecmp(l, name, nlen) == 0 && l[nlen] == ':')
            v = l + nlen + 1;
        else if (compact && (l[0] == compact || l[0] == compact - 32) && l[1] == ':')
            v = l + 2;
        if (!v)
            continue;
        while (*v == ' ')
            v++;
        size_t n = strcspn(v, "\r\n");
        if (n >= outlen)
            n = outlen - 1;
        memcpy(out, v, n);
        out[n] = '\0';
        return 0;
    }
    return -1;
}

/* Remember what the next datagrams of this peer may refer to. */
static void peer_note(struct peer *p, const char *msg)
{
    char v[2048];
    if (strncmp(msg, "SIP/2.0 ", 8) == 0) {
        if (header_value(msg, "To", 't', v, sizeof v) == 0) {
            const char *t = strstr(v, ";tag=");
            snprintf(p->totag, sizeof p->totag, "%.*s",
                     t ? (int)strcspn(t + 5, ";> ") : 0, t ? t + 5 : "");
        }
        if (header_value(msg, "WWW-Authenticate", 0, v, sizeof v) == 0 ||
            header_value(msg, "Proxy-Authenticate", 0, v, sizeof v) == 0)
            snprintf(p->challenge, sizeof p->challenge, "%s", v);
        return;
    }
    size_t n = 0;
    static const char *const names[] = {"Via", "From", "To", "Call-ID", "CSeq"};
    static const char compact[] = {'v', 'f', 't', 'i', 0};
    p->reqhdrs[0] = '\0';
    for (int i = 0; i < 5; i++) {
        if (header_value(msg, names[i], compact[i], v, sizeof v) < 0)
            continue;
        bool tag = i == 2 && !strstr(v, ";tag=");
        int m = snprintf(p->reqhdrs + n, sizeof p->reqhdrs - n, "%s: %s%s\r\n", names[i],
                         v, tag ? ";tag=fuzzpeer" : "");
        if (m < 0 || (size_t)m >= sizeof p->reqhdrs - n)
            break;
        n += (size_t)m;
    }
    if (n >= 2)
        p->reqhdrs[n - 2] = '\0'; /* the datagram's own CRLF follows */
    char from[1024], to[1024], callid[512];
    if (strncmp(msg, "INVITE ", 7) == 0 &&
        header_value(msg, "From", 'f', from, sizeof from) == 0 &&
        header_value(msg, "To", 't', to, sizeof to) == 0 &&
        header_value(msg, "Call-ID", 'i', callid, sizeof callid) == 0)
        snprintf(p->revhdrs, sizeof p->revhdrs, "From: %s%s\r\nTo: %s\r\nCall-ID: %s", to,
                 strstr(to, ";tag=") ? "" : ";tag=fuzzpeer", from, callid);
}

/* Read whatever the switch sent the peers. */
static void peers_drain(void)
{
    static char buf[MAX_DATAGRAM + 1];
    for (int i = 0; i < NPEERS; i++) {
        ssize_t n;
        while ((n = recv(peers[i].fd, buf, MAX_DATAGRAM, MSG_DONTWAIT)) >= 0) {
            buf[n] = '\0';
            if (trace)
                fprintf(stderr, "  %s <- %.*s\n", peer_names[i],
                        (int)strcspn(buf, "\r\n"), buf);
            peer_note(&peers[i], buf);
        }
    }
}

/* ---- Datagrams ------------------------------------------------------------------- */

struct text {
    char *p;
    size_t len, cap;
};

static void text_add(struct text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->p = realloc(t->p, t->cap);
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = '\0';
}

/* Digest credentials for the peer's last challenge. */
static void add_auth(struct text *t, const struct peer *p, const char *user,
                     const char *dgram, size_t len)
{
    char method[32] = "", uri[512] = "";
    size_t m = strcspn(dgram, " \r\n");
    if (m < len && m < sizeof method && dgram[m] == ' ') {
        memcpy(method, dgram, m);
        method[m] = '\0';
        size_t u = strcspn(dgram + m + 1, " \r\n");
        if (u < sizeof uri) {
            memcpy(uri, dgram + m + 1, u);
            uri[u] = '\0';
        }
    }
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sip_www_authenticate_t *au = sip_www_authenticate_make(home, p->challenge);
    struct digest_challenge c;
    char value[2048];
    if (au && digest_challenge_parse(&c, (const char *const *)au->au_params) == 0 &&
        digest_authorization(&c, user, "secret", method, uri, ++nc, "fuzzcnonce", value,
                             sizeof value) > 0)
        text_add(t, value, strlen(value));
    su_home_deinit(home);
}

/* The datagram with its placeholders replaced, into t. */
static void expand(struct text *t, const struct peer *p, const struct sw *s,
                   const char *in, size_t len, unsigned index)
{
    char num[64];
    size_t auth_at[8], nauth = 0;
    const char *auth_user[8];
    for (size_t i = 0; i < len;) {
        const char *d = memchr(in + i, '$', len - i);
        size_t plain = d ? (size_t)(d - (in + i)) : len - i;
        text_add(t, in + i, plain);
        i += plain;
        if (i >= len)
            break;
        const char *rest = in + i;
        size_t left = len - i;
#define IS(word) (left >= sizeof(word) - 1 && memcmp(rest, word, sizeof(word) - 1) == 0)
        if (IS("$PORT")) {
            snprintf(num, sizeof num, "%d", s->port);
            text_add(t, num, strlen(num));
            i += 5;
        } else if (IS("$LPORT")) {
            snprintf(num, sizeof num, "%d", p->port);
            text_add(t, num, strlen(num));
            i += 6;
        } else if (IS("$TRANSPORT")) {
            text_add(t, "UDP", 3);
            i += 10;
        } else if (IS("$BRANCH0") || IS("$BRANCH")) {
            bool first = IS("$BRANCH0");
            snprintf(num, sizeof num, "fuzz%ux%u", runs, first ? 0 : index);
            text_add(t, num, strlen(num));
            i += first ? 8 : 7;
        } else if (IS("$TAG")) {
            snprintf(num, sizeof num, "fuzztag%u", runs);
            text_add(t, num, strlen(num));
            i += 4;
        } else if (IS("$CALLID")) {
            snprintf(num, sizeof num, "fuzzcall%u", runs);
            text_add(t, num, strlen(num));
            i += 7;
        } else if (IS("$REQHDRS")) {
            text_add(t, p->reqhdrs, strlen(p->reqhdrs));
            i += 8;
        } else if (IS("$REVHDRS")) {
            text_add(t, p->revhdrs, strlen(p->revhdrs));
            i += 8;
        } else if (IS("$TOTAG")) {
            text_add(t, p->totag, strlen(p->totag));
            i += 6;
        } else if ((IS("$AUTH2") || IS("$AUTH")) && nauth < 8) {
            /* Filled in last: the credentials cover the final Request-URI. */
            auth_user[nauth] = IS("$AUTH2") ? "1002" : "1001";
            auth_at[nauth++] = t->len;
            i += IS("$AUTH2") ? 6 : 5;
        } else {
            text_add(t, "$", 1);
            i++;
        }
#undef IS
    }
    if (nauth == 0 || !t->p)
        return;
    struct text out = {0};
    size_t from = 0;
    for (size_t k = 0; k < nauth; k++) {
        text_add(&out, t->p + from, auth_at[k] - from);
        add_auth(&out, p, auth_user[k], t->p, t->len);
        from = auth_at[k];
    }
    text_add(&out, t->p + from, t->len - from);
    free(t->p);
    *t = out;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Send one datagram and run the loop until the switch has read it (or 50
 * ms pass: a datagram the kernel refused), then collect the answers. */
static void deliver(struct sw *s, int from, const char *dgram, size_t len)
{
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)s->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    unsigned before = datagrams_read;
    if (trace)
        fprintf(stderr, "%s -> %.*s\n", peer_names[from], (int)strcspn(dgram, "\r\n"),
                dgram);
    if (sendto(peers[from].fd, dgram, len, 0, (struct sockaddr *)&to, sizeof to) < 0)
        return;
    double deadline = now_ms() + 50;
    while (datagrams_read == before && now_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    if (trace && datagrams_read == before)
        fprintf(stderr, "  (not read by the switch)\n");
    for (int i = 0; i < 3; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    peers_drain();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!getenv("MOON_FUZZ_LOG"))
        log_set_level(LOG_ERROR);
    trace = getenv("MOON_FUZZ_TRACE") != NULL;
    if (getenv("MOON_FUZZ_FRESH"))
        rebuild_every = 1;
    su_init();
    base = event_base_new();
    event_base_priority_init(base, 3);
    for (int i = 0; i < NPEERS; i++)
        peer_open(&peers[i]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sw s;
    static bool built;
    if (size > 32768)
        return 0;
    if (built && ++runs % rebuild_every == 0) {
        switch_destroy(&s);
        built = false;
    }
    if (!built) {
        if (switch_build(&s) < 0) {
            fprintf(stderr, "fuzz_sip: cannot build the switch\n");
            abort();
        }
        built = true;
    }
    peers_drain(); /* what the switch sent since the last input */
    for (int i = 0; i < NPEERS; i++)
        peers[i].reqhdrs[0] = peers[i].revhdrs[0] = peers[i].totag[0] =
            peers[i].challenge[0] = '\0';
    const char *in = (const char *)data;
    unsigned index = 0;
    for (size_t at = 0; at <= size && index < 16; index++) {
        const char *sep = NULL;
        for (size_t k = at; k + 4 <= size; k++)
            if (memcmp(in + k, SEPARATOR, 4) == 0) {
                sep = in + k;
                break;
            }
        size_t len = sep ? (size_t)(sep - (in + at)) : size - at;
        const char *d = in + at;
        int from = PBX;
        if (len > 0 && (d[0] == 'p' || d[0] == 'e' || d[0] == 'c' || d[0] == 'q')) {
            from = d[0] == 'e' ? PHONE : d[0] == 'c' ? CARRIER : d[0] == 'q' ? PBX2 : PBX;
            d++;
            len--;
        }
        struct text t = {0};
        expand(&t, &peers[from], &s, d, len, index);
        if (t.len > 0)
            deliver(&s, from, t.p, t.len);
        free(t.p);
        if (!sep)
            break;
        at = (size_t)(sep - in) + 4;
    }
    return 0;
}
