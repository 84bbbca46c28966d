"""The standard-library path (numpy unimportable) gives the same numbers as the numpy path."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import DATA, REPO, STORIES, TOK512, needs_stories

import pissa

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def stdlib():
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"))
    env.setdefault("PISSA_LIBRARY", pissa.library_path)
    p = subprocess.run([sys.executable, os.path.join(HERE, "stdlib_scenario.py"), DATA], env=env,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


W = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.25], [0.5, 0.25, 2.0], [1.0, 1.0, 1.0]], dtype=np.float32)


def test_stdlib_svd_and_init_match_numpy(stdlib):
    s = np.linalg.svd(W.astype(np.float64), compute_uv=False)[:2]
    for key in ("S", "S_memoryview", "S_bytes"):
        np.testing.assert_allclose(stdlib[key], s, rtol=1e-5)
    assert stdlib["rebuild_err"] < 1e-5
    assert stdlib["errors"] == ["TypeError", "ValueError", "TypeError"]


@needs_stories
def test_stdlib_model_results_equal_the_numpy_path(stdlib):
    tok = pissa.Tokenizer(TOK512)
    ids = np.array([tok.encode("Once upon a time, there was a big tree.")], dtype=np.int32)
    with pissa.Model.load(STORIES) as m:
        assert stdlib["loss"] == m.loss(ids)
        logits = m.logits(ids)
        assert stdlib["logits_shape"] == list(logits.shape)
        assert stdlib["logit_0_5_7"] == float(logits[0, 5, 7])
        m.add_adapters("lora", 2, targets="q_proj", seed=1)
        v = m.adapter(0)
        assert stdlib["A_row0"] == v.A[0, :4].tolist()
        v.B[3, 1] = 0.5
        assert stdlib["loss_after_write"] == m.loss(ids)
        t = pissa.Trainer(m, pissa.Dataset.from_rows(ids, 512), 2, lr=1e-3, batch=1)
        assert stdlib["train_losses"] == [i.loss for i in t.train()]
    with pissa.Generator(STORIES, tok) as g:
        assert stdlib["text"] == g.generate("Once upon a time", 30, temperature=0.0)
