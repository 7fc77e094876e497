#!/usr/bin/env python3
"""Golden tokenizer encodings for tests/unit/test_tokenizer.c, made with two
independent implementations: Hugging Face `tokenizers` and OpenAI `tiktoken`.

Writes tests/fixtures/tokenizer/:
  tinystories.jsonl       SentencePiece-style BPE (TinyStories-656K tokenizer.json):
                          {"text", "ids", "ids_cont", "ids_plain", "decoded"}
  tinystories-pairs/      the same tokenizer saved again by `tokenizers` (merges as
                          [left, right] pairs) and its goldens, same fields
  tinystories-metaspace/  the same vocabulary and merges with the newer spelling of
                          SentencePiece normalization (no normalizer; a Metaspace
                          pre-tokenizer and decoder, prepend_scheme "first", as in
                          Llama 2 files converted by recent transformers) and goldens
  tiny-sp/                a 9-token SentencePiece-style BPE written here, for what
                          TinyStories lacks: byte fallback tokens, fuse_unk, and an
                          added token that is not special (matched in plain mode too)
  llama3_extra.jsonl      Llama 3 edge cases: {"text", "ids", "ids_special"}
  hh_llama3.ids.gz        every chosen and rejected dialogue of
                          data/hh-rlhf/harmless-base-test.jsonl.gz, in file order
                          (chosen, rejected, chosen, ...), encoded as plain text with
                          tiktoken: one line per dialogue, ids separated by spaces.

Continuation goldens ("ids_cont"): deft's TOK_CONTINUATION encodes a text that
continues earlier text, so the SentencePiece dummy prefix '▁' is not added. With
`tokenizers` that is the same tokenizer with the Prepend("▁") step removed from
its normalizer (Replace(" " -> "▁") kept): see continuation_tokenizer(). The
equivalence holds for plain text only: `tokenizers` also re-normalizes its
added tokens with the changed normalizer ("▁<|end_story|>" becomes
"<|end_story|>"), whereas a continuation keeps matching them as the full
tokenizer does. So "ids_cont" is made in plain mode (special-token text is
text) and tested with TOK_CONTINUATION alone.

Run: .venv/bin/python tools/make_tokenizer_fixtures.py
"""
import gzip
import io
import json
import os
import random

import tiktoken
from tiktoken.load import load_tiktoken_bpe
import shutil

from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data")
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer")

# Meta's Llama 3 split rule (llama/tokenizer.py pat_str).
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def hh_dialogues():
    with gzip.open(os.path.join(DATA, "hh-rlhf", "harmless-base-test.jsonl.gz"), "rt",
                   encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            yield rec["chosen"]
            yield rec["rejected"]


def last_response(dialogue):
    return dialogue.rsplit("\n\nAssistant:", 1)[-1]


EDGE_TEXTS = [
    "", " ", "  ", "a", " a", "a  b", "a   b  ", "\n", " \n", "\n\n\n", "\t\tx", "x\r\ny",
    "Hello world", " Hello world", "Hello  world", "hello\u00a0world", "line\u0085next",
    "ideo\u3000space", "zero\u200bwidth", "1", "12", "123", "1234", "1234567", "3.14159",
    "100,000,000", "2024-01-01", "phone: 555 123 4567", "x=1+2*3", "I'm", "we'll", "THEY'RE",
    "You've", "don't", "'s", "''", "café", "naïve", "Ελληνικά", "Русский текст",
    "日本語のテキスト", "中文文本", "한국어", "עברית", "العربية", "हिन्दी", "🙂", "😀😀",
    "👩‍👩‍👧", "emoji 🎉 party", "a\u0301", "Ω≈ç√∫", "€100", "¿Qué?", "tab\tsep\tvalues",
    "   leading", "trailing   ", "<|end_story|>", "before<|end_story|>after",
    "<|start_story|>Once upon a time", "x <|end_story|> y", "<unk>", "Lily's cat.",
    "\"Quoted,\" she said.", "https://example.com/a?b=c&d=e", "snake_case_name",
    "CamelCaseName", "....", "!!!???", "a" * 200, "ab" * 300, "x" * 5000,
    "The quick brown fox jumps over the lazy dog. " * 20,
]


def continuation_tokenizer(path):
    """The same tokenizer without the dummy prefix: drop Prepend from the
    normalizer Sequence and keep the rest; for a Metaspace pre-tokenizer, the
    prepend scheme "never"."""
    tok = Tokenizer.from_file(path)
    spec = json.loads(tok.to_str())
    norm, pre = spec["normalizer"], spec["pre_tokenizer"]
    if pre and pre["type"] == "Metaspace":
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=pre["replacement"],
                                                     prepend_scheme="never",
                                                     split=pre["split"])
        return tok
    assert norm["type"] == "Sequence", norm
    steps = [n for n in norm["normalizers"] if n["type"] != "Prepend"]
    assert len(steps) == len(norm["normalizers"]) - 1
    assert [s["type"] for s in steps] == ["Replace"], steps
    tok.normalizer = normalizers.Sequence(
        [normalizers.Replace(s["pattern"]["String"], s["content"]) for s in steps])
    return tok


