/* Identity: who calls whom, and what the carrier is told about the caller.
 *
 * In: the callee number comes from To or the Request-Line (the mapping
 * gateway's callee_from; To for a routing gateway's inbound calls), the
 * caller number from From, Remote-Party-ID, From's display name or
 * P-Asserted-Identity (caller_from, or a routing gateway's
 * peer_number_information); either may be a policy function instead.
 * Out: the B-leg From carries that caller number under the caller's display
 * name (or the number, or none: sip.e164_display_from); Privacy and
 * P-Asserted-Identity pass between trusted operators as they came, and a
 * registration gateway's privacy (gw_privacy()) adds the switch's own
 * (RFC 3323, RFC 3325). See call_internal.h. */
#include "sip/call_internal.h"
#include "config.h"
#include "log.h"
#include "sip/gateway.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/sip_header.h>
/* Characters a SIP URI's user part may hold unescaped (RFC 3261 25.1:
 * unreserved and user-unreserved). */
static bool user_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("-_.!~*'()&=+$,;?/", c));
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* The first n bytes of the user part `user` into out[outlen], with each
 * %XX of a printable character decoded: "*21%23" -> "*21#", "%2B49" ->
 * "+49" (sofia's URI parser decodes only the characters a user part may
 * hold unescaped, and none in Remote-Party-ID or P-Asserted-Identity).
 * Escaped spaces, controls, non-ASCII bytes and '%' stay escaped, so a
 * number never holds them and each '%' in it starts an escape.
 * call_identity_uri_user() escapes a number again for a URI. No
 * allocation. */
static void copy_number(char *out, size_t outlen, const char *user, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && user[i] && o + 1 < outlen; i++) {
        int hi = user[i] == '%' && i + 2 < n ? hex_value(user[i + 1]) : -1;
        int lo = hi >= 0 ? hex_value(user[i + 2]) : -1;
        int c = lo >= 0 ? hi * 16 + lo : 0;
        if (c > ' ' && c < 0x7f && c != '%') {
            out[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            out[o++] = user[i];
        }
    }
    out[o] = '\0';
}

void call_identity_uri_user(const char *number, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)number; *p; p++) {
        bool escape = !user_char(*p) && !(*p == '%' && hex_value((char)p[1]) >= 0 &&
                                          hex_value((char)p[2]) >= 0);
        if (!escape && o + 1 < outlen) {
            out[o++] = (char)*p;
        } else if (escape && o + 3 < outlen) {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        } else {
            break;
        }
    }
    out[o] = '\0';
}

static void copy_user(char *out, size_t outlen, const url_t *url)
{
    const char *user = url && url->url_user ? url->url_user : "";
    copy_number(out, outlen, user, strlen(user));
}

/* The first header called `name` that sofia did not parse (RPID, PAI). */
static const char *unknown_header(const sip_t *sip, const char *name)
{
    for (const sip_unknown_t *u = sip->sip_unknown; u; u = u->un_next)
        if (u->un_name && strcasecmp(u->un_name, name) == 0)
            return u->un_value;
    return NULL;
}

/* The user part of the first SIP URI in a header value:
 * "\"Bob\" <sip:1234@host>;party=calling" -> "1234". */
static void user_of_value(const char *value, char *out, size_t outlen)
{
    *out = '\0';
    if (!value)
        return;
    const char *p = strstr(value, "sip:");
    const char *q = p ? p + 4 : NULL;
    if (!q && (p = strstr(value, "tel:")))
        q = p + 4;
    if (!q)
        return;
    copy_number(out, outlen, q, strcspn(q, "@;>? "));
}

void call_identity_display(const sip_from_t *from, char *out, size_t outlen)
{
    *out = '\0';
    if (!from || !from->a_display)
        return;
    const char *d = from->a_display;
    size_t n = strlen(d);
    if (n >= 2 && d[0] == '"' && d[n - 1] == '"') {
        d++;
        n -= 2;
    }
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, d, n);
    out[n] = '\0';
}

bool call_identity_valid_number(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < CALL_NUM &&
           strspn(s, "0123456789abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ+*#.-_") == n;
}

/* A number from the policy's function `ref`, or "" when it gave none (or
 * one that cannot be a URI's user part). */
static void from_hook(struct calls *cs, int ref, msg_t *msg, char *out, size_t outlen)
{
    *out = '\0';
    if (!ref || !cs->number_h)
        return;
    if (cs->number_h(ref, msg, out, outlen, cs->number_arg) < 0)
        *out = '\0';
    if (*out && !call_identity_valid_number(out)) {
        log_warn("call", "a number function gave \"%s\", which is no number: ignored",
                 out);
        *out = '\0';
    }
}

