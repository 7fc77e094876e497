/* deft export: write a training checkpoint as a Hugging Face model folder.
 * Reads the `export` section and the shared keys model (the starting model:
 * config.json and tokenizer), tokenizer and run_dir. Serial; under mpirun
 * rank 0 writes and the others wait for its result. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli/commands.h"
#include "config/config.h"
#include "io/checkpoint.h"
#include "mpi/comm.h"
#include "stages/export.h"
#include "util/log.h"

int export_with_config(const cfg_t *cfg, deft_err_t *err)
{
    char *found = NULL;
    const char *ckpt = cfg_str(cfg, "checkpoint");
    int rc = DEFT_OK;
    if (!ckpt) {
        strbuf_t dir = {0};
        sb_printf(&dir, "%s/checkpoints", cfg_str(cfg, "run_dir"));
        if (access(dir.data, F_OK) == 0)
            rc = checkpoint_find_latest(dir.data, false, &found, err);
        if (!rc && !found)
            rc = deft_fail(err, DEFT_ERR_USAGE, "export: no checkpoint in %s: give "
                           "--checkpoint FILE", dir.data);
        sb_free(&dir);
        ckpt = found;
    }
    if (!rc) {
        export_opts_t o = {
            .checkpoint = ckpt,
            .model_dir = cfg_str(cfg, "model"),
            .tokenizer = cfg_str(cfg, "tokenizer"),
            .out_dir = cfg_str(cfg, "out"),
        };
        rc = export_run(&o, NULL, err);
    }
    free(found);
    return rc;
}

int cmd_export(int argc, char **argv)
{
    deft_err_t err = {0};
    cfg_t *cfg = NULL;
    int rc = comm_init(&argc, &argv, &err);
    if (rc) {
        fprintf(stderr, "deft export: %s\n", cli_message("export", err.msg));
        return deft_exit_status(rc);
    }
    comm_t *comm = comm_world();
    rc = cfg_parse(&cfg, "export", argc, argv, &err);
    if (rc == DEFT_OK && comm_rank(comm) == 0)
        rc = export_with_config(cfg, &err);
    /* The other ranks learn rank 0's result, so that every rank exits alike. */
    int agreed = rc, first = -1;
    deft_err_t merr;
    if (rc != DEFT_HELP && comm_agree(comm, rc, &agreed, &first, &merr) == DEFT_OK)
        rc = agreed;
    if (rc && rc != DEFT_HELP && comm_rank(comm) == 0)
        log_error("deft export: %s", cli_message("export", err.msg));
    cfg_free(cfg);
    comm_finalize();
    return deft_exit_status(rc);
}
