/* Error codes, checked allocation and a growable string buffer. */
#include "util/common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int deft_fail(deft_err_t *err, deft_code_t code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int deft_exit_status(deft_code_t code)
{
    switch (code) {
    case DEFT_OK:
    case DEFT_HELP:
        return 0;
    case DEFT_ERR_USAGE:
        return 2;
    case DEFT_ERR_FORMAT:
    case DEFT_ERR_DATA:
        return 3;
    default:
        return 1;
    }
}

int deft_check_not_input(const char *out, const char *in, const char *what, deft_err_t *err)
{
    struct stat so, si;
    if (!out || !in || stat(out, &so) != 0 || stat(in, &si) != 0 || S_ISDIR(si.st_mode))
        return DEFT_OK;
    if (so.st_dev != si.st_dev || so.st_ino != si.st_ino)
        return DEFT_OK;
    return deft_fail(err, DEFT_ERR_USAGE, "%s %s: this is the input file %s; writing it would "
                     "destroy the input: give another output path", what, out, in);
}

const char *deft_code_name(deft_code_t code)
{
    static const char *names[] = {"ok", "usage error", "I/O error", "format error",
                                  "data error", "out of memory", "MPI error",
                                  "internal error", "help", "stopped by a signal"};
    return (unsigned)code < DEFT_ARRAY_LEN(names) ? names[code] : "unknown error";
}

static void die_oom(size_t n)
{
    fprintf(stderr, "deft: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die_oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        die_oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die_oom(n);
    return q;
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

void sb_append(strbuf_t *sb, const char *s, size_t n)
{
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 64;
        while (cap < sb->len + n + 1)
            cap *= 2;
        sb->data = xrealloc(sb->data, cap);
        sb->cap = cap;
    }
    memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
}

void sb_puts(strbuf_t *sb, const char *s) { sb_append(sb, s, strlen(s)); }

void sb_printf(strbuf_t *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    char *tmp = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(tmp, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_append(sb, tmp, (size_t)n);
    free(tmp);
}

void sb_free(strbuf_t *sb)
{
    free(sb->data);
    sb->data = NULL;
    sb->len = sb->cap = 0;
}
