/* The HEPv3 encoder: the bytes of one packet, chunk by chunk, and the
 * limits (no packet above 65535 bytes, families must match). */
#include "check.h"

#include "sip/hep.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

static void test_one_packet_bytes(void)
{
    struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(5060)};
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(5070)};
    inet_pton(AF_INET, "192.0.2.1", &src.sin_addr);
    inet_pton(AF_INET, "198.51.100.2", &dst.sin_addr);
    struct iovec payload[2] = {{"BYE ", 4}, {"x", 1}};
    struct hep_packet p = {
        .src = (struct sockaddr *)&src,
        .dst = (struct sockaddr *)&dst,
        .proto = IPPROTO_UDP,
        .sec = 0x01020304,
        .usec = 0x000a0b0c,
        .agent_id = 2001,
        .payload = payload,
        .npayload = 2,
        .correlation = "a@b",
    };
    static const uint8_t want[] = {
        'H', 'E', 'P', '3',  0x00, 0x71,                      /* total 113 */
        0,   0,   0,   0x01, 0,    7,    2,                   /* IPv4 */
        0,   0,   0,   0x02, 0,    7,    17,                  /* UDP */
        0,   0,   0,   0x03, 0,    10,   192,  0,    2,    1, /* source IP */
        0,   0,   0,   0x04, 0,    10,   198,  51,   100,  2, /* destination IP */
        0,   0,   0,   0x07, 0,    8,    0x13, 0xc4,          /* source port 5060 */
        0,   0,   0,   0x08, 0,    8,    0x13, 0xce,          /* destination port 5070 */
        0,   0,   0,   0x09, 0,    10,   1,    2,    3,    4, /* seconds */
        0,   0,   0,   0x0a, 0,    10,   0,    0x0a, 0x0b, 0x0c,      /* microseconds */
        0,   0,   0,   0x0b, 0,    7,    1,                           /* SIP */
        0,   0,   0,   0x0c, 0,    10,   0,    0,    0x07, 0xd1,      /* agent id 2001 */
        0,   0,   0,   0x11, 0,    9,    'a',  '@',  'b',             /* correlation */
        0,   0,   0,   0x0f, 0,    11,   'B',  'Y',  'E',  ' ',  'x', /* payload */
    };
    uint8_t out[256];
    size_t n = hep_encode(out, sizeof out, &p);
    CHECK(n == sizeof want);
    CHECK(n == sizeof want && memcmp(out, want, n) == 0);
    /* Without a correlation, no 0x0011 chunk. */
    p.correlation = NULL;
    CHECK(hep_encode(out, sizeof out, &p) == sizeof want - 9);
}

static void test_ipv6_and_limits(void)
{
    struct sockaddr_in6 src = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
    struct sockaddr_in6 dst = {.sin6_family = AF_INET6, .sin6_port = htons(2)};
    inet_pton(AF_INET6, "2001:db8::1", &src.sin6_addr);
    inet_pton(AF_INET6, "2001:db8::2", &dst.sin6_addr);
    struct iovec payload = {"x", 1};
    struct hep_packet p = {.src = (struct sockaddr *)&src,
                           .dst = (struct sockaddr *)&dst,
                           .proto = IPPROTO_TCP,
                           .payload = &payload,
                           .npayload = 1};
    uint8_t out[256];
    size_t n = hep_encode(out, sizeof out, &p);
    /* header 6, family 7, proto 7, two IPv6 22 each, ports 8 each, time 10
     * each, type 7, agent 10, payload 7 */
    CHECK(n == 6 + 7 + 7 + 22 + 22 + 8 + 8 + 10 + 10 + 7 + 10 + 7);
    CHECK(out[12] == 10 && out[19] == 6); /* AF_INET6, TCP */
    CHECK(out[23] == 0x05 && memcmp(out + 26, &src.sin6_addr, 16) == 0);
    CHECK(hep_encode(out, 20, &p) == 0); /* does not fit */
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    p.dst = (struct sockaddr *)&v4;
    CHECK(hep_encode(out, sizeof out, &p) == 0); /* mixed families */
    static uint8_t big[70000];
    struct iovec huge = {big, 65500};
    p.dst = (struct sockaddr *)&dst;
    p.payload = &huge;
    CHECK(hep_encode(big, sizeof big, &p) == 0); /* above 65535 */
}

TEST_MAIN(CASE(test_one_packet_bytes), CASE(test_ipv6_and_limits))
