# deft select under mpirun with 1-4 ranks: the same output bytes for every
# rank count, equal to the selection an independent sort (tools/check_selection.py,
# committed in tests/fixtures/select/expect-*.txt) made from the same scores,
# with exactly k lines per subset; ranks with no samples; refused inputs.
set -euo pipefail

: "${DEFT_BIN:?}" "${DEFT_SOURCE_DIR:?}"
cd "$DEFT_SOURCE_DIR"
fix=tests/fixtures/select
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=(data/hh-rlhf/harmless-base-test.jsonl.gz data/hh-rlhf-pro/harmless-base-test.jsonl
      data/hh-rlhf-pro/helpful-base-test.jsonl data/hh-rlhf-pro/sampled-dev.jsonl)
fail=0

run_select() {  # NP OUT ARGS...
    local np=$1 out=$2
    shift 2
    mpirun --oversubscribe -np "$np" "$DEFT_BIN" select --out "$out" "$@" 2>"$out.log"
}

# The expected output: the input lines named by "FILE LINE" in an expect file,
# cut from the data files with awk, in (file, line) order.
expected_lines() {  # EXPECT DATA...
    local expect=$1
    shift
    local f=0 path
    for path in "$@"; do
        awk -v f="$f" '$1 == f { print $2 }' "$expect" >"$work/want"
        if [ -s "$work/want" ]; then
            gzip -cdf "$path" | awk 'NR == FNR { w[$1] = 1; next } FNR in w' "$work/want" -
        fi
        f=$((f + 1))
    done
}

# The k of every subset in the report, in order, against the expect file's.
check_k() {  # REPORT EXPECT NAME
    local got want
    got=$(grep '"k":' "$1" | tr -dc '0-9\n' | tr '\n' ' ')
    want=$(awk '$1 == "k" { printf "%s ", $3 }' "$2")
    if [ "$got" != "$want" ]; then
        echo "FAIL $3: k per subset $got, expected $want"
        fail=1
    fi
}

check_case() {  # NAME EXPECT "NP..." ARGS...
    local name=$1 expect=$2 nps=$3
    shift 3
    expected_lines "$expect" "${data[@]}" >"$work/$name.want"
    local nk
    nk=$(grep -vc '^k ' "$expect")
    for np in $nps; do
        local out="$work/$name-np$np.jsonl"
        if ! run_select "$np" "$out" --scores "$fix/scores.h5" --data "${data[@]}" "$@"; then
            echo "FAIL $name np $np: deft select failed"; cat "$out.log"; fail=1; continue
        fi
        if ! cmp -s "$out" "$work/$name.want"; then
            echo "FAIL $name np $np: output differs from the independent selection"
            fail=1
        fi
        if [ "$(wc -l <"$out")" -ne "$nk" ]; then
            echo "FAIL $name np $np: $(wc -l <"$out") lines, expected $nk"; fail=1
        fi
        check_k "${out%.jsonl}.report.json" "$expect" "$name np $np"
        if [ "$np" != "${nps%% *}" ] && ! cmp -s "$out" "$work/$name-np${nps%% *}.jsonl"; then
            echo "FAIL $name: np $np and np ${nps%% *} differ"; fail=1
        fi
    done
    echo "ok $name ($nk samples, np $nps)"
}

check_case rq "$fix/expect-rq.txt" "1 2 3 4" --fraction 0.05
check_case likelihood "$fix/expect-likelihood-0.1.txt" "1 3" --by likelihood --fraction 0.1
check_case random "$fix/expect-random-1234.txt" "2 4" --by random --seed 1234 --fraction 0.05
check_case ifd "$fix/expect-ifd.txt" "1 4" --by ifd --fraction 0.05

# Three samples on four ranks: two ranks hold nothing and still take part.
expected_lines "$fix/expect-tiny-rq-0.5.txt" data/hh-rlhf-pro/sampled-dev.jsonl >"$work/tiny.want"
for np in 1 4; do
    out="$work/tiny-np$np.jsonl"
    if run_select "$np" "$out" --scores "$fix/tiny.h5" --data data/hh-rlhf-pro/sampled-dev.jsonl \
        --fraction 0.5 && cmp -s "$out" "$work/tiny.want"; then
        check_k "$work/tiny-np$np.report.json" "$fix/expect-tiny-rq-0.5.txt" "tiny np $np"
    else
        echo "FAIL tiny np $np"; cat "$out.log"; fail=1
    fi
done
echo "ok empty ranks"

# Refused: data files other than the scored ones (checksums), a missing scores
# file, and --by ifd on scores without /ifd. Nothing may be written.
expect_fail() {  # NAME STATUS PATTERN ARGS...
    local name=$1 want=$2 pattern=$3 st=0
    shift 3
    run_select 2 "$work/$name.jsonl" "$@" || st=$?
    if [ "$st" -ne "$want" ] || ! grep -q "$pattern" "$work/$name.jsonl.log" ||
        [ -e "$work/$name.jsonl" ]; then
        echo "FAIL $name: status $st (expected $want), log:"; cat "$work/$name.jsonl.log"; fail=1
    else
        echo "ok refused: $name"
    fi
}
swapped=("${data[1]}" "${data[0]}" "${data[2]}" "${data[3]}")
expect_fail swapped 2 "sha256" --scores "$fix/scores.h5" --data "${swapped[@]}"
expect_fail too_few 2 "scored from 4 data file" --scores "$fix/scores.h5" --data "${data[0]}"
expect_fail missing 1 "cannot open" --scores "$work/none.h5" --data "${data[@]}"
expect_fail no_ifd 2 "no /ifd" --scores "$fix/tiny-noifd.h5" --by ifd \
    --data data/hh-rlhf-pro/sampled-dev.jsonl

exit $fail
