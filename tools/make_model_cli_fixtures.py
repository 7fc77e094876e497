#!/usr/bin/env python3
"""Golden values for tests/cli/model_cli.sh from transformers on the bundled
TinyStories-656K model: per-token log-probabilities of a few sequences
(JSON lines as `deft logprobs` reads and writes them) and greedy 32-token
generations of two prompts.

    .venv/bin/python tools/make_model_cli_fixtures.py tests/fixtures/cli
"""
import json
import os
import sys

import torch
from transformers import AutoTokenizer, LlamaForCausalLM

MODEL = "data/models/TinyStories-656K"
PROMPTS = ["Once upon a time", "The little dog was sad because"]


def main(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(MODEL)
    model = LlamaForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    texts = ["Once upon a time, there was a little girl named Lily.",
             "Tom and Sam went to the park to play with a big red ball. They had fun.",
             "Hi"]
    seqs = [tok(t).input_ids for t in texts]
    g = torch.Generator().manual_seed(7)
    seqs.append(torch.randint(0, model.config.vocab_size, (40,), generator=g).tolist())
    seqs.append([1])
    with open(os.path.join(out, "logprobs_in.jsonl"), "w") as fin, \
            open(os.path.join(out, "logprobs_want.jsonl"), "w") as fw:
        for ids in seqs:
            fin.write(json.dumps({"ids": ids}) + "\n")
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0].float()
            lp = torch.log_softmax(logits, -1)[:-1].gather(1, torch.tensor(ids[1:])[:, None])
            fw.write(json.dumps({"logprobs": lp[:, 0].tolist()}) + "\n")
    with open(os.path.join(out, "generate_want.jsonl"), "w") as f:
        for p in PROMPTS:
            ids = tok(p, return_tensors="pt").input_ids
            with torch.no_grad():
                gen = model.generate(ids, max_new_tokens=32, do_sample=False,
                                     attention_mask=torch.ones_like(ids))
            f.write(json.dumps({"prompt": p, "prompt_ids": ids[0].tolist(),
                                "ids": gen[0, ids.shape[1]:].tolist()}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/cli")
