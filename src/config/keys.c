/* The registry of configuration keys: the shared top-level table and one
 * table per stage section. Each entry is one line; add a key by adding a
 * line, and `deft config-doc > docs/config.md` documents it. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "config/config.h"

/* Range shorthands for CFG_INT/CFG_FLOAT entries (inclusive unless open). */
#define AT_LEAST(lo) .min = (lo), .max = INFINITY
#define ABOVE(lo) .min = (lo), .max = INFINITY, .min_open = true
#define IN(lo, hi) .min = (lo), .max = (hi)
#define ABOVE_UPTO(lo, hi) .min = (lo), .max = (hi), .min_open = true

#define KEY(n, t, d, ...) {.name = (n), .type = (t), .def = (d), __VA_ARGS__}
#define SECTION(n, table, text, ...) \
    {.name = (n), .keys = (table), .nkeys = (int)DEFT_ARRAY_LEN(table), .summary = (text), \
     __VA_ARGS__}

// ----------------------------------------------------------------------------
// shared keys: top level of a config file, read by every command

static const cfg_key_t shared_keys[] = {
    KEY("data", CFG_DATA, NULL,
        .help = "preference data files: each a path, or {path, subset, format} "
                "(format auto|hh|pro|pair)"),
    KEY("tokenizer", CFG_STRING, NULL,
        .help = "tokenizer: a model folder, a tokenizer.json or a tiktoken tokenizer.model"),
    KEY("model", CFG_STRING, NULL,
        .help = "starting model: a Hugging Face folder (config.json + safetensors) "
                "or a deft checkpoint"),
    KEY("run_dir", CFG_STRING, "runs/default",
        .help = "folder that holds every stage's output and run.log"),
    KEY("seed", CFG_INT, "1234", AT_LEAST(0),
        .help = "seed of every random choice (data order, sampling, initialisation)"),
    KEY("strict", CFG_BOOL, "false",
        .help = "fail on the first sample that carries no preference instead of "
                "counting and skipping it"),
    KEY("keep_file_order", CFG_BOOL, "false",
        .help = "rank responses of scored (PRO) data in file order, not by reward"),
    KEY("log_every", CFG_INT, "10", AT_LEAST(1),
        .help = "steps between two step lines in the log (metrics.jsonl has every step)"),
    KEY("tp", CFG_INT, "1", AT_LEAST(1),
        .help = "tensor-parallel size (ranks per model replica); divides the vocabulary, "
                "head counts and MLP width"),
    KEY("backend", CFG_ENUM, "auto", .choices = "auto|cpu|cuda",
        .help = "where tensors live: auto takes CUDA when the build and machine have it"),
};

const cfg_section_t cfg_shared = SECTION("shared", shared_keys, "keys shared by every command");

// ----------------------------------------------------------------------------
// one table per stage: the section of the same name in a config file

static const cfg_key_t tokenize_keys[] = {
    KEY("special", CFG_BOOL, "false",
        .help = "read special-token strings in the text as special tokens, not plain text"),
    KEY("bos", CFG_BOOL, "false", .help = "prepend the BOS token"),
    KEY("eos", CFG_BOOL, "false", .help = "append the EOS token"),
};

static const cfg_key_t qdiff_keys[] = {
    KEY("out", CFG_STRING, "qdiff.h5", .help = "where Q_diff and the token counts go (HDF5)"),
    KEY("delta", CFG_FLOAT, "0.1", IN(0, 0.5),
        .help = "normalised reward >= 1-delta counts as positive, <= delta as negative "
                "(rankings longer than two)"),
    KEY("per_subset", CFG_BOOL, "false",
        .help = "build one Q_diff per subset as well as the global one"),
    KEY("top", CFG_INT, "20", AT_LEAST(0),
        .help = "number of most positive and most negative tokens to print"),
};

static const cfg_key_t score_keys[] = {
    KEY("qdiff", CFG_STRING, "qdiff.h5", .help = "Q_diff file written by `deft qdiff`"),
    KEY("out", CFG_STRING, "scores.h5", .help = "where the R_Q of every sample goes (HDF5)"),
    KEY("batch_size", CFG_INT, "8", AT_LEAST(1), .help = "samples per forward pass per rank"),
    KEY("max_len", CFG_INT, "512", AT_LEAST(2),
        .help = "tokens per sequence (BOS + prompt + response); the prompt is cut from "
                "the left"),
    KEY("responses", CFG_ENUM, "best", .choices = "best|all",
        .help = "score R_Q on the best response, or average it over all responses"),
    KEY("ifd_model", CFG_STRING, NULL,
        .help = "also compute IFD = ppl(response | prompt) / ppl(response) under this model"),
};

