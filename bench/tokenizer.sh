#!/usr/bin/env bash
# Tokenizer throughput, deft vs tiktoken, one core each, the same strings:
# every chosen and rejected dialogue of HH-RLHF harmless-base test, one
# encode call per dialogue, plain text (tiktoken: encode_ordinary), Llama 3
# ranks from data/llama3/tokenizer.model. Prints both and the ratio.
#
# usage: bench/tokenizer.sh [BUILD_DIR] [PASSES]   (run from the repository root)
set -euo pipefail
build=${1:-build}
passes=${2:-5}
py=${PYTHON:-.venv/bin/python}
if ! out=$(cmake --build "$build" --target bench_tokenizer 2>&1); then
    echo "$out"
    exit 1
fi
deft=$(taskset -c 0 "$build/bench_tokenizer" data/llama3/tokenizer.model \
       data/hh-rlhf/harmless-base-test.jsonl.gz "$passes")
echo "$deft"
tt=$(RAYON_NUM_THREADS=1 taskset -c 0 "$py" - "$passes" <<'PY'
import gzip, json, sys, time
import tiktoken
from tiktoken.load import load_tiktoken_bpe

passes = int(sys.argv[1])
pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
t0 = time.perf_counter()
enc = tiktoken.Encoding("llama3", pat_str=pattern, special_tokens={},
                        mergeable_ranks=load_tiktoken_bpe("data/llama3/tokenizer.model"))
t_load = time.perf_counter() - t0
texts = []
with gzip.open("data/hh-rlhf/harmless-base-test.jsonl.gz", "rt", encoding="utf-8") as f:
    for line in f:
        rec = json.loads(line)
        texts += [rec["chosen"], rec["rejected"]]
nbytes = sum(len(t.encode("utf-8")) for t in texts)
best = 1e30
for _ in range(passes):
    s = time.perf_counter()
    ntok = sum(len(enc.encode_ordinary(t)) for t in texts)
    best = min(best, time.perf_counter() - s)
print(f"tiktoken  {tiktoken.__version__}: load {t_load:.2f} s; {len(texts)} texts, "
      f"{nbytes / 1e6:.2f} MB, {ntok} tokens; best of {passes}: {best:.3f} s, "
      f"{nbytes / 1e6 / best:.2f} MB/s, {ntok / 1e6 / best:.2f} M tokens/s")
PY
)
echo "$tt"
mbs() { sed -E 's/.* ([0-9.]+) MB\/s.*/\1/' <<<"$1"; }
awk -v d="$(mbs "$deft")" -v t="$(mbs "$tt")" \
    'BEGIN { printf "deft / tiktoken throughput: %.2fx\n", d / t }'
