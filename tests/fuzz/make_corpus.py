#!/usr/bin/env python3
"""Writes the seed corpora (tests/fuzz/corpus/<harness>/) and dictionaries (tests/fuzz/dict/<harness>.dict) of the
libFuzzer harnesses: a few small valid files of each format and a few that break one rule each. Standard library
only; deterministic, so rerunning it reproduces the committed seeds byte for byte. Files that are not written by
this script (reproducers of fixed bugs, crash-* and timeout-*; inputs a long run found, found-*) are kept.

    python3 tests/fuzz/make_corpus.py            # rewrites the generated seeds in place

A multi-file input is its files joined by SEP, as tests/fuzz/fuzz_util.h FZ_SEP says."""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SEP = b"\n--8<--\n"

# ---- values ----------------------------------------------------------------------------------------------------


def values(n, seed=1):
    """n small floats in [-0.75, 0.75], deterministic."""
    return [((i * 7919 + seed * 104729) % 61 - 30) / 40.0 for i in range(n)]


def f32(xs):
    return struct.pack("<%df" % len(xs), *xs)


def f16(xs):
    return struct.pack("<%de" % len(xs), *xs)


def bf16(xs):
    return b"".join(struct.pack("<I", struct.unpack("<I", struct.pack("<f", x))[0] + 0x8000)[2:] for x in xs)


# ---- safetensors -----------------------------------------------------------------------------------------------

ELEM = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1, "BOOL": 1, "F64": 8, "I8": 1}


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def tensor(dtype, shape, seed=1):
    """(dtype, shape, bytes) with deterministic contents."""
    n = numel(shape)
    if dtype == "F32":
        data = f32(values(n, seed))
    elif dtype == "F16":
        data = f16(values(n, seed))
    elif dtype == "BF16":
        data = bf16(values(n, seed))
    else:
        data = bytes((i * 37 + seed) % 256 for i in range(n * ELEM[dtype]))
    return (dtype, list(shape), data)


