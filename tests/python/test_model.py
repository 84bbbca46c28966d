"""The model, trainer, generator and PEFT conversion on stories260K, against the C programs and numpy."""
import gc
import json
import logging
import subprocess

import numpy as np
import pytest
from conftest import STORIES, TOK512, needs_stories, program

import pissa

pytestmark = needs_stories

SEQ = 64


@pytest.fixture(scope="module")
def tok():
    return pissa.Tokenizer(TOK512, 512)


def _stack(ds):
    """Every row of a text dataset (all SEQ tokens long) as (N, SEQ) int32 ids and labels."""
    rows = [ds[i] for i in range(len(ds))]
    return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


def dataset_loss(model, ds, batch=4):
    """Token-weighted mean loss over a data set, batch by batch through Model.loss."""
    ids, labels = _stack(ds)
    total = count = 0
    for i in range(0, len(ids), batch):
        loss, n = model.loss(ids[i:i + batch], labels[i:i + batch], return_count=True)
        total, count = total + loss * n, count + n
    return total / count


def _json_run(args):
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_config_is_the_published_stories260K_shape():
    with pissa.Model.load(STORIES) as m:
        c = m.config
        assert (c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads,
                c.num_key_value_heads, c.vocab_size, c.tie_word_embeddings) == (64, 172, 5, 8, 4, 512, 1)
    assert m.closed
    with pytest.raises(ValueError, match="closed"):
        m.loss([[1, 2, 3]])


def test_loss_agrees_with_pissa_eval_json(tok, shakespeare_small):
    train, _ = shakespeare_small
    ref = _json_run([program("pissa-eval"), "--model", STORIES, "--data", train, "--tokenizer", TOK512, "--seq",
                     str(SEQ), "--batch", "4", "--json", "-q"])
    with pissa.Model.load(STORIES) as m, pissa.Dataset.load_text(train, tok, SEQ) as ds:
        assert dataset_loss(m, ds) == pytest.approx(ref["loss"], rel=1e-6)
        assert sum(m.loss(*[x[None] for x in ds[i]], return_count=True)[1] for i in range(len(ds))) == ref["tokens"]


def test_loss_is_the_numpy_cross_entropy_of_the_logits(tok):
    ids = np.array([tok.encode("Once upon a time, there was a cat. The cat liked to nap.")], dtype=np.int32)
    with pissa.Model.load(STORIES) as m:
        logits = m.logits(ids).astype(np.float64)
        assert logits.shape == (1, ids.shape[1], 512)
        logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
            - logits.max(-1, keepdims=True)
        want = -np.mean([logp[0, t, ids[0, t + 1]] for t in range(ids.shape[1] - 1)])
        assert m.loss(ids) == pytest.approx(want, rel=1e-5)
        labels = ids.copy()
        labels[0, 1:5] = pissa.IGNORE_INDEX  # targets of positions 0..3 ignored
        want2 = -np.mean([logp[0, t, ids[0, t + 1]] for t in range(4, ids.shape[1] - 1)])
        assert m.loss(ids, labels) == pytest.approx(want2, rel=1e-5)


def test_generation_equals_pissa_generate(tok):
    args = dict(prompt="Once upon a time", steps=60, temperature=0.8, topp=0.9, seed=42)
    ref = subprocess.run([program("pissa-generate"), "--model", STORIES, "--tokenizer", TOK512, "--prompt",
                          args["prompt"], "--steps", "60", "--temperature", "0.8", "--top-p", "0.9", "--seed", "42"],
                         check=True, capture_output=True, text=True).stdout
    with pissa.Generator(STORIES, tok) as g:
        seen = []
        text = g.generate(**args, callback=lambda t, b: seen.append(t))
        assert text + "\n" == ref
        assert len(seen) > 10 and g.positions <= 60


@pytest.mark.parametrize("base", ["bf16", "nf4", "int8"])
def test_base_dtype_matches_pissa_eval_and_generate(tok, shakespeare_small, base):
    """Model(base_dtype=...) and Generator(base_dtype=...) are the C programs' --base-dtype."""
    train, _ = shakespeare_small
    ref = _json_run([program("pissa-eval"), "--model", STORIES, "--data", train, "--tokenizer", TOK512, "--seq",
                     str(SEQ), "--batch", "4", "--base-dtype", base, "--json", "-q"])
    f32 = _json_run([program("pissa-eval"), "--model", STORIES, "--data", train, "--tokenizer", TOK512, "--seq",
                     str(SEQ), "--batch", "4", "--json", "-q"])
    with pissa.Model(STORIES, base_dtype=base) as m, pissa.Dataset.load_text(train, tok, SEQ) as ds:
        assert dataset_loss(m, ds) == pytest.approx(ref["loss"], rel=1e-6)
    assert ref["loss"] != f32["loss"]  # the format is used
    gen = subprocess.run([program("pissa-generate"), "--model", STORIES, "--tokenizer", TOK512, "--prompt", "Once",
                          "--steps", "40", "--temperature", "0", "--base-dtype", base],
                         check=True, capture_output=True, text=True).stdout
    with pissa.Generator(STORIES, tok, base_dtype=base) as g:
        assert g.generate(prompt="Once", steps=40, temperature=0) + "\n" == gen


