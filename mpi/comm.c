/* The comm layer over MPI: init as a singleton or under mpirun, chunked
 * collectives for buffers of any length, rank-ordered double sums, and
 * error agreement between ranks. */
#include "mpi/comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

struct comm {
    MPI_Comm mc;
    int rank, size;
};

static comm_t g_world;
static bool g_inited;

/* 1 GiB: far below MPI's int count limit in bytes, and small enough that the
 * staging buffers of the ordered double sum stay modest. */
#define DEFAULT_MAX_CHUNK ((size_t)1 << 30)
static size_t g_max_chunk = DEFAULT_MAX_CHUNK;

void comm_set_max_chunk_bytes(size_t bytes)
{
    g_max_chunk = bytes ? bytes : DEFAULT_MAX_CHUNK;
}

static size_t chunk_elems(size_t elem_size)
{
    size_t n = g_max_chunk / elem_size;
    return n ? n : 1;
}

static int mpi_fail(deft_err_t *err, int rc, const char *what)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "MPI error code %d", rc);
    return deft_fail(err, DEFT_ERR_MPI, "rank %d: %s failed: %s", g_world.rank, what, msg);
}

int comm_init(int *argc, char ***argv, deft_err_t *err)
{
    if (g_inited)
        return DEFT_OK;
    int already = 0;
    MPI_Initialized(&already);
    if (!already) {
        /* OpenMP threads tokenize and count, but only the main thread calls MPI. */
        int provided = 0;
        int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS)
            return deft_fail(err, DEFT_ERR_MPI, "MPI_Init_thread failed (code %d)", rc);
    }
    g_world.mc = MPI_COMM_WORLD;
    /* Errors come back as codes, so a failure turns into a message naming the call. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world.size);
    log_init(g_world.rank, g_world.size);
    g_inited = true;
    return DEFT_OK;
}

comm_t *comm_world(void) { return &g_world; }

int comm_rank(const comm_t *c) { return c->rank; }

int comm_size(const comm_t *c) { return c->size; }

void comm_finalize(void)
{
    if (!g_inited)
        return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized)
        MPI_Finalize();
    g_inited = false;
}

_Noreturn void comm_abort(comm_t *c, int status, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_error("%s (ending all ranks)", line);
    fflush(stderr);
    if (g_inited)
        MPI_Abort(c ? c->mc : MPI_COMM_WORLD, status);
    exit(status);
}

int comm_barrier(comm_t *c, deft_err_t *err)
{
    int rc = MPI_Barrier(c->mc);
    return rc == MPI_SUCCESS ? DEFT_OK : mpi_fail(err, rc, "MPI_Barrier");
}

int comm_agree(comm_t *c, int mine, int *code, int *first_rank, deft_err_t *err)
{
    /* MAXLOC keeps the lowest rank among those holding the largest value. */
    struct { int value, rank; } in = {mine, c->rank}, out;
    int rc = MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MAXLOC, c->mc);
    if (rc != MPI_SUCCESS)
        return mpi_fail(err, rc, "MPI_Allreduce (error agreement)");
    *code = out.value;
    *first_rank = out.value ? out.rank : -1;
    return DEFT_OK;
}

static int allreduce_i64(comm_t *c, int64_t *buf, size_t n, MPI_Op op, const char *what,
                         deft_err_t *err)
{
    size_t step = chunk_elems(sizeof *buf);
    for (size_t i = 0; i < n; i += step) {
        size_t m = n - i < step ? n - i : step;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)m, MPI_INT64_T, op, c->mc);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, rc, what);
    }
    return DEFT_OK;
}

int comm_allreduce_sum_i64(comm_t *c, int64_t *buf, size_t n, deft_err_t *err)
{
    return allreduce_i64(c, buf, n, MPI_SUM, "MPI_Allreduce (int64 sum)", err);
}

int comm_allreduce_max_i64(comm_t *c, int64_t *buf, size_t n, deft_err_t *err)
{
    return allreduce_i64(c, buf, n, MPI_MAX, "MPI_Allreduce (int64 max)", err);
}

int comm_allreduce_min_i64(comm_t *c, int64_t *buf, size_t n, deft_err_t *err)
{
    return allreduce_i64(c, buf, n, MPI_MIN, "MPI_Allreduce (int64 min)", err);
}

