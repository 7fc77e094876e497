/* deft: the command-line front end. Dispatches `deft SUBCOMMAND ...` and
 * turns library error codes into exit statuses. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "util/common.h"

/* Pipeline order first, then the tools. */
static const command_t commands[] = {
    {"run", cmd_run, "every stage in order into one run directory, skipping finished ones"},
    {"qdiff", cmd_qdiff, "count tokens of preferred and rejected responses: Q_diff"},
    {"score", cmd_score, "distribution reward R_Q of every sample under the starting model"},
    {"select", cmd_select, "keep the lowest-R_Q fraction of each subset"},
    {"train", cmd_train, "preference training: SFT, DPO, PRO, with the DEFT term"},
    {"export", cmd_export, "write a checkpoint as a Hugging Face model folder"},
    {"plot", cmd_plot, "draw the training metrics of runs as PNG files (gnuplot)"},
    {"tokenize", cmd_tokenize, "print the token ids of JSONL texts (stdin -> stdout)"},
    {"logprobs", cmd_logprobs, "log-probabilities of token sequences (JSON lines) under a model"},
    {"generate", cmd_generate, "complete prompts with a model"},
    {"init", cmd_init, "a randomly initialised model from a config.json"},
    {"config-doc", cmd_config_doc, "print the reference of every config key (Markdown)"},
    {"version", cmd_version, "print the version"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: deft COMMAND [-c CONFIG.yaml] [--key value ...]\n\ncommands:\n");
    for (size_t i = 0; i < DEFT_ARRAY_LEN(commands); i++) {
        if (!strcmp(commands[i].name, "tokenize"))
            fprintf(f, "\ntools:\n");
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(f, "\n`deft COMMAND --help` lists every key of a command with its default.\n");
}

const char *cli_message(const char *cmd, const char *msg)
{
    size_t n = strlen(cmd);
    return !strncmp(msg, cmd, n) && msg[n] == ':' && msg[n + 1] == ' ' ? msg + n + 2 : msg;
}

/* Edits (insert, delete, substitute, swap of neighbours) from a to b, to
 * suggest a command for a typing slip. */
static int edit_distance(const char *a, const char *b)
{
    enum { MAX = 32 };
    size_t n = strlen(a), m = strlen(b);
    if (n >= MAX || m >= MAX)
        return MAX;
    int d[MAX + 1][MAX + 1];
    for (size_t i = 0; i <= n; i++)
        for (size_t j = 0; j <= m; j++) {
            if (!i || !j) {
                d[i][j] = (int)(i + j);
                continue;
            }
            int v = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < v)
                v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[n][m];
}

static const char *closest_command(const char *name)
{
    const char *best = NULL;
    int best_d = 3;  /* more than two edits away is another word */
    for (size_t i = 0; i < DEFT_ARRAY_LEN(commands); i++) {
        int d = edit_distance(name, commands[i].name);
        if (d < best_d) {
            best_d = d;
            best = commands[i].name;
        }
    }
    return best;
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
    if (!strcmp(argv[1], "--version"))
        return cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < DEFT_ARRAY_LEN(commands); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    const char *near = closest_command(argv[1]);
    if (near) {
        fprintf(stderr, "deft: unknown command '%s': did you mean %s?\n", argv[1], near);
        return 2;
    }
    fprintf(stderr, "deft: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
