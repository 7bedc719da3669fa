/* SIP responses counted by status at sofia's transports. See statuscount.h. */
#include "sip/statuscount.h"

#include <dlfcn.h>
#include <stddef.h>

#include <sofia-sip/msg.h>
#include <sofia-sip/sip.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_time.h>
#include <sofia-sip/tport.h>

#define SLOTS (STATUSCOUNT_MAX - STATUSCOUNT_MIN + 1)

static uint64_t received[SLOTS], sent[SLOTS];
static bool hooked;

static void count(uint64_t *slots, msg_t *msg)
{
    sip_t const *sip = msg ? sip_object(msg) : NULL;
    int status = sip && sip->sip_status ? sip->sip_status->st_status : 0;
    if (status >= STATUSCOUNT_MIN && status <= STATUSCOUNT_MAX)
        slots[status - STATUSCOUNT_MIN]++;
}

void statuscount_add(bool in, int status)
{
    if (status >= STATUSCOUNT_MIN && status <= STATUSCOUNT_MAX)
        (in ? received : sent)[status - STATUSCOUNT_MIN]++;
}

uint64_t statuscount_get(bool in, int status)
{
    if (status < STATUSCOUNT_MIN || status > STATUSCOUNT_MAX)
        return 0;
    return (in ? received : sent)[status - STATUSCOUNT_MIN];
}

bool statuscount_hooked(void)
{
    return hooked;
}

/* sofia's (tport.c), not in its installed headers. */
typedef struct tport_compressor tport_compressor_t;
void tport_deliver(tport_t *self, msg_t *msg, msg_t *next, tport_compressor_t *sc,
                   su_time_t now);
void tport_sent_message(tport_t *self, msg_t *msg, int error);

void tport_deliver(tport_t *self, msg_t *msg, msg_t *next, tport_compressor_t *sc,
                   su_time_t now)
{
    static void (*sofia)(tport_t *, msg_t *, msg_t *, tport_compressor_t *, su_time_t);
    if (!sofia)
        *(void **)&sofia = dlsym(RTLD_NEXT, "tport_deliver");
    hooked = true;
    count(received, msg); /* before sofia's: the stack may free msg */
    if (sofia)
        sofia(self, msg, next, sc, now);
}

void tport_sent_message(tport_t *self, msg_t *msg, int error)
{
    static void (*sofia)(tport_t *, msg_t *, int);
    if (!sofia)
        *(void **)&sofia = dlsym(RTLD_NEXT, "tport_sent_message");
    hooked = true;
    if (error == 0)
        count(sent, msg);
    if (sofia)
        sofia(self, msg, error);
}
