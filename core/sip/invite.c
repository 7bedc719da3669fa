/* The light INVITE client transaction: see invite.h. */
#include "sip/invite.h"
#include "sip/agent.h"
#include "sip/answer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta_stateless.h>
#include <sofia-sip/nta_tag.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_tagarg.h>

/* Answers the live INVITEs are found by: a key of their own kind. */
#define LIVE_KIND 0

struct sipinv {
    struct sipinv_set *set;
    struct sipinv *chain;
    nta_outgoing_t *orq; /* nta's, until the first provisional answer */
    sipinv_response_f *cb;
    void *magic;
    uint64_t key;
    uint32_t cseq;
    int final_status; /* 0 until a final answer */
    bool cancelled;   /* CANCEL asked while nta held it */
    bool in_cb, gone;
    /* Header values of the INVITE, for ACK and CANCEL: one allocation. */
    char *text;
    const char *ruri, *via, *from, *to, *call_id, *branch, *auth, *proxy_auth;
    char *final_tag;
    char *ack; /* the ACK of its 2xx as sent */
    size_t ack_len;
};

struct sipinv_set {
    nta_agent_t *nta;
    struct answer_cache *ac;
    uint64_t (*now_ms)(void);
    struct sipinv *buckets[1024];
    size_t count, light;
};

struct sipinv_set *sipinv_set_create(nta_agent_t *nta, struct answer_cache *ac,
                                     uint64_t (*now_ms)(void))
{
    struct sipinv_set *s = calloc(1, sizeof *s);
    if (s) {
        s->nta = nta;
        s->ac = ac;
        s->now_ms = now_ms;
    }
    return s;
}

static void release(struct sipinv *inv);

void sipinv_set_destroy(struct sipinv_set *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < 1024; i++)
        while (s->buckets[i])
            release(s->buckets[i]);
    free(s);
}

size_t sipinv_set_count(const struct sipinv_set *s, size_t *light)
{
    if (light)
        *light = s->light;
    return s->count;
}

static struct sipinv **bucket(struct sipinv_set *s, uint64_t key)
{
    return &s->buckets[(key ^ (key >> 31)) & 1023];
}

/* ---- Sending without a transaction ------------------------------------- */

/* Send a request we wrote (its Via included) statelessly. Not through
 * nta_msg_tsend(), which leaks the message when it cannot be sent (it
 * hands nta a reference that a failed stateless send gives back to no
 * one). */
static void send_text(struct sipinv_set *s, const char *text, size_t len)
{
    msg_t *m = msg_make(sip_default_mclass(), 0, text, (ssize_t)len);
    if (!m)
        return;
    nta_outgoing_t *orq = nta_outgoing_mcreate(
        s->nta, NULL, NULL, NULL, m, NTATAG_STATELESS(1), NTATAG_USER_VIA(1), TAG_END());
    if (orq && orq != (nta_outgoing_t *)-1)
        nta_outgoing_destroy(orq);
    if (!orq)
        msg_destroy(m); /* not sent: nta did not take it */
}

/* The ACK of a failure (RFC 3261 17.1.1.3): the INVITE's Request-URI, Via,
 * From, Call-ID and credentials, the answer's To. `to` NULL leaves the To
 * line out (a template, see put_ack()). */
static int ack_text(const struct sipinv *inv, const char *to, char *out, size_t outlen)
{
    int n = snprintf(out, outlen,
                     "ACK %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\nFrom: %s\r\n"
                     "%s%s%sCall-ID: %s\r\nCSeq: %u ACK\r\nContent-Length: 0\r\n\r\n",
                     inv->ruri, inv->via, inv->from, to ? "To: " : "", to ? to : "",
                     to ? "\r\n" : "", inv->call_id, inv->cseq);
    return n > 0 && (size_t)n < outlen ? n : -1;
}

/* An ACK template with the answer's To put in, sent. */
static void send_template(struct sipinv_set *s, const char *tmpl, const sip_t *sip)
{
    su_home_t home[1] = {SU_HOME_INIT(home)};
    char *to = sip_header_as_string(home, (const sip_header_t *)sip->sip_to);
    const char *cut = strstr(tmpl, "\r\nCall-ID: ");
    if (to && cut) {
        char buf[4096];
        int n = snprintf(buf, sizeof buf, "%.*s\r\nTo: %s%s", (int)(cut - tmpl), tmpl, to,
                         cut);
        if (n > 0 && (size_t)n < sizeof buf)
            send_text(s, buf, (size_t)n);
    }
    su_home_deinit(home);
}

static void send_failure_ack(struct sipinv *inv, const sip_t *sip)
{
    su_home_t home[1] = {SU_HOME_INIT(home)};
    char *to = sip_header_as_string(home, (const sip_header_t *)sip->sip_to);
    char buf[4096];
    int n = to ? ack_text(inv, to, buf, sizeof buf) : -1;
    if (n > 0)
        send_text(inv->set, buf, (size_t)n);
    su_home_deinit(home);
}