void call_identity_numbers(struct calls *cs, const struct call_number_rule *rule,
                           msg_t *msg, char *caller, size_t callerlen, char *callee,
                           size_t calleelen)
{
    sip_t const *sip = sip_object(msg);
    /* A function that gives no number falls back to To (callee) and From
     * (caller). */
    from_hook(cs, rule->callee_hook, msg, callee, calleelen);
    bool request_line =
        rule->callee_from == CALLEE_FROM_REQUEST_LINE && !rule->callee_hook;
    if (!callee[0] && request_line)
        copy_user(callee, calleelen, sip->sip_request->rq_url);
    else if (!callee[0])
        copy_user(callee, calleelen, sip->sip_to ? sip->sip_to->a_url : NULL);
    from_hook(cs, rule->caller_hook, msg, caller, callerlen);
    if (caller[0])
        return;
    switch (rule->caller_hook ? CALLER_FROM_FROM : rule->caller_from) {
    case CALLER_FROM_RPID:
        user_of_value(unknown_header(sip, "Remote-Party-ID"), caller, callerlen);
        break;
    case CALLER_FROM_PAI:
        user_of_value(unknown_header(sip, "P-Asserted-Identity"), caller, callerlen);
        break;
    case CALLER_FROM_DISPLAY:
        call_identity_display(sip->sip_from, caller, callerlen);
        break;
    default:
        break;
    }
    if (!caller[0])
        copy_user(caller, callerlen, sip->sip_from ? sip->sip_from->a_url : NULL);
}

/* The caller's From display name, as the start of our From ("display
 * from"): `"Alice" `, or "" when it has none (or an unreasonably long one).
 * sofia keeps a quoted-string with its quotes and escapes, so it goes back
 * as it came; a bare token sequence gets quotes. */
static void quoted_display(const sip_from_t *from, char *out, size_t outlen)
{
    *out = '\0';
    const char *d = from ? from->a_display : NULL;
    size_t n = d ? strlen(d) : 0;
    bool quoted = n >= 2 && d[0] == '"' && d[n - 1] == '"';
    if (n == 0 || (quoted && n == 2) || n + 4 > outlen)
        return;
    snprintf(out, outlen, quoted ? "%s " : "\"%s\" ", d);
}

void call_identity_from(const sip_from_t *caller_from, const char *display_set,
                        const char *caller, int display_from, const char *host,
                        const char *tag, char *out, size_t outlen)
{
    char display[160] = "", user[3 * CALL_NUM];
    if (display_set && *display_set) /* checked: no quote, backslash or control */
        snprintf(display, sizeof display, "\"%.140s\" ", display_set);
    else if (display_from == DISPLAY_FROM_IGNORE)
        quoted_display(caller_from, display, sizeof display);
    else if (display_from == DISPLAY_FROM_CALLER && caller[0])
        snprintf(display, sizeof display, "\"%.100s\" ", caller);
    call_identity_uri_user(caller[0] ? caller : "anonymous", user, sizeof user);
    snprintf(out, outlen, "%s<sip:%s@%s>;tag=%s", display, user, host, tag);
}

/* Append one header line to `out` if all of it fits. */
static bool add_line(char *out, size_t outlen, size_t *len, const char *name,
                     const char *value)
{
    int n = snprintf(out + *len, outlen - *len, "%s: %s\r\n", name, value);
    if (n < 0 || (size_t)n >= outlen - *len) {
        out[*len] = '\0';
        return false;
    }
    *len += (size_t)n;
    return true;
}

/* Identity headers towards gateway g (RFC 3323, RFC 3325). Between trusted
 * operators the caller's P-Asserted-Identity and Privacy pass as they came.
 * A registration gateway's privacy adds the switch's own: "id" asserts the
 * caller ourselves and asks that it be withheld (Privacy: id and our
 * P-Asserted-Identity replace the caller's), "none" says nothing is to be
 * withheld (Privacy: none replaces the caller's Privacy), "ignore" adds
 * nothing. Header lines go to `out` for SIPTAG_HEADER_STR; *pass_privacy
 * says whether the caller's Privacy header goes along. */
void call_identity_headers(const struct call *c, const struct routing_gateway_def *g,
                           sip_t const *a, char *out, size_t outlen, bool *pass_privacy)
{
    size_t len = 0;
    char value[3 * CALL_NUM + 160], user[3 * CALL_NUM];
    *out = '\0';
    int mode = gw_privacy(c->cs->gws, g);
    *pass_privacy = a->sip_privacy && mode == PRIVACY_IGNORE;
    if (mode != PRIVACY_IGNORE)
        add_line(out, outlen, &len, "Privacy", mode == PRIVACY_ID ? "id" : "none");
    if (mode == PRIVACY_ID) {
        if (c->rec.caller[0]) {
            call_identity_uri_user(c->rec.caller, user, sizeof user);
            snprintf(value, sizeof value, "<sip:%s@%s>", user, c->cs->host);
            add_line(out, outlen, &len, "P-Asserted-Identity", value);
        }
        return;
    }
    for (const sip_unknown_t *u = a->sip_unknown; u; u = u->un_next)
        if (u->un_name && u->un_value &&
            strcasecmp(u->un_name, "P-Asserted-Identity") == 0 &&
            !add_line(out, outlen, &len, "P-Asserted-Identity", u->un_value))
            break;
}
