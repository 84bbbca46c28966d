"""`pip install ./python` works offline (in-tree PEP 517 backend), and library discovery and version checks."""
import os
import subprocess
import sys
import zipfile

import pytest
from conftest import REPO

import pissa
from pissa import _lib


def _run(code, env_extra, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PISSA_LIBRARY")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True)


def test_pip_installs_the_package_without_network(tmp_path):
    pytest.importorskip("pip", reason="pip is not installed for this Python (Debian: python3-pip)")
    target = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-cache-dir", "--quiet",
                        "--disable-pip-version-check", "--target", str(target), os.path.join(REPO, "python")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (target / "pissa" / "__init__.py").exists()
    assert (target / f"pissa-{pissa.__version__}.dist-info" / "RECORD").exists()
    r = _run("import pissa; print(pissa.__file__); print(pissa.library_path); print(pissa.svd_exact([[3.0, 0.0], "
             "[0.0, 4.0]], 1)[1].tolist())", {"PYTHONPATH": str(target), "PISSA_LIBRARY": pissa.library_path},
             str(tmp_path))
    assert r.returncode == 0, r.stderr
    file, lib, s = r.stdout.split("\n")[:3]
    assert file.startswith(str(target)) and lib == pissa.library_path and s == "[4.0]"


def test_wheel_has_a_valid_record(tmp_path):
    sys.path.insert(0, os.path.join(REPO, "python"))
    try:
        import pissa_build
    finally:
        sys.path.pop(0)
    name = pissa_build.build_wheel(str(tmp_path))
    with zipfile.ZipFile(tmp_path / name) as z:
        names = set(z.namelist())
        record = z.read(f"pissa-{pissa.__version__}.dist-info/RECORD").decode().split()
    assert {line.split(",")[0] for line in record} == names
    assert "pissa/_lib.py" in names and name == f"pissa-{pissa.__version__}-py3-none-any.whl"


def test_pissa_library_pointing_nowhere_fails_with_the_path(tmp_path):
    r = _run("import pissa", {"PYTHONPATH": os.path.join(REPO, "python"), "PISSA_LIBRARY": "/no/such/libpissa.so"},
             str(tmp_path))
    assert r.returncode != 0 and "ImportError" in r.stderr and "/no/such/libpissa.so" in r.stderr


def test_source_tree_finds_a_library_without_pissa_library(tmp_path):
    r = _run("import pissa; print(pissa.library_path)", {"PYTHONPATH": os.path.join(REPO, "python")}, str(tmp_path))
    if r.returncode != 0 and "not found" in r.stderr:
        pytest.skip("no build tree or installed libpissa.so to discover")
    assert r.returncode == 0, r.stderr
    assert os.path.exists(r.stdout.strip())


def test_version_mismatch_names_the_library_and_both_versions():
    with pytest.raises(ImportError) as e:
        _lib._check_version("/x/libpissa.so", 10203)
    msg = str(e.value)
    assert "/x/libpissa.so" in msg and "1.2.3" in msg and pissa.__version__ in msg
    _lib._check_version("/x/libpissa.so", 207)  # another patch release of 0.2 is accepted
