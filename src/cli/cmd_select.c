/* deft select: keep the lowest-R_Q fraction of each subset (or a baseline
 * criterion), under mpirun with any number of ranks. Reads the `select`
 * section of the config and the shared `data` and `seed` keys. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/commands.h"
#include "config/config.h"
#include "mpi/comm.h"
#include "stages/select.h"
#include "util/log.h"

int select_with_config(comm_t *comm, const cfg_t *cfg, deft_err_t *err)
{
    int ndata = cfg_data_len(cfg);
    if (ndata < 1)
        return deft_fail(err, DEFT_ERR_USAGE,
                         "select: no data files: give --data FILE... (the files scored, in "
                         "the same order) or `data:` in the config");
    const char **data = xmalloc((size_t)ndata * sizeof *data);
    for (int i = 0; i < ndata; i++)
        data[i] = cfg_data_at(cfg, i)->path;
    select_opts_t opts = {
        .scores_path = cfg_str(cfg, "scores"),
        .data = data,
        .ndata = ndata,
        .fraction = cfg_float(cfg, "fraction"),
        .seed = (uint64_t)cfg_int(cfg, "seed"),
        .out_path = cfg_str(cfg, "out"),
    };
    int rc = DEFT_OK;
    if (!select_by_parse(cfg_str(cfg, "by"), &opts.by))
        rc = deft_fail(err, DEFT_ERR_USAGE, "select: --by '%s' is not rq, likelihood, random "
                       "or ifd", cfg_str(cfg, "by"));
    if (!rc)
        rc = select_run(comm, &opts, err);
    free(data);
    return rc;
}

int cmd_select(int argc, char **argv)
{
    return cli_mpi_main("select", argc, argv, select_with_config);
}
