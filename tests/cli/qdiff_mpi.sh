#!/usr/bin/env bash
# deft qdiff under mpirun: outputs byte-identical across 1, 2 and 4 ranks
# (HH-RLHF with the Llama 3 tokenizer; PRO files with per-subset Q_diff),
# sum(Q_diff) ~ 0, sensible top tokens, a -c config, malformed lines counted,
# --strict failing with file:line and status 3, and a missing file failing
# cleanly, with 1 and 2 ranks and never hanging.
set -uo pipefail
deft="${DEFT_BIN:?}"
tmp=$(mktemp -d /tmp/deft_qdiff_mpi.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
say() { echo "$*"; }
bad() { echo "FAIL: $*"; fail=1; }

qdiff() {  # qdiff NP LOG ARGS...: run deft qdiff on NP ranks, status in $rc
    local np=$1 log=$2
    shift 2
    timeout 60 mpirun --oversubscribe -np "$np" "$deft" qdiff "$@" >"$log" 2>&1
    rc=$?
    [ $rc -eq 124 ] && bad "deft qdiff on $np ranks timed out: $*"
}

# Every dataset of a file, as h5dump prints it (header line dropped).
datasets() { h5dump -H "$1" | awk '/DATASET/ {print $2}' | tr -d '"'; }
same_datasets() {  # same_datasets A B
    local d
    for d in $(datasets "$1"); do
        cmp -s <(h5dump -d "$d" "$1" | tail -n +2) <(h5dump -d "$d" "$2" | tail -n +2) ||
            bad "$d differs between $1 and $2"
    done
}
qsum() {  # sum of a float64 dataset, in double precision
    h5dump -d "$2" -m %.17g -y -w 0 "$1" | sed -n '/DATA {/,/}/p' | tr ',' '\n' |
        awk '/^ *-?[0-9]/ {s += $1} END {printf "%.3g\n", s}'
}
attr() { h5dump -a "$2" "$1" | awk '/\(0\)/ {print $2}'; }

# --- HH-RLHF, Llama 3 tokenizer, 1 / 2 / 4 ranks -----------------------------
hh=data/hh-rlhf/harmless-base-test.jsonl.gz
llama3=data/llama3/tokenizer.model   # loads faster than the folder's tokenizer.json
small=data/llama3/small/tiktoken_small.model
for np in 1 2 4; do
    qdiff "$np" "$tmp/hh$np.log" --data "$hh" --tokenizer "$llama3" --out "$tmp/hh$np.h5"
    [ $rc -eq 0 ] || { cat "$tmp/hh$np.log"; bad "hh np=$np exit $rc"; }
done
for np in 2 4; do
    cmp -s "$tmp/hh1.h5" "$tmp/hh$np.h5" || bad "hh: file differs between 1 and $np ranks"
    same_datasets "$tmp/hh1.h5" "$tmp/hh$np.h5"
done
s=$(qsum "$tmp/hh1.h5" /qdiff)
awk -v s="$s" 'BEGIN {exit !(s < 1e-12 && s > -1e-12)}' || bad "hh: sum(Q_diff) = $s"
say "hh: 1/2/4 ranks identical, sum(Q_diff) = $s"
[ "$(attr "$tmp/hh1.h5" /records_used)" = 2308 ] || bad "hh: records_used"
[ "$(attr "$tmp/hh1.h5" /skipped_empty_response)" = 4 ] || bad "hh: skipped_empty_response"
# What the preference in harmless-base is about: refusals up, plain prose down.
pos=$(sed -n '/preferred responses/,/rejected responses/p' "$tmp/hh1.log")
neg=$(sed -n '/rejected responses/,$p' "$tmp/hh1.log")
for t in '" I"' '" sorry"' '" not"'; do
    grep -qF "$t" <<<"$pos" || bad "hh: $t not among the top positive tokens"
done
for t in '" the"' '" to"'; do
    grep -qF "$t" <<<"$neg" || bad "hh: $t not among the top negative tokens"
done
grep -q 'records/s' "$tmp/hh1.log" || bad "hh: no progress line"

# --- the same through a config file, with the tokenizer.json of the folder -----
cat >"$tmp/run.yaml" <<YAML
data:
  - $hh
tokenizer: data/llama3
qdiff:
  out: $tmp/hhc.h5
  top: 3
YAML
qdiff 1 "$tmp/hhc.log" -c "$tmp/run.yaml"
[ $rc -eq 0 ] || { cat "$tmp/hhc.log"; bad "config run exit $rc"; }
same_datasets "$tmp/hh1.h5" "$tmp/hhc.h5"

# --- PRO ranked data with per-subset Q_diff, 1 / 2 / 4 ranks -----------------
for np in 1 2 4; do
    qdiff "$np" "$tmp/pro$np.log" --data data/hh-rlhf-pro/*.jsonl --tokenizer "$llama3" \
        --per-subset --top 5 --out "$tmp/pro$np.h5"
    [ $rc -eq 0 ] || { cat "$tmp/pro$np.log"; bad "pro np=$np exit $rc"; }
done
for np in 2 4; do
    cmp -s "$tmp/pro1.h5" "$tmp/pro$np.h5" || bad "pro: file differs between 1 and $np ranks"
    same_datasets "$tmp/pro1.h5" "$tmp/pro$np.h5"
done
for sub in harmless-base helpful-base helpful-online helpful-rejection-sampled; do
    s=$(qsum "$tmp/pro1.h5" "/subsets/$sub/qdiff")
    awk -v s="$s" 'BEGIN {exit !(s < 1e-12 && s > -1e-12)}' || bad "pro $sub: sum = $s"
done
say "pro: $(datasets "$tmp/pro1.h5" | wc -l) datasets identical on 1/2/4 ranks"

# --- malformed lines, --strict, a missing file: 1 and 2 ranks ----------------
mixed="$tmp/mixed.jsonl"
good='{"chosen": "\n\nHuman: hi\n\nAssistant: I cannot help.", '
good+='"rejected": "\n\nHuman: hi\n\nAssistant: Sure, here you go."}'
{
    echo "$good"
    echo '{"chosen": "no marker here", "rejected": "none here either"}'
    echo '{broken json'
    echo "$good"
    echo '{"chosen": 5, "rejected": "x"}'
    echo "$good"
} >"$mixed"
for np in 1 2; do
    qdiff "$np" "$tmp/m$np.log" --data "$mixed" --tokenizer "$small" --out "$tmp/m$np.h5"
    [ $rc -eq 0 ] || { cat "$tmp/m$np.log"; bad "mixed np=$np exit $rc"; }
    for kv in records_read=6 records_used=3 skipped_no_marker=1 skipped_invalid_json=1 \
              skipped_wrong_type=1 skipped_identical=0; do
        got=$(attr "$tmp/m$np.h5" "/${kv%=*}")
        [ "$got" = "${kv#*=}" ] || bad "mixed np=$np: ${kv%=*} = $got, want ${kv#*=}"
    done

    qdiff "$np" "$tmp/s$np.log" --data "$mixed" --tokenizer "$small" --strict \
        --out "$tmp/s$np.h5"
    [ $rc -eq 3 ] || { cat "$tmp/s$np.log"; bad "strict np=$np: exit $rc, want 3"; }
    # The first unusable line of the lowest failing rank's share: 2 or 3 here.
    grep -qE "$mixed:[23]:" "$tmp/s$np.log" || { cat "$tmp/s$np.log"; bad "strict: no file:line"; }
    [ -e "$tmp/s$np.h5" ] && bad "strict np=$np wrote an output"
    [ "$(grep -c 'error:' "$tmp/s$np.log")" -eq 1 ] || bad "strict np=$np: error not told once"

    qdiff "$np" "$tmp/x$np.log" --data "$tmp/absent.jsonl" --tokenizer "$small" \
        --out "$tmp/x$np.h5"
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || bad "missing file np=$np: exit $rc"
    grep -q "absent.jsonl" "$tmp/x$np.log" || { cat "$tmp/x$np.log"; bad "missing: no path"; }
    say "malformed/strict/missing np=$np: ok"
done

# Only rank 1's share (even lines) is bad: rank 0 reads fine and must still
# stop with rank 1 instead of waiting for it in a sum.
onebad="$tmp/onebad.jsonl"
printf '%s\n' "$good" '{"chosen": "x"}' "$good" "$good" >"$onebad"
qdiff 2 "$tmp/o.log" --data "$onebad" --tokenizer "$small" --strict --out "$tmp/o.h5"
[ $rc -eq 3 ] || { cat "$tmp/o.log"; bad "strict, one failing rank: exit $rc, want 3"; }
grep -q "$onebad:2:" "$tmp/o.log" || { cat "$tmp/o.log"; bad "strict, one rank: no file:line"; }

[ $fail -eq 0 ] && say "qdiff_mpi: all passed"
exit $fail
