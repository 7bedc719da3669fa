/* The control socket: a unix stream socket (mode 0600) through which moonctl
 * sends Lua chunks to the running switch.
 *
 * Wire protocol (all integers big-endian):
 *   request : u8 mode ('e' = evaluate as given, 'i' = interactive: also try
 *             "return " .. chunk first, and pretty-print), u32 length, chunk
 *   response: u8 status (enum control_status), u32 length, text
 * A connection may carry any number of requests, answered in order.
 *
 * The control module knows nothing of Lua: it hands each chunk to an
 * evaluation callback, which answers, now or later, with control_reply(). */
#ifndef MOON_CONTROL_H
#define MOON_CONTROL_H

#include <stddef.h>

struct event_base;
struct control;
struct control_request;

enum control_status {
    CONTROL_OK = 0,         /* text: the returned values, one per line */
    CONTROL_ERROR = 1,      /* text: the error message */
    CONTROL_INCOMPLETE = 2, /* the chunk is unfinished; send more lines */
};

enum control_mode { CONTROL_EVAL = 'e', CONTROL_INTERACTIVE = 'i' };

#define CONTROL_MAX_CHUNK (1u << 20)

/* Called once per request. `chunk` is valid only during the call. The
 * request must be answered exactly once with control_reply(), which may
 * happen after the callback returns (for chunks that sleep). */
typedef void control_eval_h(struct control_request *req, enum control_mode mode,
                            const char *chunk, size_t len, void *arg);

/* Listen on `path`. A stale socket file left by a dead switch is replaced;
 * one that a live switch answers on is an error (-EADDRINUSE). */
int control_open(struct control **cp, struct event_base *base, const char *path,
                 control_eval_h *eval, void *arg);

/* Stop listening, unlink the socket, drop clients. Requests not yet answered
 * stay valid until answered; their answers are then discarded. */
void control_close(struct control *c);

/* Answer a request and free it. If its client went away, the answer is
 * dropped. */
void control_reply(struct control_request *req, enum control_status status,
                   const char *text, size_t len);

#endif
