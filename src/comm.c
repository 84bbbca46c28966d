/* Communicators over MPI (include/pissa/comm.h) and the collectives of data-parallel training (comm_internal.h).
 * Built without MPI (no PISSA_HAVE_MPI), every function that needs it says so with PISSA_ERR_UNSUPPORTED; the
 * one-process paths (C = NULL) work either way. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "comm_internal.h"
#include "internal.h"

#ifdef PISSA_HAVE_MPI
#include <mpi.h>
#endif

uint64_t pissa__fingerprint(uint64_t h, const void *p, size_t n) {
    /* FNV-1a over 8-byte words (then the tail bytes), with a final avalanche per call */
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    h ^= (uint64_t)n;
    h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}

#ifndef PISSA_HAVE_MPI

struct pissa_comm {
    int unused;
};

static pissa_status no_mpi(void) {
    return pissa__fail(PISSA_ERR_UNSUPPORTED, "libpissa was built without MPI (reconfigure with -DPISSA_MPI=ON "
                       "and an MPI such as Debian's libopenmpi-dev)");
}

int pissa_mpi_available(void) { return 0; }
pissa_status pissa_mpi_init(void) { return no_mpi(); }
pissa_status pissa_mpi_finalize(void) { return PISSA_OK; }
pissa_status pissa_comm_create(const void *mpi_comm, pissa_comm **out) {
    (void)mpi_comm;
    if (out) *out = NULL;
    return no_mpi();
}
void pissa_comm_free(pissa_comm *c) { free(c); }
int pissa_comm_rank(const pissa_comm *c) { return (void)c, 0; }
int pissa_comm_size(const pissa_comm *c) { return (void)c, 1; }

pissa_status pissa_comm_agree(pissa_comm *c, pissa_status local, const char *message) {
    if (c) return no_mpi();
    if (local != PISSA_OK && message) return pissa__fail(local, "%s", message);
    return local;
}

pissa_status pissa__comm_sum_f32(pissa_comm *c, float *x, size_t n, const char *what) {
    (void)x, (void)n, (void)what;
    return c ? no_mpi() : PISSA_OK;
}
pissa_status pissa__comm_gather_f64(pissa_comm *c, const double *x, size_t n, double *all, const char *what) {
    (void)what;
    if (c) return no_mpi();
    memcpy(all, x, sizeof *x * n);
    return PISSA_OK;
}
pissa_status pissa__comm_sum_f64(pissa_comm *c, double *x, size_t n, const char *what) {
    (void)x, (void)n, (void)what;
    return c ? no_mpi() : PISSA_OK;
}
pissa_status pissa__comm_bcast(pissa_comm *c, void *buf, size_t bytes, int root, const char *what) {
    (void)buf, (void)bytes, (void)root, (void)what;
    return c ? no_mpi() : PISSA_OK;
}
pissa_status pissa__comm_compare_u64(pissa_comm *c, const uint64_t *x, int n, int *other) {
    (void)x;
    for (int i = 0; i < n; i++) other[i] = -1;
    return c ? no_mpi() : PISSA_OK;
}

#else

struct pissa_comm {
    MPI_Comm comm; /* our duplicate of the caller's communicator */
    int rank, size;
};

static int owns_mpi; /* pissa_mpi_init initialised MPI */

/* PISSA_ERR_IO with MPI's own words for RC. */
static pissa_status mpi_fail(int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = '\0';
    return pissa__fail(PISSA_ERR_IO, "MPI: %s failed: %s", what, len ? msg : "unknown error");
}
#define MPI_TRY(call, what)                       \
    do {                                          \
        int rc_ = (call);                         \
        if (rc_ != MPI_SUCCESS) return mpi_fail(rc_, what); \
    } while (0)

static int mpi_live(void) {
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    return init && !fin;
}

int pissa_mpi_available(void) { return 1; }

