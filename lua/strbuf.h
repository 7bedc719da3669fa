/* strbuf: a growable, NUL-terminated byte buffer for building text.
 *
 * The caller owns the struct (start from `{0}`) and frees its data with
 * strbuf_free(). Appending copies the bytes and doubles the allocation when
 * it is full (amortised O(n)); strbuf_addf formats through a 512-byte stack
 * buffer and allocates only for longer results. Out of memory truncates the
 * text instead of failing. Knows nothing of Lua. */
#ifndef MOON_LUA_STRBUF_H
#define MOON_LUA_STRBUF_H

#include <stddef.h>

struct strbuf {
    char *data; /* NULL until something is added */
    size_t len, cap;
};

void strbuf_add(struct strbuf *b, const char *s, size_t n);
void strbuf_addf(struct strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void strbuf_free(struct strbuf *b);

#endif
