/* Session timers (RFC 4028) on both legs of a call, and the limits of the
 * legs that run none.
 *
 * Each leg negotiates its own timer. The caller's: its INVITE's
 * Session-Expires (reduced to sip.session_ttl, refused with 422 below
 * sip.session_min_se) or, when it only says Supported: timer, ours; it
 * refreshes unless it asks us to (refresher=uas) or does not support timers
 * at all. The carrier's: our INVITE offers sip.session_ttl with Min-SE and
 * Supported: timer; its 2xx says the interval and who refreshes (a 422 makes
 * the INVITE go again with its Min-SE); a 2xx without Session-Expires means
 * no timer on that leg.
 *
 * When the switch refreshes a leg it sends, every interval/segment seconds
 * less a random fifth (so calls answered together do not refresh together),
 * an UPDATE without a body when the peer allows UPDATE, else a re-INVITE
 * with the SDP it last sent that peer (same version: nothing changes). A
 * 2xx renews the session; 408, 481 or no answer at all ends the call at
 * once; other failures are retried while the session lasts. When the peer
 * refreshes, a refresh must come before the session expires, less
 * sip.session_timeout_early_hangup (at most a third of the interval), or
 * the call ends. Either way the switch sends BYE on both legs and the CDR
 * says "switch" with the reason.
 *
 * A re-INVITE or UPDATE that only refreshes (its SDP's o= line unchanged, or
 * no SDP with a Session-Expires) is answered here with the SDP the switch
 * last sent that peer; the other leg never sees it. Any other re-INVITE or
 * UPDATE is relayed (call_dialog.c) and its success refreshes both legs.
 *
 * A call with a leg that runs no session timer ends after
 * sip.no_timer_reinvite_interval (VOS3000's limit for non-timer endpoints);
 * sip.no_timer_options_interval, moonswitch's own, also sends such legs an
 * in-dialog OPTIONS that many seconds apart, and 408, 481 or no answer ends
 * the call.
 *
 * Memory: nothing for a call whose legs run no timer and get no OPTIONS; else
 * one allocation (about 72 bytes) plus the SDP bodies the refreshes may need.
 * The call's one wheel node (c->timer) carries the next deadline of all of
 * it. See call_internal.h. */
#include "sip/call_internal.h"
#include "config.h"
#include "log.h"
#include "sip/agent.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>

/* nta marks the responses it makes up itself (no answer, transport error)
 * with this message flag (nta_internal.h is not installed). */
#ifndef NTA_INTERNAL_MSG
#define NTA_INTERNAL_MSG (1 << 15)
#endif

#define LEG_A 0
#define LEG_B 1

enum {
    F_WE_REFRESH = 1 << 0, /* the switch refreshes this leg's session */
    F_UPDATE = 1 << 1,     /* the peer allows UPDATE */
    F_SUPPORTED = 1 << 2,  /* the peer supports timers (Supported: timer) */
    F_PROBE = 1 << 3,      /* no session timer: in-dialog OPTIONS instead */
    F_OPTIONS = 1 << 4,    /* the request in flight is an OPTIONS */
};

struct st_leg {
    nta_outgoing_t *orq; /* our refresh or OPTIONS in flight */
    uint32_t interval;   /* the session interval, s; 0: no session timer */
    uint32_t expires;    /* when the session expires (st_now() seconds) */
    uint32_t next;       /* our next refresh or OPTIONS; 0: none */
    uint32_t peer_sdp;   /* hash of the o= line the peer last sent; 0: none */
    uint16_t sdp_len;    /* of the body we last sent the peer, in sdp[] */
    uint8_t flags;
};

struct call_timer {
    struct st_leg leg[2]; /* LEG_A, LEG_B */
    uint32_t limit;       /* the no-timer limit (st_now() seconds); 0: none */
    char sdp[];           /* LEG_A's body, then LEG_B's */
};

/* ---- Small things -------------------------------------------------------- */

/* Monotonic seconds, from 1 (0 means "none" in the fields above). */
static uint32_t st_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)ts.tv_sec + 1;
}

