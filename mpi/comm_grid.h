/* A tp x dp grid of ranks: tensor-parallel groups of consecutive ranks (they
 * exchange activations every layer, so they should share a node) and
 * data-parallel groups across them (they exchange gradients once a step). */
#ifndef DEFT_COMM_GRID_H
#define DEFT_COMM_GRID_H

#include "mpi/comm.h"

typedef struct {
    comm_t *tp;          /* ranks [g*tp_size, (g+1)*tp_size) of the parent, g = dp_rank */
    comm_t *dp;          /* the ranks with this tp_rank, one in each tp group */
    int tp_size, tp_rank;
    int dp_size, dp_rank;
} comm_grid_t;

/* Cuts c into size(c)/tp groups of tp consecutive ranks. Every rank of c
 * calls it. A tp that does not divide the rank count is a usage error naming
 * both. Release with comm_grid_free. */
int comm_grid_create(comm_t *c, int tp, comm_grid_t *g, deft_err_t *err);
void comm_grid_free(comm_grid_t *g);

#endif
