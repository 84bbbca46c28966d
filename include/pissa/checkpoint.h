/* libpissa — Hugging Face checkpoint folders: config.json (pissa/config.h) and the safetensors weights, single-file
 * (model.safetensors) or sharded (model.safetensors.index.json). */
#ifndef PISSA_CHECKPOINT_H
#define PISSA_CHECKPOINT_H

#include "common.h"
#include "config.h"
#include "fileio.h" /* pissa_write_file_atomic, declared here before 0.2 */
#include "safetensors.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pissa_checkpoint pissa_checkpoint;

/* Opens DIR: reads DIR/config.json, then DIR/model.safetensors.index.json (sharded) if present, else
 * DIR/model.safetensors. Caller frees with pissa_checkpoint_free. */
PISSA_API pissa_status pissa_checkpoint_open(const char *dir, pissa_checkpoint **out);
PISSA_API void pissa_checkpoint_free(pissa_checkpoint *c); /* NULL is a no-op */

PISSA_API const pissa_llama_config *pissa_checkpoint_config(const pissa_checkpoint *c); /* borrowed */
/* The config.json text exactly as read (NUL-terminated). Borrowed. */
PISSA_API const char *pissa_checkpoint_config_json(const pissa_checkpoint *c);
/* Tensor names across all shards, sorted. */
PISSA_API size_t pissa_checkpoint_count(const pissa_checkpoint *c);
PISSA_API const char *pissa_checkpoint_name(const pissa_checkpoint *c, size_t i);
PISSA_API pissa_status pissa_checkpoint_find(const pissa_checkpoint *c, const char *name, pissa_st_info *out);
/* As pissa_st_load / pissa_st_read_f32, from whichever shard holds NAME. A tensor copied or converted out of the
 * file mapping (read_f32, or load of F16/BF16) gives the pages it was read from back to the kernel, so reading a
 * checkpoint tensor by tensor keeps one tensor resident, not the file. */
PISSA_API pissa_status pissa_checkpoint_load(const pissa_checkpoint *c, const char *name, pissa_tensor **out);
PISSA_API pissa_status pissa_checkpoint_read_f32(const pissa_checkpoint *c, const char *name, float *dst, int64_t n);
/* Adds tensor NAME of C to the writer W under the same name, stored as DTYPE: the stored bytes exactly when DTYPE is
 * its own dtype (any dtype), else its values converted (F32, F16 and BF16 only). The data is read from C's mapping
 * when W writes, and the pages are given back as they are written: copying a whole checkpoint this way keeps a few MB
 * of it resident, not the model. C must stay open until pissa_st_writer_write returns. */
PISSA_API pissa_status pissa_st_writer_add_from_checkpoint(pissa_st_writer *w, const pissa_checkpoint *c,
                                                           const char *name, pissa_dtype dtype);

#ifdef __cplusplus
}
#endif
#endif
