/* libpissa — crash-consistent output: whole files and whole directories replaced atomically.
 *
 * Every file the library writes goes to a temporary sibling first ("NAME.tmp.PID.XXXXXX"), is fsync'ed and then
 * renamed over NAME, so a reader (or a crash, or kill -9) sees the complete old or the complete new file. A folder
 * of several files (a PEFT adapter, a checkpoint, a training state, a program's --out) is replaced the same way as
 * a whole: its new version is built in a sibling "DIR.tmp.PID.XXXXXX" and switched in with one atomic rename
 * (Linux renameat2 RENAME_EXCHANGE), so DIR never holds a mix of two versions. Temporary names carry the writer's
 * process id; those of processes that no longer run are removed by the next transaction on the same folder. */
#ifndef PISSA_FILEIO_H
#define PISSA_FILEIO_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes LEN bytes of DATA to PATH atomically (temporary file, fsync, rename, fsync of the folder). */
PISSA_API pissa_status pissa_write_file_atomic(const char *path, const void *data, size_t len);

/* A new version of a directory, built aside and switched in whole. */
typedef struct pissa_dir_txn pissa_dir_txn;

/* Starts a new version of DIR (created with its parents if absent; a symlink to a folder is followed). The new
 * version starts as a copy of DIR's current contents (files hard-linked, so large files cost nothing), except the
 * top-level entries matching a pattern of DROP (a NULL-terminated list of fnmatch patterns such as "model-*.safetensors";
 * NULL drops nothing) and leftover temporary files: write
 * the new files into pissa_dir_txn_path() (library writers replace files there by rename, never in place, so the
 * linked old files are not modified). Nothing is visible at DIR until pissa_dir_txn_commit. Folders this call
 * created are removed again by pissa_dir_txn_abort. Caller ends the transaction with commit or abort. */
PISSA_API pissa_status pissa_dir_txn_begin(const char *dir, const char *const *drop, pissa_dir_txn **out);
/* Where the new version is being built. Borrowed, valid until commit or abort. */
PISSA_API const char *pissa_dir_txn_path(const pissa_dir_txn *t);
/* Makes the new version DIR in one atomic step (fsync of every new file and folder first), then deletes the old
 * one. Frees T in every case; on failure DIR keeps its old contents and the new version is removed. */
PISSA_API pissa_status pissa_dir_txn_commit(pissa_dir_txn *t);
/* Drops the new version; DIR is left as it was. Frees T; NULL is a no-op. */
PISSA_API void pissa_dir_txn_abort(pissa_dir_txn *t);

#ifdef __cplusplus
}
#endif
#endif
