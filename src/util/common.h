/* Error reporting and small helpers shared by every layer of deft.
 * Library code never exits: it fills a deft_err_t and returns its code;
 * only the CLI (src/cli) turns a code into a process exit status. */
#ifndef DEFT_COMMON_H
#define DEFT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

typedef enum {
    DEFT_OK = 0,
    DEFT_ERR_USAGE,    /* bad command line, config key, type or range */
    DEFT_ERR_IO,       /* a file cannot be opened, read, written or renamed */
    DEFT_ERR_FORMAT,   /* an input file is malformed (JSON, safetensors, HDF5 ...) */
    DEFT_ERR_DATA,     /* the data cannot be used (strict mode, a side with no tokens) */
    DEFT_ERR_NOMEM,
    DEFT_ERR_MPI,
    DEFT_ERR_INTERNAL,
    DEFT_HELP,         /* not an error: --help was printed, exit 0 */
    DEFT_STOPPED,      /* a stop signal ended a stage that keeps nothing: exit 1 */
} deft_code_t;

/* Message says what failed and where: file, line of input, field, value. */
typedef struct {
    deft_code_t code;
    char msg[2048];
} deft_err_t;

/* Sets err (when non-NULL) and returns code, so callers write
 *     return deft_fail(err, DEFT_ERR_IO, "%s: cannot open: %s", path, strerror(errno)); */
int deft_fail(deft_err_t *err, deft_code_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Process exit status for a code: 0 ok/help, 1 runtime (io, nomem, mpi, internal)
 * or stopped by a signal, 2 usage or config, 3 data or format. */
int deft_exit_status(deft_code_t code);

const char *deft_code_name(deft_code_t code);

/* Allocation that aborts with a message on exhaustion. Used for bookkeeping-sized
 * allocations; large tensors go through the backend, which reports DEFT_ERR_NOMEM. */
/* Refuses an output path that names an existing input file (the same file by
 * device and inode, however the two paths are spelt): writing the output
 * would destroy the input. `what` names the output in the message ("--out");
 * DEFT_ERR_USAGE when they are one file, DEFT_OK otherwise (also when either
 * does not exist yet). */
int deft_check_not_input(const char *out, const char *in, const char *what, deft_err_t *err);

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Growable byte buffer. */
typedef struct {
    char *data;
    size_t len, cap;
} strbuf_t;

void sb_append(strbuf_t *sb, const char *s, size_t n);
void sb_puts(strbuf_t *sb, const char *s);
void sb_printf(strbuf_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_free(strbuf_t *sb);

#define DEFT_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
