#!/usr/bin/python3
"""Reference values for full fine-tuning (tests/test_model.c, tests/test_train.c): the gradient of every base
weight of the tiny fixtures that make_llama_reference.py wrote (no adapter; every family, biases and q/k norms
included), and one AdamW update of all of them, computed with torch in float64 from the float32 values on disk.

For each fixture <name>/ this reads config.json, model.safetensors and
batch.json and writes:
  full_expected.json        {"loss": float, "count": int, "grad_norm": float, "adamw": {the optimizer settings}}
  full_grads.safetensors    dloss/dW for every tensor of model.safetensors, under its own name (F32)
  full_step.safetensors     every tensor after one update (F32): torch.nn.utils.clip_grad_norm_(params, clip), then
                            torch.optim.AdamW with two parameter groups as transformers' Trainer builds them:
                            weight decay on every matrix, none on the 1-D RMSNorm weights and biases
The tied fixture has no lm_head.weight: its embedding's gradient holds both uses (input embedding and head).
AdamW's eps is 1e-3 here, not 1e-8: the first update is lr·g/(|g| + eps), and with eps far below |g| it would be
lr·sign(g), which a float32 gradient cannot reproduce for the few entries whose |g| is near float32 noise.
Run: /usr/bin/python3 tests/reference/make_full_reference.py (torch 1.13)."""
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_llama_reference import FIXTURES, llama_forward, read_safetensors_f32, write_safetensors  # noqa: E402

ADAMW = {"lr": 1e-2, "weight_decay": 0.1, "betas": [0.9, 0.999], "eps": 1e-3, "max_grad_norm": 1.0}


def make(name):
    d = os.path.join(HERE, name)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(d, "batch.json")) as f:
        batch = json.load(f)
    W32 = read_safetensors_f32(os.path.join(d, "model.safetensors"))
    ids = torch.tensor(batch["input_ids"])
    labels = torch.tensor(batch["labels"])
    V = cfg["vocab_size"]

    W = {n: t.double().requires_grad_() for n, t in W32.items()}
    logits = llama_forward(cfg, W, {}, 1.0, ids)
    shift_labels = labels[:, 1:].reshape(-1)
    loss = torch.nn.functional.cross_entropy(logits[:, :-1, :].reshape(-1, V), shift_labels, ignore_index=-100)
    count = int((shift_labels != -100).sum())
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in W.items()}

    params = [W[n] for n in sorted(W)]
    norm = torch.nn.utils.clip_grad_norm_(params, ADAMW["max_grad_norm"])
    decay = [W[n] for n in sorted(W) if W[n].dim() > 1]
    no_decay = [W[n] for n in sorted(W) if W[n].dim() == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAMW["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAMW["lr"], betas=tuple(ADAMW["betas"]), eps=ADAMW["eps"])
    opt.step()

    write_safetensors(os.path.join(d, "full_grads.safetensors"), grads)
    write_safetensors(os.path.join(d, "full_step.safetensors"), {n: p.detach() for n, p in W.items()})
    with open(os.path.join(d, "full_expected.json"), "w") as f:
        json.dump({"loss": loss.item(), "count": count, "grad_norm": float(norm), "adamw": ADAMW}, f, indent=2)
    print(f"{name}: loss {loss.item():.6f} over {count} targets, {len(grads)} weight gradients, "
          f"grad norm {float(norm):.4f}")


if __name__ == "__main__":
    for name in FIXTURES:
        make(name)
