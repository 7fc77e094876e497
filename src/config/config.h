/* Configuration: YAML files (libyaml) plus command-line flags.
 *
 * A config file has shared top-level keys (data, tokenizer, model, run_dir,
 * seed, ...) and one mapping per stage (qdiff:, score:, train:, ...). A
 * subcommand reads the top level and its own section; `--key value` on the
 * command line overrides the key of the same name (dashes and underscores
 * are the same in flags). Every section of a file is validated against the
 * key tables of src/config/keys.c, so a misspelt key anywhere is an error
 * naming file:line:column and what was expected. */
#ifndef DEFT_CONFIG_H
#define DEFT_CONFIG_H

#include <stdio.h>

#include "util/common.h"

typedef enum {
    CFG_STRING,
    CFG_INT,     /* int64 */
    CFG_FLOAT,   /* double */
    CFG_BOOL,    /* true/false; as a flag `--key` alone means true, `--no-key` false */
    CFG_LIST,    /* list of strings; flags: `--key a b c` (values up to the next --flag) */
    CFG_DATA,    /* list of data files: each a path, or {path, subset, format} */
    CFG_ENUM,    /* one string of `choices` */
} cfg_type_t;

typedef struct {
    const char *name;     /* snake_case key */
    cfg_type_t type;
    const char *def;      /* default, as YAML scalar text; NULL: unset unless given */
    double min, max;      /* inclusive range for CFG_INT/CFG_FLOAT; ignored unless min < max
                             (max = INFINITY: no upper bound) */
    const char *choices;  /* CFG_ENUM: "dpo|pro|sft" */
    const char *help;     /* one line, shown by --help and docs/config.md */
    bool min_open;        /* the range excludes min: (min, max] */
} cfg_key_t;

typedef struct {
    const char *name;     /* section name in the YAML file and subcommand name */
    const cfg_key_t *keys;
    int nkeys;
    const char *summary;  /* one line for `deft --help` */
    int max_positional;   /* arguments that are not flags the command takes; -1: any (the
                             command checks them). A stray word is refused, so that a value
                             given to a true/false flag (`--strict false`) is not dropped */
} cfg_section_t;

/* One entry of a CFG_DATA list. */
typedef struct {
    const char *path;
    const char *subset;   /* NULL: the default (file name, or meta.path for PRO) */
    const char *format;   /* "auto", "hh", "pro" or "pair" */
} cfg_data_file_t;

typedef struct cfg cfg_t;

/* Parse argv (after the subcommand name) for `section`: `-c FILE`, flags and
 * positional arguments. Returns DEFT_OK, DEFT_HELP (help text was printed to
 * stdout) or an error with a message naming the file:line:column or flag. */
int cfg_parse(cfg_t **out, const char *section, int argc, char **argv, deft_err_t *err);
void cfg_free(cfg_t *cfg);

/* Accessors for keys of the shared table or of this section. Asking for a
 * key that is in neither table, or with the wrong type, is a programming
 * error and aborts. */
bool cfg_is_set(const cfg_t *cfg, const char *key);  /* given, or has a default */
const char *cfg_str(const cfg_t *cfg, const char *key);  /* NULL when unset */
int64_t cfg_int(const cfg_t *cfg, const char *key);
double cfg_float(const cfg_t *cfg, const char *key);
bool cfg_bool(const cfg_t *cfg, const char *key);
int cfg_list_len(const cfg_t *cfg, const char *key);
const char *cfg_list_at(const cfg_t *cfg, const char *key, int i);
int cfg_data_len(const cfg_t *cfg);
const cfg_data_file_t *cfg_data_at(const cfg_t *cfg, int i);

/* Where a value came from: "default", "run.yaml:12:7" or "--flag". */
const char *cfg_origin(const cfg_t *cfg, const char *key);

int cfg_npositional(const cfg_t *cfg);
const char *cfg_positional(const cfg_t *cfg, int i);
const char *cfg_file(const cfg_t *cfg);  /* the -c file, or NULL */

/* A boxed table of every key, value and origin, for the start of a job. */
void cfg_print_table(const cfg_t *cfg, FILE *f);

/* Canonical YAML text of the resolved values (shared keys, then the
 * section), used to record what a stage's output was made from. */
void cfg_dump(const cfg_t *cfg, strbuf_t *out);

/* Registry (src/config/keys.c). */
extern const cfg_section_t cfg_shared;
const cfg_section_t *cfg_find_section(const char *name);
int cfg_nsections(void);
const cfg_section_t *cfg_section_at(int i);

/* Markdown reference of every key, for docs/config.md (`deft config-doc`). */
void cfg_write_reference(FILE *f);

#endif
