/* Unit tests for core/sip/rawreply.c's text: the status line, every Via in
 * order (with what nta added), Record-Route only when asked, From, To with
 * a new tag (kept when it has one), Call-ID and CSeq; 0 when the buffer is
 * too small or a header is missing. */
#include "check.h"
#include "sip/rawreply.h"

#include <string.h>

#include <sofia-sip/msg.h>
#include <sofia-sip/sip_header.h>

static const char request[] = "REGISTER sip:127.0.0.1 SIP/2.0\r\n"
                              "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1;rport\r\n"
                              "v: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-2\r\n"
                              "Record-Route: <sip:rr.invalid;lr>\r\n"
                              "f: \"A b\" <sip:1001@127.0.0.1>;tag=ft\r\n"
                              "To: <sip:1001@127.0.0.1>\r\n"
                              "Call-ID: abc@h\r\n"
                              "CSeq: 7 REGISTER\r\n"
                              "Content-Length: 0\r\n\r\n";

static msg_t *parse(const char *text)
{
    return msg_make(sip_default_mclass(), 0, text, (isize_t)strlen(text));
}

static void head_of_a_request(void)
{
    msg_t *msg = parse(request);
    sip_t *sip = sip_object(msg);
    CHECK(sip && sip->sip_via && sip->sip_via->v_next);
    /* What nta does on arrival. */
    msg_header_replace_param(msg_home(msg), sip->sip_via->v_common, "rport=5062");
    char buf[1024];
    size_t n = rawreply_head(buf, sizeof buf, sip, 401, "Unauthorized", true);
    CHECK(n == strlen(buf));
    CHECK(strncmp(buf,
                  "SIP/2.0 401 Unauthorized\r\n"
                  "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1;rport=5062\r\n"
                  "Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-2\r\n"
                  "Record-Route: <sip:rr.invalid;lr>\r\n"
                  "From: \"A b\" <sip:1001@127.0.0.1>;tag=ft\r\n"
                  "To: <sip:1001@127.0.0.1>;tag=",
                  strlen("SIP/2.0 401 Unauthorized\r\n"
                         "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1;rport=5062\r\n"
                         "Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK-2\r\n"
                         "Record-Route: <sip:rr.invalid;lr>\r\n"
                         "From: \"A b\" <sip:1001@127.0.0.1>;tag=ft\r\n"
                         "To: <sip:1001@127.0.0.1>;tag=")) == 0);
    const char *tag = strstr(buf, "To: <sip:1001@127.0.0.1>;tag=");
    const char *end = tag ? strstr(tag, "\r\n") : NULL;
    CHECK(end && end - tag == (long)strlen("To: <sip:1001@127.0.0.1>;tag=") + 12);
    CHECK_STR_CONTAINS(buf, "\r\nCall-ID: abc@h\r\nCSeq: 7 REGISTER\r\n");
    CHECK(buf[n - 2] == '\r' && buf[n - 1] == '\n');
    /* Two answers, two tags. */
    char again[1024];
    CHECK(rawreply_head(again, sizeof again, sip, 401, "Unauthorized", true) == n);
    CHECK(strcmp(buf, again) != 0);
    /* Without Record-Route. */
    CHECK(rawreply_head(buf, sizeof buf, sip, 200, "OK", false) > 0);
    CHECK(strstr(buf, "Record-Route") == NULL);
    CHECK(strncmp(buf, "SIP/2.0 200 OK\r\n", 16) == 0);
    /* Too small. */
    CHECK(rawreply_head(buf, 100, sip, 200, "OK", false) == 0);
    msg_destroy(msg);
}

static void to_tag_kept(void)
{
    static const char text[] = "OPTIONS sip:x SIP/2.0\r\n"
                               "Via: SIP/2.0/TCP h;branch=z9hG4bK-9\r\n"
                               "From: <sip:a@h>;tag=1\r\n"
                               "To: <sip:b@h>;tag=given\r\n"
                               "Call-ID: c\r\n"
                               "CSeq: 1 OPTIONS\r\n"
                               "Content-Length: 0\r\n\r\n";
    msg_t *msg = parse(text);
    char buf[512];
    CHECK(rawreply_head(buf, sizeof buf, sip_object(msg), 481, "Gone", false) > 0);
    CHECK_STR_CONTAINS(buf,
                       "To: <sip:b@h>;tag=given\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n");
    msg_destroy(msg);
}

static void missing_header(void)
{
    static const char text[] = "OPTIONS sip:x SIP/2.0\r\n"
                               "Via: SIP/2.0/UDP h;branch=z9hG4bK-9\r\n"
                               "From: <sip:a@h>;tag=1\r\n"
                               "To: <sip:b@h>\r\n"
                               "CSeq: 1 OPTIONS\r\n"
                               "Content-Length: 0\r\n\r\n";
    msg_t *msg = parse(text);
    char buf[512];
    CHECK(rawreply_head(buf, sizeof buf, sip_object(msg), 200, "OK", false) == 0);
    msg_destroy(msg);
}

TEST_MAIN(CASE(head_of_a_request), CASE(to_tag_kept), CASE(missing_header))