def safetensors(tensors, metadata=None, align=8, header_extra=None):
    """A safetensors file: TENSORS maps names to (dtype, shape, bytes), stored in that order. The header is padded
    with spaces to a multiple of ALIGN (1: unpadded, so F32 data may be unaligned in the mapping)."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if header_extra:
        header.update(header_extra)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % align)
    return struct.pack("<Q", len(text)) + text + data


# ---- the tiny Llama model --------------------------------------------------------------------------------------
# The same model as tests/fuzz/fuzz_util.c fz_write_tiny_model (the sharded and peft harnesses' fixed config and
# base): 2 layers, hidden 4, 2 heads of 2 sharing 1 KV head, intermediate 8, vocabulary 16, untied.

D, F, L, H, KV, HD, V = 4, 8, 2, 2, 1, 2, 16
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": D, "intermediate_size": F,
          "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV, "vocab_size": V,
          "max_position_embeddings": 16, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "tie_word_embeddings": False,
          "hidden_act": "silu", "torch_dtype": "float32"}
LAYER = [("input_layernorm", (D,)), ("self_attn.q_proj", (H * HD, D)), ("self_attn.k_proj", (KV * HD, D)),
         ("self_attn.v_proj", (KV * HD, D)), ("self_attn.o_proj", (D, H * HD)), ("post_attention_layernorm", (D,)),
         ("mlp.gate_proj", (F, D)), ("mlp.up_proj", (F, D)), ("mlp.down_proj", (D, F))]
PROJ_SHAPE = {name.split(".")[-1]: shape for name, shape in LAYER if len(shape) == 2}  # q_proj: (out, in), ...


def model_tensors(dtype="F32", tied=False, layers=L, biases=(), qk_norm=False):
    """The tensors of the tiny model, plus the biases of the projections named in BIASES ("q_proj", ...) and Qwen3's
    per-head q_norm / k_norm when QK_NORM (as src/config.c lists a family's tensors)."""
    t = {"model.embed_tokens.weight": tensor(dtype, (V, D), 1)}
    for l in range(layers):
        for k, (name, shape) in enumerate(LAYER):
            t["model.layers.%d.%s.weight" % (l, name)] = tensor(dtype, shape, 2 + 9 * l + k)
            if name.split(".")[-1] in biases:
                t["model.layers.%d.%s.bias" % (l, name)] = tensor(dtype, shape[:1], 50 + k)
        if qk_norm:
            t["model.layers.%d.self_attn.q_norm.weight" % l] = tensor(dtype, (HD,), 60)
            t["model.layers.%d.self_attn.k_norm.weight" % l] = tensor(dtype, (HD,), 61)
    t["model.norm.weight"] = tensor(dtype, (D,), 40)
    if not tied:
        t["lm_head.weight"] = tensor(dtype, (V, D), 41)
    return t


def config(**changes):
    c = dict(CONFIG)
    for k, v in changes.items():
        if v is None:
            c.pop(k, None)
        else:
            c[k] = v
    return json.dumps(c, indent=2).encode()


# ---- seeds per harness -----------------------------------------------------------------------------------------


def seeds_safetensors():
    two = {"a.weight": tensor("F32", (2, 3)), "b": tensor("F32", (4,), 2)}
    s = {
        "valid_f32.safetensors": safetensors(two, {"format": "pt"}),
        "valid_dtypes.safetensors": safetensors({"h": tensor("F16", (3, 2)), "bf": tensor("BF16", (2, 2)),
                                                 "i": tensor("I64", (2,)), "u": tensor("U8", (5,)),
                                                 "scalar": tensor("F32", ()), "empty": tensor("F32", (0, 3)),
                                                 "four": tensor("F32", (1, 2, 1, 2))}, {"format": "pt", "k": "v"}),
        "valid_unaligned.safetensors": safetensors({"x": tensor("U8", (3,)), "y": tensor("F32", (2, 2))}, align=1),
        "valid_no_metadata.safetensors": safetensors(two),
        "valid_empty_header.safetensors": safetensors({}),
    }
    good = s["valid_f32.safetensors"]
    n = struct.unpack("<Q", good[:8])[0]
    s["bad_truncated.safetensors"] = good[:-3]
    s["bad_trailing.safetensors"] = good + b"\0\0\0\0"
    s["bad_header_length.safetensors"] = struct.pack("<Q", n + 1000) + good[8:]
    s["bad_offsets_hole.safetensors"] = safetensors({"a": tensor("F32", (2,))},
                                                    header_extra={"b": {"dtype": "F32", "shape": [1],
                                                                        "data_offsets": [12, 16]}})
    s["bad_shape_size.safetensors"] = safetensors({"a": ("F32", [3, 3], f32(values(4)))})
    s["bad_five_dims.safetensors"] = safetensors({"a": tensor("F32", (1, 1, 1, 1, 2))})
    s["bad_metadata.safetensors"] = safetensors(two, {"format": 1})
    s["bad_dtype.safetensors"] = safetensors({"a": ("F8", [2], b"\0\0")})
    text = (b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
            b'"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}')
    s["bad_duplicate.safetensors"] = struct.pack("<Q", len(text)) + text + f32([1, 2])
    text = b'{"\xff":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    s["bad_utf8.safetensors"] = struct.pack("<Q", len(text)) + text + f32([1])
    return s


def seeds_hf_checkpoint():
    # one layer (the config says so): the folder's size is mostly the safetensors header, per tensor
    def folder(cfg, tensors, **kw):
        return cfg + SEP + safetensors(tensors, {"format": "pt"}, **kw)

    def config(**changes):
        return globals()["config"](**dict({"num_hidden_layers": 1}, **changes))

    def model_tensors(*args, **kw):  # BF16 (half the bytes) unless a seed asks for another dtype
        return globals()["model_tensors"](*(args or ("BF16",)), **dict({"layers": 1}, **kw))

    s = {
        "valid_f32": folder(config(), model_tensors("F32")),
        "valid_bf16_tied": folder(config(tie_word_embeddings=True, torch_dtype="bfloat16"),
                                  model_tensors("BF16", tied=True)),
        "valid_f16_two_layers": folder(config(num_hidden_layers=2, torch_dtype=None, dtype="float16"),
                                       model_tensors("F16", layers=2)),
    }
    t = model_tensors()
    del t["model.layers.0.mlp.up_proj.weight"]
    s["bad_missing_tensor"] = folder(config(), t)
    t = model_tensors()
    t["model.layers.0.self_attn.k_proj.weight"] = tensor("F32", (D, D))
    s["bad_shape"] = folder(config(), t)
    t = model_tensors()
    t["model.layers.0.self_attn.q_proj.bias"] = tensor("F32", (D,))
    s["bad_bias"] = folder(config(), t)
    # the other families and features of src/config.c
    qkv = ("q_proj", "k_proj", "v_proj")
    s["valid_qwen2_bias_tied"] = folder(config(model_type="qwen2", architectures=["Qwen2ForCausalLM"],
                                               tie_word_embeddings=True, use_sliding_window=False),
                                        model_tensors(tied=True, biases=qkv))
    s["valid_qwen3_qknorm_bias"] = folder(config(model_type="qwen3", architectures=["Qwen3ForCausalLM"],
                                                 head_dim=HD, attention_bias=True),
                                          model_tensors(biases=qkv + ("o_proj",), qk_norm=True))
    s["valid_mistral_window"] = folder(config(model_type="mistral", architectures=["MistralForCausalLM"],
                                              sliding_window=3), model_tensors())
    s["valid_llama3_rope_mlp_bias"] = folder(
        config(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 8}, mlp_bias=True),
        model_tensors(biases=("gate_proj", "up_proj", "down_proj")))
    s["valid_linear_rope"] = folder(config(rope_scaling={"type": "linear", "factor": 2.0}), model_tensors())
    s["bad_rope_yarn"] = folder(config(rope_scaling={"rope_type": "yarn", "factor": 2.0}), model_tensors())
    s["bad_sliding_window_used"] = folder(config(model_type="qwen2", architectures=["Qwen2ForCausalLM"],
                                                 use_sliding_window=True), model_tensors(biases=qkv))
    s["bad_qk_norm_missing"] = folder(config(model_type="qwen3", architectures=["Qwen3ForCausalLM"], head_dim=HD),
                                      model_tensors())
    s["bad_model_type"] = folder(config(model_type="gemma"), model_tensors())
    s["bad_architecture"] = folder(config(model_type="mistral"), model_tensors())
    s["bad_heads"] = folder(config(num_attention_heads=3, num_key_value_heads=None), model_tensors())
    s["bad_config_json"] = b'{"model_type": "llama", "hidden_size": 8,' + SEP + safetensors(model_tensors())
    return s


