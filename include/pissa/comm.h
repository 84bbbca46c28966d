/* libpissa — communicators for data-parallel training over MPI (docs/distributed.md).
 *
 * A pissa_comm is libpissa's handle on a group of processes (an MPI communicator). A trainer made with one
 * (pissa_trainer_create_comm, train.h) splits the rows of every micro-batch across the processes and sums their
 * gradients, so N processes train exactly what one process would. This header never needs mpi.h: a communicator
 * of the caller's is passed as a pointer to its MPI_Comm.
 *
 * Availability: libpissa is built with MPI when CMake finds it (option PISSA_MPI=AUTO|ON|OFF). Built without,
 * pissa_mpi_available() is 0 and every function here that needs MPI returns PISSA_ERR_UNSUPPORTED.
 *
 * Who initialises MPI: the caller, normally (MPI_Init_thread; a C program under mpirun owns MPI). libpissa calls
 * MPI_Init_thread only in pissa_mpi_init, for callers that cannot (a Python script under mpirun).
 *
 * Threads: libpissa makes MPI calls only from the thread that calls a collective function (the pissa_comm_*
 * functions below and the trainer functions marked collective), never from its kernel threads. So MPI must provide
 * MPI_THREAD_FUNNELED if that is the main thread, MPI_THREAD_SERIALIZED otherwise (pissa_mpi_init asks for
 * SERIALIZED); pissa_comm_create checks it. A pissa_comm is used by one thread at a time.
 *
 * Collective: a function marked collective must be called by every process of the communicator, in the same order
 * relative to the other collective calls on it. None of them hangs on a failure: each agrees on the outcome first
 * (pissa_comm_agree), so when any process fails, every process returns that process's status and message. */
#ifndef PISSA_COMM_H
#define PISSA_COMM_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pissa_comm pissa_comm;

/* 1 if this libpissa was built with MPI, else 0. */
PISSA_API int pissa_mpi_available(void);

/* Initialises MPI (MPI_Init_thread with MPI_THREAD_SERIALIZED, no arguments) if it is not initialised yet, and then
 * owns it: pissa_mpi_finalize ends it. A no-op when MPI is already initialised (by the caller, who then finalises
 * it). Run under a launcher (mpirun) to get more than one process; without one MPI starts a single process. */
PISSA_API pissa_status pissa_mpi_init(void);
/* Finalises MPI if pissa_mpi_init initialised it (free every pissa_comm first), else does nothing. Not collective
 * in libpissa's sense, but MPI_Finalize waits for the other processes' pending messages. */
PISSA_API pissa_status pissa_mpi_finalize(void);

/* A communicator over the processes of MPI_COMM (a pointer to the caller's MPI_Comm, e.g.
 * `MPI_Comm w = MPI_COMM_WORLD; pissa_comm_create(&w, &c)`), or over MPI_COMM_WORLD when MPI_COMM is NULL.
 * Collective over that communicator. libpissa duplicates it (MPI_Comm_dup), so its messages never meet the
 * caller's, and sets MPI_ERRORS_RETURN on the duplicate: an MPI error becomes PISSA_ERR_IO, not an abort. MPI must
 * be initialised (by the caller or pissa_mpi_init) with the thread level above, and stay initialised until
 * pissa_comm_free. Caller frees with pissa_comm_free. */
PISSA_API pissa_status pissa_comm_create(const void *mpi_comm, pissa_comm **out);
/* Collective (MPI_Comm_free). NULL is a no-op; after MPI_Finalize it only frees memory. */
PISSA_API void pissa_comm_free(pissa_comm *c);

/* This process's rank in [0, size) and the number of processes; 0 and 1 for NULL (one process, no MPI). */
PISSA_API int pissa_comm_rank(const pissa_comm *c);
PISSA_API int pissa_comm_size(const pissa_comm *c);

/* Agreement on an outcome. Collective. Each process passes its own LOCAL status and, when it failed, MESSAGE (NULL:
 * its pissa_last_error()). Returns PISSA_OK if every process passed PISSA_OK; otherwise, on every process, the
 * status of the lowest-ranked process that failed, with pissa_last_error() = "rank R of N: <its message>". The way
 * to end every process cleanly after work only some of them did (e.g. rank 0 writing files): the others pass
 * PISSA_OK at the same point. C = NULL (one process): returns LOCAL, with MESSAGE, if given, as the last error. */
PISSA_API pissa_status pissa_comm_agree(pissa_comm *c, pissa_status local, const char *message);

#ifdef __cplusplus
}
#endif
#endif
