"""A minimal PEP 517 build backend for the pure-Python package `pissa`, with the standard library only.

pip runs it in an isolated environment with nothing installed (requires = []), so it cannot use setuptools: it
writes the wheel itself (PEP 427: the package files, then NAME-VERSION.dist-info/ METADATA, WHEEL, top_level.txt
and RECORD with sha256 digests). Editable installs are not offered: use PYTHONPATH=python instead.
"""
import base64
import hashlib
import os
import re
import tarfile
import zipfile

NAME = "pissa"
HERE = os.path.dirname(os.path.abspath(__file__))
SUMMARY = "Python binding of libpissa: PiSSA and LoRA fine-tuning of Llama checkpoints, PEFT-compatible"


def _version():
    with open(os.path.join(HERE, NAME, "_lib.py"), encoding="utf-8") as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


def _metadata():
    return (f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {_version()}\nSummary: {SUMMARY}\n"
            "License: MIT\nRequires-Python: >=3.8\nProvides-Extra: numpy\nRequires-Dist: numpy; extra == \"numpy\"\n")


def _files():
    """(archive name, path) of every module of the package, sorted so builds are reproducible."""
    out = []
    for root, dirs, files in os.walk(os.path.join(HERE, NAME)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                p = os.path.join(root, f)
                out.append((os.path.relpath(p, HERE).replace(os.sep, "/"), p))
    return out


def _digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    info = f"{NAME}-{_version()}.dist-info"
    os.makedirs(os.path.join(metadata_directory, info), exist_ok=True)
    with open(os.path.join(metadata_directory, info, "METADATA"), "w", encoding="utf-8") as f:
        f.write(_metadata())
    return info


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    version = _version()
    info = f"{NAME}-{version}.dist-info"
    wheel_name = f"{NAME}-{version}-py3-none-any.whl"
    record = []
    fixed_time = (2020, 1, 1, 0, 0, 0)  # reproducible archives

    with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w", zipfile.ZIP_DEFLATED) as z:
        def add(arcname, data):
            zi = zipfile.ZipInfo(arcname, fixed_time)
            zi.external_attr = 0o644 << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
            record.append(f"{arcname},{_digest(data)},{len(data)}")

        for arcname, path in _files():
            with open(path, "rb") as f:
                add(arcname, f.read())
        add(f"{info}/METADATA", _metadata().encode())
        add(f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: pissa_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        add(f"{info}/top_level.txt", f"{NAME}\n".encode())
        record.append(f"{info}/RECORD,,")
        zi = zipfile.ZipInfo(f"{info}/RECORD", fixed_time)
        zi.external_attr = 0o644 << 16
        z.writestr(zi, ("\n".join(record) + "\n").encode())
    return wheel_name


def build_sdist(sdist_directory, config_settings=None):
    version = _version()
    base = f"{NAME}-{version}"
    name = f"{base}.tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as t:
        for rel in ("pyproject.toml", "pissa_build.py"):
            t.add(os.path.join(HERE, rel), f"{base}/{rel}")
        for arcname, path in _files():
            t.add(path, f"{base}/{arcname}")
        pkg = f"{base}/PKG-INFO"
        data = _metadata().encode()
        ti = tarfile.TarInfo(pkg)
        ti.size = len(data)
        import io
        t.addfile(ti, io.BytesIO(data))
    return name
