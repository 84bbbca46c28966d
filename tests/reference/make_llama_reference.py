#!/usr/bin/python3
"""Reference tensors for tests/test_model.c: tiny random models of each supported family, written in plain torch from
transformers' modeling files (modeling_llama.py, modeling_mistral.py, modeling_qwen2.py, modeling_qwen3.py and
modeling_rope_utils.py's rope init functions), independently of libpissa's C code, evaluated in float64.
The families are Llama plus marked differences, as transformers writes them:
  llama    attention_bias (q/k/v/o), mlp_bias (gate/up/down), head_dim, rope_scaling default/linear/llama3
  mistral  sliding_window: query i attends keys i - W + 1 .. i
  qwen2    bias on q/k/v (not o)
  qwen3    q_norm/k_norm: RMSNorm over head_dim on each head of q and k, before RoPE

For each fixture (untied GQA; tied with head_dim != hidden_size / heads and rsLoRA; and one per family feature,
with sequences longer than the sliding window and than llama3's original_max_position_embeddings) this writes
tests/reference/<fixture>/:
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


def rope_inv_freq(cfg):
    """transformers' ROPE_INIT_FUNCTIONS for rope types default, linear and llama3, in float32 as they compute."""
    hd, base = cfg["head_dim"], cfg["rope_theta"]
    inv_freq = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "linear":
        inv_freq /= rs["factor"]
    elif kind == "llama3":
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv_freq
        inv_freq_llama = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        inv_freq = torch.where(medium, smoothed, inv_freq_llama)
    else:
        assert kind == "default", kind
    return inv_freq


def rope_cos_sin(T, cfg):
    # as transformers: inv_freq in float32, angles position * inv_freq in float32, then cos/sin
    inv_freq = rope_inv_freq(cfg)
    freqs = torch.outer(torch.arange(T, dtype=torch.float32), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1).double()
    return emb.cos(), emb.sin()


def family(cfg):
    """The family's features: the projections with a bias, per-head q/k norms, the sliding window (0: none)."""
    mt = cfg.get("model_type", "llama")
    bias = set()
    if mt in ("llama", "qwen3") and cfg.get("attention_bias"):
        bias |= {"q_proj", "k_proj", "v_proj", "o_proj"}
    if mt == "llama" and cfg.get("mlp_bias"):
        bias |= {"gate_proj", "up_proj", "down_proj"}
    if mt == "qwen2":
        bias |= {"q_proj", "k_proj", "v_proj"}
    window = (cfg.get("sliding_window") or 0) if mt == "mistral" else 0
    return bias, mt == "qwen3", window


