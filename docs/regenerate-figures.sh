#!/usr/bin/env bash
# Regenerate README's pictures docs/viewer.png and docs/depth.png from a real run (SmolLM2-135M, 12 BoolQ questions;
# 44 minutes on 2 busy CPU cores). Needs Chromium for the screenshot (apt-get install chromium).
# Run from the repository root: bash docs/regenerate-figures.sh [DATA_DIR]
set -euo pipefail
DATA="${1:-../shared/data}"
RUN="${RUN:-runs/docs-boolq-12}"
opd run --task boolq --student smollm2-135m --teacher self:correct-demo --teacher self --limit 12 --rollouts 4 \
  --nodes-per-window 1 --continuations 2 --data-dir "$DATA" --out "$RUN" --quiet
opd plot "$RUN" --out "$RUN/plots"
cp "$RUN/plots/depth.png" docs/depth.png
opd view "$RUN" --question boolq-0 --teacher self:correct-demo --out "$RUN/view.html"
python tests/browser.py "$RUN/view.html" docs/viewer.png --node "${NODE:-node-1-1}"
