/* Hugging Face checkpoints: config.json parsing against transformers' LlamaConfig defaults and field
 * names, refusal of what the Llama forward pass does not implement, and single-file and sharded weight
 * folders (index + shards), including inconsistent indexes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

/* Fails unless the call failed with WANT and the message names each needle (NULL: none). */
static void check_failure(pissa_status got, pissa_status want, const char *expr, const char *needle1,
                          const char *needle2) {
    const char *m = pissa_last_error();
    if (got != want) fail_msg("%s -> %s (wanted %s): %s", expr, pissa_status_name(got), pissa_status_name(want), m);
    if (needle1 && !strstr(m, needle1)) fail_msg("message '%s' lacks '%s'", m, needle1);
    if (needle2 && !strstr(m, needle2)) fail_msg("message '%s' lacks '%s'", m, needle2);
}
#define assert_fails(expr, want, needle1, needle2) check_failure((expr), (want), #expr, (needle1), (needle2))

static pissa_status parse(const char *json, pissa_llama_config *c) {
    return pissa_llama_config_parse(json, strlen(json), "config.json", c);
}

/* TinyLlama-1.1B's config.json as published (GQA: 32 heads, 4 KV heads). */
static const char *tinyllama =
    "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"attention_bias\": false,\n  \"bos_token_id\": 1,\n"
    "  \"eos_token_id\": 2,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": 2048,\n  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 5632,\n  \"max_position_embeddings\": 2048,\n  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 32,\n  \"num_hidden_layers\": 22,\n  \"num_key_value_heads\": 4,\n"
    "  \"pretraining_tp\": 1,\n  \"rms_norm_eps\": 1e-05,\n  \"rope_scaling\": null,\n  \"rope_theta\": 10000.0,\n"
    "  \"tie_word_embeddings\": false,\n  \"torch_dtype\": \"bfloat16\",\n  \"transformers_version\": \"4.35.0\",\n"
    "  \"use_cache\": true,\n  \"vocab_size\": 32000\n}\n";

static void parses_a_published_llama_config(void **state) {
    (void)state;
    pissa_llama_config c;
    assert_ok(parse(tinyllama, &c));
    assert_string_equal(c.model_type, "llama");
    assert_int_equal(c.hidden_size, 2048);
    assert_int_equal(c.intermediate_size, 5632);
    assert_int_equal(c.num_hidden_layers, 22);
    assert_int_equal(c.num_attention_heads, 32);
    assert_int_equal(c.num_key_value_heads, 4);
    assert_int_equal(c.head_dim, 64);
    assert_int_equal(c.vocab_size, 32000);
    assert_int_equal(c.max_position_embeddings, 2048);
    assert_true(c.rms_norm_eps == 1e-5);
    assert_true(c.rope_theta == 10000.0);
    assert_int_equal(c.tie_word_embeddings, 0);
    assert_string_equal(c.hidden_act, "silu");
    assert_int_equal(c.has_rope_scaling, 0);
    assert_int_equal(c.attention_bias, 0);
    assert_int_equal(c.mlp_bias, 0);
    assert_string_equal(c.torch_dtype, "bfloat16");
    assert_ok(pissa_llama_config_check_supported(&c));
}

/* Every absent field takes the default of transformers' LlamaConfig.__init__. */
static void minimal_config_takes_transformers_defaults(void **state) {
    (void)state;
    pissa_llama_config c;
    assert_ok(parse("{\"model_type\": \"llama\"}", &c));
    assert_int_equal(c.hidden_size, 4096);
    assert_int_equal(c.intermediate_size, 11008);
    assert_int_equal(c.num_hidden_layers, 32);
    assert_int_equal(c.num_attention_heads, 32);
    assert_int_equal(c.num_key_value_heads, 32);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.vocab_size, 32000);
    assert_int_equal(c.max_position_embeddings, 2048);
    assert_true(c.rms_norm_eps == 1e-6);
    assert_true(c.rope_theta == 10000.0);
    assert_int_equal(c.tie_word_embeddings, 0);
    assert_string_equal(c.hidden_act, "silu");
    assert_int_equal(c.attention_bias, 0);
    assert_int_equal(c.mlp_bias, 0);
    assert_string_equal(c.torch_dtype, "");
    assert_ok(pissa_llama_config_check_supported(&c));
    /* null num_key_value_heads means "as many as heads"; explicit head_dim wins over D / H; newer "dtype" key */
    assert_ok(parse("{\"model_type\":\"llama\",\"hidden_size\":64,\"num_attention_heads\":8,"
                    "\"num_key_value_heads\":null,\"head_dim\":16,\"dtype\":\"float32\",\"tie_word_embeddings\":true}",
                    &c));
    assert_int_equal(c.num_key_value_heads, 8);
    assert_int_equal(c.head_dim, 16);
    assert_string_equal(c.torch_dtype, "float32");
    assert_int_equal(c.tie_word_embeddings, 1);
}