/* ---- Creation ------------------------------------------------------------ */

static int on_orq(nta_outgoing_magic_t *magic, nta_outgoing_t *orq, sip_t const *sip);

/* Copy what ACK and CANCEL need from the INVITE as sent. */
static int remember(struct sipinv *inv, const sip_t *sip)
{
    su_home_t home[1] = {SU_HOME_INIT(home)};
    const char *v[8] = {
        url_as_string(home, sip->sip_request->rq_url),
        sip_header_as_string(home, (const sip_header_t *)sip->sip_via),
        sip_header_as_string(home, (const sip_header_t *)sip->sip_from),
        sip_header_as_string(home, (const sip_header_t *)sip->sip_to),
        sip->sip_call_id->i_id,
        sip->sip_via->v_branch ? sip->sip_via->v_branch : "",
        sip->sip_authorization
            ? sip_header_as_string(home, (const sip_header_t *)sip->sip_authorization)
            : "",
        sip->sip_proxy_authorization
            ? sip_header_as_string(home,
                                   (const sip_header_t *)sip->sip_proxy_authorization)
            : ""};
    size_t len = 0;
    for (int i = 0; i < 8; i++) {
        if (!v[i]) {
            su_home_deinit(home);
            return -1;
        }
        len += strlen(v[i]) + 1;
    }
    char *p = inv->text = malloc(len);
    const char **dst[8] = {&inv->ruri,    &inv->via,    &inv->from, &inv->to,
                           &inv->call_id, &inv->branch, &inv->auth, &inv->proxy_auth};
    for (int i = 0; p && i < 8; i++) {
        size_t n = strlen(v[i]) + 1;
        memcpy(p, v[i], n);
        *dst[i] = p;
        p += n;
    }
    su_home_deinit(home);
    return inv->text ? 0 : -1;
}

struct sipinv *sipagent_invite(struct sipagent *a, int *refused, nta_leg_t *leg,
                               sipinv_response_f *cb, void *magic,
                               url_string_t const *request_uri, tag_type_t tag,
                               tag_value_t value, ...)
{
    struct sipinv_set *s = sipagent_invites(a);
    struct sipinv *inv = calloc(1, sizeof *inv);
    int answered = 0;
    if (!inv) {
        if (refused)
            *refused = 503;
        return NULL;
    }
    ta_list ta;
    ta_start(ta, tag, value);
    /* 100 Trying is passed up to on_orq(): it ends nta's part. */
    nta_outgoing_t *orq = nta_outgoing_tcreate(
        leg, sipagent_answer_while_creating, (nta_outgoing_magic_t *)&answered, NULL,
        SIP_METHOD_INVITE, request_uri, NTATAG_PASS_100(1), ta_tags(ta));
    ta_end(ta);
    msg_t *req = orq && !answered ? nta_outgoing_getrequest(orq) : NULL;
    if (!req || remember(inv, sip_object(req)) < 0) {
        if (orq)
            nta_outgoing_destroy(orq);
        msg_destroy(req);
        free(inv->text);
        free(inv);
        if (refused)
            *refused = answered ? answered : 503;
        sipagent_after_sofia(a);
        return NULL;
    }
    msg_destroy(req);
    inv->set = s;
    inv->orq = orq;
    inv->cb = cb;
    inv->magic = magic;
    inv->cseq = nta_outgoing_cseq(orq);
    inv->key = answer_key(LIVE_KIND, inv->call_id, inv->cseq, NULL, inv->branch);
    struct sipinv **b = bucket(s, inv->key);
    inv->chain = *b;
    *b = inv;
    s->count++;
    nta_outgoing_bind(orq, on_orq, (nta_outgoing_magic_t *)inv);
    sipagent_after_sofia(a);
    return inv;
}

uint32_t sipinv_cseq(const struct sipinv *inv)
{
    return inv->cseq;
}

/* ---- Answers ------------------------------------------------------------- */

/* Give the owner an answer. Returns false when the owner let go in the
 * callback (inv is freed then). */
static bool deliver(struct sipinv *inv, sip_t const *sip, int status)
{
    if (!inv->cb || inv->gone)
        return true;
    inv->in_cb = true;
    inv->cb(inv->magic, inv, sip, status);
    inv->in_cb = false;
    if (inv->gone) {
        release(inv);
        return false;
    }
    return true;
}

static void note_final(struct sipinv *inv, sip_t const *sip, int status)
{
    inv->final_status = status;
    const char *tag = sip && sip->sip_to ? sip->sip_to->a_tag : NULL;
    if (tag)
        inv->final_tag = strdup(tag);
}