static const cfg_key_t select_keys[] = {
    KEY("scores", CFG_STRING, "scores.h5", .help = "scores file written by `deft score`"),
    KEY("fraction", CFG_FLOAT, "0.05", ABOVE_UPTO(0, 1),
        .help = "share of each subset to keep: k = ceil(fraction * n)"),
    KEY("by", CFG_ENUM, "rq", .choices = "rq|likelihood|random|ifd",
        .help = "criterion: lowest R_Q (DEFT), likelihood, random, or IFD baselines"),
    KEY("out", CFG_STRING, "selected.jsonl",
        .help = "selected records, verbatim lines of the input files (JSONL)"),
};

static const cfg_key_t train_keys[] = {
    KEY("method", CFG_ENUM, "dpo", .choices = "sft|dpo|pro",
        .help = "alignment loss; omega > 0 adds the DEFT term -omega * R_Q"),
    KEY("omega", CFG_FLOAT, "0",
        .help = "weight of the distribution reward R_Q in the loss (paper: 1.2e-7 DPO, "
                "1.2e-6 PRO)"),
    KEY("sft_weight", CFG_FLOAT, "0.05", AT_LEAST(0),
        .help = "weight of the SFT term on the best response"),
    KEY("beta", CFG_FLOAT, "0.1", ABOVE(0), .help = "DPO temperature"),
    KEY("lr", CFG_FLOAT, "5e-7", ABOVE(0),
        .help = "peak learning rate of AdamW (paper: 5e-7 DPO, 5e-6 PRO)"),
    KEY("epochs", CFG_INT, "2", AT_LEAST(1), .help = "passes over the training data"),
    KEY("max_steps", CFG_INT, "0", AT_LEAST(0),
        .help = "stop after this many optimizer steps; 0: run every epoch"),
    /* int in train_opts_t: a larger value would wrap around */
    KEY("micro_batch", CFG_INT, "2", .min = 1, .max = INT32_MAX,
        .help = "samples per forward pass per rank"),
    KEY("grad_accum", CFG_INT, "1", .min = 1, .max = INT32_MAX,
        .help = "micro-batches per optimizer step"),
    KEY("max_len", CFG_INT, "512", AT_LEAST(2),
        .help = "tokens per sequence (BOS + prompt + response + EOS)"),
    KEY("max_prompt_len", CFG_INT, "384", AT_LEAST(1),
        .help = "prompt tokens kept, cut from the left"),
    KEY("warmup_steps", CFG_INT, "0", AT_LEAST(0),
        .help = "steps of linear learning-rate warmup"),
    KEY("schedule", CFG_ENUM, "constant", .choices = "constant|cosine|linear",
        .help = "learning-rate schedule after warmup"),
    KEY("weight_decay", CFG_FLOAT, "0", AT_LEAST(0), .help = "AdamW decoupled weight decay"),
    KEY("grad_clip", CFG_FLOAT, "1.0", AT_LEAST(0),
        .help = "clip the global gradient norm to this; 0: no clipping"),
    KEY("checkpoint_every", CFG_INT, "0", AT_LEAST(0),
        .help = "optimizer steps between checkpoints; 0: only at the end"),
    KEY("keep_checkpoints", CFG_INT, "2", AT_LEAST(0),
        .help = "newest checkpoints kept in run_dir/checkpoints; 0: keep all"),
    KEY("resume", CFG_STRING, NULL,
        .help = "checkpoint to resume from (epoch, data position, RNG, optimizer), or auto: "
                "the newest good one in run_dir/checkpoints, if any"),
    KEY("qdiff", CFG_STRING, NULL,
        .help = "Q_diff file of `deft qdiff`: R_Q is reported, and trained on when omega != 0"),
    KEY("ref", CFG_STRING, NULL,
        .help = "reference log-probs (DPO), made once and reused; unset: run_dir/ref.h5"),
    KEY("eval_fraction", CFG_FLOAT, "0", IN(0, 0.5),
        .help = "share of the samples held out for evaluation, chosen by a hash of the id"),
    KEY("eval_data", CFG_LIST, NULL,
        .help = "separate evaluation files (instead of eval_fraction)"),
    KEY("eval_every", CFG_INT, "0", AT_LEAST(0),
        .help = "optimizer steps between evaluations; 0: before training and at the end"),
    KEY("peak_flops", CFG_FLOAT, "1e12", ABOVE(0),
        .help = "peak FLOP/s of one rank's hardware, for MFU (1e12: a 16-core AVX-512 "
                "CPU in fp32)"),
};