static void parse_reads_exactly_len_bytes(void **state) {
    (void)state;
    const char text[] = "{\"model_type\":\"llama\",\"hidden_size\":256}GARBAGE";
    pissa_llama_config c;
    assert_ok(pissa_llama_config_parse(text, strlen(text) - 7, "cfg", &c));
    assert_int_equal(c.hidden_size, 256);
    assert_fails(pissa_llama_config_parse(text, strlen(text), "cfg", &c), PISSA_ERR_FORMAT, "cfg:", "trailing");
    assert_fails(pissa_llama_config_parse(text, 10, "cfg", &c), PISSA_ERR_FORMAT, "cfg:", "not valid JSON");
}

static void refuses_model_types_that_are_not_llama(void **state) {
    (void)state;
    pissa_llama_config c;
    assert_fails(parse("{\"model_type\":\"gpt2\",\"n_embd\":768}", &c), PISSA_ERR_UNSUPPORTED,
                 "config.json: model_type 'gpt2' is not supported", NULL);
    static const char *const refused[] = {"gemma", "gemma2", "gemma3_text", "phi3", "mixtral", "qwen2_moe", "qwen3_moe"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        char json[128], want[96];
        snprintf(json, sizeof json, "{\"model_type\":\"%s\"}", refused[i]);
        snprintf(want, sizeof want, "model_type '%s' is not supported:", refused[i]);
        assert_fails(parse(json, &c), PISSA_ERR_UNSUPPORTED, want, NULL);
    }
    assert_fails(parse("{\"model_type\":\"qwen2\",\"architectures\":[\"LlamaForCausalLM\"]}", &c),
                 PISSA_ERR_UNSUPPORTED, "architectures lists 'LlamaForCausalLM'", "Qwen2ForCausalLM");
    assert_fails(parse("{\"hidden_size\":64}", &c), PISSA_ERR_FORMAT, "config.json", "model_type is missing");
    assert_fails(parse("{\"model_type\":7}", &c), PISSA_ERR_FORMAT, "model_type must be a string", NULL);
}

