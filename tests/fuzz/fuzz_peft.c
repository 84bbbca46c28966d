/* PEFT LoRA adapter folder: the input is adapter_config.json FZ_SEP adapter_model.safetensors. The folder is read
 * (pissa_peft_adapter_load: every module walked), then applied to the tiny model (2 layers, hidden 4; written once)
 * with pissa_model_load_adapter, which resolves target_modules, layers_to_transform and the rank/alpha patterns
 * against the base and checks every shape; a model that takes the adapter runs one forward pass. The config, written
 * back as adapter_config.json text, must parse and write back to the same text. init_lora_weights
 * "pissa_niter_N" asks for N subspace iterations per module, as in PEFT: work the config requests, not a bug, so
 * adapters asking for more than 64 are not applied (every other config is). */
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char base[FZ_PATH_MAX], dir[FZ_PATH_MAX], config[FZ_PATH_MAX], weights[FZ_PATH_MAX];
    if (!base[0]) {
        pissa_set_num_threads(1);
        fz_write_tiny_model(fz_mkdir(base, "base"));
        fz_mkdir(dir, "adapter");
        fz_path(config, "adapter/adapter_config.json");
        fz_path(weights, "adapter/adapter_model.safetensors");
    }
    fz_part part[2];
    fz_split(data, size, part, 2);
    fz_write(config, part[0].p, part[0].n);
    fz_write(weights, part[1].p, part[1].n);

    pissa_peft_adapter *a;
    if (pissa_peft_adapter_load(dir, &a) != PISSA_OK) return 0;
    const pissa_peft_config *cfg = pissa_peft_adapter_config(a);
    char *json = NULL, *again = NULL; /* written back (pissa-convert, pissa-merge do), it reads back the same */
    pissa_peft_config *reread = NULL;
    if (pissa_peft_config_to_json(cfg, &json) == PISSA_OK &&
        (pissa_peft_config_parse(json, strlen(json), "rewritten", &reread) != PISSA_OK ||
         pissa_peft_config_to_json(reread, &again) != PISSA_OK || strcmp(json, again) != 0))
        abort();
    pissa_free(json);
    pissa_free(again);
    pissa_peft_config_free(reread);
    char *init_json = NULL; /* "\"pissa_niter_16\"", "true", ... */
    int costly = 0;
    if (pissa_peft_config_get(cfg, "init_lora_weights", &init_json) == PISSA_OK &&
        strncmp(init_json, "\"pissa_niter_", 13) == 0)
        costly = strspn(init_json + 13, "0123456789") > 2 || atoi(init_json + 13) > 64;
    pissa_free(init_json);
    for (size_t i = 0; i < pissa_peft_adapter_count(a); i++) {
        const char *module;
        const pissa_tensor *A, *B;
        size_t found;
        if (pissa_peft_adapter_module(a, i, &module, &A, &B) == PISSA_OK)
            pissa_peft_adapter_find(a, module, &found);
    }
    pissa_peft_adapter_free(a);

    pissa_model *m;
    if (costly || pissa_model_load(base, &m) != PISSA_OK) return 0;
    if (pissa_model_load_adapter(m, dir) == PISSA_OK) fz_run_model(m);
    pissa_model_free(m);
    return 0;
}
