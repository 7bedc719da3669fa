/* The control socket: a unix stream socket (mode 0600) through which moonctl
 * sends Lua chunks to the running switch.
 *
 * Wire protocol (all integers big-endian):
 *   request : u8 mode ('e' = evaluate as given, 'i' = interactive: also try
 *             "return " .. chunk first, and pretty-print), u32 length, chunk
 *   response: any number of output frames (u8 CONTROL_OUTPUT, u32 length,
 *             text the chunk printed, in the order printed), then one
 *             answer frame: u8 status (OK, ERROR or INCOMPLETE), u32
 *             length, text
 * A connection may carry any number of requests, answered in order. moonctl
 * and this module speak the same version of the protocol: they are built
 * together.
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
    CONTROL_OUTPUT = 3,     /* text the chunk printed; its answer follows */
};

enum control_mode { CONTROL_EVAL = 'e', CONTROL_INTERACTIVE = 'i' };

#define CONTROL_MAX_CHUNK (1u << 20)
/* Printed text waiting for a client beyond this is dropped (a client that
 * does not read must not grow the switch's memory); the client is told how
 * many bytes went missing. */
#define CONTROL_MAX_PENDING_OUTPUT (4u << 20)

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

/* Send text the request's chunk printed, ahead of its answer: an output
 * frame, written as soon as the client reads. Costs a copy of the text in
 * the client's output buffer. Dropped when the client went away, and
 * counted as dropped while more than CONTROL_MAX_PENDING_OUTPUT bytes wait
 * for it. */
void control_output(struct control_request *req, const char *text, size_t len);

/* Answer a request and free it. If its client went away, the answer is
 * dropped. */
void control_reply(struct control_request *req, enum control_status status,
                   const char *text, size_t len);

#endif
