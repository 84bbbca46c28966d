/* Replays corpora through a harness without libFuzzer, so any compiler (gcc, with or without sanitizers) runs the
 * committed seeds as a ctest: calls LLVMFuzzerTestOneInput once per file of each folder (in name order) or file
 * given. Fails when an argument holds no input at all, so a missing corpus is never a silent pass. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0) {
        fprintf(stderr, "replay: cannot open %s\n", path);
        if (f) fclose(f);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *data = malloc(n ? n : 1); /* exactly N bytes, so that ASan sees a read past the input's end */
    int bad = !data || fread(data, 1, n, f) != n;
    fclose(f);
    if (bad) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        free(data);
        return -1;
    }
    LLVMFuzzerTestOneInput(data, n);
    free(data);
    return 1;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

static int skip_hidden(const struct dirent *e) { return e->d_name[0] != '.'; }

/* Number of inputs run from PATH (a file or a folder), or -1 on an error. */
static int run_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s does not exist\n", path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) return run_file(path);
    struct dirent **list;
    int n = scandir(path, &list, skip_hidden, by_name), count = 0;
    if (n < 0) {
        fprintf(stderr, "replay: cannot list %s\n", path);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char file[4096];
        snprintf(file, sizeof file, "%s/%s", path, list[i]->d_name);
        if (count >= 0 && stat(file, &st) == 0 && S_ISREG(st.st_mode)) {
            int k = run_file(file);
            count = k < 0 ? -1 : count + k;
        }
        free(list[i]);
    }
    free(list);
    return count;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        int n = run_path(argv[i]);
        if (n <= 0) {
            if (n == 0) fprintf(stderr, "replay: %s holds no input\n", argv[i]);
            return 1;
        }
        printf("replayed %d input%s from %s\n", n, n == 1 ? "" : "s", argv[i]);
    }
    return 0;
}
