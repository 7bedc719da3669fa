/* The registrar's group commit. See regcommit.h. */
#include "sip/regcommit.h"
#include "log.h"
#include "sip/answer.h"
#include "sip/rawreply.h"
#include "sip/registrar_internal.h"
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tagarg.h>

/* Answers waiting for a commit are handed to the store at the end of the
 * turn, or at once when this many are waiting (a busy socket may keep the
 * turn going). The store's writer commits them with whatever else came
 * while it synced the batch before. */
#define FLUSH_BATCH 256
/* How long an answer sent without a transaction is kept past 64 * T1: as
 * the agent's own cache (a retransmission may spend T4 in the network). */
#define ANSWER_SLACK_MS 5000
#define STATUS_OK "SIP/2.0 200 OK\r\n"
#define TAIL "Content-Length: 0\r\n\r\n"

/* One answer waiting for the commit: a transaction, or text. */
struct regcommit_answer {
    struct regcommit_answer *next;
    nta_incoming_t *irq; /* NULL: without a transaction */
    char *contacts;      /* irq: the 200's Contact value; else its Contact lines */
    /* Without a transaction: */
    struct rawreply_dest dest;
    uint64_t key; /* in the answer cache */
    size_t head_len;
    char head[]; /* STATUS_OK, then Via .. CSeq */
};

struct regcommit {
    nta_agent_t *nta;
    su_root_t *root;
    struct store *store;
    struct regcommit_answer *pending, **pending_tail;
    unsigned npending;
    struct event *flush_ev;
    unsigned flights; /* hand-overs the store has not called back yet */
    struct answer_cache *answers;
    struct event *sweep_ev; /* expires the cache when idle */
};

static long long monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static uint64_t cache_now_ms(void)
{
    return (uint64_t)(monotonic_us() / 1000);
}

