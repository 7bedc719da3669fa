/* Unit tests for core/sip/binding.c: reading a REGISTER's Contacts (expiry
 * from the Contact, Expires or the default, clamped to endpoint_expire or
 * endpoint_nat_expire, 423, `*`), and the RFC 3261 10.3 rules on one AOR
 * (add, refresh, CSeq order, remove with expires 0, `*`, replace against
 * accumulate), the transport each binding keeps, expiry, and the store
 * records across a restart. */
#include "check.h"

#include "sip/binding.h"
#include "store.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <sofia-sip/msg.h>
#include <sofia-sip/sip_header.h>

#define NOW 1700000000LL
#define SRC_IP "10.0.0.1"
#define SRC SRC_IP ":5060"

/* A REGISTER from SRC with `headers` (Contact, Expires), parsed by sofia
 * and read by binding_parse(); msg holds what req points into. */
struct reg {
    msg_t *msg;
    int status;
    const char *phrase;
    struct binding_request req;
};

static void reg_parse(struct reg *g, const struct binding_set *s, const char *headers)
{
    char text[4096];
    int n = snprintf(text, sizeof text,
                     "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP " SRC ";branch=z9hG4bK-1\r\n"
                     "From: <sip:1001@127.0.0.1>;tag=a\r\n"
                     "To: <sip:1001@127.0.0.1>\r\n"
                     "Call-ID: call-1\r\n"
                     "CSeq: 1 REGISTER\r\n"
                     "%s"
                     "Content-Length: 0\r\n\r\n",
                     headers);
    g->msg = msg_make(sip_default_mclass(), 0, text, (size_t)n);
    sip_t *sip = sip_object(g->msg);
    CHECK(sip != NULL && sip->sip_request != NULL);
    g->phrase = NULL;
    g->status = sip ? binding_parse(s, sip, SRC_IP, SRC, &g->req, &g->phrase) : -1;
}

static void reg_done(struct reg *g)
{
    msg_destroy(g->msg);
}

static struct binding_origin origin(const char *call_id, uint32_t cseq)
{
    return (struct binding_origin){.call_id = call_id,
                                   .cseq = cseq,
                                   .source = SRC,
                                   .user_agent = "phone/1.0",
                                   .transport = BINDING_UDP};
}

/* Parse `headers` and apply them to `aor` at `now`; returns the parse
 * status. */
static int reg(struct binding_set *s, struct binding_aor *aor, const char *headers,
               const char *call_id, uint32_t cseq, long long now)
{
    struct reg g;
    reg_parse(&g, s, headers);
    if (g.status == 0) {
        const struct binding_origin o = origin(call_id, cseq);
        binding_update(aor, &g.req, &o, now);
    }
    reg_done(&g);
    return g.status;
}

/* What binding_visit() shows, in the AOR's order (newest first), with
 * copies of the strings. */
struct seen {
    unsigned n;
    struct registrar_binding b[16];
    char contact[16][BINDING_CONTACT_MAX], source[16][64], ua[16][64], call_id[16][64];
};

static int collect(const struct registrar_binding *b, void *arg)
{
    struct seen *s = arg;
    unsigned i = s->n;
    if (i < 16) {
        s->b[i] = *b;
        snprintf(s->contact[i], sizeof s->contact[i], "%s", b->contact);
        snprintf(s->source[i], sizeof s->source[i], "%s", b->source);
        snprintf(s->ua[i], sizeof s->ua[i], "%s", b->user_agent);
        snprintf(s->call_id[i], sizeof s->call_id[i], "%s", b->call_id);
        s->b[i].contact = s->contact[i];
        s->b[i].source = s->source[i];
        s->b[i].user_agent = s->ua[i];
        s->b[i].call_id = s->call_id[i];
        s->n++;
    }
    return 0;
}

static void seen_of(const struct binding_aor *aor, struct seen *s)
{
    s->n = 0;
    binding_visit(aor, collect, s);
}

