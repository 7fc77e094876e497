/* deft train: preference training (SFT, DPO or PRO, with the DEFT term
 * -omega * R_Q) under mpirun with any number of data-parallel ranks. Reads
 * the `train` section of the config and the shared keys data, model,
 * tokenizer, run_dir, seed, strict, keep_file_order and log_every. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "config/config.h"
#include "mpi/comm.h"
#include "stages/train.h"
#include "util/log.h"

/* The config has checked the value against "sft|dpo|pro". */
static loss_kind_t method_kind(const char *s)
{
    return !strcmp(s, "dpo") ? LOSS_DPO : !strcmp(s, "pro") ? LOSS_PRO : LOSS_SFT;
}

int train_with_config(comm_t *comm, const cfg_t *cfg, bool *stopped, deft_err_t *err)
{
    int ndata = cfg_data_len(cfg);
    if (ndata < 1)
        return deft_fail(err, DEFT_ERR_USAGE, "train: no data files: give --data FILE... "
                         "or `data:` in the config");
    if (!cfg_str(cfg, "model"))
        return deft_fail(err, DEFT_ERR_USAGE, "train: no starting model: give --model DIR "
                         "(a Hugging Face folder)");
    if (!strcmp(cfg_str(cfg, "backend"), "cuda"))
        return deft_fail(err, DEFT_ERR_USAGE, "train: backend cuda: training runs on the CPU "
                         "backend only; use backend auto or cpu");
    int neval = cfg_list_len(cfg, "eval_data");
    data_source_t *src = cli_data_sources(cfg);
    data_source_t *esrc = xcalloc((size_t)neval + 1, sizeof *esrc);
    for (int i = 0; i < neval; i++)
        esrc[i] = (data_source_t){cfg_list_at(cfg, "eval_data", i), NULL, NULL};
    strbuf_t text = {0};
    cfg_dump(cfg, &text);
    sb_append(&text, "", 1);

    train_opts_t o = {
        .src = src,
        .nsrc = ndata,
        .eval_src = esrc,
        .neval_src = neval,
        .eval_fraction = cfg_float(cfg, "eval_fraction"),
        .model_dir = cfg_str(cfg, "model"),
        .tok_path = cfg_str(cfg, "tokenizer"),
        .qdiff_path = cfg_str(cfg, "qdiff"),
        .ref_path = cfg_str(cfg, "ref"),
        .run_dir = cfg_str(cfg, "run_dir"),
        .resume = cfg_str(cfg, "resume"),
        .loss = {
            .beta = cfg_float(cfg, "beta"),
            .w_sft = cfg_float(cfg, "sft_weight"),
            .omega = cfg_float(cfg, "omega"),
        },
        .adamw = {
            .lr = cfg_float(cfg, "lr"),
            .beta1 = 0.9,
            .beta2 = 0.95,
            .eps = 1e-8,
            .weight_decay = cfg_float(cfg, "weight_decay"),
            .max_grad_norm = cfg_float(cfg, "grad_clip"),
            .warmup_steps = cfg_int(cfg, "warmup_steps"),
        },
        .epochs = (int)cfg_int(cfg, "epochs"),
        .max_steps = cfg_int(cfg, "max_steps"),
        .micro_batch = (int)cfg_int(cfg, "micro_batch"),
        .grad_accum = (int)cfg_int(cfg, "grad_accum"),
        .tp = (int)cfg_int(cfg, "tp"),
        .seq = {
            .max_len = (int)cfg_int(cfg, "max_len"),
            .max_prompt_len = (int)cfg_int(cfg, "max_prompt_len"),
        },
        .seed = (uint64_t)cfg_int(cfg, "seed"),
        .log_every = cfg_int(cfg, "log_every"),
        .eval_every = cfg_int(cfg, "eval_every"),
        .checkpoint_every = cfg_int(cfg, "checkpoint_every"),
        .keep_checkpoints = (int)cfg_int(cfg, "keep_checkpoints"),
        .peak_flops = cfg_float(cfg, "peak_flops"),
        .strict = cfg_bool(cfg, "strict"),
        .keep_file_order = cfg_bool(cfg, "keep_file_order"),
        .config_text = text.data,
    };
    o.loss.kind = method_kind(cfg_str(cfg, "method"));
    int rc = lr_schedule_parse(cfg_str(cfg, "schedule"), &o.adamw.schedule, err);
    if (!rc)
        rc = train_run(&o, comm, stopped, err);
    sb_free(&text);
    free(src);
    free(esrc);
    return rc;
}

int cmd_train(int argc, char **argv)
{
    deft_err_t err = {0};
    cfg_t *cfg = NULL;
    int rc = comm_init(&argc, &argv, &err);
    if (rc) {
        fprintf(stderr, "deft train: %s\n", cli_message("train", err.msg));
        return deft_exit_status(rc);
    }
    comm_t *comm = comm_world();
    bool stopped = false;
    rc = cfg_parse(&cfg, "train", argc, argv, &err);
    if (rc == DEFT_OK) {
        if (comm_rank(comm) == 0)
            cfg_print_table(cfg, stderr);
        rc = train_with_config(comm, cfg, &stopped, &err);
        if (!rc && stopped)
            log_info("train: stopped; continue with the same command and --resume auto");
    }
    if (rc == DEFT_ERR_MPI)
        comm_abort(comm, deft_exit_status(rc), "deft train: %s", cli_message("train", err.msg));
    /* ranks that only learnt of another rank's failure carry an empty message */
    if (rc && rc != DEFT_HELP && err.msg[0] && (rc != DEFT_ERR_USAGE || comm_rank(comm) == 0))
        log_error("deft train: %s", cli_message("train", err.msg));
    cfg_free(cfg);
    comm_finalize();
    /* a stop signal that was honoured (checkpoint written) is a clean exit */
    return deft_exit_status(rc);
}
