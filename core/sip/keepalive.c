/* NAT keepalive of endpoint bindings. See keepalive.h. */
#define NTA_OUTGOING_MAGIC_T struct keepalive_node

#include "sip/keepalive.h"
#include "config.h"
#include "log.h"
#include "sip/binding.h"
#include "sip/registrar_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <event2/event.h>
#include <sofia-sip/msg.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/nta_tport.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/tport.h>

struct keepalive {
    nta_agent_t *nta;
    nta_leg_t *leg; /* for OPTIONS */
    su_root_t *root;
    struct binding_set *set;
    /* enum endpoint_keepalive, period in seconds (the ring's size, 0 before
     * the first apply), misses that remove. */
    int mode;
    unsigned interval, max_misses;
    struct keepalive_node **slots; /* `interval` slots, one a second */
    unsigned pos;                  /* the slot of the next tick */
    struct event *tick_ev;
    /* nta may answer inside nta_outgoing_tcreate(): the status lands here. */
    bool in_create;
    int create_status;
    char host[80]; /* for the From of OPTIONS */
};

/* ---- The ring ----------------------------------------------------------------- */

static void slot_unlink(struct keepalive *ka, struct keepalive_node *n)
{
    if (!n->linked)
        return;
    if (n->prev)
        n->prev->next = n->next;
    else
        ka->slots[n->slot] = n->next;
    if (n->next)
        n->next->prev = n->prev;
    n->prev = n->next = NULL;
    n->linked = 0;
}

static void slot_link(struct keepalive *ka, struct keepalive_node *n, unsigned slot)
{
    n->slot = (uint16_t)slot;
    n->prev = NULL;
    n->next = ka->slots[slot];
    if (n->next)
        n->next->prev = n;
    ka->slots[slot] = n;
    n->linked = 1;
}

/* Rebuild the ring with `interval` slots (a reload changed the interval).
 * Each binding keeps its place in the round, scaled: one due in d of the
 * old n seconds is due in ceil(d * interval / n) of the new, so the pings
 * stay spread as they were and no binding goes longer than the longer of
 * the two intervals without one. O(NAT bindings), once per change. Returns
 * 0, or -ENOMEM with the old ring kept. */
static int ring_resize(struct keepalive *ka, unsigned interval)
{
    struct keepalive_node **fresh = calloc(interval, sizeof *fresh);
    if (!fresh)
        return -ENOMEM;
    struct keepalive_node **old = ka->slots;
    unsigned n = ka->interval, pos = ka->pos;
    ka->slots = fresh;
    ka->interval = interval;
    ka->pos = 0;
    for (unsigned s = 0; old && s < n; s++) {
        struct keepalive_node *node = old[s];
        while (node) {
            struct keepalive_node *next = node->next;
            /* Ticks until its ping, 1..n, then scaled: 1..interval. Slot k
             * of the new ring fires at tick k + 1. */
            unsigned long long due = (s + n - pos) % n + 1;
            unsigned scaled = (unsigned)((due * interval + n - 1) / n);
            slot_link(ka, node, scaled - 1);
            node = next;
        }
    }
    free(old);
    return 0;
}

void keepalive_refresh(struct keepalive *ka, struct keepalive_node *n, bool nat)
{
    n->misses = 0;
    if (!ka)
        return;
    if (!nat)
        slot_unlink(ka, n);
    else if (ka->slots && !n->linked) /* the first ping about one interval from now */
        slot_link(ka, n, (ka->pos + ka->interval - 1) % ka->interval);
}

void keepalive_release(struct keepalive *ka, struct keepalive_node *n)
{
    if (ka)
        slot_unlink(ka, n);
    if (n->orq)
        nta_outgoing_destroy(n->orq);
    n->orq = NULL;
}

/* ---- OPTIONS -------------------------------------------------------------------- */

static int on_options_answer(struct keepalive_node *n, nta_outgoing_t *orq,
                             const sip_t *sip)
{
    struct binding *b = binding_of_keepalive_node(n);
    struct keepalive *ka = binding_keepalive(b);
    int status =
        sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (status < 200)
        return 0;
    if (ka->in_create) {
        ka->create_status = status;
        nta_outgoing_destroy(orq);
        return 0;
    }
    /* Read first: over TCP and TLS the destroy frees the response. */
    bool answered = sip && !nta_sip_is_internal(sip);
    n->orq = NULL;
    nta_outgoing_destroy(orq);
    if (ka->mode != ENDPOINT_KEEPALIVE_OPTIONS)
        return 0; /* sent before a reload changed the mode: not counted */
    if (answered) {
        n->misses = 0;
        return 0;
    }
    if (++n->misses >= ka->max_misses)
        binding_remove(b, "keepalives unanswered");
    return 0;
}

