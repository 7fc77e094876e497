/* Tests of the configuration layer: YAML files and flags, precedence and
 * origins, lists and data entries, every kind of error with its position,
 * the canonical dump, the job table, the key registry and docs/config.md. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "test_util.h"

static char tmpdir[] = "/tmp/deft-test-config-XXXXXX";

/* Writes text to tmpdir/name and returns the path (valid until the next call
 * with the same name slot: callers keep at most a few). */
static const char *yaml_file(const char *name, const char *text)
{
    static char paths[4][512];
    static int slot;
    char *path = paths[slot++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

/* cfg_parse over a NULL-terminated argument list; argv[0] is the section. */
static int parse(cfg_t **cfg, deft_err_t *err, const char *section, ...)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)section;
    va_list ap;
    va_start(ap, section);
    for (char *a; (a = va_arg(ap, char *));)
        argv[argc++] = a;
    va_end(ap);
    memset(err, 0, sizeof *err);
    return cfg_parse(cfg, section, argc, argv, err);
}

static bool contains(const char *s, const char *part) { return s && strstr(s, part); }

/* The parse must fail with `code` and a message holding every given part. */
#define CHECK_FAILS(code, parts, ...)                                                   \
    do {                                                                                \
        cfg_t *c_ = NULL;                                                               \
        deft_err_t e_;                                                                  \
        int rc_ = parse(&c_, &e_, __VA_ARGS__, NULL);                                   \
        CHECK_MSG(rc_ == (code) && !c_, "rc %d, expected %d", rc_, (int)(code));        \
        const char *parts_[] = {parts};                                                 \
        for (size_t p_ = 0; p_ < DEFT_ARRAY_LEN(parts_); p_++)                          \
            CHECK_MSG(contains(e_.msg, parts_[p_]), "'%s' not in: %s", parts_[p_],     \
                      e_.msg);                                                          \
        cfg_free(c_);                                                                   \
    } while (0)

#define P(...) __VA_ARGS__

static char *origin_of(const char *path, int line, int col)
{
    static char buf[600];
    snprintf(buf, sizeof buf, "%s:%d:%d", path, line, col);
    return buf;
}

// ----------------------------------------------------------------------------

static void test_defaults(void)
{
    cfg_t *cfg;
    deft_err_t err;
    CHECK(parse(&cfg, &err, "qdiff", NULL) == DEFT_OK);
    CHECK(cfg_int(cfg, "seed") == 1234);
    CHECK(!strcmp(cfg_origin(cfg, "seed"), "default"));
    CHECK(!strcmp(cfg_str(cfg, "run_dir"), "runs/default"));
    CHECK(!strcmp(cfg_str(cfg, "out"), "qdiff.h5"));
    CHECK_NEAR(cfg_float(cfg, "delta"), 0.1, 0);
    CHECK(!cfg_bool(cfg, "per_subset") && !cfg_bool(cfg, "strict"));
    CHECK(cfg_int(cfg, "top") == 20);
    CHECK(cfg_is_set(cfg, "seed") && !cfg_is_set(cfg, "tokenizer"));
    CHECK(cfg_str(cfg, "tokenizer") == NULL);
    CHECK(cfg_data_len(cfg) == 0 && cfg_data_at(cfg, 0) == NULL);
    CHECK(cfg_file(cfg) == NULL && cfg_npositional(cfg) == 0);
    cfg_free(cfg);

    // Every section's defaults are valid values of their own keys.
    for (int i = 0; i < cfg_nsections(); i++) {
        const char *name = cfg_section_at(i)->name;
        CHECK_MSG(parse(&cfg, &err, name, NULL) == DEFT_OK, "%s: %s", name, err.msg);
        cfg_free(cfg);
    }
    CHECK(parse(&cfg, &err, "train", NULL) == DEFT_OK);
    CHECK(!strcmp(cfg_str(cfg, "method"), "dpo") && cfg_int(cfg, "epochs") == 2);
    CHECK(cfg_int(cfg, "max_len") == 512 && cfg_int(cfg, "max_prompt_len") == 384);
    CHECK_NEAR(cfg_float(cfg, "beta"), 0.1, 0);
    CHECK_NEAR(cfg_float(cfg, "grad_clip"), 1.0, 0);
    CHECK(!cfg_is_set(cfg, "resume"));
    cfg_free(cfg);
}

