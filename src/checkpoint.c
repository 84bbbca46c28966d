/* Hugging Face checkpoint folders: config.json (parsed by config.c) and the weights, either one model.safetensors or
 * shards listed by model.safetensors.index.json. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

const char *const pissa__checkpoint_files[] = {"config.json", "model.safetensors", "model.safetensors.index.json",
                                               "model-*-of-*.safetensors", "pytorch_model*.bin", NULL};

#define INDEX_FILE "model.safetensors.index.json"
#define SINGLE_FILE "model.safetensors"

/* ---------------------------------------------------------------------------------------------- */
/* checkpoint folders                                                                             */

typedef struct ck_entry {
    const char *name;     /* borrowed from the shard */
    pissa_st_file *shard;
} ck_entry;

struct pissa_checkpoint {
    char *dir;
    pissa_llama_config cfg;
    char *config_json;     /* config.json as read, NUL-terminated */
    pissa_st_file **shards; /* (n_shards) */
    size_t n_shards;
    ck_entry *e;           /* (count) sorted by name */
    size_t count;
};

static int cmp_entries(const void *a, const void *b) {
    return strcmp(((const ck_entry *)a)->name, ((const ck_entry *)b)->name);
}
static int cmp_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Opens DIR/NAME; a missing file is NOT_FOUND naming the index and a tensor that needs it. */
static pissa_status open_shard(const char *dir, const char *name, const char *index, const char *tensor,
                               pissa_st_file **out) {
    char *path = pissa__path_join(dir, name);
    if (!path) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    pissa_status st;
    if (!file_exists(path))
        st = pissa__fail(PISSA_ERR_NOT_FOUND, "%s: shard '%s' (holding tensor '%s') does not exist", index, name,
                         tensor);
    else
        st = pissa_st_open(path, out);
    free(path);
    return st;
}

/* Every tensor of every shard, sorted by name; a name in two shards is an error. */
static pissa_status collect_entries(pissa_checkpoint *c, const char *dir) {
    size_t total = 0;
    for (size_t s = 0; s < c->n_shards; s++) total += pissa_st_count(c->shards[s]);
    c->e = pissa__alloc(total, sizeof *c->e);
    if (!c->e) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    for (size_t s = 0; s < c->n_shards; s++)
        for (size_t i = 0; i < pissa_st_count(c->shards[s]); i++) {
            pissa_st_info info;
            PISSA_TRY(pissa_st_info_at(c->shards[s], i, &info));
            c->e[c->count++] = (ck_entry){info.name, c->shards[s]};
        }
    if (c->count > 1) qsort(c->e, c->count, sizeof *c->e, cmp_entries);
    for (size_t i = 1; i < c->count; i++)
        if (strcmp(c->e[i].name, c->e[i - 1].name) == 0)
            return pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s' is in two shards: %s and %s", dir, c->e[i].name,
                               pissa_st_path(c->e[i - 1].shard), pissa_st_path(c->e[i].shard));
    return PISSA_OK;
}

