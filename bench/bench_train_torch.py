"""PyTorch side of the training-step benchmark (see bench/run_train.sh and bench/bench_train.c): the same Llama
(Hugging Face LlamaForCausalLM eager maths, written here in plain torch since transformers is not installed), loaded
from the checkpoint bench_train wrote (DIR/<config>/model.safetensors, tied embeddings), LoRA r 16, alpha 16 on all
7 projections as PEFT builds it (frozen base, requires_grad only on lora_A and lora_B, B = 0 at start), AdamW
(lr 1e-4, weight decay 0) on the adapters, the same (B, T) batch of ids. One configuration per process, so the peak
RSS (getrusage ru_maxrss, read right after the timed steps) is this configuration's alone.

    /usr/bin/python3 bench/bench_train_torch.py --config stories260k|d512|d768|d2048|d4096 --dir DIR [--threads 2]
        [--warmup 2] [--steps 5]

Prints human-readable lines, then "RESULT key=value ..." for run_train.sh. GFLOP/s uses bench_train.c's count.
"""
import argparse
import json
import math
import os
import resource
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

CONFIGS = {  # D, L, H, KV, F, V, B, T (REFERENCE.md section 7)
    "stories260k": (64, 5, 8, 4, 172, 512, 8, 256),
    "d512": (512, 8, 8, 8, 1376, 4096, 4, 256),
    "d768": (768, 12, 12, 12, 2048, 32000, 4, 256),
    "d2048": (2048, 4, 32, 4, 5632, 32000, 4, 256),  # TinyLlama-1.1B's layer shapes (bench_train.c)
    "d4096": (4096, 2, 32, 32, 11008, 32000, 1, 512),  # Llama-2-7B's
}
RANK = 16


def load_safetensors(path):
    """F32 tensors only (bench_train writes F32): one owned copy each, as torch would hold a loaded model."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", name
        a, b = info["data_offsets"]
        arr = np.fromfile(path, dtype="<f4", count=(b - a) // 4, offset=8 + n + a)
        out[name] = torch.from_numpy(arr).view(info["shape"])
    return out


class LoraLinear(torch.nn.Module):
    """peft.tuners.lora.Linear: y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ, W frozen, dropout 0 (identity)."""

    def __init__(self, weight, r, alpha):
        super().__init__()
        out_f, in_f = weight.shape
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.lora_A = torch.nn.Parameter(torch.empty(r, in_f))
        torch.nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # PEFT's init for lora_A
        self.lora_B = torch.nn.Parameter(torch.zeros(out_f, r))
        self.scaling = alpha / r

    def forward(self, x):
        return F.linear(x, self.weight) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling


class RMSNorm(torch.nn.Module):
    def __init__(self, weight, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.eps = eps

    def forward(self, x):  # LlamaRMSNorm
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Layer(torch.nn.Module):
    def __init__(self, W, l, cfg):
        super().__init__()
        D, L, H, KV, Fd, V, B, T = cfg
        p = f"model.layers.{l}."
        self.H, self.KV, self.hd = H, KV, D // H
        self.input_layernorm = RMSNorm(W[p + "input_layernorm.weight"], 1e-5)
        self.post_attention_layernorm = RMSNorm(W[p + "post_attention_layernorm.weight"], 1e-5)
        for n in ["q_proj", "k_proj", "v_proj", "o_proj"]:
            setattr(self, n, LoraLinear(W[p + "self_attn." + n + ".weight"], RANK, RANK))
        for n in ["gate_proj", "up_proj", "down_proj"]:
            setattr(self, n, LoraLinear(W[p + "mlp." + n + ".weight"], RANK, RANK))

    def forward(self, x, cos, sin, mask):
        Bsz, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(Bsz, T, self.H, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(Bsz, T, self.KV, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(Bsz, T, self.KV, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if self.H != self.KV:  # repeat_kv
            k = k.repeat_interleave(self.H // self.KV, dim=1)
            v = v.repeat_interleave(self.H // self.KV, dim=1)
        s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.hd) + mask
        a = torch.matmul(torch.softmax(s, dim=-1, dtype=torch.float32), v)
        a = a.transpose(1, 2).reshape(Bsz, T, self.H * self.hd)
        x = x + self.o_proj(a)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(torch.nn.Module):
    def __init__(self, W, cfg):
        super().__init__()
        D, L, H, KV, Fd, V, B, T = cfg
        self.embed = torch.nn.Parameter(W["model.embed_tokens.weight"], requires_grad=False)  # tied lm_head
        self.layers = torch.nn.ModuleList([Layer(W, l, cfg) for l in range(L)])
        self.norm = RMSNorm(W["model.norm.weight"], 1e-5)
        hd = D // H
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        emb = torch.cat([torch.outer(torch.arange(T).float(), inv_freq)] * 2, dim=-1)
        self.register_buffer("cos", emb.cos())
        self.register_buffer("sin", emb.sin())
        self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1))

    def forward(self, ids, labels):
        x = F.embedding(ids, self.embed)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.mask)
        logits = F.linear(self.norm(x), self.embed).float()
        V = logits.shape[-1]
        return F.cross_entropy(logits[:, :-1, :].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)


def batch_ids(n, V):
    """bench_train's batch: splitmix64 from state 3, each id = output mod V (so the first losses agree)."""
    M, x, out = (1 << 64) - 1, 3, []
    for _ in range(n):
        x = (x + 0x9E3779B97F4A7C15) & M
        z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        out.append((z ^ (z >> 31)) % V)
    return out


