/* Rank-aware logging and progress lines with rate and ETA. */
#include "util/log.h"

#include <stdarg.h>
#include <time.h>

static int g_rank = 0, g_nranks = 1;
static FILE *g_tee = NULL;

void log_init(int rank, int nranks)
{
    g_rank = rank;
    g_nranks = nranks;
}

int log_rank(void) { return g_rank; }

void log_tee(FILE *f) { g_tee = f; }

static void vlog(const char *tag, const char *fmt, va_list ap)
{
    char line[4096];
    vsnprintf(line, sizeof line, fmt, ap);
    if (g_nranks > 1 && g_rank != 0)
        fprintf(stderr, "[rank %d] %s%s\n", g_rank, tag, line);
    else
        fprintf(stderr, "%s%s\n", tag, line);
    if (g_tee && g_rank == 0) {
        fprintf(g_tee, "%s%s\n", tag, line);
        fflush(g_tee);
    }
}

void log_info(const char *fmt, ...)
{
    if (g_rank != 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog("", fmt, ap);
    va_end(ap);
}

void log_warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("warning: ", fmt, ap);
    va_end(ap);
}

void log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog("error: ", fmt, ap);
    va_end(ap);
}

double wall_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void format_duration(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void progress_start(progress_t *p, const char *label, const char *unit, int64_t total)
{
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->t_start = p->t_last = wall_seconds();
    p->every_s = 2.0;
}

static void progress_print(progress_t *p, int64_t done, int64_t tokens, double now, int final)
{
    double dt = now - p->t_start;
    double rate = dt > 0 ? (double)done / dt : 0;
    char line[512];
    int k = snprintf(line, sizeof line, "[%s] %lld", p->label, (long long)done);
    if (p->total > 0)
        k += snprintf(line + k, sizeof line - (size_t)k, "/%lld %s %3.0f%%",
                      (long long)p->total, p->unit, 100.0 * (double)done / (double)p->total);
    else
        k += snprintf(line + k, sizeof line - (size_t)k, " %s", p->unit);
    k += snprintf(line + k, sizeof line - (size_t)k, "  %.1f %s/s", rate, p->unit);
    if (tokens > 0 && dt > 0)
        k += snprintf(line + k, sizeof line - (size_t)k, "  %.3gk tok/s",
                      (double)tokens / dt / 1e3);
    char d[32];
    if (final) {
        format_duration(d, sizeof d, dt);
        snprintf(line + k, sizeof line - (size_t)k, "  done in %s", d);
    } else if (p->total > 0 && rate > 0) {
        format_duration(d, sizeof d, (double)(p->total - done) / rate);
        snprintf(line + k, sizeof line - (size_t)k, "  ETA %s", d);
    }
    log_info("%s", line);
}

void progress_update(progress_t *p, int64_t done, int64_t tokens)
{
    double now = wall_seconds();
    if (now - p->t_last < p->every_s)
        return;
    p->t_last = now;
    progress_print(p, done, tokens, now, 0);
}

void progress_end(progress_t *p, int64_t done, int64_t tokens)
{
    progress_print(p, done, tokens, wall_seconds(), 1);
}