/* 1 if the AOR has a binding for `contact`, granted until `expires_at`. */
static int has(const struct binding_aor *aor, const char *contact, long long expires_at)
{
    struct seen s;
    seen_of(aor, &s);
    for (unsigned i = 0; i < s.n; i++)
        if (strcmp(s.contact[i], contact) == 0)
            return expires_at == 0 || s.b[i].expires_at == expires_at;
    return 0;
}

static struct binding_set *new_set(struct store *store, bool replace)
{
    struct binding_set *s = NULL;
    CHECK(binding_set_create(&s, NULL, NULL, store) == 0);
    binding_set_configure(s, 3600, 300, replace);
    return s;
}

static void grant_clamps(void)
{
    struct binding_set *s = new_set(NULL, true);
    CHECK(binding_grant(s, 7200, false) == 3600);
    CHECK(binding_grant(s, 100, false) == 100);
    CHECK(binding_grant(s, 7200, true) == 300);
    CHECK(binding_grant(s, 200, true) == 200);
    CHECK(binding_grant(s, 0, true) == 0);
    binding_set_configure(s, 1800, 60, true);
    CHECK(binding_grant(s, 3600, false) == 1800);
    CHECK(binding_grant(s, 3600, true) == 60);
    binding_set_destroy(s);
}

static bool nat(const char *contact, const char *ip, const char *source)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", contact);
    url_t u[1];
    CHECK(url_d(u, buf) == 0);
    return binding_behind_nat(u, ip, source);
}

static void behind_nat(void)
{
    CHECK(!nat("sip:1001@10.0.0.1:5060", "10.0.0.1", "10.0.0.1:5060"));
    CHECK(!nat("sip:1001@10.0.0.1", "10.0.0.1", "10.0.0.1:5060")); /* default port */
    CHECK(nat("sip:1001@10.0.0.1", "10.0.0.1", "10.0.0.1:5061"));
    CHECK(!nat("sips:1001@10.0.0.1", "10.0.0.1", "10.0.0.1:5061"));
    CHECK(nat("sip:1001@10.0.0.1:5060", "10.0.0.1", "10.0.0.1:40000"));   /* port moved */
    CHECK(nat("sip:1001@192.168.1.2:5060", "10.0.0.1", "10.0.0.1:5060")); /* private */
    CHECK(!nat("sip:1001@[2001:db8::1]:5062", "2001:db8::1", "[2001:db8::1]:5062"));
    CHECK(nat("sip:1001@[2001:db8::1]:5062", "2001:db8::2", "[2001:db8::2]:5062"));
    CHECK(nat("sip:1001@phone.example", "10.0.0.1", "10.0.0.1:5060"));
}

static void parse_expiry(void)
{
    struct binding_set *s = new_set(NULL, true);
    struct reg g;
    /* The Contact's expires, then Expires, then the default; clamped. */
    reg_parse(&g, s,
              "Contact: <sip:1001@" SRC ">;expires=60, <sip:1001@" SRC_IP
              ":5070>\r\nExpires: 120\r\n");
    CHECK(g.status == 0 && g.req.n == 2 && !g.req.star);
    CHECK(strcmp(g.req.c[0].uri, "sip:1001@" SRC) == 0);
    CHECK(g.req.c[0].granted == 60 && !g.req.c[0].nat);
    CHECK(g.req.c[1].granted == 120 && g.req.c[1].nat); /* not the source port */
    reg_done(&g);
    reg_parse(&g, s, "Contact: <sip:1001@" SRC ">\r\n");
    CHECK(g.status == 0 && g.req.c[0].granted == 3600);
    reg_done(&g);
    reg_parse(&g, s, "Contact: <sip:1001@" SRC ">;expires=86400\r\n");
    CHECK(g.status == 0 && g.req.c[0].granted == 3600);
    reg_done(&g);
    /* Behind NAT: endpoint_nat_expire. */
    reg_parse(&g, s, "Contact: <sip:1001@192.168.1.2:5060>\r\nExpires: 3600\r\n");
    CHECK(g.status == 0 && g.req.c[0].nat && g.req.c[0].granted == 300);
    reg_done(&g);
    /* 0 and negative: a removal. */
    reg_parse(&g, s, "Contact: <sip:1001@" SRC ">;expires=-5\r\n");
    CHECK(g.status == 0 && g.req.c[0].granted == 0);
    reg_done(&g);
    /* Under REGISTRAR_MIN_EXPIRES: 423. */
    reg_parse(&g, s, "Contact: <sip:1001@" SRC ">;expires=5\r\n");
    CHECK(g.status == 423);
    reg_done(&g);
    binding_set_destroy(s);
}

