/* Unit tests for core/sip/ipcount.c: counts go up and down, an address
 * goes at 0, addresses differ byte for byte (IPv4 and IPv6 texts, a prefix
 * of another), the table grows past its first buckets with every address
 * still found, and lengths out of range are refused. */
#include "check.h"
#include "sip/ipcount.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int add(struct ipcount *ic, const char *ip)
{
    return ipcount_add(ic, ip, strlen(ip));
}

static void counts_up_and_down(void)
{
    struct ipcount *ic = ipcount_create();
    CHECK(ic && ipcount_get(ic, "192.0.2.1") == 0 && ipcount_size(ic) == 0);
    CHECK(add(ic, "192.0.2.1") == 0 && add(ic, "192.0.2.1") == 0);
    CHECK(add(ic, "2001:db8::1") == 0);
    CHECK(ipcount_get(ic, "192.0.2.1") == 2 && ipcount_get(ic, "2001:db8::1") == 1);
    CHECK(ipcount_size(ic) == 2);
    /* Byte for byte: a prefix, a longer address, another one. */
    CHECK(ipcount_get(ic, "192.0.2.10") == 0 && ipcount_get(ic, "192.0.2.") == 0);
    CHECK(ipcount_get(ic, "192.0.2.2") == 0 && ipcount_get(ic, "") == 0);
    /* The text given with a length: "192.0.2.1:5060" counted as its IP. */
    CHECK(ipcount_add(ic, "192.0.2.1:5060", 9) == 0 && ipcount_get(ic, "192.0.2.1") == 3);
    ipcount_del(ic, "192.0.2.1", 9);
    ipcount_del(ic, "192.0.2.1", 9);
    CHECK(ipcount_get(ic, "192.0.2.1") == 1 && ipcount_size(ic) == 2);
    ipcount_del(ic, "192.0.2.1", 9);
    CHECK(ipcount_get(ic, "192.0.2.1") == 0 && ipcount_size(ic) == 1);
    /* What is not counted: no-ops. */
    ipcount_del(ic, "192.0.2.1", 9);
    ipcount_del(ic, "198.51.100.7", 12);
    CHECK(ipcount_get(ic, "2001:db8::1") == 1 && ipcount_size(ic) == 1);
    ipcount_destroy(ic);
    ipcount_destroy(NULL);
}

static void lengths(void)
{
    struct ipcount *ic = ipcount_create();
    char longer[IPCOUNT_MAX + 2];
    memset(longer, '1', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    CHECK(ipcount_add(ic, "", 0) == -EINVAL);
    CHECK(ipcount_add(ic, longer, IPCOUNT_MAX + 1) == -EINVAL);
    CHECK(ipcount_get(ic, longer) == 0);
    CHECK(ipcount_add(ic, longer, IPCOUNT_MAX) == 0);
    longer[IPCOUNT_MAX] = '\0';
    CHECK(ipcount_get(ic, longer) == 1);
    ipcount_destroy(ic);
}

static void grows(void)
{
    struct ipcount *ic = ipcount_create();
    char ip[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(ip, sizeof ip, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        CHECK(add(ic, ip) == 0);
    }
    CHECK(ipcount_size(ic) == 20000);
    unsigned found = 0;
    for (int i = 0; i < 20000; i++) {
        snprintf(ip, sizeof ip, "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        found += ipcount_get(ic, ip);
        if (i % 2)
            ipcount_del(ic, ip, strlen(ip));
    }
    CHECK(found == 20000 && ipcount_size(ic) == 10000);
    CHECK(ipcount_get(ic, "10.0.0.2") == 1 && ipcount_get(ic, "10.0.0.3") == 0);
    ipcount_destroy(ic);
}

TEST_MAIN(CASE(counts_up_and_down), CASE(lengths), CASE(grows))
