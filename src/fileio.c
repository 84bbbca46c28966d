/* Atomic output (pissa/fileio.h): files by temporary file + fsync + rename, directories by a new version built
 * aside and exchanged in one rename; directories, whole-file reads. */
#define _GNU_SOURCE /* renameat2, nftw */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

char *pissa__path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

pissa_status pissa__atomic_open(const char *path, pissa_atomic_file *af) {
    memset(af, 0, sizeof *af);
    af->path = pissa__strdup(path);
    af->tmp_path = malloc(strlen(path) + 40);
    if (!af->path || !af->tmp_path) {
        free(af->path);
        free(af->tmp_path);
        return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    }
    sprintf(af->tmp_path, "%s.tmp.%ld.XXXXXX", path, (long)getpid()); /* the pid tells a leftover from a live one */
    int fd = mkstemp(af->tmp_path);
    if (fd < 0) {
        int e = errno;
        free(af->path);
        free(af->tmp_path);
        af->path = af->tmp_path = NULL;
        return pissa__fail(PISSA_ERR_IO, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    fchmod(fd, 0644);
    af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        close(fd);
        unlink(af->tmp_path);
        free(af->path);
        free(af->tmp_path);
        af->path = af->tmp_path = NULL;
        return pissa__fail(PISSA_ERR_IO, "%s: fdopen failed", path);
    }
    return PISSA_OK;
}

pissa_status pissa__atomic_write(pissa_atomic_file *af, const void *data, size_t len) {
    if (len && fwrite(data, 1, len, af->fp) != len)
        return pissa__fail(PISSA_ERR_IO, "%s: write failed: %s", af->path, strerror(errno));
    return PISSA_OK;
}

static void fsync_parent(const char *path) {
    char *copy = pissa__strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

void pissa__atomic_abort(pissa_atomic_file *af) {
    if (af->fp) fclose(af->fp);
    if (af->tmp_path) unlink(af->tmp_path);
    free(af->tmp_path);
    free(af->path);
    memset(af, 0, sizeof *af);
}

pissa_status pissa__atomic_commit(pissa_atomic_file *af) {
    pissa_status st = PISSA_OK;
    if (fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0)
        st = pissa__fail(PISSA_ERR_IO, "%s: flush/fsync failed: %s", af->path, strerror(errno));
    if (fclose(af->fp) != 0 && st == PISSA_OK)
        st = pissa__fail(PISSA_ERR_IO, "%s: close failed: %s", af->path, strerror(errno));
    af->fp = NULL;
    if (st == PISSA_OK && rename(af->tmp_path, af->path) != 0)
        st = pissa__fail(PISSA_ERR_IO, "%s: rename from %s failed: %s", af->path, af->tmp_path, strerror(errno));
    if (st == PISSA_OK) {
        fsync_parent(af->path);
        free(af->tmp_path);
        af->tmp_path = NULL; /* nothing left to remove */
    }
    pissa__atomic_abort(af);
    return st;
}

pissa_status pissa_write_file_atomic(const char *path, const void *data, size_t len) {
    if (!path || (!data && len)) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_write_file_atomic: NULL argument");
    pissa_atomic_file af;
    PISSA_TRY(pissa__atomic_open(path, &af));
    pissa_status st = pissa__atomic_write(&af, data, len);
    if (st != PISSA_OK) {
        pissa__atomic_abort(&af);
        return st;
    }
    return pissa__atomic_commit(&af);
}

pissa_status pissa__mkdir_p(const char *dir) {
    char *p = pissa__strdup(dir);
    if (!p) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    size_t n = strlen(p);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            int e = errno;
            pissa_status st = pissa__fail(PISSA_ERR_IO, "%s: cannot create directory: %s", p, strerror(e));
            free(p);
            return st;
        }
        p[i] = c;
    }
    struct stat st;
    int ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
    free(p);
    return ok ? PISSA_OK : pissa__fail(PISSA_ERR_IO, "%s: not a directory", dir);
}

