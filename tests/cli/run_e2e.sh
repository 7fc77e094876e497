#!/usr/bin/env bash
# deft run end to end on a small slice of the real HH-RLHF data with the real
# TinyStories model, over 2 ranks: every stage's output and the summary; a
# rerun skips every stage; a changed select key redoes select and the later
# stages only; a training stopped by a signal resumes from its checkpoint.
set -euo pipefail
deft=${DEFT_BIN:-build/deft}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; tail -n 30 "$tmp"/log* >&2 || true; exit 1; }
mpi() { mpirun --oversubscribe -np 2 "$@"; }
# Sanitizer builds (-O0) take seconds per training step: two steps there.
if ldd "$deft" 2>/dev/null | grep -q libasan; then steps=2; else steps=0; fi

# (zcat ends on SIGPIPE once head has its lines)
{ zcat data/hh-rlhf/harmless-base-test.jsonl.gz || true; } | head -40 | gzip \
  > "$tmp/pairs.jsonl.gz"
cat > "$tmp/run.yaml" <<YAML
data: [$tmp/pairs.jsonl.gz]
model: data/models/TinyStories-656K
run_dir: $tmp/run
log_every: 1
score: {batch_size: 8, max_len: 48}
select: {fraction: 0.25}
train:
  method: dpo
  omega: 3
  lr: 2e-3
  epochs: 6
  max_steps: $steps
  micro_batch: 1
  max_len: 48
  max_prompt_len: 32
  eval_fraction: 0.1
  checkpoint_every: 4
run: {generate: 2, generate_tokens: 8}
YAML
run="$tmp/run"

# 1. a first run makes everything
mpi "$deft" run "$tmp/run.yaml" > "$tmp/log1" 2>&1 || fail "first run failed"
for f in qdiff.h5 scores.h5 selected.jsonl selected.report.json ref.h5 metrics.jsonl \
         export/config.json export/model.safetensors export/tokenizer.json \
         generations.jsonl run.log summary.md plots/loss.png plots/r_q.png; do
  [ -s "$run/$f" ] || fail "$f missing after the first run"
done
ls "$run"/checkpoints/step-*.h5 > /dev/null || fail "no checkpoint"
for s in qdiff score select train export generate; do
  [ -s "$run/stages/$s.json" ] || fail "no record of stage $s"
done
for want in "# deft run:" "selected (lowest R_Q" "R_Q (train):" "loss (train):" \
            "exported model:" "before:" "after:"; do
  grep -qF -- "$want" "$tmp/log1" || fail "summary lacks '$want'"
  grep -qF -- "$want" "$run/summary.md" || fail "summary.md lacks '$want'"
done
[ "$(wc -l < "$run/generations.jsonl")" = 2 ] || fail "expected 2 generations"
grep -q "== train: running" "$run/run.log" || fail "run.log lacks the stage lines"
for s in qdiff score select train export generate; do
  grep -q "== $s: running (not done yet)" "$tmp/log1" || fail "reason of the first $s"
done
for png in loss accuracy rewards r_q; do
  grep -qF "plots/$png.png" "$run/summary.md" || fail "summary lacks $png.png"
done
grep -q "2 ranks" "$tmp/log1" || fail "rank count"
k=$(wc -l < "$run/selected.jsonl")
[ "$k" = 10 ] || fail "selected $k records, expected ceil(0.25 * 40) = 10"

# 2. a rerun skips every stage
mpi "$deft" run "$tmp/run.yaml" > "$tmp/log2" 2>&1 || fail "second run failed"
[ "$(grep -c 'skipped, unchanged' "$tmp/log2")" = 6 ] || fail "the rerun redid a stage"
grep -q "stages run: none" "$tmp/log2" || fail "summary of the rerun"

# 3. a changed select key: select and later stages are redone, not qdiff and score
sed -i 's/fraction: 0.25/fraction: 0.3/' "$tmp/run.yaml"
mpi "$deft" run "$tmp/run.yaml" > "$tmp/log3" 2>&1 || fail "third run failed"
for s in qdiff score; do
  grep -q "== $s: skipped" "$tmp/log3" || fail "$s was redone after a select change"
