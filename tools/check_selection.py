#!/usr/bin/env python3
"""Independent reference for `deft select` (h5py + numpy, no deft code).

  check_selection.py fixture OUT.h5 DATA...   write a scores file in the layout of
      `deft score` for the data files, with made-up scores full of ties, NaNs and
      -0.0 (a test fixture: the scores mean nothing)
  check_selection.py expect SCORES.h5 --by rq --fraction 0.05 [--seed S]
      print the selection by a plain sort: "k <subset> <k>" lines, then one
      "<file> <line>" line per selected sample in global sample order

The selection rule: within each subset keep the k = ceil(f * n) samples with
the lowest key, ties broken by (file, line); n counts samples with a finite
value. rq: key = score; likelihood: key = -loglik; random: key = a splitmix64
hash of (seed, file, line), over the samples with a finite score; ifd: key =
-ifd over the samples with ifd < 1, n counting every finite ifd.
"""
import argparse
import hashlib
import math
import os
import sys
from fractions import Fraction

import h5py
import numpy as np

MASK = (1 << 64) - 1


def splitmix64_mix(z):
    z = (z + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def random_key(seed, file, line):
    return splitmix64_mix(splitmix64_mix(splitmix64_mix(seed) ^ file) ^ line)


def subset_of(path, line_text):
    """Subset label of a line: the PRO meta.path folder, or the file's own name."""
    import json
    obj = json.loads(line_text)
    meta = obj.get("meta") if isinstance(obj, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("path"), str):
        parts = meta["path"].strip("/").split("/")
        if len(parts) >= 2:
            return parts[-2]
    name = os.path.basename(path)
    for ext in (".gz", ".jsonl", ".json"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name.replace("-test", "")


def read_lines(path):
    import gzip
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return [ln.rstrip(b"\n").decode("utf-8") for ln in f]


def make_fixture(out, data, drop_every, limit, with_ifd, seed):
    rng = np.random.default_rng(seed)
    files, lines, subsets = [], [], []
    names = []
    for fi, path in enumerate(data):
        for li, text in enumerate(read_lines(path), start=1):
            if limit and len(files) >= limit:
                break
            if drop_every and li % drop_every == 0:
                continue  # like records a reader skips: absent from the scores
            name = subset_of(path, text)
            if name not in names:
                names.append(name)
            files.append(fi)
            lines.append(li)
            subsets.append(names.index(name))
    n = len(files)
    # few distinct values, so that many samples tie at every threshold
    score = np.round(rng.normal(0.0, 1.0, n) * 4) / 8
    score[rng.random(n) < 0.03] = np.nan
    score[rng.random(n) < 0.02] = -0.0
    loglik = -np.round(rng.random(n) * 40) / 8
    loglik[rng.random(n) < 0.02] = np.nan
    ifd = np.round(rng.random(n) * 1.3, 2)
    ifd[rng.random(n) < 0.02] = np.nan
    tokens = rng.integers(1, 300, n).astype(np.int32)
    str_t = h5py.string_dtype("utf-8")
    with h5py.File(out, "w") as h:
        h["score"] = score
        h["sample_file"] = np.array(files, dtype=np.int32)
        h["sample_line"] = np.array(lines, dtype=np.int64)
        h["subset"] = np.array(subsets, dtype=np.int32)
        h.create_dataset("subset_names", data=names, dtype=str_t)
        h["response_tokens"] = tokens
        h["loglik"] = loglik
        if with_ifd:
            h["ifd"] = ifd
        h.attrs.create("data_files", data, dtype=str_t)
        sums = [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in data]
        h.attrs.create("data_sha256", sums, dtype=str_t)
        h.attrs["model"] = "fixture: made-up scores"
    print(f"{out}: {n} samples, {len(names)} subsets: {', '.join(names)}", file=sys.stderr)


def expect(path, by, fraction, seed):
    with h5py.File(path, "r") as h:
        score = h["score"][:]
        file = h["sample_file"][:].astype(np.int64)
        line = h["sample_line"][:].astype(np.int64)
        subset = h["subset"][:]
        names = [s.decode() if isinstance(s, bytes) else s for s in h["subset_names"][:]]
        value = {"rq": score, "random": score}.get(by)
        if by == "likelihood":
            value = h["loglik"][:]
        if by == "ifd":
            value = h["ifd"][:]
    counted = np.isfinite(value)
    eligible = counted & (value < 1.0) if by == "ifd" else counted
    if by == "random":
        key = np.array([random_key(seed, int(f), int(l)) for f, l in zip(file, line)],
                       dtype=np.uint64)
    elif by in ("likelihood", "ifd"):
        key = -value
    else:
        key = value
    f = Fraction(fraction)
    chosen = []
    for s, name in enumerate(names):
        n = int(np.sum(counted & (subset == s)))
        k = math.ceil(f * n)
        idx = np.nonzero(eligible & (subset == s))[0]
        k = min(k, len(idx))
        order = np.lexsort((line[idx], file[idx], key[idx]))  # last key sorts first
        chosen.extend(idx[order[:k]].tolist())
        print(f"k {name} {k}")
    for i in sorted(chosen, key=lambda i: (file[i], line[i])):
        print(f"{file[i]} {line[i]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    fx = sub.add_parser("fixture")
    fx.add_argument("out")
    fx.add_argument("data", nargs="+")
    fx.add_argument("--drop-every", type=int, default=50)
    fx.add_argument("--limit", type=int, default=0, help="samples at most")
    fx.add_argument("--no-ifd", action="store_true", help="leave out /ifd")
    fx.add_argument("--seed", type=int, default=7)
    ex = sub.add_parser("expect")
    ex.add_argument("scores")
    ex.add_argument("--by", default="rq", choices=["rq", "likelihood", "random", "ifd"])
    ex.add_argument("--fraction", default="0.05")
    ex.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    if a.cmd == "fixture":
        make_fixture(a.out, a.data, a.drop_every, a.limit, not a.no_ifd, a.seed)
    else:
        expect(a.scores, a.by, a.fraction, a.seed)


if __name__ == "__main__":
    main()