def write_sp_goldens(path, out, texts):
    """ids_cont is null where the text holds an added token that is matched
    in the raw text: the segment after it gets the dummy prefix in the full
    tokenizer, so also in a continuation, but not in continuation_tokenizer()."""
    raw_added = [t["content"] for t in json.load(open(path, encoding="utf-8"))["added_tokens"]
                 if not t["normalized"]]
    whole = Tokenizer.from_file(path)
    plain = Tokenizer.from_file(path)
    plain.encode_special_tokens = True  # special-token text is plain text
    cont = continuation_tokenizer(path)
    cont.encode_special_tokens = True
    with open(out, "w", encoding="utf-8") as f:
        for text in texts:
            ids = whole.encode(text, add_special_tokens=False).ids
            rec = {
                "text": text,
                "ids": ids,
                "ids_cont": (None if any(a in text for a in raw_added)
                             else cont.encode(text, add_special_tokens=False).ids),
                "ids_plain": plain.encode(text, add_special_tokens=False).ids,
                "decoded": whole.decode(ids, skip_special_tokens=False),
            }
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    print(f"{os.path.relpath(out, OUT)}: {len(texts)} texts")


def make_tinystories():
    folder = os.path.join(DATA, "models", "TinyStories-656K")
    path = os.path.join(folder, "tokenizer.json")
    rng = random.Random(1234)
    responses = [last_response(d) for d in hh_dialogues()]
    texts = EDGE_TEXTS + rng.sample(responses, 300)
    write_sp_goldens(path, os.path.join(OUT, "tinystories.jsonl"), texts)

    # variants, with the model's licence beside them
    variants = {}
    tok = Tokenizer.from_file(path)
    variants["tinystories-pairs"] = tok
    tok = Tokenizer.from_file(path)
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first",
                                                 split=False)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    variants["tinystories-metaspace"] = tok
    for name, tok in variants.items():
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"))
        for f in ("LICENSE", "NOTICE"):
            shutil.copyfile(os.path.join(folder, f), os.path.join(d, f))
        write_sp_goldens(os.path.join(d, "tokenizer.json"), os.path.join(d, "goldens.jsonl"),
                         texts[:150])
    merges = json.load(open(os.path.join(OUT, "tinystories-pairs", "tokenizer.json")))
    assert isinstance(merges["model"]["merges"][0], list), "expected [left, right] merges"