static void refuses_fields_of_the_wrong_type(void **state) {
    (void)state;
    pissa_llama_config c;
    struct {
        const char *json, *field;
    } cases[] = {
        {"{\"model_type\":\"llama\",\"hidden_size\":\"4096\"}", "hidden_size must be a positive integer"},
        {"{\"model_type\":\"llama\",\"hidden_size\":0}", "hidden_size must be a positive integer"},
        {"{\"model_type\":\"llama\",\"num_hidden_layers\":2.5}", "num_hidden_layers must be a positive integer"},
        {"{\"model_type\":\"llama\",\"vocab_size\":-5}", "vocab_size must be a positive integer"},
        {"{\"model_type\":\"llama\",\"intermediate_size\":null}", "intermediate_size must be a positive integer"},
        {"{\"model_type\":\"llama\",\"num_key_value_heads\":\"4\"}", "num_key_value_heads must be a positive integer"},
        {"{\"model_type\":\"llama\",\"rms_norm_eps\":\"1e-5\"}", "rms_norm_eps must be a positive number"},
        {"{\"model_type\":\"llama\",\"rope_theta\":0}", "rope_theta must be a positive number"},
        {"{\"model_type\":\"llama\",\"tie_word_embeddings\":\"false\"}", "tie_word_embeddings must be true or false"},
        {"{\"model_type\":\"llama\",\"attention_bias\":0}", "attention_bias must be true or false"},
        {"{\"model_type\":\"llama\",\"hidden_act\":1}", "hidden_act must be a string"},
        {"{\"model_type\":\"llama\",\"torch_dtype\":16}", "torch_dtype must be a string"},
        {"[\"model_type\", \"llama\"]", "not a JSON object"},
        {"{\"model_type\":\"llama\",}", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_fails(parse(cases[i].json, &c), PISSA_ERR_FORMAT, "config.json", cases[i].field);
}

static void check_supported_refuses_what_the_forward_pass_lacks(void **state) {
    (void)state;
    struct {
        const char *json, *field;
    } cases[] = {
        {"{\"model_type\":\"llama\",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":2.0}}", "rope_type 'yarn'"},
        {"{\"model_type\":\"llama\",\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":2.0}}",
         "rope_type 'dynamic'"},
        {"{\"model_type\":\"mistral\",\"rope_parameters\":{\"rope_type\":\"longrope\"}}", "rope_type 'longrope'"},
        {"{\"model_type\":\"llama\",\"partial_rotary_factor\":0.5}", "partial_rotary_factor 0.5"},
        {"{\"model_type\":\"qwen2\",\"use_sliding_window\":true}", "use_sliding_window"},
        {"{\"model_type\":\"qwen3\",\"use_sliding_window\":true}", "use_sliding_window"},
        {"{\"model_type\":\"llama\",\"hidden_act\":\"gelu\"}", "hidden_act 'gelu'"},
        {"{\"model_type\":\"llama\",\"hidden_size\":64,\"num_attention_heads\":7}", "num_attention_heads 7"},
        {"{\"model_type\":\"llama\",\"hidden_size\":64,\"num_attention_heads\":8,\"num_key_value_heads\":3}",
         "num_key_value_heads 3"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pissa_llama_config c;
        assert_ok(parse(cases[i].json, &c));
        assert_fails(pissa_llama_config_check_supported(&c), PISSA_ERR_UNSUPPORTED, cases[i].field, NULL);
    }
    /* heads that do not divide hidden_size are fine when head_dim is given explicitly */
    pissa_llama_config c;
    assert_ok(parse("{\"model_type\":\"llama\",\"hidden_size\":60,\"num_attention_heads\":4,\"head_dim\":16,"
                    "\"num_key_value_heads\":2}",
                    &c));
    assert_ok(pissa_llama_config_check_supported(&c));
}

/* ---------------------------------------------------------------------------------------------- */
/* folders                                                                                        */

static const char *small_config = "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":16,"
                                  "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"vocab_size\":4}";

static void write_text(const char *dir, const char *name, const char *text) {
    char *p = tu_path(dir, name);
    tu_write_bytes(p, text, strlen(text));
    free(p);
}

/* A shard holding tensors NAMES[i] of 3 float32 values each, value i*10 + k. */
static void write_shard(const char *dir, const char *file, const char *const *names, int n, int first) {
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    float vals[16][3];
    int64_t shape[1] = {3};
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 3; k++) vals[i][k] = (float)((first + i) * 10 + k);
        assert_ok(pissa_st_writer_add_f32(w, names[i], PISSA_F32, 1, shape, vals[i]));
    }
    char *p = tu_path(dir, file);
    assert_ok(pissa_st_writer_write(w, p));
    free(p);
    pissa_st_writer_free(w);
}

static const char *shard1_names[] = {"model.norm.weight", "model.layers.0.input_layernorm.weight"};
static const char *shard2_names[] = {"lm_head.weight", "model.layers.0.mlp.up_proj.weight"};
#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

static char *sharded_dir(const char *weight_map_json) {
    char *dir = tu_tempdir("ckpt");
    write_text(dir, "config.json", small_config);
    write_shard(dir, SHARD1, shard1_names, 2, 0);
    write_shard(dir, SHARD2, shard2_names, 2, 2);
    char index[2048];
    snprintf(index, sizeof index, "{\"metadata\":{\"total_size\":48},\"weight_map\":%s}", weight_map_json);
    write_text(dir, "model.safetensors.index.json", index);
    return dir;
}

static const char *good_map = "{\"lm_head.weight\":\"" SHARD2 "\",\"model.layers.0.input_layernorm.weight\":\"" SHARD1
                              "\",\"model.layers.0.mlp.up_proj.weight\":\"" SHARD2 "\",\"model.norm.weight\":\"" SHARD1
                              "\"}";

