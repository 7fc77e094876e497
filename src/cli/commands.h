/* One entry per subcommand. Each run function gets argv starting at the
 * subcommand name and returns the process exit status. */
#ifndef DEFT_COMMANDS_H
#define DEFT_COMMANDS_H

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command_t;

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
int cmd_tokenize(int argc, char **argv);

#endif
