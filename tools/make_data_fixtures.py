#!/usr/bin/env python3
"""Write the preference-data test fixtures and their expected reading results.

Writes small hand-made JSONL files to tests/fixtures/data/ and, for them and
for the bundled real data, tests/fixtures/data/expected.json: per file the
lines read, records used, skips by reason with first line numbers, and a
sha256 over every used record (prompt, ranked responses, rewards, subset).
It is an independent reading of the rules in docs/data-formats.md written
with plain json/zlib; tests/unit/test_records.c compares the C reader to it.

Usage: python3 tools/make_data_fixtures.py   (from the repository root)
"""
import gzip
import hashlib
import json
import math
import os
import zlib

OUT = "tests/fixtures/data"
MARKER = "\n\nAssistant:"
REASONS = ["invalid_json", "invalid_utf8", "missing_field", "wrong_type", "truncated",
           "no_marker", "identical", "empty_response", "tied_rewards"]
FIRST_LINES = 5
SPACE = " \t\n\v\f\r"


class Skip(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


# ---------------------------------------------------------------------------
# reading bytes and lines

def read_bytes(path):
    """Returns (data, truncated): the decompressed bytes and whether a gzip
    stream ended early or was corrupt."""
    raw = open(path, "rb").read()
    if raw[:2] != b"\x1f\x8b":
        return raw, False
    out = []
    while raw:
        d = zlib.decompressobj(31)
        try:
            out.append(d.decompress(raw))
        except zlib.error:
            return b"".join(out), True
        if not d.eof:
            return b"".join(out), True
        raw = d.unused_data
    return b"".join(out), False


def no_dup_pairs(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def reject_constant(name):
    raise ValueError("non-standard constant " + name)


def check_strings(v):
    """JSON escapes may spell lone surrogates, which are not Unicode text."""
    if isinstance(v, str):
        v.encode("utf-8")
    elif isinstance(v, list):
        for x in v:
            check_strings(x)
    elif isinstance(v, dict):
        for k, x in v.items():
            check_strings(k)
            check_strings(x)


def parse_line(line):
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise Skip("invalid_utf8")
    try:
        obj = json.loads(text, object_pairs_hook=no_dup_pairs,
                         parse_constant=reject_constant)
        check_strings(obj)
    except (ValueError, UnicodeEncodeError):
        raise Skip("invalid_json")
    if not isinstance(obj, dict):
        raise Skip("wrong_type")
    return obj


# ---------------------------------------------------------------------------
# formats

def get_str(obj, key):
    if key not in obj:
        raise Skip("missing_field")
    if not isinstance(obj[key], str):
        raise Skip("wrong_type")
    return obj[key]


def is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_responses(resp):
    for r in resp:
        if r.strip(SPACE) == "":
            raise Skip("empty_response")
    if len(set(resp)) != len(resp):
        raise Skip("identical")


def parse_hh(obj):
    chosen = get_str(obj, "chosen")
    rejected = get_str(obj, "rejected")
    lcp = os.path.commonprefix([chosen, rejected])
    at = lcp.rfind(MARKER)
    if at < 0:
        raise Skip("no_marker")
    end = at + len(MARKER)
    resp = [chosen[end:], rejected[end:]]
    check_responses(resp)
    return chosen[:end], resp, None, None


def parse_pair(obj):
    prompt = get_str(obj, "prompt")
    resp = [get_str(obj, "chosen"), get_str(obj, "rejected")]
    check_responses(resp)
    return prompt, resp, None, None


def turn_text(turn, last):
    if turn.startswith("<|prompter|>"):
        return "\n\nHuman: " + turn[len("<|prompter|>"):]
    if turn.startswith("<|assistant|>"):
        if last and turn == "<|assistant|>":
            return MARKER
        return "\n\nAssistant: " + turn[len("<|assistant|>"):]
    raise Skip("wrong_type")


def meta_subset(obj):
    if "meta" not in obj:
        return None
    meta = obj["meta"]
    if not isinstance(meta, dict):
        raise Skip("wrong_type")
    if "path" not in meta:
        return None
    if not isinstance(meta["path"], str):
        raise Skip("wrong_type")
    parts = meta["path"].split("/")
    if len(parts) < 2 or parts[-2] in ("", ".", ".."):
        return None
    return parts[-2]


def parse_pro(obj):
    for key in ("prefix", "suffix"):
        if key not in obj:
            raise Skip("missing_field")
        if not isinstance(obj[key], list):
            raise Skip("wrong_type")
    prefix, suffix = obj["prefix"], obj["suffix"]
    reward = obj.get("reward")
    if reward is not None and not isinstance(reward, list):
        raise Skip("wrong_type")
    n = len(suffix)
    if n < 2 or len(prefix) != n or (reward is not None and len(reward) != n):
        raise Skip("wrong_type")
    if not all(isinstance(s, str) for s in suffix):
        raise Skip("wrong_type")
    for p in prefix:
        if not isinstance(p, list) or not all(isinstance(t, str) for t in p):
            raise Skip("wrong_type")
    if reward is not None and not all(is_number(r) for r in reward):
        raise Skip("wrong_type")
    if reward is not None and math.isinf(float(max(reward)) - float(min(reward))):
        raise Skip("wrong_type")  # the loss's reward gaps would be infinite
    subset = meta_subset(obj)
    turns = prefix[0]
    prompt = "".join(turn_text(t, i == len(turns) - 1) for i, t in enumerate(turns))
    if not turns or turns[-1] != "<|assistant|>":
        raise Skip("no_marker")
    resp = [" " + s for s in suffix]
    check_responses(resp)
    if reward is not None:
        reward = [float(r) for r in reward]
        if all(r == reward[0] for r in reward):
            raise Skip("tied_rewards")
        order = sorted(range(n), key=lambda k: -reward[k])  # stable for ties
        resp = [resp[k] for k in order]
        reward = [reward[k] for k in order]
    return prompt, resp, reward, subset


def parse_record(obj, fmt):
    if fmt == "auto":
        if "prefix" in obj or "suffix" in obj:
            fmt = "pro"
        elif "prompt" in obj:
            fmt = "pair"
        elif "chosen" in obj or "rejected" in obj:
            fmt = "hh"
        else:
            raise Skip("missing_field")
    return {"hh": parse_hh, "pair": parse_pair, "pro": parse_pro}[fmt](obj)


# ---------------------------------------------------------------------------
# one file, as the C reader reads it with nranks = 1

def default_subset(path):
    base = os.path.basename(path)
    for ext in (".jsonl.gz", ".jsonl"):
        if base.endswith(ext) and len(base) > len(ext):
            return base[:-len(ext)]
    return base


def hash_record(h, line, prompt, resp, reward, subset):
    h.update(b"%d %d %s\n" % (line, len(resp), subset.encode()))
    for s in [prompt] + resp:
        b = s.encode("utf-8")
        h.update(b"%d:" % len(b) + b)
    if reward is not None:
        h.update(("".join("%.17g;" % r for r in reward)).encode())


def expect_file(path, fmt="auto", subset=None):
    data, truncated = read_bytes(path)
    lines = data.split(b"\n")
    tail = lines.pop()           # after the last newline: b"" or an unterminated line
    res = {"path": path, "format": fmt, "subset": subset, "read": 0, "used": 0,
           "count": {r: 0 for r in REASONS}, "first_lines": {r: [] for r in REASONS}}
    h = hashlib.sha256()
    first = None

    def skip(reason, lineno):
        res["count"][reason] += 1
        if len(res["first_lines"][reason]) < FIRST_LINES:
            res["first_lines"][reason].append(lineno)

    entries = [(i + 1, l, True) for i, l in enumerate(lines)]
    if truncated:
        entries.append((len(lines) + 1, tail, None))
    elif tail:
        entries.append((len(lines) + 1, tail, False))
    for lineno, line, terminated in entries:
        if line.endswith(b"\r"):
            line = line[:-1]
        if terminated is None:
            res["read"] += 1
            skip("truncated", lineno)
            continue
        if line.strip(b" \t\r") == b"":
            continue
        res["read"] += 1
        try:
            obj = parse_line(line)
        except Skip as s:
            skip("truncated" if not terminated else s.reason, lineno)
            continue
        try:
            prompt, resp, reward, sub = parse_record(obj, fmt)
        except Skip as s:
            skip(s.reason, lineno)
            continue
        sub = subset or sub or default_subset(path)
        res["used"] += 1
        hash_record(h, lineno, prompt, resp, reward, sub)
        if first is None:
            first = {"line": lineno, "prompt": prompt, "resp": resp, "reward": reward,
                     "subset": sub}
    res["sha256"] = h.hexdigest()
    res["first"] = first
    return res


# ---------------------------------------------------------------------------
# hand-made fixtures

def jl(obj):
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def hh(c, r):
    return jl({"chosen": c, "rejected": r})


def pro(turns, suffix, reward, path="x/harmless-base/dev.jsonl", **kw):
    obj = {"prefix": [turns] * len(suffix), "suffix": suffix}
    if reward is not None:
        obj["reward"] = reward
    if path is not None:
        obj["meta"] = {"path": path}
    obj.update(kw)
    return jl(obj)


def write(name, lines, end=b"\n"):
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        f.write(b"\n".join(lines) + end)
    return path


def make_mixed():
    """Every skip reason of the dialogue and pair formats, one or more times."""
    q = "\n\nHuman: How do I bake bread?\n\nAssistant:"
    lines = [
        hh(q + " Mix flour, water, yeast and salt.", q + " I won't help."),     # 1 ok
        hh("\n\nHuman: hi\n\nHuman: a", "\n\nHuman: hi\n\nHuman: b"),            # 2 no_marker
        hh(q + " Same.", q + " Same."),                                         # 3 identical
        hh(q + " Fine answer.", q),                                             # 4 empty
        hh(q + " Fine answer.", q + "  \n\t "),                                 # 5 empty (ws)
        jl({"chosen": q + " A"}),                                               # 6 missing
        jl({"chosen": 3, "rejected": q + " B"}),                                # 7 wrong_type
        b'{"chosen": "\\n\\nHuman: x\\n\\nAssistant: y", "rejected": ',         # 8 invalid_json
        b"",                                                                    # 9 blank
        b"   \t",                                                               # 10 blank
        hh(q + " With CRLF.", q + " No.") + b"\r",                              # 11 ok, CRLF
        b'{"chosen": "' + q.encode("unicode_escape") + b' caf\xc3", '
        b'"rejected": "x"}',                                                    # 12 invalid_utf8
        b'{"chosen": "a\xed\xa0\x80", "rejected": "b"}',                        # 13 utf8 (surr.)
        b'{"chosen": "a\xc0\xaf", "rejected": "b"}',                            # 14 overlong
        b'["chosen", "rejected"]',                                              # 15 wrong_type
        b'{"chosen": "a", "chosen": "b", "rejected": "c"}',                     # 16 invalid_json
        b'{"chosen": "\\ud800", "rejected": "c"}',                              # 17 invalid_json
        hh(q + " Nul \u0000 inside.", q + " Plain."),                            # 18 ok
        b'{"chosen": NaN, "rejected": "c"}',                                    # 19 invalid_json
        jl({"prompt": "Say hi.", "chosen": " Hi!", "rejected": " No."}),        # 20 ok pair
        jl({"prompt": q, "chosen": " Knead it.", "rejected": " Knead it."}),    # 21 identical
        jl({"prompt": q, "chosen": [" a"], "rejected": " b"}),                  # 22 wrong_type
        jl({"prompt": q, "rejected": " b"}),                                    # 23 missing
        jl({"question": "x", "answer": "y"}),                                   # 24 missing
        hh("\n\nHuman: é ü ✓ 😀\n\nAssistant: 日本語の答え。",
           "\n\nHuman: é ü ✓ 😀\n\nAssistant: Nope."),                          # 25 ok
        hh(q + " Late turn.\n\nHuman: more?\n\nAssistant: yes",
           q + " Late turn.\n\nHuman: more?\n\nAssistant: no"),                 # 26 ok (2 markers)
        b"42",                                                                  # 27 wrong_type
        hh("\n\nHuman: hi\n\nAssistant: A", "\n\nHuman: hi\n\nAssistant? B"),   # 28 no_marker
        hh(q + " Last line, no newline.", q + " Bye."),                         # 29 ok
    ]
    return write("mixed.jsonl", lines, end=b"")


def make_pro():
    t = ["<|prompter|>Rank these.", "<|assistant|>Sure, go on.",
         "<|prompter|>Which is best?", "<|assistant|>"]
    lines = [
        pro(t, ["one", "two", "three", "four"], [0.5, 2.0, 0.5, -1]),          # 1 ok, 4 resp
        pro(t, ["a", "b", "c"], [1, 1, 1]),                                     # 2 tied
        pro(t, ["a", "b"], [1.0]),                                              # 3 wrong_type
        pro(t, ["a", "b"], [1.0, True]),                                        # 4 wrong_type
        pro(t[:3], ["a", "b"], [1.0, 2.0]),                                     # 5 no_marker
        pro(["Hello", "<|assistant|>"], ["a", "b"], [1.0, 2.0]),                # 6 wrong_type
        pro(t, ["a", "b"], None),                                               # 7 ok, no reward
        pro(t, ["same", "same"], [1.0, 2.0]),                                   # 8 identical
        pro(t, ["fine", "  "], [1.0, 2.0]),                                     # 9 empty
        pro(t, ["only"], [1.0]),                                                # 10 wrong_type
        pro(t, ["a", "b"], [3, 1e-3], path="dev.jsonl"),                        # 11 ok, basename
        pro(t, ["a", "b"], [3, 1], path=None),                                  # 12 ok, basename
        jl({"prefix": [t, t[:1] + ["<|assistant|>"]], "suffix": ["x", "y"],
            "reward": [0.1, 0.2], "meta": {"path": "a/helpful-base/dev.jsonl"}}),  # 13 ok
        jl({"suffix": ["a", "b"], "reward": [1, 2]}),                           # 14 missing
        jl({"prefix": [t, t], "suffix": "ab", "reward": [1, 2]}),               # 15 wrong_type
        pro(t, ["a", "b"], [1, 2], path=7),                                     # 16 wrong_type
        pro(t, ["x", "y", "z"], [-2, 5, 5]),                                    # 17 ok, tie on top
    ]
    return write("pro.jsonl", lines)


def make_gz():
    q = "\n\nHuman: Tell me a joke.\n\nAssistant:"
    lines = [hh(q + " Why did the chicken cross the road?", q + " No."),
             hh(q + " Knock knock.", q + " I can't."),
             b"",
             hh(q + " A pun.", q + " A pun.")]
    body = b"\n".join(lines) + b"\n"
    path = os.path.join(OUT, "small.jsonl.gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(body, mtime=0))
    # Same content with the 8-byte trailer (CRC, length) cut short: every line
    # arrives but the stream cannot be verified.
    cut = os.path.join(OUT, "trailer-cut.jsonl.gz")
    with open(cut, "wb") as f:
        f.write(gzip.compress(body, mtime=0)[:-4])
    # Three usable lines whose stream breaks inside the last one.
    good = b"\n".join(lines[:2] + [hh(q + " Pun intended.", q + " None.")]) + b"\n"
    with open(os.path.join(OUT, "clean-cut.jsonl.gz"), "wb") as f:
        f.write(gzip.compress(good, mtime=0)[:-14])
    return path, cut


def make_truncated():
    """The first 40,000 bytes of the real HH-RLHF gzip: a stream cut mid-line."""
    raw = open("data/hh-rlhf/harmless-base-test.jsonl.gz", "rb").read()
    path = os.path.join(OUT, "hh-truncated.jsonl.gz")
    with open(path, "wb") as f:
        f.write(raw[:40000])
    return path


def make_long():
    """A 5 MB line: readers must not assume a line length."""
    q = "\n\nHuman: Write a long story.\n\nAssistant:"
    story = " " + "Once upon a time there was a very long story. " * 110000
    lines = [hh(q + " Short.", q + " No."),
             hh(q + story, q + " Too long to tell."),
             hh(q + " After the long line.", q + " Still no.")]
    path = os.path.join(OUT, "long-line.jsonl.gz")
    with open(path, "wb") as f:
        f.write(gzip.compress(b"\n".join(lines) + b"\n", mtime=0))
    return path


def make_cut_plain():
    """A plain file cut in the middle of its last line."""
    q = "\n\nHuman: Plain?\n\nAssistant:"
    lines = [hh(q + " Yes.", q + " No."), hh(q + " Sure.", q + " Nah.")[:30]]
    return write("cut-plain.jsonl", lines, end=b"")


def main():
    os.makedirs(OUT, exist_ok=True)
    files = [(make_mixed(), "auto", None), (make_pro(), "auto", None)]
    small, cut = make_gz()
    files += [(small, "auto", None), (cut, "auto", None),
              (os.path.join(OUT, "clean-cut.jsonl.gz"), "auto", None),
              (make_truncated(), "hh", None),
              (make_long(), "auto", None), (make_cut_plain(), "auto", None),
              (small, "hh", "jokes")]
    files += [("data/hh-rlhf/harmless-base-test.jsonl.gz", "auto", None),
              ("data/hh-rlhf-pro/harmless-base-test.jsonl", "auto", None),
              ("data/hh-rlhf-pro/helpful-base-test.jsonl", "pro", None),
              ("data/hh-rlhf-pro/sampled-dev.jsonl", "auto", None)]
    results = [expect_file(p, f, s) for p, f, s in files]
    for r in results:
        skipped = {k: v for k, v in r["count"].items() if v}
        print("%-48s read %5d used %5d skipped %s" % (r["path"], r["read"], r["used"], skipped))
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"files": results}, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
