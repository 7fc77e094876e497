#!/usr/bin/env bash
# deft plot: PNG files from a metrics.jsonl with train and eval records; a
# missing gnuplot and a broken line are clear errors.
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