static const char *example_yaml =
    "data:\n"
    "  - data/hh-rlhf/harmless-base-test.jsonl.gz\n"
    "  - {path: data/hh-rlhf-pro/helpful-base-test.jsonl, subset: helpful-base, format: pro}\n"
    "tokenizer: data/llama3\n"
    "run_dir: runs/quickstart\n"
    "seed: 7\n"
    "qdiff:\n"
    "  delta: 0.2\n"
    "  per_subset: true\n"
    "train:\n"
    "  lr: 5.0e-7\n"
    "  omega: 1e-3\n"
    "  method: pro\n";

static void test_file_and_precedence(void)
{
    const char *path = yaml_file("run.yaml", example_yaml);
    cfg_t *cfg;
    deft_err_t err;
    CHECK_MSG(parse(&cfg, &err, "qdiff", "-c", path, NULL) == DEFT_OK, "%s", err.msg);
    CHECK(!strcmp(cfg_file(cfg), path));
    CHECK(cfg_data_len(cfg) == 2);
    const cfg_data_file_t *d0 = cfg_data_at(cfg, 0), *d1 = cfg_data_at(cfg, 1);
    CHECK(!strcmp(d0->path, "data/hh-rlhf/harmless-base-test.jsonl.gz"));
    CHECK(d0->subset == NULL && !strcmp(d0->format, "auto"));
    CHECK(!strcmp(d1->path, "data/hh-rlhf-pro/helpful-base-test.jsonl"));
    CHECK(!strcmp(d1->subset, "helpful-base") && !strcmp(d1->format, "pro"));
    CHECK(!strcmp(cfg_origin(cfg, "data"), origin_of(path, 2, 3)));
    CHECK(!strcmp(cfg_str(cfg, "tokenizer"), "data/llama3"));
    CHECK(cfg_int(cfg, "seed") == 7);
    CHECK(!strcmp(cfg_origin(cfg, "seed"), origin_of(path, 6, 7)));
    CHECK_NEAR(cfg_float(cfg, "delta"), 0.2, 0);
    CHECK(!strcmp(cfg_origin(cfg, "delta"), origin_of(path, 8, 10)));
    CHECK(cfg_bool(cfg, "per_subset"));
    CHECK(cfg_int(cfg, "top") == 20 && !strcmp(cfg_origin(cfg, "top"), "default"));
    cfg_free(cfg);

    // Flags win over the file, wherever they stand relative to -c.
    CHECK_MSG(parse(&cfg, &err, "qdiff", "--seed", "9", "-c", path, "--delta=0.25",
                    "--top", "5", NULL) == DEFT_OK, "%s", err.msg);
    CHECK(cfg_int(cfg, "seed") == 9 && !strcmp(cfg_origin(cfg, "seed"), "--seed"));
    CHECK_NEAR(cfg_float(cfg, "delta"), 0.25, 0);
    CHECK(!strcmp(cfg_origin(cfg, "delta"), "--delta"));
    CHECK(cfg_int(cfg, "top") == 5);
    CHECK(!strcmp(cfg_str(cfg, "run_dir"), "runs/quickstart"));
    cfg_free(cfg);

    // The train section of the same file: YAML float forms.
    CHECK_MSG(parse(&cfg, &err, "train", "--config", path, NULL) == DEFT_OK, "%s", err.msg);
    CHECK_NEAR(cfg_float(cfg, "lr"), 5.0e-7, 0);
    CHECK_NEAR(cfg_float(cfg, "omega"), 1e-3, 0);
    CHECK(!strcmp(cfg_str(cfg, "method"), "pro"));
    cfg_free(cfg);

    // An empty file and a file of only a section are fine.
    CHECK(parse(&cfg, &err, "qdiff", "-c", yaml_file("empty.yaml", ""), NULL) == DEFT_OK);
    cfg_free(cfg);
    // A config file named without -c is not read; rather than run on the
    // defaults, a command that takes no arguments refuses it.
    CHECK_FAILS(DEFT_ERR_USAGE, P("unexpected argument", "-c"), "qdiff",
                yaml_file("c.yaml", "seed: 5\n"));
    CHECK(parse(&cfg, &err, "tokenize", yaml_file("c.yaml", "seed: 5\n"), NULL) == DEFT_OK);
    CHECK(cfg_int(cfg, "seed") == 1234 && cfg_npositional(cfg) == 1);
    cfg_free(cfg);
    char arg[600];
    snprintf(arg, sizeof arg, "--config=%s", yaml_file("c.yaml", "seed: 5\n"));
    CHECK(parse(&cfg, &err, "qdiff", arg, NULL) == DEFT_OK && cfg_int(cfg, "seed") == 5);
    cfg_free(cfg);
    CHECK(parse(&cfg, &err, "qdiff", "--config=", NULL) == DEFT_ERR_USAGE);
    CHECK(contains(err.msg, "--config=") && contains(err.msg, "missing"));
}

