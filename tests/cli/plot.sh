#!/usr/bin/env bash
# deft plot: PNG files from a metrics.jsonl with train and eval records, and
# from two runs together; a missing gnuplot and a broken line are clear errors.
set -euo pipefail
deft=${DEFT_BIN:-build/deft}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

for s in 1 2 3 4 5 6 7 8 9 10; do
  printf '{"step": %d, "loss": %s, "loss_sft": %s, "reward_acc": %s, "r_q": %s, "lr": 1e-4}\n' \
    "$s" "0.$((90 - s))" "1.$((50 - s))" "0.$((50 + s))" "-0.0$((30 - s))" >> "$tmp/metrics.jsonl"
done
echo '{"step": 10, "split": "eval", "loss": 0.85, "r_q": -0.02}' >> "$tmp/metrics.jsonl"

"$deft" plot "$tmp" 2> "$tmp/log" || { cat "$tmp/log"; fail "deft plot failed"; }
for f in loss accuracy r_q; do
  png="$tmp/plots/$f.png"
  [ -s "$png" ] || fail "$png missing"
  [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$png not a PNG"
done
[ ! -e "$tmp/plots/rewards.png" ] || fail "rewards.png drawn without reward metrics"
grep -q "11 records" "$tmp/log" || fail "record count not reported"

# gnuplot's enhanced text subscripts after "_": titles and labels escape it
# (R_Q, pi_ref). A gnuplot on PATH that keeps the scripts it is given:
mkdir "$tmp/bin"
printf '#!/bin/sh\ntee -a "%s" | "%s"\n' "$tmp/scripts.gp" "$(command -v gnuplot)" \
  > "$tmp/bin/gnuplot"
chmod +x "$tmp/bin/gnuplot"
PATH="$tmp/bin:$PATH" "$deft" plot "$tmp" 2> "$tmp/log" || { cat "$tmp/log"; fail "plot"; }
grep -q '^set title ".*R\\\\_Q' "$tmp/scripts.gp" || fail "no escaped R_Q title"
if grep -E '^set (title|ylabel) ' "$tmp/scripts.gp" | grep -q '[^\\]_'; then
  fail "an unescaped _ in a title or label: $(grep -E '^set (title|ylabel)' "$tmp/scripts.gp")"
fi

# Two runs on shared axes: compare-*.png in the first run's plots/, one line
# per run and metric labelled by the run folder's (escaped) base name.
for w in 0 3; do
  mkdir "$tmp/omega_$w"
  for s in 1 2 3 4; do  # train r_q: omega_0 stays at -0.09, omega_3 climbs to -0.05
    printf '{"step": %d, "split": "train", "loss": 0.%d, "acc": 0.5, "r_q": -0.0%d}\n' \
      "$s" "$((70 - s))" "$((9 - s * w / 3))" >> "$tmp/omega_$w/metrics.jsonl"
  done
  echo "{\"step\": 4, \"split\": \"eval\", \"loss\": 0.6, \"r_q\": -0.2$w}" \
    >> "$tmp/omega_$w/metrics.jsonl"
done
: > "$tmp/scripts.gp"
PATH="$tmp/bin:$PATH" "$deft" plot "$tmp/omega_0" "$tmp/omega_3/" 2> "$tmp/log" ||
  { cat "$tmp/log"; fail "plot of two runs"; }
for f in loss accuracy r_q; do
  png="$tmp/omega_0/plots/compare-$f.png"
  [ -s "$png" ] || fail "$png missing"
  [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "$png not a PNG"
  grep -qF "$png" "$tmp/log" || fail "$png not reported"
done
[ ! -e "$tmp/omega_0/plots/r_q.png" ] || fail "two runs drew a single run's r_q.png"
[ ! -e "$tmp/omega_3/plots" ] || fail "two runs wrote into the second run's folder"
grep -q "5 records of .*omega_0/metrics.jsonl, 5 records of .*omega_3//*metrics.jsonl" \
  "$tmp/log" || fail "record counts of both runs not reported: $(cat "$tmp/log")"
# the R_Q picture (drawn last): both runs' series, each with its own numbers
rq=$(sed -n '/^set output ".*compare-r_q.png"/,$p' "$tmp/scripts.gp")
for v in '4 -0.09' '4 -0.05' '4 -0.2' '4 -0.23'; do
  grep -qx -- "$v" <<< "$rq" || fail "R_Q picture lacks the point '$v'"
done
for w in 0 3; do
  for split in train eval; do
    grep -qF "title \"omega\\\\_$w: r\\\\_q ($split)\"" <<< "$rq" ||
      fail "no escaped R_Q line for omega_$w ($split)"
  done
done
grep -q 'lc 1 dt 1 title "omega\\\\_0: r' <<< "$rq" || fail "omega_0 not in colour 1"
grep -q 'lc 2 dt 1 title "omega\\\\_3: r' <<< "$rq" || fail "omega_3 not in colour 2"
if grep -o 'title "[^"]*"' "$tmp/scripts.gp" | grep -q '[^\\]_'; then
  fail "an unescaped _ in a line title: $(grep -o 'title "[^"]*"' "$tmp/scripts.gp")"
fi
# --out: any folder; runs with the same base name are labelled by their paths
mkdir -p "$tmp/a" "$tmp/b"
cp -r "$tmp/omega_0" "$tmp/a/run"
cp -r "$tmp/omega_3" "$tmp/b/run"
rm -r "$tmp/a/run/plots"
: > "$tmp/scripts.gp"
PATH="$tmp/bin:$PATH" "$deft" plot "$tmp/a/run" "$tmp/b/run" --out "$tmp/cmp" 2> "$tmp/log" ||
  { cat "$tmp/log"; fail "plot --out of two runs"; }
[ -s "$tmp/cmp/compare-r_q.png" ] || fail "--out: compare-r_q.png missing"
[ ! -e "$tmp/a/run/plots" ] || fail "--out: wrote into the first run's plots/ too"
grep -qF "/a/run: r\\\\_q (train)" "$tmp/scripts.gp" || fail "same base names: no path labels"

set +e
PATH=/nonexistent "$deft" plot "$tmp" 2> "$tmp/log"; rc=$?
set -e
[ "$rc" = 2 ] || fail "missing gnuplot: exit $rc, expected 2"
grep -q "gnuplot-nox" "$tmp/log" || fail "missing gnuplot: no install hint"

echo '{"step": 11, "loss": }' >> "$tmp/metrics.jsonl"
set +e
"$deft" plot "$tmp" 2> "$tmp/log"; rc=$?
set -e
[ "$rc" = 3 ] || fail "broken line: exit $rc, expected 3"
grep -q "metrics.jsonl:12:" "$tmp/log" || fail "broken line: no file:line in the message"
echo "plot: ok"
