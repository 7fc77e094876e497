#!/usr/bin/env python3
"""Golden values for the Llama model tests (tests/unit/test_llama.c), made with
PyTorch + transformers, an implementation independent of deft's.

Writes into tests/fixtures/model/:
  tinystories.safetensors  logits of the real TinyStories-656K model on a
                           right-padded batch of 3 sequences, and 64 greedy
                           tokens from a prompt;
  tiny-llama3/             a seeded random Llama-3-style model (GQA, rope
                           scaling "llama3", untied head) as a Hugging Face
                           folder, and expected.safetensors with its logits,
                           loss and the autograd gradient of every parameter.

Run: .venv/bin/python tools/make_model_fixtures.py
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "model")


def right_pad(seqs, pad):
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad, dtype=torch.int64)
    mask = torch.zeros((len(seqs), T), dtype=torch.int64)
    for b, s in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s)
        mask[b, : len(s)] = 1
    return ids, mask


def tinystories():
    path = os.path.join(ROOT, "data", "models", "TinyStories-656K")
    model = LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32,
                                             attn_implementation="eager").eval()
    tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    bos = model.config.bos_token_id
    texts = ["Once upon a time, there was a little girl named Lily. She loved to play",
             "The cat sat on the mat and looked at the",
             "Tom had a red ball."]
    seqs = [[bos] + tok.encode(t, add_special_tokens=False).ids for t in texts]
    # keep the fixture small: at most 16 tokens each, three different lengths
    seqs = [seqs[0][:16], seqs[1][:11], seqs[2][:6]]
    ids, mask = right_pad(seqs, 0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits

    prompt = [bos] + tok.encode("Once upon a time, there was a little dog",
                                add_special_tokens=False).ids
    with torch.no_grad():
        gen = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt),
                             dtype=torch.int64), do_sample=False, max_new_tokens=64,
                             repetition_penalty=1.0, eos_token_id=model.config.eos_token_id,
                             pad_token_id=model.config.eos_token_id)
    new = gen[0, len(prompt):]
    save_file({
        "input_ids": ids.to(torch.int32).contiguous(),
        "attention_mask": mask.to(torch.int32).contiguous(),
        "logits": logits.contiguous(),
        "prompt_ids": torch.tensor(prompt, dtype=torch.int32),
        "greedy_ids": new.to(torch.int32).contiguous(),
    }, os.path.join(OUT, "tinystories.safetensors"))
    print("tinystories: lengths", [len(s) for s in seqs], "greedy", len(new), "tokens")


def tiny_llama3():
    folder = os.path.join(OUT, "tiny-llama3")
    os.makedirs(folder, exist_ok=True)
    # config.json in the layout of Meta's Llama 3.1 releases (rope_scaling beside
    # rope_theta), which is what checkpoints in the wild carry
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": 512, "hidden_size": 64, "intermediate_size": 176,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "hidden_act": "silu", "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        # original_max_position_embeddings 16 puts head_dim 16's wavelengths on both
        # sides of the smoothing band, so the scaling really changes frequencies
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
        "attention_bias": False, "mlp_bias": False, "initializer_range": 0.1,
        "torch_dtype": "float32",
    }
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    cfg = LlamaConfig.from_pretrained(folder)
    cfg._attn_implementation = "eager"
    torch.manual_seed(1234)
    model = LlamaForCausalLM(cfg).float()
    with torch.no_grad():
        # norm weights start at 1; move them so a norm-weight mistake shows
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})

    g = torch.Generator().manual_seed(99)
    lens = [16, 11, 5]
    seqs = [torch.randint(3, cfg.vocab_size, (n,), generator=g).tolist() for n in lens]
    ids, mask = right_pad(seqs, 0)
    model.train()
    out = model(input_ids=ids, attention_mask=mask)
    logits = out.logits
    # token-mean next-token NLL over real positions
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    tgt = ids[:, 1:]
    valid = mask[:, 1:].bool()
    nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
    loss = nll[valid].sum() / valid.sum()
    loss.backward()
    tensors = {
        "input_ids": ids.to(torch.int32).contiguous(),
        "attention_mask": mask.to(torch.int32).contiguous(),
        "logits": logits.detach().contiguous(),
        "loss": loss.detach().reshape(1),
        "inv_freq": model.model.rotary_emb.inv_freq.detach().float().contiguous(),
    }
    for name, p in model.named_parameters():
        tensors["grad." + name] = p.grad.detach().contiguous()
    save_file(tensors, os.path.join(folder, "expected.safetensors"))
    print("tiny-llama3: loss", loss.item(), "params", len(list(model.parameters())))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    tinystories()
    tiny_llama3()
    sys.exit(0)