static pissa_status open_sharded(pissa_checkpoint *c, const char *dir, const char *index) {
    char *text;
    size_t len;
    PISSA_TRY(pissa__read_file(index, &text, &len));
    cJSON *root = NULL;
    pissa_status st = pissa__json_parse_object(text, len, index, &root);
    free(text);
    if (st != PISSA_OK) return st;

    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    char **names = NULL; /* (n_map) shard file name of each weight_map entry, then sorted and deduplicated */
    size_t n_map = 0;
    if (!cJSON_IsObject(map)) st = pissa__fail(PISSA_ERR_FORMAT, "%s: weight_map is missing or not an object", index);
    if (st == PISSA_OK) {
        n_map = (size_t)cJSON_GetArraySize(map);
        if (!(names = pissa__alloc(n_map, sizeof *names)))
            st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", index);
    }
    size_t k = 0;
    for (const cJSON *m = st == PISSA_OK ? map->child : NULL; m && st == PISSA_OK; m = m->next) {
        const char *shard = cJSON_IsString(m) ? m->valuestring : NULL;
        if (!shard)
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s': shard name is not a string", index, m->string);
        else if (!*shard || strchr(shard, '/') || strcmp(shard, ".") == 0 || strcmp(shard, "..") == 0)
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s': shard name '%s' is not a file in the folder", index,
                             m->string, shard);
        else
            names[k++] = m->valuestring;
    }

    /* Open each distinct shard once. */
    size_t n_unique = 0;
    if (st == PISSA_OK && k > 0) {
        qsort(names, k, sizeof *names, cmp_strings);
        for (size_t i = 0; i < k; i++)
            if (i == 0 || strcmp(names[i], names[i - 1]) != 0) names[n_unique++] = names[i];
        if (!(c->shards = pissa__calloc(n_unique, sizeof *c->shards)))
            st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", index);
    }
    for (size_t s = 0; st == PISSA_OK && s < n_unique; s++) {
        const char *tensor = "?";
        for (const cJSON *m = map->child; m; m = m->next)
            if (strcmp(m->valuestring, names[s]) == 0) {
                tensor = m->string;
                break;
            }
        st = open_shard(dir, names[s], index, tensor, &c->shards[s]);
        if (st == PISSA_OK) c->n_shards++;
    }

    /* Each weight_map entry is in the shard it names. */
    for (const cJSON *m = st == PISSA_OK ? map->child : NULL; m && st == PISSA_OK; m = m->next) {
        char **hit = bsearch(&m->valuestring, names, n_unique, sizeof *names, cmp_strings);
        if (pissa_st_find(c->shards[hit - names], m->string, NULL) != PISSA_OK)
            st = pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s' is not in shard '%s' where the weight_map puts it",
                             index, m->string, m->valuestring);
    }
    /* cJSON keeps duplicate keys: a name listed twice is an error even if both entries agree. */
    if (st == PISSA_OK) {
        size_t i = 0; /* the shard names are no longer needed: reuse the array for the tensor names */
        for (const cJSON *m = map->child; m; m = m->next) names[i++] = m->string;
        qsort(names, n_map, sizeof *names, cmp_strings);
        for (i = 1; i < n_map && st == PISSA_OK; i++)
            if (strcmp(names[i], names[i - 1]) == 0)
                st = pissa__fail(PISSA_ERR_FORMAT, "%s: tensor '%s' is listed twice in weight_map", index, names[i]);
    }
    if (st == PISSA_OK) st = collect_entries(c, dir);
    free(names);
    cJSON_Delete(root);
    return st;
}

/* The config's sizes against the tensors present, before anything is sized from them: a config.json claiming
 * 10^9 layers (or a vocabulary the embedding does not have) is refused here, not met by a 2.5 TB calloc or hours of
 * name lookups. Layers are counted from the names "model.layers.<l>.": they must be exactly 0 .. L-1. */
static pissa_status check_sizes(const pissa_checkpoint *c, const char *dir) {
    long long max_layer = -1;
    for (size_t i = 0; i < c->count; i++) {
        long long l;
        if (sscanf(c->e[i].name, "model.layers.%lld.", &l) == 1 && l > max_layer) max_layer = l;
    }
    if (max_layer + 1 != c->cfg.num_hidden_layers)
        return pissa__fail(PISSA_ERR_FORMAT, "%s: config.json: num_hidden_layers is %lld but the weights hold %s%lld "
                           "layers", dir, (long long)c->cfg.num_hidden_layers,
                           max_layer + 1 > c->cfg.num_hidden_layers ? "a layer " : "", max_layer + 1);
    ck_entry key = {"model.embed_tokens.weight", NULL};
    const ck_entry *e = bsearch(&key, c->e, c->count, sizeof *c->e, cmp_entries);
    pissa_st_info info;
    if (e && pissa_st_find(e->shard, e->name, &info) == PISSA_OK &&
        (info.ndim != 2 || info.shape[0] != c->cfg.vocab_size || info.shape[1] != c->cfg.hidden_size))
        return pissa__fail(PISSA_ERR_SHAPE, "%s: config.json says vocab_size %lld and hidden_size %lld but "
                           "model.embed_tokens.weight has shape (%lld, %lld)", dir, (long long)c->cfg.vocab_size,
                           (long long)c->cfg.hidden_size, (long long)info.shape[0],
                           (long long)(info.ndim > 1 ? info.shape[1] : 0));
    return PISSA_OK;
}