def make_tiny_sp():
    """A hand-made SentencePiece-style BPE exercising byte fallback, fused unk
    and a non-special added token; goldens from `tokenizers`."""
    def added(i, content, special):
        return {"id": i, "content": content, "single_word": False, "lstrip": False,
                "rstrip": False, "normalized": False, "special": special}
    spec = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [added(0, "<unk>", True), added(7, "[X]", False)],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None, "post_processor": None,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>",
            "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": True,
            "byte_fallback": True, "ignore_merges": False,
            "vocab": {"<unk>": 0, "\u2581": 1, "a": 2, "b": 3, "\u2581a": 4, "<0xC3>": 5,
                      "<0xA9>": 6, "[X]": 7, "ab": 8},
            "merges": ["\u2581 a", "a b"]},
    }
    d = os.path.join(OUT, "tiny-sp")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False, indent=1)
    texts = ["a[X]b", "[X]", "ab ab", "\u00e9", "a\u00e9 b", "xyz a", "[X] [X]", "xyzzy\u00e9q",
             " a", "b a  b", "\u00e9\u00e9[X]\u00e9", "q[X]q"]
    write_sp_goldens(path, os.path.join(d, "goldens.jsonl"), texts)


def llama3_encoding(ranks):
    """tiktoken with Meta's ranks, pattern and the Llama 3.0 special tokens
    (the added_tokens of data/llama3/tokenizer.json)."""
    added = json.load(open(os.path.join(DATA, "llama3", "tokenizer.json")))["added_tokens"]
    specials = {t["content"]: t["id"] for t in added}
    return tiktoken.Encoding(name="llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                             special_tokens=specials)


def make_llama3():
    ranks = load_tiktoken_bpe(os.path.join(DATA, "llama3", "tokenizer.model"))
    enc = llama3_encoding(ranks)
    hf = Tokenizer.from_file(os.path.join(DATA, "llama3", "tokenizer.json"))
    rng = random.Random(99)
    letters = "abcdefghijklmnopqrstuvwxyz"
    extra = EDGE_TEXTS + [
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "plain <|eot_id|> inside", "<|eot_id|", "<|reserved_special_token_250|>",
        "".join(rng.choice(letters) for _ in range(3000)),  # one long pre-token
        "".join(rng.choice(letters + "   .,\n0123456789") for _ in range(3000)),
        "9" * 1000, " " * 1000 + "x", "\n" * 500 + "x", " \n" * 2000, "\t " * 1000,
        "\u0085 " * 300, " \r\n" * 500, "1 " * 1000, "\u3000" * 500, "!?" * 1000,
    ]
    n_disagree = 0
    with open(os.path.join(OUT, "llama3_extra.jsonl"), "w", encoding="utf-8") as f:
        for text in extra:
            ids = enc.encode_ordinary(text)
            ids_special = enc.encode(text, allowed_special="all")
            # the second independent implementation must agree
            if hf.encode(text, add_special_tokens=False).ids != ids_special:
                n_disagree += 1
                print("tokenizers and tiktoken disagree on", repr(text[:60]))
            f.write(json.dumps({"text": text, "ids": ids, "ids_special": ids_special},
                               ensure_ascii=False) + "\n")
    print(f"llama3_extra.jsonl: {len(extra)} texts, {n_disagree} tiktoken/tokenizers "
          "disagreements")

    n_ids = 0
    # mtime=0: the same ids give the same bytes, so a rerun leaves git clean
    raw = gzip.GzipFile(os.path.join(OUT, "hh_llama3.ids.gz"), "wb", compresslevel=9, mtime=0)
    with io.TextIOWrapper(raw, encoding="ascii") as f:
        for n, text in enumerate(hh_dialogues()):
            ids = enc.encode_ordinary(text)
            n_ids += len(ids)
            f.write(" ".join(map(str, ids)) + "\n")
    print(f"hh_llama3.ids.gz: {n + 1} dialogues, {n_ids} ids")


def main():
    os.makedirs(OUT, exist_ok=True)
    make_tinystories()
    make_tiny_sp()
    make_llama3()


if __name__ == "__main__":
    main()
