/* JSONL training data (pissa_dataset_load_jsonl): the input is the file, read with a vocabulary of 300 ids. Every
 * row of a data set that loads is read back (its ids must lie in [0, 300), its labels there or at -100), and its rows
 * shuffled as the trainer does. */
#include <stdlib.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char path[FZ_PATH_MAX];
    if (!path[0]) fz_path(path, "data.jsonl");
    fz_write(path, data, size);
    pissa_dataset *d;
    if (pissa_dataset_load_jsonl(path, 300, &d) != PISSA_OK) return 0;
    size_t n = pissa_dataset_count(d);
    for (size_t i = 0; i < n; i++) {
        pissa_row row;
        if (pissa_dataset_row(d, i, &row) != PISSA_OK) abort();
        for (int64_t t = 0; t < row.len; t++)
            if (row.input_ids[t] < 0 || row.input_ids[t] >= 300 ||
                (row.labels[t] != PISSA_IGNORE_INDEX && (row.labels[t] < 0 || row.labels[t] >= 300)))
                abort();
    }
    size_t *perm = malloc((n ? n : 1) * sizeof *perm);
    if (!perm) abort();
    pissa_shuffle_indices(perm, n, 1234);
    free(perm);
    pissa_dataset_free(d);
    return 0;
}
