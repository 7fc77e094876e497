#!/usr/bin/env bash
# deft tokenize: ids of JSONL texts for both Llama 3 formats and the
# SentencePiece-style TinyStories tokenizer, the --special/--bos/--eos flags,
# a config file, and errors (malformed line, bad field, invalid UTF-8, usage).
# Expected ids are the golden vectors of data/llama3/vectors.jsonl.
set -euo pipefail
bin="${DEFT_BIN:?}"
src="${DEFT_SOURCE_DIR:?}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() { echo "FAIL: $*"; exit 1; }

expect() {  # expect NAME WANT GOT
    [[ "$2" == "$3" ]] || fail "$1: want [$2] got [$3]"
    echo "ok: $1"
}

input='{"text": "grabbed"}
{"text": " grabbed", "other": [1, 2]}

{"text": "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"}'
want_plain='{"ids": [59312, 2788]}
{"ids": [30418]}
{"ids": [27, 91, 2527, 8932, 851, 91, 29, 882, 27, 91, 408, 8932, 851, 91, 1363, 13347, '\
'88032, 91, 68, 354, 851, 91, 29]}'
want_special='{"ids": [128000, 59312, 2788, 128001]}
{"ids": [128000, 30418, 128001]}
{"ids": [128000, 128006, 882, 128007, 271, 13347, 0, 128009, 128001]}'

for tok in "$src/data/llama3/tokenizer.json" "$src/data/llama3/tokenizer.model" \
           "$src/data/llama3"; do
    got=$("$bin" tokenize --tokenizer "$tok" <<<"$input")
    expect "plain text, $(basename "$tok")" "$want_plain" "$got"
    got=$("$bin" tokenize --tokenizer "$tok" --special --bos --eos <<<"$input")
    expect "--special --bos --eos, $(basename "$tok")" "$want_special" "$got"
done

# the same keys from a config file; a flag overrides the file
cat >"$tmp/run.yaml" <<YAML
tokenizer: $src/data/llama3/tokenizer.model
tokenize:
  special: true
  bos: true
  eos: true
YAML
got=$("$bin" tokenize -c "$tmp/run.yaml" <<<"$input")
expect "config file" "$want_special" "$got"
got=$("$bin" tokenize -c "$tmp/run.yaml" --no-special --no-bos --no-eos <<<"$input")
expect "flags override the config file" "$want_plain" "$got"

# SentencePiece-style BPE with its BOS from tokenizer_config.json (<|start_story|> = 1)
got=$("$bin" tokenize --tokenizer "$src/data/models/TinyStories-656K" --bos \
      <<<'{"text": "Once upon a time"}')
expect "TinyStories" '{"ids": [1, 80, 147, 201, 282, 57]}' "$got"

# a long line (1 MB) goes through whole
{ printf '{"text": "'; printf 'the %.0s' $(seq 250000); printf '"}\n'; } >"$tmp/long.jsonl"
small="$src/data/llama3/small/tiktoken_small.model"  # the same rules, loads in ms
n=$("$bin" tokenize --tokenizer "$small" <"$tmp/long.jsonl" \
    | tr -cd ',' | wc -c)
expect "1 MB line" "250001" "$((n + 1))"  # "the", 249,999 x " the", " ": one id each

# errors: exit status 3 (format) or 2 (usage), message naming line and field
check_error() {  # check_error NAME STATUS PATTERN INPUT ARGS...
    local name=$1 status=$2 pattern=$3 in=$4
    shift 4
    set +e
    out=$("$bin" tokenize "$@" <<<"$in" 2>"$tmp/err")
    rc=$?
    set -e
    [[ $rc == "$status" ]] || fail "$name: exit status $rc, want $status ($(cat "$tmp/err"))"
    grep -q -- "$pattern" "$tmp/err" || fail "$name: stderr lacks '$pattern': $(cat "$tmp/err")"
    echo "ok: $name ($(cat "$tmp/err"))"
}
l3="--tokenizer $small"
check_error "malformed JSON" 3 "stdin:2:" $'{"text": "a"}\n{"text": "b"' $l3
check_error "missing field" 3 "stdin:1: field text: missing" '{"txt": "a"}' $l3
check_error "field not a string" 3 "stdin:2: field text: expected a string" \
    $'{"text": "a"}\n{"text": 7}' $l3
# (jansson rejects invalid UTF-8 and lone surrogates while parsing the line)
check_error "invalid UTF-8" 3 "stdin:1:.*0xff" $'{"text": "a\xff"}' $l3
check_error "lone surrogate" 3 "stdin:1:.*DC80" $'{"text": "a\\udc80"}' $l3
check_error "no tokenizer" 2 "no tokenizer" '{"text": "a"}'
check_error "missing tokenizer file" 1 "cannot open" '{"text": "a"}' \
    --tokenizer "$tmp/nothing.model"
check_error "unknown flag" 2 "speciall" '{"text": "a"}' $l3 --speciall

# lines before a bad line are still written
out=$("$bin" tokenize $l3 <<<$'{"text": "I can"}\n{"text": 1}' 2>/dev/null || true)
expect "output before the bad line" '{"ids": [73, 503]}' "$out"
echo "all tokenize checks passed"
