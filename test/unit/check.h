/* A minimal unit-test harness: CHECK() records a failure with file:line and
 * goes on; TEST_MAIN runs a table of test functions and exits non-zero if any
 * check failed. */
#ifndef MOON_CHECK_H
#define MOON_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);  \
            check_failures++;                                                         \
        }                                                                             \
    } while (0)

#define CHECK_STR_CONTAINS(hay, needle)                                               \
    do {                                                                              \
        const char *h_ = (hay);                                                       \
        if (!h_ || !strstr(h_, (needle))) {                                           \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__,      \
                    __LINE__, h_ ? h_ : "(null)", (needle));                          \
            check_failures++;                                                         \
        }                                                                             \
    } while (0)

struct check_case {
    const char *name;
    void (*fn)(void);
};

#define TEST_MAIN(...)                                                                \
    int main(void)                                                                    \
    {                                                                                 \
        static const struct check_case cases[] = {__VA_ARGS__};                       \
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {                 \
            int before = check_failures;                                              \
            cases[i].fn();                                                            \
            printf("%s %s\n", check_failures == before ? "ok  " : "FAIL",             \
                   cases[i].name);                                                    \
        }                                                                             \
        return check_failures ? 1 : 0;                                                \
    }
#define CASE(fn) {#fn, fn}

#endif
