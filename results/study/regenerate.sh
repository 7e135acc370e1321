#!/usr/bin/env bash
# Regenerate results/STUDY.md from nothing: the suites' runs, the in-context accuracy reports, the compact files in
# results/study/, the figures and the write-up. Days on 2 CPU cores (results/STUDY.md states the measured cost per
# question per cell). Run from the repository root: bash results/study/regenerate.sh [DATA_DIR]
# A reader who only wants the write-up from the committed files runs the last two lines (merge, write).
set -euo pipefail
export OPD_DATA_DIR="${1:-${OPD_DATA_DIR:-../shared/data}}"
RUNS="${RUNS:-runs/study}"
GSM8K_RUNS="${GSM8K_RUNS:-runs/study-gsm8k}"
ACCURACY="${ACCURACY:-runs/study-accuracy}"
mkdir -p "$ACCURACY"

# the direct-answer contrast: every (task, student) cell, two at a time on a local Ray instance (one thread each)
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

# the reasoning setting: GSM8K chain of thought in chunks, one run per chunk (alone on the machine, 4 questions in
# flight, so a chunk's records equal those questions' rows of a whole-task run), each committed (nodes, run.json
# keys, per-rollout file) as soon as it finishes. The chunks are the committed ones (results/study/chunks/, read
# before anything is run); a committed chunk is never replaced, so to rebuild them from nothing as well run with
# REBUILD_CHUNKS=1 (their files are removed first and written again: `git diff results/study/chunks` then shows
# whether the rerun gave the same records).
mapfile -t CHUNKS < <(python - <<'PY'
import json, pathlib
for path in sorted(pathlib.Path("results/study/chunks").glob("*/*/questions-*.json")):
    config = json.loads(path.read_text())["config"]
    print(config["task"], config["student"], "{}:{}".format(*config["questions"]))
PY
)
[[ "${REBUILD_CHUNKS:-0}" == 1 ]] && rm -f results/study/chunks/*/*/questions-*
export OPD_QUESTIONS_IN_FLIGHT=4
for chunk in "${CHUNKS[@]}"; do
  read -r task student range <<< "$chunk"
  # suites/study-gsm8k.toml narrowed to this student and this range (the suite's own knobs and teachers)
  suite_file="$(mktemp --suffix=.toml)"
  python - "$student" "$range" "$suite_file" <<'PY'
import sys, tomllib
student, questions, out = sys.argv[1:]
section, lines = None, []
for line in open("suites/study-gsm8k.toml").read().splitlines():
    section = line.strip() if line.startswith("[") else section
    if section == "[suite]" and line.startswith("students ="):
        line = f'students = ["{student}"]'
    elif section == "[suite.student_teachers]" and line.startswith('"') and not line.startswith(f'"{student}" ='):
        continue  # the extra teachers of the other students
    elif section and section.startswith("[tasks.") and line.startswith("questions ="):
        line = f'questions = "{questions}"'
    lines.append(line)
text = "\n".join(lines) + "\n"
parsed = tomllib.loads(text)
assert parsed["suite"]["students"] == [student], "suites/study-gsm8k.toml: [suite] students line not found"
open(out, "w").write(text)
PY
  opd suite "$suite_file" --out "$GSM8K_RUNS" --no-cache --threads 2
  rm -f "$suite_file"
  python results/study/build.py chunk "$GSM8K_RUNS/$task/${student//:/_}/questions-$(printf '%06d-%06d' "${range%:*}" "${range#*:}")"
done

python results/study/build.py merge
python results/study/build.py write