static void sharded_checkpoint_opens_with_names_sorted_across_shards(void **state) {
    (void)state;
    char *dir = sharded_dir(good_map);
    pissa_checkpoint *c;
    assert_ok(pissa_checkpoint_open(dir, &c));
    assert_int_equal(pissa_checkpoint_config(c)->hidden_size, 8);
    assert_string_equal(pissa_checkpoint_config_json(c), small_config);
    assert_int_equal(pissa_checkpoint_count(c), 4);
    const char *sorted[4] = {"lm_head.weight", "model.layers.0.input_layernorm.weight", "model.layers.0.mlp.up_proj.weight",
                             "model.norm.weight"};
    const int value_base[4] = {20, 10, 30, 0}; /* from the shard writer: (first + i) * 10 */
    for (int i = 0; i < 4; i++) {
        assert_string_equal(pissa_checkpoint_name(c, (size_t)i), sorted[i]);
        float got[3];
        assert_ok(pissa_checkpoint_read_f32(c, sorted[i], got, 3));
        for (int k = 0; k < 3; k++) assert_true(got[k] == (float)(value_base[i] + k));
        pissa_st_info info;
        assert_ok(pissa_checkpoint_find(c, sorted[i], &info));
        assert_int_equal(info.numel, 3);
    }
    assert_null(pissa_checkpoint_name(c, 4));
    pissa_tensor *t;
    assert_ok(pissa_checkpoint_load(c, "model.norm.weight", &t));
    assert_int_equal(pissa_tensor_ownership(t), PISSA_MAPPED);
    pissa_checkpoint_free(c); /* the mapped tensor outlives the checkpoint */
    assert_true(pissa_tensor_data(t)[2] == 2.0f);
    pissa_tensor_free(t);
    pissa_checkpoint_free(NULL);
    tu_rmtree(dir);
    free(dir);
}

static void single_file_checkpoint_opens(void **state) {
    (void)state;
    char *dir = tu_tempdir("ckpt1");
    write_text(dir, "config.json", small_config);
    write_shard(dir, "model.safetensors", shard1_names, 2, 0);
    pissa_checkpoint *c;
    assert_ok(pissa_checkpoint_open(dir, &c));
    assert_int_equal(pissa_checkpoint_count(c), 2);
    assert_string_equal(pissa_checkpoint_name(c, 0), "model.layers.0.input_layernorm.weight");
    float got[3];
    assert_ok(pissa_checkpoint_read_f32(c, "model.layers.0.input_layernorm.weight", got, 3));
    assert_true(got[0] == 10.0f);
    pissa_tensor *t = (pissa_tensor *)(uintptr_t)1;
    assert_fails(pissa_checkpoint_load(c, "lm_head.weight", &t), PISSA_ERR_NOT_FOUND, "'lm_head.weight'", dir);
    assert_null(t);
    pissa_checkpoint_free(c);

    pissa_llama_config cfg;
    char *cfg_path = tu_path(dir, "config.json");
    assert_ok(pissa_llama_config_load(cfg_path, &cfg));
    assert_int_equal(cfg.intermediate_size, 16);
    free(cfg_path);

    /* no weights at all */
    char *w = tu_path(dir, "model.safetensors");
    remove(w);
    free(w);
    c = (pissa_checkpoint *)(uintptr_t)1;
    assert_fails(pissa_checkpoint_open(dir, &c), PISSA_ERR_NOT_FOUND, "model.safetensors", dir);
    assert_null(c);
    /* no config */
    char *cp = tu_path(dir, "config.json");
    remove(cp);
    assert_fails(pissa_checkpoint_open(dir, &c), PISSA_ERR_NOT_FOUND, cp, NULL);
    assert_fails(pissa_llama_config_load(cp, &cfg), PISSA_ERR_NOT_FOUND, cp, NULL);
    free(cp);
    tu_rmtree(dir);
    free(dir);
}

/* pissa_st_writer_add_from_checkpoint: a tensor copied from the mapping is the stored bytes (over several spans of
 * the writer's give-backs), a converted one the conversion of its values; the source reads the same afterwards
 * (its pages were given back, not changed); a non-float tensor is copied but not converted. */
