#!/usr/bin/env bash
# deft train with a micro-batch far larger than the data: it used to size a
# stack array by micro_batch and die of SIGSEGV; now it trains (a micro-batch
# holds what there is). Sizes past the int range are refused with status 2,
# and a Q_diff counted with another tokenizer with status 3.
set -uo pipefail
deft="${DEFT_BIN:?}"
cd "${DEFT_SOURCE_DIR:?}"
tmp=$(mktemp -d /tmp/deft_robust_train.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
(zcat data/hh-rlhf/harmless-base-test.jsonl.gz || true) | head -4 >"$tmp/hh.jsonl"
args=(--model data/models/TinyStories-656K --data "$tmp/hh.jsonl" --method sft --max-len 32
      --max-prompt-len 16 --max-steps 1 --log-every 1)

for np in 1 2; do
    timeout 60 mpirun --oversubscribe -np "$np" "$deft" train "${args[@]}" \
        --micro-batch 100000000 --eval-fraction 0.5 --run-dir "$tmp/mb$np" >"$tmp/log" 2>&1
    rc=$?
    [ $rc -eq 0 ] || { tail -5 "$tmp/log"; bad "np=$np: huge micro_batch: exit $rc"; }
    grep -q "step 1/1" "$tmp/log" || bad "np=$np: huge micro_batch: no step line"
done
timeout 60 "$deft" train "${args[@]}" --micro-batch 5000000000 --run-dir "$tmp/x" \
    >"$tmp/log" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "micro-batch.*2147483647" "$tmp/log" ||
    { cat "$tmp/log"; bad "micro_batch past int: exit $rc"; }
timeout 60 "$deft" train "${args[@]}" --micro-batch 2000000000 --grad-accum 2 \
    --run-dir "$tmp/y" >"$tmp/log" 2>&1
rc=$?
[ $rc -eq 2 ] && grep -q "past 2^31 samples a step" "$tmp/log" ||
    { cat "$tmp/log"; bad "micro_batch x grad_accum past int: exit $rc"; }
# A Q_diff counted with another tokenizer (here 256 byte tokens, fewer ids than
# the model's) was used as if its ids were the model's.
for i in $(seq 0 255); do
    printf "\\x$(printf %02x "$i")" | base64 | tr -d '\n'
    echo " $i"
done >"$tmp/bytes.model"
"$deft" qdiff --data "$tmp/hh.jsonl" --tokenizer "$tmp/bytes.model" --out "$tmp/qb.h5" \
    --top 0 2>"$tmp/log" || { cat "$tmp/log"; bad "qdiff with the byte tokenizer failed"; }
for np in 1 2; do
    timeout 60 mpirun --oversubscribe -np "$np" "$deft" train "${args[@]}" --method dpo \
        --omega 1 --qdiff "$tmp/qb.h5" --run-dir "$tmp/qb$np" >"$tmp/log" 2>&1
    rc=$?
    [ $rc -eq 3 ] && grep -q "counted with another tokenizer" "$tmp/log" ||
        { tail -5 "$tmp/log"; bad "np=$np: Q_diff of another tokenizer: exit $rc"; }
done
echo "huge micro-batches and foreign Q_diff handled"
exit $fail
