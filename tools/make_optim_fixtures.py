#!/usr/bin/env python3
"""Golden AdamW trajectories for tests/unit/test_optim.c: torch.optim.AdamW
with two parameter groups (weight decay on / off), gradient-norm clipping by
torch.nn.utils.clip_grad_norm_, and the learning-rate schedules of
transformers (constant with warmup, linear and cosine with warmup).

    .venv/bin/python tools/make_optim_fixtures.py tests/fixtures/optim/adamw.json
"""
import json
import sys

import torch
from transformers import (get_constant_schedule_with_warmup,
                          get_cosine_schedule_with_warmup,
                          get_linear_schedule_with_warmup)

SHAPES = [(7,), (3, 4), (5,)]
DECAY = [True, False, True]
STEPS = 10


def run(schedule, lr, wd, max_norm, warmup, seed):
    g = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in SHAPES]
    init = [p.detach().flatten().tolist() for p in params]
    groups = [{"params": [p for p, d in zip(params, DECAY) if d], "weight_decay": wd},
              {"params": [p for p, d in zip(params, DECAY) if not d], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)
    make = {"constant": get_constant_schedule_with_warmup,
            "linear": get_linear_schedule_with_warmup,
            "cosine": get_cosine_schedule_with_warmup}[schedule]
    if schedule == "constant":
        sched = make(opt, num_warmup_steps=warmup)
    else:
        sched = make(opt, num_warmup_steps=warmup, num_training_steps=STEPS)
    steps = []
    for k in range(STEPS):
        # gradients of alternating scale, so clipping is active on some steps only
        scale = 3.0 if k % 2 == 0 else 0.05
        grads = [torch.randn(s, generator=g) * scale for s in SHAPES]
        for p, gr in zip(params, grads):
            p.grad = gr.clone()
        lr_used = opt.param_groups[0]["lr"]
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if max_norm > 0 else None
        opt.step()
        sched.step()
        steps.append({
            "grads": [gr.flatten().tolist() for gr in grads],
            "lr": lr_used,
            "grad_norm": float(norm) if norm is not None else None,
            "params": [p.detach().flatten().tolist() for p in params],
            "m": [opt.state[p]["exp_avg"].flatten().tolist() for p in params],
            "v": [opt.state[p]["exp_avg_sq"].flatten().tolist() for p in params],
        })
    return {"schedule": schedule, "lr": lr, "weight_decay": wd, "max_grad_norm": max_norm,
            "warmup_steps": warmup, "total_steps": STEPS, "beta1": 0.9, "beta2": 0.95,
            "eps": 1e-8, "shapes": [list(s) for s in SHAPES], "decay": DECAY,
            "init": init, "steps": steps}


def main(out):
    cases = [run("cosine", 1e-2, 0.1, 1.0, 3, 1),
             run("linear", 3e-3, 0.01, 0.5, 2, 2),
             run("constant", 1e-3, 0.1, 0.0, 0, 3)]
    with open(out, "w") as f:
        json.dump(cases, f)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/optim/adamw.json")