int comm_allreduce_sum_f64(comm_t *c, double *buf, size_t n, deft_err_t *err)
{
    if (c->size == 1)
        return DEFT_OK;
    /* Per chunk: gather every rank's slice to rank 0, add them in rank order,
     * broadcast the result. MPI_SUM on doubles may associate in any order. */
    size_t step = chunk_elems(sizeof *buf * (size_t)c->size);
    /* staging as large as one chunk of this call, not of the largest call */
    size_t most = n < step ? n : step;
    double *all = c->rank == 0 ? xmalloc(sizeof(double) * (most ? most : 1) * (size_t)c->size)
                               : NULL;
    int code = DEFT_OK;
    for (size_t i = 0; i < n && code == DEFT_OK; i += step) {
        size_t m = n - i < step ? n - i : step;
        int rc = MPI_Gather(buf + i, (int)m, MPI_DOUBLE, all, (int)m, MPI_DOUBLE, 0, c->mc);
        if (rc != MPI_SUCCESS) {
            code = mpi_fail(err, rc, "MPI_Gather (ordered double sum)");
            break;
        }
        if (c->rank == 0) {
            for (size_t j = 0; j < m; j++) {
                double s = all[j];
                for (int r = 1; r < c->size; r++)
                    s += all[(size_t)r * m + j];
                buf[i + j] = s;
            }
        }
        rc = MPI_Bcast(buf + i, (int)m, MPI_DOUBLE, 0, c->mc);
        if (rc != MPI_SUCCESS)
            code = mpi_fail(err, rc, "MPI_Bcast (ordered double sum)");
    }
    free(all);
    return code;
}

int comm_bcast_bytes(comm_t *c, void *buf, size_t n, int root, deft_err_t *err)
{
    char *p = buf;
    size_t step = chunk_elems(1);
    for (size_t i = 0; i < n; i += step) {
        size_t m = n - i < step ? n - i : step;
        int rc = MPI_Bcast(p + i, (int)m, MPI_BYTE, root, c->mc);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, rc, "MPI_Bcast (bytes)");
    }
    return DEFT_OK;
}

int comm_bcast_str(comm_t *c, char **s, int root, deft_err_t *err)
{
    /* Length + 1 so that 0 can stand for a NULL string. */
    int64_t len = c->rank == root ? (*s ? (int64_t)strlen(*s) + 1 : 0) : 0;
    int code = comm_bcast_bytes(c, &len, sizeof len, root, err);
    if (code)
        return code;
    if (c->rank != root) {
        free(*s);
        *s = len ? xmalloc((size_t)len) : NULL;
    }
    return len ? comm_bcast_bytes(c, *s, (size_t)len, root, err) : DEFT_OK;
}

int comm_allgather_blobs(comm_t *c, const void *mine, size_t n, comm_blobs_t *out,
                         deft_err_t *err)
{
    memset(out, 0, sizeof *out);
    int64_t *sizes = xcalloc((size_t)c->size, sizeof *sizes);
    int64_t n64 = (int64_t)n;
    int rc = MPI_Allgather(&n64, 1, MPI_INT64_T, sizes, 1, MPI_INT64_T, c->mc);
    if (rc != MPI_SUCCESS) {
        free(sizes);
        return mpi_fail(err, rc, "MPI_Allgather (blob sizes)");
    }
    out->nranks = c->size;
    out->off = xmalloc(sizeof(size_t) * ((size_t)c->size + 1));
    out->off[0] = 0;
    for (int r = 0; r < c->size; r++)
        out->off[r + 1] = out->off[r] + (size_t)sizes[r];
    free(sizes);
    out->data = xmalloc(out->off[c->size] + 1);
    if (n)
        memcpy(out->data + out->off[c->rank], mine, n);
    /* One broadcast per rank, chunked: no int count or displacement can
     * overflow however large the blobs are in total. */
    for (int r = 0; r < c->size; r++) {
        int code = comm_bcast_bytes(c, out->data + out->off[r], out->off[r + 1] - out->off[r],
                                    r, err);
        if (code) {
            comm_blobs_free(out);
            return code;
        }
    }
    return DEFT_OK;
}

void comm_blobs_free(comm_blobs_t *b)
{
    free(b->data);
    free(b->off);
    memset(b, 0, sizeof *b);
}

// ----------------------------------------------------------------------------
// float collectives (tensor parallelism)

