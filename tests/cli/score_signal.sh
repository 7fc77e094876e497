# deft score stops cleanly on a stop signal: SIGTERM (what scancel and
# mpirun send) or SIGINT to the ranks of `mpirun -np 2 deft score` in the
# middle of scoring the whole bundled HH-RLHF test split ends every rank
# within 20 s with status 1, prints the stop line once, and leaves neither
# scores.h5 nor a .tmp (a stale .tmp of an earlier killed write is removed).
set -euo pipefail

: "${DEFT_BIN:?}" "${DEFT_SOURCE_DIR:?}"
cd "$DEFT_SOURCE_DIR"
model=data/models/TinyStories-656K
data=data/hh-rlhf/harmless-base-test.jsonl.gz
work=${KEEP_WORK:-$(mktemp -d)}
bg=""
trap '[ -z "$bg" ] || kill "$bg" 2>/dev/null; [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"' EXIT
fail=0

check() {  # NAME STATUS
    if [ "$2" != 0 ]; then echo "FAIL: $1"; fail=1; else echo "ok: $1"; fi
}

wait_for() {  # FILE PATTERN: until grep finds it (60 s at most)
    for _ in $(seq 1200); do
        grep -qs -- "$2" "$1" && return 0
        sleep 0.05
    done
    return 1
}

mpirun --oversubscribe -np 1 "$DEFT_BIN" qdiff --data "$data" --tokenizer "$model" \
    --out "$work/q.h5" >"$work/q.log" 2>&1 || { cat "$work/q.log"; exit 1; }

for sig in TERM INT; do
    out="$work/stopped-by-$sig.h5"
    log="$work/$sig.log"
    echo "stale" >"$out.tmp"
    timeout 120 mpirun --oversubscribe -np 2 "$DEFT_BIN" score --data "$data" --model "$model" \
        --qdiff "$work/q.h5" --max-len 256 --batch-size 8 --out "$out" >"$log" 2>&1 &
    bg=$!
    if ! wait_for "$log" '^\[score\] '; then
        echo "FAIL $sig: no progress line"; cat "$log"; exit 1
    fi
    # the ranks only: their command line starts with the deft binary (mpirun's does not)
    pkill -"$sig" -f "^[^ ]*deft score .*$out" || { echo "FAIL $sig: no rank found"; exit 1; }
    t0=$SECONDS
    rc=0
    wait "$bg" || rc=$?
    bg=""
    took=$((SECONDS - t0))
    num=$(kill -l "$sig")
    check "$sig: ended within 20 s (took $took s)" "$([ "$took" -le 20 ]; echo $?)"
    check "$sig: status 1 (got $rc; 124 is the timeout)" "$([ "$rc" = 1 ]; echo $?)"
    line="^score: stopped by signal $num after [0-9]+ of 2308 samples; nothing written, "
    n=$(grep -Ec "${line}run it again to redo it\$" "$log" || true)
    check "$sig: the stop line printed once (got $n)" "$([ "$n" = 1 ]; echo $?)"
    check "$sig: no error line" "$(! grep -q '^error:' "$log"; echo $?)"
    check "$sig: no scores.h5" "$([ ! -e "$out" ]; echo $?)"
    check "$sig: no .tmp" "$([ ! -e "$out.tmp" ]; echo $?)"
    [ "$fail" = 0 ] || { echo "--- $log"; grep -v '^[|+]' "$log"; }
done

exit "$fail"
