#!/usr/bin/python3
"""Reference tensors for tests/test_model.c: a tiny random Llama (Hugging Face LlamaForCausalLM maths, REFERENCE.md
section 5) written in plain torch, independently of libpissa's C code, evaluated in float64.

For each fixture (untied GQA; tied with head_dim != hidden_size / heads and rsLoRA) this writes
tests/reference/llama_<name>/:
  config.json, model.safetensors                the base model (F32), a Hugging Face folder
  adapter/adapter_config.json, adapter/adapter_model.safetensors   a PEFT LoRA adapter with non-zero B
  batch.json      {"input_ids": [[...]], "labels": [[...]]} (B=2, T=7, some labels -100)
  expected.json   {"loss": float, "count": int}
  expected.safetensors   "logits" (B, T, V) and "<module>.lora_A" / "<module>.lora_B": dloss/dA, dloss/dB (F32)
Run: /usr/bin/python3 tests/reference/make_llama_reference.py (torch 1.13; transformers is not needed)."""
import json
import math
import os
import struct

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def write_safetensors(path, tensors, dtype="F32"):
    """safetensors by hand, every tensor in DTYPE (F32, F16 or BF16): u64 header length, JSON header padded with
    spaces to 8 bytes, raw data in this (little-endian) machine's byte order."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(DTYPES[dtype]).contiguous()
        raw = t.view(torch.int16) if dtype == "BF16" else t  # numpy has no bfloat16: its bits as int16
        data = raw.numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def rmsnorm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope_cos_sin(T, hd, theta):
    # as transformers: inv_freq in float32, angles position * inv_freq in float32, then cos/sin
    inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1).double()
    return emb.cos(), emb.sin()


def llama_forward(cfg, W, adapters, scale, ids):
    """HF LlamaForCausalLM in float64. W: name -> tensor; adapters: module -> (A, B)."""
    D, H, KV, hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, Bsz, T = cfg["rms_norm_eps"], ids.shape[0], ids.shape[1]
    cos, sin = rope_cos_sin(T, hd, cfg["rope_theta"])

    def linear(x, module):
        y = x @ W[module + ".weight"].T
        if module in adapters:
            A, B = adapters[module]
            y = y + scale * (x @ A.T) @ B.T
        return y

    x = W["model.embed_tokens.weight"][ids]
    causal = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = linear(h, p + "self_attn.q_proj").view(Bsz, T, H, hd).transpose(1, 2)
        k = linear(h, p + "self_attn.k_proj").view(Bsz, T, KV, hd).transpose(1, 2)
        v = linear(h, p + "self_attn.v_proj").view(Bsz, T, KV, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KV, dim=1)  # repeat_kv: query head h reads kv head h // (H / KV)
        v = v.repeat_interleave(H // KV, dim=1)
        s = (q @ k.transpose(2, 3)) / math.sqrt(hd)
        s = s.masked_fill(causal, float("-inf"))
        a = torch.softmax(s, dim=-1) @ v
        a = a.transpose(1, 2).reshape(Bsz, T, H * hd)
        x = x + linear(a, p + "self_attn.o_proj")
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = torch.nn.functional.silu(linear(h, p + "mlp.gate_proj"))
        x = x + linear(g * linear(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rmsnorm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else W["lm_head.weight"]
    return x @ head.T


def read_safetensors_f32(path):
    """The F32 tensors of a safetensors file (what write_safetensors writes), as torch tensors."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        b, e = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[b:e]), dtype=torch.float32).reshape(info["shape"]).clone()
    return out


