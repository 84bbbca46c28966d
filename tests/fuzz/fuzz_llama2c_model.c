/* llama2.c checkpoint (.bin): the input is the file, a version 0 (7 int32 header), version 1 or version 2 ("ak42"
 * magic, 256-byte header) checkpoint. It is loaded as a model (pissa_model_load), and a model that loads runs one
 * forward pass. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[FZ_PATH_MAX];
    if (!path[0]) {
        pissa_set_num_threads(1);
        fz_path(path, "model.bin");
    }
    fz_write(path, data, size);
    pissa_model *m;
    if (pissa_model_load(path, &m) != PISSA_OK) return 0;
    fz_run_model(m);
    pissa_model_free(m);
    return 0;
}
