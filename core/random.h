/* Random tokens for SIP: tags, Call-IDs, cnonces. */
#ifndef MOON_RANDOM_H
#define MOON_RANDOM_H

#include <stddef.h>

/* Write `bytes` random bytes (at most 32) as lowercase hex, NUL-terminated:
 * `out` needs 2 * bytes + 1. From getrandom(); falls back to random() only
 * if the kernel refuses, which a tag or Call-ID survives. Cannot fail. */
void random_hex(char *out, size_t bytes);

#endif
