/* The kernel's blocklist as a BPF socket filter. See bpfblock.h. */
#include "bpfblock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

#define BLOCK_ACCEPT 0xffffffffu /* keep the whole datagram */

struct block_build {
    struct sock_filter *prog;
    unsigned n;
    const uint32_t *v; /* sorted, host order */
};

static void block_emit(struct block_build *b, uint16_t code, uint8_t jt, uint8_t jf,
                       uint32_t k)
{
    b->prog[b->n++] = (struct sock_filter){code, jt, jf, k};
}

/* A search over v[lo, hi): equal drops, greater goes right, else left. */
static void block_tree(struct block_build *b, size_t lo, size_t hi)
{
    if (lo == hi) {
        block_emit(b, BPF_RET | BPF_K, 0, 0, BLOCK_ACCEPT);
        return;
    }
    size_t mid = lo + (hi - lo) / 2;
    block_emit(b, BPF_JMP | BPF_JEQ | BPF_K, 0, 1, b->v[mid]);
    block_emit(b, BPF_RET | BPF_K, 0, 0, 0);
    block_emit(b, BPF_JMP | BPF_JGT | BPF_K, 0, 1, b->v[mid]);
    unsigned ja = b->n;
    block_emit(b, BPF_JMP | BPF_JA, 0, 0, 0); /* to the right subtree */
    block_tree(b, lo, mid);
    b->prog[ja].k = b->n - ja - 1;
    block_tree(b, mid + 1, hi);
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

struct sock_filter *bpfblock_compile(const uint32_t *v4, size_t n, unsigned short *len)
{
    *len = 0;
    if (!n)
        return NULL;
    uint32_t *v = malloc(n * sizeof *v);
    /* Per address 4 instructions and a leaf, one more leaf, the load. */
    struct sock_filter *prog = malloc((5 * n + 2) * sizeof *prog);
    if (!v || !prog) {
        free(v);
        free(prog);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = ntohl(v4[i]);
    qsort(v, n, sizeof *v, u32_cmp);
    struct block_build b = {.prog = prog, .v = v};
    /* The IPv4 source address, from the network header. */
    block_emit(&b, BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)(SKF_NET_OFF + 12));
    block_tree(&b, 0, n);
    free(v);
    *len = (unsigned short)b.n;
    return prog;
}

static bool socket_is_v4(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    return getsockname(fd, (struct sockaddr *)&ss, &len) == 0 && ss.ss_family == AF_INET;
}

int bpfblock_attach(int fd, const struct sock_filter *prog, unsigned short len)
{
    if (!socket_is_v4(fd))
        return 0;
    if (!prog) {
        int dummy = 0;
        if (setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &dummy, sizeof dummy) < 0 &&
            errno != ENOENT)
            return -1;
        return 0;
    }
    struct sock_fprog fprog = {.len = len, .filter = (struct sock_filter *)prog};
    return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog);
}