def llama_forward(cfg, W, adapters, scale, ids):
    """HF {Llama,Mistral,Qwen2,Qwen3}ForCausalLM in float64. W: name -> tensor (biases and q/k norms included where
    the family has them); adapters: module -> (A, B). SCALE is one number, or a dict module -> scale."""
    D, H, KV, hd = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps, Bsz, T = cfg["rms_norm_eps"], ids.shape[0], ids.shape[1]
    cos, sin = rope_cos_sin(T, cfg)
    _, qk_norm, window = family(cfg)

    def linear(x, module):
        y = x @ W[module + ".weight"].T
        if module + ".bias" in W:
            y = y + W[module + ".bias"]
        if module in adapters:
            A, B = adapters[module]
            s = scale[module] if isinstance(scale, dict) else scale
            y = y + s * (x @ A.T) @ B.T
        return y

    x = W["model.embed_tokens.weight"][ids]
    # masked: keys after the query, and (sliding window W) keys i - W or earlier, as masking_utils'
    # sliding_window_overlay keeps kv_idx > q_idx - W
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    causal = (j > i) | ((j <= i - window) if window else torch.zeros(T, T, dtype=torch.bool))
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = linear(h, p + "self_attn.q_proj").view(Bsz, T, H, hd)
        k = linear(h, p + "self_attn.k_proj").view(Bsz, T, KV, hd)
        if qk_norm:  # Qwen3Attention: q_norm / k_norm over head_dim of each head, before RoPE
            q = rmsnorm(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rmsnorm(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k = q.transpose(1, 2), k.transpose(1, 2)
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
    """The F32 (or BF16, widened exactly) tensors of a safetensors file, as float32 torch tensors."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] in ("F32", "BF16"), name
        b, e = info["data_offsets"]
        dt = torch.float32 if info["dtype"] == "F32" else torch.bfloat16
        out[name] = torch.frombuffer(bytearray(data[b:e]), dtype=dt).reshape(info["shape"]).to(torch.float32)
    return out


def random_llama_weights(cfg, g):
    """Every weight of a model with config CFG, drawn from generator G in sorted name order: norms 1 + 0.1·N(0, 1),
    biases 0.1·N(0, 1) (non-zero, so that a missing bias shows), embeddings 0.5·N(0, 1), linear weights N(0, 1/in)."""
    D, F, V, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["head_dim"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    bias, qk_norm, _ = family(cfg)
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (V, D)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        proj = {"self_attn.q_proj": (H * hd, D), "self_attn.k_proj": (KV * hd, D), "self_attn.v_proj": (KV * hd, D),
                "self_attn.o_proj": (D, H * hd), "mlp.gate_proj": (F, D), "mlp.up_proj": (F, D),
                "mlp.down_proj": (D, F)}
        shapes.update({p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,)})
        for m, shp in proj.items():
            shapes[p + m + ".weight"] = shp
            if m.split(".")[1] in bias:
                shapes[p + m + ".bias"] = (shp[0],)
        if qk_norm:
            shapes.update({p + "self_attn.q_norm.weight": (hd,), p + "self_attn.k_norm.weight": (hd,)})
    W = {}
    for n, shp in sorted(shapes.items()):
        if n.endswith(".bias"):
            W[n] = 0.1 * torch.randn(shp, generator=g)
        elif len(shp) == 1:
            W[n] = 1.0 + 0.1 * torch.randn(shp, generator=g)
        elif n == "model.embed_tokens.weight":
            W[n] = 0.5 * torch.randn(shp, generator=g)
        else:
            W[n] = torch.randn(shp, generator=g) / math.sqrt(shp[1])
    return W


ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                 "qwen3": "Qwen3ForCausalLM"}


def make_fixture(name, cfg, targets, r, alpha, rslora, seed, T=7):
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

    Bsz = 2
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

    d = os.path.join(HERE, name)
    os.makedirs(os.path.join(d, "adapter"), exist_ok=True)
    mt = cfg.get("model_type", "llama")
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"rope_scaling": None, "attention_bias": False, **cfg, "architectures": [ARCHITECTURES[mt]],
                   "model_type": mt, "hidden_act": "silu", "torch_dtype": "float32"}, f, indent=2, sort_keys=True)
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


# The fixtures: name -> (config, targets, r, alpha, rslora, seed, T). The family fixtures' max_position_embeddings
# is 512, so that the generator can be compared with the model at every position up to 512.
BASE = {"max_position_embeddings": 16, "rope_theta": 10000.0, "rms_norm_eps": 1e-5}
SMALL = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             head_dim=8, vocab_size=48)
FIXTURES = {
    "llama_untied": (dict(BASE, **SMALL, tie_word_embeddings=False), ["q_proj", "v_proj", "down_proj"], 4, 8, False,
                     1, 7),
    "llama_tied": (dict(BASE, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=1, head_dim=16, vocab_size=40, tie_word_embeddings=True,
                        rope_theta=500000.0, rms_norm_eps=1e-6), PROJ, 2, 6, True, 2, 7),
    # Llama-3.x: rope llama3 (hd 16: one frequency kept, one smoothed, six divided), positions past the original 32
    "llama3_rope": (dict(BASE, **dict(SMALL, head_dim=16), max_position_embeddings=512, tie_word_embeddings=False,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
                    PROJ, 4, 8, False, 3, 40),
    # llama with linear rope, attention_bias, mlp_bias, head_dim != D / H, tied
    "llama_bias_linear": (dict(BASE, **dict(SMALL, head_dim=12, num_attention_heads=2, num_key_value_heads=1),
                               max_position_embeddings=512, tie_word_embeddings=True, attention_bias=True,
                               mlp_bias=True, rope_scaling={"type": "linear", "factor": 4.0}),
                          PROJ, 4, 8, False, 4, 9),
    # Mistral: a sliding window of 5 over sequences of 12
    "mistral_window": (dict(BASE, **SMALL, model_type="mistral", max_position_embeddings=512,
                            tie_word_embeddings=False, sliding_window=5, rope_theta=1000000.0),
                       ["q_proj", "k_proj", "v_proj", "o_proj"], 4, 8, False, 5, 12),
    # Qwen2: biases on q, k, v; tied, as Qwen2.5-0.5B
    "qwen2_bias": (dict(BASE, **SMALL, model_type="qwen2", max_position_embeddings=512, tie_word_embeddings=True,
                        rope_theta=1000000.0, rms_norm_eps=1e-6, use_sliding_window=False, sliding_window=4096),
                   PROJ, 4, 8, True, 6, 9),
    # Qwen3: q_norm/k_norm, head_dim 16 with H·hd = 64 != D = 32, attention_bias
    "qwen3_qknorm": (dict(BASE, **dict(SMALL, head_dim=16), model_type="qwen3", max_position_embeddings=512,
                          tie_word_embeddings=True, attention_bias=True, rope_theta=1000000.0, rms_norm_eps=1e-6,
                          use_sliding_window=False, sliding_window=None),
                     PROJ, 4, 8, False, 7, 9),
}


if __name__ == "__main__":
    for name, (cfg, targets, r, alpha, rslora, seed, T) in FIXTURES.items():
        make_fixture(name, cfg, targets, r, alpha, rslora, seed, T)
