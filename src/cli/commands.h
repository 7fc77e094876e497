/* One entry per subcommand. Each run function gets argv starting at the
 * subcommand name and returns the process exit status. */
#ifndef DEFT_COMMANDS_H
#define DEFT_COMMANDS_H

#include <stdbool.h>

#include "config/config.h"
#include "data/records.h"
#include "mpi/comm.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command_t;

/* msg without a leading "CMD: ", which the caller's "deft CMD: " already says. */
const char *cli_message(const char *cmd, const char *msg);

/* Runs stage under MPI with the config section `name` (argv from the
 * subcommand name on) and returns the exit status. */
int cli_mpi_main(const char *name, int argc, char **argv,
                 int (*stage)(comm_t *comm, const cfg_t *cfg, deft_err_t *err));

/* Loads the tokenizer on every rank and agrees on the outcome, so a failure
 * is reported once and every rank returns the same code. */
typedef struct tokenizer tokenizer_t;
int cli_load_tokenizer(comm_t *comm, const char *path, tokenizer_t **tok, deft_err_t *err);

/* The config's data list as reader sources (caller frees; paths point into cfg). */
data_source_t *cli_data_sources(const cfg_t *cfg);

int cmd_version(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_logprobs(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_qdiff(int argc, char **argv);
int cmd_config_doc(int argc, char **argv);
int cmd_select(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

/* A stage from its resolved config section, collective over comm (export:
 * serial). The subcommands above and `deft run` share them. */
int qdiff_with_config(comm_t *comm, const cfg_t *cfg, deft_err_t *err);
int score_with_config(comm_t *comm, const cfg_t *cfg, deft_err_t *err);
int select_with_config(comm_t *comm, const cfg_t *cfg, deft_err_t *err);
int train_with_config(comm_t *comm, const cfg_t *cfg, bool *stopped, deft_err_t *err);
int export_with_config(const cfg_t *cfg, deft_err_t *err);

#endif
