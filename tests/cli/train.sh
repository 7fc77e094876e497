# deft train on the real TinyStories-656K model and 16 real HH-RLHF / PRO
# samples: DPO and PRO lower their loss and rank the preferred response
# higher; a large omega raises R_Q faster than omega 0; the reference file is
# reused; 3 steps + resume 3 steps equal 6 straight steps to the bit; SIGTERM
# checkpoints and exits 0; SIGKILL mid-run then --resume auto ends like an
# uninterrupted run; 1 and 2 MPI ranks agree within tolerance.
set -euo pipefail

: "${DEFT_BIN:?}" "${DEFT_SOURCE_DIR:?}"
cd "$DEFT_SOURCE_DIR"
work=$(mktemp -d)
bg=""
trap 'if [ -n "$bg" ]; then kill -9 "$bg" 2>/dev/null; fi; rm -rf "$work"' EXIT
model=data/models/TinyStories-656K
(zcat data/hh-rlhf/harmless-base-test.jsonl.gz || true) | head -16 >"$work/hh.jsonl"
head -16 data/hh-rlhf-pro/sampled-dev.jsonl >"$work/pro.jsonl"
fail=0

check() {  # MESSAGE CONDITION-EXIT-STATUS
    if [ "$2" -eq 0 ]; then
        echo "ok: $1"
    else
        echo "FAIL: $1"
        fail=1
    fi
}

train() {  # RUN_DIR ARGS...: a small, fast configuration
    local dir=$1
    shift
    "$DEFT_BIN" train --model "$model" --run-dir "$dir" --max-len 48 --max-prompt-len 24 \
        --micro-batch 4 --lr 2e-3 --log-every 100 "$@" 2>>"$dir.log"
}

train_bg() {  # RUN_DIR ARGS...: the same in the background, its pid in $bg
    local dir=$1
    shift
    "$DEFT_BIN" train --model "$model" --run-dir "$dir" --max-len 48 --max-prompt-len 24 \
        --micro-batch 4 --lr 2e-3 --log-every 100 "$@" 2>>"$dir.log" &
    bg=$!
}

# field F of the first / last record of SPLIT in metrics.jsonl
first() { jq -s "map(select(.split == \"$2\")) | first | .$3" "$1/metrics.jsonl"; }
last() { jq -s "map(select(.split == \"$2\")) | last | .$3" "$1/metrics.jsonl"; }
# the training records without timing, for exact comparison
steps() { jq -c 'select(.split == "train") | del(.time)' "$1/metrics.jsonl"; }

"$DEFT_BIN" qdiff --data "$work/hh.jsonl" --tokenizer "$model" --out "$work/q.h5" --top 0 \
    2>"$work/qdiff.log"

# ---- DPO and PRO learn the training preferences
train "$work/dpo" --data "$work/hh.jsonl" --eval-data "$work/hh.jsonl" --method dpo \
    --epochs 4 --qdiff "$work/q.h5"
l0=$(first "$work/dpo" eval loss); l1=$(last "$work/dpo" eval loss)
acc=$(last "$work/dpo" eval acc)
check "DPO lowers its loss ($l0 -> $l1)" "$(jq -n "$l1 < $l0 | not | if . then 1 else 0 end")"
check "DPO reward accuracy $acc > 0.5" "$(jq -n "$acc > 0.5 | not | if . then 1 else 0 end")"
check "DPO metrics: one train line per step" \
    "$([ "$(jq -s 'map(select(.split == "train")) | length' "$work/dpo/metrics.jsonl")" = 16 ]; echo $?)"
check "DPO final checkpoint" "$([ -f "$work/dpo/checkpoints/step-000016.h5" ]; echo $?)"

train "$work/pro" --data "$work/pro.jsonl" --eval-data "$work/pro.jsonl" --method pro \
    --epochs 4
l0=$(first "$work/pro" eval loss); l1=$(last "$work/pro" eval loss)
acc0=$(first "$work/pro" eval acc); acc=$(last "$work/pro" eval acc)
check "PRO lowers its loss ($l0 -> $l1)" "$(jq -n "$l1 < $l0 | not | if . then 1 else 0 end")"
check "PRO ranking accuracy $acc0 -> $acc > 0.5" \
    "$(jq -n "$acc > 0.5 and $acc > $acc0 | not | if . then 1 else 0 end")"

# ---- the DEFT term: a large omega raises R_Q faster than omega 0, same seed
for w in 0 3; do
    train "$work/omega$w" --data "$work/hh.jsonl" --eval-data "$work/hh.jsonl" --method dpo \
        --max-steps 4 --qdiff "$work/q.h5" --omega $w --ref "$work/dpo/ref.h5"
