# Shared setup of the deft train CLI tests (sourced): a work folder, 12 real
# HH-RLHF pairs and 12 PRO rankings, a Q_diff of the pairs, the real
# TinyStories-656K model, a small fast configuration, and jq helpers.
: "${DEFT_BIN:?}" "${DEFT_SOURCE_DIR:?}"
cd "$DEFT_SOURCE_DIR"
work=$(mktemp -d)
bg=""
trap 'if [ -n "$bg" ]; then kill -9 "$bg" 2>/dev/null; fi; rm -rf "$work"' EXIT
model=data/models/TinyStories-656K
(zcat data/hh-rlhf/harmless-base-test.jsonl.gz || true) | head -12 >"$work/hh.jsonl"
head -12 data/hh-rlhf-pro/sampled-dev.jsonl >"$work/pro.jsonl"
"$DEFT_BIN" qdiff --data "$work/hh.jsonl" --tokenizer "$model" --out "$work/q.h5" --top 0 \
    2>"$work/qdiff.log"
small=(--model "$model" --max-len 40 --max-prompt-len 20 --lr 2e-3 --log-every 100)
fail=0

check() {  # MESSAGE STATUS: 0 passes
    if [ "$2" -eq 0 ]; then
        echo "ok: $1"
    else
        echo "FAIL: $1"
        fail=1
    fi
}

jq_true() {  # JQ-EXPRESSION: status 0 when it evaluates to true
    [ "$(jq -n "$1")" = true ]
    echo $?
}

train() {  # RUN_DIR ARGS...
    local dir=$1
    shift
    "$DEFT_BIN" train "${small[@]}" --micro-batch 4 --run-dir "$dir" "$@" 2>>"$dir.log"
}

train_bg() {  # RUN_DIR ARGS...: the same in the background, its pid in $bg
    local dir=$1
    shift
    "$DEFT_BIN" train "${small[@]}" --micro-batch 4 --run-dir "$dir" "$@" 2>>"$dir.log" &
    bg=$!
}

# field F of the first / last metrics.jsonl record of SPLIT: first RUN SPLIT F
first() { jq -s "map(select(.split == \"$2\")) | first | .$3" "$1/metrics.jsonl"; }
last() { jq -s "map(select(.split == \"$2\")) | last | .$3" "$1/metrics.jsonl"; }
# the training records without their timing, for exact comparison
steps() { jq -c 'select(.split == "train") | del(.time)' "$1/metrics.jsonl"; }

finish() {  # prints the logs on failure; exits with the verdict
    if [ $fail -ne 0 ]; then
        for f in "$work"/*.log; do
            echo "== $f"
            tail -n 15 "$f"
        done
    fi
    exit $fail
}
