# deft qdiff, score and select under mpirun with 1, 2, 3 and 4 ranks, with
# the real TinyStories-656K model and its tokenizer on heads of the bundled
# HH-RLHF and PRO files (tests/fixtures/score): every per-sample dataset of
# scores.h5 is the same to the last bit for every rank count, selected.jsonl
# is the same and holds exactly ceil(0.05 * n) lines per subset (n: samples
# scored), /ifd matches its definition, and bad inputs are refused.
set -euo pipefail

: "${DEFT_BIN:?}" "${DEFT_SOURCE_DIR:?}"
cd "$DEFT_SOURCE_DIR"
fix=tests/fixtures/score
model=data/models/TinyStories-656K
work=${KEEP_WORK:-$(mktemp -d)}
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT
fail=0
hh=("$fix/harmless-base-head.jsonl.gz")
pro=("$fix/pro-harmless-base-head.jsonl" "$fix/pro-helpful-base-head.jsonl"
     "$fix/pro-sampled-dev-head.jsonl")

run() {  # NP LOG SUBCOMMAND ARGS...
    local np=$1 log=$2
    shift 2
    if ! mpirun --oversubscribe -np "$np" "$DEFT_BIN" "$@" >"$log" 2>&1; then
        echo "FAIL: deft $1 (np $np) failed:"; cat "$log"; fail=1; return 1
    fi
}

# Every per-sample dataset as text with all 17 significant digits.
dump() {  # SCORES.H5
    local d
    for d in score loglik sample_file sample_line subset response_tokens status ifd; do
        h5dump -m %.17g -y -w 0 -d "/$d" "$1" 2>/dev/null | sed -n '/DATA {/,/}/p' || true
    done
}

# Number of finite values of /score.
n_scored() {  # SCORES.H5
    h5dump -m %.17g -y -w 0 -d /score "$1" | sed -n '/DATA {/,/}/p' | tr ',' '\n' |
        grep -Eic '^ *-?[0-9]' || true
}

# Per subset: "k n" for each subset in the report, in order.
report_k() {  # REPORT
    awk '/"scored":/ { gsub(/[^0-9]/, ""); n = $0 }
         /"k":/ { gsub(/[^0-9]/, ""); print $0, n }' "$1"
}

check_same() {  # NAME BASE OTHER...
    local name=$1 base=$2
    shift 2
    local o
    for o in "$@"; do
        if ! cmp -s "$base" "$o"; then
            echo "FAIL $name: $o differs from $base"; diff "$base" "$o" | head -5; fail=1
        fi
    done
}

# k = ceil(0.05 n) for every subset, and the lines of selected.jsonl sum to it.
check_k() {  # NAME REPORT SELECTED
    local bad total lines
    bad=$(report_k "$2" | awk '{ if ($1 != int(($2 * 5 + 99) / 100)) print }')
    total=$(report_k "$2" | awk '{ s += $1 } END { print s + 0 }')
    lines=$(wc -l <"$3")
    if [ -n "$bad" ] || [ "$total" != "$lines" ] || [ "$total" -lt 1 ]; then
        echo "FAIL $1: k per subset (k n): $(report_k "$2" | tr '\n' ';'), $lines lines"
        fail=1
    fi
}

# ---------------------------------------------------------------------------
# HH-RLHF: one subset, the global Q_diff
run 1 "$work/q.log" qdiff --data "${hh[@]}" --tokenizer "$model" --out "$work/q.h5" || exit 1
for np in 1 2 4; do
    run "$np" "$work/s$np.log" score --data "${hh[@]}" --model "$model" --qdiff "$work/q.h5" \
        --max-len 256 --batch-size 8 --out "$work/s$np.h5" || continue
    dump "$work/s$np.h5" >"$work/s$np.txt"
    run "$np" "$work/sel$np.log" select --scores "$work/s$np.h5" --data "${hh[@]}" \
        --out "$work/sel$np.jsonl" || continue
done
[ "$(grep -c 'DATA {' "$work/s1.txt")" = 7 ] || { echo "FAIL hh: scores.h5 incomplete"; fail=1; }
check_same "hh scores" "$work/s1.txt" "$work/s2.txt" "$work/s4.txt"
check_same "hh selection" "$work/sel1.jsonl" "$work/sel2.jsonl" "$work/sel4.jsonl"
n=$(n_scored "$work/s1.h5")
if [ "$n" -lt 95 ]; then
    echo "FAIL hh: only $n of 100 samples scored"; fail=1