static void writer_copies_checkpoint_tensors_exactly_or_converted(void **state) {
    (void)state;
    char *dir = tu_tempdir("ckpt-copy");
    write_text(dir, "config.json", small_config);
    enum { BIG = 2500001 }; /* 10 MB of float32: three of the writer's 4 MB spans, the last one partial */
    float *big = malloc(sizeof(float) * BIG);
    for (int i = 0; i < BIG; i++) big[i] = (float)(i % 1000) * 0.37f - (float)(i % 7);
    int32_t ids[5] = {3, -1, 70000, 0, 12};
    float small[6] = {1.5f, -2.25f, 3e-3f, 7.0f, -0.1f, 65504.0f};
    int64_t s_big[1] = {BIG}, s_ids[1] = {5}, s_small[2] = {2, 3};
    pissa_st_writer *w;
    assert_ok(pissa_st_writer_create(&w));
    assert_ok(pissa_st_writer_add_f32(w, "model.layers.0.big.weight", PISSA_F32, 1, s_big, big));
    assert_ok(pissa_st_writer_add_raw(w, "model.layers.0.ids", PISSA_I32, 1, s_ids, ids));
    assert_ok(pissa_st_writer_add_f32(w, "model.layers.0.small.weight", PISSA_BF16, 2, s_small, small));
    char *src = tu_path(dir, "model.safetensors");
    assert_ok(pissa_st_writer_write(w, src));
    pissa_st_writer_free(w);

    pissa_checkpoint *c;
    assert_ok(pissa_checkpoint_open(dir, &c));
    char *copy = tu_path(dir, "copy.safetensors");
    assert_ok(pissa_st_writer_create(&w));
    assert_ok(pissa_st_writer_add_from_checkpoint(w, c, "model.layers.0.big.weight", PISSA_F32));
    assert_ok(pissa_st_writer_add_from_checkpoint(w, c, "model.layers.0.ids", PISSA_I32));
    assert_ok(pissa_st_writer_add_from_checkpoint(w, c, "model.layers.0.small.weight", PISSA_F32));
    assert_fails(pissa_st_writer_add_from_checkpoint(w, c, "model.layers.0.ids", PISSA_F16), PISSA_ERR_UNSUPPORTED,
                 "'model.layers.0.ids'", "I32");
    assert_fails(pissa_st_writer_add_from_checkpoint(w, c, "lm_head.weight", PISSA_F32), PISSA_ERR_NOT_FOUND,
                 "'lm_head.weight'", NULL);
    pissa_st_writer *w2; /* BIG again, converted to BF16, in a second file (a writer takes each name once) */
    assert_ok(pissa_st_writer_create(&w2));
    assert_ok(pissa_st_writer_add_from_checkpoint(w2, c, "model.layers.0.big.weight", PISSA_BF16));
    char *copy2 = tu_path(dir, "copy2.safetensors");
    assert_ok(pissa_st_writer_write(w, copy));
    assert_ok(pissa_st_writer_write(w2, copy2));
    pissa_st_writer_free(w);
    pissa_st_writer_free(w2);

    pissa_st_file *f, *f2;
    assert_ok(pissa_st_open(copy, &f));
    assert_ok(pissa_st_open(copy2, &f2));
    pissa_st_info a, b;
    assert_ok(pissa_checkpoint_find(c, "model.layers.0.big.weight", &a));
    assert_ok(pissa_st_find(f, "model.layers.0.big.weight", &b));
    assert_int_equal(b.dtype, PISSA_F32);
    assert_int_equal(b.nbytes, a.nbytes);
    assert_memory_equal(b.data, big, sizeof(float) * BIG);
    assert_memory_equal(a.data, big, sizeof(float) * BIG); /* the source's given-back pages read back unchanged */
    assert_ok(pissa_st_find(f, "model.layers.0.ids", &b));
    assert_int_equal(b.dtype, PISSA_I32);
    assert_memory_equal(b.data, ids, sizeof ids);
    float got[6];
    assert_ok(pissa_st_read_f32(f, "model.layers.0.small.weight", got, 6));
    for (int i = 0; i < 6; i++) assert_true(got[i] == pissa_bf16_to_f32(pissa_f32_to_bf16(small[i])));
    assert_ok(pissa_st_find(f2, "model.layers.0.big.weight", &b));
    assert_int_equal(b.dtype, PISSA_BF16);
    uint16_t *want = malloc(sizeof(uint16_t) * BIG);
    assert_ok(pissa_convert_from_f32(want, big, PISSA_BF16, BIG));
    assert_memory_equal(b.data, want, sizeof(uint16_t) * BIG);
    /* read_f32 gives the pages it copied back: a second read gives the same values */
    float *again = malloc(sizeof(float) * BIG);
    for (int rep = 0; rep < 2; rep++) {
        memset(again, 0, sizeof(float) * BIG);
        assert_ok(pissa_checkpoint_read_f32(c, "model.layers.0.big.weight", again, BIG));
        assert_memory_equal(again, big, sizeof(float) * BIG);
    }
    free(again);
    free(want);
    pissa_st_close(f);
    pissa_st_close(f2);
    pissa_checkpoint_free(c);
    free(big);
    free(src);
    free(copy);
    free(copy2);
    tu_rmtree(dir);
    free(dir);
}