def random_llama_weights(cfg, g):
    """Every weight of a Llama with config CFG, drawn from generator G in sorted name order: norms 1 + 0.1·N(0, 1),
    embeddings 0.5·N(0, 1), linear weights N(0, 1/in)."""
    D, F, V, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["head_dim"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (V, D)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        shapes.update({p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
                       p + "self_attn.q_proj.weight": (H * hd, D), p + "self_attn.k_proj.weight": (KV * hd, D),
                       p + "self_attn.v_proj.weight": (KV * hd, D), p + "self_attn.o_proj.weight": (D, H * hd),
                       p + "mlp.gate_proj.weight": (F, D), p + "mlp.up_proj.weight": (F, D),
                       p + "mlp.down_proj.weight": (D, F)})
    W = {}
    for n, shp in sorted(shapes.items()):
        if len(shp) == 1:
            W[n] = 1.0 + 0.1 * torch.randn(shp, generator=g)
        elif n == "model.embed_tokens.weight":
            W[n] = 0.5 * torch.randn(shp, generator=g)
        else:
            W[n] = torch.randn(shp, generator=g) / math.sqrt(shp[1])
    return W


def make_fixture(name, cfg, targets, r, alpha, rslora, seed):
    g = torch.Generator().manual_seed(seed)
    W32 = random_llama_weights(cfg, g)
    V = cfg["vocab_size"]
    scale = alpha / math.sqrt(r) if rslora else alpha / r
    ad32 = {}
    for l in range(cfg["num_hidden_layers"]):
        for t in targets:
            mod = f"model.layers.{l}.{'self_attn' if PROJ.index(t) < 4 else 'mlp'}.{t}"
            out, inp = W32[mod + ".weight"].shape
            A = (torch.rand((r, inp), generator=g) * 2 - 1) / math.sqrt(inp)
            B = 0.3 * torch.randn((out, r), generator=g)  # non-zero: a trained adapter
            ad32[mod] = (A, B)

    Bsz, T = 2, 7
    ids = torch.randint(0, V, (Bsz, T), generator=g)
    labels = ids.clone()
    labels[0, 3] = -100
    labels[1, 0:3] = -100
    labels[1, 5] = -100

    # float64 from the float32 values actually written
    W = {n: t.double() for n, t in W32.items()}
    adapters = {m: (A.double().requires_grad_(), B.double().requires_grad_()) for m, (A, B) in ad32.items()}
    logits = llama_forward(cfg, W, adapters, scale, ids)
    shift_logits = logits[:, :-1, :].reshape(-1, V)
    shift_labels = labels[:, 1:].reshape(-1)
    loss = torch.nn.functional.cross_entropy(shift_logits, shift_labels, ignore_index=-100)
    count = int((shift_labels != -100).sum())
    loss.backward()

    d = os.path.join(HERE, f"llama_{name}")
    os.makedirs(os.path.join(d, "adapter"), exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(dict(cfg, architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
                       torch_dtype="float32", rope_scaling=None, attention_bias=False), f, indent=2, sort_keys=True)
    write_safetensors(os.path.join(d, "model.safetensors"), W32)
    adapter_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": r, "lora_alpha": alpha, "target_modules": targets,
        "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True,
        "use_rslora": rslora, "use_dora": False, "rank_pattern": {}, "alpha_pattern": {}, "modules_to_save": None,
        "layers_to_transform": None, "inference_mode": True, "base_model_name_or_path": None,
    }
    with open(os.path.join(d, "adapter", "adapter_config.json"), "w") as f:
        json.dump(adapter_config, f, indent=2, sort_keys=True)
    ad_tensors = {}
    for m, (A, B) in ad32.items():
        ad_tensors[f"base_model.model.{m}.lora_A.weight"] = A
        ad_tensors[f"base_model.model.{m}.lora_B.weight"] = B
    write_safetensors(os.path.join(d, "adapter", "adapter_model.safetensors"), ad_tensors)
    with open(os.path.join(d, "batch.json"), "w") as f:
        json.dump({"input_ids": ids.tolist(), "labels": labels.tolist()}, f)
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"loss": loss.item(), "count": count}, f, indent=2)
    expected = {"logits": logits.detach()}
    for m, (A, B) in adapters.items():
        expected[m + ".lora_A"] = A.grad
        expected[m + ".lora_B"] = B.grad
    write_safetensors(os.path.join(d, "expected.safetensors"), expected)
    print(f"{name}: loss {loss.item():.6f} over {count} targets, {len(adapters)} adapters")


if __name__ == "__main__":
    base = {"max_position_embeddings": 16, "rope_theta": 10000.0, "rms_norm_eps": 1e-5}
    make_fixture("untied", dict(base, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=8, vocab_size=48,
                                tie_word_embeddings=False),
                 targets=["q_proj", "v_proj", "down_proj"], r=4, alpha=8, rslora=False, seed=1)
    make_fixture("tied", dict(base, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, vocab_size=40,
                              tie_word_embeddings=True, rope_theta=500000.0, rms_norm_eps=1e-6),
                 targets=PROJ, r=2, alpha=6, rslora=True, seed=2)
