#!/usr/bin/env python3
"""Checks a folder written by `deft init` with transformers: it loads as
LlamaForCausalLM with every weight present, the shapes match a model that
transformers builds from the same config.json, the statistics match its
initialisation (normal(0, initializer_range), norms at one), and a forward
pass gives finite logits. Prints one line per check; exits 1 on failure.

    deft init --model-config conf/models/tiny-llama3.json --out /tmp/m --seed 1
    .venv/bin/python tools/check_init_model.py /tmp/m
"""
import sys

import torch
from transformers import AutoConfig, LlamaForCausalLM


def main(folder):
    ok = True

    def check(cond, what):
        nonlocal ok
        ok &= bool(cond)
        print(("ok   " if cond else "FAIL ") + what)

    cfg = AutoConfig.from_pretrained(folder)
    model, info = LlamaForCausalLM.from_pretrained(folder, output_loading_info=True,
                                                   dtype=torch.float32)
    check(not info["missing_keys"] and not info["unexpected_keys"],
          f"loads: missing {info['missing_keys']}, unexpected {info['unexpected_keys']}")
    ref = LlamaForCausalLM(cfg)
    ref_shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    got_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check(ref_shapes == got_shapes, f"{len(got_shapes)} tensors shaped as transformers builds")
    std = cfg.initializer_range
    for name, p in model.named_parameters():
        if p.ndim == 2:
            m, s = p.mean().item(), p.std().item()
            tol = 6 * std / p.numel() ** 0.5
            check(abs(m) < tol and abs(s / std - 1) < 0.02 + 6 / p.numel() ** 0.5,
                  f"{name}: mean {m:+.2e} std {s:.5f} (want 0, {std})")
        else:
            check(torch.all(p == 1).item(), f"{name}: all ones")
    ids = torch.randint(0, cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(ids).logits
    check(logits.shape == (2, 16, cfg.vocab_size) and torch.isfinite(logits).all().item(),
          f"forward: logits {tuple(logits.shape)} finite, std {logits.std().item():.4f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
