#!/usr/bin/env python3
"""Reference token counts for `deft qdiff`, computed independently of deft.

Reads HH-RLHF pairs with plain json/gzip, splits each pair into prompt and
responses the way docs/data-formats.md describes (the prompt is the longest
common prefix ending with "\\n\\nAssistant:"), tokenizes every response with
OpenAI's tiktoken using the Llama 3 ranks of data/llama3/tokenizer.model (plain
text: no special tokens, no BOS/EOS), and counts tokens of chosen (positive)
and rejected (negative) responses. Writes the nonzero counts as gzip JSON:

    {"vocab_size", "records_read", "records_used", "skipped": {reason: n},
     "tokens_positive", "tokens_negative", "positive": [[id, n], ...],
     "negative": [[id, n], ...]}

usage: make_qdiff_fixture.py [DATA.jsonl.gz] [TOKENIZER.model] [OUT.json.gz]
"""
import collections
import gzip
import json
import sys

import tiktoken
from tiktoken.load import load_tiktoken_bpe

# Meta's Llama 3 pre-tokenizer split rule (the same as in their tokenizer.py).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
N_SPECIAL = 256  # <|begin_of_text|> ... reserved tokens, ids 128000..128255
MARKER = "\n\nAssistant:"


def llama3_encoding(path):
    ranks = load_tiktoken_bpe(path)
    specials = {f"<|special_{i}|>": len(ranks) + i for i in range(N_SPECIAL)}
    return tiktoken.Encoding(name="llama3", pat_str=LLAMA3_PATTERN,
                             mergeable_ranks=ranks, special_tokens=specials)


def split_pair(chosen, rejected):
    """(prompt, chosen response, rejected response), or a skip reason."""
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    end = chosen.rfind(MARKER, 0, n)
    if end < 0 or end + len(MARKER) > n:
        return "no_marker"
    cut = end + len(MARKER)
    a, b = chosen[cut:], rejected[cut:]
    if not a.strip(" \t\n\r\f\v") or not b.strip(" \t\n\r\f\v"):
        return "empty_response"
    if a == b:
        return "identical"
    return chosen[:cut], a, b


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "data/hh-rlhf/harmless-base-test.jsonl.gz"
    tok = sys.argv[2] if len(sys.argv) > 2 else "data/llama3/tokenizer.model"
    out = sys.argv[3] if len(sys.argv) > 3 else "tests/fixtures/qdiff/hh_harmless_counts.json.gz"
    enc = llama3_encoding(tok)
    pos, neg = collections.Counter(), collections.Counter()
    skipped = collections.Counter()
    read = used = 0
    with gzip.open(data, "rt", encoding="utf-8") as f:
        for line in f:
            read += 1
            obj = json.loads(line)
            parts = split_pair(obj["chosen"], obj["rejected"])
            if isinstance(parts, str):
                skipped[parts] += 1
                continue
            used += 1
            _, good, bad = parts
            pos.update(enc.encode_ordinary(good))
            neg.update(enc.encode_ordinary(bad))
    result = {
        "source": data,
        "tokenizer": tok,
        "vocab_size": enc.n_vocab,
        "records_read": read,
        "records_used": used,
        "skipped": dict(sorted(skipped.items())),
        "tokens_positive": sum(pos.values()),
        "tokens_negative": sum(neg.values()),
        "positive": sorted([k, v] for k, v in pos.items()),
        "negative": sorted([k, v] for k, v in neg.items()),
    }
    with gzip.GzipFile(out, "wb", mtime=0) as f:
        f.write(json.dumps(result, separators=(",", ":")).encode())
    print(f"{out}: {read} read, {used} used, {result['tokens_positive']} positive and "
          f"{result['tokens_negative']} negative tokens, skipped {dict(skipped)}")


if __name__ == "__main__":
    main()
