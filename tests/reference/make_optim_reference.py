#!/usr/bin/python3
"""Reference updates for test_train: a few steps of torch.optim.AdamW / torch.optim.SGD on fixed parameters and
fixed gradients, with torch.nn.utils.clip_grad_norm_ and the learning-rate schedules of transformers
(get_{constant,linear,cosine}_schedule_with_warmup, whose lambdas are transcribed below from
transformers/optimization.py, since transformers is not installed here) driven by torch's LambdaLR.

Writes optim_reference.txt: one block per case, whitespace-separated tokens:
    case NAME
    opt adamw|sgd lr WD beta1 beta2 eps momentum dampening nesterov
    sched constant|linear|cosine warmup total clip
    sizes N s1 .. sN
    init <sum(s) floats>              parameters before the first step
    step k lr norm                    k from 1; lr used by the update; total grad norm before clipping
    grad <floats>                     the gradient given (before clipping)
    param <floats>                    parameters after the update
Run: /usr/bin/python3 tests/reference/make_optim_reference.py (from the repository root).
"""
import math
import os

import numpy as np
import torch

torch.set_default_dtype(torch.float32)
HERE = os.path.dirname(os.path.abspath(__file__))


def lambda_constant(warmup):  # get_constant_schedule_with_warmup
    def f(step):
        if step < warmup:
            return float(step) / float(max(1.0, warmup))
        return 1.0
    return f


def lambda_linear(warmup, total):  # get_linear_schedule_with_warmup
    def f(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        return max(0.0, float(total - step) / float(max(1, total - warmup)))
    return f


def lambda_cosine(warmup, total, num_cycles=0.5):  # get_cosine_schedule_with_warmup
    def f(step):
        if step < warmup:
            return float(step) / float(max(1, warmup))
        progress = float(step - warmup) / float(max(1, total - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress)))
    return f


CASES = [
    # name, optimizer, kwargs, schedule, warmup, total, clip
    ("adamw_linear_clip", "adamw", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1), "linear", 2, 6, 0.5),
    ("adamw_constant_noclip", "adamw", dict(lr=3e-3, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.0), "constant", 0, 5,
     0.0),
    ("adamw_cosine_warmup", "adamw", dict(lr=5e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01), "cosine", 2, 7,
     1.0),
    ("sgd_momentum_cosine_clip", "sgd", dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=False),
     "cosine", 1, 6, 1.0),
    ("sgd_nesterov_linear", "sgd", dict(lr=0.05, momentum=0.8, dampening=0.0, weight_decay=0.0, nesterov=True),
     "linear", 0, 5, 0.0),
    ("sgd_dampening_constant", "sgd", dict(lr=0.2, momentum=0.5, dampening=0.3, weight_decay=0.05, nesterov=False),
     "constant", 1, 5, 0.3),
    ("sgd_plain", "sgd", dict(lr=0.1, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False), "constant", 0,
     4, 0.0),
]
SIZES = [6, 10]


def fmt(x):
    return " ".join("%.9g" % v for v in np.asarray(x, dtype=np.float32).ravel())


def main():
    rng = np.random.default_rng(20261)
    out = []
    for name, kind, kw, sched, warmup, total, clip in CASES:
        params = [torch.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in SIZES]
        if kind == "adamw":
            opt = torch.optim.AdamW(params, **kw)
            line = "opt adamw %r %r %r %r %r 0 0 0" % (kw["lr"], kw["weight_decay"], kw["betas"][0], kw["betas"][1],
                                                       kw["eps"])
        else:
            opt = torch.optim.SGD(params, **kw)
            line = "opt sgd %r %r 0 0 0 %r %r %d" % (kw["lr"], kw["weight_decay"], kw["momentum"], kw["dampening"],
                                                     int(kw["nesterov"]))
        lam = {"constant": lambda_constant(warmup), "linear": lambda_linear(warmup, total),
               "cosine": lambda_cosine(warmup, total)}[sched]
        lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
        out += ["case " + name, line, "sched %s %d %d %r" % (sched, warmup, total, clip),
                "sizes %d %s" % (len(SIZES), " ".join(map(str, SIZES))),
                "init " + fmt(np.concatenate([p.detach().numpy() for p in params]))]
        for k in range(1, total + 1):
            # gradients of growing size, one step much larger, so that clipping engages on some steps only
            scale = 3.0 if k == 2 else 0.4
            grads = [(scale * rng.standard_normal(s)).astype(np.float32) for s in SIZES]
            for p, g in zip(params, grads):
                p.grad = torch.tensor(g)
            if clip > 0:
                norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            else:
                norm = float(torch.norm(torch.stack([torch.norm(p.grad) for p in params])))
            lr = opt.param_groups[0]["lr"]
            opt.step()
            lr_sched.step()
            out += ["step %d %r %r" % (k, lr, norm), "grad " + fmt(np.concatenate(grads)),
                    "param " + fmt(np.concatenate([p.detach().numpy() for p in params]))]
    with open(os.path.join(HERE, "optim_reference.txt"), "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
