/* Shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c): a scratch folder per process, files written from the
 * input, an input cut into the files of a folder, and the small valid objects (a tokenizer, a model) some harnesses
 * load the fuzzed file against.
 *
 * A harness is one LLVMFuzzerTestOneInput that feeds the bytes to the loader the programs use, then walks what was
 * loaded, frees everything (LeakSanitizer runs) and prints nothing. Failures of the harness's own plumbing (a
 * scratch file that cannot be written) abort: they are not findings about the library. */
#ifndef PISSA_FUZZ_UTIL_H
#define PISSA_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "pissa.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Separates the files of a multi-file input, e.g. `config.json` FZ_SEP `model.safetensors`. Every seed of such a
 * harness is written this way (tests/fuzz/make_corpus.py), so mutations reach each file. */
#define FZ_SEP "\n--8<--\n"

typedef struct fz_part {
    const uint8_t *p;
    size_t n;
} fz_part;

/* Cuts DATA at each FZ_SEP into at most MAX parts (the last keeps any further separators) and returns how many
 * there are (at least 1); the parts after them are empty. */
size_t fz_split(const uint8_t *data, size_t size, fz_part *parts, size_t max);

#define FZ_PATH_MAX 512

/* The process's scratch folder: created on first use under $TMPDIR (else /dev/shm, else /tmp) and removed at
 * exit. */
const char *fz_dir(void);
/* Fills BUF with "fz_dir()/REL" and returns it. */
const char *fz_path(char buf[FZ_PATH_MAX], const char *rel);
/* Creates the folder fz_dir()/REL (if needed), fills BUF with its path and returns it. */
const char *fz_mkdir(char buf[FZ_PATH_MAX], const char *rel);
/* Replaces the file PATH with the N bytes at DATA. */
void fz_write(const char *path, const void *data, size_t n);
/* Removes the file PATH if it exists. */
void fz_remove(const char *path);

/* A llama2.c tokenizer file like stories260K's (max_token_length, then score, length, bytes for <unk>, BOS, EOS,
 * the 256 byte tokens and a few hundred merges of English text, among them multi-byte UTF-8 pieces). *N gets its
 * size. Caller frees. */
unsigned char *fz_tiny_tokenizer(size_t *n);

/* Writes a tiny Hugging Face Llama checkpoint (2 layers, hidden 4, 2 heads of 2 sharing 1 KV head, intermediate 8,
 * vocabulary 16, untied) into the folder DIR, through the library's writer: config.json and model.safetensors. */
void fz_write_tiny_model(const char *dir);

/* What a program does next with a model it loaded: one forward pass on a few tokens (bounded by the model's
 * maximum position and vocabulary). The status is ignored: only memory and UB errors matter here. */
void fz_run_model(pissa_model *m);

#endif