def seeds_sharded():
    t = model_tensors("BF16")  # half the bytes of F32; F32 shards are in the hf_checkpoint seeds
    names = list(t)
    first, second = names[: len(names) // 2], names[len(names) // 2:]
    shard = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]

    def sharded(weight_map, parts=(first, second), metadata={"total_size": 0}):
        index = json.dumps({"metadata": metadata, "weight_map": weight_map}).encode()
        files = [safetensors({n: t[n] for n in part}, {"format": "pt"}) for part in parts]
        return SEP.join([index] + files)

    good_map = {n: shard[0] for n in first}
    good_map.update({n: shard[1] for n in second})
    s = {"valid_two_shards": sharded(good_map),
         "valid_one_shard": sharded({n: shard[0] for n in names}, parts=(names, []))}
    wrong = dict(good_map)
    wrong[first[0]] = shard[1]
    s["bad_wrong_shard"] = sharded(wrong)
    missing = dict(good_map)
    missing[first[0]] = "model-00003-of-00003.safetensors"
    s["bad_missing_shard"] = sharded(missing)
    slash = dict(good_map)
    slash[first[0]] = "../" + shard[0]
    s["bad_shard_path"] = sharded(slash)
    s["bad_in_two_shards"] = sharded(good_map, parts=(first + second[:1], second))
    s["bad_not_string"] = sharded(dict(good_map, **{first[0]: 1}))
    s["bad_no_weight_map"] = b'{"metadata": {}}' + SEP + SEP
    index = json.dumps({"weight_map": good_map}).encode()
    s["bad_listed_twice"] = index[:-2] + b', "%s": "%s"}}' % (first[0].encode(), shard[0].encode()) + \
        SEP + sharded(good_map).split(SEP, 1)[1]
    return s


def adapter_config(**changes):
    c = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4, "lora_dropout": 0.0,
         "target_modules": ["q_proj", "v_proj"], "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True,
         "use_rslora": False, "use_dora": False, "rank_pattern": {}, "alpha_pattern": {}, "modules_to_save": None,
         "layers_to_transform": None, "inference_mode": True, "base_model_name_or_path": "tiny"}
    c.update(changes)
    return json.dumps(c, indent=2, sort_keys=True).encode()


def lora(modules, dtype="F32", layers=range(L), ranks=None, prefix="base_model.model."):
    """adapter_model.safetensors tensors for MODULES (e.g. "self_attn.q_proj") of LAYERS, rank 2 unless RANKS says."""
    t, seed = {}, 1
    for l in layers:
        for mod in modules:
            out, inp = PROJ_SHAPE[mod.split(".")[-1]]
            r = (ranks or {}).get(mod, 2)
            name = "%smodel.layers.%d.%s" % (prefix, l, mod)
            t[name + ".lora_A.weight"] = tensor(dtype, (r, inp), seed)
            t[name + ".lora_B.weight"] = tensor(dtype, (out, r), seed + 1)
            seed += 2
    return t


QV = ["self_attn.q_proj", "self_attn.v_proj"]
ALL = [name for name, shape in LAYER if len(shape) == 2]


