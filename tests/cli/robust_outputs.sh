#!/usr/bin/env bash
# An output path that names an input file is refused before anything is
# written: `deft select --out data.jsonl` used to replace the data with the
# selection, and qdiff/score --out over a data or Q_diff file destroyed it.
# Exit 2 on 1 and 2 ranks, the inputs byte for byte unchanged.
set -uo pipefail
deft="${DEFT_BIN:?}"
cd "${DEFT_SOURCE_DIR:?}"
tmp=$(mktemp -d /tmp/deft_robust_outputs.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
model=data/models/TinyStories-656K

zcat tests/fixtures/score/harmless-base-head.jsonl.gz | head -4 >"$tmp/d.jsonl"
"$deft" qdiff --data "$tmp/d.jsonl" --tokenizer "$model" --out "$tmp/q.h5" --top 0 \
    2>"$tmp/prep.log" &&
    "$deft" score --data "$tmp/d.jsonl" --model "$model" --qdiff "$tmp/q.h5" --max-len 32 \
        --out "$tmp/s.h5" 2>>"$tmp/prep.log" || { cat "$tmp/prep.log"; exit 1; }
sums() { sha256sum "$tmp/d.jsonl" "$tmp/q.h5" "$tmp/s.h5"; }
before=$(sums)

refused() {  # NP ARGS...: exit 2 with the message, nothing changed
    local np=$1
    shift
    timeout 60 mpirun --oversubscribe -np "$np" "$deft" "$@" >"$tmp/log" 2>&1
    local rc=$?
    [ $rc -eq 2 ] || { cat "$tmp/log"; bad "np=$np $*: exit $rc, expected 2"; }
    grep -q "writing it would destroy the input" "$tmp/log" || bad "np=$np $*: no message"
    [ "$(sums)" = "$before" ] || bad "np=$np $*: an input changed"
}

# the same file under another spelling of its path, too
for np in 1 2; do
    refused "$np" select --data "$tmp/d.jsonl" --scores "$tmp/s.h5" --out "$tmp/./d.jsonl"
    refused "$np" score --data "$tmp/d.jsonl" --model "$model" --qdiff "$tmp/q.h5" \
        --out "$tmp/q.h5"
done
refused 1 select --data "$tmp/d.jsonl" --scores "$tmp/s.h5" --out "$tmp/s.h5"
refused 2 qdiff --data "$tmp/d.jsonl" --tokenizer "$model" --out "$tmp/d.jsonl"
refused 1 score --data "$tmp/d.jsonl" --model "$model" --qdiff "$tmp/q.h5" \
    --out "$tmp/../$(basename "$tmp")/d.jsonl"
# A new output path is still fine.
"$deft" select --data "$tmp/d.jsonl" --scores "$tmp/s.h5" --out "$tmp/sel.jsonl" \
    --fraction 1 2>"$tmp/log" || { cat "$tmp/log"; bad "select to a new file failed"; }
[ "$(wc -l <"$tmp/sel.jsonl")" = 4 ] || bad "select to a new file: not 4 lines"
echo "outputs over inputs refused"
exit $fail
