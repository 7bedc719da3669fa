/* Unit tests for core/log.c's buffering: without a loop each line is
 * written at once; with one, lines wait for the flush timer (a few ms),
 * an error line or a full buffer writes everything before it in order,
 * and detaching writes what is left. Lines stay whole and are cut at 2 KB.
 * And cdr_log()'s line: every field, quoted where needed. */
#include "cdr.h"
#include "check.h"
#include "log.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

static char path[32];
static int saved_stderr = -1;

static void capture(void)
{
    strcpy(path, "/tmp/moon-test-log-XXXXXX");
    int fd = mkstemp(path);
    saved_stderr = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
}

static void release(void)
{
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    unlink(path);
}

/* What was written so far (caller frees). */
static char *written(void)
{
    int fd = open(path, O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    char *text = calloc(1, (size_t)st.st_size + 1);
    ssize_t n = read(fd, text, (size_t)st.st_size);
    (void)n;
    close(fd);
    return text;
}

static size_t count_lines(const char *text)
{
    size_t n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

static void run_loop(struct event_base *base, int ms)
{
    struct timeval tv = {0, ms * 1000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static void test_buffering(void)
{
    capture();
    log_set_level(LOG_INFO);
    log_info("test", "before the loop");
    char *t = written();
    CHECK_STR_CONTAINS(t, "info  test     before the loop\n");
    free(t);

    struct event_base *base = event_base_new();
    CHECK(log_attach_loop(base) == 0);
    log_info("test", "buffered %d", 1);
    log_warn("test", "buffered %d", 2);
    log_debug("test", "not at info");
    t = written();
    CHECK(strstr(t, "buffered") == NULL);
    free(t);
    run_loop(base, 30);
    t = written();
    CHECK_STR_CONTAINS(t, "info  test     buffered 1\n");
    CHECK_STR_CONTAINS(t, "warn  test     buffered 2\n");
    CHECK(strstr(t, "not at info") == NULL);
    free(t);

    /* An error line takes what is before it along, at once. */
    log_info("test", "before the error");
    log_error("test", "the error\n");
    t = written();
    char *before = strstr(t, "before the error"),
         *err = strstr(t, "error test     the error\n");
    CHECK(before && err && before < err);
    free(t);

    /* A long line is cut, still ends with one newline. */
    char big[4000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    log_info("test", "%s", big);
    log_detach_loop();
    t = written();
    char *line = strstr(t, "xxxx");
    CHECK(line && strchr(line, '\n') && strchr(line, '\n') - line < 2048);
    free(t);

    /* More than the buffer holds in one turn: written as it fills, all
     * lines there and in order. */
    CHECK(log_attach_loop(base) == 0);
    size_t lines_before = 0;
    t = written();
    lines_before = count_lines(t);
    free(t);
    for (int i = 0; i < 2000; i++)
        log_info("test", "line %04d of a burst longer than the buffer", i);
    t = written();
    size_t mid = count_lines(t) - lines_before;
    CHECK(mid > 0 && mid < 2000);
    free(t);
    log_detach_loop();
    t = written();
    CHECK(count_lines(t) - lines_before == 2000);
    char *first = strstr(t, "line 0000"), *last = strstr(t, "line 1999");
    CHECK(first && last && first < last);
    free(t);

    event_base_free(base);
    release();
}

static void test_cdr_line(void)
{
    capture();
    log_set_level(LOG_INFO);
    struct cdr c = {.call_id = "abc@host",
                    .caller = "4420",
                    .callee = "0044 20",
                    .mapping_gateway = "cust-a",
                    .start = 1700000000,
                    .stop = 1700000005,
                    .status = 503,
                    .reason = "Service \"Unavailable\"",
                    .hangup = "switch"};
    cdr_log(&c, 42);
    char *t = written();
    CHECK_STR_CONTAINS(t,
                       "info  call     42 ended: status=503 reason=\"Service "
                       "\\\"Unavailable\\\"\" hangup=switch duration=0 caller=4420 "
                       "callee=\"0044 20\" routed_callee=\"\" mapping_gateway=cust-a "
                       "routing_gateway=\"\" start=1700000000 answer=0 stop=1700000005 "
                       "call_id=abc@host\n");
    free(t);
    log_set_level(LOG_WARN);
    cdr_log(&c, 43);
    t = written();
    CHECK(strstr(t, "43 ended") == NULL);
    free(t);
    log_set_level(LOG_INFO);
    release();
}

TEST_MAIN(CASE(test_buffering), CASE(test_cdr_line))