def test_bad_base_dtype_raises_with_the_library_message():
    with pytest.raises(pissa.InvalidArgumentError, match="q4"):
        pissa.Model(STORIES, base_dtype="q4")


def test_generate_callback_stops_early_and_its_exception_is_reraised(tok):
    with pissa.Generator(STORIES, TOK512) as g:
        full = g.generate("Once", 40, temperature=0)
        short = g.generate("Once", 40, temperature=0, callback=lambda t, b: True)
        assert full.startswith(short) and len(short) < len(full)

        def boom(t, b):
            raise RuntimeError("stop here")
        with pytest.raises(RuntimeError, match="stop here"):
            g.generate("Once", 40, temperature=0, callback=boom)
        assert g.generate("Once", 40, temperature=0) == full  # still usable
        logits = g.forward(1, 0)
        assert logits.shape == (512,)


@pytest.fixture(scope="module")
def finetune_ref(tmp_path_factory, shakespeare_small):
    """pissa-finetune --json: 3 PiSSA updates on the small text, and its output folder."""
    train, held = shakespeare_small
    out = str(tmp_path_factory.mktemp("ft") / "out")
    ref = _json_run([program("pissa-finetune"), "--model", STORIES, "--data", train, "--tokenizer", TOK512, "--seq",
                     str(SEQ), "--out", out, "--method", "pissa", "--rank", "4", "--target", "q_proj,v_proj,o_proj",
                     "--steps", "3", "--batch", "4", "--lr", "1e-2", "--eval-data", held, "--json", "-q"])
    return ref, out


@pytest.fixture(scope="module")
def trained(tok, shakespeare_small):
    """The same run from Python: (model, initial adapter, step infos, held-out data)."""
    train, held = shakespeare_small
    m = pissa.Model.load(STORIES).add_adapters("pissa", 4, targets=["q_proj", "v_proj", "o_proj"])
    initial = m.to_peft()
    data = pissa.Dataset.load_text(train, tok, SEQ)
    trainer = pissa.Trainer(m, data, 3, lr=1e-2, schedule="linear", batch=4)
    infos = trainer.train(callback=lambda info: None)
    return m, initial, infos, pissa.Dataset.load_text(held, tok, SEQ), trainer


def test_training_from_python_equals_pissa_finetune(finetune_ref, trained):
    ref, out = finetune_ref
    m, _, infos, held, trainer = trained
    assert [i.step for i in infos] == [1, 2, 3]
    assert sum(i.tokens for i in infos) == ref["tokens"]
    assert infos[-1].loss == pytest.approx(ref["loss"], rel=1e-6)
    assert trainer.evaluate(held) == pytest.approx(ref["eval_loss"], rel=1e-6)
    # pissa-finetune's folder (residual model + adapter) is the model trained here.
    with pissa.Model.load(out).load_adapter(out) as m2:
        assert dataset_loss(m2, held) == pytest.approx(dataset_loss(m, held), rel=1e-5)


def test_pissa_to_lora_then_merge_reproduces_the_trained_model(trained, tmp_path):
    m, initial, _, held, trainer = trained
    want = dataset_loss(m, held)
    trainer.save_peft(tmp_path / "trained", m.peft_config(init_lora_weights="true"))
    initial.save(tmp_path / "init")
    lora = pissa.pissa_to_lora(tmp_path / "trained", pissa.PeftAdapter.load(tmp_path / "init"), base_model=STORIES)
    assert lora.config.r == 8 and lora.config.lora_alpha == 8.0 and len(lora) == len(initial)
    lora.save(tmp_path / "lora")
    pissa.export_hf(STORIES, tmp_path / "base")
    pissa.merge_checkpoint(tmp_path / "base", tmp_path / "lora", tmp_path / "merged")
    with pissa.Model.load(tmp_path / "merged") as merged:
        assert dataset_loss(merged, held) == pytest.approx(want, rel=1e-4)
    with pissa.Model.load(tmp_path / "base").load_adapter(tmp_path / "lora") as unmerged:
        assert dataset_loss(unmerged, held) == pytest.approx(want, rel=1e-4)
    pissa.export_hf(STORIES, tmp_path / "merged2", lora)
    with pissa.Model.load(tmp_path / "merged2") as merged2:
        assert dataset_loss(merged2, held) == pytest.approx(want, rel=1e-4)


