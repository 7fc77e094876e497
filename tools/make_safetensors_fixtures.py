#!/usr/bin/env python3
"""Writes the safetensors fixtures of tests/unit/test_safetensors.c with the
reference `safetensors` package and PyTorch's dtype conversions.

    .venv/bin/python tools/make_safetensors_fixtures.py tests/fixtures/safetensors
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file


def main(out):
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(1234)

    # one tensor per dtype, values spelled out in expected.json as float32
    base = torch.randn(3, 5, generator=g)
    tensors = {
        "a.f32": base.clone(),
        "b.f16": (base * 3).to(torch.float16),
        "c.bf16": (base * 7).to(torch.bfloat16),
        "d.f64": (base.double() / 3),
        "e.i32": torch.arange(-6, 6, dtype=torch.int32).reshape(2, 2, 3),
        "f.i64": torch.arange(0, 10, dtype=torch.int64) * 1000003,
        "g.scalar": torch.tensor(2.5),
        "h.empty": torch.zeros(0, 4),
    }
    save_file(tensors, os.path.join(out, "mixed.safetensors"),
              metadata={"format": "pt", "note": "fixture"})
    expected = {name: {"shape": list(t.shape), "values": t.float().flatten().tolist()}
                for name, t in tensors.items()}
    with open(os.path.join(out, "mixed.json"), "w") as f:
        json.dump(expected, f, indent=1)

    # a sharded model: two files and an index
    shards = [{"w1": torch.randn(4, 3, generator=g), "w2": torch.randn(2, generator=g)},
              {"w3": torch.randn(3, 3, generator=g).to(torch.bfloat16)}]
    weight_map = {}
    for i, sh in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        os.makedirs(os.path.join(out, "sharded"), exist_ok=True)
        save_file(sh, os.path.join(out, "sharded", fname), metadata={"format": "pt"})
        for k in sh:
            weight_map[k] = fname
    with open(os.path.join(out, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 4 * 14 + 2 * 9}, "weight_map": weight_map},
                  f, indent=2)
    with open(os.path.join(out, "sharded.json"), "w") as f:
        json.dump({k: t.float().flatten().tolist() for sh in shards for k, t in sh.items()},
                  f, indent=1)

    # float32 -> bf16 / f16 rounding as torch does it: ties, subnormals,
    # overflow, NaN and infinities, plus random values over many scales
    special = [0.0, -0.0, 1.0, -1.0, 1.00390625, 1.005859375, 1.0029296875,
               65504.0, 65519.0, 65520.0, 70000.0, -1e6, 6.1e-5, 6.0e-8, 2.98e-8,
               5.96e-8, 1e-10, 3.0e38, 3.4028235e38, 1.1754944e-38, 1e-40,
               float("inf"), float("-inf"), 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -9,
               1.0 + 2 ** -11, 1.0 + 3 * 2 ** -11, 2049.0, 2051.0]
    rnd = torch.randn(500, generator=g) * torch.exp2(torch.randint(-30, 20, (500,),
                                                                   generator=g).float())
    src = torch.cat([torch.tensor(special, dtype=torch.float32), rnd])
    save_file({"src": src, "bf16": src.to(torch.bfloat16), "f16": src.to(torch.float16)},
              os.path.join(out, "convert.safetensors"))

    # checksums of the bundled TinyStories-656K weights, read by safetensors
    from safetensors.torch import load_file
    ts = load_file("data/models/TinyStories-656K/model.safetensors")
    with open(os.path.join(out, "tinystories.json"), "w") as f:
        json.dump({k: {"shape": list(t.shape), "sum": t.double().sum().item(),
                       "first": t.flatten()[:4].tolist()} for k, t in ts.items()}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/safetensors")