static uint32_t jitter(uint32_t upto)
{
    uint32_t r = 0;
    if (upto == 0 || getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
        return 0;
    return r % (upto + 1);
}

static const struct sip_settings *settings(const struct call *c)
{
    return &config_switch(c->cs->cfg)->sip;
}

static nta_leg_t *leg_of(const struct call *c, int i)
{
    return i == LEG_A ? c->a_leg : c->b_leg;
}

static const char *who(int i)
{
    return i == LEG_A ? "caller" : "callee";
}

/* The o= line of an SDP body, hashed (FNV-1a); 0 when it has none. Equal
 * lines (session id and version) mean the session did not change. */
static uint32_t sdp_origin(sip_t const *sip)
{
    if (!sip || !sip->sip_payload || !sip->sip_payload->pl_data)
        return 0;
    const char *p = sip->sip_payload->pl_data, *end = p + sip->sip_payload->pl_len;
    while (p < end) {
        if (end - p > 2 && p[0] == 'o' && p[1] == '=') {
            uint32_t h = 2166136261u;
            for (; p < end && *p != '\r' && *p != '\n'; p++)
                h = (h ^ (unsigned char)*p) * 16777619u;
            return h ? h : 1;
        }
        while (p < end && *p != '\n')
            p++;
        p++;
    }
    return 0;
}

static bool has_sdp(sip_t const *sip)
{
    if (!sip || !sip->sip_payload || sip->sip_payload->pl_len == 0)
        return false;
    sip_content_type_t const *ct = sip->sip_content_type;
    return !ct || !ct->c_type || strcasecmp(ct->c_type, "application/sdp") == 0;
}

static bool supports_timer(sip_t const *sip)
{
    return sip && (sip_has_supported(sip->sip_supported, "timer") ||
                   sip_has_feature(sip->sip_require, "timer"));
}

static bool allows_update(sip_t const *sip)
{
    return sip && sip->sip_allow &&
           sip_is_allowed(sip->sip_allow, sip_method_update, NULL);
}

/* How long before the expiry a leg without our refreshes is hung up. */
static uint32_t early(const struct call *c, const struct st_leg *l)
{
    uint32_t e = (uint32_t)settings(c)->session_timeout_early_hangup;
    return e < l->interval / 3 ? e : l->interval / 3;
}

static uint32_t deadline(const struct call *c, const struct st_leg *l)
{
    return l->expires - early(c, l);
}

/* The session on leg l was just renewed for its interval. */
static void renewed(const struct call *c, struct st_leg *l, uint32_t now)
{
    l->expires = now + l->interval;
    l->next = 0;
    if (l->flags & F_WE_REFRESH) {
        uint32_t every = l->interval / (uint32_t)settings(c)->session_update_segment;
        l->next = now + every - jitter(every / 5);
    }
}

/* ---- The stored bodies ----------------------------------------------------- */

static const char *body_of(const struct call_timer *st, int i)
{
    return st->sdp + (i == LEG_A ? 0 : st->leg[LEG_A].sdp_len);
}

/* A NUL-terminated copy of what leg i's peer was last sent, to free; NULL
 * when there is none (or no memory). */
static char *body_copy(const struct call_timer *st, int i)
{
    size_t n = st->leg[i].sdp_len;
    char *copy = n ? malloc(n + 1) : NULL;
    if (copy) {
        memcpy(copy, body_of(st, i), n);
        copy[n] = '\0';
    }
    return copy;
}

/* Keep `len` bytes of `body` as what leg i's peer was last sent. */
static void keep_body(struct call *c, int i, const char *body, size_t len)
{
    struct call_timer *st = c->st;
    if (len > UINT16_MAX)
        len = 0;
    size_t a = st->leg[LEG_A].sdp_len, b = st->leg[LEG_B].sdp_len;
    size_t na = i == LEG_A ? len : a, nb = i == LEG_B ? len : b;
    if (na + nb > a + b) {
        struct call_timer *grown = realloc(st, sizeof *st + na + nb);
        if (!grown) {
            log_error("call", "%" PRIu64 ": out of memory for a session's SDP", c->id);
            return;
        }
        c->st = st = grown;
    }
    if (i == LEG_A)
        memmove(st->sdp + na, st->sdp + a, b); /* B's body moves */
    memcpy(st->sdp + (i == LEG_A ? 0 : na), body, len);
    st->leg[i].sdp_len = (uint16_t)len;
}

/* An SDP from leg `from`: its origin is the peer's, and the body is what
 * the other leg's peer now has (the switch passes it on unchanged). */
static void passed(struct call *c, int from, sip_t const *sip)
{
    if (!c->st || !has_sdp(sip))
        return;
    int to = 1 - from;
    c->st->leg[from].peer_sdp = sdp_origin(sip);
    if (c->st->leg[to].interval)
        keep_body(c, to, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
}

void call_timer_sdp(struct call *c, bool from_a, sip_t const *sip)
{
    passed(c, from_a ? LEG_A : LEG_B, sip);
}

/* ---- Negotiation ----------------------------------------------------------- */

void call_timer_invite_headers(const struct call *c, char *out, size_t outlen)
{
    const struct sip_settings *s = settings(c);
    *out = '\0';
    if (!s->session_ttl)
        return;
    unsigned se = c->session_offer ? c->session_offer : (unsigned)s->session_ttl;
    unsigned min = (unsigned)s->session_min_se > se ? se : (unsigned)s->session_min_se;
    snprintf(out, outlen, "Session-Expires: %u\r\nMin-SE: %u\r\nSupported: timer\r\n", se,
             c->session_offer > min ? c->session_offer : min);
}

bool call_timer_retry_422(struct call *c, sip_t const *sip)
{
    unsigned offered =
        c->session_offer ? c->session_offer : (unsigned)settings(c)->session_ttl;
    unsigned long want = sip && sip->sip_min_se ? sip->sip_min_se->min_delta : 0;
    if (!settings(c)->session_ttl || c->session_retries >= 2 || want <= offered ||
        want > 86400)
        return false;
    c->session_retries++;
    c->session_offer = (unsigned)want;
    log_info("call", "%" PRIu64 ": 422 from %s: offering Session-Expires %u", c->id,
             c->rec.routing_gateway, c->session_offer);
    return true;
}

int calls_timer_min_se(const struct calls *cs, sip_t const *sip)
{
    const struct sip_settings *s = &config_switch(cs->cfg)->sip;
    sip_session_expires_t const *se = sip->sip_session_expires;
    if (!s->session_ttl || !se || se->x_delta >= (unsigned long)s->session_min_se)
        return 0;
    log_info("call", "INVITE %s asks for Session-Expires %lu, below our Min-SE %d: 422",
             sip->sip_call_id ? sip->sip_call_id->i_id : "?", se->x_delta,
             s->session_min_se);
    return s->session_min_se;
}

/* The caller's leg from its INVITE (or a refresh request): the interval
 * (its Session-Expires reduced to ours, or ours) and who refreshes.
 * Returns false when the caller runs no timer. */
static bool negotiate_uas(const struct call *c, struct st_leg *l, sip_t const *req)
{
    const struct sip_settings *s = settings(c);
    sip_session_expires_t const *se = req->sip_session_expires;
    bool supported = supports_timer(req);
    if (!s->session_ttl || (!se && !supported))
        return false;
    unsigned long ttl = (unsigned long)s->session_ttl, want = se ? se->x_delta : ttl;
    l->interval = (uint32_t)(want < ttl ? want : ttl);
    if (l->interval < (uint32_t)s->session_min_se)
        l->interval = (uint32_t)s->session_min_se;
    /* Never below the peer's own Min-SE (RFC 4028 9). */
    if (req->sip_min_se && req->sip_min_se->min_delta > l->interval)
        l->interval =
            (uint32_t)(req->sip_min_se->min_delta > 86400 ? 86400
                                                          : req->sip_min_se->min_delta);
    l->flags &= (uint8_t) ~(F_WE_REFRESH | F_SUPPORTED);
    if (supported)
        l->flags |= F_SUPPORTED;
    /* The peer refreshes unless it asks us to, or cannot. */
    if (!supported || (se && se->x_refresher && strcasecmp(se->x_refresher, "uas") == 0))
        l->flags |= F_WE_REFRESH;
    return true;
}

/* Header lines of our 2xx to a request that negotiated leg l. */
static void uas_headers(const struct st_leg *l, char *out, size_t outlen)
{
    snprintf(out, outlen, "Session-Expires: %" PRIu32 ";refresher=%s\r\n%s", l->interval,
             l->flags & F_WE_REFRESH ? "uas" : "uac",
             l->flags & F_SUPPORTED ? "Require: timer\r\n" : "");
}

/* The carrier's leg from a 2xx to our INVITE or refresh: false when it
 * runs no timer. */
static bool negotiate_uac(struct st_leg *l, sip_t const *ok)
{
    sip_session_expires_t const *se = ok->sip_session_expires;
    if (!se || se->x_delta == 0)
        return false;
    l->interval = (uint32_t)(se->x_delta > 86400 ? 86400 : se->x_delta);
    l->flags |= F_SUPPORTED;
    if (se->x_refresher && strcasecmp(se->x_refresher, "uas") == 0)
        l->flags &= (uint8_t)~F_WE_REFRESH;
    else
        l->flags |= F_WE_REFRESH;
    return true;
}

void call_timer_answer(struct call *c, sip_t const *ok, char *out, size_t outlen)
{
    *out = '\0';
    sip_t const *inv = c->a_msg ? sip_object(c->a_msg) : NULL;
    struct st_leg a = {0}, b = {0};
    bool ta = inv && negotiate_uas(c, &a, inv);
    bool tb = settings(c)->session_ttl && negotiate_uac(&b, ok);
    int probe = settings(c)->no_timer_options_interval;
    if (!ta && !tb && !probe)
        return;
    struct call_timer *st = calloc(1, sizeof *st);
    if (!st) {
        log_error("call", "%" PRIu64 ": out of memory for session timers", c->id);
        return;
    }
    c->st = st;
    st->leg[LEG_A] = a;
    st->leg[LEG_B] = b;
    if (inv && allows_update(inv))
        st->leg[LEG_A].flags |= F_UPDATE;
    if (allows_update(ok))
        st->leg[LEG_B].flags |= F_UPDATE;
    for (int i = 0; i < 2; i++)
        if (!st->leg[i].interval && probe)
            st->leg[i].flags |= F_PROBE;
    if (ta)
        uas_headers(&st->leg[LEG_A], out, outlen);
    passed(c, LEG_A, inv);
    passed(c, LEG_B, ok);
    log_debug("call",
              "%" PRIu64 ": session timers: caller %" PRIu32 " s (%s), callee %" PRIu32
              " s (%s)",
              c->id, a.interval, a.flags & F_WE_REFRESH ? "we refresh" : "it refreshes",
              b.interval, b.flags & F_WE_REFRESH ? "we refresh" : "it refreshes");
}

/* ---- Arming ---------------------------------------------------------------- */

/* The no-timer limit: sip.no_timer_reinvite_interval after the answer, for
 * a call with a leg that runs no session timer. 0: none. */
static uint32_t limit_at(const struct call *c, uint32_t now)
{
    int max = settings(c)->no_timer_reinvite_interval;
    const struct call_timer *st = c->st;
    if (max <= 0 || (st && st->leg[LEG_A].interval && st->leg[LEG_B].interval))
        return 0;
    long long left = max - ((long long)time(NULL) - c->rec.answer);
    return now + (uint32_t)(left > 0 ? left : 0);
}

static void consider(uint32_t *due, uint32_t t)
{
    if (t && (!*due || t < *due))
        *due = t;
}

/* Arm the call's timer for the earliest of everything due. */
static void rearm(struct call *c)
{
    struct call_timer *st = c->st;
    uint32_t now = st_now(), due = 0;
    if (!st) {
        due = limit_at(c, now);
    } else {
        for (int i = 0; i < 2; i++) {
            struct st_leg *l = &st->leg[i];
            if (l->interval)
                consider(&due, deadline(c, l));
            if (!l->orq)
                consider(&due, l->next);
        }
        consider(&due, st->limit);
    }
    if (!due) {
        call_disarm(c);
        return;
    }
    wheel_add(c->cs->timers, &c->timer, due > now ? (due - now) * 1000u : 0);
}

void call_timer_start(struct call *c, sip_t const *ack)
{
    uint32_t now = st_now();
    struct call_timer *st = c->st;
    if (st) {
        passed(c, LEG_A, ack); /* the caller's answer to a late offer */
        int probe = settings(c)->no_timer_options_interval;
        for (int i = 0; i < 2; i++) {
            struct st_leg *l = &st->leg[i];
            if (l->interval)
                renewed(c, l, now);
            else if (l->flags & F_PROBE)
                l->next = now + (uint32_t)probe - jitter((uint32_t)probe / 10);
        }
        st->limit = limit_at(c, now);
    }
    rearm(c);
}

/* ---- Our refreshes and OPTIONS ------------------------------------------- */

static int on_refresh_answer(void *magic, nta_outgoing_t *orq, sip_t const *sip);

/* End the call from the switch: BYE both ways, the CDR's reason. */
static void end_call(struct call *c, const char *reason)
{
    struct calls *cs = c->cs;
    call_set_text(&c->rec.reason, reason);
    call_hangup_switch(c, 503, reason); /* frees c */
    call_kick(cs);
}

/* Send leg i's refresh (or OPTIONS). Returns false when nothing went out. */
static bool send_refresh(struct call *c, int i)
{
    struct call_timer *st = c->st;
    struct st_leg *l = &st->leg[i];
    const struct sip_settings *s = settings(c);
    nta_leg_t *leg = leg_of(c, i);
    if (!leg)
        return false;
    if (l->flags & F_PROBE) {
        l->flags |= F_OPTIONS;
        l->orq = sipagent_request(c->cs->agent, NULL, leg, on_refresh_answer, c, NULL,
                                  SIP_METHOD_OPTIONS, NULL, TAG_END());
        return l->orq != NULL;
    }
    l->flags &= (uint8_t)~F_OPTIONS;
    char hdrs[160];
    uint32_t min = (uint32_t)s->session_min_se < l->interval ? (uint32_t)s->session_min_se
                                                             : l->interval;
    snprintf(hdrs, sizeof hdrs,
             "Session-Expires: %" PRIu32 ";refresher=uac\r\nMin-SE: %" PRIu32
             "\r\nSupported: timer\r\n",
             l->interval, min);
    /* UPDATE without a body where the peer takes it (RFC 4028 9); else a
     * re-INVITE offering what the peer already has. */
    char *sdp = (l->flags & F_UPDATE) ? NULL : body_copy(st, i);
    bool update = !sdp;
    char contact[160];
    l->orq = sipagent_request(
        c->cs->agent, NULL, leg, on_refresh_answer, c, NULL,
        update ? sip_method_update : sip_method_invite, update ? "UPDATE" : "INVITE",
        NULL, SIPTAG_CONTACT_STR(call_contact(c, i == LEG_A, contact, sizeof contact)),
        SIPTAG_HEADER_STR(hdrs), TAG_IF(sdp, SIPTAG_CONTENT_TYPE_STR("application/sdp")),
        TAG_IF(sdp, SIPTAG_PAYLOAD_STR(sdp)), TAG_END());
    free(sdp); /* nta copied it */
    return l->orq != NULL;
}

/* The answer to leg i's refresh or OPTIONS. Returns false when the call
 * ended. */
static bool refresh_answered(struct call *c, int i, int status, sip_t const *sip,
                             bool internal)
{
    struct call_timer *st = c->st;
    struct st_leg *l = &st->leg[i];
    uint32_t now = st_now();
    bool options = l->flags & F_OPTIONS;
    if (status == 408 || status == 481 || internal) {
        log_info("call", "%" PRIu64 ": the %s answered %d%s to our %s: hanging up", c->id,
                 who(i), status, internal ? " (no answer)" : "",
                 options ? "OPTIONS" : "session refresh");
        end_call(c, options ? "In-dialog OPTIONS Failed" : "Session Refresh Failed");
        return false;
    }
    if (options) {
        l->next = now + (uint32_t)settings(c)->no_timer_options_interval;
        return true;
    }
    if (status < 300) {
        passed(c, i, sip); /* a re-INVITE's 2xx carries the peer's answer */
        if (!negotiate_uac(l, sip)) {
            /* No Session-Expires in the 2xx: no timer on this leg now
             * (RFC 4028 7.2); the no-timer limit takes over. */
            log_info("call", "%" PRIu64 ": the %s dropped its session timer", c->id,
                     who(i));
            uint32_t probe = (uint32_t)settings(c)->no_timer_options_interval;
            l->interval = 0;
            l->next = probe ? now + probe : 0;
            if (probe)
                l->flags |= F_PROBE;
            st->limit = limit_at(c, now);
            return true;
        }
        renewed(c, l, now);
        return true;
    }
    uint32_t every = l->interval / (uint32_t)settings(c)->session_update_segment;
    if (status == 422 && sip && sip->sip_min_se &&
        sip->sip_min_se->min_delta > l->interval && sip->sip_min_se->min_delta <= 86400) {
        l->interval = (uint32_t)sip->sip_min_se->min_delta;
        l->next = now;
    } else if ((status == 501 || status == 405) && (l->flags & F_UPDATE) && l->sdp_len) {
        l->flags &= (uint8_t)~F_UPDATE; /* re-INVITE from now on */
        l->next = now;
    } else if (status == 491) {
        l->next = now + 2 + jitter(2);
    } else {
        l->next = now + (every / 2 > 2 ? every / 2 : 2);
    }
    log_info("call",
             "%" PRIu64 ": the %s answered %d to our session refresh: again in %" PRIu32
             " s",
             c->id, who(i), status, l->next - now);
    return true;
}

static int on_refresh_answer(void *magic, nta_outgoing_t *orq, sip_t const *sip)
{
    struct call *c = magic;
    struct call_timer *st = c->st;
    int i = st && st->leg[LEG_A].orq == orq   ? LEG_A
            : st && st->leg[LEG_B].orq == orq ? LEG_B
                                              : -1;
    int status =
        sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (i < 0 || status < 200)
        return 0;
    bool internal = !sip || (sip->sip_flags & NTA_INTERNAL_MSG);
    struct st_leg *l = &st->leg[i];
    if (status < 300 && nta_outgoing_method(orq) == sip_method_invite)
        call_send_ack(leg_of(c, i), orq, NULL);
    l->orq = NULL;
    nta_outgoing_destroy(orq);
    if (refresh_answered(c, i, status, sip, internal))
        rearm(c);
    return 0;
}

/* ---- The call's timer ------------------------------------------------------ */

void call_timer_fire(struct call *c)
{
    struct call_timer *st = c->st;
    uint32_t now = st_now();
    if (st) {
        for (int i = 0; i < 2; i++) {
            struct st_leg *l = &st->leg[i];
            if (l->interval && now >= deadline(c, l)) {
                log_info("call",
                         "%" PRIu64
                         ": the %s's session expired (no refresh within %" PRIu32
                         " s): hanging up",
                         c->id, who(i), l->interval);
                end_call(c, "Session Timer Expired");
                return;
            }
        }
        if (st->limit && now >= st->limit)
            goto limit;
        for (int i = 0; i < 2; i++) {
            struct st_leg *l = &st->leg[i];
            if (!l->orq && l->next && now >= l->next) {
                l->next = 0;
                if (!send_refresh(c, i)) {
                    log_warn("call",
                             "%" PRIu64 ": cannot send the %s its session refresh", c->id,
                             who(i));
                    l->next = now + 2;
                }
            }
        }
        rearm(c);
        return;
    }
    if (!limit_at(c, now) || limit_at(c, now) > now) {
        rearm(c);
        return;
    }
limit:
    log_info("call", "%" PRIu64 ": up %lld s, the maximum call duration: hanging up",
             c->id, (long long)time(NULL) - c->rec.answer);
    end_call(c, "Maximum Call Duration");
}

/* ---- Requests from the peers ------------------------------------------- */

int call_timer_request(struct call *c, nta_incoming_t *irq, sip_t const *sip, bool from_a)
{
    struct call_timer *st = c->st;
    int i = from_a ? LEG_A : LEG_B;
    if (!st || !st->leg[i].interval || c->state != ST_ANSWERED || !c->acked)
        return -1;
    struct st_leg *l = &st->leg[i];
    bool invite = sip->sip_request->rq_method == sip_method_invite;
    bool body = sip->sip_payload && sip->sip_payload->pl_len, refresh;
    if (has_sdp(sip)) /* the same session: its o= line unchanged */
        refresh = l->peer_sdp && sdp_origin(sip) == l->peer_sdp && l->sdp_len;
    else if (body)
        refresh = false;
    else if (invite) /* an offerless re-INVITE used as a session refresh */
        refresh = sip->sip_session_expires && l->sdp_len && !c->relays;
    else
        refresh = true; /* an UPDATE without a body */
    if (!refresh)
        return -1;
    const struct sip_settings *s = settings(c);
    sip_session_expires_t const *se = sip->sip_session_expires;
    if (se && se->x_delta < (unsigned long)s->session_min_se) {
        char min[32];
        snprintf(min, sizeof min, "%d", s->session_min_se);
        nta_incoming_treply(irq, SIP_422_SESSION_TIMER_TOO_SMALL, SIPTAG_MIN_SE_STR(min),
                            TAG_END());
        nta_incoming_destroy(irq);
        return 0;
    }
    if (se || supports_timer(sip))
        negotiate_uas(c, l, sip);
    if (allows_update(sip))
        l->flags |= F_UPDATE;
    renewed(c, l, st_now());
    char hdrs[128];
    uas_headers(l, hdrs, sizeof hdrs);
    /* An UPDATE without an offer gets no answer body; anything else gets
     * the SDP the peer already has. */
    char *copy = invite || body ? body_copy(st, i) : NULL;
    char contact[160];
    nta_incoming_treply(
        irq, SIP_200_OK,
        SIPTAG_CONTACT_STR(call_contact(c, i == LEG_A, contact, sizeof contact)),
        SIPTAG_HEADER_STR(hdrs), TAG_IF(copy, SIPTAG_CONTENT_TYPE_STR("application/sdp")),
        TAG_IF(copy, SIPTAG_PAYLOAD_STR(copy)), TAG_END());
    free(copy);
    /* nta keeps a re-INVITE's transaction until the ACK (absorbed there)
     * after we let go. */
    nta_incoming_destroy(irq);
    log_debug("call", "%" PRIu64 ": the %s refreshed its session (%s, %" PRIu32 " s)",
              c->id, who(i), invite ? "re-INVITE" : "UPDATE", l->interval);
    rearm(c);
    return 1;
}

void call_timer_relay_headers(const struct call *c, bool to_b, char *out, size_t outlen)
{
    *out = '\0';
    const struct st_leg *l = c->st ? &c->st->leg[to_b ? LEG_B : LEG_A] : NULL;
    if (!l || !l->interval)
        return;
    snprintf(out, outlen,
             "Session-Expires: %" PRIu32 ";refresher=%s\r\nSupported: timer\r\n",
             l->interval, l->flags & F_WE_REFRESH ? "uac" : "uas");
}

void call_timer_relayed(struct call *c, bool from_a, sip_t const *req, sip_t const *ok,
                        char *out, size_t outlen)
{
    *out = '\0';
    struct call_timer *st = c->st;
    if (!st)
        return;
    int x = from_a ? LEG_A : LEG_B, y = 1 - x;
    uint32_t now = st_now();
    passed(c, x, req);
    passed(c, y, ok);
    struct st_leg *ly = &st->leg[y], *lx = &st->leg[x];
    if (ly->interval && ok) {
        if (ok->sip_session_expires)
            negotiate_uac(ly, ok);
        renewed(c, ly, now);
    }
    if (lx->interval && req) {
        if (req->sip_session_expires || supports_timer(req))
            negotiate_uas(c, lx, req);
        renewed(c, lx, now);
        uas_headers(lx, out, outlen);
    }
    rearm(c);
}

void call_timer_free(struct call *c)
{
    struct call_timer *st = c->st;
    if (!st)
        return;
    for (int i = 0; i < 2; i++)
        if (st->leg[i].orq)
            nta_outgoing_destroy(st->leg[i].orq);
    free(st);
    c->st = NULL;
}
