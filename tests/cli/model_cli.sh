#!/usr/bin/env bash
# deft logprobs and deft generate on the bundled TinyStories-656K model,
# against transformers (tools/make_model_cli_fixtures.py), and deft init
# followed by logprobs on the new model.
set -u
DEFT=${DEFT_BIN:-build/deft}
FIX=tests/fixtures/cli
MODEL=data/models/TinyStories-656K
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
pass=0
check() {  # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then pass=$((pass + 1)); else echo "FAIL: $what"; fail=$((fail + 1)); fi
}

# Compares two JSONL files of {"logprobs": [...]} value by value:
# |a - b| <= 1e-4 + 1e-5 |b| (float32 sums in another order)
same_logprobs() {
    awk -v tol_abs=1e-4 -v tol_rel=1e-5 '
        function vals(s, out,   n) { gsub(/.*\[|\].*/, "", s); n = split(s, out, /, */);
                                     return s == "" ? 0 : n }
        NR == FNR { want[FNR] = $0; nw = FNR; next }
        { got[FNR] = $0; ng = FNR }
        END {
            if (nw != ng) { print "lines: got " ng ", want " nw; exit 1 }
            bad = 0; worst = 0
            for (i = 1; i <= nw; i++) {
                n = vals(want[i], w); m = vals(got[i], g)
                if (n != m) { print "line " i ": " m " values, want " n; bad++; continue }
                for (j = 1; j <= n; j++) {
                    d = g[j] - w[j]; if (d < 0) d = -d
                    a = w[j] < 0 ? -w[j] : w[j]
                    if (d > worst) worst = d
                    if (d > tol_abs + tol_rel * a) {
                        print "line " i " [" j "]: " g[j] " vs " w[j]
                        bad++
                    }
                }
            }
            printf "logprobs: worst difference from transformers %.3g\n", worst
            exit bad > 0
        }' "$1" "$2"
}

# ---- logprobs vs transformers, in batches of 2 and of 1
for bs in 2 1; do
    "$DEFT" logprobs --model "$MODEL" --batch-size $bs < $FIX/logprobs_in.jsonl \
        > "$TMP/lp$bs.jsonl" 2> "$TMP/lp$bs.err"
    check "logprobs batch $bs exits 0" test $? -eq 0
    check "logprobs batch $bs matches transformers" same_logprobs $FIX/logprobs_want.jsonl \
        "$TMP/lp$bs.jsonl"
done
# padding to another length changes GEMM blocking, so only the last bits may move
check "batching changes no result beyond rounding" same_logprobs "$TMP/lp1.jsonl" \
    "$TMP/lp2.jsonl"

# ---- greedy generation vs transformers' generate(do_sample=False)
while IFS= read -r line; do
    prompt=$(printf '%s' "$line" | sed 's/^{"prompt": "\([^"]*\)".*/\1/')
    want_ids=$(printf '%s' "$line" | grep -o '"ids": \[[^]]*\]')
    want_prompt=$(printf '%s' "$line" | grep -o '"prompt_ids": \[[^]]*\]')
    out=$("$DEFT" generate --model "$MODEL" --prompt "$prompt" --max-new-tokens 32 --ids \
          2> "$TMP/gen.err")
    check "generate '$prompt' exits 0" test $? -eq 0
    check "generate '$prompt': prompt ids" test "$(printf '%s' "$out" |
        grep -o '"prompt_ids": \[[^]]*\]')" = "$want_prompt"
    got_ids=$(printf '%s' "$out" | grep -o '"ids": \[[^]]*\]')
    check "generate '$prompt': 32 greedy ids equal transformers'" test "$got_ids" = "$want_ids"
    if [ "$got_ids" != "$want_ids" ]; then
        echo "  got  $got_ids"
        echo "  want $want_ids"
    fi
done < $FIX/generate_want.jsonl

text=$("$DEFT" generate --model "$MODEL" --prompt "Once upon a time" --max-new-tokens 8 \
       2>/dev/null)
check "generate prints the prompt and its completion" \
    bash -c '[[ "$1" == "Once upon a time"* && ${#1} -gt 20 ]]' _ "$text"
a=$("$DEFT" generate --model "$MODEL" --prompt "Tom" --max-new-tokens 16 --temperature 1 \
    --top-p 0.9 --seed 3 --ids 2>/dev/null)
b=$("$DEFT" generate --model "$MODEL" --prompt "Tom" --max-new-tokens 16 --temperature 1 \
    --top-p 0.9 --seed 3 --ids 2>/dev/null)
check "sampling with a seed repeats" test -n "$a" -a "$a" = "$b"

# ---- errors name the line and field, with exit status 3
printf '{"ids": [1, 2]}\n{"ids": [1, 2\n' | "$DEFT" logprobs --model "$MODEL" \
    > /dev/null 2> "$TMP/e1"
check "malformed line: exit 3" test $? -eq 3
check "malformed line: message names stdin:2" grep -q "stdin:2" "$TMP/e1"
printf '{"ids": [1, 5000]}\n' | "$DEFT" logprobs --model "$MODEL" > /dev/null 2> "$TMP/e2"
check "id out of range: exit 3" test $? -eq 3
check "id out of range: message names ids[1]" grep -q "ids\[1\]" "$TMP/e2"
"$DEFT" logprobs < /dev/null > /dev/null 2>&1
check "no model: exit 2" test $? -eq 2

# ---- a fresh model from deft init scores near log(1/V)
"$DEFT" init --model-config $MODEL/config.json --seed 1 --out "$TMP/init" \
    --tokenizer $MODEL 2> /dev/null
check "init exits 0" test $? -eq 0
mean=$("$DEFT" logprobs --model "$TMP/init" < $FIX/logprobs_in.jsonl 2>/dev/null |
    tr -d '{}[]a-z":' | tr ',' '\n' | awk 'NF { s += $1; n++ } END { if (n) print s / n }')
check "random model: mean log-prob $mean is near -log(2048) = -7.62" \
    awk -v m="$mean" 'BEGIN { exit !(m != "" && m > -8.0 && m < -7.3) }'

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
