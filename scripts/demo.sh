#!/usr/bin/env bash
# The main job: a small real study on Fashion-MNIST (LeNet-300-100; imp vs random_reinit vs
# lr_rewind, learning rate, fc prune rate and rewind point searched by Optuna's TPE on a local
# Ray; 8 trials x 2 seeds x 6 rounds), into the results lake at ./results, then a summary.
# Re-running resumes (or reports) the same study.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${STUDY_RESULTS:-results}
.venv/bin/study tune search_spaces/studies/fashion_mnist_demo.yaml --results "$RESULTS"
.venv/bin/study results "$RESULTS"
