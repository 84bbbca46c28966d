"""Data-parallel training over MPI (pissa_comm, include/pissa/comm.h; docs/distributed.md).

Run the same script under a launcher, each process with the same model and data:

    mpirun -np 4 python3 train.py

    comm = pissa.Comm.world()           # MPI_COMM_WORLD; initialises MPI unless mpi4py (or another) already has
    t = pissa.Trainer(model, data, 100, comm=comm)
    t.train()                           # every process; each computes a slice of every micro-batch
    if comm.rank == 0:
        t.save("out")                   # one process writes; comm.agree() tells the others whether it worked

Without MPI in the library (pissa.mpi_available() is False) Comm raises UnsupportedError. With mpi4py, an existing
communicator works too: pissa.Comm.from_mpi4py(MPI.COMM_WORLD).

Ending: libpissa finalises MPI at exit if it initialised it. An uncaught exception on one process must end the
whole job rather than leave the others waiting in the next collective call: after Comm.world(), such an exception
prints its traceback and ends the process without MPI_Finalize, which makes mpirun stop every process.
"""
import atexit
import os
import sys
from ctypes import byref, c_void_p

from . import _core
from ._lib import check, lib

_hooked = False


def mpi_available():
    """True when the loaded libpissa was built with MPI."""
    return bool(lib.pissa_mpi_available())


def _exit_hook():
    """Installed once by Comm.world(): finalise MPI at a normal exit; after an uncaught exception, leave without it."""
    global _hooked
    if _hooked:
        return
    _hooked = True
    previous = sys.excepthook

    def excepthook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1)  # no MPI_Finalize: the launcher sees this process die and stops the job

    sys.excepthook = excepthook
    atexit.register(lib.pissa_mpi_finalize)


class Comm(_core.Handle):
    """A group of processes training one model together (pissa_comm). Pass it to Trainer(..., comm=comm)."""

    _kind = "Comm"

    def __init__(self, _mpi_comm_ptr=None):
        h = c_void_p()
        check(lib.pissa_comm_create(_mpi_comm_ptr, byref(h)))
        self._init_handle(h.value, lib.pissa_comm_free)

    @classmethod
    def world(cls):
        """Every process of the job (MPI_COMM_WORLD). Initialises MPI if nothing has (libpissa then finalises it at
        exit). Collective: every process calls it."""
        check(lib.pissa_mpi_init())  # UnsupportedError when libpissa has no MPI
        _exit_hook()
        return cls()

    @classmethod
    def from_mpi4py(cls, comm):
        """The processes of an mpi4py communicator (MPI initialised and finalised by mpi4py). Collective."""
        from mpi4py import MPI
        return cls(MPI._addressof(comm))  # the address of its MPI_Comm, what pissa_comm_create takes

    @property
    def rank(self):
        return lib.pissa_comm_rank(self._h)

    @property
    def size(self):
        return lib.pissa_comm_size(self._h)

    def agree(self, error=None):
        """Collective: returns if no process passed an error; otherwise raises, on every process, the first failing
        process's error (its message prefixed "rank R of N: "). ERROR: an exception of this process, or None."""
        if error is None:
            check(lib.pissa_comm_agree(self._h, 0, None))
            return
        status = getattr(error, "status", 1)  # a pissa.Error keeps its status; anything else: INVALID_ARG
        msg = f"{type(error).__name__}: {error}".encode("utf-8", "replace")
        check(lib.pissa_comm_agree(self._h, status, msg))

