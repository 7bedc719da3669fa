/* The datagram sofia reads now. See dgram.h. */
#include "dgram.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <sofia-sip/su.h>

static _Thread_local int reading_fd = -1; /* dgram_socket() */
static _Thread_local int sized_fd = -1;   /* su_getmsgsize() answers once */
static _Thread_local issize_t sized_len;

ssize_t dgram_peek(int fd, struct sockaddr_storage *from, socklen_t *fromlen, char *head,
                   size_t headcap)
{
    *fromlen = sizeof *from;
    ssize_t n = recvfrom(fd, head, headcap, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT,
                         (struct sockaddr *)from, fromlen);
    if (n < 0)
        *fromlen = 0;
    return n;
}

void dgram_reading(int fd, size_t len)
{
    reading_fd = sized_fd = fd;
    sized_len = (issize_t)len;
}

void dgram_done(void)
{
    reading_fd = sized_fd = -1;
}

int dgram_socket(void)
{
    return reading_fd;
}

/* Replaces sofia's (su.c): the length of the next datagram on s. */
issize_t su_getmsgsize(su_socket_t s)
{
    if (s >= 0 && s == sized_fd) {
        sized_fd = -1;
        return sized_len;
    }
    static issize_t (*sofia)(su_socket_t);
    if (!sofia)
        *(void **)&sofia = dlsym(RTLD_NEXT, "su_getmsgsize");
    if (sofia)
        return sofia(s);
    return errno = ENOSYS, -1;
}
