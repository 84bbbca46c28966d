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
/* As pissa_st_load / pissa_st_read_f32, from whichever shard holds NAME. */
PISSA_API pissa_status pissa_checkpoint_load(const pissa_checkpoint *c, const char *name, pissa_tensor **out);
PISSA_API pissa_status pissa_checkpoint_read_f32(const pissa_checkpoint *c, const char *name, float *dst, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