def seeds_peft():
    def folder(cfg, tensors):
        return cfg + SEP + safetensors(tensors, {"format": "pt"})

    s = {
        "valid_qv": folder(adapter_config(), lora(QV)),
        "valid_f16_rslora": folder(adapter_config(use_rslora=True), lora(QV, "F16")),
        "valid_all_linear_patterns": folder(
            adapter_config(r=1, target_modules="all-linear", rank_pattern={"down_proj": 3},
                           alpha_pattern={r"layers\.1\..*": 8}),
            lora(ALL, ranks={m: (3 if m.endswith("down_proj") else 1) for m in ALL})),
        "valid_regex_layers": folder(adapter_config(target_modules=r".*\.(q_proj|k_proj)", layers_to_transform=[1]),
                                     lora(["self_attn.q_proj", "self_attn.k_proj"], layers=[1])),
        "valid_pissa": folder(adapter_config(init_lora_weights="pissa_niter_2"), lora(QV, "BF16")),
        "valid_no_prefix_one_module": folder(adapter_config(target_modules=["o_proj"]),
                                             lora(["self_attn.o_proj"], layers=[0])),
    }
    s["bad_dora"] = folder(adapter_config(use_dora=True), lora(QV))
    s["bad_rank"] = folder(adapter_config(r=3), lora(QV))
    s["bad_untargeted"] = folder(adapter_config(target_modules=["q_proj"]), lora(QV))
    t = lora(QV)
    t["base_model.model.lm_head.lora_A.weight"] = tensor("F32", (2, D))
    t["base_model.model.lm_head.lora_B.weight"] = tensor("F32", (V, 2))
    s["bad_lm_head"] = folder(adapter_config(target_modules=["q_proj", "v_proj", "lm_head"]), t)
    t = lora(QV)
    del t["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]
    s["bad_unpaired"] = folder(adapter_config(), t)
    s["bad_peft_type"] = folder(adapter_config(peft_type="IA3"), lora(QV))
    s["bad_regex"] = folder(adapter_config(target_modules="(unclosed"), lora(QV))
    s["bad_layer_out_of_range"] = folder(adapter_config(layers_to_transform=[7]), lora(QV))
    return s


def llama2c(version, dim=4, hidden=8, layers=2, heads=2, kv=1, vocab=16, seq=4, shared=True, group=4):
    """A llama2.c checkpoint: version 0 (legacy header, negative vocab = separate classifier), 1 (float32) or
    2 (Q8_0: int8 weights with one float scale per group), laid out as llama2.c's export.py writes them."""
    hd, kv_dim = dim // heads, kv * (dim // heads)
    emb = values(vocab * dim, 1)
    rms_att, rms_ffn, rms_final = values(layers * dim, 2), values(layers * dim, 3), values(dim, 4)
    wq, wk = values(layers * dim * dim, 5), values(layers * kv_dim * dim, 6)
    wv, wo = values(layers * kv_dim * dim, 7), values(layers * dim * dim, 8)
    w1, w2, w3 = (values(layers * hidden * dim, s) for s in (9, 10, 11))
    wcls = [] if shared else values(vocab * dim, 12)
    params = struct.pack("<7i", dim, hidden, layers, heads, kv, vocab, seq)
    if version == 0:
        params = struct.pack("<7i", dim, hidden, layers, heads, kv, vocab if shared else -vocab, seq)
        freq = values(seq * hd // 2, 13) + values(seq * hd // 2, 14)
        return params + f32(emb + rms_att + wq + wk + wv + wo + rms_ffn + w1 + w2 + w3 + rms_final + freq + wcls)
    head = struct.pack("<Ii", 0x616B3432, version) + params + struct.pack("<B", shared)
    if version == 1:
        head = head.ljust(256, b"\0")
        return head + f32(rms_att + rms_ffn + rms_final + emb + wq + wk + wv + wo + w1 + w2 + w3 + wcls)
    head = (head + struct.pack("<i", group)).ljust(256, b"\0")
    out = head + f32(rms_att + rms_ffn + rms_final)
    for w in [emb, wq, wk, wv, wo, w1, w2, w3] + ([wcls] if wcls else []):
        q, scales = [], []
        for g in range(0, len(w), group):
            block = w[g:g + group]
            scale = max(abs(x) for x in block) / 127.0
            scales.append(scale)
            q += [round(x / scale) if scale else 0 for x in block]
        out += struct.pack("<%db" % len(q), *q) + f32(scales)
    return out


def seeds_llama2c_model():
    s = {"valid_v0_shared.bin": llama2c(0), "valid_v0_separate.bin": llama2c(0, shared=False),
         "valid_v1_shared.bin": llama2c(1), "valid_v1_separate_mha.bin": llama2c(1, kv=2, shared=False),
         "valid_v2_q80.bin": llama2c(2)}
    good = s["valid_v0_shared.bin"]
    s["bad_truncated.bin"] = good[:-4]
    s["bad_too_long.bin"] = good + b"\0\0\0\0"
    s["bad_short_header.bin"] = good[:20]
    s["bad_version_3.bin"] = struct.pack("<Ii", 0x616B3432, 3) + llama2c(1)[8:]
    s["bad_zero_dim.bin"] = struct.pack("<7i", 0, 8, 2, 2, 1, 16, 4) + good[28:]
    s["bad_odd_head.bin"] = struct.pack("<7i", 6, 8, 2, 2, 1, 16, 4) + good[28:]
    s["bad_kv_heads.bin"] = struct.pack("<7i", 4, 8, 2, 2, 3, 16, 4) + good[28:]
    s["bad_huge_dims.bin"] = struct.pack("<7i", 1 << 30, 1 << 30, 1 << 30, 2, 1, 1 << 30, 1 << 30) + good[28:]
    return s


def tokenizer(pieces, max_len=None, scores=None):
    """A llama2.c tokenizer file: int32 max_token_length, then float32 score, int32 length, bytes per piece."""
    if max_len is None:
        max_len = max(len(p) for p in pieces)
    out = struct.pack("<i", max_len)
    for i, p in enumerate(pieces):
        out += struct.pack("<fi", scores[i] if scores else -float(i), len(p)) + p
    return out


# stories260K's reserved ids and first merges (tok512.bin), plus a few multi-byte pieces
RESERVED = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % i for i in range(256)]
MERGES = [m.encode() for m in [" t", "he", " a", " s", " w", "nd", " the", "ed", " to", " b", " and", " h", "in",
                                " f", " wa", " T", "it", "re", "ou", " l", " d", " c", " he", " p", "ay", " m", "er",
                                " was", "om", "im", "on", "il", " The", "id", "é", " é", "\U0001F600"]]
SINGLES = [bytes([c]) for c in b" abcdefghijklmnopqrstuvwxyzT.,!\"\n"]


def seeds_llama2c_tokenizer():
    pieces = RESERVED + MERGES + SINGLES
    scores = [0.0] * len(RESERVED) + [-float(i) for i in range(len(MERGES) + len(SINGLES))]
    good = tokenizer(pieces, scores=scores)
    s = {"valid_tiny.bin": good,
         "valid_equal_scores_duplicates.bin": tokenizer(pieces + [b" the", b""], scores=[0.0] * (len(pieces) + 2)),
         "valid_inf_scores.bin": tokenizer(pieces, scores=[float("-inf")] * 259 + [float("inf")] * (len(pieces) - 259)),
         "valid_no_space_piece.bin": tokenizer(RESERVED + [b"ab", b"a", b"b"], scores=[0.0] * 262)}
    s["bad_too_few_tokens.bin"] = tokenizer(RESERVED[:100])
    # the next ones break a rule in the header or token 0: the first tokens are enough
    short = good[:120]
    s["bad_negative_length.bin"] = short[:4] + struct.pack("<fi", 0.0, -5) + short[12:]
    s["bad_nan_score.bin"] = short[:4] + struct.pack("<f", float("nan")) + short[8:]
    s["bad_piece_too_long.bin"] = tokenizer(pieces[:8], max_len=3)
    s["bad_negative_max_len.bin"] = struct.pack("<i", -1) + short[4:]
    return s


def jsonl(rows):
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def seeds_jsonl():
    return {
        "valid_rows.jsonl": jsonl([{"input_ids": [1, 5, 9, 2], "labels": [-100, -100, 9, 2]},
                                   {"input_ids": [1, 299], "meta": "ignored"}, {"input_ids": [0]}]),
        "valid_blank_lines_crlf.jsonl": b'\n  \n{"input_ids": [3, 4], "labels": [3, -100]}\r\n\t\n{"input_ids":[7]}',
        "valid_numbers.jsonl": b'{"input_ids": [1.0, 2e0, 3E+0, 0.04e2], "labels": [-1e2, -100.0, 3, 4]}\n',
        "bad_out_of_vocab.jsonl": jsonl([{"input_ids": [1, 300]}]),
        "bad_fraction.jsonl": jsonl([{"input_ids": [1, 2.5]}]),
        "bad_lengths.jsonl": jsonl([{"input_ids": [1, 2], "labels": [1]}]),
        "bad_empty_row.jsonl": jsonl([{"input_ids": []}]),
        "bad_not_object.jsonl": b'[1, 2, 3]\n',
        "bad_json.jsonl": b'{"input_ids": [1, 2\n',
        "bad_label_negative.jsonl": jsonl([{"input_ids": [1, 2], "labels": [1, -1]}]),
        "bad_huge_number.jsonl": b'{"input_ids": [1e400, 18446744073709551617]}\n',
    }


def seeds_data():
    # read with tests/reference/tokenizers/gpt2_style (ChatML template), rows cut at 48 tokens, packed into 64
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi, who are you?"},
            {"role": "assistant", "content": "A model."}, {"role": "user", "content": "caf\u00e9 \U0001f600 2024"},
            {"role": "assistant", "content": "Noted."}]
    return {
        "valid_messages.jsonl": jsonl([{"messages": chat}, {"messages": chat[1:3]}]),
        "valid_prompt_completion.jsonl": jsonl([{"prompt": "Once upon a time", "completion": " there was a girl."},
                                                {"prompt": "2 + 2 =", "completion": " 4"}]),
        "valid_conversational_pc.jsonl": jsonl([{"prompt": chat[:2], "completion": [chat[2]]}]),
        "valid_text.jsonl": jsonl([{"text": "The sun was warm and the flowers were red."}, {"text": "x"}]),
        "valid_pretokenized.jsonl": jsonl([{"input_ids": [1, 5, 9, 2], "labels": [-100, -100, 9, 2]}]),
        "valid_long_row_cut.jsonl": jsonl([{"text": "the garden " * 40}, {"prompt": "a " * 60, "completion": "b"}]),
        "valid_plain_text.txt": TRAIN_TEXT.encode() * 3,
        "bad_no_role.jsonl": jsonl([{"messages": [{"content": "hi"}]}]),
        "valid_mixed_formats.jsonl": jsonl([{"text": "a"}, {"messages": chat[1:3]}]),
        "bad_completion_not_string.jsonl": jsonl([{"prompt": "a", "completion": 5}]),
        "bad_invalid_utf8.jsonl": b'{"text": "ab\xff\xfe"}\n',
        "bad_empty_messages.jsonl": jsonl([{"messages": []}]),
    }


