/* Internal helpers shared by the library's source files. Not installed. */
#ifndef PISSA_INTERNAL_H
#define PISSA_INTERNAL_H

#include <stdatomic.h>
#include <stdio.h>

#include "pissa.h"

/* ---- errors and logging (error.c) ---- */

/* Records a printf-style message as the calling thread's last error and returns S. */
pissa_status pissa__fail(pissa_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pissa__log(pissa_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define PISSA_TRY(expr)                      \
    do {                                     \
        pissa_status pissa__s = (expr);      \
        if (pissa__s != PISSA_OK) return pissa__s; \
    } while (0)

/* calloc/malloc of n * size bytes with an overflow check; NULL on overflow or failure. */
void *pissa__alloc(size_t n, size_t size);
void *pissa__calloc(size_t n, size_t size);
char *pissa__strdup(const char *s);

/* ---- read-only file mappings, reference counted (tensor.c) ---- */

typedef struct pissa_mapping {
    const unsigned char *base;
    size_t size;
    atomic_int refs;
} pissa_mapping;

/* Maps PATH read-only (refs = 1). An empty file maps to base = NULL, size = 0. */
pissa_status pissa__mapping_open(const char *path, pissa_mapping **out);
void pissa__mapping_retain(pissa_mapping *m);
void pissa__mapping_release(pissa_mapping *m); /* unmaps at zero; NULL is a no-op */
/* Tells the kernel that the pages wholly inside [P, P + LEN) of M are not needed now (madvise DONTNEED): they leave
 * the resident set and are read from the file again if touched. For data that has been converted or quantized. */
void pissa__mapping_drop(const pissa_mapping *m, const void *p, size_t len);

struct pissa_tensor {
    float *data;
    int ndim;
    int64_t shape[PISSA_MAX_DIMS];
    int64_t numel;
    pissa_ownership own;
    pissa_mapping *map; /* MAPPED only: the reference this tensor holds */
};

/* New MAPPED tensor over DATA (4-byte aligned, inside M); takes a new reference to M. */
pissa_status pissa__tensor_mapped(pissa_mapping *m, const float *data, int ndim, const int64_t *shape, pissa_tensor **out);
/* Product of SHAPE, or -1 if a dim is negative or the product overflows int64. */
int64_t pissa__numel(int ndim, const int64_t *shape);

/* ---- random numbers (rng.c): xoshiro256** seeded by splitmix64 ---- */

typedef struct pissa_rng {
    uint64_t s[4];
} pissa_rng;

void pissa__rng_seed(pissa_rng *r, uint64_t seed);
uint64_t pissa__rng_u64(pissa_rng *r);
double pissa__rng_uniform(pissa_rng *r); /* [0, 1), 53 bits */
double pissa__rng_normal(pissa_rng *r);  /* N(0, 1), Box–Muller */
/* Advances R by N draws, as N calls of pissa__rng_u64 would. */
void pissa__rng_skip(pissa_rng *r, uint64_t n);

/* The mapping of an open safetensors file (borrowed; retain it to keep it past pissa_st_close). */
pissa_mapping *pissa__st_mapping(const pissa_st_file *f);
/* The data of the tensor W added last (add_raw or add_f32) lies in the file mapping M (borrowed, like the data, until
 * the write returns): the writer gives its pages back as it writes them, so that copying a mapped checkpoint does not
 * leave the whole source resident. */
pissa_status pissa__st_writer_from_mapping(pissa_st_writer *w, const pissa_mapping *m);
/* The mapping of the shard of checkpoint C that holds tensor NAME (borrowed), or NULL. */
pissa_mapping *pissa__checkpoint_mapping(const pissa_checkpoint *c, const char *name);

/* ---- files (fileio.c) ---- */

/* An output file written to PATH.tmp.XXXXXX and renamed over PATH on commit. */
typedef struct pissa_atomic_file {
    FILE *fp;
    char *tmp_path;
    char *path;
} pissa_atomic_file;

pissa_status pissa__atomic_open(const char *path, pissa_atomic_file *af);
/* Tests only: nonzero makes pissa_dir_txn_commit take its path for file systems without RENAME_EXCHANGE. */
extern int pissa__fileio_no_exchange;
pissa_status pissa__atomic_write(pissa_atomic_file *af, const void *data, size_t len);
/* fflush, fsync, fclose, rename, fsync of the directory. On failure the temporary file is removed. */
pissa_status pissa__atomic_commit(pissa_atomic_file *af);
void pissa__atomic_abort(pissa_atomic_file *af); /* removes the temporary file; safe after commit */

/* The files a checkpoint writer replaces in its folder (fnmatch patterns for pissa_dir_txn_begin): the weights in
 * any layout, so no old shard index outlives new single-file weights, and config.json. */
extern const char *const pissa__checkpoint_files[];

/* Creates DIR and its parents (like mkdir -p). */
pissa_status pissa__mkdir_p(const char *dir);
/* Reads a whole file into a NUL-terminated malloc'd buffer. Caller frees. */
pissa_status pissa__read_file(const char *path, char **out, size_t *len);
/* "DIR/NAME" in a malloc'd string (NULL on failure). */
char *pissa__path_join(const char *dir, const char *name);

/* ---- growable strings (json.c) ---- */

/* A NUL-terminated string built by appending; on allocation failure it sets oom and ignores further appends. */
typedef struct pissa__strbuf {
    char *p;
    size_t n, cap;
    int oom;
} pissa__strbuf;

void pissa__sb_put(pissa__strbuf *b, const char *s, size_t len);
void pissa__sb_puts(pissa__strbuf *b, const char *s);

/* ---- JSON output in Python's json.dumps(obj, indent=2, sort_keys=True) style (json.c) ---- */
struct cJSON;
/* Caller frees *out with free(). Object keys are sorted; non-ASCII is escaped as \uXXXX. */
pissa_status pissa__json_dump_sorted(const struct cJSON *item, char **out);
/* Appends the N bytes at S to B as a JSON string as Python's json.dumps writes it: the short escapes \" \\ \n \r \t
 * \b \f, other controls as \u00XX and, with ENSURE_ASCII, everything outside " ".."~" as \uXXXX (surrogate pairs above
 * U+FFFF). At a byte that does not begin a valid UTF-8 sequence: with BAD, *BAD gets its offset and 0 is returned
 * (the string is left unfinished); without, the byte is copied as it is. Returns 1 when the string is complete. */
int pissa__json_put_string(pissa__strbuf *b, const char *s, size_t n, int ensure_ascii, size_t *bad);
/* A number that Python would print as a float (0.0, 0.05, 1e-05), for fields PEFT stores as floats. */
struct cJSON *pissa__json_float(double v);
/* Parses LEN bytes of TEXT (not NUL-terminated) as one JSON object; only whitespace may follow. SOURCE names the text
 * in errors. Caller frees *OUT with cJSON_Delete. */
pissa_status pissa__json_parse_object(const char *text, size_t len, const char *source, struct cJSON **out);

/* ---- the model a config describes (config.c) ---- */

/* RoPE's inverse frequencies (head_dim / 2) for CFG's rope type, computed in float32 operation for operation as
 * transformers' rope init functions (default, linear, llama3) compute them. */
void pissa__rope_inv_freq(const pissa_llama_config *cfg, float *inv_freq);

#endif
