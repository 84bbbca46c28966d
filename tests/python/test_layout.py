"""The ctypes mirrors of the public structs have the C compiler's size and field offsets."""
import ctypes
import glob
import json
import os
import subprocess

import pytest
from conftest import REPO

from pissa import _lib


def _layout_program():
    exe = os.environ.get("PISSA_STRUCT_LAYOUT")
    if exe:
        return exe
    found = sorted(glob.glob(os.path.join(REPO, "build*", "tests", "pissa_struct_layout")))
    if not found:
        pytest.skip("pissa_struct_layout not built (cmake --build build)")
    return found[0]


def test_every_mirrored_struct_has_the_c_size_and_offsets():
    layout = json.loads(subprocess.run([_layout_program()], check=True, capture_output=True).stdout)
    assert set(layout) == set(_lib.STRUCTS)
    for cname, cls in _lib.STRUCTS.items():
        c = layout[cname]
        assert ctypes.sizeof(cls) == c["size"], cname
        py = {_lib.FIELD_C_NAMES.get(f, f): getattr(cls, f).offset for f, _ in cls._fields_}
        assert py == c["fields"], cname


def test_every_declared_prototype_exists_in_the_library():
    for name in _lib._PROTOTYPES:
        f = getattr(_lib.lib, name)
        assert f.argtypes is not None, name