pissa_status pissa__read_file(const char *path, char **out, size_t *len) {
    *out = NULL;
    if (len) *len = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) return pissa__fail(errno == ENOENT ? PISSA_ERR_NOT_FOUND : PISSA_ERR_IO, "%s: cannot open: %s", path,
                                strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, fp);
        n += got;
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    int err = ferror(fp);
    fclose(fp);
    if (!buf) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    if (err) {
        free(buf);
        return pissa__fail(PISSA_ERR_IO, "%s: read failed", path);
    }
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return PISSA_OK;
}

/* ---- directories replaced whole (pissa/fileio.h) ---- */

struct pissa_dir_txn {
    char *dir;     /* the real path of the target */
    char *tmp;     /* DIR.tmp.PID.XXXXXX: the new version */
    char *created; /* the outermost ancestor this transaction created, removed again on abort (or NULL) */
};

/* 1 if S is "PID.XXXXXX" (or a pre-PID "XXXXXX", mkstemp's six characters); *pid gets the PID (0 for the old form). */
static int pid_suffix(const char *s, long *pid) {
    const char *dot = strchr(s, '.');
    *pid = 0;
    if (!dot) return strlen(s) == 6;
    for (const char *d = s; d < dot; d++)
        if (*d < '0' || *d > '9') return 0;
    if (dot == s || strlen(dot + 1) != 6) return 0;
    *pid = strtol(s, NULL, 10);
    return 1;
}

/* 1 if NAME is one of libpissa's temporary names, "X.tmp.PID.XXXXXX" (or a pre-PID "X.tmp.XXXXXX"). */
static int temp_name(const char *name, long *pid) {
    const char *t = NULL;
    for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp.")) t = p;
    return t && pid_suffix(t + 5, pid);
}

int pissa__fileio_no_exchange;

static int pid_alive(long pid) { return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM); }

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)ftw;
    return flag == FTW_DP || flag == FTW_D ? rmdir(path) : unlink(path);
}

/* rm -rf PATH (no error if absent). */
static void remove_tree(const char *path) {
    struct stat s;
    if (lstat(path, &s) != 0) return;
    if (S_ISDIR(s.st_mode)) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    else unlink(path);
}

/* Removes the leftovers of writers that no longer run from folder DIR: "BASE.tmp.PID.*" entries (BASE NULL: any
 * temporary name). A crash between the exchange and the removal leaves the OLD version under such a name. */
static void remove_stale(const char *dir, const char *base) {
    DIR *d = opendir(dir);
    if (!d) return;
    size_t nb = base ? strlen(base) : 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid;
        if (base && (strncmp(e->d_name, base, nb) != 0 || strncmp(e->d_name + nb, ".tmp.", 5) != 0)) continue;
        if (!temp_name(e->d_name, &pid) || pid_alive(pid)) continue;
        char *p = pissa__path_join(dir, e->d_name);
        if (p) remove_tree(p);
        free(p);
    }
    closedir(d);
}

/* Without RENAME_EXCHANGE a commit moves the old version of PATH aside as "PATH.old.PID.XXXXXX" before it renames
 * the new one in; a writer killed in between leaves PATH absent. The old version is whole: put it back (and drop a
 * dead writer's moved-aside version that PATH already replaced). PARENT and BASE: PATH's. */
static void restore_moved_aside(const char *path, const char *parent, const char *base) {
    DIR *d = opendir(parent);
    if (!d) return;
    size_t nb = strlen(base);
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid;
        if (strncmp(e->d_name, base, nb) != 0 || strncmp(e->d_name + nb, ".old.", 5) != 0) continue;
        if (!pid_suffix(e->d_name + nb + 5, &pid) || pid_alive(pid)) continue;
        char *p = pissa__path_join(parent, e->d_name);
        struct stat sb;
        if (p && stat(path, &sb) != 0 && errno == ENOENT) rename(p, path);
        else if (p) remove_tree(p);
        free(p);
    }
    closedir(d);
}

static pissa_status copy_file(const char *src, const char *dst) {
    char *data;
    size_t len;
    PISSA_TRY(pissa__read_file(src, &data, &len));
    FILE *f = fopen(dst, "wb");
    int ok = f && fwrite(data, 1, len, f) == len;
    if (f && fclose(f) != 0) ok = 0;
    free(data);
    return ok ? PISSA_OK : pissa__fail(PISSA_ERR_IO, "%s: cannot copy to %s: %s", src, dst, strerror(errno));
}

