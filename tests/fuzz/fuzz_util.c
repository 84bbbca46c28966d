#define _XOPEN_SOURCE 700 /* nftw */
#include "fuzz_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the input as parts ---- */

size_t fz_split(const uint8_t *data, size_t size, fz_part *parts, size_t max) {
    const size_t sep = sizeof FZ_SEP - 1;
    size_t k = 0, start = 0;
    for (size_t i = 0; k + 1 < max && i + sep <= size; i++)
        if (memcmp(data + i, FZ_SEP, sep) == 0) {
            parts[k++] = (fz_part){data + start, i - start};
            i += sep - 1;
            start = i + 1;
        }
    parts[k++] = (fz_part){data + start, size - start};
    for (size_t i = k; i < max; i++) parts[i] = (fz_part){data + size, 0};
    return k;
}

/* ---- the scratch folder ---- */

static char scratch[FZ_PATH_MAX];

static void die(const char *what, const char *path) {
    fprintf(stderr, "fuzz harness: %s %s: %s\n", what, path, strerror(errno));
    abort();
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_scratch(void) {
    if (scratch[0]) nftw(scratch, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fz_dir(void) {
    if (scratch[0]) return scratch;
    const char *base = getenv("TMPDIR");
    struct stat st;
    if (!base || !*base) base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(scratch, sizeof scratch, "%s/pissa-fuzz-XXXXXX", base);
    if (!mkdtemp(scratch)) die("cannot create", scratch);
    atexit(remove_scratch);
    return scratch;
}

const char *fz_path(char buf[FZ_PATH_MAX], const char *rel) {
    if (snprintf(buf, FZ_PATH_MAX, "%s/%s", fz_dir(), rel) >= FZ_PATH_MAX) die("path too long:", rel);
    return buf;
}

const char *fz_mkdir(char buf[FZ_PATH_MAX], const char *rel) {
    fz_path(buf, rel);
    if (mkdir(buf, 0700) != 0 && errno != EEXIST) die("cannot create", buf);
    return buf;
}

void fz_write(const char *path, const void *data, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) die("cannot open", path);
    for (const char *p = data; n > 0;) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) die("cannot write", path);
        p += k, n -= (size_t)k;
    }
    if (close(fd) != 0) die("cannot close", path);
}

void fz_remove(const char *path) {
    if (unlink(path) != 0 && errno != ENOENT) die("cannot remove", path);
}

/* ---- a tiny llama2.c tokenizer ---- */