fi
if [ "$(wc -l <"$work/sel1.jsonl")" != $(((n * 5 + 99) / 100)) ]; then
    echo "FAIL hh: $(wc -l <"$work/sel1.jsonl") lines selected of $n scored"; fail=1
fi
check_k hh "$work/sel1.report.json" "$work/sel1.jsonl"
grep -q 'samples/s' "$work/s1.log" || { echo "FAIL hh: no progress line"; fail=1; }
# the selected lines are input lines, verbatim
gzip -cd "${hh[0]}" | grep -cxFf "$work/sel1.jsonl" >"$work/nsel" || true
[ "$(cat "$work/nsel")" = "$(wc -l <"$work/sel1.jsonl")" ] ||
    { echo "FAIL hh: selected lines are not input lines"; fail=1; }

# ---------------------------------------------------------------------------
# PRO files: five subsets, per-subset Q_diff, IFD under the same model
run 1 "$work/pq.log" qdiff --data "${pro[@]}" --tokenizer "$model" --per-subset \
    --out "$work/pq.h5" || exit 1
for np in 1 3; do
    run "$np" "$work/ps$np.log" score --data "${pro[@]}" --model "$model" \
        --qdiff "$work/pq.h5" --max-len 256 --batch-size 4 --ifd-model "$model" \
        --out "$work/ps$np.h5" || continue
    dump "$work/ps$np.h5" >"$work/ps$np.txt"
    run "$np" "$work/psel$np.log" select --scores "$work/ps$np.h5" --data "${pro[@]}" \
        --out "$work/psel$np.jsonl" || continue
    run "$np" "$work/pifd$np.log" select --scores "$work/ps$np.h5" --data "${pro[@]}" \
        --by ifd --out "$work/pifd$np.jsonl" || continue
done
[ "$(grep -c 'DATA {' "$work/ps1.txt")" = 8 ] || { echo "FAIL pro: scores.h5 incomplete"; fail=1; }
check_same "pro scores" "$work/ps1.txt" "$work/ps3.txt"
check_same "pro selection" "$work/psel1.jsonl" "$work/psel3.jsonl"
check_same "pro ifd selection" "$work/pifd1.jsonl" "$work/pifd3.jsonl"
check_k pro "$work/psel1.report.json" "$work/psel1.jsonl"
nsub=$(report_k "$work/psel1.report.json" | wc -l)
[ "$nsub" -ge 4 ] || { echo "FAIL pro: $nsub subsets in the report"; fail=1; }
grep -q 'per subset' "$work/ps1.log" || { echo "FAIL pro: per-subset Q_diff not used"; fail=1; }
# IFD = exp(loglik(y) - loglik(y | x)): finite, positive, and not all on one side of 1
h5dump -m %.17g -y -w 0 -d /ifd "$work/ps1.h5" | sed -n '/DATA {/,/}/p' | tr ',' '\n' |
    awk '$1 ~ /^[0-9]/ { n++; if ($1 <= 0) bad++; if ($1 < 1) lo++ }
         END { exit !(n > 40 && !bad && lo > 0 && lo < n) }' ||
    { echo "FAIL pro: /ifd values out of shape"; fail=1; }

# ---------------------------------------------------------------------------
# refused inputs
if mpirun --oversubscribe -np 2 "$DEFT_BIN" score --data "${hh[@]}" --model "$work/none" \
        --qdiff "$work/q.h5" --out "$work/x.h5" >"$work/e1.log" 2>&1; then
    echo "FAIL: a missing model folder was accepted"; fail=1
fi
if "$DEFT_BIN" score --data "${hh[@]}" --model "$model" --qdiff "$work/q.h5" \
        --responses all --out "$work/x.h5" >"$work/e2.log" 2>&1; then
    echo "FAIL: responses all was accepted"; fail=1
fi
if "$DEFT_BIN" score --data "${hh[@]}" --model "$model" --qdiff "$work/q.h5" --max-len 2 \
        --out "$work/x.h5" >"$work/e3.log" 2>&1 || ! grep -q "max_len" "$work/e3.log"; then
    echo "FAIL: max_len 2 was accepted or the message does not name it"; fail=1
fi
[ ! -e "$work/x.h5" ] || { echo "FAIL: a failed run left $work/x.h5"; fail=1; }

[ "$fail" = 0 ] && echo "score_select_mpi: all checks passed"
exit "$fail"