done
r0=$(last "$work/omega0" eval r_q); r3=$(last "$work/omega3" eval r_q)
s0=$(first "$work/omega0" eval r_q); s3=$(first "$work/omega3" eval r_q)
check "same starting R_Q ($s0, $s3)" "$([ "$s0" = "$s3" ]; echo $?)"
check "omega 3 raises R_Q more than omega 0 ($r3 > $r0)" \
    "$(jq -n "$r3 > $r0 | not | if . then 1 else 0 end")"
check "the reference log-probs were reused" \
    "$(grep -q 'ref: reusing' "$work/omega3.log"; echo $?)"

# ---- resume: 3 steps + 3 steps equal 6 straight steps, to the bit
common=(--data "$work/hh.jsonl" --method dpo --qdiff "$work/q.h5" --omega 1
        --warmup-steps 2 --ref "$work/ref-train.h5" --checkpoint-every 1 --keep-checkpoints 3)
train "$work/straight" "${common[@]}" --max-steps 6
train "$work/resumed" "${common[@]}" --max-steps 3
train "$work/resumed" "${common[@]}" --max-steps 6 --resume auto
check "resume from step 3" "$(grep -q 'resume: .*step-000003.h5 at step 3' "$work/resumed.log"; echo $?)"
check "3 + 3 resumed steps equal 6 straight steps" \
    "$(cmp -s <(steps "$work/straight") <(steps "$work/resumed"); echo $?)"
check "keep_checkpoints 3 keeps three" \
    "$([ "$(ls "$work/straight/checkpoints" | wc -l)" = 3 ]; echo $?)"

# ---- SIGTERM: checkpoint, exit 0; resuming ends like the straight run
wait_for_step() {  # RUN_DIR: until metrics.jsonl holds a training step
    for _ in $(seq 600); do
        grep -q '"split":"train"' "$1/metrics.jsonl" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
mkdir -p "$work/term"
train_bg "$work/term" "${common[@]}" --max-steps 6
wait_for_step "$work/term"
kill -TERM "$bg"
rc=0
wait "$bg" || rc=$?
bg=""
check "SIGTERM exits 0 (status $rc)" "$rc"
check "SIGTERM wrote a checkpoint" "$(grep -q 'stop signal 15' "$work/term.log"; echo $?)"
train "$work/term" "${common[@]}" --max-steps 6 --resume auto
check "after SIGTERM, resumed steps equal the straight run" \
    "$(cmp -s <(steps "$work/straight") <(steps "$work/term"); echo $?)"

# ---- SIGKILL at any moment (even inside a checkpoint write): resume from the newest good one
mkdir -p "$work/kill"
train_bg "$work/kill" "${common[@]}" --max-steps 6
for _ in $(seq 600); do
    ls "$work/kill/checkpoints" 2>/dev/null | grep -q '^step-.*\.h5' && break
    sleep 0.05
done
kill -9 "$bg"
wait "$bg" 2>/dev/null || true
bg=""
train "$work/kill" "${common[@]}" --max-steps 6 --resume auto
check "after SIGKILL, resumed steps equal the straight run" \
    "$(cmp -s <(steps "$work/straight") <(steps "$work/kill"); echo $?)"

# ---- data parallel: 2 ranks x 1 micro-batch equal 1 rank x 2 micro-batches
mpi=(--data "$work/hh.jsonl" --method dpo --qdiff "$work/q.h5" --omega 1 --max-steps 3
     --micro-batch 2)
"$DEFT_BIN" train --model "$model" --run-dir "$work/np1" --max-len 48 --max-prompt-len 24 \
    --lr 2e-3 "${mpi[@]}" --grad-accum 2 2>"$work/np1.log"
mpirun --oversubscribe -np 2 "$DEFT_BIN" train --model "$model" --run-dir "$work/np2" \
    --max-len 48 --max-prompt-len 24 --lr 2e-3 "${mpi[@]}" --grad-accum 1 2>"$work/np2.log"
agree=$(jq -n --slurpfile a "$work/np1/metrics.jsonl" --slurpfile b "$work/np2/metrics.jsonl" '
    [$a, $b] | map(map(select(.split == "train"))) | . as [$x, $y]
    | ($x | length) == 3 and ($y | length) == 3 and
      all(range(3) as $i | ["loss", "r_q", "grad_norm", "margin"][] as $k
          | ($x[$i][$k] - $y[$i][$k]) | fabs <= 1e-4 * (1 + ($x[$i][$k] | fabs)); .)')
check "1 and 2 ranks agree within 1e-4" "$([ "$agree" = true ]; echo $?)"

if [ $fail -ne 0 ]; then
    for f in "$work"/*.log; do
        echo "== $f"
        tail -n 15 "$f"
    done
fi
exit $fail
