#!/usr/bin/env bash
# Tokenizer files and Q_diff files that do not belong together are refused:
# a tiktoken line with an absurd rank is a format error (not an abort), its
# message quotes the offending line intact, and `deft score` refuses a Q_diff
# made with another tokenizer (its length differs from the tokenizer's ids).
set -uo pipefail
deft="${DEFT_BIN:?}"
cd "${DEFT_SOURCE_DIR:?}"
tmp=$(mktemp -d /tmp/deft_robust_tok.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# a rank of two billion: used to overflow the per-id arrays' growth and abort
printf 'IQ== 0\nIg== 2000000000\n' >"$tmp/huge.model"
echo '{"text": "a"}' | timeout 30 "$deft" tokenize --tokenizer "$tmp/huge.model" \
    >/dev/null 2>"$tmp/log"
rc=$?
[ $rc -eq 3 ] || { cat "$tmp/log"; bad "huge rank: exit $rc, expected 3"; }
grep -q "huge.model:2: .*got 'Ig== 2000000000'" "$tmp/log" ||
    { cat "$tmp/log"; bad "huge rank: message"; }

# a malformed line is quoted as it was in the file (it was quoted after free)
printf 'IQ== 0\nnot-base64!! 1\n' >"$tmp/bad.model"
echo '{"text": "a"}' | timeout 30 "$deft" tokenize --tokenizer "$tmp/bad.model" \
    >/dev/null 2>"$tmp/log"
grep -q "got 'not-base64!! 1'" "$tmp/log" || { cat "$tmp/log"; bad "bad line: message"; }

# Q_diff from the small tiktoken model (2,256 ids), scored with TinyStories-656K (2,048)
model=data/models/TinyStories-656K
zcat tests/fixtures/score/harmless-base-head.jsonl.gz | head -20 >"$tmp/d.jsonl"
timeout 60 "$deft" qdiff --data "$tmp/d.jsonl" --tokenizer data/llama3/small/tiktoken_small.model \
    --out "$tmp/q.h5" --top 0 2>"$tmp/log" || { cat "$tmp/log"; bad "qdiff failed"; }
timeout 60 "$deft" score --data "$tmp/d.jsonl" --model "$model" --qdiff "$tmp/q.h5" \
    --max-len 32 --out "$tmp/s.h5" >"$tmp/log" 2>&1
rc=$?
[ $rc -eq 3 ] || { cat "$tmp/log"; bad "foreign Q_diff: exit $rc, expected 3"; }
grep -q "tokenizer has 2048 ids" "$tmp/log" || { cat "$tmp/log"; bad "foreign Q_diff: message"; }
[ -e "$tmp/s.h5" ] && bad "foreign Q_diff: an output was written"

[ $fail -eq 0 ] && echo "1 passed, 0 failed" || echo "0 passed, 1 failed"
exit $fail