def test_adapter_views_write_through_and_keep_the_model_alive(tok):
    ids = np.array([tok.encode("The little dog ran to the park.")], dtype=np.int32)
    base = pissa.Model.load(STORIES).loss(ids)
    m = pissa.Model.load(STORIES).add_adapters("lora", 2, 4, targets="all-linear", seed=1)
    assert m.adapter_count == 35 and m.loss(ids) == base  # B = 0: the base model
    v = m.adapter("model.layers.2.mlp.down_proj")
    assert (v.r, v.in_features, v.out_features, v.scale) == (2, 172, 64, 2.0)
    v.B[:] = 0.05
    changed = m.loss(ids)
    assert changed != base
    del m
    gc.collect()
    v.B[:] = 0  # the model is still alive through the view
    assert v.A.std() > 0 and not v.B.any()
    m2 = pissa.Model.load(STORIES).add_adapters("pissa", 2)
    w = m2.adapter(0)
    a = w.A.copy()
    m2.close()  # frees the model only when the last view goes
    assert m2.closed and np.array_equal(w.A, a)
    with pytest.raises(ValueError, match="closed"):
        m2.adapter(0)


def test_forward_backward_gradient_matches_a_finite_difference(tok):
    ids = np.array([tok.encode("Tom had a red ball. He threw it high.")], dtype=np.int32)
    with pissa.Model.load(STORIES).add_adapters("pissa", 2, targets="q_proj") as m:
        v = m.adapter(1)
        m.zero_grad()
        m.forward_backward(ids)
        g = float(v.dB[3, 1])
        assert g != 0 and v.dA.any()
        eps = 1e-2
        b0 = float(v.B[3, 1])
        v.B[3, 1] = b0 + eps
        lp = m.loss(ids)
        v.B[3, 1] = b0 - eps
        lm = m.loss(ids)
        v.B[3, 1] = b0
        assert (lp - lm) / (2 * eps) == pytest.approx(g, rel=2e-2, abs=1e-4)
        m.zero_grad()
        assert not v.dB.any()


def test_grad_checkpoint_gives_the_same_gradients_in_a_smaller_arena(tok):
    ids = np.array([tok.encode("Lily saw a big cat. The cat was soft and warm. She smiled.")] * 2, dtype=np.int32)
    runs = []
    for on in (False, True):
        m = pissa.Model.load(STORIES).add_adapters("pissa", 2, targets="all-linear", dropout=0.2)
        m.grad_checkpoint = on
        assert m.grad_checkpoint is on
        m.set_training(True, seed=5)
        m.zero_grad()
        loss = m.forward_backward(ids)
        runs.append((loss, [g.copy() for _, _, g in m.parameters()], m.arena_bytes))
        m.close()
    (l0, g0, b0), (l1, g1, b1) = runs
    assert l0 == l1 and all(np.array_equal(a, b) for a, b in zip(g0, g1))
    assert b1 < b0


def test_resume_from_saved_state_continues_exactly(tok, shakespeare_small, tmp_path):
    train, _ = shakespeare_small

    def run(steps, state_in=None, state_out=None):
        m = pissa.Model.load(STORIES).add_adapters("pissa_niter_2", 2, dropout=0.1, seed=3)
        t = pissa.Trainer(m, pissa.Dataset.load_text(train, tok, SEQ), 4, lr=5e-3, batch=2, seed=7)
        if state_in:
            t.load_state(state_in)
        out = [i.loss for i in t.train(steps)]
        if state_out:
            t.save_state(state_out)
        return out

    full = run(4)
    first = run(2, state_out=tmp_path / "state")
    assert run(2, state_in=tmp_path / "state") == full[2:] and first == full[:2]


def test_early_stop_from_the_train_callback(tok, shakespeare_small):
    m = pissa.Model.load(STORIES).add_adapters("lora", 2)
    t = pissa.Trainer(m, pissa.Dataset.load_text(shakespeare_small[0], tok, SEQ), 10, lr=1e-3, batch=2)
    seen = []
    infos = t.train(callback=lambda i: seen.append(i) or i.step == 3)
    assert len(infos) == 3 and seen == infos and t.steps == 3
    assert all(i.lr == pytest.approx(1e-3) and i.tokens == 2 * (SEQ - 1) and i.grad_norm > 0 for i in infos)
    del m  # the trainer holds the model
    gc.collect()
    assert t.step().step == 4


