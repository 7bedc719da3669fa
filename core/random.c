#include "random.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

void random_hex(char *out, size_t bytes)
{
    unsigned char raw[32];
    if (bytes > sizeof raw)
        bytes = sizeof raw;
    if (getrandom(raw, bytes, 0) != (ssize_t)bytes)
        for (size_t i = 0; i < bytes; i++)
            raw[i] = (unsigned char)random();
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < bytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * bytes] = '\0';
}