def step_flops(cfg):  # as bench_train.c
    D, L, H, KV, Fd, V, B, T = cfg
    N, hd = B * T, D // H
    P = D * H * hd + 2 * D * KV * hd + H * hd * D + 3 * D * Fd
    io = (D + H * hd) + 2 * (D + KV * hd) + (H * hd + D) + 3 * (D + Fd)
    return L * (4 * N * P + 6 * N * RANK * io + 12 * B * H * T * T * hd) + 4 * N * D * V


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True, choices=sorted(CONFIGS))
    ap.add_argument("--dir", required=True, help="the --dir of bench_train (holds <config>/model.safetensors)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    cfg = CONFIGS[args.config]
    D, L, H, KV, Fd, V, B, T = cfg

    W = load_safetensors(os.path.join(args.dir, args.config, "model.safetensors"))
    model = Llama(W, cfg)
    del W
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    ids = torch.tensor(batch_ids(B * T, V)).view(B, T)
    labels = ids.clone()

    times, loss0 = [], None
    for s in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = model(ids, labels)
        loss.backward()
        opt.step()
        t = time.perf_counter() - t0
        loss0 = loss.item() if loss0 is None else loss0  # B = 0: the base model's loss, as bench_train's
        if s >= args.warmup:
            times.append(t)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    med = statistics.median(times)
    flops = step_flops(cfg)
    trainable = sum(p.numel() for p in params)
    print(f"torch {torch.__version__} config {args.config}: {trainable} trainable, {args.threads} threads")
    print(f"step (median of {args.steps} after {args.warmup} warm-up): {1e3 * med:.1f} ms "
          f"(min {1e3 * min(times):.1f}, max {1e3 * max(times):.1f}), {B * T / med:.0f} tokens/s, "
          f"first loss {loss0:.6f}, {flops / med * 1e-9:.1f} GFLOP/s, peak RSS {rss_mib:.0f} MiB")
    print(f"RESULT config={args.config} ms={1e3 * med:.2f} ms_min={1e3 * min(times):.2f} "
          f"ms_max={1e3 * max(times):.2f} tokens_s={B * T / med:.1f} gflops={flops / med * 1e-9:.2f} "
          f"rss_mib={rss_mib:.1f} loss0={loss0:.6f}")


if __name__ == "__main__":
    main()
