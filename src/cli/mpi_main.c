/* What the MPI stage commands share: the frame (start MPI, parse the config
 * section, print the config table on rank 0, run the stage, report its error
 * once, end MPI, turn the code into an exit status), a collective tokenizer
 * load, and the data list as reader sources. */
#include <stdio.h>

#include "cli/commands.h"
#include "tok/tokenizer.h"
#include "util/common.h"
#include "util/log.h"

int cli_mpi_main(const char *name, int argc, char **argv,
                 int (*stage)(comm_t *comm, const cfg_t *cfg, deft_err_t *err))
{
    deft_err_t err = {0};
    cfg_t *cfg = NULL;
    int rc = comm_init(&argc, &argv, &err);
    if (rc) {
        fprintf(stderr, "deft %s: %s\n", name, cli_message(name, err.msg));
        return deft_exit_status(rc);
    }
    comm_t *comm = comm_world();
    /* Every rank parses the same arguments and files, so all agree on errors. */
    rc = cfg_parse(&cfg, name, argc, argv, &err);
    if (rc == DEFT_OK) {
        if (comm_rank(comm) == 0)
            cfg_print_table(cfg, stderr);
        rc = stage(comm, cfg, &err);
    }
    /* A failed collective may leave other ranks waiting: end them all. */
    if (rc == DEFT_ERR_MPI)
        comm_abort(comm, deft_exit_status(rc), "deft %s: %s", name, cli_message(name, err.msg));
    /* Ranks that only learnt of another rank's failure carry an empty message;
     * a usage error is the same on every rank, so rank 0 says it. */
    if (rc && rc != DEFT_HELP && err.msg[0] && (rc != DEFT_ERR_USAGE || comm_rank(comm) == 0))
        log_error("deft %s: %s", name, cli_message(name, err.msg));
    cfg_free(cfg);
    comm_finalize();
    return deft_exit_status(rc);
}

int cli_load_tokenizer(comm_t *comm, const char *path, tokenizer_t **tok, deft_err_t *err)
{
    int rc = tok_load(tok, path, err);
    int agreed = 0, first = -1;
    deft_err_t merr;
    if (comm_agree(comm, rc, &agreed, &first, &merr)) {
        *err = merr;
        return DEFT_ERR_MPI;
    }
    /* one rank speaks for all; the others carry an empty message */
    if (agreed && comm_rank(comm) != first)
        err->msg[0] = '\0';
    if (agreed && !rc) {
        tok_free(*tok);
        *tok = NULL;
    }
    return agreed;
}

data_source_t *cli_data_sources(const cfg_t *cfg)
{
    int n = cfg_data_len(cfg);
    data_source_t *src = xcalloc((size_t)n + 1, sizeof *src);
    for (int i = 0; i < n; i++) {
        const cfg_data_file_t *df = cfg_data_at(cfg, i);
        src[i] = (data_source_t){df->path, df->subset, df->format};
    }
    return src;
}