static void parse_star_and_limits(void)
{
    struct binding_set *s = new_set(NULL, true);
    struct reg g;
    reg_parse(&g, s, "Contact: *\r\nExpires: 0\r\n");
    CHECK(g.status == 0 && g.req.star && g.req.n == 0);
    reg_done(&g);
    reg_parse(&g, s, "Contact: *\r\n");
    CHECK(g.status == 400 && strcmp(g.phrase, "Wildcard Contact Needs Expires 0") == 0);
    reg_done(&g);
    reg_parse(&g, s, "Contact: *\r\nExpires: 60\r\n");
    CHECK(g.status == 400);
    reg_done(&g);
    reg_parse(&g, s, "Contact: *, <sip:1001@" SRC ">\r\nExpires: 0\r\n");
    CHECK(g.status == 400);
    reg_done(&g);
    char many[2048] = "Contact: ";
    for (int i = 0; i <= BINDING_MAX_CONTACTS; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s<sip:%d@" SRC ">",
                 i ? ", " : "", 1000 + i);
    strcat(many, "\r\n");
    reg_parse(&g, s, many);
    CHECK(g.status == 400 && strcmp(g.phrase, "Too Many Contacts") == 0);
    reg_done(&g);
    binding_set_destroy(s);
}

static void add_refresh_remove(void)
{
    struct binding_set *s = new_set(NULL, true);
    struct binding_aor aor;
    binding_aor_init(&aor, s, "1001");
    const char *a = "sip:1001@" SRC;
    CHECK(reg(s, &aor, "Contact: <sip:1001@" SRC ">;expires=60\r\n", "c1", 1, NOW) == 0);
    CHECK(aor.count == 1 && binding_set_count(s) == 1);
    struct seen seen;
    seen_of(&aor, &seen);
    CHECK(seen.n == 1);
    CHECK(strcmp(seen.b[0].aor, "1001") == 0);
    CHECK(strcmp(seen.b[0].source, SRC) == 0);
    CHECK(strcmp(seen.b[0].user_agent, "phone/1.0") == 0);
    CHECK(strcmp(seen.b[0].call_id, "c1") == 0);
    CHECK(strcmp(seen.b[0].transport, "udp") == 0);
    CHECK(seen.b[0].cseq == 1 && !seen.b[0].nat && seen.b[0].expires_at == NOW + 60);
    char *hdr = binding_contacts_header(&aor, NOW + 10);
    CHECK(hdr && strcmp(hdr, "<sip:1001@" SRC ">;expires=50") == 0);
    free(hdr);

    /* CSeq order within one Call-ID (RFC 3261 10.3 step 7). */
    struct reg g;
    reg_parse(&g, s, "Contact: <sip:1001@" SRC ">;expires=120\r\n");
    CHECK(binding_out_of_order(&aor, &g.req, "c1", 1));
    CHECK(!binding_out_of_order(&aor, &g.req, "c1", 2));
    CHECK(!binding_out_of_order(&aor, &g.req, "c2", 1));
    reg_done(&g);

    /* A refresh: the same binding, a new expiry and CSeq. */
    CHECK(reg(s, &aor, "Contact: <sip:1001@" SRC ">;expires=120\r\n", "c1", 2,
              NOW + 10) == 0);
    CHECK(aor.count == 1 && has(&aor, a, NOW + 130));
    seen_of(&aor, &seen);
    CHECK(seen.b[0].cseq == 2);
    /* The same URI written differently (RFC 3261 comparison) is the same
     * binding; it takes the new text. */
    struct binding_aor other;
    binding_aor_init(&other, s, "1002");
    CHECK(reg(s, &other, "Contact: <sip:1002@Phone.Example>\r\n", "c9", 1, NOW) == 0);
    CHECK(reg(s, &other, "Contact: <sip:1002@phone.example>\r\n", "c9", 2, NOW) == 0);
    CHECK(other.count == 1 && has(&other, "sip:1002@phone.example", 0));
    CHECK(aor.count == 1 && binding_set_count(s) == 2);
    binding_clear(&other, NULL);

    /* Expires 0 removes it; removing what is not there changes nothing. */
    CHECK(reg(s, &aor, "Contact: <sip:1001@" SRC ">;expires=0\r\n", "c1", 6, NOW + 30) ==
          0);
    CHECK(aor.count == 0 && binding_set_count(s) == 0);
    CHECK(binding_contacts_header(&aor, NOW) == NULL);
    CHECK(reg(s, &aor, "Contact: <sip:1001@" SRC ">\r\nExpires: 0\r\n", "c1", 7,
              NOW + 30) == 0);
    CHECK(aor.count == 0);
    binding_set_destroy(s);
}

