# deft train with tensor parallelism (TinyStories-656K: 4 kv heads, vocabulary
# 2048, MLP 384): the same global batch of 4 on tp x dp = 1x1, 2x1, 2x2 and
# 4x1 gives loss, R_Q, gradient norm and margin within 1e-4 over 3 steps; a
# checkpoint written at tp 2 resumes at tp 1 and one written at tp 1 resumes
# on a 2x2 grid, both ending as the straight run; the reference log-probs
# made at tp 1 are reused at tp 2 (their model checksum is of whole tensors);
# sizes that do not fit are refused with a message naming them.
set -euo pipefail
source "${DEFT_SOURCE_DIR:?}/tests/cli/lib/train_env.sh"

common=(--data "$work/hh.jsonl" --method dpo --qdiff "$work/q.h5" --omega 1 --micro-batch 2)
run() {  # NP RUN_DIR ARGS...: deft train on NP ranks, log in RUN_DIR.log
    local np=$1 dir=$2
    shift 2
    mpirun --oversubscribe -np "$np" "$DEFT_BIN" train "${small[@]}" --run-dir "$dir" \
        "${common[@]}" "$@" 2>>"$dir.log" || { cat "$dir.log"; echo "FAIL: $dir"; exit 1; }
}
agree() {  # RUN_DIR_A RUN_DIR_B: every train step's metrics within 1e-4
    jq -n --slurpfile a "$1/metrics.jsonl" --slurpfile b "$2/metrics.jsonl" '
        [$a, $b] | map(map(select(.split == "train"))) | . as [$x, $y]
        | ($x | length) == 3 and ($y | length) == 3 and
          all(range(3) as $i | ["loss", "r_q", "grad_norm", "margin"][] as $k
              | ($x[$i][$k] - $y[$i][$k]) | fabs <= 1e-4 * (1 + ($x[$i][$k] | fabs)); .)'
}

run 1 "$work/tp1" --grad-accum 2 --max-steps 3 --ref "$work/ref.h5"
run 2 "$work/tp2" --grad-accum 2 --max-steps 3 --tp 2 --ref "$work/ref.h5"
check "tp 2 reuses the reference log-probs made at tp 1" \
    "$(grep -q 'ref: reusing' "$work/tp2.log"; echo $?)"
check "tp 2 on 2 ranks agrees with tp 1 within 1e-4" \
    "$([ "$(agree "$work/tp1" "$work/tp2")" = true ]; echo $?)"
run 4 "$work/tp2dp2" --grad-accum 1 --max-steps 3 --tp 2
check "tp 2 x dp 2 on 4 ranks agrees with tp 1 within 1e-4" \
    "$([ "$(agree "$work/tp1" "$work/tp2dp2")" = true ]; echo $?)"
run 4 "$work/tp4" --grad-accum 2 --max-steps 3 --tp 4
check "tp 4 on 4 ranks agrees with tp 1 within 1e-4" \
    "$([ "$(agree "$work/tp1" "$work/tp4")" = true ]; echo $?)"

# checkpoints hold whole tensors: they move between grids
run 2 "$work/from_tp2" --grad-accum 2 --max-steps 2 --tp 2
run 1 "$work/from_tp2" --grad-accum 2 --max-steps 3 --resume auto
check "a tp 2 checkpoint resumes at tp 1 like the straight run" \
    "$([ "$(agree "$work/tp1" "$work/from_tp2")" = true ]; echo $?)"
run 1 "$work/from_tp1" --grad-accum 2 --max-steps 2
run 4 "$work/from_tp1" --grad-accum 1 --max-steps 3 --tp 2 --resume auto
check "a tp 1 checkpoint resumes on a 2 x 2 grid like the straight run" \
    "$([ "$(agree "$work/tp1" "$work/from_tp1")" = true ]; echo $?)"

refused() {  # NP TP PATTERN: the run fails and says PATTERN
    if mpirun --oversubscribe -np "$1" "$DEFT_BIN" train "${small[@]}" --run-dir "$work/bad" \
        "${common[@]}" --max-steps 1 --tp "$2" >"$work/bad.log" 2>&1; then
        echo 1
    else
        grep -q "$3" "$work/bad.log"
        echo $?
    fi
}
check "tp 2 on 3 ranks is refused" "$(refused 3 2 'tp = 2 must divide the number of ranks (3)')"
check "tp 3 is refused: it does not divide the kv heads" \
    "$(refused 3 3 'does not divide num_key_value_heads = 4')"
finish
