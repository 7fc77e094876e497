/* The comm layer as a single rank (singleton MPI) and, when started under
 * mpirun, across ranks: sums, chunked paths, broadcasts, blob gathers and
 * error agreement. tests/cli/comm_mpi.sh runs it with 1, 2 and 3 ranks. */
#include <string.h>

#include "mpi/comm.h"
#include "test_util.h"

static void test_sums(comm_t *c)
{
    int rank = comm_rank(c), size = comm_size(c);
    enum { N = 1000 };
    int64_t v[N];
    double d[N];
    for (int i = 0; i < N; i++) {
        v[i] = (int64_t)(rank + 1) * i + ((int64_t)1 << 40);
        d[i] = 0.1 * (rank + 1) + i;
    }
    /* 24-byte chunks: the 1000-element arrays cross many chunk borders. */
    comm_set_max_chunk_bytes(24);
    deft_err_t err = {0};
    CHECK(comm_allreduce_sum_i64(c, v, N, &err) == DEFT_OK);
    CHECK(comm_allreduce_sum_f64(c, d, N, &err) == DEFT_OK);
    comm_set_max_chunk_bytes(0);
    int64_t tri = (int64_t)size * (size + 1) / 2;
    int ok = 1;
    for (int i = 0; i < N; i++)
        ok &= v[i] == tri * i + ((int64_t)size << 40);
    CHECK(ok);
    /* The ordered sum must equal the same additions done here in rank order. */
    ok = 1;
    for (int i = 0; i < N; i++) {
        double s = 0.1 * 1 + i;
        for (int r = 1; r < size; r++)
            s += 0.1 * (r + 1) + i;
        ok &= d[i] == s;
    }
    CHECK(ok);

    int64_t mx[2] = {rank, -rank}, mn[2] = {rank, -rank};
    CHECK(comm_allreduce_max_i64(c, mx, 2, &err) == DEFT_OK);
    CHECK(comm_allreduce_min_i64(c, mn, 2, &err) == DEFT_OK);
    CHECK(mx[0] == size - 1 && mx[1] == 0);
    CHECK(mn[0] == 0 && mn[1] == -(size - 1));
}

static void test_bcast(comm_t *c)
{
    int rank = comm_rank(c), size = comm_size(c);
    deft_err_t err = {0};
    int root = size - 1;
    char *s = rank == root ? strdup("the root's string") : strdup("junk");
    CHECK(comm_bcast_str(c, &s, root, &err) == DEFT_OK);
    CHECK(s && !strcmp(s, "the root's string"));
    free(s);
    s = rank == 0 ? NULL : strdup("junk");
    CHECK(comm_bcast_str(c, &s, 0, &err) == DEFT_OK);
    CHECK(s == NULL);
    free(s);

    unsigned char buf[300];
    for (int i = 0; i < 300; i++)
        buf[i] = rank == 0 ? (unsigned char)(i * 7) : 0;
    comm_set_max_chunk_bytes(7);
    CHECK(comm_bcast_bytes(c, buf, sizeof buf, 0, &err) == DEFT_OK);
    comm_set_max_chunk_bytes(0);
    int ok = 1;
    for (int i = 0; i < 300; i++)
        ok &= buf[i] == (unsigned char)(i * 7);
    CHECK(ok);
}

static void test_blobs(comm_t *c)
{
    int rank = comm_rank(c), size = comm_size(c);
    deft_err_t err = {0};
    /* Rank r sends r copies of the letter 'a' + r: rank 0 sends nothing. */
    char mine[64];
    memset(mine, 'a' + rank, sizeof mine);
    comm_blobs_t b;
    comm_set_max_chunk_bytes(2);
    CHECK(comm_allgather_blobs(c, mine, (size_t)rank, &b, &err) == DEFT_OK);
    comm_set_max_chunk_bytes(0);
    CHECK(b.nranks == size);
    int ok = 1;
    for (int r = 0; r < size; r++) {
        ok &= b.off[r + 1] - b.off[r] == (size_t)r;
        for (size_t k = b.off[r]; k < b.off[r + 1]; k++)
            ok &= b.data[k] == 'a' + r;
    }
    CHECK(ok);
    comm_blobs_free(&b);
}

static void test_agree(comm_t *c)
{
    int rank = comm_rank(c), size = comm_size(c);
    deft_err_t err = {0};
    int code = -1, first = -2;
    CHECK(comm_agree(c, 0, &code, &first, &err) == DEFT_OK && code == 0 && first == -1);
    CHECK(comm_agree(c, rank == size - 1 ? 3 : 0, &code, &first, &err) == DEFT_OK);
    CHECK(code == 3 && first == size - 1);
    /* Every rank fails, the last one worst; then all with the same code: rank 0 speaks. */
    CHECK(comm_agree(c, rank == size - 1 ? 5 : 1, &code, &first, &err) == DEFT_OK);
    CHECK(code == 5 && first == size - 1);
    CHECK(comm_agree(c, 2, &code, &first, &err) == DEFT_OK && code == 2 && first == 0);
    CHECK(comm_barrier(c, &err) == DEFT_OK);
}

int main(int argc, char **argv)
{
    deft_err_t err = {0};
    CHECK(comm_init(&argc, &argv, &err) == DEFT_OK);
    CHECK(comm_init(&argc, &argv, &err) == DEFT_OK);  /* a second call is harmless */
    comm_t *c = comm_world();
    CHECK(comm_size(c) >= 1 && comm_rank(c) >= 0 && comm_rank(c) < comm_size(c));
    test_sums(c);
    test_bcast(c);
    test_blobs(c);
    test_agree(c);
    int rank = comm_rank(c);
    comm_finalize();
    if (rank != 0) {
        /* Only rank 0 prints the summary line; every rank's status counts. */
        return test_failed ? 1 : 0;
    }
    TEST_DONE();
}
