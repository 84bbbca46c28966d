"""The binding's data sets in TRL's formats and chat helpers: Dataset.load/pack against the rows the C tests check
(tests/reference/data, written by transformers.js and @huggingface/jinja), Tokenizer.apply_chat_template with
transformers' signature, Tokenizer.encode_row, Generator.chat, and the trainer on packed rows."""
import json
import os
import shutil

import pytest

import pissa
from conftest import REPO, program

REF = os.path.join(REPO, "tests", "reference")
GPT2 = os.path.join(REF, "tokenizers", "gpt2_style")
ROWS = os.path.join(REF, "data", "rows.jsonl")


def expected(suite):
    with open(os.path.join(REF, "data", "expected.json"), encoding="utf-8") as f:
        return {r["name"]: r for s in json.load(f)["suites"] if s["name"] == suite for r in s["rows"]}


def labels_of(r):
    labels = [-100] * len(r["input_ids"])
    for a, b in r["targets"]:
        labels[a:b] = r["input_ids"][a:b]
    return labels


def test_encode_row_gives_the_reference_rows():
    tok = pissa.Tokenizer(GPT2)
    want = expected("smollm2")
    with open(os.path.join(REF, "chat", "templates", "smollm2.jinja"), encoding="utf-8") as f:
        template = f.read()
    enc = pissa.RowEncoder(tok, chat_template=template)
    with open(ROWS, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    assert len(rows) == len(want)
    for row in rows:
        ids, labels = enc.encode(row)
        assert ids == want[row["name"]]["input_ids"], row["name"]
        assert labels == labels_of(want[row["name"]]), row["name"]
    # every token a target
    ids, labels = tok.encode_row(rows[0], assistant_only_loss=False, chat_template=template)
    assert labels == ids


def test_apply_chat_template_as_transformers():
    tok = pissa.Tokenizer(GPT2)  # its template: ChatML without a default system prompt
    msgs = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    assert tok.apply_chat_template(msgs, tokenize=False) == \
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
    prompt = tok.apply_chat_template(msgs[:1], add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tok.apply_chat_template(msgs)
    assert ids == tok.encode(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)
    assert ids[0] == 957  # <|im_start|>, written by the template, not added again
    d = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    assert d["input_ids"] == ids and d["attention_mask"] == [1] * len(ids)
    masked = [i for i, m in zip(ids, d["assistant_masks"]) if m]
    assert tok.decode(masked) == "Hello.<|im_end|>"
    # extra variables and an explicit template
    t = "{{ greeting }} {% for m in messages %}{{ m.content }}{% endfor %}"
    assert tok.apply_chat_template(msgs, chat_template=t, tokenize=False, greeting="Hey") == "Hey HiHello."
    with pytest.raises(ValueError):
        tok.apply_chat_template(msgs, return_assistant_tokens_mask=True)
    with pytest.raises(pissa.InvalidArgumentError):
        tok.apply_chat_template(msgs, chat_template="{{ raise_exception('no') }}")


def test_dataset_load_pack_and_train(tmp_path):
    tok = pissa.Tokenizer(GPT2)
    path = tmp_path / "chat.jsonl"
    with open(ROWS, encoding="utf-8") as f:
        path.write_text(f.read(), encoding="utf-8")
    d = pissa.Dataset.load(str(path), tok)
    assert len(d) == 14 and not d.packed
    ids, labels = d[2]
    assert list(ids) == tok.encode_row(json.loads(open(ROWS, encoding="utf-8").readlines()[2]))[0]
    cut = pissa.Dataset.load(str(path), tok, max_len=16)
    assert cut.max_len <= 16 and len(cut) <= len(d)
    p = d.pack(128)
    assert p.packed and len(p) < len(d) and p.max_len <= 128
    r = p.row(0)
    assert r["position_ids"][0] == 0 and len(r["position_ids"]) == len(r["input_ids"])
    assert sorted(r["position_ids"]).count(0) >= 1
    assert p.total_tokens == sum(min(len(d[i][0]), 128) for i in range(len(d)))


def test_generator_chat_replies_after_the_template(tmp_path):
    model = tmp_path / "model"
    rc = os.system(f"{program('pissa-synth')} --out {model} --dim 16 --hidden 32 --layers 1 --heads 2 --kv-heads 1 "
                   f"--vocab 962 --seq 64 >/dev/null 2>&1")
    assert rc == 0
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(GPT2, name), model / name)
    g = pissa.Generator(str(model))
    seen = []
    reply = g.chat("Say hi", system="Be brief", steps=40, temperature=0, callback=lambda t, b: seen.append(t))
    prompt = g.tokenizer.apply_chat_template([{"role": "system", "content": "Be brief"},
                                              {"role": "user", "content": "Say hi"}], add_generation_prompt=True)
    assert g.positions <= 40 and g.positions >= len(prompt)
    assert reply == g.tokenizer.decode(seen, skip_special_tokens=True)
    assert not any(t in g.tokenizer.stop_ids for t in seen)