/* Each binding keeps the transport of its REGISTER; TLS shows as "tls". */
static void transport_kept(void)
{
    struct binding_set *s = new_set(NULL, false);
    struct binding_aor aor;
    binding_aor_init(&aor, s, "1001");
    const enum binding_transport tps[] = {BINDING_UDP, BINDING_TCP, BINDING_TLS};
    const char *names[] = {"udp", "tcp", "tls"};
    for (unsigned i = 0; i < 3; i++) {
        char contact[80];
        snprintf(contact, sizeof contact, "Contact: <sip:1001@10.0.0.%u:5060>\r\n",
                 i + 2);
        struct reg g;
        reg_parse(&g, s, contact);
        CHECK(g.status == 0);
        struct binding_origin o = origin("c1", i + 1);
        o.transport = tps[i];
        binding_update(&aor, &g.req, &o, NOW);
        reg_done(&g);
        CHECK(strcmp(binding_transport_name(tps[i]), names[i]) == 0);
    }
    struct seen seen;
    seen_of(&aor, &seen);
    CHECK(seen.n == 3);
    for (unsigned i = 0; i < seen.n; i++) {
        unsigned k = (unsigned)(seen.contact[i][strlen("sip:1001@10.0.0.")] - '2');
        CHECK(k < 3 && strcmp(seen.b[i].transport, names[k]) == 0);
    }
    binding_clear(&aor, NULL);
    binding_set_destroy(s);
}

static void star_removes_all(void)
{
    struct binding_set *s = new_set(NULL, false);
    struct binding_aor aor, other;
    binding_aor_init(&aor, s, "1001");
    binding_aor_init(&other, s, "1002");
    CHECK(reg(s, &aor, "Contact: <sip:1001@" SRC ">, <sip:1001@10.0.0.2:5060>\r\n", "c1",
              1, NOW) == 0);
    CHECK(reg(s, &aor, "Contact: <sip:1001@10.0.0.3:5060>\r\n", "c2", 1, NOW) == 0);
    CHECK(reg(s, &other, "Contact: <sip:1002@" SRC ">\r\n", "c3", 1, NOW) == 0);
    CHECK(aor.count == 3 && binding_set_count(s) == 4);
    CHECK(reg(s, &aor, "Contact: *\r\nExpires: 0\r\n", "c4", 1, NOW) == 0);
    CHECK(aor.count == 0 && other.count == 1 && binding_set_count(s) == 1);
    binding_clear(&other, NULL);
    binding_set_destroy(s);
}

