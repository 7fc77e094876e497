/* The tp x dp grid: two comm_split calls over the parent communicator. */
#include "mpi/comm_grid.h"

#include <string.h>

int comm_grid_create(comm_t *c, int tp, comm_grid_t *g, deft_err_t *err)
{
    memset(g, 0, sizeof *g);
    int n = comm_size(c), r = comm_rank(c);
    if (tp < 1 || n % tp != 0)
        return deft_fail(err, DEFT_ERR_USAGE,
                         "tp = %d must divide the number of ranks (%d): run tp x dp ranks",
                         tp, n);
    g->tp_size = tp, g->tp_rank = r % tp;
    g->dp_size = n / tp, g->dp_rank = r / tp;
    int rc = comm_split(c, g->dp_rank, g->tp_rank, &g->tp, err);
    if (!rc)
        rc = comm_split(c, g->tp_rank, g->dp_rank, &g->dp, err);
    if (rc)
        comm_grid_free(g);
    return rc;
}

void comm_grid_free(comm_grid_t *g)
{
    comm_free(g->tp);
    comm_free(g->dp);
    memset(g, 0, sizeof *g);
}
