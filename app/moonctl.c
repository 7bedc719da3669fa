/* moonctl: talk to a running switch over its control socket.
 *
 *   moonctl [--control PATH] [-e CHUNK]
 *
 * With -e, evaluate one Lua chunk and exit: 0 if it ran (its values on
 * stdout), 1 if it failed (the error on stderr), 2 if no switch answered.
 * What the chunk prints comes on stdout as it is printed, before its
 * values or its error.
 * Without -e, a read-eval-print loop: lines are sent in interactive mode, and
 * while the switch says a chunk is incomplete, more lines are read with a
 * continuation prompt. History persists in $HOME/.moonctl_history.
 *
 * Uses only libc and libedit; control.h is included for the protocol's
 * constants alone. */
#include "control.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <editline/readline.h>

#define DEFAULT_CONTROL "var/control.sock"
#define USAGE "usage: moonctl [--control PATH] [-e CHUNK]\n"
#define PROMPT "moon> "
#define PROMPT_MORE "  >> "
#define HISTORY_FILE ".moonctl_history"
#define HISTORY_MAX 1000

/* Exit statuses. */
#define EXIT_OK 0
#define EXIT_LUA_ERROR 1
#define EXIT_NO_SWITCH 2

static const char *control_path = DEFAULT_CONTROL;

/* A reply from the switch; `text` is malloc'd and NUL-terminated. */
struct reply {
    int status;
    char *text;
    size_t len;
};

static int connect_switch(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "moonctl: no switch answers on %s: %s\n", path,
                strerror(ENAMETOOLONG));
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "moonctl: socket: %s\n", strerror(errno));
        return -1;
    }
    int r;
    do
        r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        fprintf(stderr, "moonctl: no switch answers on %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Write all of buf; 0, or -1 with errno set (EPIPE: the switch went away;
 * MSG_NOSIGNAL keeps that from being a SIGPIPE). */
static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Read exactly len bytes: 0, 1 at end of stream, -1 with errno set. */
static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t r = read(fd, p, len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            return 1;
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

static int send_request(int fd, char mode, const char *chunk, size_t len)
{
    if (len > CONTROL_MAX_CHUNK) {
        errno = EMSGSIZE;
        return -1;
    }
    unsigned char hdr[5] = {(unsigned char)mode, (unsigned char)(len >> 24),
                            (unsigned char)(len >> 16), (unsigned char)(len >> 8),
                            (unsigned char)len};
    if (write_all(fd, hdr, sizeof hdr) < 0)
        return -1;
    return write_all(fd, chunk, len);
}

/* Read one reply. 0 on success, or -1 after printing why (the switch closed
 * the connection or the read failed). */
static int read_reply(int fd, struct reply *rp)
{
    unsigned char hdr[5];
    int r = read_all(fd, hdr, sizeof hdr);
    if (r == 0) {
        rp->status = hdr[0];
        rp->len = (size_t)hdr[1] << 24 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 8 |
                  (size_t)hdr[4];
        rp->text = malloc(rp->len + 1);
        if (!rp->text) {
            fprintf(stderr, "moonctl: out of memory for a %zu byte reply\n", rp->len);
            return -1;
        }
        r = read_all(fd, rp->text, rp->len);
        if (r == 0) {
            rp->text[rp->len] = '\0';
            return 0;
        }
        free(rp->text);
        rp->text = NULL;
    }
    if (r > 0)
        fprintf(stderr, "moonctl: the switch closed the connection without answering\n");
    else
        fprintf(stderr, "moonctl: reading from the switch: %s\n", strerror(errno));
    return -1;
}

/* Read the answer to a request: print the output frames that come first
 * (what the chunk printed) on stdout as they arrive, and return the answer
 * frame as read_reply does. */
static int read_answer(int fd, struct reply *rp)
{
    for (;;) {
        if (read_reply(fd, rp) < 0)
            return -1;
        if (rp->status != CONTROL_OUTPUT)
            return 0;
        fwrite(rp->text, 1, rp->len, stdout);
        fflush(stdout);
        free(rp->text);
        rp->text = NULL;
    }
}

/* Print text, ending it with a newline if it lacks one. Empty text prints
 * nothing. */
static void print_text(FILE *f, const char *text, size_t len)
{
    if (len == 0)
        return;
    fwrite(text, 1, len, f);
    if (text[len - 1] != '\n')
        fputc('\n', f);
    fflush(f);
}

static int run_eval(const char *chunk)
{
    int fd = connect_switch(control_path);
    if (fd < 0)
        return EXIT_NO_SWITCH;
    if (send_request(fd, CONTROL_EVAL, chunk, strlen(chunk)) < 0) {
        fprintf(stderr, "moonctl: sending to the switch: %s\n", strerror(errno));
        close(fd);
        return EXIT_NO_SWITCH;
    }
    struct reply rp;
    if (read_answer(fd, &rp) < 0) {
        close(fd);
        return EXIT_NO_SWITCH;
    }
    close(fd);
    int code;
    switch (rp.status) {
    case CONTROL_OK:
        print_text(stdout, rp.text, rp.len);
        code = EXIT_OK;
        break;
    case CONTROL_ERROR:
    case CONTROL_INCOMPLETE:
        print_text(stderr, rp.text, rp.len);
        code = EXIT_LUA_ERROR;
        break;
    default:
        fprintf(stderr, "moonctl: unknown reply status %d\n", rp.status);
        print_text(stderr, rp.text, rp.len);
        code = EXIT_LUA_ERROR;
        break;
    }
    free(rp.text);
    if (fflush(stdout) != 0 && code == EXIT_OK) {
        fprintf(stderr, "moonctl: writing output: %s\n", strerror(errno));
        code = EXIT_LUA_ERROR;
    }
    return code;
}

/* Line input: libedit with prompts and history on a terminal, plain getline
 * otherwise (so piped input gives clean output). Returns a malloc'd line
 * without its newline, or NULL at end of input. */
static bool interactive_tty;

static char *next_line(const char *prompt)
{
    if (interactive_tty)
        return readline(prompt);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0) {
        free(line);
        return NULL;
    }
    if (n > 0 && line[n - 1] == '\n')
        line[n - 1] = '\0';
    return line;
}