def state_files(step=1, **changes):
    """state.json SEP state.safetensors of tests/fuzz/fuzz_state.c's run: LoRA r 2 on q_proj and v_proj of the tiny
    model, AdamW, batch 2, 4 rows of 8 tokens, saved after STEP updates."""
    meta = {"accum": 1, "batch": 2, "epoch": 0, "format": "pissa-train-state", "mode": "adapters",
            "optimizer": "adamw", "optimizer_steps": step, "position": 2 * step % 4, "rows": 4, "seed": "0", "seq": 8,
            "shuffle": True, "step": step, "tensors": 8, "version": 1}
    meta.update(changes)
    tensors, k = {}, 0
    for layer in range(L):
        for proj in ("q_proj", "v_proj"):
            out, inp = PROJ_SHAPE[proj]
            for name, n in (("lora_A", 2 * inp), ("lora_B", out * 2)):
                base = "model.layers.%d.self_attn.%s.%s" % (layer, proj, name)
                k += 1
                tensors[base] = ("F32", [n], f32(values(n, k)))
                tensors[base + ".exp_avg"] = ("F32", [n], f32([v / 100 for v in values(n, k + 50)]))
                tensors[base + ".exp_avg_sq"] = ("F32", [n], f32([v * v / 1e4 for v in values(n, k + 90)]))
    return (json.dumps(meta, indent=2, sort_keys=True).encode() + SEP
            + safetensors(tensors, {"format": "pt", "step": str(step)}))