static void replace_keeps_the_new_one(void)
{
    struct binding_set *s = new_set(NULL, true);
    struct binding_aor aor;
    binding_aor_init(&aor, s, "1001");
    /* One REGISTER with two Contacts: both are its own. */
    CHECK(reg(s, &aor, "Contact: <sip:1001@" SRC ">, <sip:1001@10.0.0.2:5060>\r\n", "c1",
              1, NOW) == 0);
    CHECK(aor.count == 2);
    /* A refresh of one adds nothing: the other stays. */
    CHECK(reg(s, &aor, "Contact: <sip:1001@" SRC ">\r\n", "c1", 2, NOW + 1) == 0);
    CHECK(aor.count == 2);
    /* A new Contact replaces every binding it does not name. */
    CHECK(reg(s, &aor, "Contact: <sip:1001@10.0.0.9:5060>\r\n", "c2", 1, NOW + 2) == 0);
    CHECK(aor.count == 1 && has(&aor, "sip:1001@10.0.0.9:5060", 0));
    CHECK(binding_set_count(s) == 1);
    binding_clear(&aor, NULL);
    binding_set_destroy(s);
}

static void accumulate_up_to_the_limit(void)
{
    struct binding_set *s = new_set(NULL, false);
    binding_set_configure(s, 3600, 3600, false); /* the Contacts are behind NAT */
    struct binding_aor aor;
    binding_aor_init(&aor, s, "1001");
    char hdr[128];
    /* Each from its own Call-ID, the first closest to expiry. */
    for (int i = 0; i < REGISTRAR_MAX_BINDINGS; i++) {
        snprintf(hdr, sizeof hdr, "Contact: <sip:1001@10.0.1.%d:5060>;expires=%d\r\n", i,
                 600 + i);
        char call_id[16];
        snprintf(call_id, sizeof call_id, "c%d", i);
        CHECK(reg(s, &aor, hdr, call_id, 1, NOW) == 0);
    }
    CHECK(aor.count == REGISTRAR_MAX_BINDINGS);
    /* One more replaces the one closest to expiry. */
    CHECK(reg(s, &aor, "Contact: <sip:1001@10.0.2.1:5060>;expires=900\r\n", "cx", 1,
              NOW) == 0);
    CHECK(aor.count == REGISTRAR_MAX_BINDINGS);
    CHECK(!has(&aor, "sip:1001@10.0.1.0:5060", 0));
    CHECK(has(&aor, "sip:1001@10.0.1.1:5060", 0));
    CHECK(has(&aor, "sip:1001@10.0.2.1:5060", NOW + 900));
    binding_clear(&aor, NULL);
    binding_set_destroy(s);
}

static void expiry_removes_what_is_due(void)
{
    struct binding_set *s = new_set(NULL, false);
    struct binding_aor aor;
    binding_aor_init(&aor, s, "1001");
    CHECK(reg(s, &aor, "Contact: <sip:1001@" SRC ">;expires=60\r\n", "c1", 1, NOW) == 0);
    CHECK(reg(s, &aor, "Contact: <sip:1001@10.0.0.2:5060>;expires=120\r\n", "c2", 1,
              NOW) == 0);
    CHECK(reg(s, &aor, "Contact: <sip:1001@10.0.0.3:5060>;expires=30\r\n", "c3", 1,
              NOW) == 0);
    binding_expire(s, NOW + 29);
    CHECK(aor.count == 3);
    binding_expire(s, NOW + 60);
    CHECK(aor.count == 1 && has(&aor, "sip:1001@10.0.0.2:5060", NOW + 120));
    /* A refresh moves a binding in the heap. */
    CHECK(reg(s, &aor, "Contact: <sip:1001@10.0.0.2:5060>;expires=600\r\n", "c2", 2,
              NOW + 100) == 0);
    binding_expire(s, NOW + 121);
    CHECK(aor.count == 1);
    binding_expire(s, NOW + 700);
    CHECK(aor.count == 0 && binding_set_count(s) == 0);
    binding_set_destroy(s);
}

