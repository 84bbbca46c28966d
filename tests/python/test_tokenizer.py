"""pissa.Tokenizer on tokenizer.json files: the transformers-style API against the fixtures transformers.js wrote
(tests/reference/tokenizers), and the llama2.c kind through the same calls."""
import json
import os

import pytest

import pissa
from conftest import DATA, REPO, TOK512, program

REF = os.path.join(REPO, "tests", "reference", "tokenizers")
GPT2 = os.path.join(REF, "gpt2_style")
QWEN3 = os.path.join(DATA, "tokenizers", "qwen3")
LLAMA2 = os.path.join(DATA, "tokenizers", "llama2")


def fixture_cases(name, limit=None):
    with open(os.path.join(REF, "fixtures", name + ".json"), encoding="utf-8") as f:
        j = json.load(f)
    cases = [c for c in j["cases"] if "text" in c]
    return j, cases[:limit]


@pytest.mark.parametrize("form", ["folder", "file"])
def test_encode_decode_match_transformers_js(form):
    path = GPT2 if form == "folder" else os.path.join(GPT2, "tokenizer.json")
    tok = pissa.Tokenizer(path)
    j, cases = fixture_cases("gpt2_style")
    assert tok.kind == "hf" and len(tok) == 962
    for c in cases:
        text = c["text"]
        assert tok.encode(text, add_special_tokens=False) == c["ids"], text
        full = tok.encode(text)
        assert full == j["before"] + c["ids"] + j["after"], text
        assert tok(text)["input_ids"] == full
        skip = text if c["s"] == 1 else c["s"]
        assert tok.decode(full, skip_special_tokens=True) == skip, text
        d = c.get("d", j["d_before"] + skip + j["d_after"])
        assert tok.decode(full) == (text if d == 1 else d), text


def test_vocabulary_special_tokens_and_template():
    tok = pissa.Tokenizer(GPT2)
    assert tok.token_to_id("<|im_start|>") == 957 and tok.id_to_token(957) == "<|im_start|>"
    assert tok.convert_tokens_to_ids(["<|im_end|>", "nope"]) == [958, None]
    assert tok.id_to_token(100000) is None
    assert tok.bos_token == tok.eos_token == "<|endoftext|>" and tok.eos_token_id == 956
    assert tok.pad_token_id is None and tok.pad_token is None
    assert tok.is_special(956) and not tok.is_special(960)  # <tool_call> is added but not special
    assert 956 in tok.all_special_ids and 960 not in tok.all_special_ids
    assert tok.chat_template.startswith("{% for message in messages %}")
    assert tok.stop_ids == [956, 958]  # eos, then <|im_end|> (end of turn)
    # explicit BOS / EOS, without the template
    ids = tok.encode("hi", add_special_tokens=False)
    assert tok.encode("hi", bos=False, eos=True) == ids + [956]


def test_streaming_gives_the_decode_in_pieces():
    tok = pissa.Tokenizer(GPT2)
    text = "Emoji 👨‍👩‍👧 and 日本語, <|im_start|>done"
    ids = tok.encode(text)
    with tok.stream(skip_special_tokens=False) as s:
        parts = [s.put(i) for i in ids] + [s.finish()]
    assert "".join(parts) == tok.decode(ids)
    assert "" in parts  # the emoji's bytes came in several tokens; nothing was released until it was whole
    assert all("\ufffd" not in p for p in parts)


@pytest.mark.skipif(not os.path.exists(QWEN3), reason=f"shared data absent: {QWEN3}")
def test_real_tokenizer_qwen3():
    tok = pissa.Tokenizer(QWEN3)
    j, cases = fixture_cases("qwen3", 200)
    for c in cases:
        assert tok.encode(c["text"]) == c["ids"], c["text"]
    assert tok.eos_token == "<|im_end|>" and tok.bos_token is None and tok.bos_token_id is None
    assert "<|im_start|>" in tok.chat_template


@pytest.mark.skipif(not os.path.exists(LLAMA2), reason=f"shared data absent: {LLAMA2}")
def test_real_tokenizer_llama2_adds_bos():
    tok = pissa.Tokenizer(LLAMA2)
    ids = tok.encode("Hello world")
    assert ids[0] == tok.bos_token_id == 1
    assert tok.decode(ids) == "<s> Hello world" and tok.decode(ids, skip_special_tokens=True) == "Hello world"


@pytest.mark.skipif(not os.path.exists(TOK512), reason=f"shared data absent: {TOK512}")
def test_llama2c_tokenizer_through_the_same_calls():
    tok = pissa.Tokenizer(TOK512)
    assert tok.kind == "llama2c"
    ids = tok.encode("Once upon a time")
    assert ids[0] == tok.bos_token_id == 1 and tok.eos_token_id == 2 and tok.pad_token_id is None
    assert tok.encode("Once upon a time", add_special_tokens=False) == ids[1:]
    assert tok.decode(ids) == "Once upon a time" and tok.chat_template is None and tok.bos_token is None
    assert tok.stop_ids == [1]


def test_bad_input_raises_with_the_library_message(tmp_path):
    tok = pissa.Tokenizer(GPT2)
    with pytest.raises(pissa.InvalidArgumentError, match="not valid UTF-8"):
        tok.encode(b"ab\xff")
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"model": {"type": "Unigram", "vocab": []}}')
    with pytest.raises(pissa.UnsupportedError, match="Unigram"):
        pissa.Tokenizer(str(tmp_path))
    with pytest.raises(pissa.NotFoundError):
        pissa.Tokenizer(str(tmp_path / "empty_dir_that_is_absent"))
    os.mkdir(tmp_path / "d")
    with pytest.raises(pissa.NotFoundError, match="without tokenizer.json"):
        pissa.Tokenizer(str(tmp_path / "d"))


def test_pissa_tokenize_program(tmp_path):
    import subprocess
    exe = program("pissa-tokenize")
    text = "Hello <|im_start|> world 42"
    out = subprocess.run([exe, "--tokenizer", GPT2], input=text.encode(), capture_output=True, check=True)
    ids = json.loads(out.stdout)
    assert ids == pissa.Tokenizer(GPT2).encode(text)
    back = subprocess.run([exe, "--tokenizer", GPT2, "--decode"], input=out.stdout, capture_output=True, check=True)
    assert back.stdout.decode() == pissa.Tokenizer(GPT2).decode(ids)


def test_generator_takes_the_model_folders_tokenizer(tmp_path):
    import shutil
    import subprocess
    model = tmp_path / "model"
    subprocess.run([program("pissa-synth"), "--out", str(model), "--dim", "16", "--hidden", "32", "--layers", "1",
                    "--heads", "2", "--kv-heads", "1", "--vocab", "962", "--seq", "64"], check=True,
                   capture_output=True)
    with pytest.raises(ValueError, match="no tokenizer.json"):
        pissa.Generator(str(model))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(GPT2, name), model / name)
    with pissa.Generator(str(model)) as g:
        assert g.tokenizer.kind == "hf"
        text = g.generate("Hello world", steps=12, temperature=0)
    assert text.startswith("Hello world")
