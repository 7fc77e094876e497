#!/usr/bin/env bash
# deft export: a checkpoint of a short `deft train` becomes a Hugging Face
# folder that deft loads back (its log-probs differ from the starting
# model's); the newest checkpoint of run_dir is the default; a missing
# starting model or checkpoint is a clear error.
set -euo pipefail
deft=${DEFT_BIN:-build/deft}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; cat "$tmp/log" >&2 || true; exit 1; }
model=data/models/TinyStories-656K

{ zcat data/hh-rlhf/harmless-base-test.jsonl.gz || true; } | head -8 > "$tmp/pairs.jsonl"
"$deft" train --data "$tmp/pairs.jsonl" --model "$model" --run-dir "$tmp/run" --method sft \
  --max-steps 2 --micro-batch 2 --max-len 64 --max-prompt-len 32 --lr 1e-3 \
  --checkpoint-every 1 > "$tmp/log" 2>&1 || fail "deft train"

"$deft" export --checkpoint "$tmp/run/checkpoints/step-000001.h5" --model "$model" \
  --out "$tmp/e1" > "$tmp/log" 2>&1 || fail "export of step 1"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json LICENSE; do
  [ -s "$tmp/e1/$f" ] || fail "$f missing from the export"
done
grep -q "step 1" "$tmp/log" || fail "the log names the step"

# unset --checkpoint: the newest in run_dir/checkpoints
"$deft" export --run-dir "$tmp/run" --model "$model" --out "$tmp/e2" > "$tmp/log" 2>&1 \
  || fail "export of the newest checkpoint"
grep -q "step-000002.h5 (step 2)" "$tmp/log" || fail "not the newest checkpoint"

ids='{"ids": [1, 403, 89, 312, 1200, 7, 2047, 18]}'
a=$(echo "$ids" | "$deft" logprobs --model "$tmp/e2" 2> "$tmp/log") \
  || fail "logprobs of the export"
b=$(echo "$ids" | "$deft" logprobs --model "$model" 2> "$tmp/log") || fail "logprobs of the model"
[ -n "$a" ] && [ "$a" != "$b" ] || fail "the export gives the starting model's log-probs"

set +e
"$deft" export --checkpoint "$tmp/run/checkpoints/step-000002.h5" --out "$tmp/e3" \
  > "$tmp/log" 2>&1; rc=$?
[ "$rc" = 2 ] && grep -q -- "--model DIR" "$tmp/log" || fail "no model: exit $rc"
"$deft" export --run-dir "$tmp/none" --model "$model" --out "$tmp/e4" > "$tmp/log" 2>&1; rc=$?
[ "$rc" = 2 ] && grep -q "no checkpoint in" "$tmp/log" || fail "no checkpoint: exit $rc"
set -e
[ ! -e "$tmp/e3" ] && [ ! -e "$tmp/e4" ] || fail "a failed export left a folder"
echo "export: ok"
