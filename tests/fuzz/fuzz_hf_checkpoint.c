/* Hugging Face checkpoint folder: the input is config.json FZ_SEP model.safetensors. The folder is opened as a
 * checkpoint (pissa_checkpoint_open: every tensor found and loaded), then as a model (pissa_model_load, which checks
 * every shape against the config), and a model that loads runs one forward pass. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char dir[FZ_PATH_MAX], config[FZ_PATH_MAX], weights[FZ_PATH_MAX];
    if (!dir[0]) {
        pissa_set_num_threads(1);
        fz_mkdir(dir, "hf");
        fz_path(config, "hf/config.json");
        fz_path(weights, "hf/model.safetensors");
    }
    fz_part part[2];
    fz_split(data, size, part, 2);
    fz_write(config, part[0].p, part[0].n);
    fz_write(weights, part[1].p, part[1].n);

    pissa_checkpoint *ck;
    if (pissa_checkpoint_open(dir, &ck) != PISSA_OK) return 0;
    pissa_llama_config_check_supported(pissa_checkpoint_config(ck));
    for (size_t i = 0; i < pissa_checkpoint_count(ck); i++) {
        pissa_tensor *t;
        if (pissa_checkpoint_load(ck, pissa_checkpoint_name(ck, i), &t) == PISSA_OK) pissa_tensor_free(t);
    }
    pissa_checkpoint_free(ck);

    pissa_model *m;
    if (pissa_model_load(dir, &m) != PISSA_OK) return 0;
    fz_run_model(m);
    pissa_model_free(m);
    return 0;
}