int comm_allreduce_sum_f32(comm_t *c, float *buf, size_t n, deft_err_t *err)
{
    int p = c->size, me = c->rank;
    if (p == 1 || n == 0)
        return DEFT_OK;
    /* Per chunk of m floats: block b = [m*b/p, m*(b+1)/p) is summed by rank b
     * from everyone's copy of it, in rank order, then every block goes to all. */
    size_t step = chunk_elems(sizeof *buf * (size_t)p);
    size_t most = n < step ? n : step;   /* the largest chunk of this call */
    int *cnt = xmalloc(sizeof(int) * (size_t)p), *dsp = xmalloc(sizeof(int) * (size_t)p);
    int *rcnt = xmalloc(sizeof(int) * (size_t)p), *rdsp = xmalloc(sizeof(int) * (size_t)p);
    float *in = xmalloc(sizeof(float) * (most / (size_t)p + 1) * (size_t)p);   /* [p, block] */
    float *mine = xmalloc(sizeof(float) * (most / (size_t)p + 1));            /* [block] */
    int code = DEFT_OK;
    for (size_t i = 0; i < n && code == DEFT_OK; i += step) {
        size_t m = n - i < step ? n - i : step;
        for (int b = 0; b < p; b++) {
            dsp[b] = (int)(m * (size_t)b / (size_t)p);
            cnt[b] = (int)(m * (size_t)(b + 1) / (size_t)p) - dsp[b];
        }
        for (int r = 0; r < p; r++) {
            rcnt[r] = cnt[me];
            rdsp[r] = r * cnt[me];
        }
        int rc = MPI_Alltoallv(buf + i, cnt, dsp, MPI_FLOAT, in, rcnt, rdsp, MPI_FLOAT, c->mc);
        if (rc != MPI_SUCCESS) {
            code = mpi_fail(err, rc, "MPI_Alltoallv (ordered float sum)");
            break;
        }
        for (int j = 0; j < cnt[me]; j++) {
            float s = in[j];
            for (int r = 1; r < p; r++)
                s += in[(size_t)r * cnt[me] + j];
            mine[j] = s;
        }
        rc = MPI_Allgatherv(mine, cnt[me], MPI_FLOAT, buf + i, cnt, dsp, MPI_FLOAT, c->mc);
        if (rc != MPI_SUCCESS)
            code = mpi_fail(err, rc, "MPI_Allgatherv (ordered float sum)");
    }
    free(cnt), free(dsp), free(rcnt), free(rdsp), free(in), free(mine);
    return code;
}

int comm_allreduce_max_f32(comm_t *c, float *buf, size_t n, deft_err_t *err)
{
    size_t step = chunk_elems(sizeof *buf);
    for (size_t i = 0; i < n && c->size > 1; i += step) {
        size_t m = n - i < step ? n - i : step;
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + i, (int)m, MPI_FLOAT, MPI_MAX, c->mc);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, rc, "MPI_Allreduce (float max)");
    }
    return DEFT_OK;
}

int comm_allgather_f32(comm_t *c, const float *mine, size_t n, float *out, deft_err_t *err)
{
    /* one broadcast per rank and chunk: no count overflows for any n */
    if (n)  // an empty shard may come with null pointers
        memcpy(out + (size_t)c->rank * n, mine, sizeof(float) * n);
    for (int r = 0; r < c->size && c->size > 1; r++) {
        int code = comm_bcast_bytes(c, out + (size_t)r * n, sizeof(float) * n, r, err);
        if (code)
            return code;
    }
    return DEFT_OK;
}

int comm_gather_f32(comm_t *c, const float *mine, size_t n, float *out, int root,
                    deft_err_t *err)
{
    size_t step = chunk_elems(sizeof *mine);
    if (c->rank == root)
        memcpy(out + (size_t)root * n, mine, sizeof(float) * n);
    /* rank by rank and chunk by chunk, so that no count overflows */
    for (int r = 0; r < c->size; r++) {
        if (r == root || (c->rank != root && c->rank != r))
            continue;
        for (size_t i = 0; i < n; i += step) {
            int m = (int)(n - i < step ? n - i : step), rc;
            if (c->rank == root)
                rc = MPI_Recv(out + (size_t)r * n + i, m, MPI_FLOAT, r, 0, c->mc,
                              MPI_STATUS_IGNORE);
            else
                rc = MPI_Send(mine + i, m, MPI_FLOAT, root, 0, c->mc);
            if (rc != MPI_SUCCESS)
                return mpi_fail(err, rc, c->rank == root ? "MPI_Recv (gather)" : "MPI_Send "
                                "(gather)");
        }
    }
    return DEFT_OK;
}

// ----------------------------------------------------------------------------
// sub-communicators

int comm_split(comm_t *c, int color, int key, comm_t **out, deft_err_t *err)
{
    *out = NULL;
    MPI_Comm mc;
    int rc = MPI_Comm_split(c->mc, color, key, &mc);
    if (rc != MPI_SUCCESS)
        return mpi_fail(err, rc, "MPI_Comm_split");
    MPI_Comm_set_errhandler(mc, MPI_ERRORS_RETURN);
    comm_t *s = xcalloc(1, sizeof *s);
    s->mc = mc;
    MPI_Comm_rank(mc, &s->rank);
    MPI_Comm_size(mc, &s->size);
    *out = s;
    return DEFT_OK;
}

void comm_free(comm_t *c)
{
    if (!c || c == &g_world)
        return;
    if (g_inited)
        MPI_Comm_free(&c->mc);
    free(c);
}
