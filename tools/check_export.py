#!/usr/bin/env python3
"""Check a folder written by `deft export` with independent code.

1. transformers loads it (AutoModelForCausalLM, AutoTokenizer);
2. every parameter equals the checkpoint's /params dataset (read with h5py);
3. transformers' per-token log-probs of a few token sequences equal those of
   `deft logprobs` on the same folder (within 1e-4).

usage: tools/check_export.py --deft build/deft --checkpoint RUN/checkpoints/step-N.h5
                             --export RUN/export
"""
import argparse
import json
import subprocess
import sys

import h5py
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--deft", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--export", required=True)
    a = ap.parse_args()

    model = AutoModelForCausalLM.from_pretrained(a.export, dtype=torch.float32)
    model.eval()
    tok = AutoTokenizer.from_pretrained(a.export)

    worst = 0.0
    with h5py.File(a.checkpoint, "r") as f:
        names = list(f["params"].keys())
        state = model.state_dict()
        for name in names:
            want = np.asarray(f["params"][name], dtype=np.float32)
            got = state[name].numpy()
            if got.shape != want.shape:
                sys.exit(f"{name}: shape {got.shape} in the export, "
                         f"{want.shape} in the checkpoint")
            worst = max(worst, float(np.abs(got - want).max()))
    print(f"params: {len(names)} tensors, largest difference {worst:g}")

    texts = ["Once upon a time, there was a little dog.", "The sun was hot. Tom said"]
    seqs = [tok(t)["input_ids"] for t in texts]
    lines = "".join(json.dumps({"ids": s}) + "\n" for s in seqs)
    out = subprocess.run([a.deft, "logprobs", "--model", a.export], input=lines,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    lp_worst = 0.0
    for s, line in zip(seqs, out):
        ids = torch.tensor([s])
        with torch.no_grad():
            logits = model(ids).logits[0].double()
        ref = torch.log_softmax(logits, -1)[:-1].gather(1, ids[0, 1:, None])[:, 0].numpy()
        got = np.asarray(json.loads(line)["logprobs"])
        lp_worst = max(lp_worst, float(np.abs(ref - got).max()))
    print(f"logprobs: {len(seqs)} sequences, largest difference {lp_worst:g}")
    ok = worst == 0.0 and lp_worst < 1e-4 and len(out) == len(seqs)
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