static void test_nulls_and_scalars(void)
{
    const char *path = yaml_file("null.yaml",
                                 "tokenizer: ~\n"
                                 "model: 'models/x y'\n"
                                 "data: one.jsonl\n"
                                 "run_dir: \"\"\n"
                                 "train:\n"
                                 "  resume:\n");
    cfg_t *cfg;
    deft_err_t err;
    CHECK_MSG(parse(&cfg, &err, "train", "-c", path, NULL) == DEFT_OK, "%s", err.msg);
    CHECK(!cfg_is_set(cfg, "tokenizer") && cfg_str(cfg, "tokenizer") == NULL);
    CHECK(!strcmp(cfg_origin(cfg, "tokenizer"), origin_of(path, 1, 12)));
    CHECK(!strcmp(cfg_str(cfg, "model"), "models/x y"));
    CHECK(cfg_data_len(cfg) == 1 && !strcmp(cfg_data_at(cfg, 0)->path, "one.jsonl"));
    CHECK(cfg_is_set(cfg, "run_dir") && !strcmp(cfg_str(cfg, "run_dir"), ""));
    CHECK(!cfg_is_set(cfg, "resume"));
    cfg_free(cfg);
}

static void test_bool_flags(void)
{
    const char *path = yaml_file("b.yaml", "strict: true\nqdiff: {per_subset: true}\n");
    cfg_t *cfg;
    deft_err_t err;
    CHECK(parse(&cfg, &err, "qdiff", "--per-subset", "--strict", NULL) == DEFT_OK);
    CHECK(cfg_bool(cfg, "per_subset") && cfg_bool(cfg, "strict"));
    CHECK(!strcmp(cfg_origin(cfg, "per_subset"), "--per-subset"));
    cfg_free(cfg);
    CHECK(parse(&cfg, &err, "qdiff", "-c", path, "--no-strict", "--per_subset=false",
                NULL) == DEFT_OK);
    CHECK(!cfg_bool(cfg, "strict") && !cfg_bool(cfg, "per_subset"));
    CHECK(!strcmp(cfg_origin(cfg, "strict"), "--no-strict"));
    cfg_free(cfg);
    CHECK(parse(&cfg, &err, "qdiff", "--strict=true", "--keep-file-order=False", NULL) ==
          DEFT_OK);
    CHECK(cfg_bool(cfg, "strict") && !cfg_bool(cfg, "keep_file_order"));
    cfg_free(cfg);
    // A bool flag takes no separate value: the next word is positional, which
    // a command that takes none refuses rather than running with strict true.
    CHECK(parse(&cfg, &err, "tokenize", "--bos", "false", NULL) == DEFT_OK);
    CHECK(cfg_bool(cfg, "bos") && cfg_npositional(cfg) == 1);
    CHECK(!strcmp(cfg_positional(cfg, 0), "false"));
    cfg_free(cfg);
    CHECK_FAILS(DEFT_ERR_USAGE, P("--strict false", "takes no separate value",
                                  "--strict=false", "--no-strict"), "qdiff", "--strict", "false");
    CHECK_FAILS(DEFT_ERR_USAGE, P("--per-subset=True", "--no-per-subset"), "qdiff",
                "--per-subset", "True");

    CHECK_FAILS(DEFT_ERR_USAGE, P("--strict", "expected true or false", "'maybe'"), "qdiff",
                "--strict=maybe");
    CHECK_FAILS(DEFT_ERR_USAGE, P("--no-strict", "takes no value"), "qdiff",
                "--no-strict=true");
    CHECK_FAILS(DEFT_ERR_USAGE, P("--no-delta", "unknown key"), "qdiff", "--no-delta");
    CHECK_FAILS(DEFT_ERR_USAGE, P(yaml_file("b2.yaml", "strict: yes\n"), ":1:9", "strict",
                                  "expected true or false, got 'yes'"),
                "qdiff", "-c", yaml_file("b2.yaml", "strict: yes\n"));
}

