/* Training state (pissa_trainer_load_state, what --resume reads): the input is state.json FZ_SEP state.safetensors,
 * loaded into a fresh trainer of the tiny model (fz_write_tiny_model) with LoRA r 2 on q_proj and v_proj, AdamW,
 * batch 2, on 4 rows of 8 tokens — the run tests/fuzz/make_corpus.py's valid seeds were saved from. A state that
 * loads is trained on for one update. */
#include <stdlib.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char model[FZ_PATH_MAX], state[FZ_PATH_MAX], json[FZ_PATH_MAX], tensors[FZ_PATH_MAX];
    if (!model[0]) {
        fz_write_tiny_model(fz_mkdir(model, "model"));
        fz_mkdir(state, "state");
        fz_path(json, "state/state.json");
        fz_path(tensors, "state/state.safetensors");
    }
    fz_part part[2];
    size_t n = fz_split(data, size, part, 2);
    fz_write(json, part[0].p, part[0].n);
    if (n > 1) fz_write(tensors, part[1].p, part[1].n);
    else fz_remove(tensors);

    int32_t ids[32];
    int64_t offsets[5] = {0, 8, 16, 24, 32};
    for (int i = 0; i < 32; i++) ids[i] = (i * 5 + 3) % 16;
    pissa_model *m;
    pissa_dataset *d;
    pissa_trainer *t;
    if (pissa_model_load(model, &m) != PISSA_OK) abort();
    pissa_adapter_opts ao = pissa_adapter_default_opts();
    ao.init.kind = PISSA_INIT_LORA;
    ao.init.rank = 2;
    ao.init.alpha = 4;
    if (pissa_model_add_adapters(m, &ao) != PISSA_OK || pissa_dataset_from_rows(ids, ids, offsets, 4, 16, &d) != PISSA_OK)
        abort();
    pissa_train_opts o = pissa_train_default_opts();
    o.batch = 2;
    o.total_steps = 4;
    if (pissa_trainer_create(m, d, &o, &t) != PISSA_OK) abort();
    if (pissa_trainer_load_state(t, state) == PISSA_OK) {
        pissa_step_info info;
        pissa_trainer_step(t, &info); /* a NaN in the state may stop it: a status, not a finding */
    }
    pissa_trainer_free(t);
    pissa_dataset_free(d);
    pissa_model_free(m);
    return 0;
}
