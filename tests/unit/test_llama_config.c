/* config.json reading and writing: the shipped shapes in conf/models, the
 * bundled TinyStories model, the rope_parameters layout of newer
 * transformers, round trips and errors that name the field. Parameter
 * counts were taken from transformers' LlamaForCausalLM on these configs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/llama_config.h"
#include "test_util.h"

static char tmpdir[] = "/tmp/deft-cfg-XXXXXX";

static int load_text(llama_config_t *c, const char *text, deft_err_t *err)
{
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", tmpdir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return llama_config_load(c, tmpdir, err);
}

static void test_shipped(void)
{
    llama_config_t c;
    deft_err_t err = {0};
    CHECK_MSG(llama_config_load(&c, "conf/models/llama3-8b.json", &err) == 0, "%s", err.msg);
    CHECK(c.vocab_size == 128256 && c.hidden_size == 4096 && c.intermediate_size == 14336);
    CHECK(c.num_layers == 32 && c.num_heads == 32 && c.num_kv_heads == 8 && c.head_dim == 128);
    CHECK(c.rope_theta == 500000.0 && c.rms_norm_eps == 1e-5 && !c.rope_llama3);
    CHECK(c.max_position_embeddings == 8192 && !c.tie_word_embeddings);
    CHECK(c.bos_token_id == 128000 && c.n_eos == 1 && c.eos_token_ids[0] == 128001);
    CHECK(!strcmp(c.torch_dtype, "bfloat16"));
    CHECK(llama_config_nparams(&c) == 8030261248LL);

    CHECK_MSG(llama_config_load(&c, "conf/models/llama3.1-8b.json", &err) == 0, "%s",
              err.msg);
    CHECK(c.rope_llama3 && c.rope_factor == 8.0 && c.rope_low_freq_factor == 1.0);
    CHECK(c.rope_high_freq_factor == 4.0 && c.rope_original_max_pos == 8192);
    CHECK(c.max_position_embeddings == 131072 && c.n_eos == 3 && c.eos_token_ids[2] == 128009);

    CHECK_MSG(llama_config_load(&c, "conf/models/tiny-llama3.json", &err) == 0, "%s",
              err.msg);
    CHECK(c.vocab_size == 128256 && c.head_dim == 16 && c.tie_word_embeddings);
    CHECK(llama_config_nparams(&c) == 8307008);

    CHECK_MSG(llama_config_load(&c, "data/models/TinyStories-656K", &err) == 0, "%s", err.msg);
    CHECK(c.vocab_size == 2048 && c.hidden_size == 128 && c.intermediate_size == 384);
    CHECK(c.num_layers == 2 && c.num_heads == 8 && c.num_kv_heads == 4 && c.head_dim == 16);
    CHECK(c.rope_theta == 10000.0 && c.rms_norm_eps == 1e-6 && c.tie_word_embeddings);
    CHECK(c.bos_token_id == 1 && c.n_eos == 1 && c.eos_token_ids[0] == 2);
    CHECK(c.max_position_embeddings == 512 && !strcmp(c.torch_dtype, "float32"));
    /* the model file holds 656,512 floats (2,626,168 bytes less the header) */
    CHECK(llama_config_nparams(&c) == 656000);
}

static void test_defaults_and_new_layout(void)
{
    llama_config_t c;
    deft_err_t err = {0};
    /* minimal: transformers' LlamaConfig defaults fill the rest */
    CHECK(load_text(&c, "{\"vocab_size\": 100, \"hidden_size\": 32, \"intermediate_size\": "
                        "64, \"num_hidden_layers\": 1, \"num_attention_heads\": 4}",
                    &err) == 0);
    CHECK(c.num_kv_heads == 4 && c.head_dim == 8 && c.rope_theta == 10000.0);
    CHECK(c.rms_norm_eps == 1e-6 && c.max_position_embeddings == 2048);
    CHECK(!c.tie_word_embeddings && c.bos_token_id == -1 && c.n_eos == 0);
    /* transformers 5 layout: rope_parameters and dtype */
    CHECK_MSG(load_text(&c, "{\"model_type\": \"llama\", \"vocab_size\": 100, \"hidden_size\": "
                            "32, \"intermediate_size\": 64, \"num_hidden_layers\": 1, "
                            "\"num_attention_heads\": 4, \"dtype\": \"bfloat16\", "
                            "\"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": "
                            "\"llama3\", \"factor\": 8, \"low_freq_factor\": 1, "
                            "\"high_freq_factor\": 4, \"original_max_position_embeddings\": "
                            "8192}}", &err) == 0, "%s", err.msg);
    CHECK(c.rope_theta == 500000.0 && c.rope_llama3 && c.rope_factor == 8.0);
    CHECK(!strcmp(c.torch_dtype, "bfloat16"));
    /* old spelling "type" */
    CHECK(load_text(&c, "{\"vocab_size\": 100, \"hidden_size\": 32, \"intermediate_size\": "
                        "64, \"num_hidden_layers\": 1, \"num_attention_heads\": 4, "
                        "\"rope_scaling\": {\"type\": \"llama3\", \"factor\": 2, "
                        "\"low_freq_factor\": 1, \"high_freq_factor\": 4, "
                        "\"original_max_position_embeddings\": 64}}", &err) == 0);
    CHECK(c.rope_llama3 && c.rope_factor == 2.0 && c.rope_original_max_pos == 64);
}

