/* Sharded Hugging Face checkpoint: the input is model.safetensors.index.json FZ_SEP model-00001-of-00002.safetensors
 * FZ_SEP model-00002-of-00002.safetensors, next to a fixed config.json (the tiny model's: 2 layers, hidden 8). The
 * folder is opened as a checkpoint (every tensor of every shard loaded), then as a model (shapes checked against the
 * config), and a model that loads runs one forward pass. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char dir[FZ_PATH_MAX], index[FZ_PATH_MAX], shard[2][FZ_PATH_MAX];
    if (!dir[0]) {
        pissa_set_num_threads(1);
        fz_write_tiny_model(fz_mkdir(dir, "sharded"));
        char single[FZ_PATH_MAX];
        fz_remove(fz_path(single, "sharded/model.safetensors"));
        fz_path(index, "sharded/model.safetensors.index.json");
        fz_path(shard[0], "sharded/model-00001-of-00002.safetensors");
        fz_path(shard[1], "sharded/model-00002-of-00002.safetensors");
    }
    fz_part part[3];
    fz_split(data, size, part, 3);
    fz_write(index, part[0].p, part[0].n);
    fz_write(shard[0], part[1].p, part[1].n);
    fz_write(shard[1], part[2].p, part[2].n);

    pissa_checkpoint *ck;
    if (pissa_checkpoint_open(dir, &ck) != PISSA_OK) return 0;
    for (size_t i = 0; i < pissa_checkpoint_count(ck); i++) {
        pissa_st_info info;
        pissa_tensor *t;
        pissa_checkpoint_find(ck, pissa_checkpoint_name(ck, i), &info);
        if (pissa_checkpoint_load(ck, pissa_checkpoint_name(ck, i), &t) == PISSA_OK) pissa_tensor_free(t);
    }
    pissa_checkpoint_free(ck);

    pissa_model *m;
    if (pissa_model_load(dir, &m) != PISSA_OK) return 0;
    fz_run_model(m);
    pissa_model_free(m);
    return 0;
}
