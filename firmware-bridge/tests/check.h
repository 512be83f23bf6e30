/* check.h — the smallest test harness: CHECK counts failures, main returns them. */
#ifndef LB_CHECK_H
#define LB_CHECK_H

#include <stdio.h>

static int check_failures;
static int check_count;
static const char *check_context = "";

#define CHECK(cond)                                                                 \
    do {                                                                            \
        check_count++;                                                              \
        if (!(cond)) {                                                              \
            check_failures++;                                                       \
            fprintf(stderr, "%s:%d: %s%sCHECK(%s) failed\n", __FILE__, __LINE__,    \
                    check_context, *check_context ? ": " : "", #cond);              \
        }                                                                           \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                          \
    do {                                                                            \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);             \
        check_count++;                                                              \
        if (check_a_ != check_b_) {                                                 \
            check_failures++;                                                       \
            fprintf(stderr, "%s:%d: %s%s%s == %lld, expected %s == %lld\n", __FILE__, \
                    __LINE__, check_context, *check_context ? ": " : "", #a,        \
                    check_a_, #b, check_b_);                                        \
        }                                                                           \
    } while (0)

static int check_report(const char *suite)
{
    if (check_failures)
        fprintf(stderr, "%s: %d of %d checks FAILED\n", suite, check_failures, check_count);
    else
        printf("%s: all %d checks passed\n", suite, check_count);
    return check_failures ? 1 : 0;
}

#endif
