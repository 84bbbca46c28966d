"""Shared fixtures of the Python binding's tests.

ctest sets PISSA_LIBRARY (this build's libpissa.so), PISSA_BIN_DIR (its programs), PISSA_STRUCT_LAYOUT and
PISSA_SHARED_DATA_DIR; run by hand, the package finds the library in the build tree and the data in ../shared/data.
"""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "python"))

import pissa  # noqa: E402

DATA = os.environ.get("PISSA_SHARED_DATA_DIR") or os.path.join(REPO, "..", "shared", "data")
STORIES = os.path.join(DATA, "stories260K", "stories260K.bin")
TOK512 = os.path.join(DATA, "stories260K", "tok512.bin")
SHAKESPEARE = os.path.join(DATA, "tinyshakespeare", "input.txt")
BIN_DIR = os.environ.get("PISSA_BIN_DIR") or os.path.dirname(pissa.library_path)


REQUIRE_ALL = os.environ.get("PISSA_REQUIRE_ALL", "0") not in ("", "0")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under PISSA_REQUIRE_ALL=1 (CI) a skipped test fails: a missing optional piece is never skipped silently."""
    outcome = yield
    rep = outcome.get_result()
    if REQUIRE_ALL and rep.skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"skipped under PISSA_REQUIRE_ALL=1: {reason}"


def _need(*paths):
    missing = [p for p in paths if not os.path.exists(p)]
    return pytest.mark.skipif(bool(missing), reason=f"shared data absent: {', '.join(missing)} "
                                                      "(see ../shared/data/README.md)")


needs_stories = _need(STORIES, TOK512, SHAKESPEARE)


def program(name):
    p = os.path.join(BIN_DIR, name)
    if not os.path.exists(p):
        pytest.skip(f"{p} not built")
    return p


@pytest.fixture(scope="session")
def shakespeare_small(tmp_path_factory):
    """The first 6000 bytes of tinyshakespeare (train) and the next 3000 (held out), as files."""
    with open(SHAKESPEARE, "rb") as f:
        text = f.read(9000)
    d = tmp_path_factory.mktemp("text")
    train, held = d / "train.txt", d / "held.txt"
    train.write_bytes(text[:6000])
    held.write_bytes(text[6000:])
    return str(train), str(held)
