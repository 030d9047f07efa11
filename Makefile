.PHONY: setup demo test test-portability test-cluster lint bench mutants

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	.venv/bin/python -m pytest -q -n 2 --dist loadgroup --timeout 900 --durations=12

# the numeric-equivalence tests under every CPU dispatch level (default, avx2, avx512) and 1 and 2 threads
test-portability: setup
	.venv/bin/python scripts/portability.py

# The rendered pods run on this machine as the kubelet and KubeRay would run them (as root: the
# image built from k8s/Dockerfile without Docker, crun, network namespaces; k8s/README.md).
test-cluster: setup
	bash scripts/setup_cluster.sh
	.venv/bin/python -m pytest -q -s -p no:cacheprovider --timeout 1500 tests/cluster

# ruff (lint and format), mypy (configured in pyproject.toml), and ARCHITECTURE.md's layer table as allow-lists
LINTED = study tests bench scripts app.py examples
lint: setup
	.venv/bin/ruff check $(LINTED)
	.venv/bin/ruff format --check $(LINTED)
	.venv/bin/mypy
	.venv/bin/python -m pytest -q -p no:cacheprovider tests/test_architecture.py

bench: setup
	.venv/bin/python bench/train_throughput.py

# Mutation testing of the core math (not part of `make test`): see [tool.mutmut] in pyproject.toml.
mutants: MUTANT_SCOPE = 'study.engine.pruning.*' 'study.analysis.objectives.*' 'study.engine.strategies.*' \
	'study.lake.reader.x_read_files__mutmut_*' 'study.lake.reader.x__latest__mutmut_*' 'study.lake.reader.x_table_files__mutmut_*' \
	'study.lake.reader.x_read_rounds__mutmut_*' 'study.lake.reader.x_read_lineages__mutmut_*' \
	'study.lake.files.x_trial_files__mutmut_*' \
	'study.engine.plan.x_round_length__mutmut_*' 'study.engine.plan.x_pruning_groups__mutmut_*' \
	'study.engine.lineage.x_degenerate_reason__mutmut_*'
mutants: setup
	OMP_NUM_THREADS=1 .venv/bin/mutmut run --max-children 1 $(MUTANT_SCOPE)
	.venv/bin/python scripts/mutation_summary.py $(MUTANT_SCOPE)
