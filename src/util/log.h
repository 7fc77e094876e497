/* Logging for the person running the job: rank 0 speaks, other ranks stay
 * quiet unless something is wrong. Everything goes to stderr; stdout is kept
 * for data a command emits (deft tokenize, deft logprobs). */
#ifndef DEFT_LOG_H
#define DEFT_LOG_H

#include <stdint.h>
#include <stdio.h>

void log_init(int rank, int nranks);
int log_rank(void);

/* Also copy rank 0's log lines into this file (run.log in a run directory). */
void log_tee(FILE *f);

void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));   /* rank 0 */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));   /* any rank */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));  /* any rank */

/* Progress of a long stage, printed by rank 0 at most every `every_s` seconds:
 *   [tokenize]  1,204/2,312 records  52%  812.3 rec/s  1.21M tok/s  ETA 0:01 */
typedef struct {
    const char *label;
    const char *unit;     /* "records", "samples", "steps" */
    int64_t total;        /* <= 0 when unknown: no percentage or ETA */
    double t_start, t_last;
    double every_s;
} progress_t;

double wall_seconds(void);  /* monotonic clock */
void progress_start(progress_t *p, const char *label, const char *unit, int64_t total);
/* done: units finished (globally, when the caller knows it); tokens: tokens so far or 0. */
void progress_update(progress_t *p, int64_t done, int64_t tokens);
void progress_end(progress_t *p, int64_t done, int64_t tokens);

/* "1:02:03" or "4:05" */
void format_duration(char *buf, size_t n, double seconds);

#endif