/* Recreates the tree SRC in the existing folder DST: folders made, files hard-linked (copied where the file system
 * refuses links), symlinks recreated. At the top level (TOP) names matching a pattern of DROP (fnmatch) are
 * skipped; at every level temporary names are. */
static pissa_status carry_tree(const char *src, const char *dst, const char *const *drop, int top) {
    DIR *d = opendir(src);
    if (!d) return pissa__fail(PISSA_ERR_IO, "%s: cannot read directory: %s", src, strerror(errno));
    pissa_status st = PISSA_OK;
    struct dirent *e;
    while (st == PISSA_OK && (e = readdir(d))) {
        const char *n = e->d_name;
        long pid;
        if (!strcmp(n, ".") || !strcmp(n, "..") || temp_name(n, &pid)) continue;
        int dropped = 0;
        for (size_t k = 0; top && drop && drop[k]; k++) dropped |= fnmatch(drop[k], n, FNM_PERIOD) == 0;
        if (dropped) continue;
        char *s = pissa__path_join(src, n), *t = pissa__path_join(dst, n);
        struct stat sb;
        if (!s || !t) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", src);
        else if (lstat(s, &sb) != 0) st = pissa__fail(PISSA_ERR_IO, "%s: %s", s, strerror(errno));
        else if (S_ISDIR(sb.st_mode)) {
            if (mkdir(t, sb.st_mode & 07777) != 0) st = pissa__fail(PISSA_ERR_IO, "%s: %s", t, strerror(errno));
            else st = carry_tree(s, t, NULL, 0);
        } else if (S_ISREG(sb.st_mode)) {
            if (link(s, t) != 0) st = copy_file(s, t);
        } else if (S_ISLNK(sb.st_mode)) {
            char target[4096];
            ssize_t k = readlink(s, target, sizeof target - 1);
            if (k < 0 || (target[k] = '\0', symlink(target, t) != 0))
                st = pissa__fail(PISSA_ERR_IO, "%s: cannot copy the symlink: %s", s, strerror(errno));
        }
        free(s);
        free(t);
    }
    closedir(d);
    return st;
}

static int fsync_dir_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)ftw;
    if (flag != FTW_D && flag != FTW_DP) return 0;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

static void txn_free(pissa_dir_txn *t) {
    if (!t) return;
    free(t->dir);
    free(t->tmp);
    free(t->created);
    free(t);
}

