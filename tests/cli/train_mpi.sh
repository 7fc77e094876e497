# deft train data parallel: 2 ranks x 1 micro-batch of 2 and 1 rank x 2
# micro-batches of 2 take the same global batches and agree within 1e-4 on
# loss, R_Q, gradient norm and margin over 3 steps.
set -euo pipefail
source "${DEFT_SOURCE_DIR:?}/tests/cli/lib/train_env.sh"

mpi=(--data "$work/hh.jsonl" --method dpo --qdiff "$work/q.h5" --omega 1 --max-steps 3
     --micro-batch 2)
"$DEFT_BIN" train "${small[@]}" --run-dir "$work/np1" "${mpi[@]}" --grad-accum 2 \
    2>"$work/np1.log"
mpirun --oversubscribe -np 2 "$DEFT_BIN" train "${small[@]}" --run-dir "$work/np2" \
    "${mpi[@]}" --grad-accum 1 2>"$work/np2.log"
agree=$(jq -n --slurpfile a "$work/np1/metrics.jsonl" --slurpfile b "$work/np2/metrics.jsonl" '
    [$a, $b] | map(map(select(.split == "train"))) | . as [$x, $y]
    | ($x | length) == 3 and ($y | length) == 3 and
      all(range(3) as $i | ["loss", "r_q", "grad_norm", "margin"][] as $k
          | ($x[$i][$k] - $y[$i][$k]) | fabs <= 1e-4 * (1 + ($x[$i][$k] | fabs)); .)')
check "1 and 2 ranks agree within 1e-4" "$([ "$agree" = true ]; echo $?)"
finish
