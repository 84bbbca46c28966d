"""examples/finetune_stories.py runs on the standard-library path and its saved folder is what it trained."""
import os
import re
import subprocess
import sys

from conftest import DATA, REPO, SHAKESPEARE, TOK512, needs_stories, program

import pytest

import pissa


@needs_stories
def test_example_script_lowers_the_held_out_loss_and_saves_a_usable_adapter(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PISSA_LIBRARY=pissa.library_path)
    p = subprocess.run([sys.executable, os.path.join(REPO, "examples", "finetune_stories.py"), DATA, "--out",
                        str(out), "--steps", "4", "--no-numpy"], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "numpy: False" in p.stdout and "step   1  loss" in p.stdout
    before = float(re.search(r"held-out loss before: ([\d.]+)", p.stdout).group(1))
    after = float(re.search(r"held-out loss after: +([\d.]+)", p.stdout).group(1))
    assert after < before
    held = tmp_path / "held.txt"
    with open(SHAKESPEARE, "rb") as f:
        held.write_bytes(f.read()[-20000:])
    ev = subprocess.run([program("pissa-eval"), "--model", str(out), "--adapter", str(out), "--tokenizer", TOK512,
                         "--data", str(held), "--seq", "256", "--json", "-q"], capture_output=True, text=True,
                        check=True)
    loss = float(re.search(r'"loss": ([\d.]+)', ev.stdout).group(1))
    assert loss == pytest.approx(after, abs=6e-5)  # the script prints 4 decimals
