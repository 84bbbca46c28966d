/* safetensors file (pissa_st_open): the input is the file. Every tensor is looked up by index and by name (both
 * must succeed for a file that opened), every float tensor loaded and converted as the checkpoint and adapter
 * loaders do, and one loaded tensor is read after the file is closed (a MAPPED tensor keeps its mapping). */
#include <stdlib.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[FZ_PATH_MAX];
    if (!path[0]) fz_path(path, "input.safetensors");
    fz_write(path, data, size);
    pissa_st_file *f;
    if (pissa_st_open(path, &f) != PISSA_OK) return 0;
    pissa_st_metadata(f, "format");
    pissa_tensor *kept = NULL;
    for (size_t i = 0; i < pissa_st_count(f); i++) {
        pissa_st_info info;
        if (pissa_st_info_at(f, i, &info) != PISSA_OK || pissa_st_find(f, info.name, NULL) != PISSA_OK) abort();
        pissa_tensor *t;
        if (pissa_st_load(f, info.name, &t) != PISSA_OK) continue;
        float *copy = malloc(sizeof(float) * (size_t)(info.numel ? info.numel : 1));
        if (!copy || pissa_st_read_f32(f, info.name, copy, info.numel) != PISSA_OK) abort();
        free(copy);
        if (kept) pissa_tensor_free(t);
        else kept = t;
    }
    pissa_st_close(f);
    if (kept && pissa_tensor_numel(kept) > 0) {
        volatile float x = pissa_tensor_data(kept)[pissa_tensor_numel(kept) - 1];
        (void)x;
    }
    pissa_tensor_free(kept);
    return 0;
}
