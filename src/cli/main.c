/* deft: the command-line front end. Dispatches `deft SUBCOMMAND ...` and
 * turns library error codes into exit statuses. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "util/common.h"

static const command_t commands[] = {
    {"version", cmd_version, "print the version"},
    {"init", cmd_init, "a randomly initialised model from a config.json"},
    {"logprobs", cmd_logprobs, "log-probabilities of token sequences (JSON lines) under a model"},
    {"generate", cmd_generate, "complete prompts with a model"},
    {"qdiff", cmd_qdiff, "count tokens of preferred and rejected responses: Q_diff"},
    {"config-doc", cmd_config_doc, "print the reference of every config key (Markdown)"},
    {"score", cmd_score, "distribution reward R_Q of every sample under the starting model"},
    {"select", cmd_select, "keep the lowest-R_Q fraction of each subset"},
    {"train", cmd_train, "preference training: SFT, DPO, PRO, with the DEFT term"},
    {"export", cmd_export, "write a checkpoint as a Hugging Face model folder"},
    {"plot", cmd_plot, "draw a run's training metrics as PNG files (gnuplot)"},
    {"run", cmd_run, "every stage in order into one run directory, skipping finished ones"},
    {"tokenize", cmd_tokenize, "print the token ids of JSONL texts (stdin -> stdout)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: deft COMMAND [-c CONFIG.yaml] [--key value ...]\n\ncommands:\n");
    for (size_t i = 0; i < DEFT_ARRAY_LEN(commands); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`deft COMMAND --help` lists every key of a command with its default.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < DEFT_ARRAY_LEN(commands); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "deft: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