pissa_status pissa_checkpoint_open(const char *dir, pissa_checkpoint **out) {
    if (!dir || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_checkpoint_open: NULL argument");
    *out = NULL;
    pissa_checkpoint *c = calloc(1, sizeof *c);
    char *config = pissa__path_join(dir, "config.json"), *index = pissa__path_join(dir, INDEX_FILE);
    char *single = pissa__path_join(dir, SINGLE_FILE);
    pissa_status st = PISSA_OK;
    if (c) c->dir = pissa__strdup(dir);
    if (!c || !c->dir || !config || !index || !single) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    size_t len = 0;
    if (st == PISSA_OK) st = pissa__read_file(config, &c->config_json, &len);
    if (st == PISSA_OK) st = pissa_llama_config_parse(c->config_json, len, config, &c->cfg);
    if (st == PISSA_OK) {
        if (file_exists(index)) {
            st = open_sharded(c, dir, index);
        } else if (!file_exists(single)) {
            st = pissa__fail(PISSA_ERR_NOT_FOUND, "%s: neither %s nor %s exists", dir, SINGLE_FILE, INDEX_FILE);
        } else if (!(c->shards = calloc(1, sizeof *c->shards))) {
            st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
        } else if ((st = pissa_st_open(single, &c->shards[0])) == PISSA_OK) {
            c->n_shards = 1;
            st = collect_entries(c, dir);
        }
    }
    if (st == PISSA_OK) st = check_sizes(c, dir);
    free(config);
    free(index);
    free(single);
    if (st != PISSA_OK) {
        pissa_checkpoint_free(c);
        return st;
    }
    *out = c;
    return PISSA_OK;
}

void pissa_checkpoint_free(pissa_checkpoint *c) {
    if (!c) return;
    for (size_t s = 0; s < c->n_shards; s++) pissa_st_close(c->shards[s]);
    free(c->shards);
    free(c->e);
    free(c->config_json);
    free(c->dir);
    free(c);
}

const pissa_llama_config *pissa_checkpoint_config(const pissa_checkpoint *c) { return c ? &c->cfg : NULL; }
const char *pissa_checkpoint_config_json(const pissa_checkpoint *c) { return c ? c->config_json : NULL; }
size_t pissa_checkpoint_count(const pissa_checkpoint *c) { return c ? c->count : 0; }
const char *pissa_checkpoint_name(const pissa_checkpoint *c, size_t i) {
    return c && i < c->count ? c->e[i].name : NULL;
}

static pissa_status shard_of(const pissa_checkpoint *c, const char *name, pissa_st_file **out) {
    if (!c || !name) return pissa__fail(PISSA_ERR_INVALID_ARG, "checkpoint: NULL argument");
    ck_entry key = {name, NULL};
    const ck_entry *e = bsearch(&key, c->e, c->count, sizeof *c->e, cmp_entries);
    if (!e) return pissa__fail(PISSA_ERR_NOT_FOUND, "%s: checkpoint has no tensor named '%s'", c->dir, name);
    *out = e->shard;
    return PISSA_OK;
}

pissa_status pissa_checkpoint_find(const pissa_checkpoint *c, const char *name, pissa_st_info *out) {
    pissa_st_file *f;
    PISSA_TRY(shard_of(c, name, &f));
    return pissa_st_find(f, name, out);
}

pissa_status pissa_checkpoint_load(const pissa_checkpoint *c, const char *name, pissa_tensor **out) {
    pissa_st_file *f;
    if (out) *out = NULL;
    PISSA_TRY(shard_of(c, name, &f));
    return pissa_st_load(f, name, out);
}

pissa_status pissa_checkpoint_read_f32(const pissa_checkpoint *c, const char *name, float *dst, int64_t n) {
    pissa_st_file *f;
    PISSA_TRY(shard_of(c, name, &f));
    return pissa_st_read_f32(f, name, dst, n);
}

static pissa_status fill_from_checkpoint(void *user, const char *name, float *dst, int64_t numel) {
    return pissa_checkpoint_read_f32(user, name, dst, numel); /* gives the pages back */
}

pissa_status pissa_st_writer_add_from_checkpoint(pissa_st_writer *w, const pissa_checkpoint *c, const char *name,
                                                 pissa_dtype dtype) {
    if (!w || !c || !name)
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_st_writer_add_from_checkpoint: NULL argument");
    pissa_st_file *f;
    pissa_st_info info;
    PISSA_TRY(shard_of(c, name, &f));
    PISSA_TRY(pissa_st_find(f, name, &info));
    if (dtype == info.dtype) {
        PISSA_TRY(pissa_st_writer_add_raw(w, name, dtype, info.ndim, info.shape, info.data));
        return pissa__st_writer_from_mapping(w, pissa__st_mapping(f));
    }
    if (!pissa_dtype_is_float(info.dtype))
        return pissa__fail(PISSA_ERR_UNSUPPORTED, "%s: tensor '%s' is %s: it can be copied as it is, not converted "
                           "to %s", pissa_st_path(f), name, pissa_dtype_name(info.dtype), pissa_dtype_name(dtype));
    return pissa_st_writer_add_fill(w, name, dtype, info.ndim, info.shape, fill_from_checkpoint, (void *)c);
}

pissa_mapping *pissa__checkpoint_mapping(const pissa_checkpoint *c, const char *name) {
    pissa_st_file *f;
    if (shard_of(c, name, &f) != PISSA_OK) {
        pissa_clear_error();
        return NULL;
    }
    return pissa__st_mapping(f);
}
