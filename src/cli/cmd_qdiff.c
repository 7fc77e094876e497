/* deft qdiff: count tokens of preferred and rejected responses and write
 * Q_diff (DEFT, Eq. 3) to HDF5, under mpirun with any number of ranks.
 * Reads the `qdiff` section of the config and the shared keys data,
 * tokenizer (else the model folder's), strict and keep_file_order. */
#include <stdio.h>
#include <stdlib.h>

#include "cli/commands.h"
#include "config/config.h"
#include "mpi/comm.h"
#include "stages/qdiff.h"
#include "util/log.h"

#ifndef DEFT_VERSION
#define DEFT_VERSION "0.1.0"
#endif

int qdiff_with_config(comm_t *comm, const cfg_t *cfg, deft_err_t *err)
{
    int ndata = cfg_data_len(cfg);
    if (ndata < 1)
        return deft_fail(err, DEFT_ERR_USAGE, "qdiff: no data files: give --data FILE... "
                         "or `data:` in the config");
    tokenizer_t *tok = NULL;
    /* the model folder holds its tokenizer unless one is named */
    const char *tok_path = cfg_str(cfg, "tokenizer") ? cfg_str(cfg, "tokenizer")
                                                     : cfg_str(cfg, "model");
    if (!tok_path)  /* the same on every rank: a usage error, said once */
        return deft_fail(err, DEFT_ERR_USAGE, "qdiff: no tokenizer: give --tokenizer PATH (a "
                         "model folder, tokenizer.json or tokenizer.model) or --model DIR");
    int rc = cli_load_tokenizer(comm, tok_path, &tok, err);
    if (rc)
        return rc;
    data_source_t *src = cli_data_sources(cfg);
    qdiff_opts_t opts = {
        .src = src,
        .nsrc = ndata,
        .tok = tok,
        .tok_path = tok_path,
        .delta = cfg_float(cfg, "delta"),
        .per_subset = cfg_bool(cfg, "per_subset"),
        .strict = cfg_bool(cfg, "strict"),
        .keep_file_order = cfg_bool(cfg, "keep_file_order"),
        .top = (int)cfg_int(cfg, "top"),
        .out = cfg_str(cfg, "out"),
        .version = DEFT_VERSION,
    };
    rc = qdiff_run(&opts, comm, err);
    free(src);
    tok_free(tok);
    return rc;
}

int cmd_qdiff(int argc, char **argv)
{
    return cli_mpi_main("qdiff", argc, argv, qdiff_with_config);
}