static void send_options(struct keepalive *ka, struct binding *b)
{
    struct keepalive_node *n = binding_keepalive_node(b);
    const char *contact = binding_contact(b);
    char route[128], from[160], to[BINDING_CONTACT_MAX + 4], call_id[48];
    snprintf(route, sizeof route, "sip:%s;transport=%s", binding_source(b),
             binding_transport_name(binding_transport(b)));
    unsigned char rnd[12];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        memset(rnd, 0, sizeof rnd);
    snprintf(from, sizeof from, "<sip:keepalive@%s>;tag=%02x%02x%02x%02x", ka->host,
             rnd[0], rnd[1], rnd[2], rnd[3]);
    snprintf(to, sizeof to, "<%s>", contact);
    snprintf(call_id, sizeof call_id, "ka-%02x%02x%02x%02x%02x%02x%02x%02x@moonswitch",
             rnd[4], rnd[5], rnd[6], rnd[7], rnd[8], rnd[9], rnd[10], rnd[11]);
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sip_cseq_t *cs = sip_cseq_create(home, 1, SIP_METHOD_OPTIONS);
    tport_t *tp = binding_tport(b);
    ka->in_create = true;
    ka->create_status = 0;
    /* From the binding's own transport: the NAT lets the OPTIONS in only
     * from the IP:port the REGISTER went to. nta sends on a TCP connection
     * given here (a dead one is a miss, not a new connection the NAT would
     * refuse); of a UDP listener it takes only the ident (agent.c gives
     * each one its own), otherwise it would pick the protocol's first. */
    nta_outgoing_t *orq = nta_outgoing_tcreate(
        ka->leg, on_options_answer, n, URL_STRING_MAKE(route), SIP_METHOD_OPTIONS,
        URL_STRING_MAKE(contact), SIPTAG_FROM_STR(from), SIPTAG_TO_STR(to),
        SIPTAG_CALL_ID_STR(call_id), SIPTAG_CSEQ(cs), TAG_IF(tp, NTATAG_TPORT(tp)),
        TAG_END());
    ka->in_create = false;
    su_home_deinit(home);
    if (!orq || ka->create_status) {
        if (++n->misses >= ka->max_misses)
            binding_remove(b, "keepalives cannot be sent");
        return;
    }
    n->orq = orq;
}

/* ---- CRLF ------------------------------------------------------------------------ */

/* "\r\n\r\n" as a message tport can send. tport writes only msg_t, and a
 * message is encoded from its chain of fragments; parsing a request whose
 * body is CRLF and dropping its request line and Content-Length leaves the
 * chain separator + body: CRLF CRLF. Public msg API only; about 1 us and a
 * few hundred bytes, freed once sent. NULL when out of memory. */
static msg_t *crlf_message(void)
{
    static const char text[] = "OPTIONS sip:keepalive.invalid SIP/2.0\r\n"
                               "Content-Length: 2\r\n\r\n\r\n";
    msg_t *msg = msg_make(sip_default_mclass(), 0, text, sizeof text - 1);
    sip_t *sip = sip_object(msg);
    if (!sip || !sip->sip_request || !sip->sip_content_length || !sip->sip_payload ||
        msg_header_remove(msg, NULL, (msg_header_t *)sip->sip_request) < 0 ||
        msg_header_remove(msg, NULL, (msg_header_t *)sip->sip_content_length) < 0) {
        msg_destroy(msg);
        return NULL;
    }
    return msg;
}

/* "ip:port" or "[ip6]:port" into the IP (no brackets) and the port. */
static int split_source(const char *source, char *host, size_t hostlen, char *port,
                        size_t portlen)
{
    const char *colon = strrchr(source, ':');
    if (!colon)
        return -1;
    const char *h = source;
    size_t n = (size_t)(colon - source);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    size_t p = strlen(colon + 1);
    if (n == 0 || n >= hostlen || p == 0 || p >= portlen)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    memcpy(port, colon + 1, p + 1);
    return 0;
}

/* RFC 5626 4.4.1 CRLF keepalive to the binding's source, written by tport on
 * the switch's own socket: over UDP the one the REGISTER came to (the NAT
 * only refreshes the pinhole for packets from that IP:port), over TCP the
 * REGISTER's connection.
 * Over UDP nothing answers a CRLF ping (the pong of RFC 5626 goes the other
 * way, to a UA that pinged), so this only keeps the pinhole open: misses
 * cannot be counted, and a phone that is gone stays until its binding
 * expires (endpoint_nat_expire). Over TCP a connection that is closed or
 * shut down, or a write that fails, removes the binding. */
