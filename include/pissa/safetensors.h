/* libpissa — safetensors files (docs/formats.md): a validating, memory-mapped reader and an atomic writer.
 *
 * Reader: the file is mmap'd; the JSON header is parsed from the mapped bytes and checked against every
 * rule of the reference reader (size limits, UTF-8, JSON shape, dtypes, contiguous offsets, sizes,
 * duplicate names). A failed open reports the file, the rule and the tensor at fault.
 * Writer: tensors sorted like the reference writer (larger element size first, then by name), header
 * padded with spaces to a multiple of 8 bytes, "__metadata__" {"format": "pt"} (plus any added keys),
 * written to PATH.tmp.XXXXXX, fsync'd, then renamed over PATH. */
#ifndef PISSA_SAFETENSORS_H
#define PISSA_SAFETENSORS_H

#include "common.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest header the reader accepts (the reference reader's limit). */
#define PISSA_ST_MAX_HEADER 100000000ULL

typedef struct pissa_st_file pissa_st_file;

/* One tensor of an open file. Pointers are borrowed from the file and valid until pissa_st_close. */
typedef struct pissa_st_info {
    const char *name;
    pissa_dtype dtype;
    int ndim;
    int64_t shape[PISSA_MAX_DIMS];
    int64_t numel;
    const void *data; /* inside the read-only mapping; may be unaligned */
    size_t nbytes;
} pissa_st_info;

/* Opens and validates PATH. Caller frees with pissa_st_close. */
PISSA_API pissa_status pissa_st_open(const char *path, pissa_st_file **out);
/* Releases the handle; tensors loaded as MAPPED keep the mapping alive. NULL is a no-op. */
PISSA_API void pissa_st_close(pissa_st_file *f);

PISSA_API const char *pissa_st_path(const pissa_st_file *f);
/* Number of tensors; tensors are indexed in order of their data offsets. */
PISSA_API size_t pissa_st_count(const pissa_st_file *f);
PISSA_API pissa_status pissa_st_info_at(const pissa_st_file *f, size_t i, pissa_st_info *out);
/* PISSA_ERR_NOT_FOUND (message names the tensor and the file) if absent. */
PISSA_API pissa_status pissa_st_find(const pissa_st_file *f, const char *name, pissa_st_info *out);
/* "__metadata__" value for KEY, or NULL. Borrowed. */
PISSA_API const char *pissa_st_metadata(const pissa_st_file *f, const char *key);

/* Loads a float tensor. F32 data that is 4-byte aligned in the mapping is returned as a MAPPED tensor
 * (zero copy); F16/BF16 (or unaligned F32) is converted into an OWNED tensor. Other dtypes:
 * PISSA_ERR_UNSUPPORTED. Caller frees with pissa_tensor_free. */
PISSA_API pissa_status pissa_st_load(const pissa_st_file *f, const char *name, pissa_tensor **out);
/* Converts the named float tensor into caller memory of n floats (n must equal its element count). */
PISSA_API pissa_status pissa_st_read_f32(const pissa_st_file *f, const char *name, float *dst, int64_t n);

/* ---- writer ---- */

typedef struct pissa_st_writer pissa_st_writer;

/* Produces the float32 values of one tensor when the writer reaches it (numel floats into dst).
 * Lets a caller stream a large checkpoint without holding every tensor in memory. */
typedef pissa_status (*pissa_st_fill_fn)(void *user, const char *name, float *dst, int64_t numel);

PISSA_API pissa_status pissa_st_writer_create(pissa_st_writer **out);
PISSA_API void pissa_st_writer_free(pissa_st_writer *w); /* NULL is a no-op */
/* Adds or replaces a "__metadata__" entry ("format": "pt" is always present). Strings are copied. */
PISSA_API pissa_status pissa_st_writer_set_metadata(pissa_st_writer *w, const char *key, const char *value);
/* Adds a tensor. The name is copied; DATA is borrowed until pissa_st_writer_write returns.
 * add_f32: float32 values stored as DTYPE (F32, F16 or BF16, rounded to nearest even).
 * add_raw: bytes already in DTYPE (any dtype), numel * dtype size bytes.
 * add_fill: float32 values produced by FILL during the write, stored as DTYPE.
 * A duplicate name is PISSA_ERR_INVALID_ARG. */
PISSA_API pissa_status pissa_st_writer_add_f32(pissa_st_writer *w, const char *name, pissa_dtype dtype, int ndim,
                                               const int64_t *shape, const float *data);
PISSA_API pissa_status pissa_st_writer_add_raw(pissa_st_writer *w, const char *name, pissa_dtype dtype, int ndim,
                                               const int64_t *shape, const void *data);
PISSA_API pissa_status pissa_st_writer_add_fill(pissa_st_writer *w, const char *name, pissa_dtype dtype, int ndim,
                                                const int64_t *shape, pissa_st_fill_fn fill, void *user);
/* Writes the file atomically (temporary file, fsync, rename, fsync of the directory). On failure PATH is
 * untouched and the temporary file removed. */
PISSA_API pissa_status pissa_st_writer_write(pissa_st_writer *w, const char *path);

#ifdef __cplusplus
}
#endif
#endif
