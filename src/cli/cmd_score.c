/* deft score: the distribution reward R_Q (DEFT Eq. 6-9) of every sample
 * under the starting model, with the response log-likelihood and optional
 * IFD, written to scores.h5 under mpirun with any number of ranks. Reads the
 * `score` section of the config and the shared keys data, model, tokenizer,
 * strict and keep_file_order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "config/config.h"
#include "mpi/comm.h"
#include "stages/score.h"
#include "util/log.h"

#ifndef DEFT_VERSION
#define DEFT_VERSION "0.1.0"
#endif

int score_with_config(comm_t *comm, const cfg_t *cfg, deft_err_t *err)
{
    int ndata = cfg_data_len(cfg);
    const char *model = cfg_str(cfg, "model");
    if (ndata < 1)
        return deft_fail(err, DEFT_ERR_USAGE, "score: no data files: give --data FILE... "
                         "or `data:` in the config");
    if (!model)
        return deft_fail(err, DEFT_ERR_USAGE, "score: no model: give --model DIR (a Hugging "
                         "Face folder with config.json and safetensors)");
    if (strcmp(cfg_str(cfg, "responses"), "best"))
        return deft_fail(err, DEFT_ERR_USAGE, "score: responses '%s' is not supported yet: "
                         "R_Q is scored on the best response only (responses: best)",
                         cfg_str(cfg, "responses"));
    /* scores.h5 is written last: refuse up front to write it over an input */
    int rc = deft_check_not_input(cfg_str(cfg, "out"), cfg_str(cfg, "qdiff"), "score: out",
                                  err);
    for (int i = 0; i < ndata && !rc; i++)
        rc = deft_check_not_input(cfg_str(cfg, "out"), cfg_data_at(cfg, i)->path, "score: out",
                                  err);
    if (rc)
        return rc;
    /* the model folder holds its tokenizer unless one is named */
    const char *tok_path = cfg_str(cfg, "tokenizer") ? cfg_str(cfg, "tokenizer") : model;
    tokenizer_t *tok = NULL;
    rc = cli_load_tokenizer(comm, tok_path, &tok, err);
    if (rc)
        return rc;
    data_source_t *src = cli_data_sources(cfg);
    score_opts_t opts = {
        .src = src,
        .nsrc = ndata,
        .tok = tok,
        .tok_path = tok_path,
        .model = model,
        .qdiff = cfg_str(cfg, "qdiff"),
        .ifd_model = cfg_str(cfg, "ifd_model"),
        .batch_size = (int)cfg_int(cfg, "batch_size"),
        .max_len = (int)cfg_int(cfg, "max_len"),
        .strict = cfg_bool(cfg, "strict"),
        .keep_file_order = cfg_bool(cfg, "keep_file_order"),
        .out = cfg_str(cfg, "out"),
        .version = DEFT_VERSION,
    };
    rc = score_run(&opts, comm, err);
    free(src);
    tok_free(tok);
    return rc;
}

int cmd_score(int argc, char **argv)
{
    return cli_mpi_main("score", argc, argv, score_with_config);
}