done
for s in select train export generate; do
  grep -q "== $s: running" "$tmp/log3" || fail "$s was not redone after a select change"
done
grep -q "== select: running (config changed)" "$tmp/log3" || fail "reason for redoing select"
[ "$(wc -l < "$run/selected.jsonl")" = 12 ] || fail "fraction 0.3 should keep 12"
grep -q "== train: running (an earlier stage was redone)" "$tmp/log3" || fail "reason of train"

# 3b. only some stages: those left out behind them are out of date, and the
# summary shows none of their stale outputs; the next full run names the
# input that changed
sed -i 's/fraction: 0.3/fraction: 0.35/' "$tmp/run.yaml"
mpi "$deft" run "$tmp/run.yaml" --stages select train > "$tmp/log3b" 2>&1 || fail "select train"
grep -q "out of date (not run): export generate;" "$run/summary.md" || fail "stale stages"
grep -q "skipped (unchanged): qdiff score;" "$run/summary.md" || fail "unchanged stages"
grep -qF "exported model:" "$run/summary.md" && fail "the summary shows a stale export"
grep -qF "before:" "$run/summary.md" && fail "the summary shows stale generations"
mpi "$deft" run "$tmp/run.yaml" > "$tmp/log3c" 2>&1 || fail "full run after select train"
grep -q "== export: running (input .*checkpoints/step-[0-9]*\.h5 changed" "$tmp/log3c" \
  || fail "export should name its changed input checkpoint"

# 3c. a missing data file is named with its config line before any stage
sed "s|\[$tmp/pairs.jsonl.gz\]|[$tmp/nothing.jsonl]|" "$tmp/run.yaml" > "$tmp/bad.yaml"
sed -i "s|run_dir: .*|run_dir: $tmp/badrun|" "$tmp/bad.yaml"
mpi "$deft" run "$tmp/bad.yaml" > "$tmp/logbad" 2>&1 && fail "a run with a missing data file"
grep -qF "$tmp/nothing.jsonl: cannot open: No such file or directory (data, set at \
$tmp/bad.yaml:1:" "$tmp/logbad" || fail "missing data file message"
[ ! -e "$tmp/badrun" ] || fail "the run dir was made before the data check"

# 4. a training stopped mid-way resumes from its checkpoint. SIGTERM goes to
# the ranks themselves (as Slurm signals its tasks) once training has set up
# its handlers; each rank takes it at the end of a step.
sed -i 's/lr: 2e-3/lr: 1e-3/' "$tmp/run.yaml"
mpirun --oversubscribe -np 2 "$deft" run "$tmp/run.yaml" > "$tmp/log4" 2>&1 &
pid=$!
for _ in $(seq 9000); do
  grep -qs "resume: no checkpoint" "$tmp/log4" && break
  sleep 0.02
done
grep -q "resume: no checkpoint" "$tmp/log4" || { kill "$pid"; fail "training did not start"; }
for rank in $(pgrep -P "$pid"); do kill -TERM "$rank"; done
wait "$pid" || fail "a run stopped by a signal should exit 0"
grep -q "stop signal" "$tmp/log4" || fail "the stop signal was not taken by training"
grep -q "== train: running" "$tmp/log4" || fail "training did not start in the fourth run"
grep -q "== export" "$tmp/log4" && fail "the run went on past a stopped training"
[ ! -e "$run/stages/train.json" ] || fail "a stopped training was recorded as done"
mpi "$deft" run "$tmp/run.yaml" > "$tmp/log5" 2>&1 || fail "the resumed run failed"
grep -q "resume: .*step-0*[1-9][0-9]*\.h5 at step" "$tmp/log5" || fail "training did not resume"
grep -q "== select: skipped" "$tmp/log5" || fail "select was redone on resume"
[ -s "$run/stages/train.json" ] || fail "the resumed training was not recorded"
grep -q "== export: running" "$tmp/log5" || fail "export after the resumed training"
echo "run_e2e: ok"
