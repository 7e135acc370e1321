#!/usr/bin/env bash
# Regenerate the reference leaderboards in results/ (slow: real SmolLM2-135M runs; hours on 2 CPU cores).
# Run from the repository root: bash results/regenerate.sh [DATA_DIR]
set -euo pipefail
DATA="${1:-../shared/data}"
RUNS="${RUNS:-runs/reference}"
mkdir -p results "$RUNS"

regenerate() {  # name, then the `opd run` selection flags
  local name="$1"; shift
  opd run "$@" --student smollm2-135m --teacher self --teacher self:correct-demo --data-dir "$DATA" \
    --out "$RUNS/$name" --overwrite --quiet
  {
    echo "# $name"
    echo
    echo "Command: \`opd run $* --student smollm2-135m --teacher self --teacher self:correct-demo --data-dir $DATA --out RUN\`"
    echo
    opd leaderboard "$RUNS/$name" --format md
  } > "results/$name.md"
  opd leaderboard "$RUNS/$name" --format json > "results/$name.json"
  opd plot "$RUNS/$name" --out "results/$name-plots"
}

regenerate boolq-smollm2-135m --task boolq --limit 2 --rollouts 4
regenerate mmlu-smollm2-135m --task mmlu --limit 2 --rollouts 4 --nodes-per-window 1 --continuations 2 --max-new-tokens 96