typedef struct bytes {
    unsigned char *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = 2 * (b->n + n);
        if (!(b->p = realloc(b->p, b->cap))) die("out of memory", "");
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put_token(bytes *b, float score, const char *s, size_t len) {
    int32_t n = (int32_t)len;
    put(b, &score, 4);
    put(b, &n, 4);
    put(b, s, len);
}

unsigned char *fz_tiny_tokenizer(size_t *n) {
    /* stories260K's first merges (tok512.bin, ids 259..), then the single code points, lowest scores last */
    static const char *merges[] = {
        " t", "he", " a", " s", " w", "nd", " the", "ed", " to", " b", " and", " h", "in", " f", " wa", " T", "it",
        "re", "ou", " l", " d", " c", " he", " p", "ay", " m", "er", " was", "om", "im", "on", "il", " The", "id",
        "is", "at", "ar", " sa", " n", " g", "ing", " ha", " S", "en", "an", "or", "le", "ll", " L", " th", "ot",
        "ily", " her", " it", " \"", "am", "ir", "et", " Lily", " u", " O", " H", " On", " in", "ut", " pl", "ri",
        " Tim", "ow", " day", " be", "é", " é", "ü", "—", "\xF0\x9F\x98\x80", " \xF0\x9F\x98\x80"};
    static const char singles[] = " abcdefghijklmnopqrstuvwxyzTLOSH.,!?'\"\n";
    bytes b = {0};
    int32_t max_len = 7;
    put(&b, &max_len, 4);
    put_token(&b, 0, "<unk>", 5);
    put_token(&b, 0, "\n<s>\n", 5);
    put_token(&b, 0, "\n</s>\n", 6);
    for (int i = 0; i < 256; i++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", i);
        put_token(&b, 0, s, 6);
    }
    float score = 0;
    for (size_t i = 0; i < sizeof merges / sizeof *merges; i++) put_token(&b, score--, merges[i], strlen(merges[i]));
    for (size_t i = 0; i + 1 < sizeof singles; i++) put_token(&b, score--, singles + i, 1);
    *n = b.n;
    return b.p;
}

/* ---- a tiny Hugging Face model ---- */

static void check(pissa_status st, const char *what) {
    if (st != PISSA_OK) {
        fprintf(stderr, "fuzz harness: %s: %s\n", what, pissa_last_error());
        abort();
    }
}

void fz_write_tiny_model(const char *dir) {
    enum { D = 4, F = 8, L = 2, H = 2, KV = 1, HD = 2, V = 16 };
    static const char config[] =
        "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 4, "
        "\"intermediate_size\": 8, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
        "\"vocab_size\": 16, \"max_position_embeddings\": 16, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
        "\"tie_word_embeddings\": false, \"hidden_act\": \"silu\", \"torch_dtype\": \"float32\"}\n";
    static float values[V * D]; /* enough for the largest tensor */
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) values[i] = (float)((int)(i * 7919 % 61) - 30) / 40.0f;
    static const struct {
        const char *name; /* "%d" is the layer */
        int64_t rows, cols;
    } tensors[] = {{"model.layers.%d.input_layernorm.weight", D, 0},
                   {"model.layers.%d.self_attn.q_proj.weight", H * HD, D},
                   {"model.layers.%d.self_attn.k_proj.weight", KV * HD, D},
                   {"model.layers.%d.self_attn.v_proj.weight", KV * HD, D},
                   {"model.layers.%d.self_attn.o_proj.weight", D, H * HD},
                   {"model.layers.%d.post_attention_layernorm.weight", D, 0},
                   {"model.layers.%d.mlp.gate_proj.weight", F, D},
                   {"model.layers.%d.mlp.up_proj.weight", F, D},
                   {"model.layers.%d.mlp.down_proj.weight", D, F}};
    pissa_st_writer *w;
    check(pissa_st_writer_create(&w), "writer");
    int64_t emb[2] = {V, D}, norm[1] = {D};
    check(pissa_st_writer_add_f32(w, "model.embed_tokens.weight", PISSA_F32, 2, emb, values), "embed_tokens");
    check(pissa_st_writer_add_f32(w, "lm_head.weight", PISSA_F32, 2, emb, values), "lm_head");
    check(pissa_st_writer_add_f32(w, "model.norm.weight", PISSA_F32, 1, norm, values), "norm");
    for (int l = 0; l < L; l++)
        for (size_t k = 0; k < sizeof tensors / sizeof *tensors; k++) {
            char name[96];
            snprintf(name, sizeof name, tensors[k].name, l);
            int64_t shape[2] = {tensors[k].rows, tensors[k].cols};
            check(pissa_st_writer_add_f32(w, name, PISSA_F32, shape[1] ? 2 : 1, shape, values), name);
        }
    char path[FZ_PATH_MAX];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    check(pissa_st_writer_write(w, path), path);
    pissa_st_writer_free(w);
    snprintf(path, sizeof path, "%s/config.json", dir);
    fz_write(path, config, sizeof config - 1);
}

/* ---- using a loaded model ---- */

void fz_run_model(pissa_model *m) {
    const pissa_llama_config *c = pissa_model_config(m);
    int T = c->max_position_embeddings < 3 ? (int)c->max_position_embeddings : 3;
    if (c->vocab_size > 1 << 16) return; /* the logits buffer would dominate the run time */
    int32_t ids[3];
    for (int t = 0; t < T; t++) ids[t] = (int32_t)((t * 5 + 1) % c->vocab_size);
    float *logits = malloc(sizeof(float) * (size_t)T * (size_t)c->vocab_size);
    if (!logits) die("out of memory", "");
    pissa_model_logits(m, ids, 1, T, logits);
    free(logits);
}
