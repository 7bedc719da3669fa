/* statuscount: SIP responses counted by status code as they cross sofia's
 * transports, received and sent (retransmissions and stateless answers
 * included, over every transport).
 *
 * The hooks are two of sofia's own transport functions, tport_deliver()
 * (each message parsed from the wire, before the stack sees it) and
 * tport_sent_message() (each message once it has been sent), which tport
 * calls through its PLT: statuscount.c defines both, the executable exports
 * them (CMakeLists.txt), and each counts a response's status in a fixed
 * array and calls sofia's own (found with dlsym(RTLD_NEXT)). A program that
 * does not export them (the unit tests) counts nothing. Cost: an array
 * increment per message; no allocation, no formatting. One set of counters
 * per process, on the loop's thread. */
#ifndef MOON_SIP_STATUSCOUNT_H
#define MOON_SIP_STATUSCOUNT_H

#include <stdbool.h>
#include <stdint.h>

#define STATUSCOUNT_MIN 100
#define STATUSCOUNT_MAX 699

/* Responses with `status` (100..699) received (in) or sent (!in) so far. */
uint64_t statuscount_get(bool in, int status);

/* Count a response with `status` received (in) or sent (!in) past sofia's
 * transports (answers sent as text). Statuses outside 100..699 are not
 * counted. O(1). */
void statuscount_add(bool in, int status);

/* Whether sofia's transports have called the hooks at all (false while
 * they are not reached, e.g. when the symbols are not exported). */
bool statuscount_hooked(void);

#endif
