/* Unit tests for the agent's client-transaction helpers (core/sip/agent.c):
 * a request sent from a libevent timer of ours, outside sofia's callbacks,
 * is retransmitted on time (sipagent_request() re-arms the event port), and
 * a request nta cannot send is answered, never from inside
 * sipagent_request().
 *
 * Each case runs a real nta agent on 127.0.0.1 over the evport, with
 * T1 = 100 ms, against a plain UDP socket that never answers. */
#define NTA_OUTGOING_MAGIC_T struct probe

#include "check.h"
#include "config.h"
#include "evport.h"
#include "sip/agent.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su.h>

struct probe {
    struct event_base *base;
    struct sipagent *agent;
    const char *uri;
    bool in_request; /* inside sipagent_request() */
    bool early;      /* the callback ran inside it */
    int status;      /* final status from the callback, or the refusal */
    bool refused;    /* sipagent_request() returned NULL */
    nta_outgoing_t *orq;
    int received; /* datagrams at the silent peer */
};

static int on_response(struct probe *p, nta_outgoing_t *orq, sip_t const *sip)
{
    if (p->in_request)
        p->early = true;
    int st =
        sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
    if (st >= 200) {
        p->status = st;
        if (orq == p->orq)
            p->orq = NULL;
        nta_outgoing_destroy(orq);
        event_base_loopbreak(p->base);
    }
    return 0;
}

/* A libevent timer of ours: outside every sofia callback. */
static void send_from_timer(evutil_socket_t fd, short what, void *arg)
{
    struct probe *p = arg;
    (void)fd;
    (void)what;
    int refused = 0;
    p->in_request = true;
    p->orq = sipagent_request(p->agent, &refused, NULL, on_response, p, NULL,
                              SIP_METHOD_OPTIONS, URL_STRING_MAKE(p->uri),
                              SIPTAG_TO_STR(p->uri),
                              SIPTAG_FROM_STR("<sip:test@127.0.0.1>"), TAG_END());
    p->in_request = false;
    if (!p->orq) {
        p->refused = true;
        p->status = refused;
        event_base_loopbreak(p->base);
    }
}

static void on_datagram(evutil_socket_t fd, short what, void *arg)
{
    struct probe *p = arg;
    char buf[4096];
    (void)what;
    if (recv(fd, buf, sizeof buf, 0) > 0)
        p->received++;
}

static void stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

/* A UDP socket on 127.0.0.1 that reads and never answers; its port. */
static int silent_socket(int *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    CHECK(bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sin, &len) == 0);
    *port = ntohs(sin.sin_port);
    return fd;
}

struct fixture {
    struct event_base *base;
    su_root_t *root;
    struct sipagent *agent;
};

static bool setup(struct fixture *f)
{
    CHECK(su_init() == 0);
    f->base = event_base_new();
    event_base_priority_init(f->base, 3);
    f->root = evport_root_create(f->base, NULL);
    CHECK(f->root != NULL);
    /* A free port for the agent: taken from the kernel, then given back. */
    int port = 0;
    close(silent_socket(&port));
    char listen_spec[64];
    snprintf(listen_spec, sizeof listen_spec, "udp:127.0.0.1:%d", port);
    char *v[] = {listen_spec};
    struct strlist listen = {1, v};
    f->agent = NULL;
    CHECK(f->root && sipagent_create(&f->agent, f->root, &listen, 100, NULL) == 0);
    return f->agent != NULL;
}

static void teardown(struct fixture *f)
{
    sipagent_destroy(f->agent);
    if (f->root)
        su_root_destroy(f->root);
    event_base_free(f->base);
    su_deinit();
}

/* Sent from our own timer: nta's retransmission timer is seen at once, so
 * the REQUEST goes out at 0, 100, 300 and 700 ms (T1 doubling) within the
 * first second. Without the re-arm, the port would sleep until some other
 * event and only the first transmission would leave. */
static void request_from_timer_retransmits(void)
{
    struct fixture f;
    if (!setup(&f)) {
        teardown(&f);
        return;
    }
    int port;
    int fd = silent_socket(&port);
    char uri[64];
    snprintf(uri, sizeof uri, "sip:peer@127.0.0.1:%d", port);
    struct probe p = {.base = f.base, .agent = f.agent, .uri = uri};
    struct event *rx = event_new(f.base, fd, EV_READ | EV_PERSIST, on_datagram, &p);
    event_add(rx, NULL);
    struct event *go = evtimer_new(f.base, send_from_timer, &p);
    struct timeval now = {0, 0}, second = {1, 0};
    evtimer_add(go, &now);
    struct event *end = evtimer_new(f.base, stop, f.base);
    evtimer_add(end, &second);
    event_base_dispatch(f.base);
    CHECK(p.orq != NULL);
    CHECK(!p.early);
    CHECK(p.received >= 3);
    if (p.received < 3)
        fprintf(stderr, "  %d transmissions in 1 s, want 4 (0, 100, 300, 700 ms)\n",
                p.received);
    nta_outgoing_destroy(p.orq);
    sipagent_after_sofia(f.agent);
    event_free(rx);
    event_free(go);
    event_free(end);
    close(fd);
    teardown(&f);
}

/* No transport for the URI: nta answers 503 itself. The answer comes
 * after sipagent_request() returned, or as its refusal, never inside it. */
static void unsendable_request_is_answered_after_return(void)
{
    struct fixture f;
    if (!setup(&f)) {
        teardown(&f);
        return;
    }
    struct probe p = {
        .base = f.base, .agent = f.agent, .uri = "sip:peer@127.0.0.1:9;transport=sctp"};
    struct event *go = evtimer_new(f.base, send_from_timer, &p);
    struct timeval now = {0, 0}, limit = {2, 0};
    evtimer_add(go, &now);
    struct event *end = evtimer_new(f.base, stop, f.base);
    evtimer_add(end, &limit);
    event_base_dispatch(f.base);
    CHECK(!p.early);
    CHECK(p.status == 503);
    CHECK(p.orq == NULL);
    event_free(go);
    event_free(end);
    teardown(&f);
}

TEST_MAIN(CASE(request_from_timer_retransmits),
          CASE(unsendable_request_is_answered_after_return))