static const cfg_key_t run_keys[] = {
    KEY("stages", CFG_LIST, NULL,
        .help = "stages to run, in the fixed order sft qdiff score select train export "
                "generate; unset: all but sft (sft too with sft_first)"),
    KEY("sft_first", CFG_BOOL, "false",
        .help = "first fine-tune the model on the best responses of all data (SFT) and "
                "start every later stage from it"),
    KEY("generate", CFG_INT, "3", AT_LEAST(0),
        .help = "held-out prompts (the first ones not selected) completed greedily before "
                "and after training; 0: none"),
    KEY("generate_tokens", CFG_INT, "48", AT_LEAST(1),
        .help = "tokens generated per prompt at most"),
    KEY("generate_prompt_tokens", CFG_INT, "256", AT_LEAST(1),
        .help = "prompt tokens kept for generation, cut from the left"),
    KEY("force", CFG_BOOL, "false",
        .help = "rerun stages whose inputs are unchanged since their last run"),
};

static const cfg_key_t init_keys[] = {
    KEY("model_config", CFG_STRING, NULL,
        .help = "Hugging Face config.json describing the architecture"),
    KEY("out", CFG_STRING, NULL, .help = "folder of the randomly initialised model"),
};

static const cfg_key_t logprobs_keys[] = {
    KEY("batch_size", CFG_INT, "8", AT_LEAST(1), .help = "sequences per forward pass"),
};

static const cfg_key_t generate_keys[] = {
    KEY("prompt", CFG_LIST, NULL, .help = "prompts to complete, one generation each"),
    KEY("max_new_tokens", CFG_INT, "128", AT_LEAST(1),
        .help = "tokens generated per prompt at most (paper: 128)"),
    KEY("temperature", CFG_FLOAT, "0", AT_LEAST(0),
        .help = "softmax temperature; 0: greedy decoding"),
    KEY("top_p", CFG_FLOAT, "1.0", ABOVE_UPTO(0, 1),
        .help = "nucleus sampling: smallest token set with this probability mass"),
    KEY("ids", CFG_BOOL, "false",
        .help = "print prompt and generated token ids as a JSON line instead of text"),
};

static const cfg_key_t export_keys[] = {
    KEY("checkpoint", CFG_STRING, NULL,
        .help = "checkpoint to export; unset: the newest in run_dir/checkpoints"),
    KEY("out", CFG_STRING, "export",
        .help = "Hugging Face folder to write (config.json + safetensors)"),
};

static const cfg_key_t plot_keys[] = {
    KEY("metrics", CFG_STRING, "metrics.jsonl",
        .help = "training metrics to plot; relative: inside each run folder"),
    KEY("out", CFG_STRING, "plots",
        .help = "folder for the PNG files; relative: inside the first run folder"),
};

static const cfg_section_t sections[] = {
    SECTION("tokenize", tokenize_keys, "print the token ids of a text",
            .max_positional = -1),
    SECTION("qdiff", qdiff_keys, "count tokens of preferred and rejected responses: Q_diff"),
    SECTION("score", score_keys, "distribution reward R_Q of every sample"),
    SECTION("select", select_keys, "keep the lowest-R_Q fraction of each subset"),
    SECTION("train", train_keys, "preference training: SFT, DPO, PRO, with the DEFT term"),
    SECTION("run", run_keys, "every stage in order, skipping those already done"),
    SECTION("init", init_keys, "a randomly initialised model from a config.json"),
    SECTION("logprobs", logprobs_keys, "log-probabilities of responses under a model"),
    SECTION("generate", generate_keys, "complete prompts with a model"),
    SECTION("export", export_keys, "write a checkpoint as a Hugging Face model"),
    SECTION("plot", plot_keys, "plot the training metrics of one run, or of several together",
            .max_positional = -1),
};

const cfg_section_t *cfg_find_section(const char *name)
{
    for (size_t i = 0; i < DEFT_ARRAY_LEN(sections); i++)
        if (!strcmp(sections[i].name, name))
            return &sections[i];
    return NULL;
}

int cfg_nsections(void) { return (int)DEFT_ARRAY_LEN(sections); }

const cfg_section_t *cfg_section_at(int i)
{
    return i >= 0 && i < cfg_nsections() ? &sections[i] : NULL;
}
