/* bpfblock: the kernel's blocklist of IPv4 source addresses, as a classic
 * BPF socket filter for UDP sockets.
 *
 * The program loads the datagram's IPv4 source address from the network
 * header and searches a balanced tree of the blocked addresses (about
 * 4 * log2(n) instructions a datagram): a blocked source's datagram is
 * dropped by the kernel before any read, every other one is kept whole.
 * Building costs O(n log n); the program is the caller's to free(). */
#ifndef MOON_BPFBLOCK_H
#define MOON_BPFBLOCK_H

#include <linux/filter.h>
#include <stddef.h>
#include <stdint.h>

/* The program for the n addresses of v4 (network byte order, any order);
 * its length in *len. NULL when n is 0 or out of memory. */
struct sock_filter *bpfblock_compile(const uint32_t *v4, size_t n, unsigned short *len);

/* Attach prog (len instructions) to socket fd, or detach any filter when
 * prog is NULL. Sockets that are not IPv4 are left alone. 0, or -1 with
 * errno. */
int bpfblock_attach(int fd, const struct sock_filter *prog, unsigned short len);

#endif