def seeds_state():
    good = state_files()
    return {
        "valid_step1": good,
        "valid_step3_epoch1": state_files(3, epoch=1),
        "bad_torn_pair": state_files(2).split(SEP)[0] + SEP + good.split(SEP)[1],
        "bad_other_batch": state_files(batch=4),
        "bad_other_optimizer": state_files(optimizer="sgd"),
        "bad_position_past_rows": state_files(position=9),
        "bad_step_past_2_53": state_files(step=1 << 62),
        "bad_no_tensors": good.split(SEP)[0],
        "bad_not_json": b"{" + SEP + good.split(SEP)[1],
    }


def seeds_text():
    # first byte: the sequence length is 2 + byte % 64
    return {
        "valid_story": b"\x06Once upon a time, there was a little girl named Lily. She saw the sun and was happy.\n",
        "valid_unicode": b"\x10The caf\xc3\xa9 \xe2\x80\x94 \xc3\xbcber \xf0\x9f\x98\x80 and "
                         b"\xe4\xb8\xad\xe6\x96\x87!\n",
        "valid_invalid_utf8_nul": b"\x00ab\xff\xfe\x00cd\xc3(\xe2\x82 \xf0\x9f\x98 the end",
        "valid_short": b"\x3fhi",
        "valid_empty": b"\x02",
        "valid_long_seq": b"\x00" + b" the" * 200,
    }


# ---- tokenizer.json ---------------------------------------------------------------------------------------------

TRAIN_TEXT = ("Once upon a time, there was a little girl named Lily. She liked to play in the garden with her "
              "friend Tim. The sun was warm and the flowers were red. It's 2024: the café had naïve art.")


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: byte b -> a printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def train_bpe(words, n_merges):
    """Greedy BPE on WORDS (lists of symbols): the N_MERGES most frequent adjacent pairs, in order."""
    merges = []
    for _ in range(n_merges):
        counts = {}
        for w in words:
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            break
        best = max(sorted(counts), key=lambda p: counts[p])
        merges.append(best)
        for w in words:
            i = 0
            while i < len(w) - 1:
                if (w[i], w[i + 1]) == best:
                    w[i:i + 2] = [w[i] + w[i + 1]]
                i += 1
    return merges


def added(tokens, first_id):
    return [{"id": first_id + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True} for i, t in enumerate(tokens)]


def byte_level_tokenizer(merges_as_lists=False, normalizer=None, split=True, specials=()):
    """A llama3 / qwen-style byte-level BPE: Split by a GPT-4-like regex, ByteLevel, 256 byte symbols + merges."""
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    words = [[b2u[c] for c in (" " + w if i else w).encode()] for i, w in enumerate(TRAIN_TEXT.split(" "))]
    merges = train_bpe(words, 40)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    regex = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")
    pre = [{"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": not split}]
    if split:
        pre.insert(0, {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False})
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added(specials, len(vocab)),
            "normalizer": normalizer, "pre_tokenizer": {"type": "Sequence", "pretokenizers": pre},
            "post_processor": byte_level, "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                      "ignore_merges": not merges_as_lists, "vocab": vocab,
                      "merges": [[a, b] if merges_as_lists else a + " " + b for a, b in merges]}}


