/* dgram: the datagram sofia is about to read, or is processing, on the
 * loop's thread.
 *
 * The port (evport.c) reads each datagram socket in batches: one
 * recvfrom(MSG_PEEK | MSG_TRUNC) tells whether a datagram waits, where it
 * comes from, its first bytes and its whole length; then sofia's UDP
 * transport reads it. sofia asks the length first with su_getmsgsize(), an
 * ioctl(FIONREAD); this module defines su_getmsgsize(), which the executable
 * exports (CMakeLists.txt) so that it replaces sofia's, and answers the
 * length peeked for that socket without a system call (any other socket, or
 * a second question: sofia's own). A program that does not export it (the
 * unit tests) keeps sofia's ioctl; nothing else changes.
 *
 * While sofia processes a datagram read this way, dgram_socket() names the
 * socket it came from: the answers written as text (sip/rawreply.c) send on
 * it directly.
 *
 * Costs: dgram_peek() is one system call; the rest are a few stores and
 * loads, no allocation. State is per thread; nothing to free. */
#ifndef MOON_DGRAM_H
#define MOON_DGRAM_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Peek at the next datagram of non-blocking-read socket `fd`: its source
 * (into from/fromlen; fromlen 0 when the socket gives none) and its first
 * bytes (up to headcap into head). Returns the datagram's whole length (0
 * for an empty datagram), or -1 with errno: EAGAIN/EWOULDBLOCK when none
 * waits, else a pending socket error (an ICMP report), which the call
 * clears. */
ssize_t dgram_peek(int fd, struct sockaddr_storage *from, socklen_t *fromlen, char *head,
                   size_t headcap);

/* sofia is about to read the datagram of `len` bytes peeked on `fd` and
 * process it: su_getmsgsize(fd) answers len, once, and dgram_socket()
 * returns fd until dgram_done(). */
void dgram_reading(int fd, size_t len);
void dgram_done(void);

/* The datagram socket whose datagram sofia is processing now, or -1. */
int dgram_socket(void);

#endif
