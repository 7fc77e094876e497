# deft train on the real TinyStories-656K model and 12 real HH-RLHF pairs /
# PRO rankings: DPO and PRO lower their loss and rank the preferred response
# higher; a large omega raises R_Q faster than omega 0 from the same start;
# the reference log-probs file is reused.
set -euo pipefail
source "${DEFT_SOURCE_DIR:?}/tests/cli/lib/train_env.sh"

train "$work/dpo" --data "$work/hh.jsonl" --eval-data "$work/hh.jsonl" --method dpo \
    --epochs 4 --qdiff "$work/q.h5"
l0=$(first "$work/dpo" eval loss); l1=$(last "$work/dpo" eval loss)
a0=$(first "$work/dpo" eval acc); a1=$(last "$work/dpo" eval acc)
check "DPO lowers its loss ($l0 -> $l1)" "$(jq_true "$l1 < $l0")"
check "DPO reward accuracy $a0 -> $a1 > 0.5" "$(jq_true "$a1 > 0.5 and $a1 > $a0")"
n_train=$(jq -s 'map(select(.split == "train")) | length' "$work/dpo/metrics.jsonl")
check "DPO: one metrics line per step" "$(jq_true "$n_train == 12")"
check "DPO: final checkpoint" "$([ -f "$work/dpo/checkpoints/step-000012.h5" ]; echo $?)"

train "$work/pro" --data "$work/pro.jsonl" --eval-data "$work/pro.jsonl" --method pro \
    --epochs 4
l0=$(first "$work/pro" eval loss); l1=$(last "$work/pro" eval loss)
a0=$(first "$work/pro" eval acc); a1=$(last "$work/pro" eval acc)
check "PRO lowers its loss ($l0 -> $l1)" "$(jq_true "$l1 < $l0")"
check "PRO ranking accuracy $a0 -> $a1 > 0.5" "$(jq_true "$a1 > 0.5 and $a1 > $a0")"

# the DEFT term: same seed, same start, omega 3 against omega 0
for w in 0 3; do
    train "$work/omega$w" --data "$work/hh.jsonl" --eval-data "$work/hh.jsonl" --method dpo \
        --max-steps 3 --qdiff "$work/q.h5" --omega $w --ref "$work/dpo/ref.h5"
done
s0=$(first "$work/omega0" eval r_q); s3=$(first "$work/omega3" eval r_q)
r0=$(last "$work/omega0" eval r_q); r3=$(last "$work/omega3" eval r_q)
check "same starting R_Q ($s0, $s3)" "$([ "$s0" = "$s3" ]; echo $?)"
check "omega 3 raises R_Q more than omega 0 ($s0 -> $r3 vs $r0)" "$(jq_true "$r3 > $r0")"
check "the reference log-probs were reused" \
    "$(grep -q 'ref: reusing' "$work/omega3.log"; echo $?)"
finish
