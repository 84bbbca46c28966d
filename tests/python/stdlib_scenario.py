"""Run by test_stdlib.py in a subprocess where numpy cannot be imported: the binding's standard-library path.

Prints one JSON object of results that the parent test compares with the numpy path. Argument: the shared data
directory (model parts are skipped when it is absent)."""
import array
import json
import os
import sys

sys.modules["numpy"] = None  # makes `import numpy` raise ImportError
import pissa  # noqa: E402

assert not pissa.numpy_available()
out = {}
W = [[4.0, 1.0, 0.5], [1.0, 3.0, 0.25], [0.5, 0.25, 2.0], [1.0, 1.0, 1.0]]
U, S, Vt = pissa.svd_exact(W, 2)
assert isinstance(S, pissa.Array) and S.shape == (2,) and U.shape == (4, 2) and Vt.shape == (2, 3)
out["S"] = S.tolist()
flat = array.array("f", [x for row in W for x in row])
out["S_memoryview"] = pissa.svd_exact(memoryview(flat).cast("B").cast("f", (4, 3)), 2)[1].tolist()
out["S_bytes"] = pissa.singular_values(memoryview(flat.tobytes()).cast("f", (4, 3))).tolist()[:2]  # read-only
A, B, R = pissa.adapter_init(W, "pissa", 2, 4)
s = 2.0
out["rebuild_err"] = max(abs(R[i, j] + s * sum(B[i, k] * A[k, j] for k in range(2)) - W[i][j])
                         for i in range(4) for j in range(3))
errors = []
for bad, exc in ((array.array("d", [1.0] * 12), TypeError), ([[1.0, 2.0], [3.0]], ValueError),
                 ([["a", "b"]], TypeError)):
    try:
        pissa.svd_exact(bad, 1)
    except exc as e:
        errors.append(type(e).__name__)
out["errors"] = errors

data = sys.argv[1]
stories = os.path.join(data, "stories260K", "stories260K.bin")
if os.path.exists(stories):
    tok = pissa.Tokenizer(os.path.join(data, "stories260K", "tok512.bin"))
    ids = tok.encode("Once upon a time, there was a big tree.")
    with pissa.Model.load(stories) as m:
        out["loss"] = m.loss([ids])
        logits = m.logits([ids])
        out["logits_shape"] = list(logits.shape)
        out["logit_0_5_7"] = logits[0, 5, 7]
        m.add_adapters("lora", 2, targets="q_proj", seed=1)
        v = m.adapter(0)
        assert isinstance(v.A, pissa.Array) and v.A.shape == (2, 64)
        out["A_row0"] = v.A.tolist()[0][:4]
        v.B[3, 1] = 0.5  # writes through to the model
        out["loss_after_write"] = m.loss(array.array("i", ids))
        rows = pissa.Dataset.from_rows([ids], 512)
        t = pissa.Trainer(m, rows, 2, lr=1e-3, batch=1)
        out["train_losses"] = [i.loss for i in t.train()]
    with pissa.Generator(stories, tok) as g:
        out["text"] = g.generate("Once upon a time", 30, temperature=0.0)
print(json.dumps(out))