static void test_lists(void)
{
    const char *path = yaml_file("l.yaml", "data: [x.jsonl, y.jsonl]\n"
                                           "run:\n  stages: [qdiff, score]\n");
    cfg_t *cfg;
    deft_err_t err;
    CHECK(parse(&cfg, &err, "qdiff", "--data", "a", "b", "--seed", "3", "--data", "c", NULL) ==
          DEFT_OK);
    CHECK(cfg_data_len(cfg) == 3 && cfg_int(cfg, "seed") == 3);
    CHECK(!strcmp(cfg_data_at(cfg, 0)->path, "a") && !strcmp(cfg_data_at(cfg, 2)->path, "c"));
    CHECK(!strcmp(cfg_data_at(cfg, 1)->format, "auto") && !cfg_data_at(cfg, 1)->subset);
    CHECK(!strcmp(cfg_origin(cfg, "data"), "--data"));
    cfg_free(cfg);

    // Flags replace the file's list, then append to each other.
    CHECK(parse(&cfg, &err, "qdiff", "-c", path, "--data=z.jsonl", NULL) == DEFT_OK);
    CHECK(cfg_data_len(cfg) == 1 && !strcmp(cfg_data_at(cfg, 0)->path, "z.jsonl"));
    cfg_free(cfg);
    CHECK(parse(&cfg, &err, "qdiff", "-c", path, NULL) == DEFT_OK);
    CHECK(cfg_data_len(cfg) == 2 && !strcmp(cfg_data_at(cfg, 1)->path, "y.jsonl"));
    cfg_free(cfg);

    CHECK(parse(&cfg, &err, "run", "-c", path, NULL) == DEFT_OK);
    CHECK(cfg_list_len(cfg, "stages") == 2 && !strcmp(cfg_list_at(cfg, "stages", 1), "score"));
    CHECK(cfg_list_at(cfg, "stages", 2) == NULL);
    cfg_free(cfg);
    // A list stops at -c as well as at the next --flag.
    CHECK(parse(&cfg, &err, "run", "--stages", "train", "export", "-c", path, "--force",
                NULL) == DEFT_OK);
    CHECK(cfg_list_len(cfg, "stages") == 2 && !strcmp(cfg_list_at(cfg, "stages", 0), "train"));
    CHECK(cfg_bool(cfg, "force") && cfg_data_len(cfg) == 2);
    cfg_free(cfg);

    CHECK_FAILS(DEFT_ERR_USAGE, P("--data", "missing value"), "qdiff", "--data", "--seed", "1");
    CHECK_FAILS(DEFT_ERR_USAGE, P("--data", "missing value"), "qdiff", "--data=");
    const char *bad = yaml_file("l2.yaml", "data:\n  - a.jsonl\n  - {subset: x}\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(bad, 3, 5), "data", "needs a path"), "qdiff",
                "-c", bad);
    bad = yaml_file("l3.yaml", "data:\n  - {path: a, fromat: pro}\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(bad, 2, 15), "fromat", "unknown field"), "qdiff",
                "-c", bad);
    bad = yaml_file("l4.yaml", "data:\n  - {path: a, format: csv}\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(bad, 2, 23), "format", "auto|hh|pro|pair", "'csv'"),
                "qdiff", "-c", bad);
    bad = yaml_file("l5.yaml", "data:\n  - {path: a, path: b}\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(bad, 2, 15), "path", "twice"), "qdiff", "-c", bad);
    bad = yaml_file("l6.yaml", "run:\n  stages: [qdiff, [score]]\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(bad, 2, 19), "run.stages", "expected a string",
                                  "a list"), "run", "-c", bad);
    bad = yaml_file("l7.yaml", "data: {path: a}\n");
    CHECK_MSG(parse(&cfg, &err, "qdiff", "-c", bad, NULL) == DEFT_OK, "%s", err.msg);
    CHECK(cfg_data_len(cfg) == 1 && !strcmp(cfg_data_at(cfg, 0)->path, "a"));
    cfg_free(cfg);
}