/* ---- The store across a restart ------------------------------------------------ */

static void test_dir(char *out, size_t size, const char *name)
{
    const char *tmp = getenv("MOON_TEST_TMP");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", tmp);
    for (char *p = path + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(path, 0700);
            *p = '/';
        }
    }
    mkdir(path, 0700);
    snprintf(out, size, "%s/binding-%ld-%s", tmp, (long)getpid(), name);
}

static void remove_dir(const char *dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
}

static struct binding_aor *find_1001(const char *name, void *arg)
{
    return strcmp(name, "1001") == 0 ? arg : NULL;
}

static void store_round_trip(void)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof dir, "round-trip");
    struct event_base *base = event_base_new();
    CHECK(event_base_priority_init(base, 3) == 0);
    struct store *st = NULL;
    CHECK(store_open(&st, base, dir, 0) == 0);
    long long now = (long long)time(NULL);

    struct binding_set *s = new_set(st, false);
    struct binding_aor aor, gone;
    binding_aor_init(&aor, s, "1001");
    binding_aor_init(&gone, s, "1002");
    CHECK(reg(s, &aor, "Contact: <sip:1001@" SRC ">;expires=600\r\n", "c1", 7, now) == 0);
    struct reg g;
    reg_parse(&g, s, "Contact: <sip:1001@192.168.1.2:5060>;expires=200\r\n");
    tport_t *no_tp = NULL;
    const struct binding_origin tcp = {.call_id = "c2",
                                       .cseq = 9,
                                       .source = SRC,
                                       .user_agent = "",
                                       .transport = BINDING_TCP,
                                       .tp = no_tp};
    binding_update(&aor, &g.req, &tcp, now);
    reg_done(&g);
    /* Expired while the switch was down, and of an account now gone. */
    CHECK(reg(s, &aor, "Contact: <sip:1001@10.0.0.3:5060>;expires=60\r\n", "c3", 1,
              now - 120) == 0);
    CHECK(reg(s, &gone, "Contact: <sip:1002@" SRC ">\r\n", "c4", 1, now) == 0);
    CHECK(store_commit(st) == 0);
    CHECK(store_count(st, STORE_BINDINGS) == 4);
    struct seen before, after;
    seen_of(&aor, &before);
    binding_release(&aor);
    binding_release(&gone);
    binding_set_destroy(s);

    s = new_set(st, false);
    binding_aor_init(&aor, s, "1001");
    binding_set_load(s, find_1001, &aor);
    CHECK(store_commit(st) == 0);
    CHECK(aor.count == 2 && binding_set_count(s) == 2);
    CHECK(store_count(st, STORE_BINDINGS) == 2);
    seen_of(&aor, &after);
    unsigned matched = 0;
    for (unsigned i = 0; i < before.n; i++)
        for (unsigned j = 0; j < after.n; j++) {
            const struct registrar_binding *x = &before.b[i], *y = &after.b[j];
            if (strcmp(x->contact, y->contact) != 0)
                continue;
            CHECK(strcmp(x->source, y->source) == 0);
            CHECK(strcmp(x->user_agent, y->user_agent) == 0);
            CHECK(strcmp(x->call_id, y->call_id) == 0);
            CHECK(strcmp(x->transport, y->transport) == 0);
            CHECK(x->cseq == y->cseq && x->nat == y->nat);
            CHECK(x->expires_at == y->expires_at);
            matched++;
        }
    CHECK(matched == 2);
    CHECK(has(&aor, "sip:1001@192.168.1.2:5060", now + 200));
    for (unsigned i = 0; i < after.n; i++)
        if (strcmp(after.contact[i], "sip:1001@192.168.1.2:5060") == 0)
            CHECK(after.b[i].nat && strcmp(after.b[i].transport, "tcp") == 0);

    /* A removal deletes the record. */
    CHECK(reg(s, &aor, "Contact: <sip:1001@" SRC ">;expires=0\r\n", "c1", 8, now) == 0);
    CHECK(store_commit(st) == 0);
    CHECK(store_count(st, STORE_BINDINGS) == 1);
    binding_clear(&aor, NULL);
    CHECK(store_commit(st) == 0);
    CHECK(store_count(st, STORE_BINDINGS) == 0);
    binding_set_destroy(s);
    store_close(st);
    event_base_free(base);
    remove_dir(dir);
}