static void refuses_a_non_llama_checkpoint_folder(void **state) {
    (void)state;
    char *dir = tu_tempdir("ckpt-gpt2");
    write_text(dir, "config.json", "{\"model_type\":\"gpt2\"}");
    write_shard(dir, "model.safetensors", shard1_names, 2, 0);
    pissa_checkpoint *c;
    char *cp = tu_path(dir, "config.json");
    assert_fails(pissa_checkpoint_open(dir, &c), PISSA_ERR_UNSUPPORTED, cp, "model_type 'gpt2'");
    free(cp);
    tu_rmtree(dir);
    free(dir);
}

static void missing_shard_is_reported_with_index_and_tensor(void **state) {
    (void)state;
    char *dir = sharded_dir("{\"lm_head.weight\":\"model-00003-of-00002.safetensors\"}");
    pissa_checkpoint *c = (pissa_checkpoint *)(uintptr_t)1;
    assert_fails(pissa_checkpoint_open(dir, &c), PISSA_ERR_NOT_FOUND, "model.safetensors.index.json",
                 "'model-00003-of-00002.safetensors' (holding tensor 'lm_head.weight') does not exist");
    assert_null(c);
    tu_rmtree(dir);
    free(dir);
}

static void tensor_absent_from_its_named_shard_is_refused(void **state) {
    (void)state;
    /* lm_head.weight lives in shard 2, but the index says shard 1 */
    char *dir = sharded_dir("{\"lm_head.weight\":\"" SHARD1 "\",\"model.norm.weight\":\"" SHARD1 "\"}");
    pissa_checkpoint *c;
    assert_fails(pissa_checkpoint_open(dir, &c), PISSA_ERR_FORMAT, "model.safetensors.index.json",
                 "tensor 'lm_head.weight' is not in shard '" SHARD1 "'");
    tu_rmtree(dir);
    free(dir);
}