pissa_status pissa_mpi_init(void) {
    int fin = 0;
    MPI_Finalized(&fin);
    if (fin) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_mpi_init: MPI was already finalised in this process");
    if (mpi_live()) return PISSA_OK;
    int provided;
    MPI_TRY(MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
    owns_mpi = 1;
    return PISSA_OK;
}

pissa_status pissa_mpi_finalize(void) {
    if (!owns_mpi || !mpi_live()) return PISSA_OK;
    owns_mpi = 0;
    MPI_TRY(MPI_Finalize(), "MPI_Finalize");
    return PISSA_OK;
}

pissa_status pissa_comm_create(const void *mpi_comm, pissa_comm **out) {
    if (!out) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_comm_create: NULL argument");
    *out = NULL;
    if (!mpi_live())
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_comm_create: MPI is not initialised (call MPI_Init_thread, "
                           "or pissa_mpi_init)");
    int level = MPI_THREAD_SINGLE, is_main = 0;
    MPI_TRY(MPI_Query_thread(&level), "MPI_Query_thread");
    MPI_TRY(MPI_Is_thread_main(&is_main), "MPI_Is_thread_main");
    if (level < MPI_THREAD_FUNNELED || (level == MPI_THREAD_FUNNELED && !is_main))
        return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa_comm_create: MPI was initialised with thread level %d; "
                           "libpissa needs MPI_THREAD_FUNNELED from the main thread or MPI_THREAD_SERIALIZED",
                           level);
    MPI_Comm base = mpi_comm ? *(const MPI_Comm *)mpi_comm : MPI_COMM_WORLD;
    pissa_comm *c = pissa__calloc(1, sizeof *c);
    if (!c) return pissa__fail(PISSA_ERR_NOMEM, "pissa_comm_create: out of memory");
    int rc = MPI_Comm_dup(base, &c->comm);
    if (rc != MPI_SUCCESS) {
        free(c);
        return mpi_fail(rc, "MPI_Comm_dup");
    }
    if ((rc = MPI_Comm_set_errhandler(c->comm, MPI_ERRORS_RETURN)) != MPI_SUCCESS ||
        (rc = MPI_Comm_rank(c->comm, &c->rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(c->comm, &c->size)) != MPI_SUCCESS) {
        MPI_Comm_free(&c->comm);
        free(c);
        return mpi_fail(rc, "MPI_Comm_set_errhandler/rank/size");
    }
    *out = c;
    return PISSA_OK;
}

void pissa_comm_free(pissa_comm *c) {
    if (!c) return;
    if (mpi_live()) MPI_Comm_free(&c->comm);
    free(c);
}

int pissa_comm_rank(const pissa_comm *c) { return c ? c->rank : 0; }
int pissa_comm_size(const pissa_comm *c) { return c ? c->size : 1; }

pissa_status pissa_comm_agree(pissa_comm *c, pissa_status local, const char *message) {
    if (!c) {
        if (local != PISSA_OK && message) return pissa__fail(local, "%s", message);
        return local;
    }
    /* the lowest failing rank, then its status and message from it to everyone */
    int mine = local != PISSA_OK ? c->rank : c->size, first = c->size;
    MPI_TRY(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, c->comm), "MPI_Allreduce (agreement)");
    if (first == c->size) return PISSA_OK;
    struct {
        int status;
        char text[1024];
    } m = {.status = (int)local};
    if (first == c->rank) snprintf(m.text, sizeof m.text, "%s", message ? message : pissa_last_error());
    MPI_TRY(MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, first, c->comm), "MPI_Bcast (agreement)");
    m.text[sizeof m.text - 1] = '\0';
    return pissa__fail((pissa_status)m.status, "rank %d of %d: %s", first, c->size, m.text);
}

/* Pieces of at most 2^28 elements keep every count within an int. */
#define PIECE ((size_t)1 << 28)

pissa_status pissa__comm_sum_f32(pissa_comm *c, float *x, size_t n, const char *what) {
    if (!c || c->size == 1) return PISSA_OK;
    for (size_t off = 0; off < n; off += PIECE) {
        size_t len = n - off < PIECE ? n - off : PIECE;
        MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, x + off, (int)len, MPI_FLOAT, MPI_SUM, c->comm), what);
    }
    return PISSA_OK;
}

pissa_status pissa__comm_gather_f64(pissa_comm *c, const double *x, size_t n, double *all, const char *what) {
    if (!c || c->size == 1) {
        memcpy(all, x, sizeof *x * n);
        return PISSA_OK;
    }
    if (n > INT_MAX) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: %zu values to gather", what, n);
    MPI_TRY(MPI_Allgather(x, (int)n, MPI_DOUBLE, all, (int)n, MPI_DOUBLE, c->comm), what);
    return PISSA_OK;
}

pissa_status pissa__comm_sum_f64(pissa_comm *c, double *x, size_t n, const char *what) {
    if (!c || c->size == 1 || !n) return PISSA_OK;
    if (n > INT_MAX / (size_t)c->size) return pissa__fail(PISSA_ERR_INVALID_ARG, "%s: %zu values to sum", what, n);
    double *all = pissa__alloc(n * (size_t)c->size, sizeof *all);
    if (!all) return pissa__fail(PISSA_ERR_NOMEM, "%s: out of memory", what);
    pissa_status st = pissa__comm_gather_f64(c, x, n, all, what);
    for (size_t i = 0; st == PISSA_OK && i < n; i++) {
        double s = 0;
        for (int r = 0; r < c->size; r++) s += all[(size_t)r * n + i];
        x[i] = s;
    }
    free(all);
    return st;
}

pissa_status pissa__comm_bcast(pissa_comm *c, void *buf, size_t bytes, int root, const char *what) {
    if (!c || c->size == 1) return PISSA_OK;
    for (size_t off = 0; off < bytes; off += PIECE) {
        size_t len = bytes - off < PIECE ? bytes - off : PIECE;
        MPI_TRY(MPI_Bcast((char *)buf + off, (int)len, MPI_BYTE, root, c->comm), what);
    }
    return PISSA_OK;
}

pissa_status pissa__comm_compare_u64(pissa_comm *c, const uint64_t *x, int n, int *other) {
    if (n < 1 || n > 8) return pissa__fail(PISSA_ERR_INVALID_ARG, "pissa__comm_compare_u64: %d values", n);
    for (int i = 0; i < n; i++) other[i] = -1;
    if (!c || c->size == 1) return PISSA_OK;
    uint64_t *all = pissa__alloc((size_t)c->size * (size_t)n, sizeof *all);
    if (!all) return pissa__fail(PISSA_ERR_NOMEM, "comparing fingerprints: out of memory");
    int rc = MPI_Allgather(x, n, MPI_UINT64_T, all, n, MPI_UINT64_T, c->comm);
    for (int i = 0; rc == MPI_SUCCESS && i < n; i++)
        for (int r = 1; r < c->size && other[i] < 0; r++)
            if (all[(size_t)r * (size_t)n + (size_t)i] != all[i]) other[i] = r;
    free(all);
    return rc == MPI_SUCCESS ? PISSA_OK : mpi_fail(rc, "MPI_Allgather (fingerprints)");
}

#endif