/* nta's answers, while it holds the INVITE. */
static int on_orq(nta_outgoing_magic_t *magic, nta_outgoing_t *orq, sip_t const *sip)
{
    struct sipinv *inv = (struct sipinv *)magic;
    int status =
        sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (orq != inv->orq)
        return 0;
    if (status >= 200 && !inv->final_status)
        note_final(inv, sip, status);
    if (status > 100 && !deliver(inv, sip, status))
        return 0;
    if (status < 200 && inv->orq && !inv->cancelled) {
        /* Provisional: nta is done with it (freed now: an INVITE that is
         * not completed, nor cancelled). What follows comes without a
         * transaction, to sipinv_set_response(). */
        inv->orq = NULL;
        inv->set->light++;
        nta_outgoing_destroy(orq);
    }
    return 0;
}

bool sipinv_set_response(struct sipinv_set *s, msg_t *msg, sip_t *sip)
{
    if (!sip->sip_cseq || sip->sip_cseq->cs_method != sip_method_invite ||
        !sip->sip_via || !sip->sip_call_id || !sip->sip_to)
        return false;
    const char *branch = sip->sip_via->v_branch ? sip->sip_via->v_branch : "";
    uint32_t cseq = sip->sip_cseq->cs_seq;
    const char *call_id = sip->sip_call_id->i_id;
    const char *tag = sip->sip_to->a_tag;
    int status = sip->sip_status->st_status;
    uint64_t key = answer_key(LIVE_KIND, call_id, cseq, NULL, branch);
    struct sipinv *inv = *bucket(s, key);
    while (inv && (inv->key != key || inv->orq))
        inv = inv->chain;
    if (!inv) {
        /* Its owner let go: the answer cache has the ACK to send again. */
        uint64_t now = s->now_ms();
        const struct answer *a =
            answer_get(s->ac, now, answer_key(ANSWER_ACK, call_id, cseq, tag, branch));
        if (a && a->text && status >= 200) {
            send_text(s, a->text, a->len);
        } else if (status >= 300 &&
                   (a = answer_get(
                        s->ac, now,
                        answer_key(ANSWER_ACK, call_id, cseq, NULL, branch))) &&
                   a->text) {
            send_template(s, a->text, sip);
        } else if (status >= 200 && status < 300 &&
                   answer_get(s->ac, now,
                              answer_key(ANSWER_ACK, call_id, cseq, NULL, branch))) {
            nta_msg_ackbye(s->nta, msg); /* a 2xx nobody waits for */
            return true;
        } else {
            return false;
        }
        msg_destroy(msg);
        return true;
    }
    if (status < 200) {
        if (!inv->final_status)
            deliver(inv, sip, status);
    } else if (!inv->final_status) {
        note_final(inv, sip, status);
        if (status >= 300)
            send_failure_ack(inv, sip);
        deliver(inv, sip, status);
    } else if (inv->final_tag && tag && strcasecmp(inv->final_tag, tag) == 0) {
        /* A retransmission of the final answer. */
        if (status >= 300)
            send_failure_ack(inv, sip);
        else if (inv->ack)
            send_text(s, inv->ack, inv->ack_len);
    } else if (status < 300) {
        nta_msg_ackbye(s->nta, msg); /* another fork's 2xx: ACK and BYE it */
        return true;
    }
    msg_destroy(msg);
    return true;
}

/* ---- The owner's actions ------------------------------------------------- */

bool sipinv_cancel(struct sipinv *inv)
{
    if (inv->orq) {
        inv->cancelled = true;
        nta_outgoing_t *cancel = nta_outgoing_tcancel(inv->orq, NULL, NULL, TAG_END());
        if (cancel)
            nta_outgoing_destroy(cancel);
        return cancel != NULL;
    }
    if (inv->final_status)
        return false;
    char buf[4096];
    int n =
        snprintf(buf, sizeof buf,
                 "CANCEL %s SIP/2.0\r\nVia: %s\r\nMax-Forwards: 70\r\nFrom: %s\r\n"
                 "To: %s\r\nCall-ID: %s\r\nCSeq: %u CANCEL\r\nContent-Length: 0\r\n\r\n",
                 inv->ruri, inv->via, inv->from, inv->to, inv->call_id, inv->cseq);
    msg_t *m = n > 0 && (size_t)n < sizeof buf
                   ? msg_make(sip_default_mclass(), 0, buf, (ssize_t)n)
                   : NULL;
    if (!m)
        return false;
    /* A transaction of its own (it is retransmitted until answered), with
     * the INVITE's branch: nta keeps a Via the request has. */
    nta_outgoing_t *cancel = nta_outgoing_mcreate(inv->set->nta, NULL, NULL, NULL, m,
                                                  NTATAG_USER_VIA(1), TAG_END());
    if (cancel && cancel != (nta_outgoing_t *)-1)
        nta_outgoing_destroy(cancel);
    if (!cancel)
        msg_destroy(m); /* nta takes the message only when it returns a transaction */
    return cancel != NULL;
}