def test_non_finite_weights_raise_a_numeric_error_not_a_nan(tok, tmp_path):
    """A checkpoint with one NaN (or Inf) weight: evaluation, a training step and generation raise
    pissa.NumericError with the library's message; Model.loss, a plain computation, returns the NaN it computes."""
    ids = [tok.encode("Once upon a time there was a dog.")]
    for bad in (float("nan"), float("inf")):
        with pissa.Model.load(STORIES) as m:
            m.set_full_finetune()
            weights = {name: data for name, data, _ in m.parameters()}
            weights["model.layers.2.mlp.down_proj.weight"][3, 5] = bad
            m.save(tmp_path / "bad")
        with pissa.Model.load(tmp_path / "bad") as m, pissa.Dataset.from_rows(ids, 512) as ds:
            assert np.isnan(m.loss(ids))
            m.add_adapters("lora", 2)
            t = pissa.Trainer(m, ds, 2, lr=1e-3, batch=1)
            with pytest.raises(pissa.NumericError, match="non-finite"):
                t.evaluate(ds)
            with pytest.raises(pissa.NumericError, match="loss of micro-batch 1 is (nan|inf)"):
                t.step()
            assert t.steps == 0
        with pissa.Generator(tmp_path / "bad", tok) as g:
            for temperature in (0.0, 0.8):
                with pytest.raises(pissa.NumericError, match="not finite"):
                    g.generate("Once", steps=8, temperature=temperature)


def test_datasets_from_python_rows_and_jsonl(tmp_path):
    rows = [[1, 5, 6, 7], ([1, 9, 10], [-100, 9, 10]), {"input_ids": np.array([1, 2], dtype=np.int32)}]
    with pissa.Dataset.from_rows(rows, 512) as ds:
        assert len(ds) == 3 and ds.total_tokens == 9 and ds.max_len == 4
        assert ds[1][0].tolist() == [1, 9, 10] and ds[1][1].tolist() == [-100, 9, 10]
        assert ds[0][1].tolist() == [1, 5, 6, 7]
    with pytest.raises(pissa.FormatError, match="512"):
        pissa.Dataset.from_rows([[1, 512]], 512)
    with pytest.raises(TypeError):
        pissa.Dataset.from_rows([[1, 2.5]], 512)
    with pytest.raises(ValueError, match="1 labels for 2 input_ids"):
        pissa.Dataset.from_rows([([1, 2], [1])], 512)
    with pytest.raises(pissa.FormatError, match="row 1: input_ids is empty"):
        pissa.Dataset.from_rows([[1], []], 512)
    with pissa.Dataset.from_rows([], 512) as ds:
        assert len(ds) == 0


def test_tokenizer_round_trip_and_pieces(tok):
    text = "First Citizen:\nBefore we proceed any further, hear me speak. Caf\u00e9 \u2713"
    ids = tok.encode(text)
    assert ids[0] == 1 and tok.decode(ids) == text
    assert tok.encode(text, bos=False) == ids[1:] and tok.encode(text, eos=True)[-1] == 2
    assert tok.piece(1) == b"\n<s>\n" and tok.vocab_size == 512
    with pytest.raises(IndexError):
        tok.piece(512)


def test_bad_inputs_raise_before_c_or_with_the_library_message(tok, caplog):
    with pytest.raises(pissa.Error, match="/no/such/model.bin"):
        pissa.Model.load("/no/such/model.bin")
    with pytest.raises(pissa.NotFoundError, match="/no/such/tok.bin"):
        pissa.Tokenizer("/no/such/tok.bin")
    with pissa.Model.load(STORIES) as m:
        with pytest.raises(TypeError, match="int32"):
            m.loss(np.array([[1, 2, 3]], dtype=np.int64))
        with pytest.raises(ValueError, match="C-contiguous"):
            m.loss(np.zeros((4, 6), dtype=np.int32)[:, ::2])
        with pytest.raises(ValueError, match="differs"):
            m.loss([[1, 2, 3]], [[1, 2]])
        with pytest.raises(ValueError):
            m.loss(np.zeros((1, 2, 3), dtype=np.int32))
        with caplog.at_level(logging.DEBUG, logger="pissa"):
            with pytest.raises(pissa.InvalidArgumentError, match="512") as e:
                m.loss([[1, 2, 600]])  # the library's own range check
        assert any(e.value.message in r.getMessage() for r in caplog.records)  # routed to logging
        with pytest.raises(pissa.Error):
            m.load_adapter("/no/such/adapter")
