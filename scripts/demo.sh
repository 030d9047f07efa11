#!/usr/bin/env bash
# The main job: IMP and its random-reinit control, two seeds each, on Fashion-MNIST with
# LeNet-300-100, into the results lake at ./results (study "demo"), then a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${STUDY_RESULTS:-results}
SPEC=search_spaces/fashion_mnist/lenet300_demo.yaml
log=$(mktemp)
for seed in 0 1; do
    echo "== seed $seed: imp and random_reinit lineages side by side (one CPU thread each)"
    .venv/bin/study lineage $SPEC --strategy random_reinit --seed $seed --results "$RESULTS" \
        --study demo --threads 1 --quiet > "$log" 2>&1 &
    .venv/bin/study lineage $SPEC --strategy imp --seed $seed --results "$RESULTS" --study demo --threads 1
    wait $! || { cat "$log"; exit 1; }
    cat "$log"
done
rm -f "$log"
.venv/bin/study results "$RESULTS"
