#!/usr/bin/python3
"""Reference for tests/test_peft_apply.c: PEFT adapter folders applied to a small Hugging Face Llama, computed in
float64 with plain torch (PEFT and transformers are not needed).

Base model: peft_apply/base/ (config.json, model.safetensors F32, batch.json), a random Llama with the dims of
llama_untied (D 32, H 4, KV 2, V 48) but 3 layers: with 21 linear modules PEFT condenses an expanded "all-linear"
to suffixes (MIN_TARGET_MODULES_FOR_OPTIMIZATION = 20), so layers_to_transform applies to it in every PEFT
version (with fewer modules, recent PEFT matches the full names exactly and ignores layers_to_transform).
The forward pass is make_llama_reference.llama_forward. For every adapter below this writes
tests/reference/peft_apply/<name>/ holding
adapter_config.json + adapter_model.safetensors (what PEFT saves: tensors only for the modules it targets) and
expected.safetensors with "logits" (B, T, V) of the base with the adapter applied as PEFT's LoRA layers do:
for each targeted nn.Linear, y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ with that module's r and s = alpha / r (alpha / √r with
use_rslora). Which modules are targeted and with which r / alpha is decided by the transliteration of PEFT's code in
make_interop_match_reference.py (check_target_module_exists, all-linear expansion, get_pattern_key with Python re).

  regex_patterns  target_modules a regex string; rank_pattern with a regex key ("layers\\.1\\..*") and a full path;
                  alpha_pattern with an alternation; F32 tensors
  all_linear      "all-linear" with layers_to_transform [1] and use_rslora; F16 tensors
  bf16_list       a list of suffixes with rank_pattern; BF16 tensors
The A/B values are the ones actually stored (rounded to F16/BF16 first), so the reference sees what the C loader
reads. Pattern keys are chosen so that no module is matched by both a rank_pattern and an alpha_pattern key:
older PEFT versions looked both up with one chained key, newer ones separately; both agree on these files.
Run: /usr/bin/python3 tests/reference/make_peft_apply_reference.py"""
import json
import math
import os

import torch

from make_interop_match_reference import (check_target_module_exists, get_pattern_key, llama_named_modules,
                                          prepare_targets)
from make_llama_reference import DTYPES, llama_forward, random_llama_weights, read_safetensors_f32, write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "peft_apply")
BASE = os.path.join(OUT, "base")


def make_base(seed):
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu", "torch_dtype":
           "float32", "rope_scaling": None, "attention_bias": False, "max_position_embeddings": 16,
           "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "hidden_size": 32, "intermediate_size": 48,
           "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
           "vocab_size": 48, "tie_word_embeddings": False}
    g = torch.Generator().manual_seed(seed)
    W = random_llama_weights(cfg, g)
    V = cfg["vocab_size"]
    ids = torch.randint(0, V, (2, 7), generator=g)
    os.makedirs(BASE, exist_ok=True)
    with open(os.path.join(BASE, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    write_safetensors(os.path.join(BASE, "model.safetensors"), W)
    with open(os.path.join(BASE, "batch.json"), "w") as f:
        json.dump({"input_ids": ids.tolist()}, f)


def resolve(cfg, cfg_full, names, linear):
    """{module: (r, alpha, scale)} for every nn.Linear PEFT would put a LoRA layer on."""
    tm = prepare_targets(cfg_full, names, linear)
    rp, ap = cfg_full["rank_pattern"], cfg_full["alpha_pattern"]
    out = {}
    for key in names:
        if key not in linear or not check_target_module_exists(tm, cfg_full, key):
            continue
        r = rp.get(get_pattern_key(rp.keys(), key), cfg_full["r"])
        alpha = ap.get(get_pattern_key(ap.keys(), key), cfg_full["lora_alpha"])
        scale = alpha / math.sqrt(r) if cfg_full["use_rslora"] else alpha / r
        out[key] = (r, alpha, scale)
    return out


def make_adapter(name, dtype, seed, **fields):
    with open(os.path.join(BASE, "config.json")) as f:
        mcfg = json.load(f)
    with open(os.path.join(BASE, "batch.json")) as f:
        ids = torch.tensor(json.load(f)["input_ids"])
    W = {n: t.double() for n, t in read_safetensors_f32(os.path.join(BASE, "model.safetensors")).items()}
    cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 8, "lora_dropout": 0.0,
           "bias": "none", "fan_in_fan_out": False, "init_lora_weights": True, "use_rslora": False,
           "use_dora": False, "rank_pattern": {}, "alpha_pattern": {}, "modules_to_save": None,
           "layers_to_transform": None, "inference_mode": True, "base_model_name_or_path": None}
    cfg.update(fields)
    names, linear = llama_named_modules(mcfg["num_hidden_layers"])
    plan = resolve(cfg, cfg, names, linear)
    g = torch.Generator().manual_seed(seed)
    tensors, adapters = {}, {}
    for mod, (r, alpha, scale) in sorted(plan.items()):
        out_f, in_f = W[mod + ".weight"].shape
        A = ((torch.rand((r, in_f), generator=g) * 2 - 1) / math.sqrt(in_f)).to(DTYPES[dtype])
        B = (0.3 * torch.randn((out_f, r), generator=g)).to(DTYPES[dtype])  # non-zero: a trained adapter
        tensors[f"base_model.model.{mod}.lora_A.weight"] = A
        tensors[f"base_model.model.{mod}.lora_B.weight"] = B
        # y += s·(x·Aᵀ)·Bᵀ = (x·(s·A)ᵀ)·Bᵀ: llama_forward's single scale stays 1, each module carries its own
        adapters[mod] = (scale * A.double(), B.double())
    logits = llama_forward(mcfg, W, adapters, 1.0, ids)
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), tensors, dtype)
    write_safetensors(os.path.join(d, "expected.safetensors"), {"logits": logits})
    base = llama_forward(mcfg, W, {}, 1.0, ids)
    print(f"{name}: {len(plan)} modules, ranks {sorted({r for r, _, _ in plan.values()})}, "
          f"max |logits - base| {float((logits - base).abs().max()):.3f}")


if __name__ == "__main__":
    make_base(10)
    make_adapter("regex_patterns", "F32", 11,
                 target_modules=r"model\.layers\.\d+\.(self_attn\.(q|v)_proj|mlp\.down_proj)", r=4, lora_alpha=8,
                 rank_pattern={r"layers\.1\..*": 2, "model.layers.0.self_attn.q_proj": 6},
                 alpha_pattern={r"layers\.0\.(self_attn\.v|mlp\.down)_proj": 12})
    make_adapter("all_linear", "F16", 12, target_modules="all-linear", layers_to_transform=[1], r=3,
                 lora_alpha=5, use_rslora=True)
    make_adapter("bf16_list", "BF16", 13, target_modules=["q_proj", "k_proj", "o_proj", "gate_proj", "up_proj"],
                 r=2, lora_alpha=4, rank_pattern={"o_proj": 4})
