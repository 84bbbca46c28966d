"""Run by test_mpi.py under `mpirun -np N`: data-parallel training from Python, against a one-process trainer each
process runs itself on the same model and data. Arguments: MODEL (a small HF checkpoint), OUT (a folder process 0
writes), MODE: "world" (libpissa initialises MPI: pissa.Comm.world()) or "mpi4py" (mpi4py owns MPI). Prints
"ok RANK SIZE WORST" on success."""
import os
import sys

import pissa

model_path, out, mode = sys.argv[1:4]
if mode == "mpi4py":
    from mpi4py import MPI
    comm = pissa.Comm.from_mpi4py(MPI.COMM_WORLD)
else:
    comm = pissa.Comm.world()
rank, size = comm.rank, comm.size
assert size > 1, "run under mpirun -np N, N > 1"
pissa.set_num_threads(1)

# rows of 5..14 tokens, the first i % 3 labels ignored: the processes' slices hold different numbers of targets
rows = []
for i in range(17):
    ids = [1 + (i + 3 * t) % 39 for t in range(5 + (i * 7) % 10)]
    rows.append((ids, [-100 if t < i % 3 else x for t, x in enumerate(ids)]))


def trainer(c):
    m = pissa.Model.load(model_path)
    m.add_adapters("pissa", rank=4, alpha=8, targets="all-linear", dropout=0.1, seed=2)
    d = pissa.Dataset.from_rows(rows, m.vocab_size)
    return pissa.Trainer(m, d, 12, lr=5e-3, batch=5, accum=2, seed=4, comm=c)


dist, one = trainer(comm), trainer(None)
assert dist.evaluate() == one.evaluate()  # the same parameters and batches: the same bits
worst = 0.0
for k in range(12):
    a, b = dist.step(), one.step()
    assert a.tokens == b.tokens and a.lr == b.lr, (a, b)
    worst = max(worst, abs(a.loss - b.loss) / b.loss)
assert worst <= 1e-5, worst
assert abs(dist.evaluate() - one.evaluate()) <= 1e-5 * one.evaluate()

# one process's failure reaches every process, with its message
try:
    comm.agree(ValueError("bad input on the last rank") if rank == size - 1 else None)
    raise AssertionError("agree did not raise")
except pissa.Error as e:
    assert e.args[0] == f"rank {size - 1} of {size}: ValueError: bad input on the last rank", e.args

# process 0 writes; the others learn whether that worked
err = None
if rank == 0:
    try:
        dist.save(out)
    except pissa.Error as e:
        err = e
comm.agree(err)
if rank == 0:
    assert os.path.exists(os.path.join(out, "adapter_model.safetensors"))
print(f"ok {rank} {size} {worst:.2e}")
