/* Corrections to sofia-sip's parser: see parsefix.h. */
#include "sip/parsefix.h"
#include "log.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/bnf.h>
#include <sofia-sip/msg.h>
#include <sofia-sip/msg_addr.h>
#include <sofia-sip/msg_buffer.h>
#include <sofia-sip/msg_header.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_parser.h>
#include <sofia-sip/su_string.h>

static bool streams_tcp;

void parsefix_set_streams_tcp(bool tcp)
{
    streams_tcp = tcp;
}

/* ---- Method names -------------------------------------------------------- */

/* sofia's sip_method_d() with RFC 3261's token for the names of unknown
 * methods: alphanumerics and -.!%*_+`'~ (sofia takes URL-unreserved
 * characters, which lack '+' and '`' and add '(' and ')'; both sets are
 * taken here, so nothing sofia parsed is refused). The rest is sofia's:
 * the method code, the name NUL-terminated in place when `return_name` is
 * given, *ss moved past the following whitespace, and sip_method_invalid
 * when the name ends in anything but whitespace or the end of the string. */
sip_method_t sip_method_d(char **ss, char const **return_name)
{
    char *s = *ss;
    char const *name = NULL;
    sip_method_t code = sip_method_unknown;
    size_t n = 0;

    for (int i = 1; sip_method_names[i]; i++) {
        size_t len = strlen(sip_method_names[i]);
        if (strncmp(s, sip_method_names[i], len) == 0 && !IS_NON_WS(s[len])) {
            code = (sip_method_t)i;
            name = sip_method_names[i];
            n = len;
            break;
        }
    }
    if (code == sip_method_unknown) {
        name = s;
        for (n = 0; IS_TOKEN(s[n]) || IS_UNRESERVED(s[n]); n++)
            ;
        if (s[n]) {
            if (!IS_LWS(s[n]))
                return sip_method_invalid;
            if (return_name)
                s[n++] = '\0';
        }
    }
    while (IS_LWS(s[n]))
        n++;
    *ss = s + n;
    if (return_name)
        *return_name = name;
    return code;
}

/* ---- Escaped NUL in quoted strings --------------------------------------- */

/* In the header block at the start of b[0..len) (up to its empty line, or
 * all of it when that has not arrived), turn each quoted-pair "\" NUL into
 * "\?". The scan starts at a line start (sofia consumes whole header lines
 * only), and quote state ends with each header (a quoted string holds no
 * CR or LF, but may be folded). Idempotent, so a stream message can be
 * scanned again as more of it arrives. */
static void escape_quoted_nuls(char *b, size_t len)
{
    /* Almost no message holds a NUL at all: one vectorised memchr instead
     * of the byte-by-byte scan (about 8,000 instructions a message). */
    if (!memchr(b, '\0', len))
        return;
    bool quoted = false, line_start = true;
    for (size_t i = 0; i < len; i++) {
        char c = b[i];
        if (c == '\r' || c == '\n') {
            if (c == '\r' && i + 1 < len && b[i + 1] == '\n')
                i++;
            if (i + 1 < len && (b[i + 1] == ' ' || b[i + 1] == '\t'))
                continue; /* folded: the same header goes on */
            if (line_start)
                return; /* the empty line: the body follows */
            quoted = false;
            line_start = true;
            continue;
        }
        line_start = false;
        if (!quoted) {
            quoted = c == '"';
        } else if (c == '"') {
            quoted = false;
        } else if (c == '\\' && i + 1 < len) {
            i++;
            if (b[i] == '\0')
                b[i] = '?';
        }
    }
}

/* ---- After parsing ------------------------------------------------------- */

/* The transport a message came over as a Via sent-protocol, or NULL when it
 * cannot be told (a stream while TLS listeners exist; a message that did
 * not come from the network). */
static const char *arrival_transport(msg_t *msg)
{
    su_addrinfo_t *ai = msg_addrinfo(msg);
    if (!ai)
        return NULL;
    if (ai->ai_protocol == IPPROTO_UDP)
        return sip_transport_udp;
    if (ai->ai_protocol == IPPROTO_TCP && streams_tcp)
        return sip_transport_tcp;
    return NULL;
}

/* Put the source's address and port on Via `v` as received= and rport=,
 * as nta does for requests it accepts. */