static void send_crlf(struct keepalive *ka, struct binding *b)
{
    tport_t *tp = binding_tport(b);
    enum binding_transport transport = binding_transport(b);
    bool tcp = transport != BINDING_UDP; /* a connection: TCP or TLS */
    if (tcp && (!tp || tport_is_shutdown(tp) || !tport_is_clear_to_send(tp))) {
        /* Checked first: given a dead connection, tport_tsend() would open
         * a new one, which a NAT does not let in. A binding loaded from the
         * store has none: its connection went with the last run. */
        binding_remove(b, tp ? "connection closed" : "no connection since the restart");
        return;
    }
    char host[48], port[8];
    if (split_source(binding_source(b), host, sizeof host, port, sizeof port) < 0)
        return;
    tp_name_t tpn = {0};
    tpn.tpn_proto = binding_transport_name(transport);
    tpn.tpn_canon = tpn.tpn_host = host;
    tpn.tpn_port = port;
    if (!tp) /* loaded from the store: the first UDP socket of the family */
        tp = tport_primary_by_name(nta_agent_tports(ka->nta), &tpn);
    msg_t *msg = crlf_message();
    tport_t *sent = tp && msg ? tport_tsend(tp, msg, &tpn, TAG_END()) : NULL;
    msg_destroy(msg); /* tport keeps its own reference while it queues */
    if (sent)
        return;
    if (tcp)
        binding_remove(b, "keepalive cannot be sent");
    else
        log_debug("registrar", "%s: cannot send a CRLF keepalive to %s",
                  binding_aor_name(b), binding_source(b));
}

/* ---- The tick -------------------------------------------------------------------- */

/* One slot a second: each NAT binding is pinged once per interval. In
 * options mode a binding whose last ping is still unanswered waits for nta's
 * verdict. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct keepalive *ka = arg;
    (void)fd;
    (void)what;
    if (!ka->slots || ka->mode == ENDPOINT_KEEPALIVE_OFF)
        return;
    unsigned slot = ka->pos;
    ka->pos = (ka->pos + 1) % ka->interval;
    struct keepalive_node *n = ka->slots[slot];
    while (n) {
        struct keepalive_node *next = n->next; /* n may go */
        if (ka->mode == ENDPOINT_KEEPALIVE_CRLF)
            send_crlf(ka, binding_of_keepalive_node(n));
        else if (!n->orq)
            send_options(ka, binding_of_keepalive_node(n));
        n = next;
    }
    registrar_kick(ka->root);
}

static void reset_misses(struct binding *b, void *arg)
{
    (void)arg;
    binding_keepalive_node(b)->misses = 0;
}

void keepalive_apply(struct keepalive *ka, const struct sip_settings *s)
{
    unsigned interval = (unsigned)s->endpoint_keepalive_interval;
    unsigned misses = (unsigned)s->endpoint_keepalive_misses;
    bool changed = s->endpoint_keepalive != ka->mode || interval != ka->interval ||
                   misses != ka->max_misses;
    if (interval != ka->interval && ring_resize(ka, interval) < 0)
        log_error("registrar", "out of memory resizing the keepalive wheel: keeping %u s",
                  ka->interval);
    if (s->endpoint_keepalive != ka->mode) /* misses counted under the old mode */
        binding_set_visit(ka->set, reset_misses, NULL);
    ka->mode = s->endpoint_keepalive;
    ka->max_misses = misses;
    if (ka->mode == ENDPOINT_KEEPALIVE_OFF || !ka->slots) {
        event_del(ka->tick_ev);
    } else if (!event_pending(ka->tick_ev, EV_TIMEOUT, NULL)) {
        struct timeval second = {1, 0};
        event_add(ka->tick_ev, &second);
    }
    if (!changed)
        return;
    if (ka->mode == ENDPOINT_KEEPALIVE_OPTIONS)
        log_info("registrar",
                 "NAT keepalive: options every %u s, removed after %u misses",
                 ka->interval, ka->max_misses);
    else if (ka->mode == ENDPOINT_KEEPALIVE_CRLF)
        log_info("registrar", "NAT keepalive: crlf every %u s", ka->interval);
    else
        log_info("registrar", "NAT keepalive: off");
}

/* ---- Lifetime -----------------------------------------------------------------------
 */

int keepalive_create(struct keepalive **kp, nta_agent_t *nta, nta_leg_t *leg,
                     su_root_t *root, struct event_base *base, struct binding_set *set)
{
    *kp = NULL;
    struct keepalive *ka = calloc(1, sizeof *ka);
    if (!ka)
        return -ENOMEM;
    ka->nta = nta;
    ka->leg = leg;
    ka->root = root;
    ka->set = set;
    /* Keepalives start with the policy's settings in keepalive_apply(),
     * before any binding exists. */
    ka->mode = ENDPOINT_KEEPALIVE_OFF;
    ka->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, ka);
    if (!ka->tick_ev) {
        free(ka);
        return -ENOMEM;
    }
    sip_contact_t const *m = nta ? nta_agent_contact(nta) : NULL;
    snprintf(ka->host, sizeof ka->host, "%s",
             m && m->m_url->url_host ? m->m_url->url_host : "moonswitch.invalid");
    *kp = ka;
    return 0;
}

void keepalive_destroy(struct keepalive *ka)
{
    if (!ka)
        return;
    event_free(ka->tick_ev);
    free(ka->slots);
    free(ka);
}