static void test_positional(void)
{
    cfg_t *cfg;
    deft_err_t err;
    CHECK(parse(&cfg, &err, "tokenize", "hello", "--bos", "world", "-5", "-", "--", "--eos",
                "-c", NULL) == DEFT_OK);
    CHECK(cfg_npositional(cfg) == 6);
    const char *want[] = {"hello", "world", "-5", "-", "--eos", "-c"};
    for (int i = 0; i < 6; i++)
        CHECK(!strcmp(cfg_positional(cfg, i), want[i]));
    CHECK(cfg_bool(cfg, "bos") && !cfg_bool(cfg, "eos"));
    CHECK(cfg_positional(cfg, 6) == NULL);
    cfg_free(cfg);
    CHECK_FAILS(DEFT_ERR_USAGE, P("-x", "unknown option", "deft tokenize"), "tokenize", "-x");
    // Commands that read no positional argument refuse one instead of ignoring it.
    CHECK_FAILS(DEFT_ERR_USAGE, P("'extra'", "unexpected argument", "'deft train' takes none"),
                "train", "--data", "a.jsonl", "--max-steps", "3", "--", "extra");
    CHECK_FAILS(DEFT_ERR_USAGE, P("'maybe'", "unexpected argument"), "qdiff", "--strict",
                "maybe");
    // plot takes one run folder or several to draw together
    CHECK(parse(&cfg, &err, "plot", "runs/a", "runs/b", NULL) == DEFT_OK);
    CHECK(cfg_npositional(cfg) == 2);
    CHECK(!strcmp(cfg_positional(cfg, 1), "runs/b"));
    cfg_free(cfg);
}

