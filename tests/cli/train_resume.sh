# deft train resumes exactly: 3 steps + 3 resumed steps give the same
# metrics.jsonl (timing aside) as 6 straight steps, to the bit; SIGTERM
# writes a checkpoint and exits 0; SIGKILL at any moment (even inside a
# checkpoint write) then --resume auto ends like the uninterrupted run.
set -euo pipefail
source "${DEFT_SOURCE_DIR:?}/tests/cli/lib/train_env.sh"

common=(--data "$work/hh.jsonl" --method dpo --qdiff "$work/q.h5" --omega 1
        --warmup-steps 2 --ref "$work/ref.h5" --checkpoint-every 1 --keep-checkpoints 3)
train "$work/straight" "${common[@]}" --max-steps 6
train "$work/resumed" "${common[@]}" --max-steps 3
train "$work/resumed" "${common[@]}" --max-steps 6 --resume auto
check "resumed from step 3" \
    "$(grep -q 'resume: .*step-000003.h5 at step 3' "$work/resumed.log"; echo $?)"
check "3 + 3 resumed steps equal 6 straight steps" \
    "$(cmp -s <(steps "$work/straight") <(steps "$work/resumed"); echo $?)"
check "keep_checkpoints 3 keeps three" \
    "$([ "$(ls "$work/straight/checkpoints" | wc -l)" = 3 ]; echo $?)"

wait_for() {  # FILE PATTERN: until grep finds it (60 s at most)
    for _ in $(seq 1200); do
        grep -qs "$2" "$1" && return 0
        sleep 0.05
    done
    return 1
}

# SIGTERM after the first step: checkpoint, exit 0, then resume
train_bg "$work/term" "${common[@]}" --max-steps 6
wait_for "$work/term/metrics.jsonl" '"split":"train"'
kill -TERM "$bg"
rc=0
wait "$bg" || rc=$?
bg=""
check "SIGTERM exits 0 (status $rc)" "$rc"
check "SIGTERM wrote a checkpoint" "$(grep -q 'stop signal 15' "$work/term.log"; echo $?)"
train "$work/term" "${common[@]}" --max-steps 6 --resume auto
check "after SIGTERM, the resumed run equals the straight one" \
    "$(cmp -s <(steps "$work/straight") <(steps "$work/term"); echo $?)"

# SIGKILL as soon as a checkpoint write begins
train_bg "$work/kill" "${common[@]}" --max-steps 6
for _ in $(seq 1200); do
    ls "$work/kill/checkpoints" 2>/dev/null | grep -q '^step-' && break
    sleep 0.02
done
kill -9 "$bg"
wait "$bg" 2>/dev/null || true
bg=""
train "$work/kill" "${common[@]}" --max-steps 6 --resume auto
check "after SIGKILL, the resumed run equals the straight one" \
    "$(cmp -s <(steps "$work/straight") <(steps "$work/kill"); echo $?)"
finish