static void via_mark_source(msg_t *msg, sip_via_t *v)
{
    su_addrinfo_t *ai = msg_addrinfo(msg);
    const struct sockaddr *sa = (const struct sockaddr *)ai->ai_addr;
    char host[INET6_ADDRSTRLEN], param[sizeof "received=" + INET6_ADDRSTRLEN];
    unsigned port;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    } else {
        return;
    }
    su_home_t *home = msg_home(msg);
    if (!v->v_host || !su_casematch(v->v_host, host)) {
        snprintf(param, sizeof param, "received=%s", host);
        msg_header_replace_param(home, v->v_common, su_strdup(home, param));
    }
    snprintf(param, sizeof param, "rport=%u", port);
    msg_header_replace_param(home, v->v_common, su_strdup(home, param));
}

/* nta drops a request whose top Via names another transport than the one
 * it came over, and answers one of another SIP version with a 505 sent to
 * the Via's sent-by address, not to the source. The Via is corrected here,
 * before nta looks: its transport becomes the arrival's (so the answer goes
 * back on the connection or to the source the request came from, and says
 * so in its Via), and a 505 over UDP goes back to the source. */
static void fix_request(msg_t *msg, sip_t *sip)
{
    sip_via_t *v = sip->sip_via;
    if (!v || !v->v_protocol)
        return;
    const char *transport = arrival_transport(msg);
    if (!transport)
        return;
    if (!su_casematch(v->v_protocol, transport))
        v->v_protocol = transport;
    if (transport == sip_transport_udp && sip->sip_request->rq_version &&
        !su_casematch(sip->sip_request->rq_version, sip_version_2_0))
        via_mark_source(msg, v);
}

/* ---- msg_extract --------------------------------------------------------- */

typedef int msg_extract_f(msg_t *msg);

static msg_extract_f *sofia_extract(void)
{
    static msg_extract_f *real;
    if (!real) {
        void *sym = dlsym(RTLD_NEXT, "msg_extract");
        if (!sym) {
            log_error("sip", "sofia's msg_extract not found: %s", dlerror());
            abort();
        }
        memcpy(&real, &sym, sizeof real);
    }
    return real;
}

/* sofia's msg_extract(), with the corrections above around it for SIP
 * messages. Called by sofia's transports after each read. */
int msg_extract(msg_t *msg)
{
    bool sip_msg = msg && msg_mclass(msg) == sip_default_mclass();
    if (sip_msg) {
        msg_pub_t *mo = msg_object(msg);
        if (mo && !(mo->msg_flags & (MSG_FLG_BODY | MSG_FLG_COMPLETE | MSG_FLG_TRAILERS)))
            escape_quoted_nuls(msg_buf_committed_data(msg), msg_buf_committed(msg));
    }
    int rc = sofia_extract()(msg);
    if (rc > 0 && sip_msg) {
        sip_t *sip = sip_object(msg);
        if (sip && sip->sip_request)
            fix_request(msg, sip);
    }
    return rc;
}

/* ---- Start-up check ------------------------------------------------------ */

bool parsefix_check(void)
{
    static const char probe[] = "A+B` sip:probe.invalid SIP/2.0\r\n"
                                "Via: SIP/2.0/UDP probe.invalid;branch=z9hG4bK1\r\n"
                                "From: \"x\\\0y\" <sip:a@probe.invalid>;tag=1\r\n"
                                "To: <sip:b@probe.invalid>\r\n"
                                "Call-ID: probe\r\n"
                                "CSeq: 1 A+B`\r\n"
                                "Content-Length: 0\r\n\r\n";
    msg_t *msg = msg_make(sip_default_mclass(), 0, probe, sizeof probe - 1);
    sip_t *sip = msg ? sip_object(msg) : NULL;
    bool ok = sip && sip->sip_request && sip->sip_cseq && sip->sip_from &&
              !sip->sip_error && strcmp(sip->sip_request->rq_method_name, "A+B`") == 0;
    msg_destroy(msg);
    if (!ok)
        log_warn("sip", "sofia's parser is not corrected (linked without symbol "
                        "interposition?): methods with '+' or '`' and escaped NULs in "
                        "quoted strings are refused, mismatched Via transports dropped");
    return ok;
}
