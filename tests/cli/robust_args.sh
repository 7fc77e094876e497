#!/usr/bin/env bash
# Stray command-line words are refused, not ignored: `--strict false` must not
# run with strict on, and a config file named without -c must not run on the
# defaults. Usage errors exit 2 on 1 and 2 ranks, without hanging.
set -uo pipefail
deft="${DEFT_BIN:?}"
tmp=$(mktemp -d /tmp/deft_robust_args.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

expect_usage() {  # NP PATTERN ARGS...: exit 2 with PATTERN in the log
    local np=$1 pat=$2
    shift 2
    timeout 60 mpirun --oversubscribe -np "$np" "$deft" "$@" >"$tmp/log" 2>&1
    local rc=$?
    [ $rc -eq 2 ] || { cat "$tmp/log"; bad "np=$np $*: exit $rc, expected 2"; }
    grep -qF -- "$pat" "$tmp/log" || { cat "$tmp/log"; bad "np=$np $*: no '$pat'"; }
}

printf 'qdiff:\n  top: 3\n' >"$tmp/run.yaml"
for np in 1 2; do
    expect_usage "$np" "--strict false: a true/false flag takes no separate value" \
        qdiff --data "$tmp/none.jsonl" --strict false
    expect_usage "$np" "--per-subset=true" qdiff --data "$tmp/none.jsonl" --per-subset true
    expect_usage "$np" "a config file is loaded with -c $tmp/run.yaml" qdiff "$tmp/run.yaml"
    expect_usage "$np" "'extra': unexpected argument" select --scores s.h5 extra
    expect_usage "$np" "'3': unexpected argument" train --max-steps 2 3
done
echo "stray arguments refused"

# The command line itself: a typing slip gets a suggestion, --version works,
# --help lists the pipeline in order, and a message says its command once.
"$deft" trian >"$tmp/log" 2>&1 && bad "deft trian succeeded"
grep -qF "did you mean train?" "$tmp/log" || { cat "$tmp/log"; bad "no suggestion for trian"; }
[ "$("$deft" --version)" = "$("$deft" version)" ] || bad "deft --version differs from version"
order=$("$deft" --help | awk '/^  [a-z]/ {printf "%s ", $1}')
[ "$order" = "run qdiff score select train export plot tokenize logprobs generate init \
config-doc version " ] || bad "deft --help order: $order"
"$deft" run --stages nope >"$tmp/log" 2>&1
grep -q "deft run: run:" "$tmp/log" && { cat "$tmp/log"; bad "doubled prefix"; }
# qdiff and tokenize take the tokenizer from --model when --tokenizer is not given
{ zcat "${DEFT_SOURCE_DIR:-.}/data/hh-rlhf/harmless-base-test.jsonl.gz" || true; } | head -4 \
    >"$tmp/pairs.jsonl"
model="${DEFT_SOURCE_DIR:-.}/data/models/TinyStories-656K"
"$deft" qdiff --model "$model" --data "$tmp/pairs.jsonl" --out "$tmp/q.h5" >"$tmp/log" 2>&1 \
    || { cat "$tmp/log"; bad "qdiff --model without --tokenizer"; }
[ "$(echo '{"text": "hi"}' | "$deft" tokenize --model "$model")" = '{"ids": [141, 61]}' ] \
    || bad "tokenize --model without --tokenizer"
"$deft" qdiff --data "$tmp/pairs.jsonl" --out "$tmp/q.h5" >"$tmp/log" 2>&1
grep -q "deft qdiff: qdiff:" "$tmp/log" && { cat "$tmp/log"; bad "doubled prefix"; }
grep -qF "deft qdiff: no tokenizer" "$tmp/log" || { cat "$tmp/log"; bad "qdiff without tokenizer"; }
echo "command line checked"
exit $fail