static char *history_path(void)
{
    const char *home = getenv("HOME");
    if (!home || !*home)
        return NULL;
    size_t n = strlen(home) + sizeof HISTORY_FILE + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", home, HISTORY_FILE);
    return p;
}

/* Rewrite the history file (at most HISTORY_MAX entries, as stifled), private
 * to the user: chunks may hold secrets. Rewriting rather than appending keeps
 * the file in the one format libedit reads back, and the cap exact. */
static void save_history(const char *path)
{
    if (!path)
        return;
    mode_t old = umask(077);
    write_history(path);
    umask(old);
}

static int run_repl(void)
{
    int fd = connect_switch(control_path);
    if (fd < 0)
        return EXIT_NO_SWITCH;
    interactive_tty = isatty(STDIN_FILENO);
    char *hist = NULL;
    if (interactive_tty) {
        using_history();
        stifle_history(HISTORY_MAX);
        hist = history_path();
        if (hist)
            read_history(hist);
    }

    int code = EXIT_OK;
    char *line;
    while ((line = next_line(PROMPT)) != NULL) {
        if (line[strspn(line, " \t\r")] == '\0') {
            free(line);
            continue;
        }
        char *chunk = line;
        size_t len = strlen(chunk);
        struct reply rp = {0};
        for (;;) {
            if (send_request(fd, CONTROL_INTERACTIVE, chunk, len) < 0) {
                if (errno == EMSGSIZE) {
                    fprintf(stderr, "moonctl: chunk longer than %u bytes\n",
                            CONTROL_MAX_CHUNK);
                    rp.status = -1;
                    break;
                }
                fprintf(stderr, "moonctl: the switch went away: %s\n", strerror(errno));
                code = EXIT_NO_SWITCH;
                break;
            }
            if (read_answer(fd, &rp) < 0) {
                code = EXIT_NO_SWITCH;
                break;
            }
            if (rp.status != CONTROL_INCOMPLETE)
                break;
            free(rp.text);
            rp.text = NULL;
            char *more = next_line(PROMPT_MORE);
            if (!more)
                break; /* end of input inside a chunk: drop it and quit */
            size_t mlen = strlen(more);
            char *joined = realloc(chunk, len + 1 + mlen + 1);
            if (!joined) {
                free(more);
                fprintf(stderr, "moonctl: out of memory\n");
                rp.status = -1;
                break;
            }
            chunk = joined;
            chunk[len] = '\n';
            memcpy(chunk + len + 1, more, mlen + 1);
            len += 1 + mlen;
            free(more);
        }
        if (interactive_tty) {
            add_history(chunk);
            save_history(hist);
        }
        free(chunk);
        if (code != EXIT_OK)
            break;
        if (rp.status == CONTROL_INCOMPLETE)
            break; /* EOF in a continuation */
        if (rp.status == CONTROL_OK)
            print_text(stdout, rp.text, rp.len);
        else if (rp.status == CONTROL_ERROR)
            print_text(stderr, rp.text, rp.len);
        else if (rp.text)
            fprintf(stderr, "moonctl: unknown reply status %d\n", rp.status);
        free(rp.text);
    }
    if (interactive_tty && code == EXIT_OK)
        fputc('\n', stdout); /* leave the terminal on a fresh line after ^D */
    free(hist);
    close(fd);
    return code;
}

static void usage(FILE *f)
{
    fputs(USAGE, f);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"control", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *chunk = NULL;
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":e:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            control_path = optarg;
            break;
        case 'e':
            if (chunk) {
                fprintf(stderr, "moonctl: -e given twice\n");
                usage(stderr);
                return 2;
            }
            chunk = optarg;
            break;
        case 'h':
            usage(stdout);
            fputs(
                "\n"
                "  --control PATH  the switch's control socket (default " DEFAULT_CONTROL
                ")\n"
                "  -e CHUNK        evaluate CHUNK and exit: 0 ok, 1 Lua error, 2 no "
                "switch\n"
                "  -h, --help      this text\n"
                "Without -e, read Lua interactively.\n",
                stdout);
            return 0;
        case ':':
            fprintf(stderr, "moonctl: %s needs an argument\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        default:
            if (optopt)
                fprintf(stderr, "moonctl: unknown option -%c\n", optopt);
            else
                fprintf(stderr, "moonctl: unknown option %s\n", argv[optind - 1]);
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "moonctl: unexpected argument %s\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!*control_path) {
        fprintf(stderr, "moonctl: empty control path\n");
        usage(stderr);
        return 2;
    }
    return chunk ? run_eval(chunk) : run_repl();
}