def sentencepiece_tokenizer():
    """A llama2-style BPE: "▁" for spaces (Prepend + Replace), byte fallback to <0xHH>, <s> prepended."""
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    words = [list("▁" + w) for w in TRAIN_TEXT.split(" ")]
    for w in words:
        for c in w:
            vocab.setdefault(c, len(vocab))
    merges = train_bpe(words, 40)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    template = {"single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added(["<unk>", "<s>", "</s>"], 0),
            "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"},
                                                               {"type": "Replace", "pattern": {"String": " "},
                                                                "content": "▁"}]},
            "pre_tokenizer": None, "post_processor": dict({"type": "TemplateProcessing"}, **template),
            "decoder": {"type": "Sequence",
                        "decoders": [{"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                                     {"type": "ByteFallback"}, {"type": "Fuse"},
                                     {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "vocab": vocab,
                      "merges": [a + " " + b for a, b in merges]}}


CHAT_TEMPLATE = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
                 "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def hf_folder(tokenizer, config=None, generation=None):
    parts = [json.dumps(tokenizer, ensure_ascii=False, separators=(",", ":")).encode()]
    for extra in (config, generation):
        if extra is None:
            break
        parts.append(extra if isinstance(extra, bytes) else json.dumps(extra, indent=2).encode())
    return SEP.join(parts)


def seeds_hf_tokenizer():
    llama3 = byte_level_tokenizer(specials=["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"])
    qwen = byte_level_tokenizer(merges_as_lists=True, normalizer={"type": "NFC"},
                                specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    gpt2 = byte_level_tokenizer(split=False, normalizer={"type": "NFKC"}, specials=["<|endoftext|>"])
    gpt2["pre_tokenizer"]["pretokenizers"].insert(0, {"type": "Digits", "individual_digits": True})
    sp = sentencepiece_tokenizer()
    eot = len(llama3["model"]["vocab"]) + 2
    s = {
        "valid_llama3_style": hf_folder(llama3, {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                                 "clean_up_tokenization_spaces": True,
                                                 "tokenizer_class": "PreTrainedTokenizerFast"},
                                        {"bos_token_id": eot - 2, "eos_token_id": [eot - 1, eot]}),
        "valid_qwen_style_chat": hf_folder(qwen, {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                                                  "chat_template": CHAT_TEMPLATE, "tokenizer_class": "Qwen2Tokenizer"}),
        "valid_gpt2_style_alone": hf_folder(gpt2),
        "valid_llama2_style": hf_folder(sp, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                             "add_bos_token": True, "add_eos_token": True, "legacy": True,
                                             "tokenizer_class": "LlamaTokenizer"}, {"eos_token_id": 2}),
    }
    # one broken rule each, on a minimal tokenizer (a BPE with nothing else; valid as it is)
    def mini(**changes):
        t = {"version": "1.0", "added_tokens": added(["<eos>"], 3), "normalizer": None, "pre_tokenizer": None,
             "decoder": None, "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}
        for k, v in changes.items():
            t[k] = v
        return t

    s["valid_minimal"] = hf_folder(mini(), {"eos_token": "<eos>"})
    s["bad_merge_of_unknown_token"] = hf_folder(mini(model={"type": "BPE", "vocab": {"a": 0}, "merges": ["a zzz"]}))
    s["bad_unigram"] = hf_folder(mini(model={"type": "Unigram", "vocab": [["a", -1.0]], "unk_id": 0}))
    s["bad_regex"] = hf_folder(mini(pre_tokenizer={"type": "Split", "pattern": {"Regex": "(?<x"},
                                                   "behavior": "Isolated", "invert": False}))
    s["bad_config_not_object"] = hf_folder(mini(), b"[]")
    s["valid_added_token_on_a_vocab_id"] = hf_folder(mini(added_tokens=added(["<eos>"], 1)))
    s["bad_truncated"] = hf_folder(qwen)[:700]
    return s


HARNESSES = {"safetensors": seeds_safetensors, "hf_checkpoint": seeds_hf_checkpoint, "sharded": seeds_sharded,
             "peft": seeds_peft, "llama2c_model": seeds_llama2c_model,
             "llama2c_tokenizer": seeds_llama2c_tokenizer, "jsonl": seeds_jsonl, "data": seeds_data,
             "state": seeds_state, "text": seeds_text,
             "hf_tokenizer": seeds_hf_tokenizer}

# ---- dictionaries ----------------------------------------------------------------------------------------------

ST_WORDS = ["__metadata__", "dtype", "shape", "data_offsets", "format", "pt"] + list(ELEM) + ["F8_E4M3", "U16", "I16"]
CONFIG_WORDS = list(CONFIG) + ["head_dim", "rope_scaling", "attention_bias", "mlp_bias", "dtype", "llama", "silu",
                               "bfloat16", "float16", "mistral", "qwen2", "qwen3", "MistralForCausalLM",
                               "Qwen2ForCausalLM", "Qwen3ForCausalLM", "sliding_window", "use_sliding_window",
                               "rope_type", "type", "linear", "llama3", "factor", "low_freq_factor",
                               "high_freq_factor", "original_max_position_embeddings"]
TENSOR_WORDS = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight", "model.layers.0.",
                "model.layers.1.", ".weight", ".bias", "self_attn.q_norm", "self_attn.k_norm"]
TENSOR_WORDS += [name for name, _ in LAYER]
PEFT_WORDS = ["peft_type", "LORA", "task_type", "CAUSAL_LM", "r", "lora_alpha", "lora_dropout", "target_modules",
              "all-linear", "bias", "none", "fan_in_fan_out", "init_lora_weights", "pissa", "pissa_niter_",
              "gaussian", "use_rslora", "use_dora", "rank_pattern", "alpha_pattern", "modules_to_save",
              "layers_to_transform", "layers_pattern", "lora_bias", "base_model_name_or_path", "base_model.model.",
              ".lora_A.weight", ".lora_B.weight", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
              "down_proj", "lm_head"]
JSON_WORDS = ["{", "}", "[", "]", ":", ",", "null", "true", "false", "-100", "1e308", "-0", "\\u0000", "\\ud800"]


def dict_entry(w):
    w = w if isinstance(w, bytes) else w.encode()
    return '"%s"' % "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else "\\x%02X" % b for b in w)


def quoted(words):
    return ['"%s"' % w for w in words]


DICTS = {
    "safetensors": ST_WORDS + quoted(ST_WORDS) + JSON_WORDS,
    "hf_checkpoint": ST_WORDS + quoted(CONFIG_WORDS) + TENSOR_WORDS + JSON_WORDS + [SEP],
    "sharded": ST_WORDS + ["weight_map", "metadata", "total_size", "model-00001-of-00002.safetensors",
                           "model-00002-of-00002.safetensors", "model.safetensors", "config.json", "/", ".."]
    + TENSOR_WORDS + JSON_WORDS + [SEP],
    "peft": ST_WORDS + quoted(PEFT_WORDS) + PEFT_WORDS + ["model.layers.", "self_attn.", "mlp.", ".*", "\\.",
                                                          "(?:", "\\d+"] + JSON_WORDS + [SEP],
    "llama2c_model": [b"ak42", struct.pack("<i", 1), struct.pack("<i", 2), struct.pack("<i", -32),
                      struct.pack("<i", 0x7FFFFFFF), struct.pack("<i", 8)],
    "llama2c_tokenizer": ["<unk>", "\n<s>\n", "\n</s>\n", "<0x", "<0x20>", " ", struct.pack("<f", float("nan")),
                          struct.pack("<i", 0x40000007), struct.pack("<i", -1)],
    "jsonl": ["input_ids", "labels", '"input_ids": [', '"labels": [', "\n", "\r\n"] + JSON_WORDS
    + ["299", "300", "1e2", "2.5"],
    "state": quoted(["accum", "batch", "epoch", "format", "pissa-train-state", "mode", "adapters", "full",
                     "optimizer", "adamw", "sgd", "optimizer_steps", "position", "rows", "seed", "seq", "shuffle",
                     "step", "tensors", "version"]) + ST_WORDS + [".exp_avg", ".exp_avg_sq", ".momentum_buffer",
                                                                  "lora_A", "lora_B", "q_proj", "v_proj"] + JSON_WORDS + [SEP],
    "data": quoted(["messages", "role", "content", "system", "user", "assistant", "prompt", "completion", "text",
                    "input_ids", "labels"]) + ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "\n", "\r\n"]
    + JSON_WORDS,
    "hf_tokenizer": quoted(["version", "added_tokens", "id", "content", "single_word", "lstrip", "rstrip", "normalized",
                            "special", "normalizer", "pre_tokenizer", "post_processor", "decoder", "model", "type",
                            "vocab", "merges", "BPE", "byte_fallback", "ignore_merges", "fuse_unk", "unk_token",
                            "continuing_subword_prefix", "end_of_word_suffix", "dropout", "Sequence", "normalizers",
                            "pretokenizers", "processors", "decoders", "NFC", "NFKC", "NFD", "NFKD", "Lowercase",
                            "Prepend", "prepend", "Replace", "pattern", "String", "Regex", "Split", "behavior",
                            "Isolated", "Removed", "MergedWithPrevious", "invert", "ByteLevel", "add_prefix_space",
                            "trim_offsets", "use_regex", "Digits", "individual_digits", "Metaspace", "replacement",
                            "prepend_scheme", "Whitespace", "Punctuation", "TemplateProcessing", "single", "pair",
                            "SpecialToken", "special_tokens", "ids", "tokens", "type_id", "ByteFallback", "Fuse",
                            "Strip", "start", "stop", "bos_token", "eos_token", "unk_token", "pad_token",
                            "add_bos_token", "add_eos_token", "clean_up_tokenization_spaces", "chat_template",
                            "eos_token_id", "bos_token_id", "tokenizer_class", "LlamaTokenizer", "legacy"])
    + ["\u2581", "\u0120", "<0x0A>", "<s>", "</s>", "<|im_end|>", "<|eot_id|>", "\\p{L}", "(?i:", "(?!\\S)"]
    + JSON_WORDS + [SEP],
    "jinja": ["{{", "}}", "{%", "%}", "{#", "#}", "{%-", "-%}", "for ", " in ", "endfor", "if ", "elif ", "else",
              "endif", "set ", "endset", "macro ", "endmacro", "call", "namespace(", "loop.index", "loop.first",
              "loop.last", "messages", "message['role']", "message['content']", "add_generation_prompt",
              "bos_token", "eos_token", "tools", "raise_exception(", "|tojson", "|trim", "|length", "|join(",
              "|selectattr(", "|map(", "is defined", "is string", "is none", "not ", " and ", " or ", "~", "[::-1]",
              ".split(", ".strip()", "range(", "none", "true", "false"],
}

# ---- main ------------------------------------------------------------------------------------------------------


def main():
    total = 0
    for harness, make in HARNESSES.items():
        folder = os.path.join(HERE, "corpus", harness)
        os.makedirs(folder, exist_ok=True)
        seeds = make()
        for name in os.listdir(folder):  # drop generated seeds this script no longer makes
            if name.startswith(("valid_", "bad_")) or name in seeds:
                if name not in seeds:
                    os.remove(os.path.join(folder, name))
        for name, data in sorted(seeds.items()):
            assert SEP not in data or harness in ("hf_checkpoint", "sharded", "peft", "hf_tokenizer", "state"), (harness, name)
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
            total += len(data)
    # the chat template harness is seeded with the reference templates themselves, not a copy
    link = os.path.join(HERE, "corpus", "jinja")
    if not os.path.islink(link):
        os.symlink(os.path.join("..", "..", "reference", "chat", "templates"), link)
    os.makedirs(os.path.join(HERE, "dict"), exist_ok=True)
    for harness, words in DICTS.items():
        with open(os.path.join(HERE, "dict", harness + ".dict"), "w") as f:
            f.write("# libFuzzer dictionary of the %s harness, written by tests/fuzz/make_corpus.py\n" % harness)
            for w in dict.fromkeys(words):
                f.write(dict_entry(w) + "\n")
    print("wrote %d bytes of seeds" % total, file=sys.stderr)


if __name__ == "__main__":
    main()