static void inconsistent_indexes_are_refused(void **state) {
    (void)state;
    struct {
        const char *map;
        const char *needle;
    } cases[] = {
        {"{\"lm_head.weight\":\"../" SHARD2 "\"}", "is not a file in the folder"},
        {"{\"lm_head.weight\":\"..\"}", "is not a file in the folder"},
        {"{\"lm_head.weight\":\"\"}", "is not a file in the folder"},
        {"{\"lm_head.weight\":2}", "shard name is not a string"},
        {"[]", "weight_map is missing or not an object"},
        {"{\"lm_head.weight\":\"" SHARD2 "\",\"lm_head.weight\":\"" SHARD2 "\"}", "listed twice"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = sharded_dir(cases[i].map);
        pissa_checkpoint *c;
        assert_fails(pissa_checkpoint_open(dir, &c), PISSA_ERR_FORMAT, "model.safetensors.index.json", cases[i].needle);
        tu_rmtree(dir);
        free(dir);
    }
}

static void tensor_in_two_shards_is_refused(void **state) {
    (void)state;
    char *dir = sharded_dir(good_map);
    const char *dup[] = {"lm_head.weight", "model.layers.0.mlp.up_proj.weight", "model.norm.weight"};
    write_shard(dir, SHARD2, dup, 3, 2); /* shard 2 now also holds model.norm.weight */
    pissa_checkpoint *c;
    assert_fails(pissa_checkpoint_open(dir, &c), PISSA_ERR_FORMAT, "'model.norm.weight' is in two shards", SHARD1);
    tu_rmtree(dir);
    free(dir);
}

static void corrupt_shard_error_names_the_shard_file(void **state) {
    (void)state;
    char *dir = sharded_dir(good_map);
    char *p = tu_path(dir, SHARD2);
    tu_write_bytes(p, "\x01\0\0\0\0\0\0\0{", 9);
    pissa_checkpoint *c;
    assert_fails(pissa_checkpoint_open(dir, &c), PISSA_ERR_FORMAT, p, "not valid JSON");
    free(p);
    tu_rmtree(dir);
    free(dir);
}

/* Config sizes are checked against the tensors present before anything is sized from them: 10^9 layers (which
 * once meant hours of name checks and a 2.5 TB calloc in pissa-init), a missing layer, a layer past the count, or
 * an embedding of another shape are refused at once, naming the field. */
static void config_sizes_are_checked_against_the_tensors_present(void **state) {
    (void)state;
    static const char *configs[4] = {
        "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":16,\"num_hidden_layers\":1000000000,"
        "\"num_attention_heads\":2,\"vocab_size\":4}",
        "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":16,\"num_hidden_layers\":2,"
        "\"num_attention_heads\":2,\"vocab_size\":4}",
        "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":16,\"num_hidden_layers\":1,"
        "\"num_attention_heads\":2,\"vocab_size\":4}",
        "{\"model_type\":\"llama\",\"hidden_size\":8,\"intermediate_size\":16,\"num_hidden_layers\":1,"
        "\"num_attention_heads\":2,\"vocab_size\":5}"};
    static const char *const layer3[] = {"model.layers.0.mlp.up_proj.weight", "model.layers.3.mlp.up_proj.weight"};
    for (int k = 0; k < 4; k++) {
        char *dir = tu_tempdir("ckpt_sizes");
        write_text(dir, "config.json", configs[k]);
        if (k == 2) write_shard(dir, "model.safetensors", layer3, 2, 0);
        else if (k == 3) { /* embedding (4, 8) against vocab_size 5 */
            pissa_st_writer *w;
            float emb[32] = {0};
            int64_t shape[2] = {4, 8};
            assert_ok(pissa_st_writer_create(&w));
            assert_ok(pissa_st_writer_add_f32(w, "model.embed_tokens.weight", PISSA_F32, 2, shape, emb));
            assert_ok(pissa_st_writer_add_f32(w, "model.layers.0.input_layernorm.weight", PISSA_F32, 1, shape + 1, emb));
            char *p = tu_path(dir, "model.safetensors");
            assert_ok(pissa_st_writer_write(w, p));
            free(p);
            pissa_st_writer_free(w);
        } else write_shard(dir, "model.safetensors", shard2_names, 2, 0);
        pissa_checkpoint *c = NULL;
        pissa_model *m = NULL;
        if (k < 3) {
            assert_fails(pissa_checkpoint_open(dir, &c), PISSA_ERR_FORMAT, "num_hidden_layers", NULL);
            assert_fails(pissa_model_load(dir, &m), PISSA_ERR_FORMAT, "num_hidden_layers", NULL);
        } else {
            assert_fails(pissa_checkpoint_open(dir, &c), PISSA_ERR_SHAPE, "vocab_size 5", "embed_tokens");
        }
        assert_null(c);
        assert_null(m);
        tu_rmtree(dir);
        free(dir);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_a_published_llama_config),
        cmocka_unit_test(minimal_config_takes_transformers_defaults),
        cmocka_unit_test(parse_reads_exactly_len_bytes),
        cmocka_unit_test(refuses_model_types_that_are_not_llama),
        cmocka_unit_test(refuses_fields_of_the_wrong_type),
        cmocka_unit_test(check_supported_refuses_what_the_forward_pass_lacks),
        cmocka_unit_test(sharded_checkpoint_opens_with_names_sorted_across_shards),
        cmocka_unit_test(single_file_checkpoint_opens),
        cmocka_unit_test(writer_copies_checkpoint_tensors_exactly_or_converted),
        cmocka_unit_test(refuses_a_non_llama_checkpoint_folder),
        cmocka_unit_test(missing_shard_is_reported_with_index_and_tensor),
        cmocka_unit_test(tensor_absent_from_its_named_shard_is_refused),
        cmocka_unit_test(inconsistent_indexes_are_refused),
        cmocka_unit_test(tensor_in_two_shards_is_refused),
        cmocka_unit_test(corrupt_shard_error_names_the_shard_file),
        cmocka_unit_test(config_sizes_are_checked_against_the_tensors_present),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