void sipinv_ack(struct sipinv *inv, nta_leg_t *leg, sip_t const *answer)
{
    nta_agent_t *nta = inv->set->nta;
    su_home_t home[1] = {SU_HOME_INIT(home)};
    sip_cseq_t *seq = sip_cseq_create(home, inv->cseq, SIP_METHOD_ACK);
    sip_content_type_t const *ct = answer ? answer->sip_content_type : NULL;
    sip_payload_t const *pl = answer ? answer->sip_payload : NULL;
    msg_t *msg = nta_msg_create(nta, 0);
    sip_t *sip = sip_object(msg);
    /* RFC 3261 13.2.2.4: the ACK carries the INVITE's credentials. */
    if (!msg || !seq ||
        sip_add_tl(
            msg, sip, SIPTAG_CSEQ(seq),
            TAG_IF(*inv->auth, SIPTAG_AUTHORIZATION_STR(inv->auth)),
            TAG_IF(*inv->proxy_auth, SIPTAG_PROXY_AUTHORIZATION_STR(inv->proxy_auth)),
            TAG_IF(ct, SIPTAG_CONTENT_TYPE(ct)), TAG_IF(pl, SIPTAG_PAYLOAD(pl)),
            TAG_END()) < 0 ||
        nta_msg_request_complete(msg, leg, SIP_METHOD_ACK, NULL) < 0) {
        msg_destroy(msg);
        su_home_deinit(home);
        return;
    }
    /* Sent without a transaction (nta would keep an ACK's 64 * T1), and
     * its text kept for the 2xx's retransmissions. */
    msg_t *sent = msg_ref_create(msg);
    nta_outgoing_t *orq =
        nta_outgoing_mcreate(nta, NULL, NULL, NULL, msg, NTATAG_STATELESS(1), TAG_END());
    if (orq && orq != (nta_outgoing_t *)-1)
        nta_outgoing_destroy(orq);
    if (!orq)
        msg_destroy(msg); /* not sent (no transport, say): nta did not take it */
    size_t len = 0;
    char *s = orq ? msg_as_string(home, sent, NULL, 0, &len) : NULL;
    free(inv->ack);
    inv->ack = s ? malloc(len + 1) : NULL;
    if (inv->ack) {
        memcpy(inv->ack, s, len + 1);
        inv->ack_len = len;
    }
    msg_destroy(sent);
    su_home_deinit(home);
}

/* Leave what retransmissions need to the answer cache, and free. */
static void release(struct sipinv *inv)
{
    struct sipinv_set *s = inv->set;
    for (struct sipinv **p = bucket(s, inv->key); *p; p = &(*p)->chain)
        if (*p == inv) {
            *p = inv->chain;
            break;
        }
    s->count--;
    if (inv->orq) {
        nta_outgoing_destroy(inv->orq);
    } else {
        s->light--;
    }
    uint64_t now = s->now_ms();
    const char *tag = inv->final_tag;
    char buf[4096];
    int n;
    if (inv->final_status >= 200 && inv->final_status < 300 && inv->ack) {
        answer_put(s->ac, now,
                   answer_key(ANSWER_ACK, inv->call_id, inv->cseq, tag, inv->branch),
                   ANSWER_ACK, inv->final_status, inv->ack, inv->ack_len);
    } else if (!inv->orq && !inv->final_status &&
               (n = ack_text(inv, NULL, buf, sizeof buf)) > 0) {
        /* No final answer yet (cancelled, given up): ACK it when it comes. */
        answer_put(s->ac, now,
                   answer_key(ANSWER_ACK, inv->call_id, inv->cseq, NULL, inv->branch),
                   ANSWER_ACK, 0, buf, (size_t)n);
    } else if (!inv->orq && inv->final_status >= 300 && tag) {
        /* Retransmissions of the failure get its ACK from the template. */
        if ((n = ack_text(inv, NULL, buf, sizeof buf)) > 0)
            answer_put(s->ac, now,
                       answer_key(ANSWER_ACK, inv->call_id, inv->cseq, NULL, inv->branch),
                       ANSWER_ACK, inv->final_status, buf, (size_t)n);
    }
    free(inv->final_tag);
    free(inv->ack);
    free(inv->text);
    free(inv);
}

void sipinv_destroy(struct sipinv *inv)
{
    if (!inv)
        return;
    inv->cb = NULL;
    if (inv->in_cb) {
        inv->gone = true; /* released once the callback returns */
        return;
    }
    release(inv);
}
