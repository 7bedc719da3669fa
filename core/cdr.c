/* Call detail records in the store. See cdr.h. */
#include "cdr.h"
#include "log.h"
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CDR_VERSION 2
#define CDR_META_VERSION 1

uint64_t cdr_last_seq(struct store *store)
{
    if (!store)
        return 0;
    uint8_t key[8], version;
    store_key_u64(key, 0);
    void *val;
    size_t vlen;
    if (store_get(store, STORE_CDRS, key, sizeof key, &version, &val, &vlen) < 0)
        return 0;
    uint64_t seq = vlen == 8 ? store_key_u64_read(val) : 0;
    free(val);
    return seq;
}

static void add(char *buf, size_t *len, size_t cap, const char *s)
{
    size_t n = strlen(s) + 1;
    if (*len + n > cap)
        return;
    memcpy(buf + *len, s, n);
    *len += n;
}

static void add_num(char *buf, size_t *len, size_t cap, long long v, int empty_if_zero)
{
    char num[24] = "";
    if (!(empty_if_zero && v == 0))
        snprintf(num, sizeof num, "%lld", v);
    add(buf, len, cap, num);
}

int cdr_write(struct store *store, struct cdr *c)
{
    if (!store)
        return 0;
    c->seq = cdr_last_seq(store) + 1;
    char buf[16 * CDR_FIELD_MAX];
    size_t len = 0, cap = sizeof buf;
    add(buf, &len, cap, c->call_id);
    add(buf, &len, cap, c->caller);
    add(buf, &len, cap, c->callee);
    add(buf, &len, cap, c->original_callee);
    add(buf, &len, cap, c->routed_callee);
    add(buf, &len, cap, c->mapping_gateway);
    add(buf, &len, cap, c->routing_gateway);
    add_num(buf, &len, cap, c->start, 0);
    add_num(buf, &len, cap, c->answer, 1);
    add_num(buf, &len, cap, c->stop, 0);
    add_num(buf, &len, cap, c->duration, 0);
    add_num(buf, &len, cap, c->status, 0);
    add(buf, &len, cap, c->reason);
    add(buf, &len, cap, c->hangup);
    add(buf, &len, cap, c->direction);
    uint8_t key[8], meta[8];
    store_key_u64(key, c->seq);
    int rc = store_put(store, STORE_CDRS, key, sizeof key, CDR_VERSION, buf, len);
    if (rc == 0) {
        store_key_u64(meta, c->seq);
        store_key_u64(key, 0);
        rc = store_put(store, STORE_CDRS, key, sizeof key, CDR_META_VERSION, meta, sizeof meta);
    }
    if (rc < 0)
        log_error("cdr", "cannot store the record of call %s: %s", c->call_id, strerror(-rc));
    return rc;
}

/* The next NUL-terminated field of [*p, end), copied into out. */
static const char *field(const char **p, const char *end, char *out, size_t outlen)
{
    const char *s = *p;
    const char *z = s < end ? memchr(s, '\0', (size_t)(end - s)) : NULL;
    if (!z) {
        *out = '\0';
        *p = end;
        return out;
    }
    snprintf(out, outlen, "%s", s);
    *p = z + 1;
    return out;
}

static long long num(const char **p, const char *end)
{
    char tmp[24];
    field(p, end, tmp, sizeof tmp);
    return strtoll(tmp, NULL, 10);
}

int cdr_read(struct store *store, uint64_t seq, struct cdr *out)
{
    if (!store || seq == 0)
        return -ENOENT;
    uint8_t key[8], version;
    store_key_u64(key, seq);
    void *val;
    size_t vlen;
    if (store_get(store, STORE_CDRS, key, sizeof key, &version, &val, &vlen) < 0)
        return -ENOENT;
    memset(out, 0, sizeof *out);
    out->seq = seq;
    const char *p = val, *end = p + vlen;
    if (version == 1 || version == CDR_VERSION) {
        field(&p, end, out->call_id, sizeof out->call_id);
        field(&p, end, out->caller, sizeof out->caller);
        field(&p, end, out->callee, sizeof out->callee);
        field(&p, end, out->original_callee, sizeof out->original_callee);
        field(&p, end, out->routed_callee, sizeof out->routed_callee);
        field(&p, end, out->mapping_gateway, sizeof out->mapping_gateway);
        field(&p, end, out->routing_gateway, sizeof out->routing_gateway);
        out->start = num(&p, end);
        out->answer = num(&p, end);
        out->stop = num(&p, end);
        out->duration = num(&p, end);
        out->status = (int)num(&p, end);
        field(&p, end, out->reason, sizeof out->reason);
        field(&p, end, out->hangup, sizeof out->hangup);
        if (version >= 2)
            field(&p, end, out->direction, sizeof out->direction);
        if (!out->direction[0])
            snprintf(out->direction, sizeof out->direction, "outbound");
    }
    free(val);
    return 0;
}

/* Append n bytes of s, as many as fit before the terminator. */
static void put(char *buf, size_t *len, size_t cap, const char *s, size_t n)
{
    if (n > cap - 1 - *len)
        n = cap - 1 - *len;
    memcpy(buf + *len, s, n);
    *len += n;
}

/* ` key=value`, the value in double quotes (with \" and \\) when it is
 * empty or holds a space, a quote, a backslash or '='; control characters
 * become '?'. No snprintf: this runs once per call. */
static void log_field(char *buf, size_t *len, size_t cap, const char *key, const char *v)
{
    bool quote = !*v || strpbrk(v, " \"\\=") != NULL;
    if (*len)
        put(buf, len, cap, " ", 1);
    put(buf, len, cap, key, strlen(key));
    put(buf, len, cap, quote ? "=\"" : "=", quote ? 2 : 1);
    for (; *v && *len + 3 < cap; v++) {
        if (quote && (*v == '"' || *v == '\\'))
            buf[(*len)++] = '\\';
        buf[(*len)++] = (unsigned char)*v < ' ' ? '?' : *v;
    }
    if (quote)
        put(buf, len, cap, "\"", 1);
    buf[*len] = '\0';
}

static void log_number(char *buf, size_t *len, size_t cap, const char *key, long long v)
{
    char tmp[24], *p = tmp + sizeof tmp;
    unsigned long long u = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
    *--p = '\0';
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10));
    if (v < 0)
        *--p = '-';
    log_field(buf, len, cap, key, p);
}

void cdr_log(const struct cdr *c, uint64_t call)
{
    if (!log_enabled(LOG_INFO))
        return;
    char buf[16 * CDR_FIELD_MAX];
    size_t len = 0, cap = sizeof buf;
    log_number(buf, &len, cap, "status", c->status);
    log_field(buf, &len, cap, "reason", c->reason);
    log_field(buf, &len, cap, "hangup", c->hangup[0] ? c->hangup : "-");
    log_number(buf, &len, cap, "duration", c->duration);
    log_field(buf, &len, cap, "caller", c->caller);
    log_field(buf, &len, cap, "callee", c->callee);
    log_field(buf, &len, cap, "routed_callee", c->routed_callee);
    log_field(buf, &len, cap, "mapping_gateway", c->mapping_gateway);
    log_field(buf, &len, cap, "routing_gateway", c->routing_gateway);
    log_number(buf, &len, cap, "start", c->start);
    log_number(buf, &len, cap, "answer", c->answer);
    log_number(buf, &len, cap, "stop", c->stop);
    log_field(buf, &len, cap, "call_id", c->call_id);
    log_write(LOG_INFO, "call", "%" PRIu64 " ended: %s", call, buf);
}
