#!/usr/bin/env bash
# Regenerate results/STUDY.md from nothing: the suite's runs, the in-context accuracy reports, the compact files in
# results/study/, the figures and the write-up. Hours on 2 CPU cores (results/STUDY.md states the measured cost).
# Run from the repository root: bash results/study/regenerate.sh [DATA_DIR]
set -euo pipefail
export OPD_DATA_DIR="${1:-${OPD_DATA_DIR:-../shared/data}}"
RUNS="${RUNS:-runs/study}"
ACCURACY="${ACCURACY:-runs/study-accuracy}"
mkdir -p "$ACCURACY"

# the diagnostic: every (task, student) cell, two at a time on a local Ray instance (one thread each)
opd suite suites/study.toml --out "$RUNS" --ray --threads 1

# in-context accuracy of every context per student (three sampled answers per question: the self-demo and
# correct-wrong contexts are built from the student's other answers, never from the answer they are paired with), and AIME 2024 greedy for the record
CONTEXTS=(--teacher self:correct-demo --teacher self:correct-wrong --teacher self:self-demo --teacher self:summary
          --teacher idp:default)
# the students of the diagnostic and the accuracy reports' limits, read from the suite file
suite() { python -c "import sys, tomllib; s = tomllib.load(open('suites/study.toml', 'rb')); print(eval(sys.argv[1]))" "$1"; }
limit() { suite "s['accuracy']['limit']['$1']"; }  # the accuracy reports' own limits
read -ra STUDENTS <<< "$(suite "' '.join(s['suite']['students'])")"
# a report already written at the same limit is kept (an interrupted or repeated regeneration does not redo it)
done_at() { python -c "import json, sys; print(json.load(open(sys.argv[1]))['config']['limit'])" "$1" 2>/dev/null; }
for task in boolq mmlu; do
  for student in "${STUDENTS[@]}"; do
    out="$ACCURACY/$task-${student//:/_}.json"
    [[ "$(done_at "$out")" == "$(limit "$task")" ]] && continue
    extra=(); [[ "$student" == *@* ]] && extra=(--teacher model:smollm2-135m)
    opd accuracy --task "$task" --student "$student" "${CONTEXTS[@]}" "${extra[@]}" --limit "$(limit "$task")" \
      --samples 3 --out "$out" --format md > /dev/null
  done
done
[[ -f "$ACCURACY/aime24-smollm2-135m.json" ]] ||
  opd accuracy --task aime24 --student smollm2-135m --out "$ACCURACY/aime24-smollm2-135m.json" --format md > /dev/null

python results/study/build.py collect "$RUNS" "$ACCURACY"
python results/study/build.py write