static void http_date(char *out, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* ---- The answer cache ------------------------------------------------------------ */

/* Keep `text` (NULL: pending), the answer to the REGISTER of `key`; the
 * sweep runs while the cache holds any. */
static void remember(struct regcommit *c, uint64_t key, int status, const char *text,
                     size_t len)
{
    answer_put(c->answers, cache_now_ms(), key, ANSWER_FINAL, status, text, len);
    if (!evtimer_pending(c->sweep_ev, NULL))
        registrar_arm_seconds(c->sweep_ev, 1);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct regcommit *c = arg;
    (void)fd;
    (void)what;
    answer_expire(c->answers, cache_now_ms());
    if (answer_count(c->answers))
        registrar_arm_seconds(c->sweep_ev, 1);
}

uint64_t regcommit_key(const sip_t *sip)
{
    return answer_key(ANSWER_FINAL, sip->sip_call_id->i_id, sip->sip_cseq->cs_seq,
                      sip->sip_from ? sip->sip_from->a_tag : NULL,
                      sip->sip_via ? sip->sip_via->v_branch : NULL);
}

bool regcommit_answered_before(struct regcommit *c, msg_t *msg, const sip_t *sip,
                               uint64_t key)
{
    const struct answer *ans = answer_get(c->answers, cache_now_ms(), key);
    if (!ans)
        return false;
    struct rawreply_dest d;
    if (ans->text && rawreply_dest(&d, c->nta, msg, sip) == 0) {
        rawreply_send(&d, ans->text, ans->len);
        rawreply_dest_release(&d);
    }
    msg_destroy(msg);
    return true;
}

/* ---- Answers without a transaction ----------------------------------------------- */

struct regcommit_answer *regcommit_answer_new(struct regcommit *c, msg_t *msg,
                                              const sip_t *sip, uint64_t key)
{
    char head[4096];
    size_t n = rawreply_head(head, sizeof head, sip, 200, "OK", false);
    struct regcommit_answer *a = n ? malloc(sizeof *a + n + 1) : NULL;
    if (!a)
        return NULL;
    if (rawreply_dest(&a->dest, c->nta, msg, sip) < 0) {
        free(a);
        return NULL;
    }
    a->next = NULL;
    a->irq = NULL;
    a->contacts = NULL;
    a->key = key;
    a->head_len = n;
    memcpy(a->head, head, n + 1);
    return a;
}

tport_t *regcommit_answer_tport(const struct regcommit_answer *a)
{
    return a->dest.tp;
}

static void answer_free(struct regcommit_answer *a)
{
    rawreply_dest_release(&a->dest);
    free(a->contacts);
    free(a);
}

/* Send `status_line` + the head past its status line + `lines` + a Date
 * header when `date` + the tail, and remember it. */
static void send_text(struct regcommit *c, struct regcommit_answer *a, int status,
                      const char *status_line, const char *lines, const char *date)
{
    const char *rest = a->head + sizeof STATUS_OK - 1;
    size_t ls = strlen(status_line), lh = a->head_len - (sizeof STATUS_OK - 1),
           ll = lines ? strlen(lines) : 0, ld = date ? strlen(date) : 0;
    size_t len = ls + lh + ll + (ld ? ld + 8 : 0) + sizeof TAIL - 1;
    char stack[2048], *text = len < sizeof stack ? stack : malloc(len + 1);
    if (!text)
        return; /* the phone sends it again */
    char *w = text;
    memcpy(w, status_line, ls), w += ls;
    memcpy(w, rest, lh), w += lh;
    if (ll)
        memcpy(w, lines, ll), w += ll;
    if (ld) {
        memcpy(w, "Date: ", 6), w += 6;
        memcpy(w, date, ld), w += ld;
        memcpy(w, "\r\n", 2), w += 2;
    }
    memcpy(w, TAIL, sizeof TAIL), w += sizeof TAIL - 1;
    rawreply_send(&a->dest, text, (size_t)(w - text));
    remember(c, a->key, status, text, (size_t)(w - text));
    if (text != stack)
        free(text);
}

void regcommit_answer_now(struct regcommit *c, struct regcommit_answer *a, int status,
                          const char *phrase)
{
    char line[128];
    snprintf(line, sizeof line, "SIP/2.0 %03d %s\r\n", status, phrase);
    send_text(c, a, status, line, NULL, NULL);
    answer_free(a);
}

static void hand_over(struct regcommit *c);

static void enqueue(struct regcommit *c, struct regcommit_answer *a)
{
    *c->pending_tail = a;
    c->pending_tail = &a->next;
    if (++c->npending >= FLUSH_BATCH)
        hand_over(c);
    else if (c->npending == 1)
        event_active(c->flush_ev, 0, 0);
}

void regcommit_answer_queue(struct regcommit *c, struct regcommit_answer *a,
                            char *contact_lines)
{
    a->contacts = contact_lines;
    remember(c, a->key, 0, NULL, 0); /* pending: retransmissions are absorbed */
    enqueue(c, a);
}

void regcommit_queue_irq(struct regcommit *c, nta_incoming_t *irq, char *contacts)
{
    struct regcommit_answer *a = calloc(1, sizeof *a);
    if (!a) {
        free(contacts);
        nta_incoming_treply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
        nta_incoming_destroy(irq);
        return;
    }
    a->irq = irq;
    a->contacts = contacts;
    enqueue(c, a);
}

/* ---- The commit ------------------------------------------------------------------ */

/* One answer after the commit: 200s after a successful commit, 500s if it
 * failed (the bindings are then not durable, so not acknowledged). */
static void answer_one(struct regcommit *c, struct regcommit_answer *a, bool stored,
                       const char *date)
{
    if (a->irq) {
        if (stored)
            nta_incoming_treply(a->irq, SIP_200_OK,
                                TAG_IF(a->contacts, SIPTAG_CONTACT_STR(a->contacts)),
                                SIPTAG_DATE_STR(date), TAG_END());
        else
            nta_incoming_treply(a->irq, 500, "Bindings Not Stored", TAG_END());
        nta_incoming_destroy(a->irq);
    } else if (stored) {
        send_text(c, a, 200, STATUS_OK, a->contacts, date);
    } else {
        send_text(c, a, 500, "SIP/2.0 500 Bindings Not Stored\r\n", NULL, NULL);
    }
    answer_free(a);
}

/* The answers of one hand-over, waiting for the store. */
struct flight {
    struct regcommit *c;
    struct regcommit_answer *answers;
};

static void answer_all(struct regcommit *c, struct regcommit_answer *a, bool stored)
{
    char date[64];
    http_date(date, sizeof date);
    while (a) {
        struct regcommit_answer *next = a->next;
        answer_one(c, a, stored, date);
        a = next;
    }
    if (!stored)
        log_error("registrar", "commit failed: REGISTERs answered 500");
}

static void on_durable(void *arg, int rc)
{
    struct flight *f = arg;
    struct regcommit *c = f->c;
    c->flights--;
    answer_all(c, f->answers, rc == 0);
    free(f);
    registrar_kick(c->root);
}

/* Hand what waits to the store: answered once the store says the bindings
 * are on disk. Never blocks, unless memory runs out (then a synchronous
 * commit). */
static void hand_over(struct regcommit *c)
{
    struct regcommit_answer *a = c->pending;
    if (!a)
        return;
    c->pending = NULL;
    c->pending_tail = &c->pending;
    c->npending = 0;
    if (!c->store) {
        answer_all(c, a, true);
        return;
    }
    struct flight *f = malloc(sizeof *f);
    if (f) {
        f->c = c;
        f->answers = a;
        if (store_when_durable(c->store, on_durable, f) == 0) {
            c->flights++;
            return;
        }
        free(f);
    }
    answer_all(c, a, store_commit(c->store) == 0);
}

void regcommit_flush(struct regcommit *c)
{
    hand_over(c);
    if (c->flights && c->store)
        store_commit(c->store); /* calls on_durable() for each flight */
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hand_over(arg);
}

/* ---- Lifetime -------------------------------------------------------------------- */

int regcommit_create(struct regcommit **cp, nta_agent_t *nta, su_root_t *root,
                     struct event_base *base, struct store *store)
{
    *cp = NULL;
    struct regcommit *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->nta = nta;
    c->root = root;
    c->store = store;
    c->pending_tail = &c->pending;
    /* flush_ev keeps the default priority: a lowest-priority flush would
     * starve while requests keep arriving. */
    c->flush_ev = event_new(base, -1, 0, on_flush, c);
    c->sweep_ev = evtimer_new(base, on_sweep, c);
    c->answers = answer_cache_create(64 * 500 + ANSWER_SLACK_MS);
    if (!c->flush_ev || !c->sweep_ev || !c->answers) {
        regcommit_destroy(c);
        return -ENOMEM;
    }
    *cp = c;
    return 0;
}

void regcommit_destroy(struct regcommit *c)
{
    if (!c)
        return;
    if (c->answers)
        regcommit_flush(c);
    if (c->flush_ev)
        event_free(c->flush_ev);
    if (c->sweep_ev)
        event_free(c->sweep_ev);
    answer_cache_destroy(c->answers);
    free(c);
}

void regcommit_set_t1(struct regcommit *c, unsigned t1_ms)
{
    answer_cache_set_ttl(c->answers, 64 * t1_ms + ANSWER_SLACK_MS);
}