static void test_file_errors(void)
{
    const char *p;
    p = yaml_file("e1.yaml", "data: []\nseed: 1\nqdif:\n  delta: 0.1\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 3, 1), "qdif", "unknown top-level key",
                                  "did you mean qdiff?"), "qdiff", "-c", p);
    p = yaml_file("e2.yaml", "qdiff:\n  detla: 0.1\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 2, 3), "detla", "unknown key in section 'qdiff'",
                                  "did you mean delta?"), "qdiff", "-c", p);
    // Sections of other commands are validated too.
    p = yaml_file("e3.yaml", "qdiff:\n  delta: 0.1\ntrain:\n  epochs: 2\n  betta: 0.1\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 5, 3), "betta", "section 'train'"), "qdiff",
                "-c", p);
    p = yaml_file("e3b.yaml", "train:\n  epochs: two\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 2, 11), "train.epochs", "expected an integer"),
                "qdiff", "-c", p);
    p = yaml_file("e3c.yaml", "delta: 0.2\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 1, 1), "delta", "section 'qdiff:'"), "qdiff",
                "-c", p);
    p = yaml_file("e4.yaml", "qdiff:\n  seed: 3\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 2, 3), "seed", "shared key"), "qdiff", "-c", p);
    p = yaml_file("e5.yaml", "data: []\ntokenizer: t\nrun_dir: r\nseed: abc\n");
    char want[700];
    snprintf(want, sizeof want, "%s:4:7: seed: expected an integer, got 'abc'", p);
    CHECK_FAILS(DEFT_ERR_USAGE, P(want), "qdiff", "-c", p);
    p = yaml_file("e6.yaml", "seed: 1.5\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 1, 7), "expected an integer, got '1.5'"),
                "qdiff", "-c", p);
    p = yaml_file("e7.yaml", "seed: 9223372036854775808\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 1, 7), "64-bit range"), "qdiff", "-c", p);
    p = yaml_file("e7b.yaml", "seed: 9223372036854775807\n");
    cfg_t *cfg;
    deft_err_t err;
    CHECK(parse(&cfg, &err, "qdiff", "-c", p, NULL) == DEFT_OK);
    CHECK(cfg_int(cfg, "seed") == INT64_MAX);
    cfg_free(cfg);
    p = yaml_file("e8.yaml", "seed: -1\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 1, 7), "expected an integer >= 0, got '-1'"),
                "qdiff", "-c", p);
    p = yaml_file("e9.yaml", "qdiff:\n  delta: 2\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 2, 10), "qdiff.delta",
                                  "expected a number in [0, 0.5], got '2'"), "qdiff", "-c", p);
    p = yaml_file("e10.yaml", "select:\n  fraction: 0\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 2, 13), "expected a number in (0, 1]"),
                "select", "-c", p);
    p = yaml_file("e11.yaml", "train:\n  lr: 1e999\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 2, 7), "finite"), "train", "-c", p);
    p = yaml_file("e12.yaml", "train:\n  lr: .inf\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 2, 7), "expected a number"), "train", "-c", p);
    p = yaml_file("e13.yaml", "train:\n  method: deft\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 2, 11), "train.method",
                                  "expected one of sft|dpo|pro, got 'deft'"), "train", "-c", p);
    p = yaml_file("e14.yaml", "seed: 1\nstrict: true\nseed: 2\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 3, 1), "seed", "twice", "line 1, column 1"),
                "qdiff", "-c", p);
    p = yaml_file("e15.yaml", "qdiff:\n  top: 1\n  top: 2\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 3, 3), "top", "twice"), "qdiff", "-c", p);
    p = yaml_file("e16.yaml", "seed: [1, 2\ntokenizer: x\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(p, "invalid YAML", "line"), "qdiff", "-c", p);
    p = yaml_file("e17.yaml", "seed: 1\n  bad: indent\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 2, 6), "invalid YAML",
                                  "mapping values are not allowed"), "qdiff", "-c", p);
    p = yaml_file("e18.yaml", "- a\n- b\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 1, 1), "expected a mapping", "top level"),
                "qdiff", "-c", p);
    p = yaml_file("e19.yaml", "seed: 1\n---\nseed: 2\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 3, 1), "one YAML document"), "qdiff", "-c", p);
    p = yaml_file("e20.yaml", "seed: {a: 1}\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 1, 7), "seed", "got a mapping"), "qdiff", "-c",
                p);
    p = yaml_file("e21.yaml", "seed:\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(p, "seed", "expected an integer, got null"), "qdiff", "-c",
                p);
    p = yaml_file("e21b.yaml", "qdiff:\n  out: ~\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 2, 8), "qdiff.out", "expected a string, got null"),
                "qdiff", "-c", p);
    p = yaml_file("e22.yaml", "qdiff: 3\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(origin_of(p, 1, 8), "qdiff", "expected a mapping"), "qdiff",
                "-c", p);
    p = yaml_file("e23.yaml", "seed: \"\xff\"\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P(p, "invalid YAML"), "qdiff", "-c", p);

    char missing[600];
    snprintf(missing, sizeof missing, "%s/no-such.yaml", tmpdir);
    CHECK_FAILS(DEFT_ERR_IO, P(missing, "cannot open"), "qdiff", "-c", missing);
    CHECK_FAILS(DEFT_ERR_USAGE, P("-c", "missing"), "qdiff", "-c");
    p = yaml_file("e24.yaml", "seed: 1\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P("already given"), "qdiff", "-c", p, "-c", p);
}

static void test_flag_errors(void)
{
    CHECK_FAILS(DEFT_ERR_USAGE, P("--detla: unknown key for 'deft qdiff'; did you mean --delta?"),
                "qdiff", "--detla", "0.1");
    CHECK_FAILS(DEFT_ERR_USAGE, P("--per-subest", "did you mean --per-subset?"), "qdiff",
                "--per-subest");
    CHECK_FAILS(DEFT_ERR_USAGE, P("--beta", "unknown key for 'deft qdiff'", "deft train"),
                "qdiff", "--beta", "0.1");
    CHECK_FAILS(DEFT_ERR_USAGE, P("--delta: missing value", "[0, 0.5]"), "qdiff", "--delta");
    CHECK_FAILS(DEFT_ERR_USAGE, P("--out: missing value"), "qdiff", "--out", "--delta", "0.1");
    CHECK_FAILS(DEFT_ERR_USAGE, P("--seed: expected an integer, got 'abc'"), "qdiff", "--seed",
                "abc");
    CHECK_FAILS(DEFT_ERR_USAGE, P("--delta: expected a number in [0, 0.5], got '0.7'"), "qdiff",
                "--delta=0.7");
    CHECK_FAILS(DEFT_ERR_USAGE, P("--schedule", "one of constant|cosine|linear", "'step'"),
                "train", "--schedule", "step");
    // A flag error is reported even when the file is fine, and names the flag.
    const char *p = yaml_file("f.yaml", "seed: 1\n");
    CHECK_FAILS(DEFT_ERR_USAGE, P("--top", "expected an integer"), "qdiff", "-c", p, "--top",
                "1e3");
}

/* Runs fn with stdout sent to a file and returns what it printed (caller frees). */
static char *capture_stdout(int (*fn)(void))
{
    char path[600];
    snprintf(path, sizeof path, "%s/stdout.txt", tmpdir);
    fflush(stdout);
    int saved = dup(1);
    FILE *f = fopen(path, "w+");
    dup2(fileno(f), 1);
    fn();
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *text = calloc((size_t)n + 1, 1);
    size_t got = fread(text, 1, (size_t)n, f);
    text[got] = '\0';
    fclose(f);
    return text;
}

static int help_rc;

static int run_help(void)
{
    cfg_t *cfg = NULL;
    deft_err_t err;
    help_rc = parse(&cfg, &err, "qdiff", "--delta", "9", "--help", NULL);
    cfg_free(cfg);
    return 0;
}

static void test_help(void)
{
    char *text = capture_stdout(run_help);
    CHECK(help_rc == DEFT_HELP);
    CHECK(contains(text, "usage: deft qdiff"));
    const char *seed = strstr(text, "--seed INT"), *delta = strstr(text, "--delta NUMBER");
    CHECK(seed && delta && seed < delta);
    CHECK(contains(text, "--delta NUMBER  (default: 0.1, in [0, 0.5])\n      "));
    CHECK(contains(text, "--per-subset, --no-per-subset"));
    CHECK(contains(text, "--backend auto|cpu|cuda"));
    CHECK(contains(text, "--data PATH..."));
    for (int i = 0; i < cfg_section_at(1)->nkeys; i++)
        CHECK(contains(text, cfg_section_at(1)->keys[i].help));
    free(text);
}

static void test_dump(void)
{
    const char *path = yaml_file("d.yaml", example_yaml);
    cfg_t *a, *b;
    deft_err_t err;
    CHECK(parse(&a, &err, "qdiff", "-c", path, "--top", "3", "--out", "q \"1\".h5", NULL) ==
          DEFT_OK);
    strbuf_t da = {0}, db = {0};
    cfg_dump(a, &da);
    CHECK(contains(da.data, "data:\n  - {path: \"data/hh-rlhf/harmless-base-test.jsonl.gz\", "
                            "subset: null, format: \"auto\"}\n"));
    CHECK(contains(da.data, "subset: \"helpful-base\", format: \"pro\"}\n"));
    CHECK(contains(da.data, "\nseed: 7\nstrict: false\n"));
    CHECK(contains(da.data, "\nmodel: null\n"));
    CHECK(contains(da.data, "\nqdiff:\n  out: \"q \\\"1\\\".h5\"\n  delta: 0.2\n"));
    CHECK(contains(da.data, "  top: 3\n"));
    CHECK(!contains(da.data, "train:"));
    // Shared keys first, in table order, then the section.
    CHECK(strstr(da.data, "data:") < strstr(da.data, "seed:"));
    CHECK(strstr(da.data, "log_every:") < strstr(da.data, "qdiff:"));

    // Reading the dump back gives the same values, hence the same text.
    const char *again = yaml_file("dump.yaml", da.data);
    CHECK_MSG(parse(&b, &err, "qdiff", "-c", again, NULL) == DEFT_OK, "%s", err.msg);
    cfg_dump(b, &db);
    CHECK_MSG(db.data && !strcmp(da.data, db.data), "\n%s\n---\n%s", da.data, db.data);
    cfg_free(b);
    sb_free(&db);

    // The same values from flags instead of the file dump to the same text.
    CHECK(parse(&b, &err, "qdiff", "--data", "data/hh-rlhf/harmless-base-test.jsonl.gz",
                "--tokenizer", "data/llama3", "--run-dir", "runs/quickstart", "--seed", "7",
                "--delta", "0.2", "--per-subset", "--top", "3", "--out", "q \"1\".h5",
                NULL) == DEFT_OK);
    cfg_dump(b, &db);
    CHECK(!contains(db.data, "helpful-base"));
    CHECK(contains(db.data, "qdiff:\n  out: \"q \\\"1\\\".h5\"\n  delta: 0.2\n"));
    cfg_free(b);
    sb_free(&db);

    // Floats stay floats and round-trip exactly.
    CHECK(parse(&b, &err, "train", "--lr", "5.0e-7", "--omega", "2", NULL) == DEFT_OK);
    cfg_dump(b, &db);
    CHECK(contains(db.data, "  lr: 5e-07\n") && contains(db.data, "  omega: 2.0\n"));
    CHECK(contains(db.data, "  resume: null\n"));
    cfg_free(b);
    sb_free(&db);
    cfg_free(a);
    sb_free(&da);
}

static void test_table(void)
{
    const char *path = yaml_file("t.yaml", example_yaml);
    cfg_t *cfg;
    deft_err_t err;
    CHECK(parse(&cfg, &err, "qdiff", "-c", path, "--top", "3", NULL) == DEFT_OK);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cfg_print_table(cfg, f);
    fclose(f);
    CHECK(text && !strncmp(text, "+-", 2));
    CHECK(contains(text, "| key "));
    CHECK(contains(text, "| qdiff.top "));
    CHECK(contains(text, "| --top "));
    CHECK(contains(text, "| data[1] "));
    CHECK(contains(text, "(subset helpful-base, format pro)"));
    CHECK(contains(text, origin_of(path, 6, 7)));
    CHECK(contains(text, "| tokenizer "));
    // A box: every line has the same width and starts and ends with a border.
    size_t width = strcspn(text, "\n");
    int lines = 0;
    for (char *line = text; *line; lines++) {
        size_t n = strcspn(line, "\n");
        CHECK_MSG(n == width && (line[0] == '|' || line[0] == '+') &&
                  (line[n - 1] == '|' || line[n - 1] == '+'), "%.*s", (int)n, line);
        line += n + (line[n] == '\n');
    }
    CHECK(lines == 3 + 1 + cfg_shared.nkeys + cfg_find_section("qdiff")->nkeys + 1);
    free(text);
    cfg_free(cfg);
}

static bool is_snake_case(const char *s)
{
    if (!*s || !(*s >= 'a' && *s <= 'z'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static void check_table(const cfg_section_t *sec)
{
    for (int i = 0; i < sec->nkeys; i++) {
        const cfg_key_t *k = &sec->keys[i];
        CHECK_MSG(is_snake_case(k->name), "%s.%s", sec->name, k->name);
        CHECK_MSG(k->help && *k->help, "%s.%s has no help", sec->name, k->name);
        CHECK_MSG(k->type != CFG_ENUM || (k->choices && k->def), "%s.%s", sec->name, k->name);
        CHECK_MSG(strncmp(k->name, "no_", 3), "%s.%s: --no- is for false", sec->name, k->name);
        for (int j = 0; j < i; j++)
            CHECK_MSG(strcmp(k->name, sec->keys[j].name), "%s.%s twice", sec->name, k->name);
        if (sec != &cfg_shared)
            for (int j = 0; j < cfg_shared.nkeys; j++)
                CHECK_MSG(strcmp(k->name, cfg_shared.keys[j].name),
                          "%s.%s hides a shared key", sec->name, k->name);
    }
}

static void test_registry(void)
{
    const char *required[] = {"tokenize", "qdiff", "score", "select", "train", "run",
                              "init", "logprobs", "generate", "export", "plot"};
    for (size_t i = 0; i < DEFT_ARRAY_LEN(required); i++)
        CHECK_MSG(cfg_find_section(required[i]), "no section %s", required[i]);
    CHECK(cfg_find_section("shared") == NULL && cfg_find_section("nope") == NULL);
    CHECK(cfg_section_at(-1) == NULL && cfg_section_at(cfg_nsections()) == NULL);
    check_table(&cfg_shared);
    for (int i = 0; i < cfg_nsections(); i++) {
        const cfg_section_t *sec = cfg_section_at(i);
        check_table(sec);
        CHECK(sec->summary && *sec->summary);
        for (int j = 0; j < cfg_shared.nkeys; j++)
            CHECK(strcmp(sec->name, cfg_shared.keys[j].name));
    }
    cfg_t *cfg;
    deft_err_t err;
    CHECK(parse(&cfg, &err, "no-such-command", NULL) == DEFT_ERR_INTERNAL);
}

/* docs/config.md is the output of `deft config-doc`; it must not go stale. */
static void test_reference_doc(void)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cfg_write_reference(f);
    fclose(f);
    CHECK(contains(text, "| `delta` | number | `0.1` | in [0, 0.5] |"));
    CHECK(contains(text, "sft\\|dpo\\|pro"));
    FILE *doc = fopen("docs/config.md", "rb");
    CHECK_MSG(doc, "docs/config.md: cannot open (run from the repository root)");
    if (doc) {
        char *committed = calloc(len + 2, 1);
        size_t got = fread(committed, 1, len + 1, doc);
        fclose(doc);
        CHECK_MSG(got == len && !memcmp(committed, text, len),
                  "docs/config.md is out of date: run `deft config-doc > docs/config.md`");
        free(committed);
    }
    free(text);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror(tmpdir);
        return 1;
    }
    test_defaults();
    test_file_and_precedence();
    test_nulls_and_scalars();
    test_bool_flags();
    test_lists();
    test_positional();
    test_file_errors();
    test_flag_errors();
    test_help();
    test_dump();
    test_table();
    test_registry();
    test_reference_doc();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_DONE();
}
