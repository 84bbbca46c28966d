/* Atomic file output (temporary file, fsync, rename), directories, whole-file reads. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
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
    af->tmp_path = malloc(strlen(path) + 16);
    if (!af->path || !af->tmp_path) {
        free(af->path);
        free(af->tmp_path);
        return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", path);
    }
    strcpy(af->tmp_path, path);
    strcat(af->tmp_path, ".tmp.XXXXXX");
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
