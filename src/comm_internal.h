/* Internal: the collective operations data-parallel training is built from (comm.c). Each is collective over C and
 * returns at once for C = NULL (one process). An MPI error becomes PISSA_ERR_IO naming WHAT. Counts are size_t:
 * buffers past MPI's int counts go in pieces. */
#ifndef PISSA_COMM_INTERNAL_H
#define PISSA_COMM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pissa/comm.h"

/* X (N floats) := the sum of every process's X (MPI_Allreduce in place). MPI requires every process to receive the
 * same result (MPI-4.1 §6.9.6), so the processes' parameters, updated from it, stay the same; the trainer checks
 * that each update (the gradient norms must agree bit for bit). */
pissa_status pissa__comm_sum_f32(pissa_comm *c, float *x, size_t n, const char *what);
/* ALL (size · N doubles) := every process's X (N doubles), in rank order (MPI_Allgather). For small N. */
pissa_status pissa__comm_gather_f64(pissa_comm *c, const double *x, size_t n, double *all, const char *what);
/* X (N doubles) := the sum of every process's X, added in rank order on every process (gathered first): the same
 * bits everywhere. For small N (losses and counts). */
pissa_status pissa__comm_sum_f64(pissa_comm *c, double *x, size_t n, const char *what);
/* BYTES of BUF from process ROOT to every process. */
pissa_status pissa__comm_bcast(pissa_comm *c, void *buf, size_t bytes, int root, const char *what);
/* OTHER[i] := the lowest rank whose X[i] differs from rank 0's, or -1 if every process passed the same X[i] (the same
 * answer on every process). N <= 8. */
pissa_status pissa__comm_compare_u64(pissa_comm *c, const uint64_t *x, int n, int *other);

/* A 64-bit fingerprint of N bytes at P, continuing H (start with PISSA__FP_SEED): for checking that processes hold
 * the same data, not for security. */
#define PISSA__FP_SEED 0xcbf29ce484222325ULL
uint64_t pissa__fingerprint(uint64_t h, const void *p, size_t n);

#endif