/* The index of source addresses follows adds, refreshes from another
 * address (IPv6 too), removals, expiry and a load from the store. */
static void sources_indexed(void)
{
    char dir[PATH_MAX];
    test_dir(dir, sizeof dir, "sources");
    struct event_base *base = event_base_new();
    CHECK(event_base_priority_init(base, 3) == 0);
    struct store *st = NULL;
    CHECK(store_open(&st, base, dir, 0) == 0);
    long long now = (long long)time(NULL); /* loading drops what expired */
    struct binding_set *s = new_set(st, false);
    struct binding_aor aor;
    binding_aor_init(&aor, s, "1001");
    CHECK(!binding_set_has_source(s, SRC_IP) && binding_set_sources(s) == 0);
    CHECK(reg(s, &aor, "Contact: <sip:1001@" SRC ">;expires=60\r\n", "c1", 1, now) == 0);
    CHECK(reg(s, &aor, "Contact: <sip:1001@10.9.9.9>;expires=60\r\n", "c2", 1, now) == 0);
    CHECK(binding_set_has_source(s, SRC_IP) && binding_set_sources(s) == 1);
    CHECK(!binding_set_has_source(s, "10.0.0.10") && !binding_set_has_source(s, SRC));
    /* The first binding refreshed from an IPv6 address: both counted. */
    struct reg g;
    reg_parse(&g, s, "Contact: <sip:1001@" SRC ">;expires=60\r\n");
    const struct binding_origin v6 = {.call_id = "c1",
                                      .cseq = 2,
                                      .source = "[2001:db8::7]:5062",
                                      .user_agent = "",
                                      .transport = BINDING_UDP};
    binding_update(&aor, &g.req, &v6, now);
    reg_done(&g);
    CHECK(binding_set_has_source(s, SRC_IP) && binding_set_has_source(s, "2001:db8::7"));
    CHECK(binding_set_sources(s) == 2);
    CHECK(store_commit(st) == 0);
    /* Loaded from the store: the same index. */
    binding_release(&aor);
    binding_set_destroy(s);
    s = new_set(st, false);
    binding_aor_init(&aor, s, "1001");
    CHECK(!binding_set_has_source(s, SRC_IP));
    binding_set_load(s, find_1001, &aor);
    CHECK(aor.count == 2 && binding_set_sources(s) == 2);
    CHECK(binding_set_has_source(s, SRC_IP) && binding_set_has_source(s, "2001:db8::7"));
    /* Removed by Expires 0: that address goes, the other stays. */
    CHECK(reg(s, &aor, "Contact: <sip:1001@10.9.9.9>;expires=0\r\n", "c2", 2, now) == 0);
    CHECK(!binding_set_has_source(s, SRC_IP) && binding_set_has_source(s, "2001:db8::7"));
    binding_clear(&aor, NULL);
    CHECK(binding_set_sources(s) == 0 && !binding_set_has_source(s, "2001:db8::7"));
    CHECK(store_commit(st) == 0);
    binding_set_destroy(s);
    store_close(st);
    event_base_free(base);
    remove_dir(dir);
}

TEST_MAIN(CASE(grant_clamps), CASE(behind_nat), CASE(parse_expiry),
          CASE(parse_star_and_limits), CASE(add_refresh_remove), CASE(transport_kept),
          CASE(star_removes_all), CASE(replace_keeps_the_new_one),
          CASE(accumulate_up_to_the_limit), CASE(expiry_removes_what_is_due),
          CASE(store_round_trip), CASE(sources_indexed))
