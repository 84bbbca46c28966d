"""Data-parallel training from Python under mpirun (mpi_scenario.py): libpissa initialising MPI itself, and mpi4py
owning it."""
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

import pissa

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(REPO, "tests", "reference", "llama_tied")


def _mpirun():
    if not pissa.mpi_available():
        pytest.skip("libpissa was built without MPI (Debian: openmpi-bin libopenmpi-dev)")
    exe = shutil.which("mpirun")
    if not exe:
        pytest.skip("mpirun (Debian: openmpi-bin) is missing")
    return [exe, "--allow-run-as-root", "--oversubscribe"]


@pytest.mark.parametrize("np_", [2, 3])
@pytest.mark.parametrize("mode", ["world", "mpi4py"])
def test_trainer_over_mpi_matches_one_process(tmp_path, mode, np_):
    cmd = _mpirun()
    if mode == "mpi4py":
        try:
            import mpi4py  # noqa: F401
        except ImportError:
            pytest.skip("mpi4py (Debian: python3-mpi4py) is missing")
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"), OPENBLAS_NUM_THREADS="1")
    env.setdefault("PISSA_LIBRARY", pissa.library_path)
    p = subprocess.run(cmd + ["-np", str(np_), sys.executable, os.path.join(HERE, "mpi_scenario.py"), MODEL,
                              str(tmp_path / "out"), mode], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    # every process's "ok RANK SIZE" (mpirun may interleave the processes' lines)
    assert sorted(re.findall(r"ok (\d+) (\d+) ", p.stdout)) == [(str(r), str(np_)) for r in range(np_)], p.stdout


def test_an_uncaught_exception_on_one_process_ends_the_job(tmp_path):
    cmd = _mpirun()
    script = tmp_path / "fail.py"
    script.write_text("import pissa\nc = pissa.Comm.world()\nif c.rank == 1:\n    raise RuntimeError('only rank 1')\n"
                      "c.agree()\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"))
    env.setdefault("PISSA_LIBRARY", pissa.library_path)
    p = subprocess.run(cmd + ["-np", "2", sys.executable, str(script)], env=env, capture_output=True, text=True,
                       timeout=60)  # a hang would raise TimeoutExpired
    assert p.returncode != 0
    assert "RuntimeError: only rank 1" in p.stderr
