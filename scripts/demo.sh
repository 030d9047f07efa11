#!/usr/bin/env bash
# The main job: a small real study on Fashion-MNIST (LeNet-300-100 IMP tickets, each paired with a
# random re-initialisation of its mask; learning rate, fc prune rate and rewind point searched by
# Optuna's TPE on a local Ray; 6 trials x 2 seeds x 6 rounds), into the results lake at ./results,
# then the study's findings. Re-running reports (or resumes) the same study.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${STUDY_RESULTS:-results}
.venv/bin/study tune search_spaces/studies/fashion_mnist_demo.yaml --results "$RESULTS"
.venv/bin/study results --results "$RESULTS" --study fashion-mnist-demo
