.PHONY: setup demo test bench

setup:
	bash scripts/setup.sh

demo: setup
	bash scripts/demo.sh

test: setup
	.venv/bin/python -m pytest -q --timeout 900

bench: setup
	.venv/bin/python bench/train_throughput.py