pissa_status pissa_dir_txn_begin(const char *dir, const char *const *drop, pissa_dir_txn **out) {
    if (!dir || !*dir || !out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dir_txn_begin: NULL argument");
    *out = NULL;
    pissa_dir_txn *t = pissa__calloc(1, sizeof *t);
    char *path = pissa__strdup(dir);
    if (!t || !path) {
        free(t);
        free(path);
        return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    }
    for (size_t n = strlen(path); n > 1 && path[n - 1] == '/'; n--) path[n - 1] = '\0';
    char *pcopy = pissa__strdup(path), *bcopy = pissa__strdup(path);
    if (pcopy && bcopy) restore_moved_aside(path, dirname(pcopy), basename(bcopy));
    free(pcopy);
    free(bcopy);
    struct stat sb;
    int exists = stat(path, &sb) == 0;
    if (exists && !S_ISDIR(sb.st_mode)) {
        free(path);
        free(t);
        return pissa__fail(PISSA_ERR_IO, "%s: exists and is not a directory", dir);
    }
    if (exists) { /* the real folder, so a symlink to it stays a symlink */
        char *real = realpath(path, NULL);
        free(path);
        path = real;
    }
    t->dir = path;
    pissa_status st = path ? PISSA_OK : pissa__fail(PISSA_ERR_IO, "%s: %s", dir, strerror(errno));
    pcopy = path ? pissa__strdup(path) : NULL, bcopy = path ? pissa__strdup(path) : NULL;
    if (st == PISSA_OK && (!pcopy || !bcopy)) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
    const char *parent = pcopy ? dirname(pcopy) : NULL, *base = bcopy ? basename(bcopy) : NULL;
    if (st == PISSA_OK && !exists) { /* make the parents, remembering the outermost one made */
        char *p = pissa__strdup(parent);
        for (size_t i = 1; p && st == PISSA_OK; i++) {
            if (p[i] != '/' && p[i] != '\0') continue;
            char c = p[i];
            p[i] = '\0';
            if (mkdir(p, 0755) == 0) {
                if (!t->created) t->created = pissa__strdup(p);
            } else if (errno != EEXIST) {
                st = pissa__fail(PISSA_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
            }
            p[i] = c;
            if (!c) break;
        }
        if (!p) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
        free(p);
    }
    if (st == PISSA_OK) {
        remove_stale(parent, base);
        t->tmp = malloc(strlen(path) + 40);
        if (!t->tmp) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", dir);
        else sprintf(t->tmp, "%s.tmp.%ld.XXXXXX", path, (long)getpid());
        if (st == PISSA_OK && !mkdtemp(t->tmp)) {
            st = pissa__fail(PISSA_ERR_IO, "%s: cannot create a folder beside it: %s", dir, strerror(errno));
            free(t->tmp);
            t->tmp = NULL;
        }
    }
    if (st == PISSA_OK) chmod(t->tmp, 0755);
    if (st == PISSA_OK && exists) st = carry_tree(path, t->tmp, drop, 1);
    free(pcopy);
    free(bcopy);
    if (st != PISSA_OK) {
        pissa_dir_txn_abort(t);
        return st;
    }
    *out = t;
    return PISSA_OK;
}

const char *pissa_dir_txn_path(const pissa_dir_txn *t) { return t ? t->tmp : NULL; }

void pissa_dir_txn_abort(pissa_dir_txn *t) {
    if (!t) return;
    if (t->tmp) remove_tree(t->tmp);
    if (t->created && t->dir) { /* rmdir the folders begin made, innermost first, while they are empty */
        char *p = pissa__strdup(t->dir);
        size_t keep = strlen(t->created);
        while (p && strlen(p) > keep) {
            char *slash = strrchr(p, '/');
            if (!slash) break;
            *slash = '\0';
            if (strlen(p) >= keep && rmdir(p) != 0) break;
        }
        free(p);
    }
    txn_free(t);
}

pissa_status pissa_dir_txn_commit(pissa_dir_txn *t) {
    if (!t) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_dir_txn_commit: NULL argument");
    pissa_status st = PISSA_OK;
    if (nftw(t->tmp, fsync_dir_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        st = pissa__fail(PISSA_ERR_IO, "%s: fsync failed: %s", t->tmp, strerror(errno));
    struct stat sb;
    int exists = stat(t->dir, &sb) == 0;
    if (st == PISSA_OK && exists &&
        (pissa__fileio_no_exchange || renameat2(AT_FDCWD, t->tmp, AT_FDCWD, t->dir, RENAME_EXCHANGE) != 0)) {
        /* No exchange on this file system: the old version steps aside as DIR.old.PID.XXXXXX first; a crash in
         * between leaves DIR absent and the old version whole, which the next transaction puts back
         * (restore_moved_aside). */
        char *old = malloc(strlen(t->dir) + 40);
        if (!old) st = pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", t->dir);
        else {
            sprintf(old, "%s.old.%ld.XXXXXX", t->dir, (long)getpid());
            if (!mkdtemp(old) || rename(t->dir, old) != 0)
                st = pissa__fail(PISSA_ERR_IO, "%s: cannot move the old version aside: %s", t->dir, strerror(errno));
            else if (rename(t->tmp, t->dir) != 0) {
                st = pissa__fail(PISSA_ERR_IO, "%s: rename from %s failed: %s", t->dir, t->tmp, strerror(errno));
                rename(old, t->dir);
            } else {
                free(t->tmp);
                t->tmp = old; /* what is left to delete */
                old = NULL;
            }
            if (old) rmdir(old);
            free(old);
        }
    } else if (st == PISSA_OK && !exists && rename(t->tmp, t->dir) != 0) {
        st = pissa__fail(PISSA_ERR_IO, "%s: rename from %s failed: %s", t->dir, t->tmp, strerror(errno));
    }
    if (st != PISSA_OK) {
        pissa_dir_txn_abort(t);
        return st;
    }
    fsync_parent(t->dir);
    if (exists) remove_tree(t->tmp); /* the old version */
    txn_free(t);
    return PISSA_OK;
}