static void expect_error(const char *label, const char *text, const char *needle)
{
    llama_config_t c;
    deft_err_t err = {0};
    int rc = load_text(&c, text, &err);
    CHECK_MSG(rc == DEFT_ERR_FORMAT, "%s: rc %d", label, rc);
    CHECK_MSG(strstr(err.msg, needle) && strstr(err.msg, "config.json"),
              "%s: message '%s' lacks '%s'", label, err.msg, needle);
}

#define BASE "\"vocab_size\": 100, \"hidden_size\": 32, \"intermediate_size\": 64, " \
             "\"num_hidden_layers\": 1, \"num_attention_heads\": 4"

static void test_errors(void)
{
    expect_error("missing", "{\"hidden_size\": 32}", "'vocab_size'");
    expect_error("string int", "{" BASE ", \"num_key_value_heads\": \"2\"}",
                 "'num_key_value_heads'");
    expect_error("gqa", "{" BASE ", \"num_key_value_heads\": 3}", "multiple");
    expect_error("negative", "{\"vocab_size\": -5}", "'vocab_size'");
    expect_error("eps", "{" BASE ", \"rms_norm_eps\": \"x\"}", "'rms_norm_eps'");
    expect_error("tie", "{" BASE ", \"tie_word_embeddings\": 1}", "'tie_word_embeddings'");
    expect_error("model_type", "{" BASE ", \"model_type\": \"gpt2\"}", "'model_type'");
    expect_error("bias", "{" BASE ", \"attention_bias\": true}", "'attention_bias'");
    expect_error("act", "{" BASE ", \"hidden_act\": \"gelu\"}", "'hidden_act'");
    expect_error("rope type", "{" BASE ", \"rope_scaling\": {\"rope_type\": \"yarn\"}}",
                 "'yarn'");
    expect_error("rope field", "{" BASE ", \"rope_scaling\": {\"rope_type\": \"llama3\", "
                 "\"factor\": 8}}", "'low_freq_factor'");
    expect_error("eos", "{" BASE ", \"eos_token_id\": [1, \"2\"]}", "'eos_token_id'");
    expect_error("eos many", "{" BASE ", \"eos_token_id\": [1, 2, 3, 4, 5]}",
                 "'eos_token_id'");
    expect_error("dtype", "{" BASE ", \"torch_dtype\": \"int8\"}", "'torch_dtype'");
    expect_error("json", "{" BASE ",}", "malformed JSON");
    expect_error("head split", "{\"vocab_size\": 100, \"hidden_size\": 30, "
                 "\"intermediate_size\": 64, \"num_hidden_layers\": 1, "
                 "\"num_attention_heads\": 4}", "head_dim");
    llama_config_t c;
    deft_err_t err = {0};
    CHECK(llama_config_load(&c, "/nonexistent/config.json", &err) == DEFT_ERR_IO);
}

static void test_roundtrip(void)
{
    const char *files[] = {"conf/models/llama3.1-8b.json", "conf/models/tiny-llama3.json",
                           "data/models/TinyStories-656K/config.json"};
    for (size_t i = 0; i < DEFT_ARRAY_LEN(files); i++) {
        llama_config_t a, b;
        deft_err_t err = {0};
        CHECK(llama_config_load(&a, files[i], &err) == 0);
        CHECK_MSG(llama_config_save(&a, tmpdir, &err) == 0, "%s", err.msg);
        CHECK_MSG(llama_config_load(&b, tmpdir, &err) == 0, "%s", err.msg);
        CHECK_MSG(memcmp(&a, &b, sizeof a) == 0, "%s changed in a round trip", files[i]);
    }
}

int main(void)
{
    if (!mkdtemp(tmpdir))
        return 1;
    test_shipped();
    test_defaults_and_new_layout();
    test_errors();
    test_roundtrip();
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", tmpdir);
    unlink(path);
    rmdir(tmpdir);
    TEST_DONE();
}
