/* parsefix: corrections to sofia-sip's message parser, for requests that
 * are valid SIP but that sofia drops or answers in the wrong place.
 *
 * sofia-sip parses each message before nta sees it, and nta then drops or
 * answers some requests on its own, before any callback of ours runs. Four
 * cases are wrong there, and parsefix.c corrects them by giving the running
 * switch its own definitions of two of sofia's public functions, which the
 * library's own calls reach (ELF symbol interposition; sofia calls both
 * through its PLT):
 *
 *   sip_method_d  accepts every RFC 3261 token character in a method name
 *                 (sofia refuses '+' and '`', so "A+B" in the request line
 *                 or CSeq made the whole message garbage);
 *   msg_extract   before sofia parses the headers, an escaped NUL in a
 *                 quoted string ("\" NUL, a valid quoted-pair that sofia's
 *                 NUL-terminated parser cuts the header at) becomes "\?";
 *                 after it parsed a request, the top Via's transport is set
 *                 to the one the request came over (nta silently drops a
 *                 "SIP/2.0/TLS" Via that came over TCP), and a request whose
 *                 SIP version is not 2.0 gets the received/rport of its
 *                 source on its Via, so that nta's 505 over UDP goes back to
 *                 the sender rather than to the Via's sent-by port.
 *
 * Both run in the event loop's thread, cost O(length of the header block)
 * and allocate only what sofia would (the Via parameters, from the
 * message's own home). Nothing here is owned by anyone: there is no state
 * but one flag and the address of sofia's msg_extract.
 *
 * parsefix_check() tells whether the corrections are in effect: a build
 * that links sofia statically, or a sofia bound with -Bsymbolic, would call
 * its own functions and behave as sofia alone does. */
#ifndef MOON_SIP_PARSEFIX_H
#define MOON_SIP_PARSEFIX_H

#include <stdbool.h>

/* Parse a probe message through sofia; true when both corrections are in
 * effect. Logs a warning when they are not. Cheap; called once at start. */
bool parsefix_check(void);

/* Whether every stream connection the switch accepts is plain TCP (no TLS
 * listener): only then is a stream request's Via transport set to TCP.
 * Default false: Via transports of stream requests are left as they are. */
void parsefix_set_streams_tcp(bool tcp);

#endif
